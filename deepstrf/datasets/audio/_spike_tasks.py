"""Worker-side pieces of the audio build pipeline (no torch import).

:func:`stim_task` runs in joblib worker processes, which import this module to
unpickle their work; it and the types it receives (the stimulus sources of
:mod:`~deepstrf.datasets.audio._stimuli`, :class:`AudioFrontEnd`, the
response sources of :mod:`~deepstrf.datasets._responses`) import only numpy,
scipy, soxr, soundfile and the raw readers, so a worker starts in a fraction
of a second instead of loading torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.datasets._responses import (
    BinnedRows,
    ContinuousTrace,
    SpikeTrains,
    render_responses,
    response_bins,
)
from deepstrf.datasets.audio._stimuli import (
    SpectrogramArrayStim,
    StimSource,
    WaveformArrayStim,
    WavStim,
)

__all__ = ["AudioFrontEnd", "BinnedRows", "ContinuousTrace", "DEFAULT_SMOOTH_MS",
           "SpectrogramArrayStim", "SpikeTrains", "StimSource", "WavStim", "WaveformArrayStim",
           "make_front_end", "stim_task", "ten_ms_front_end"]

#: Window of the PSTH smoothing when ``smooth=True`` (Hsu, Borst & Theunissen 2004).
DEFAULT_SMOOTH_MS = 21.0


@dataclass(frozen=True)
class AudioFrontEnd:
    """How stimuli and responses are put on the response grid."""

    dt_ms: float
    spectrogram: Any                  # SpectrogramParams
    return_waveform: bool
    audio_fs: float | None
    smooth_ms: float | None
    #: the spectrogram made ready in the parent (filter banks, resolved functions);
    #: derived from ``spectrogram``, so it is not part of the cache key
    prepared: Any = field(default=None, compare=False, repr=False)

    def prepare(self, sample_rates: Any) -> AudioFrontEnd:
        """This front end with its spectrogram prepared for sounds at these rates."""
        import dataclasses

        from deepstrf.preprocessing.spectrogram import prepare_front_end

        if self.return_waveform:
            return self
        return dataclasses.replace(self, prepared=prepare_front_end(self.spectrogram,
                                                                    sample_rates))

    def to_dict(self) -> dict[str, Any]:
        from deepstrf.preprocessing.spikes import SMOOTHING_ARITHMETIC

        out = {"dt_ms": self.dt_ms, "spectrogram": self.spectrogram.to_dict(),
               "return_waveform": self.return_waveform, "audio_fs": self.audio_fs,
               "smooth_ms": self.smooth_ms}
        if self.smooth_ms:  # the smoothing's own version, so its values key the cache
            out["smoothing"] = SMOOTHING_ARITHMETIC
        return out


def make_front_end(*, dt_ms: Any, smooth: Any, compression: Any, window_ms: Any,
                   return_waveform: Any, audio_fs: Any, n_bands: Any = None,
                   n_mels: Any = None, default_n_bands: int | None = None,
                   spectrogram: Any = None, kind: str = "mel",
                   f_min: Any = 0.0, f_max: Any = None) -> AudioFrontEnd:
    """Check the audio arguments shared by the datasets (before any I/O).

    Parameters are those of the dataset constructors; ``spectrogram`` (a
    :class:`~deepstrf.preprocessing.spectrogram.SpectrogramParams`) replaces
    ``n_bands``/``compression``/``window_ms``/``f_min``/``f_max`` when given.
    ``n_mels`` is the CRCNS classes' older name of ``n_bands``; give one.
    """
    from deepstrf.preprocessing.spectrogram import SpectrogramParams

    dt_ms = check_positive("dt_ms", dt_ms)
    if isinstance(smooth, bool):
        smooth_ms = DEFAULT_SMOOTH_MS if smooth else None
    elif isinstance(smooth, numbers.Real):
        smooth_ms = check_positive("smooth (window in ms)", smooth)
    else:
        raise TypeError(f"smooth must be True, False or a window in ms; got {smooth!r}.")
    if not isinstance(return_waveform, bool):
        raise TypeError(f"return_waveform must be True or False; got {return_waveform!r}.")
    if n_mels is not None and n_bands is not None and n_mels != n_bands:
        raise ValueError(f"n_mels is another name of n_bands; give one of them, not both "
                         f"(got n_bands={n_bands!r}, n_mels={n_mels!r}).")
    band_arg = ("n_mels", n_mels) if n_mels is not None else \
        ("n_bands", default_n_bands if n_bands is None else n_bands)
    if spectrogram is None:
        if band_arg[1] is None:
            raise TypeError("n_bands (the number of frequency bands) is required.")
        spectrogram = SpectrogramParams(dt_ms=dt_ms, kind=kind,
                                        n_bands=check_int(*band_arg, minimum=1),
                                        f_min=f_min, f_max=f_max,
                                        window_ms=check_positive("window_ms", window_ms),
                                        compression=check_choice(
                                            "compression", compression,
                                            ("cubic", "log1p", "log", "none")))
    elif not isinstance(spectrogram, SpectrogramParams):
        raise TypeError(f"spectrogram must be a SpectrogramParams or None; got "
                        f"{type(spectrogram).__name__}.")
    elif not math.isclose(spectrogram.dt_ms, dt_ms):
        raise ValueError(f"spectrogram.dt_ms={spectrogram.dt_ms:g} differs from dt_ms={dt_ms:g}; "
                         "they must match (the spectrogram frames are the response bins).")
    rate = None
    if return_waveform:
        rate = check_positive("audio_fs", audio_fs)
        hop = rate * dt_ms / 1000.0
        if abs(hop - round(hop)) > 1e-6 or round(hop) < 1:
            raise ValueError(f"audio_fs * dt_ms / 1000 must be a whole number of samples per "
                             f"response bin in waveform mode; got {rate:g} * {dt_ms:g} / 1000 = "
                             f"{hop:g}. Try audio_fs={max(1, round(hop)) * 1000 / dt_ms:g}.")
    return AudioFrontEnd(dt_ms=dt_ms, spectrogram=spectrogram, return_waveform=return_waveform,
                         audio_fs=rate, smooth_ms=smooth_ms)


def ten_ms_front_end(owner: str, *, dt_ms: Any, smooth: Any, n_bands: int,
                     return_waveform: bool, audio_fs: Any) -> Any:
    """:func:`make_front_end` of the David-lab NEMS releases (NAT4, Espejo 2019, Wingert 2026).

    Their spectrograms and rasters come at 10 ms bins, so ``dt_ms`` must be a multiple of
    10 ms (bins are pooled); the window is two native bins and nothing is compressed.
    """
    front = make_front_end(dt_ms=dt_ms, smooth=smooth, n_bands=n_bands, compression="none",
                           window_ms=20.0, return_waveform=return_waveform, audio_fs=audio_fs)
    ratio = front.dt_ms / 10.0
    if abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"{owner}: dt_ms must be a multiple of 10 ms (the release's bin); got "
                         f"dt_ms={dt_ms!r}.")
    return front


def stim_task(task: tuple) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One stimulus: its sound on the response grid, and every neuron's repeats on it.

    ``task`` is ``(stimulus source, AudioFrontEnd, response sources)``, the
    sources of all the stimulus's neurons one after the other (spike trains
    of several neurons may come merged in one :class:`SpikeTrains`). Returns
    the stim array (``(1, F, T)`` spectrogram or ``(1, T * hop)`` waveform),
    the ``(n_rows, T)`` responses (counts smoothed if asked) and the stimulus
    facts, among them ``n_bins`` (T).
    """
    source, front, responses = task
    n_bins = source.n_bins
    if n_bins == "response":
        n_bins = response_bins(responses, front.dt_ms, str(source.meta.get("name", "")))
    stim, facts = source.render(front, n_bins)
    rows = render_responses(responses, front.dt_ms, int(facts["n_bins"]),
                            onset_ms=-float(source.inset_ms), smooth_ms=front.smooth_ms)
    return stim, rows, facts
