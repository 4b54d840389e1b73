"""MNE-based preprocessing of continuous EEG recordings (needs the ``eeg`` extra).

One recording (a FIF raw file) becomes one response block per stimulus
segment, on the response grid of ``dt_ms``:

1. read the file (its structure checked first, so a truncated file is an
   error naming it, not a short recording), keep the EEG channels;
2. optionally re-reference (``'average'`` or a list of channels);
3. band-pass with MNE's default zero-phase FIR (``hp_freq_hz``,
   ``lp_freq_hz``; None leaves that side unfiltered);
4. bring the trace to ``1000 / dt_ms`` Hz: ``method='resample'`` uses
   MNE's FFT resampling (:func:`mne.filter.resample`, as
   :meth:`mne.io.Raw.resample` does) on the whole recording, padded so that
   output sample ``j`` lies exactly at ``j * dt_ms`` (MNE's default padding
   puts it up to half a sample off),
   ``method='pool'`` averages blocks of whole samples
   (:func:`~deepstrf.preprocessing.continuous.pool_mean`) within each
   segment, so the bins start exactly at the segment onset;
5. cut each segment at its onset annotation for the number of bins asked
   for, NaN past either end of the recording;
6. set to NaN the bad channels (``info['bads']``) and every output sample
   whose interval overlaps an annotation whose description starts with
   ``bad`` (any case, MNE's own rule: ``BAD_``, ``BAD boundary``, ...).
   Masking comes last, after filtering and resampling, so a bad span's
   artefact has been filtered like the rest but none of it is handed out.

Units are kept: MNE returns EEG in volts, and so do these functions
(``unit = 'V'``), as float32.

Onsets and ``first_samp``
-------------------------
MNE stores an annotation's onset on the recording's clock, which starts at
``raw.first_samp`` (a FIF file cut from a longer acquisition keeps that
sample's number), so the onset of an annotation at data index ``k`` is
``(first_samp + k) / sfreq``. The data index of an onset is therefore
``round(onset * sfreq) - first_samp``; deepSTRF 0.1.0 used
``round(onset * sfreq)`` and so cut every segment ``first_samp`` samples late
whenever ``first_samp`` was not 0. Rounding here is half up
(:func:`~deepstrf.preprocessing.continuous.time_to_sample`). With
``method='resample'`` the onset is rounded to the nearest *output* sample,
so the grid may start up to ``dt / 2`` from the true onset (recorded per
segment as :attr:`SegmentCut.origin_s`); with ``method='pool'`` it is
rounded to the nearest *input* sample (within ``1 / (2 sfreq)``).

What a sample stands for (and so which samples a bad span touches) is
described in :mod:`deepstrf.preprocessing.continuous`: a pooled bin is the
interval it averages, a resampled sample the half-sample cell around it.

Parallel use
------------
:func:`preprocess_subject` takes one picklable :class:`EEGSubjectTask` and
returns one :class:`EEGSubjectResult`, so a dataset runs its subjects with
:func:`~deepstrf.preprocessing.parallel.parallel_map` (or
:func:`preprocess_subjects`, which does that and then reports the quirks).
Workers do not warn: a warning raised in another process would be lost, so
each result carries its :class:`Quirk` records, and :func:`report_quirks`
turns them into :class:`~deepstrf.errors.DataQuirkWarning` in the calling
process and counts them.

MNE's own log messages and warnings are silenced (level ``'ERROR'``)
unless asked for with ``verbose`` (True for ``'INFO'``, or a level name).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.preprocessing.continuous import (
    pool_factor,
    pool_mean,
    span_to_bins,
    time_to_sample,
)

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "EEGParams",
    "EEGSubjectTask",
    "EEGSubjectResult",
    "SegmentCut",
    "Quirk",
    "check_fif",
    "read_raw_eeg",
    "segment_onsets",
    "bad_spans",
    "is_bad_description",
    "preprocess_raw",
    "preprocess_subject",
    "preprocess_subjects",
    "report_quirks",
    "mne_log_level",
]

logger = logging.getLogger(__name__)

Method = Literal["resample", "pool"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# FIF tag kinds and "next" codes (FIFF constants) used by the structure check.
_FIFF_FILE_ID = 100
_FIFF_BLOCK_START = 104
_FIFF_BLOCK_END = 105
_FIFF_NEXT_SEQ = 0
_FIFF_NEXT_NONE = -1
_TAG_HEADER = struct.Struct(">iiii")  # kind, type, size, next (big-endian)

# Exact-grid resampling (_resample_exact): the largest rate-ratio denominator accepted, the
# least edge padding per side (MNE's own minimum), and how many pad lengths to try for a fast
# FFT size.
_MAX_RATIO_DENOMINATOR = 10_000
_MIN_RESAMPLE_PAD = 100
_PAD_SEARCH = 5_000
# Channels filtered or resampled per MNE call (MNE copies what it works on).
_CHANNEL_CHUNK = 8


# ---------------------------------------------------------------------------
# Parameters, tasks, results
# ---------------------------------------------------------------------------

def mne_log_level(verbose: bool | str | None) -> str:
    """The MNE log level for a ``verbose`` argument.

    None or False give ``'ERROR'`` (MNE quiet: no info messages, no MNE
    warnings), True gives ``'INFO'``, a level name (any case) is used as is.

    Examples
    --------
    >>> mne_log_level(None), mne_log_level(True), mne_log_level("warning")
    ('ERROR', 'INFO', 'WARNING')
    """
    if verbose is None or verbose is False:
        return "ERROR"
    if verbose is True:
        return "INFO"
    if isinstance(verbose, str) and verbose.upper() in _LEVELS:
        return verbose.upper()
    raise ValueError(f"verbose must be None, a bool or one of {', '.join(map(repr, _LEVELS))}; "
                     f"got {verbose!r}.")


def _check_reference(reference: Any) -> str | tuple[str, ...] | None:
    if reference is None or reference == "average":
        return reference
    if isinstance(reference, str):
        if not reference:
            raise ValueError("reference must be None, 'average' or channel names; got ''.")
        return (reference,)
    try:
        names = tuple(reference)
    except TypeError:
        raise TypeError(f"reference must be None, 'average' or a sequence of channel names; "
                        f"got {reference!r}.") from None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"reference must be None, 'average' or a non-empty sequence of channel "
                         f"names; got {reference!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"reference names a channel twice: {reference!r}.")
    return names


@dataclass(frozen=True)
class EEGParams:
    """How a recording is brought to the response grid.

    Parameters
    ----------
    dt_ms : float, default 10.0
        Output sample period in ms; the output rate is ``1000 / dt_ms`` Hz.
    hp_freq_hz : float or None, default 1.0
        High-pass cut-off (MNE's ``l_freq``); None for no high-pass. The
        Alice files are only high-passed at 0.1 Hz, which leaves slow drifts
        that make segment baselines differ (deepSTRF's default of 1 Hz).
    lp_freq_hz : float or None, default None
        Low-pass cut-off (``h_freq``); None for no low-pass beyond the
        anti-aliasing of resampling. Must be below half the input rate.
    reference : None, 'average' or sequence of str, default None
        None keeps the file's reference; ``'average'`` re-references to the
        mean of the good EEG channels; channel names re-reference to their
        mean (none of them may be bad).
    method : {'resample', 'pool'}, default 'resample'
        ``'resample'``: MNE's FFT resampling of the whole recording, with
        the padding chosen so that output sample ``j`` lies exactly at
        ``j * dt_ms`` (MNE's default padding shifts the grid by up to half an
        output sample); the last ``q - 1`` input samples, for a rate ratio
        ``p / q``, are left out so the last output sample is fully recorded.
        ``'pool'``: mean of each block of ``sfreq * dt_ms / 1000`` input
        samples (must be a whole number), aligned to each segment onset.
        Pooling is a boxcar low-pass with weak stop-band rejection; set
        ``lp_freq_hz`` below ``500 / dt_ms`` Hz to avoid aliasing.
    verbose : bool, str or None, default None
        MNE's log level while it runs (:func:`mne_log_level`): quiet unless
        True or a level name is given.
    """

    dt_ms: float = 10.0
    hp_freq_hz: float | None = 1.0
    lp_freq_hz: float | None = None
    reference: str | tuple[str, ...] | None = None
    method: Method = "resample"
    verbose: bool | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt_ms", check_positive("dt_ms", self.dt_ms))
        for name in ("hp_freq_hz", "lp_freq_hz"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_positive(name, value))
        if (self.hp_freq_hz is not None and self.lp_freq_hz is not None
                and self.hp_freq_hz >= self.lp_freq_hz):
            raise ValueError(f"hp_freq_hz must be below lp_freq_hz for a band-pass; got "
                             f"hp_freq_hz={self.hp_freq_hz:g}, lp_freq_hz={self.lp_freq_hz:g}.")
        object.__setattr__(self, "reference", _check_reference(self.reference))
        check_choice("method", self.method, ("resample", "pool"))
        mne_log_level(self.verbose)

    @property
    def sfreq_out(self) -> float:
        """Output sample rate, ``1000 / dt_ms`` Hz."""
        return 1000.0 / self.dt_ms


def _check_segments(segments: Any) -> tuple[tuple[str, int], ...]:
    if isinstance(segments, Mapping):
        items = list(segments.items())
    else:
        try:
            items = [tuple(item) for item in segments]
        except TypeError:
            raise TypeError(f"segments must map segment labels to bin counts; got "
                            f"{segments!r}.") from None
    if not items:
        raise ValueError("segments must name at least one segment label.")
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for item in items:
        if len(item) != 2:
            raise ValueError(f"segments entries must be (label, n_bins) pairs; got {item!r}.")
        label, n_bins = item
        if not isinstance(label, str) or not label:
            raise TypeError(f"segment labels must be non-empty strings (annotation "
                            f"descriptions such as '1'); got {label!r}.")
        if label in seen:
            raise ValueError(f"segment label {label!r} is given twice.")
        seen.add(label)
        out.append((label, check_int(f"n_bins of segment {label!r}", n_bins, minimum=0)))
    return tuple(out)


@dataclass(frozen=True)
class EEGSubjectTask:
    """One recording to preprocess: the picklable item of a parallel map.

    Parameters
    ----------
    path : str or path-like
        The FIF raw file.
    segments : mapping of str to int, or sequence of (str, int)
        Annotation description of each segment -> number of output bins to
        cut from its onset (e.g. ``{'1': 5754, ..., '12': 4698}``). Stored as
        a tuple of pairs, in the order given.
    params : EEGParams
        Filtering, reference, grid.
    subject : str, optional
        A label carried into the result (and the messages).
    """

    path: str
    segments: tuple[tuple[str, int], ...]
    params: EEGParams = field(default_factory=EEGParams)
    subject: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(f"path must be a path; got {self.path!r}.")
        object.__setattr__(self, "path", os.fspath(self.path))
        object.__setattr__(self, "segments", _check_segments(self.segments))
        if not isinstance(self.params, EEGParams):
            raise TypeError(f"params must be an EEGParams; got {type(self.params).__name__}.")
        if self.subject is not None and not isinstance(self.subject, str):
            raise TypeError(f"subject must be a string or None; got {self.subject!r}.")


@dataclass(frozen=True)
class Quirk:
    """A tolerated departure from the expected format, found in a worker.

    Attributes
    ----------
    kind : str
        Short key counted in a build record (``'missing_segment'``,
        ``'segment_past_end'``, ``'segment_before_start'``,
        ``'nonfinite_samples'``).
    message : str
        The sentence to warn with; names the file.
    """

    kind: str
    message: str


@dataclass(frozen=True)
class SegmentCut:
    """Where one segment was cut.

    Attributes
    ----------
    label : str
        The annotation description.
    onset_s : float
        Onset in seconds from the first sample of the data (``first_samp``
        already subtracted), as annotated.
    start : int
        First sample of the cut on the grid that was cut: output samples
        for ``'resample'``, input samples for ``'pool'``. May be negative.
    origin_s : float
        Time of output bin 0 from the first sample of the data (``onset_s``
        rounded to the grid).
    n_bins : int
        Output bins.
    n_padded : int
        Bins set to NaN because they fall (partly) outside the recording.
    n_bad_span : int
        Bins set to NaN by ``bad`` annotations.
    """

    label: str
    onset_s: float
    start: int
    origin_s: float
    n_bins: int
    n_padded: int
    n_bad_span: int


@dataclass(frozen=True, eq=False)
class EEGSubjectResult:
    """One recording, preprocessed and cut into segments.

    Attributes
    ----------
    path : str
        The file read.
    subject : str or None
        As given in the task.
    ch_names : tuple of str
        EEG channels in file order (rows of every segment array).
    bads : tuple of str
        Channels set to NaN: ``info['bads']`` among the EEG channels, in
        file order, plus any channel holding non-finite samples.
    positions : dict of str to tuple of float or None
        Channel position (x, y, z) in metres, head coordinates, from the
        file's montage; None when the file has none for the channel.
    unit : str
        ``'V'``.
    sfreq_in, sfreq_out : float
        Sample rates of the file and of the output, Hz.
    first_samp : int
        The file's ``first_samp``.
    n_samples_in : int
        Samples in the file.
    segments : dict of str to numpy.ndarray
        Label -> float32 ``(n_channels, n_bins)``, for the segments found,
        in the task's order.
    cuts : dict of str to SegmentCut
        Label -> where it was cut.
    missing : tuple of str
        Labels asked for that the file has no annotation for.
    bad_spans : tuple of (float, float, str)
        ``(onset_s from the first data sample, duration_s, description)``
        of the ``bad`` annotations.
    other_annotations : tuple of str
        Descriptions of annotations that are neither a segment asked for
        nor bad (left alone; the caller decides what they mean).
    params : EEGParams
        The parameters used.
    quirks : tuple of Quirk
        Tolerated quirks, for :func:`report_quirks`.
    """

    path: str
    subject: str | None
    ch_names: tuple[str, ...]
    bads: tuple[str, ...]
    positions: dict[str, tuple[float, float, float] | None]
    unit: str
    sfreq_in: float
    sfreq_out: float
    first_samp: int
    n_samples_in: int
    segments: dict[str, np.ndarray]
    cuts: dict[str, SegmentCut]
    missing: tuple[str, ...]
    bad_spans: tuple[tuple[float, float, str], ...]
    other_annotations: tuple[str, ...]
    params: EEGParams
    quirks: tuple[Quirk, ...] = ()


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def check_fif(path: str | os.PathLike[str]) -> Path:
    """Check a file is a complete FIF file by walking its tag structure.

    MNE reads some truncated files without complaint (a file cut at a data
    buffer boundary loads as a shorter recording), so the tags are walked
    first: the file must start with a file-id tag, every tag's data must lie
    inside the file, every block opened must be closed, and the walk must
    end at the end-of-file tag or exactly at the end of the file.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Path

    Raises
    ------
    MissingRawDataError
        If the file does not exist.
    RawDataError
        If it is not a FIF file, or is truncated or damaged; the message
        names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingRawDataError(f"{path}: no such file (expected a FIF raw EEG recording).")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(_TAG_HEADER.size)
        if len(head) < _TAG_HEADER.size or _TAG_HEADER.unpack(head)[0] != _FIFF_FILE_ID:
            raise RawDataError(f"{path}: not a FIF file (it does not start with a FIF file-id "
                               f"tag); expected a raw recording saved by MNE or a Neuromag "
                               f"system, e.g. '<subject>_alice-raw.fif'.")
        pos, depth, n_tags = 0, 0, 0
        while True:
            if pos == size:
                break
            fh.seek(pos)
            head = fh.read(_TAG_HEADER.size)
            if len(head) < _TAG_HEADER.size:
                raise RawDataError(f"{path}: truncated FIF file: it ends {len(head)} bytes into "
                                   f"a tag header at byte {pos} (file size {size}). "
                                   f"Download or copy it again.")
            kind, _type, tag_size, nxt = _TAG_HEADER.unpack(head)
            end = pos + _TAG_HEADER.size + tag_size
            if tag_size < 0 or end > size:
                raise RawDataError(f"{path}: truncated FIF file: the tag at byte {pos} holds "
                                   f"{tag_size} bytes but the file ends at byte {size}. "
                                   f"Download or copy it again.")
            n_tags += 1
            if kind == _FIFF_BLOCK_START:
                depth += 1
            elif kind == _FIFF_BLOCK_END:
                depth -= 1
                if depth < 0:
                    raise RawDataError(f"{path}: damaged FIF file: a block ends at byte {pos} "
                                       f"that was never opened.")
            if nxt == _FIFF_NEXT_SEQ:
                pos = end
            elif nxt == _FIFF_NEXT_NONE:
                break
            elif pos < nxt <= size:
                pos = nxt
            else:
                raise RawDataError(f"{path}: damaged FIF file: the tag at byte {pos} points to "
                                   f"byte {nxt} (file size {size}).")
    if depth != 0:
        raise RawDataError(f"{path}: truncated FIF file: {depth} block(s) are left open after "
                           f"{n_tags} tags (file size {size}). Download or copy it again.")
    return path


def _mne() -> Any:
    try:
        import mne
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("EEG preprocessing needs MNE-Python: pip install 'deepstrf-datasets[eeg]' "
                          "(or pip install mne).") from err
    return mne


def read_raw_eeg(path: str | os.PathLike[str], *, verbose: bool | str | None = None
                 ) -> mne.io.Raw:
    """Read a FIF raw file and keep its EEG channels, loaded in memory.

    Only the EEG channels are loaded (the others are dropped before the data
    are read). ``info['bads']`` is kept.

    Parameters
    ----------
    path : str or path-like
        The FIF file.
    verbose : bool, str or None
        MNE's log level (:func:`mne_log_level`).

    Returns
    -------
    mne.io.Raw

    Raises
    ------
    MissingRawDataError
        If the file does not exist.
    RawDataError
        If it is not a complete FIF file, MNE cannot read it, or it has no
        EEG channel; the message names the file.
    """
    mne = _mne()
    level = mne_log_level(verbose)
    path = check_fif(path)
    with mne.utils.use_log_level(level):
        try:
            with warnings.catch_warnings():
                if level in ("ERROR", "CRITICAL"):
                    warnings.simplefilter("ignore", RuntimeWarning)
                raw = mne.io.read_raw_fif(path, preload=False, verbose=level)
        except Exception as err:
            raise RawDataError(f"{path}: MNE could not read this FIF file "
                               f"({type(err).__name__}: {err}). Download or copy it again; "
                               f"expected a raw recording saved by MNE.") from err
        types = raw.get_channel_types()
        if "eeg" not in types:
            found = ", ".join(f"{n} ({t})" for n, t in zip(raw.ch_names[:10], types[:10]))
            raise RawDataError(f"{path}: no EEG channel; the {len(types)} channels are "
                               f"{found}{', ...' if len(types) > 10 else ''}. Expected EEG "
                               f"channels (MNE type 'eeg').")
        raw.pick("eeg")
        try:
            raw.load_data(verbose=level)
        except Exception as err:
            raise RawDataError(f"{path}: MNE could not read the data of this FIF file "
                               f"({type(err).__name__}: {err}). Download or copy it again.") \
                from err
    return raw


def _source(raw: mne.io.BaseRaw) -> str:
    names = getattr(raw, "filenames", None) or ()
    first = names[0] if names else None
    return os.fspath(first) if first is not None else "<raw in memory>"


def _onset_from_data_start(raw: mne.io.BaseRaw, onset: float) -> float:
    # Annotation onsets run on the recording's clock, which starts at first_samp.
    return float(onset) - raw.first_samp / raw.info["sfreq"]


def is_bad_description(description: str) -> bool:
    """MNE's rule for a bad span: the description starts with 'bad', any case.

    Examples
    --------
    >>> is_bad_description("BAD_blink"), is_bad_description("bad boundary"), is_bad_description("1")
    (True, True, False)
    """
    return str(description).lower().startswith("bad")


def segment_onsets(raw: mne.io.BaseRaw, labels: Iterable[str]
                   ) -> tuple[dict[str, float], tuple[str, ...]]:
    """Onsets of the segment annotations, in seconds from the first data sample.

    Parameters
    ----------
    raw : mne.io.Raw
    labels : iterable of str
        Annotation descriptions of the segments (e.g. ``'1'`` to ``'12'``).

    Returns
    -------
    onsets : dict of str to float
        Label -> onset, ``raw.first_samp`` accounted for, for the labels
        found, in the order asked.
    missing : tuple of str
        Labels asked for with no annotation.

    Raises
    ------
    RawDataError
        If the recording has no annotations, none of the labels is among
        them, or a label is annotated more than once; names the file.
    """
    labels = tuple(labels)
    source = _source(raw)
    annotations = raw.annotations
    if len(annotations) == 0:
        raise RawDataError(
            f"{source}: the recording has no annotations; expected one annotation per segment "
            f"whose description is the segment label ({_show(labels)}) at the stimulus onset.")
    found: dict[str, list[float]] = {}
    for onset, description in zip(annotations.onset, annotations.description):
        found.setdefault(str(description), []).append(float(onset))
    if not any(label in found for label in labels):
        raise RawDataError(
            f"{source}: none of the segment labels {_show(labels)} is an annotation of this "
            f"recording; its annotations are {_show(sorted(found))}. Expected one annotation "
            f"per segment whose description is the segment label.")
    onsets: dict[str, float] = {}
    missing: list[str] = []
    for label in labels:
        times = found.get(label)
        if times is None:
            missing.append(label)
        elif len(times) > 1:
            raise RawDataError(
                f"{source}: segment {label!r} is annotated {len(times)} times (onsets "
                f"{', '.join(f'{t:.3f}' for t in times)} s); expected one onset per segment.")
        else:
            onsets[label] = _onset_from_data_start(raw, times[0])
    return onsets, tuple(missing)


def _show(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def bad_spans(raw: mne.io.BaseRaw) -> tuple[tuple[float, float, str], ...]:
    """``(onset_s, duration_s, description)`` of the bad annotations, onset from the first sample.

    An annotation is bad when :func:`is_bad_description` says so.
    """
    return tuple((_onset_from_data_start(raw, onset), float(duration), str(description))
                 for onset, duration, description in zip(raw.annotations.onset,
                                                         raw.annotations.duration,
                                                         raw.annotations.description)
                 if is_bad_description(description))


# ---------------------------------------------------------------------------
# Processing
# ---------------------------------------------------------------------------

def _positions(raw: mne.io.BaseRaw) -> dict[str, tuple[float, float, float] | None]:
    out: dict[str, tuple[float, float, float] | None] = dict.fromkeys(raw.ch_names)
    montage = raw.get_montage()
    if montage is None:
        return out
    for name, xyz in montage.get_positions()["ch_pos"].items():
        if name in out and xyz is not None and np.all(np.isfinite(xyz)):
            out[name] = (float(xyz[0]), float(xyz[1]), float(xyz[2]))
    return out


def preprocess_raw(raw: mne.io.BaseRaw, segments: Mapping[str, int] | Sequence[tuple[str, int]],
                   params: EEGParams | None = None, *, subject: str | None = None
                   ) -> EEGSubjectResult:
    """Filter, re-reference, resample or pool, mask and cut a loaded EEG recording.

    ``raw`` is modified in place (pass ``raw.copy()`` to keep it); it must be
    loaded (``preload=True``) and hold only EEG channels
    (:func:`read_raw_eeg` returns such a raw). Quirks are returned in the
    result, not warned (see :func:`report_quirks`).

    Parameters
    ----------
    raw : mne.io.Raw
    segments : mapping of str to int, or sequence of (str, int)
        Segment label -> output bins to cut (:class:`EEGSubjectTask`).
    params : EEGParams, optional
        Defaults to ``EEGParams()``.
    subject : str, optional
        Carried into the result.

    Returns
    -------
    EEGSubjectResult

    Raises
    ------
    RawDataError
        For a recording that cannot be processed as asked (no annotations,
        no segment found, a duplicated segment, a reference channel that is
        bad or absent, a cut-off above the Nyquist rate, a rate that pooling
        cannot divide); the message names the file.
    """
    mne = _mne()
    params = EEGParams() if params is None else params
    if not isinstance(params, EEGParams):
        raise TypeError(f"params must be an EEGParams; got {type(params).__name__}.")
    wanted = _check_segments(segments)
    level = mne_log_level(params.verbose)
    source = _source(raw)
    if not raw.preload:
        raise ValueError(f"{source}: raw must be loaded (preload=True or raw.load_data()).")
    types = set(raw.get_channel_types())
    if types != {"eeg"}:
        raise ValueError(f"{source}: raw must hold only EEG channels (raw.pick('eeg')); it also "
                         f"has {sorted(types - {'eeg'})}.")
    sfreq = float(raw.info["sfreq"])
    factor = 1
    if params.method == "pool":
        try:
            factor = pool_factor(sfreq, params.dt_ms)
        except ValueError as err:
            raise RawDataError(f"{source}: {err}") from err
    nyquist = sfreq / 2.0
    for name in ("hp_freq_hz", "lp_freq_hz"):
        value = getattr(params, name)
        if value is not None and value >= nyquist:
            raise RawDataError(f"{source}: {name}={value:g} Hz is not below the Nyquist rate "
                               f"({nyquist:g} Hz) of this {sfreq:g} Hz recording.")

    quirks: list[Quirk] = []
    onsets, missing = segment_onsets(raw, [label for label, _ in wanted])
    for label in missing:
        quirks.append(Quirk("missing_segment",
                            f"{source}: no annotation {label!r}; segment {label} is missing "
                            f"from this recording and is left out."))
    spans = bad_spans(raw)
    asked = {label for label, _ in wanted}
    other = tuple(sorted({str(d) for d in raw.annotations.description
                          if str(d) not in asked and not is_bad_description(d)}))

    ch_names = tuple(raw.ch_names)
    first_samp = int(raw.first_samp)
    n_samples_in = int(raw.n_times)
    duration_s = n_samples_in / sfreq
    bad_set = set(raw.info["bads"])
    broken = [ch for i, ch in enumerate(ch_names)
              if not np.isfinite(raw.get_data(picks=[i])).all()]
    if broken:
        quirks.append(Quirk("nonfinite_samples",
                            f"{source}: channel(s) {', '.join(broken)} hold NaN or infinite "
                            f"samples; they are treated as bad (all NaN)."))
        # Keep filtering and resampling finite; the rows are masked at the end.
        raw.apply_function(_zero_nonfinite, picks=broken, channel_wise=True, verbose=level)
        bad_set.update(broken)

    with mne.utils.use_log_level(level):
        if params.reference is not None:
            _rereference(raw, params.reference, bad_set, source, level)
        if params.hp_freq_hz is not None or params.lp_freq_hz is not None:
            # A few channels at a time: MNE copies the channels it filters, so filtering all
            # 61 at once doubled the memory of a subject (and ran 5x slower).
            for chunk in _channel_chunks(len(ch_names)):
                raw.filter(l_freq=params.hp_freq_hz, h_freq=params.lp_freq_hz, picks=chunk,
                           verbose=level)
        grid: np.ndarray | None = None
        if params.method == "resample" and not math.isclose(params.sfreq_out, sfreq,
                                                            rel_tol=1e-12):
            grid = _resample_exact(raw, params.dt_ms, source, level)

    if grid is None:
        n_grid = int(raw.n_times)

        def read(lo: int, hi: int) -> np.ndarray:
            return raw.get_data(start=lo, stop=hi)
    else:
        n_grid = grid.shape[1]

        def read(lo: int, hi: int) -> np.ndarray:
            return grid[:, lo:hi]

    bad_rows = np.array([ch in bad_set for ch in ch_names], dtype=bool)
    dt_s = params.dt_ms / 1000.0
    cell = "bin" if params.method == "pool" else "point"
    grid_rate = sfreq if params.method == "pool" else params.sfreq_out
    out: dict[str, np.ndarray] = {}
    cuts: dict[str, SegmentCut] = {}
    for label, n_bins in wanted:
        if label not in onsets:
            continue
        onset = onsets[label]
        start = time_to_sample(onset, grid_rate)
        origin = start / grid_rate
        piece = _cut(read, n_grid, len(ch_names), start, n_bins * factor)
        if factor > 1:
            piece = pool_mean(piece, factor)
        # Bins (partly) outside the recorded samples are missing, not part-averaged.
        before = min(n_bins, _ceil_div(max(0, -start), factor))
        after = min(n_bins - before,
                    _ceil_div(max(0, start + n_bins * factor - n_grid), factor))
        piece[:, :before] = np.nan
        piece[:, n_bins - after:] = np.nan
        in_span = np.zeros(n_bins, dtype=bool)
        for span_onset, span_duration, _ in spans:
            i0, i1 = span_to_bins(span_onset, span_duration, origin_s=origin, dt_s=dt_s,
                                  n_bins=n_bins, cell=cell)
            in_span[i0:i1] = True
        piece[:, in_span] = np.nan
        piece[bad_rows] = np.nan
        if after:
            quirks.append(Quirk("segment_past_end",
                                f"{source}: segment {label!r} (onset {onset:.3f} s, "
                                f"{n_bins * dt_s:.3f} s) runs past the end of the recording "
                                f"({duration_s:.3f} s); its last {after} bin(s) are NaN."))
        if before:
            quirks.append(Quirk("segment_before_start",
                                f"{source}: segment {label!r} starts {-onset:.3f} s before the "
                                f"recording; its first {before} bin(s) are NaN."))
        out[label] = piece.astype(np.float32)
        cuts[label] = SegmentCut(label=label, onset_s=onset, start=int(start), origin_s=origin,
                                 n_bins=int(n_bins), n_padded=int(before + after),
                                 n_bad_span=int(in_span.sum()))

    return EEGSubjectResult(
        path=source, subject=subject, ch_names=ch_names,
        bads=tuple(ch for ch in ch_names if ch in bad_set),
        positions=_positions(raw), unit="V", sfreq_in=sfreq, sfreq_out=params.sfreq_out,
        first_samp=first_samp, n_samples_in=n_samples_in, segments=out, cuts=cuts,
        missing=missing, bad_spans=spans, other_annotations=other, params=params,
        quirks=tuple(quirks))


def _rate_ratio(sfreq: float, dt_ms: float) -> Fraction:
    """``sfreq_out / sfreq`` as a fraction, from the decimal values the user gave."""
    sfreq_q = Fraction(sfreq).limit_denominator(_MAX_RATIO_DENOMINATOR)
    dt_q = Fraction(dt_ms).limit_denominator(_MAX_RATIO_DENOMINATOR)
    return Fraction(1000) / (dt_q * sfreq_q)


def _resample_exact(raw: mne.io.BaseRaw, dt_ms: float, source: str, level: str) -> np.ndarray:
    """FFT-resample ``raw`` to ``1000 / dt_ms`` Hz with output sample ``j`` at exactly ``j * dt``.

    MNE's FFT resampling (:func:`mne.filter.resample`, what
    :meth:`mne.io.Raw.resample` calls) pads the trace (``npad='auto'``: to a
    power of two), drops ``round(ratio * npad)`` output samples from the front
    and works on ``round(ratio * padded_length)`` samples. When those products
    are not whole numbers the output grid is shifted and stretched: 500 Hz to
    100 Hz on a 20 s recording put sample ``j`` 4 ms before ``j * 10 ms``. So
    only a whole number of output periods is resampled (the last ``n % q``
    input samples, where ``ratio = p / q``, are left out: they would make a
    part-recorded last sample), padded on each side by a multiple of ``q``
    chosen so that the FFT length factors into small primes. The same
    function, window and edge padding as ``Raw.resample``; a few channels at a
    time, so the memory beyond the recording is a fraction of it.

    Returns
    -------
    numpy.ndarray
        ``(n_channels, n_keep * p / q)`` float64 on the output grid.
    """
    from mne.filter import resample
    from scipy.fft import next_fast_len

    ratio = _rate_ratio(float(raw.info["sfreq"]), dt_ms)
    q = ratio.denominator
    n_keep = (raw.n_times // q) * q
    if q > _MAX_RATIO_DENOMINATOR or n_keep == 0:
        raise RawDataError(
            f"{source}: cannot resample this {raw.info['sfreq']:g} Hz recording of "
            f"{raw.n_times} samples to {1000.0 / dt_ms:g} Hz on an exact grid (rate ratio "
            f"{ratio}); choose a dt_ms that makes a simpler ratio, or method='pool'.")
    base = q * -(-_MIN_RESAMPLE_PAD // q)
    npad = base
    for k in range(_PAD_SEARCH):
        candidate = base + k * q
        if next_fast_len(n_keep + 2 * candidate, real=True) == n_keep + 2 * candidate:
            npad = candidate
            break
    n_out = int(n_keep * ratio)
    out = np.empty((len(raw.ch_names), n_out))
    for chunk in _channel_chunks(len(raw.ch_names)):
        x = raw.get_data(picks=chunk, stop=n_keep)
        out[chunk] = resample(x, up=float(ratio.numerator), down=float(q), npad=npad,
                              verbose=level)
    return out


def _zero_nonfinite(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, 0.0)


def _cut(read: Any, n_total: int, n_channels: int, start: int, n_samples: int) -> np.ndarray:
    """Samples ``[start, start + n_samples)`` of every channel, float64, NaN outside the data.

    ``read(lo, hi)`` returns samples ``lo:hi`` of the trace on the grid being cut.
    """
    piece = np.full((n_channels, n_samples), np.nan)
    lo, hi = max(start, 0), min(start + n_samples, n_total)
    if hi > lo:
        piece[:, lo - start:hi - start] = read(lo, hi)
    return piece


def _channel_chunks(n_channels: int) -> list[list[int]]:
    return [list(range(i, min(i + _CHANNEL_CHUNK, n_channels)))
            for i in range(0, n_channels, _CHANNEL_CHUNK)]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _rereference(raw: mne.io.BaseRaw, reference: str | tuple[str, ...], bad_set: set[str],
                 source: str, level: str) -> None:
    if reference == "average":
        good = [ch for ch in raw.ch_names if ch not in bad_set]
        if not good:
            raise RawDataError(f"{source}: every EEG channel is bad; an average reference "
                               f"cannot be formed.")
        # MNE averages over the channels not in info['bads']; add the non-finite ones.
        bads_before = list(raw.info["bads"])
        raw.info["bads"] = [ch for ch in raw.ch_names if ch in bad_set]
        try:
            raw.set_eeg_reference("average", projection=False, verbose=level)
        finally:
            raw.info["bads"] = bads_before
        return
    absent = [ch for ch in reference if ch not in raw.ch_names]
    if absent:
        raise RawDataError(f"{source}: reference channel(s) {', '.join(absent)} are not EEG "
                           f"channels of this recording (channels: {_show(raw.ch_names)}).")
    bad = [ch for ch in reference if ch in bad_set]
    if bad:
        raise RawDataError(f"{source}: reference channel(s) {', '.join(bad)} are marked bad in "
                           f"this recording; re-referencing to them would corrupt every "
                           f"channel. Use reference='average' or other channels.")
    raw.set_eeg_reference(list(reference), projection=False, verbose=level)


def preprocess_subject(task: EEGSubjectTask) -> EEGSubjectResult:
    """Read and preprocess one recording: the picklable function for parallel workers.

    :func:`read_raw_eeg` then :func:`preprocess_raw`. Quirks are returned,
    not warned.

    Parameters
    ----------
    task : EEGSubjectTask

    Returns
    -------
    EEGSubjectResult
    """
    if not isinstance(task, EEGSubjectTask):
        raise TypeError(f"task must be an EEGSubjectTask; got {type(task).__name__}.")
    raw = read_raw_eeg(task.path, verbose=task.params.verbose)
    return preprocess_raw(raw, task.segments, task.params, subject=task.subject)


def report_quirks(results: Iterable[EEGSubjectResult], counts: dict[str, int] | None = None
                  ) -> dict[str, int]:
    """Warn about every quirk of the results in this process, and count them by kind.

    Parameters
    ----------
    results : iterable of EEGSubjectResult
    counts : dict, optional
        Added to in place (e.g. a build record's ``quirks``).

    Returns
    -------
    dict of str to int
        ``counts`` (a new dict if none was given).
    """
    counts = {} if counts is None else counts
    for result in results:
        for quirk in result.quirks:
            counts[quirk.kind] = counts.get(quirk.kind, 0) + 1
            warnings.warn(quirk.message, DataQuirkWarning, stacklevel=2)
    return counts


def preprocess_subjects(tasks: Iterable[EEGSubjectTask], *, n_jobs: int | None = 1,
                        progress: bool | None = None, counts: dict[str, int] | None = None
                        ) -> list[EEGSubjectResult]:
    """Preprocess recordings in parallel (:func:`parallel_map`), then report their quirks.

    Results do not depend on ``n_jobs``: each recording is processed alone,
    with one BLAS thread, wherever it runs.

    Parameters
    ----------
    tasks : iterable of EEGSubjectTask
    n_jobs : int or None, default 1
        joblib's convention (:func:`~deepstrf.preprocessing.parallel.parallel_map`).
    progress : bool or None
        Progress bar (see ``parallel_map``).
    counts : dict, optional
        Quirk counts are added to it (:func:`report_quirks`).

    Returns
    -------
    list of EEGSubjectResult
        In task order.
    """
    from deepstrf.preprocessing.parallel import parallel_map

    tasks = list(tasks)
    for task in tasks:
        if not isinstance(task, EEGSubjectTask):
            raise TypeError(f"tasks must be EEGSubjectTask items; got {type(task).__name__}.")
    results = parallel_map(preprocess_subject, tasks, n_jobs=n_jobs, desc="EEG recordings",
                           progress=progress)
    found = report_quirks(results, {})
    if counts is not None:
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n
    logger.info("preprocessed %d EEG recording(s): %d segment(s), %d bad channel(s)%s",
                len(results), sum(len(r.segments) for r in results),
                sum(len(r.bads) for r in results),
                "; quirks " + ", ".join(f"{k}={v}" for k, v in sorted(found.items()))
                if found else "")
    return results
