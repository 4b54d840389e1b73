"""Parameter text shared by the dataset docstrings, written once (MNE's ``fill_doc`` idea).

A dataset module writes ``%(dt_ms)s`` (one placeholder per line, alone on
its line, at the indentation of a parameter name) in its docstring and
decorates the class with :func:`fill_doc`; each placeholder becomes the
numpydoc entry of that parameter, re-indented. The module docstring is filled
by ``__doc__ = fill_doc(__doc__)``. A placeholder with no entry raises at
import, so a typo cannot ship.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any, TypeVar

__all__ = ["DOCS", "fill_doc"]

#: parameter name -> its numpydoc entry (name line, then the indented description)
DOCS: dict[str, str] = {
    "path": """path : path-like, optional
    The dataset's folder (holding the raw files directly, or a ``raw/``
    folder with them). Default: ``<data home>/<folder>``, the data home being
    ``$DEEPSTRF_DATA_DIR`` or the user cache folder.""",
    "dt_ms": """dt_ms : float
    Response bin width, ms (the spectrogram frame hop too).""",
    "smooth": """smooth : bool or float
    True: 21 ms Hanning smoothing of the counts (unit sum, so values stay
    counts); a number: that window in ms; False: none.""",
    "n_bands": """n_bands : int
    Number of frequency bands F of the computed spectrogram.""",
    "window_ms": """window_ms : float
    Analysis window of the spectrogram, ms.""",
    "compression": """compression : {'cubic', 'log1p', 'log', 'none'}
    Amplitude compression of the pooled power.""",
    "spectrogram": """spectrogram : SpectrogramParams, optional
    Full control of the front end (kind, bands, window, limits,
    compression); replaces the individual settings.""",
    "return_waveform": """return_waveform : bool, default False
    Stimuli as ``(1, T * hop)`` waveforms at ``audio_fs`` instead of
    spectrograms.""",
    "audio_fs": """audio_fs : float
    Sample rate of waveform stimuli; ``audio_fs * dt_ms / 1000`` must be a
    whole number of samples per bin.""",
    "download": """download : bool, default False
    Download the raw files when they are absent (verified, resumable).""",
    "n_jobs": """n_jobs : int, default 1
    Parallel workers for the first build (joblib; -1 = all cores). Results
    do not depend on it.""",
    "cache": """cache : {'use', 'rebuild', 'readonly', 'off'}, default 'use'
    How the processed cache is used.""",
    "progress": """progress : bool, optional
    Progress bars (default: on a terminal only).""",
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)

T = TypeVar("T")


def _fill(text: str) -> str:
    def entry(match: re.Match) -> str:
        name = match["name"]
        if name not in DOCS:
            raise KeyError(f"fill_doc: no shared text for %({name})s; known: "
                           f"{', '.join(sorted(DOCS))}.")
        return textwrap.indent(DOCS[name], match["indent"])

    return _PLACEHOLDER.sub(entry, text)


def fill_doc(obj: T) -> T:
    """Fill the ``%(name)s`` placeholders of a docstring (a str) or of a class/function's."""
    if isinstance(obj, str):
        return _fill(obj)  # type: ignore[return-value]
    doc: Any = getattr(obj, "__doc__", None)
    if doc:
        obj.__doc__ = _fill(doc)
    return obj
