"""NEMS0 recording archives, read in place (no extraction, no torch).

The David lab (LBHB) publishes NAT4, Espejo 2019 and Wingert 2026 as NEMS0
"recordings": gzip tars written by ``nems0.recording.Recording.as_targz``.
Each holds, under one wrapper folder (any name; none is accepted too),

==============================  ===========================================
``<rec>.meta.json``             the recording's meta dict (NEMS's JSON
                                encoder writes arrays as ``{"__ndarray__":
                                list, "dtype": ..., "shape": ...}``)
``<rec>.<sig>.json``            the signal's sidecar: ``name``, ``chans``,
                                ``fs``, ``meta``, ``recording``,
                                ``segments`` (``[[start, end], ...]`` in
                                samples), ``signal_type`` (``"<class
                                'nems0.signal.PointProcess'>"``), ...
``<rec>.<sig>.epoch.csv``       the epoch table: a header row, then
                                ``start,end,name`` (seconds), one row per
                                occurrence
``<rec>.<sig>.csv``             RasterizedSignal: one row per sample, one
                                column per channel, ``%.18e``, NaN as
                                ``nan``
``<rec>.<sig>.h5``              PointProcess: one dataset per channel of
                                spike times in s from recording start;
                                TiledSignal: one ``(F, T)`` dataset per
                                epoch name
==============================  ===========================================

:func:`read_recording` reads one recording in a single sequential pass over
the archive: small members (JSON, epoch tables) are read whole, a CSV is
parsed by numpy's C reader as it streams out of the gzip (about 3 million
values a second, so a NAT4-sized population raster of 75 million values
takes some 25 s), an HDF5 member is copied to memory or, above 64 MB, to a
temporary file (HDF5 needs random access) and read from there. Archives
nested in archives (``<area>_single_sites.zip`` of ``.tgz``, Espejo's
``.tgz`` of ``.tgz``) are read the same way, member by member from disk
(:func:`iter_recordings`, ``read_recording(container, member=...)``); the
outer archive is never unpacked, on disk or in memory. Every malformed piece
raises :class:`NemsFormatError`, which names the archive (outer and inner)
and the member.

Epoch arithmetic
----------------
All in this module, following NEMS0's ``signal.py``:

* epoch bounds in samples are ``round(t * fs)`` (numpy's round half to even,
  as ``SignalBase.get_epoch_bounds``): :func:`seconds_to_samples`;
* a spike at ``t`` s belongs to sample ``floor(t * fs)``
  (``PointProcess.rasterize``), and to bin ``floor(t*fs) - round(start*fs)``
  of an occurrence starting at ``start``. A spike exactly on a sample edge
  belongs to the sample that starts there, as the floor intends, even where
  the float product ``t * fs`` lands a hair below the whole number
  (``0.29 * 100 == 28.999999999999996``): :func:`spike_samples` snaps a
  product within float rounding error of a whole number onto it;
* occurrences of ``STIM_*`` epochs with their ``PreStimSilence`` /
  ``PostStimSilence`` flanks: :func:`stim_occurrences`;
* spike counts per occurrence, through the package's one binning function
  (:func:`deepstrf.preprocessing.spikes.bin_flat_spike_times`):
  :func:`occurrence_spike_times`, :func:`rasterize_occurrences`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import json
import logging
import math
import numbers
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from deepstrf._validation import check_int, check_positive
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.preprocessing.spikes import bin_flat_spike_times

__all__ = [
    "NemsFormatError",
    "EpochTable",
    "SignalSidecar",
    "RasterizedSignal",
    "PointProcess",
    "TiledSignal",
    "NemsRecording",
    "StimOccurrence",
    "read_recording",
    "iter_recordings",
    "list_recordings",
    "seconds_to_samples",
    "spike_samples",
    "stim_occurrences",
    "occurrence_spike_times",
    "rasterize_occurrences",
]

logger = logging.getLogger(__name__)

PathType = str | os.PathLike

SIGNAL_TYPES = ("RasterizedSignal", "PointProcess", "TiledSignal")
_DATA_EXT = {"RasterizedSignal": "csv", "PointProcess": "h5", "TiledSignal": "h5"}
_RECORDING_SUFFIXES = (".tgz", ".tar.gz")
_EPS = float(np.finfo(np.float64).eps)
# HDF5 members up to this size are read in memory, larger ones via a temporary file.
_H5_IN_MEMORY = 64 << 20


class NemsFormatError(RawDataError):
    """A NEMS0 recording archive is malformed.

    Attributes
    ----------
    archive : str
        The archive, as ``outer > inner`` for a recording inside a container.
    member : str or None
        The member at fault (None when the archive itself is unreadable).
    """

    def __init__(self, archive: str, member: str | None, problem: str) -> None:
        self.archive = archive
        self.member = member
        where = archive if member is None else f"{archive}, member {member!r}"
        super().__init__(f"{where}: {problem}")


# ---------------------------------------------------------------------------
# Epoch arithmetic
# ---------------------------------------------------------------------------

def seconds_to_samples(seconds: Any, fs: float) -> np.ndarray:
    """Epoch bounds in seconds to sample indices, as NEMS0 does: ``round(t * fs)``.

    Rounding is numpy's (half to even), as in ``SignalBase.get_epoch_bounds``.

    Parameters
    ----------
    seconds : array_like
        Times in s.
    fs : float
        Sample rate in Hz, > 0.

    Returns
    -------
    numpy.ndarray
        int64 samples, same shape as ``seconds``.

    Examples
    --------
    >>> seconds_to_samples([0.25, 1.5, 0.005, 0.015], 100.0).tolist()
    [25, 150, 0, 2]
    """
    fs = check_positive("fs", fs)
    values = np.asarray(seconds, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("epoch times must be finite; got NaN or inf.")
    return np.rint(values * fs).astype(np.int64)


def _snapped_samples(times_s: np.ndarray, fs: float) -> np.ndarray:
    """``t * fs`` with products within float rounding error of a whole number made whole."""
    x = np.asarray(times_s, dtype=np.float64) * fs
    nearest = np.rint(x)
    # Rounding error of the decimal-to-binary conversion of t and of the product,
    # with a wide margin; about 1e-9 samples for a spike at 1000 s at 1 kHz.
    tol = (16.0 * _EPS) * (np.abs(x) + 1.0)
    return np.where(np.abs(x - nearest) <= tol, nearest, x)


def spike_samples(times_s: Any, fs: float) -> np.ndarray:
    """The sample each spike falls in: ``floor(t * fs)``, NEMS0's rasterisation rule.

    A spike exactly on a sample edge falls in the sample that starts there,
    although the float product may land just below the edge
    (``0.29 * 100 == 28.999999999999996`` gives sample 29, not 28).

    Parameters
    ----------
    times_s : array_like
        Spike times in s from recording start.
    fs : float
        Sample rate in Hz, > 0.

    Returns
    -------
    numpy.ndarray
        int64 sample indices.

    Examples
    --------
    >>> spike_samples([0.29, 0.2899, 700.29], 100.0).tolist()
    [29, 28, 70029]
    """
    fs = check_positive("fs", fs)
    times = np.asarray(times_s, dtype=np.float64)
    if not np.isfinite(times).all():
        raise ValueError("spike times must be finite; got NaN or inf.")
    return np.floor(_snapped_samples(times, fs)).astype(np.int64)


def _check_bounds(bounds: Any) -> np.ndarray:
    array = np.asarray(bounds)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"bounds must be an (R, 2) array of [start, end) samples; got shape "
                         f"{array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise ValueError("bounds must be whole sample indices; use seconds_to_samples() "
                             "to convert epoch times.")
    array = array.astype(np.int64)
    if (array[:, 1] < array[:, 0]).any():
        raise ValueError("bounds must have end >= start in every row.")
    return array


def occurrence_spike_times(times_s: Any, bounds: Any, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """One channel's spikes inside each occurrence, in ms from the occurrence's start.

    A spike at ``t`` belongs to occurrence ``[s0, s1)`` (samples) when
    ``s0 <= t*fs < s1`` under the rule of :func:`spike_samples`; its time is
    returned as ``(t*fs - s0) * 1000/fs`` ms, with edge products snapped, so
    that binning it with :func:`deepstrf.preprocessing.spikes.bin_flat_spike_times`
    at ``dt_ms = k * 1000/fs`` gives NEMS's ``floor(t*fs) - s0`` summed in
    blocks of ``k``.

    Parameters
    ----------
    times_s : array_like
        The channel's spike times in s (any order).
    bounds : array_like
        ``(R, 2)`` int sample bounds ``[start, end)`` of the occurrences.
    fs : float
        The signal's sample rate in Hz.

    Returns
    -------
    times_ms : numpy.ndarray
        float64 relative spike times of every occurrence, one after another.
    lengths : numpy.ndarray
        Spikes per occurrence (intp, length R).
    """
    fs = check_positive("fs", fs)
    bounds = _check_bounds(bounds)
    times = np.sort(np.asarray(times_s, dtype=np.float64).reshape(-1))
    if not np.isfinite(times).all():
        raise ValueError("spike times must be finite; got NaN or inf.")
    x = _snapped_samples(times, fs)
    lo = np.searchsorted(x, bounds[:, 0], side="left")
    hi = np.searchsorted(x, bounds[:, 1], side="left")
    lengths = (hi - lo).astype(np.intp)
    if not len(bounds):
        return np.zeros(0), lengths
    take = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if lengths.sum() else \
        np.zeros(0, dtype=np.intp)
    starts = np.repeat(bounds[:, 0].astype(np.float64), lengths)
    return (x[take] - starts) * (1000.0 / fs), lengths


def rasterize_occurrences(times_s: Any, bounds: Any, fs: float, *, bin_samples: int = 1,
                          n_bins: int | None = None) -> np.ndarray:
    """Spike counts of one channel per occurrence, in bins of ``bin_samples`` samples.

    Parameters
    ----------
    times_s, bounds, fs
        As for :func:`occurrence_spike_times`.
    bin_samples : int, default 1
        Samples per bin (10 turns NAT4's 1 kHz spike times into 10 ms bins).
        Every occurrence's length must be a multiple of it.
    n_bins : int, optional
        Bins per row; default the longest occurrence's. Bins past an
        occurrence's end are NaN, as NEMS pads shorter epochs.

    Returns
    -------
    numpy.ndarray
        float32 ``(R, n_bins)`` counts.

    Raises
    ------
    ValueError
        If an occurrence's length is not a multiple of ``bin_samples``.
    """
    fs = check_positive("fs", fs)
    bounds = _check_bounds(bounds)
    bin_samples = check_int("bin_samples", bin_samples, minimum=1)
    spans = bounds[:, 1] - bounds[:, 0]
    bad = np.flatnonzero(spans % bin_samples)
    if bad.size:
        raise ValueError(f"occurrence {int(bad[0])} lasts {int(spans[bad[0]])} samples, not a "
                         f"multiple of bin_samples={bin_samples}; choose a bin that divides "
                         f"every occurrence.")
    filled = spans // bin_samples
    if n_bins is None:
        n_bins = int(filled.max()) if len(filled) else 0
    n_bins = check_int("n_bins", n_bins, minimum=0)
    rel_ms, lengths = occurrence_spike_times(times_s, bounds, fs)
    counts = bin_flat_spike_times(rel_ms, lengths, bin_samples * 1000.0 / fs, n_bins)
    counts[np.arange(n_bins)[None, :] >= filled[:, None]] = np.nan
    return counts


@dataclass(frozen=True)
class StimOccurrence:
    """One occurrence of a stimulus epoch, in samples of the signal.

    Attributes
    ----------
    name : str
        Epoch name (``STIM_...``).
    repeat : int
        0-based index of this occurrence among those of the same name, in
        order of start time.
    start, end : int
        Sample bounds ``[start, end)`` of the epoch.
    pre_samples, post_samples : int
        Lengths of the ``PreStimSilence`` epoch that starts with it and the
        ``PostStimSilence`` epoch that ends with it; 0 when there is none.
    """

    name: str
    repeat: int
    start: int
    end: int
    pre_samples: int
    post_samples: int

    @property
    def n_samples(self) -> int:
        """Length of the occurrence in samples."""
        return self.end - self.start


# ---------------------------------------------------------------------------
# Epoch tables and sidecars
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class EpochTable:
    """A NEMS epoch table: one row per occurrence, times in s, in file order.

    Attributes
    ----------
    start, end : numpy.ndarray
        float64 times in s.
    name : tuple of str
        Epoch names.
    extra : dict
        Columns other than ``start``, ``end``, ``name`` (as strings).
    archive, member : str
        Where the table was read.
    """

    start: np.ndarray
    end: np.ndarray
    name: tuple[str, ...]
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    archive: str = ""
    member: str = ""

    def __len__(self) -> int:
        return len(self.name)

    def _order(self) -> np.ndarray:
        return np.argsort(self.start, kind="stable")

    def names(self, prefix: str | None = None) -> tuple[str, ...]:
        """Distinct epoch names (starting with ``prefix``) in order of first start."""
        seen: dict[str, None] = {}
        for i in self._order():
            name = self.name[i]
            if prefix is None or name.startswith(prefix):
                seen.setdefault(name)
        return tuple(seen)

    def counts(self, prefix: str | None = None) -> dict[str, int]:
        """Occurrences per epoch name (starting with ``prefix``), in order of first start."""
        counts = dict.fromkeys(self.names(prefix), 0)
        for name in self.name:
            if name in counts:
                counts[name] += 1
        return counts

    @functools.cached_property
    def _rows_by_name(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = {}
        for i in self._order():
            rows.setdefault(self.name[i], []).append(int(i))
        return rows

    def occurrences(self, name: str) -> np.ndarray:
        """``(R, 2)`` float64 ``[start, end]`` seconds of epoch ``name``, by start time."""
        rows = self._rows_by_name.get(name, [])
        return np.stack([self.start[rows], self.end[rows]], axis=1) if rows else \
            np.zeros((0, 2))

    def occurrence_samples(self, name: str, fs: float) -> np.ndarray:
        """``(R, 2)`` int64 sample bounds of epoch ``name`` at ``fs``, by start time."""
        return seconds_to_samples(self.occurrences(name), fs).reshape(-1, 2)


@dataclass(frozen=True, eq=False)
class SignalSidecar:
    """A signal's JSON sidecar, checked.

    Attributes
    ----------
    name : str
        Signal name (``resp``, ``stim``, ...), from the file name.
    recording : str
        The sidecar's ``recording`` (the file-name prefix if absent).
    signal_type : str
        ``'RasterizedSignal'``, ``'PointProcess'`` or ``'TiledSignal'``.
    fs : float
        Sample rate in Hz.
    chans : tuple of str or None
        Channel ids (cell ids of a response, band labels of a stimulus).
    segments : numpy.ndarray
        int64 ``(k, 2)`` sample bounds ``[start, end)`` of the stored pieces.
    meta : dict
        The sidecar's ``meta`` (``{}`` if null).
    raw : dict
        The whole sidecar as read.
    archive, member : str
        Where it was read.
    """

    name: str
    recording: str
    signal_type: str
    fs: float
    chans: tuple[str, ...] | None
    segments: np.ndarray
    meta: Mapping[str, Any]
    raw: Mapping[str, Any]
    archive: str
    member: str

    @property
    def n_samples(self) -> int:
        """Samples stored: the total length of the segments."""
        return int((self.segments[:, 1] - self.segments[:, 0]).sum())

    def sample_rows(self, bounds: np.ndarray) -> np.ndarray:
        """Map sample bounds on the recording's time line to rows of the stored data."""
        bounds = _check_bounds(bounds)
        seg = self.segments
        offsets = np.concatenate([[0], np.cumsum(seg[:, 1] - seg[:, 0])[:-1]])
        k = np.searchsorted(seg[:, 0], bounds[:, 0], side="right") - 1
        inside = (k >= 0) & (bounds[:, 1] <= seg[np.clip(k, 0, None), 1])
        if not inside.all():
            i = int(np.flatnonzero(~inside)[0])
            raise ValueError(f"{self.archive}, member {self.member!r}: samples "
                             f"{bounds[i].tolist()} are not inside one stored segment "
                             f"{seg.tolist()}.")
        return bounds - seg[k, :1] + offsets[k, None]


@dataclass(frozen=True, eq=False)
class _Signal:
    sidecar: SignalSidecar
    epochs: EpochTable

    @property
    def name(self) -> str:
        """Signal name."""
        return self.sidecar.name

    @property
    def fs(self) -> float:
        """Sample rate in Hz."""
        return self.sidecar.fs

    @property
    def chans(self) -> tuple[str, ...] | None:
        """Channel ids."""
        return self.sidecar.chans

    def occurrence_samples(self, epoch: str) -> np.ndarray:
        """``(R, 2)`` int64 sample bounds of the occurrences of ``epoch``, by start time."""
        return self.epochs.occurrence_samples(epoch, self.fs)

    def stim_occurrences(self, prefix: str = "STIM_") -> tuple[StimOccurrence, ...]:
        """:func:`stim_occurrences` of this signal's epochs."""
        return stim_occurrences(self.epochs, self.fs, prefix=prefix)


@dataclass(frozen=True, eq=False)
class RasterizedSignal(_Signal):
    """A RasterizedSignal: ``values`` is ``(n_samples, n_chans)``, rows as in the CSV."""

    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def extract(self, bounds: Any) -> np.ndarray:
        """Rows of each occurrence as ``(R, C, T)`` (NEMS's ``extract_epoch`` layout).

        ``bounds`` are sample bounds on the recording's time line; shorter
        occurrences are NaN-padded to the longest.
        """
        bounds = _check_bounds(bounds)
        rows = self.sidecar.sample_rows(bounds)
        spans = bounds[:, 1] - bounds[:, 0]
        length = int(spans.max()) if len(spans) else 0
        out = np.full((len(bounds), self.values.shape[1], length), np.nan, dtype=self.values.dtype)
        for i, (a, b) in enumerate(rows):
            out[i, :, :b - a] = self.values[a:b].T
        return out

    def extract_epoch(self, epoch: str) -> np.ndarray:
        """:meth:`extract` of every occurrence of the named epoch."""
        return self.extract(self.occurrence_samples(epoch))


@dataclass(frozen=True, eq=False)
class PointProcess(_Signal):
    """A PointProcess: sorted float64 spike times in s per channel, in ``chans`` order."""

    spike_times: Mapping[str, np.ndarray] = field(default_factory=dict)

    def rasterize(self, bounds: Any, *, bin_samples: int = 1,
                  n_bins: int | None = None) -> np.ndarray:
        """Counts ``(R, C, n_bins)`` of every channel in each occurrence.

        See :func:`rasterize_occurrences` for the rule and the parameters.
        """
        bounds = _check_bounds(bounds)
        rows = [rasterize_occurrences(self.spike_times[c], bounds, self.fs,
                                      bin_samples=bin_samples, n_bins=n_bins)
                for c in self.spike_times]
        if not rows:
            spans = (bounds[:, 1] - bounds[:, 0]) // bin_samples
            width = n_bins if n_bins is not None else int(spans.max(initial=0))
            return np.zeros((len(bounds), 0, width), dtype=np.float32)
        return np.stack(rows, axis=1)


@dataclass(frozen=True, eq=False)
class TiledSignal(_Signal):
    """A TiledSignal: one ``(F, T)`` array per epoch name (HDF5's alphabetical order)."""

    tiles: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class NemsRecording:
    """One NEMS0 recording, as read by :func:`read_recording`.

    Attributes
    ----------
    archive : str
        Where it was read (``outer > inner`` for a nested recording).
    name : str
        The recording name (prefix of the meta file).
    meta : dict
        The recording's meta dict, arrays decoded.
    available : tuple of str
        Every signal found in the archive.
    sidecars, epochs : dict
        Sidecar and epoch table of each signal read.
    signals : dict
        The signals read with their data (empty when ``load_data=False``).
    quirks : dict
        Tolerated departures from the format, kind -> count (each also
        reported as a :class:`~deepstrf.errors.DataQuirkWarning`).
    """

    archive: str
    name: str
    meta: Mapping[str, Any]
    available: tuple[str, ...]
    sidecars: Mapping[str, SignalSidecar]
    epochs: Mapping[str, EpochTable]
    signals: Mapping[str, RasterizedSignal | PointProcess | TiledSignal]
    quirks: Mapping[str, int]

    def __getitem__(self, name: str) -> RasterizedSignal | PointProcess | TiledSignal:
        try:
            return self.signals[name]
        except KeyError as err:
            read = ", ".join(self.signals) or "none (load_data=False)"
            raise KeyError(f"{self.archive}: signal {name!r} was not read; read: {read}; in "
                           f"the archive: {', '.join(self.available)}. Pass signals=[...] "
                           f"naming it.") from err

    def __contains__(self, name: object) -> bool:
        return name in self.signals


# ---------------------------------------------------------------------------
# Parsing the pieces
# ---------------------------------------------------------------------------

def _decode_ndarrays(obj: dict) -> Any:
    """NEMS's ``json_numpy_obj_hook`` for encoded arrays."""
    if "__ndarray__" in obj and "dtype" in obj and "shape" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"]).reshape(obj["shape"])
    return obj


def _parse_json(data: bytes, archive: str, member: str, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_hook=_decode_ndarrays)
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise NemsFormatError(archive, member, f"the {what} is not valid JSON ({err}).") from err


def _parse_sidecar(data: bytes, archive: str, member: str,
                   quirks: dict[str, int]) -> tuple[dict, str]:
    """Parse and check the sidecar except ``segments``; return (raw dict, signal type)."""
    raw = _parse_json(data, archive, member, "signal sidecar")
    if not isinstance(raw, dict):
        raise NemsFormatError(archive, member, f"a signal sidecar must be a JSON object; got "
                                               f"{type(raw).__name__}.")
    fs = raw.get("fs")
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real) or not math.isfinite(fs) \
            or fs <= 0:
        raise NemsFormatError(archive, member, f"'fs' must be a positive sample rate in Hz; "
                                               f"got {fs!r}.")
    chans = raw.get("chans")
    if chans is not None and (not isinstance(chans, list)
                              or not all(isinstance(c, str) for c in chans)):
        raise NemsFormatError(archive, member, "'chans' must be a list of channel-id strings "
                                               f"(or null); got {str(chans)[:80]}.")
    if chans is not None and len(set(chans)) != len(chans):
        dup = next(c for c in chans if chans.count(c) > 1)
        raise NemsFormatError(archive, member, f"'chans' lists {dup!r} more than once.")
    kind = raw.get("signal_type")
    if kind is None:
        # NEMS0's loaders read a sidecar without signal_type as a RasterizedSignal.
        _quirk(quirks, "sidecar_without_signal_type",
               f"{archive}, member {member!r}: no 'signal_type'; read as a RasterizedSignal, "
               f"as NEMS0 does.")
        kind = "RasterizedSignal"
    if not isinstance(kind, str) or not any(t in kind for t in SIGNAL_TYPES):
        raise NemsFormatError(archive, member, f"'signal_type' must name one of "
                                               f"{', '.join(SIGNAL_TYPES)}; got {kind!r}.")
    kind = next(t for t in SIGNAL_TYPES if t in kind)
    if kind == "PointProcess" and chans is None:
        raise NemsFormatError(archive, member, "a PointProcess sidecar must list its channels "
                                               "in 'chans'; got null.")
    meta = raw.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise NemsFormatError(archive, member, f"'meta' must be an object or null; got "
                                               f"{type(meta).__name__}.")
    return raw, kind


def _parse_segments(raw: dict, default_end: int, archive: str, member: str,
                    quirks: dict[str, int]) -> np.ndarray:
    segments = raw.get("segments")
    if segments is None:
        _quirk(quirks, "sidecar_without_segments",
               f"{archive}, member {member!r}: no 'segments'; using [[0, {default_end}]] as "
               f"NEMS0 does.")
        return np.array([[0, default_end]], dtype=np.int64)
    try:
        array = np.asarray(segments, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros((0, 3))
    if array.ndim != 2 or array.shape[1] != 2 or not len(array) \
            or not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
        raise NemsFormatError(archive, member, f"'segments' must be a list of [start, end] "
                                               f"sample indices; got {str(segments)[:80]}.")
    array = array.astype(np.int64)
    if (array[:, 1] < array[:, 0]).any() or (array[1:, 0] < array[:-1, 1]).any() \
            or (array[:, 0] < 0).any():
        raise NemsFormatError(archive, member, f"'segments' must be ordered, non-overlapping "
                                               f"[start, end] pairs with start <= end; got "
                                               f"{array.tolist()}.")
    return array


def _parse_epochs(data: bytes, archive: str, member: str) -> EpochTable:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NemsFormatError(archive, member, f"the epoch table is not UTF-8 text ({err}).") \
            from err
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not {"start", "end", "name"} <= set(header):
        raise NemsFormatError(archive, member, f"an epoch table needs a header with columns "
                                               f"start, end, name; got {header!r}.")
    col = {name: i for i, name in enumerate(header)}
    starts: list[float] = []
    ends: list[float] = []
    names: list[str] = []
    extra: dict[str, list[str]] = {h: [] for h in header if h not in ("start", "end", "name")}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != len(header):
            raise NemsFormatError(archive, member, f"line {line} has {len(row)} fields, the "
                                                   f"header {len(header)}: {row!r}.")
        try:
            start, end = float(row[col["start"]]), float(row[col["end"]])
        except ValueError as err:
            raise NemsFormatError(archive, member, f"line {line}: start and end must be numbers "
                                                   f"(s); got {row!r}.") from err
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise NemsFormatError(archive, member, f"line {line}: an epoch needs finite times "
                                                   f"with end >= start; got {row!r}.")
        starts.append(start)
        ends.append(end)
        names.append(row[col["name"]])
        for key in extra:
            extra[key].append(row[col[key]])
    return EpochTable(start=np.asarray(starts, dtype=np.float64),
                      end=np.asarray(ends, dtype=np.float64), name=tuple(names),
                      extra={k: tuple(v) for k, v in extra.items()}, archive=archive,
                      member=member)


def _check_epochs_in_segments(epochs: EpochTable, fs: float, segments: np.ndarray,
                              archive: str) -> None:
    if not len(epochs):
        return
    s0 = seconds_to_samples(epochs.start, fs)
    s1 = seconds_to_samples(epochs.end, fs)
    k = np.searchsorted(segments[:, 0], s0, side="right") - 1
    inside = (k >= 0) & (s1 <= segments[np.clip(k, 0, None), 1])
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        raise NemsFormatError(
            archive, epochs.member,
            f"epoch {epochs.name[i]!r} (row {i + 1}: {epochs.start[i]!r}-{epochs.end[i]!r} s, "
            f"samples {int(s0[i])}-{int(s1[i])} at {fs:g} Hz) lies outside the signal's "
            f"segments {segments.tolist()}.")


def _read_raster_csv(stream: IO[bytes], archive: str, member: str,
                     dtype: np.dtype) -> np.ndarray:
    """Parse a RasterizedSignal CSV as it streams out of the archive; ``(rows, columns)``.

    numpy's C reader fills the array in place (no second copy). Blank lines
    are skipped, as NEMS0's ``pandas.read_csv`` skips them; the row count is
    checked against the sidecar's segments afterwards.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
        try:
            return np.loadtxt(stream, delimiter=",", dtype=dtype, ndmin=2, comments=None)
        except ValueError as err:
            raise NemsFormatError(archive, member, _csv_problem(str(err))) from err


def _csv_problem(message: str) -> str:
    """numpy's loadtxt message in terms of 1-based file lines."""
    found = re.search(r"number of columns changed from (\d+) to (\d+) at row (\d+)", message)
    if found:
        before, now, row = found.groups()
        return f"line {row} has {now} columns, the lines before {before}."
    found = re.search(r"could not convert string (.+) to \w+ at row (\d+), column (\d+)",
                      message)
    if found:
        token, row, column = found.groups()
        return (f"line {int(row) + 1}, column {column}: {token} is not a number (NaN must be "
                f"written 'nan').")
    return f"unreadable RasterizedSignal CSV ({message})."


def _read_h5(stream: IO[bytes], size: int, archive: str, member: str) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 member, by full path without the leading '/'."""
    import h5py

    with contextlib.ExitStack() as stack:
        if size <= _H5_IN_MEMORY:
            spool: IO[bytes] = io.BytesIO(stream.read())
        else:
            spool = stack.enter_context(tempfile.TemporaryFile(prefix="deepstrf-nems-"))
            shutil.copyfileobj(stream, spool, 1 << 20)
            spool.seek(0)
        datasets: dict[str, np.ndarray] = {}
        try:
            with h5py.File(spool, "r") as f:
                def visit(path: str, node: Any) -> None:
                    if isinstance(node, h5py.Dataset):
                        datasets[path] = np.asarray(node[()])
                f.visititems(visit)
        except (OSError, ValueError, KeyError) as err:
            raise NemsFormatError(archive, member, f"not a readable HDF5 file ({err}).") from err
    return datasets


def _quirk(quirks: dict[str, int], kind: str, message: str, count: int = 1) -> None:
    quirks[kind] = quirks.get(kind, 0) + count
    warnings.warn(message, DataQuirkWarning, stacklevel=4)


# ---------------------------------------------------------------------------
# One pass over a recording's members
# ---------------------------------------------------------------------------

_VIEW = re.compile(r"^\d+\.")
_KIND_BY_SUFFIX = ((".meta.json", "meta"), (".epoch.csv", "epochs"), (".json", "sidecar"),
                   (".csv", "csv"), (".h5", "h5"))


def _classify(basename: str) -> tuple[str, str, str] | None:
    """(kind, recording prefix, signal) of a member's file name, None if not a NEMS file."""
    if basename.startswith("._"):  # macOS resource forks
        return None
    for suffix, kind in _KIND_BY_SUFFIX:
        if basename.endswith(suffix):
            stem = basename[:-len(suffix)]
            if kind == "meta":
                return (kind, stem, "") if stem else None
            prefix, dot, signal = stem.rpartition(".")
            if not dot or not prefix or not signal:
                return None
            return kind, prefix, signal
    return None


@dataclass
class _Pieces:
    meta: list[tuple[str, str, bytes]] = field(default_factory=list)   # (member, prefix, data)
    text: dict[tuple[str, str], tuple[str, str, bytes]] = field(default_factory=dict)
    data: dict[str, tuple[str, str, Any]] = field(default_factory=dict)  # sig -> (member, ext, x)
    prefixes: dict[str, set[str]] = field(default_factory=dict)          # sig -> prefixes
    views: list[tuple[str, str]] = field(default_factory=list)           # (member, prefix)
    unknown: list[str] = field(default_factory=list)


def _complete(pieces: _Pieces, wanted: frozenset[str]) -> bool:
    """Whether the meta and every wanted signal's data, sidecar and epochs are in."""
    return bool(pieces.meta) and all(s in pieces.data and (s, "sidecar") in pieces.text
                                      and (s, "epochs") in pieces.text for s in wanted)


def _collect(members: Iterator[tuple[str, int, IO[bytes]]], archive: str,
             wanted: frozenset[str] | None, load_data: bool, dtype: np.dtype,
             quirks: dict[str, int], scan_all: bool = True) -> _Pieces:
    pieces = _Pieces()
    unknown = pieces.unknown  # reported once the archive is known to be a recording
    for member, size, stream in members:
        if not scan_all and wanted is not None and _complete(pieces, wanted):
            break  # the rest is not decompressed (NAT4: a 2 GB mask_est CSV after resp)
        found = _classify(posixpath.basename(member))
        if found is None:
            unknown.append(member)
            continue
        kind, prefix, signal = found
        if kind == "meta":
            pieces.meta.append((member, prefix, stream.read()))
            continue
        if _VIEW.match(prefix):
            # '<view>.<rec>.<sig>.*': a signal NEMS0 saved again for a later view
            pieces.views.append((member, prefix))
            continue
        pieces.prefixes.setdefault(signal, set()).add(prefix)
        if kind in ("sidecar", "epochs"):
            key = (signal, kind)
            if key in pieces.text:
                raise NemsFormatError(archive, member, f"a second {kind} of signal {signal!r} "
                                                       f"(the first is {pieces.text[key][0]!r}).")
            pieces.text[key] = (member, prefix, stream.read())
            continue
        if signal in pieces.data:
            raise NemsFormatError(archive, member, f"a second data file of signal {signal!r} "
                                                   f"(the first is {pieces.data[signal][0]!r}).")
        payload: Any = None
        if load_data and (wanted is None or signal in wanted):
            if kind == "csv":
                payload = _read_raster_csv(stream, archive, member, dtype)
            else:
                payload = _read_h5(stream, size, archive, member)
        pieces.data[signal] = (member, kind, payload)
    return pieces


def _assemble(pieces: _Pieces, archive: str, wanted: frozenset[str] | None, load_data: bool,
              quirks: dict[str, int]) -> NemsRecording:
    if not pieces.meta:
        inner = [m for m in pieces.unknown if _is_recording_name(m)]
        hint = (f" It holds recording archives ({inner[0]!r}, ...): read them with "
                f"iter_recordings() or read_recording(..., member=...)." if inner else "")
        raise NemsFormatError(archive, None, "no '<recording>.meta.json' member; this is not a "
                                             "NEMS0 recording archive (or it is truncated)."
                                             + hint)
    if len(pieces.meta) > 1:
        raise NemsFormatError(archive, pieces.meta[1][0], f"a second meta file (the first is "
                                                          f"{pieces.meta[0][0]!r}).")
    if pieces.unknown:
        _quirk(quirks, "unknown_members", f"{archive}: {len(pieces.unknown)} member(s) that are "
                                          f"not NEMS0 recording files were skipped (e.g. "
                                          f"{pieces.unknown[0]!r}).", len(pieces.unknown))
    meta_member, rec_name, meta_bytes = pieces.meta[0]
    meta = _parse_json(meta_bytes, archive, meta_member, "recording meta file")
    if not isinstance(meta, dict):
        raise NemsFormatError(archive, meta_member, f"the recording meta must be a JSON object; "
                                                    f"got {type(meta).__name__}.")
    if pieces.views:
        later = [m for m, p in pieces.views if p.split(".", 1)[1] == rec_name]
        other = [m for m, p in pieces.views if p.split(".", 1)[1] != rec_name]
        if later:
            _quirk(quirks, "ignored_views", f"{archive}: {len(later)} member(s) of later NEMS0 "
                                            f"views were skipped; view 0 is read (e.g. "
                                            f"{later[0]!r}).", len(later))
        if other:
            _quirk(quirks, "unknown_members", f"{archive}: {len(other)} member(s) named like "
                                              f"no signal of recording {rec_name!r} were "
                                              f"skipped (e.g. {other[0]!r}).", len(other))
    available = tuple(pieces.prefixes)
    if wanted is None:
        selected = available
    else:
        missing = sorted(s for s in wanted if s not in available)
        if missing:
            raise NemsFormatError(archive, None, f"no signal {', '.join(map(repr, missing))}; "
                                                 f"the archive holds {', '.join(available)}.")
        selected = tuple(s for s in available if s in wanted)
    sidecars: dict[str, SignalSidecar] = {}
    epoch_tables: dict[str, EpochTable] = {}
    signals: dict[str, Any] = {}
    for sig in selected:
        data = pieces.data.get(sig)
        some_member = (data[0] if data else
                       next(v[0] for k, v in pieces.text.items() if k[0] == sig))
        if (sig, "sidecar") not in pieces.text:
            raise NemsFormatError(archive, some_member, f"signal {sig!r} has no JSON sidecar "
                                                        f"('<rec>.{sig}.json').")
        side_member, prefix, side_bytes = pieces.text[(sig, "sidecar")]
        raw, kind = _parse_sidecar(side_bytes, archive, side_member, quirks)
        if (sig, "epochs") not in pieces.text:
            raise NemsFormatError(archive, side_member, f"signal {sig!r} has no epoch table "
                                                        f"('<rec>.{sig}.epoch.csv').")
        ep_member, _, ep_bytes = pieces.text[(sig, "epochs")]
        epochs = _parse_epochs(ep_bytes, archive, ep_member)
        fs = float(raw["fs"])
        if data is None:
            raise NemsFormatError(archive, side_member, f"the sidecar describes a {kind}, but "
                                                        f"the archive has no "
                                                        f"'<rec>.{sig}.{_DATA_EXT[kind]}'.")
        data_member, ext, payload = data
        if ext != _DATA_EXT[kind]:
            raise NemsFormatError(archive, data_member, f"the sidecar {side_member!r} describes "
                                                        f"a {kind}, stored as .{_DATA_EXT[kind]}"
                                                        f", not .{ext}.")
        default_end = int(seconds_to_samples(epochs.end.max(), fs)) if len(epochs) else 0
        if kind == "RasterizedSignal" and payload is not None:
            default_end = len(payload)
        segments = _parse_segments(raw, default_end, archive, side_member, quirks)
        chans = tuple(raw["chans"]) if raw.get("chans") is not None else None
        sidecar = SignalSidecar(name=sig, recording=str(raw.get("recording") or prefix),
                                signal_type=kind, fs=fs, chans=chans, segments=segments,
                                meta=raw.get("meta") or {}, raw=raw, archive=archive,
                                member=side_member)
        _check_epochs_in_segments(epochs, fs, segments, archive)
        sidecars[sig] = sidecar
        epoch_tables[sig] = epochs
        if load_data:
            signals[sig] = _build_signal(sidecar, epochs, payload, archive, data_member)
    return NemsRecording(archive=archive, name=rec_name, meta=meta, available=available,
                         sidecars=sidecars, epochs=epoch_tables, signals=signals,
                         quirks=dict(quirks))


def _build_signal(sidecar: SignalSidecar, epochs: EpochTable, payload: Any, archive: str,
                  member: str) -> RasterizedSignal | PointProcess | TiledSignal:
    kind = sidecar.signal_type
    chans = sidecar.chans
    if kind == "RasterizedSignal":
        values = payload
        if values.shape[0] == 0 and chans is not None:
            values = values.reshape(0, len(chans))
        if chans is not None and values.shape[1] != len(chans):
            raise NemsFormatError(archive, member, f"{values.shape[1]} columns, but the sidecar "
                                                   f"{sidecar.member!r} lists {len(chans)} "
                                                   f"channels.")
        if values.shape[0] != sidecar.n_samples:
            raise NemsFormatError(archive, member, f"{values.shape[0]} rows (samples), but the "
                                                   f"segments of {sidecar.member!r} cover "
                                                   f"{sidecar.n_samples}.")
        values.flags.writeable = False
        return RasterizedSignal(sidecar=sidecar, epochs=epochs, values=values)
    if kind == "PointProcess":
        assert chans is not None  # checked with the sidecar
        extra = [k for k in payload if k not in chans]
        if extra:
            raise NemsFormatError(archive, member, f"dataset {extra[0]!r} is not a channel of "
                                                   f"the sidecar {sidecar.member!r} ('chans' "
                                                   f"lists {len(chans)}: {', '.join(chans[:5])}"
                                                   f"{', ...' if len(chans) > 5 else ''}).")
        absent = [c for c in chans if c not in payload]
        if absent:
            raise NemsFormatError(archive, member, f"no spike-time dataset for channel "
                                                   f"{absent[0]!r} of the sidecar "
                                                   f"{sidecar.member!r} ({len(absent)} missing).")
        times: dict[str, np.ndarray] = {}
        for chan in chans:
            array = payload[chan]
            if array.ndim > 1 and sum(d > 1 for d in array.shape) <= 1:
                array = array.reshape(-1)
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.number) \
                    or not np.isfinite(array).all():
                raise NemsFormatError(archive, member, f"dataset {chan!r} must be a 1-D array "
                                                       f"of finite spike times (s); got "
                                                       f"{array.dtype} {array.shape}.")
            array = np.sort(array.astype(np.float64))
            array.flags.writeable = False
            times[chan] = array
        return PointProcess(sidecar=sidecar, epochs=epochs, spike_times=times)
    tiles: dict[str, np.ndarray] = {}
    epoch_names = set(epochs.name)
    n_bands: int | None = None
    for key, array in payload.items():
        if key not in epoch_names:
            raise NemsFormatError(archive, member, f"dataset {key!r} names no epoch of "
                                                   f"{epochs.member!r}; a TiledSignal holds one "
                                                   f"array per epoch.")
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise NemsFormatError(archive, member, f"dataset {key!r} must be a 2-D (channels, "
                                                   f"time) array; got {array.dtype} "
                                                   f"{array.shape}.")
        if n_bands is not None and array.shape[0] != n_bands:
            raise NemsFormatError(archive, member, f"dataset {key!r} has {array.shape[0]} "
                                                   f"channels, the ones before {n_bands}.")
        n_bands = array.shape[0]
        if chans is not None and n_bands != len(chans):
            raise NemsFormatError(archive, member, f"dataset {key!r} has {n_bands} channels, the "
                                                   f"sidecar {sidecar.member!r} lists "
                                                   f"{len(chans)}.")
        array.flags.writeable = False
        tiles[key] = array
    return TiledSignal(sidecar=sidecar, epochs=epochs, tiles=tiles)


# ---------------------------------------------------------------------------
# Containers: a recording .tgz, a folder, and archives of recordings
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def _archive_errors(archive: str) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
            zipfile.BadZipFile) as err:
        raise NemsFormatError(archive, None, f"not a readable archive ({type(err).__name__}: "
                                             f"{err}); it may be truncated. Download it "
                                             f"again.") from err


def _tar_members(fileobj: IO[bytes], archive: str) -> Iterator[tuple[str, int, IO[bytes]]]:
    # Stream mode: one forward pass, no seeking, so it works on a member of another archive.
    with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        for info in tf:
            if info.isdir():
                continue
            if not info.isreg():
                raise NemsFormatError(archive, info.name, "is a link or special file; a NEMS0 "
                                                          "recording holds regular files only.")
            stream = tf.extractfile(info)
            assert stream is not None  # regular file
            yield info.name, info.size, stream


def _folder_members(folder: Path) -> Iterator[tuple[str, int, IO[bytes]]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and len(p.relative_to(folder).parts) <= 2)
    for path in files:
        with open(path, "rb") as stream:
            yield path.relative_to(folder).as_posix(), path.stat().st_size, stream


def _check_signals(signals: Iterable[str] | str | None) -> frozenset[str] | None:
    if signals is None:
        return None
    if isinstance(signals, str):
        signals = [signals]
    names = list(signals)
    if not names or not all(isinstance(s, str) and s for s in names):
        raise ValueError(f"signals must be None (all) or signal names such as ['resp']; got "
                         f"{names!r}.")
    return frozenset(names)


def _read_stream(fileobj: IO[bytes], archive: str, wanted: frozenset[str] | None,
                 load_data: bool, dtype: np.dtype, scan_all: bool = True) -> NemsRecording:
    quirks: dict[str, int] = {}
    with _archive_errors(archive):
        pieces = _collect(_tar_members(fileobj, archive), archive, wanted, load_data, dtype,
                          quirks, scan_all)
    recording = _assemble(pieces, archive, wanted, load_data, quirks)
    logger.debug("read %s: signals %s of %s", archive, ", ".join(recording.sidecars),
                 ", ".join(recording.available))
    return recording


def _check_path(path: PathType) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like; got {path!r}.")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise MissingRawDataError(f"{resolved} does not exist. Download the recording (or point "
                                  f"the path at it).")
    return resolved


def _is_recording_name(name: str) -> bool:
    return name.lower().endswith(_RECORDING_SUFFIXES) and \
        not posixpath.basename(name).startswith("._")


def read_recording(path: PathType, *, member: str | None = None,
                   signals: Iterable[str] | str | None = None, load_data: bool = True,
                   dtype: Any = np.float64, scan_all: bool = True) -> NemsRecording:
    """Read a NEMS0 recording in one pass, without extracting it.

    Parameters
    ----------
    path : str or path-like
        A recording ``.tgz`` (or ``.tar``), a folder holding an extracted
        recording (its files directly or in one wrapper folder), or, with
        ``member``, a container (``.zip``, tar or folder) of recordings.
    member : str, optional
        Path of the recording ``.tgz`` inside the container ``path``.
    signals : str or iterable of str, optional
        Signals to read (``['resp']``); default all. Others are only listed
        in ``available``.
    load_data : bool, default True
        False reads only the meta, sidecars and epoch tables (the data
        members are skipped, e.g. to map sessions to archives by ``chans``).
    dtype : numpy dtype, default float64
        dtype of RasterizedSignal values (float32 halves the memory).
    scan_all : bool, default True
        False, with ``signals`` given: stop reading once the meta and every
        signal asked for (data, sidecar, epochs) are in, so the members after
        them are never decompressed (NAT4's population archive ends with a
        2 GB ``mask_est`` CSV). ``available`` then lists only the signals met
        before the stop, and the members after it are not checked.

    Returns
    -------
    NemsRecording

    Raises
    ------
    NemsFormatError
        A piece is malformed or missing; the message names the archive and
        the member.
    MissingRawDataError
        ``path`` does not exist, or ``member`` is not in the container.
    """
    source = _check_path(path)
    wanted = _check_signals(signals)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be a floating type (NaN marks missing samples); got "
                         f"{dtype}.")
    if member is None:
        if source.suffix.lower() == ".zip":
            raise NemsFormatError(str(source), None, f"is a zip of recordings, not a recording; "
                                                     f"pass member= (one of "
                                                     f"{', '.join(list_recordings(source)[:3])}"
                                                     f", ...) or use iter_recordings().")
        if source.is_dir():
            archive = str(source)
            quirks: dict[str, int] = {}
            pieces = _collect(_folder_members(source), archive, wanted, load_data, dtype,
                              quirks, scan_all)
            return _assemble(pieces, archive, wanted, load_data, quirks)
        with open(source, "rb") as fileobj:
            return _read_stream(fileobj, str(source), wanted, load_data, dtype, scan_all)
    if not isinstance(member, str) or not member:
        raise TypeError(f"member must be a non-empty string; got {member!r}.")
    for _name, fileobj, archive in _container_members(source, {member}):
        return _read_stream(fileobj, archive, wanted, load_data, dtype, scan_all)
    raise MissingRawDataError(f"{source} holds no recording {member!r}; it holds: "
                              f"{', '.join(list_recordings(source)[:10]) or 'none'}.")


def _container_members(container: Path, only: set[str] | None
                       ) -> Iterator[tuple[str, IO[bytes], str]]:
    """(member name, open stream, label) of each recording in a container, in stored order."""
    if container.is_dir():
        for path in sorted(container.rglob("*")):
            name = path.relative_to(container).as_posix()
            if path.is_file() and _is_recording_name(name) and (only is None or name in only):
                with open(path, "rb") as fileobj:
                    yield name, fileobj, str(path)
        return
    label = str(container)
    with _archive_errors(label):
        if zipfile.is_zipfile(container) and not container.name.lower().endswith(
                (".tgz", ".tar.gz", ".tar")):
            with zipfile.ZipFile(container) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not _is_recording_name(info.filename):
                        continue
                    if only is not None and info.filename not in only:
                        continue
                    with zf.open(info) as fileobj:
                        yield info.filename, fileobj, f"{label} > {info.filename}"
            return
        with open(container, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for info in tf:
                if not info.isreg() or not _is_recording_name(info.name):
                    continue
                if only is not None and info.name not in only:
                    continue
                fileobj = tf.extractfile(info)
                assert fileobj is not None
                yield info.name, fileobj, f"{label} > {info.name}"


def list_recordings(container: PathType) -> list[str]:
    """Names of the recording archives (``.tgz``) inside a container, in stored order.

    Parameters
    ----------
    container : str or path-like
        A ``.zip``, a tar (any compression) or a folder.

    Returns
    -------
    list of str
        Member paths, as ``read_recording(container, member=...)`` takes them.
    """
    source = _check_path(container)
    if source.is_dir():
        return [p.relative_to(source).as_posix() for p in sorted(source.rglob("*"))
                if p.is_file() and _is_recording_name(p.relative_to(source).as_posix())]
    with _archive_errors(str(source)):
        if zipfile.is_zipfile(source) and not source.name.lower().endswith(
                (".tgz", ".tar.gz", ".tar")):
            with zipfile.ZipFile(source) as zf:
                return [i.filename for i in zf.infolist()
                        if not i.is_dir() and _is_recording_name(i.filename)]
        with tarfile.open(source, "r:*") as tf:
            return [i.name for i in tf.getmembers() if i.isreg() and _is_recording_name(i.name)]


def iter_recordings(container: PathType, *, members: Iterable[str] | None = None,
                    signals: Iterable[str] | str | None = None, load_data: bool = True,
                    dtype: Any = np.float64) -> Iterator[tuple[str, NemsRecording]]:
    """Read every recording of a container in one forward pass.

    Each inner ``.tgz`` is streamed out of the container and read member by
    member; nothing is extracted. Use it for containers whose members are
    read in turn (a tar of recordings, where reaching a member means
    decompressing everything before it).

    Parameters
    ----------
    container : str or path-like
        A ``.zip``, a tar (any compression) or a folder of recordings.
    members : iterable of str, optional
        Read only these members (all must exist).
    signals, load_data, dtype
        As for :func:`read_recording`.

    Yields
    ------
    (str, NemsRecording)
        The member name and the recording.
    """
    source = _check_path(container)
    wanted = _check_signals(signals)
    dtype = np.dtype(dtype)
    only = None if members is None else set(members)
    seen: set[str] = set()
    for name, fileobj, archive in _container_members(source, only):
        seen.add(name)
        yield name, _read_stream(fileobj, archive, wanted, load_data, dtype)
    if only is not None and only - seen:
        raise MissingRawDataError(f"{source} holds no recording "
                                  f"{', '.join(map(repr, sorted(only - seen)))}.")


# ---------------------------------------------------------------------------
# Stimulus occurrences
# ---------------------------------------------------------------------------

def stim_occurrences(epochs: EpochTable, fs: float, *,
                     prefix: str = "STIM_") -> tuple[StimOccurrence, ...]:
    """Every occurrence of the epochs named ``prefix...``, with their silent flanks.

    A ``PreStimSilence`` epoch starting at an occurrence's first sample and
    ending inside it gives ``pre_samples``; a ``PostStimSilence`` ending at its
    last sample gives ``post_samples`` (0 without one, e.g. Wingert's sites
    without flanks).

    Parameters
    ----------
    epochs : EpochTable
        The signal's epochs.
    fs : float
        Its sample rate in Hz.
    prefix : str, default ``'STIM_'``
        Epoch-name prefix of the stimuli.

    Returns
    -------
    tuple of StimOccurrence
        In order of start time (presentation order).

    Raises
    ------
    NemsFormatError
        Two silences of different lengths flank the same occurrence.
    """
    fs = check_positive("fs", fs)
    s0 = seconds_to_samples(epochs.start, fs)
    s1 = seconds_to_samples(epochs.end, fs)
    pre: dict[int, set[tuple[int, int]]] = {}
    post: dict[int, set[tuple[int, int]]] = {}
    for i, name in enumerate(epochs.name):
        if name == "PreStimSilence":
            pre.setdefault(int(s0[i]), set()).add((int(s0[i]), int(s1[i])))
        elif name == "PostStimSilence":
            post.setdefault(int(s1[i]), set()).add((int(s0[i]), int(s1[i])))
    repeats: dict[str, int] = {}
    found = []
    for i in np.argsort(epochs.start, kind="stable"):
        name = epochs.name[i]
        if not name.startswith(prefix):
            continue
        a, b = int(s0[i]), int(s1[i])
        lengths = []
        # silences that start with the occurrence / end with it, lying inside it
        for spans in ({y - x for x, y in pre.get(a, ()) if y <= b},
                      {y - x for x, y in post.get(b, ()) if x >= a}):
            if len(spans) > 1:
                raise NemsFormatError(epochs.archive, epochs.member,
                                      f"occurrence of {name!r} at {epochs.start[i]!r} s is "
                                      f"flanked by silences of different lengths "
                                      f"{sorted(spans)} (samples).")
            lengths.append(spans.pop() if spans else 0)
        found.append(StimOccurrence(name=name, repeat=repeats.get(name, 0), start=a, end=b,
                                    pre_samples=lengths[0], post_samples=lengths[1]))
        repeats[name] = repeats.get(name, 0) + 1
    return tuple(found)
