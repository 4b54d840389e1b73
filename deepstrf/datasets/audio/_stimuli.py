"""Stimulus sources: where a sound comes from and how it lands on the response grid.

A dataset's parse hook describes each stimulus by one source; the build
renders it, in the stimulus's worker task, onto the response grid of ``dt_ms``
bins. Every source has:

* ``meta``: its ``stim_meta`` entry;
* ``inset_ms``: silence before the sound, so the grid starts ``inset_ms``
  before the sound's onset (NAT4's 250 ms ``PreStimSilence``, Espejo's
  500 ms, Wingert's 1 s); spike times stay relative to the sound's onset;
* ``n_bins``: the grid length T. ``None`` takes it from the sound
  (``ceil((inset + duration) / dt)``), an int fixes it (NS1's 999 bins of a
  5 s sound; the sound is cropped or padded with silence), ``"response"``
  takes it from the binned or continuous responses (the bins they all cover).

=============================  =============================================
:class:`WavStim`               a wav file, or a segment of one, with a channel choice
:class:`WaveformArrayStim`     samples held in memory or in a MATLAB/HDF5 variable
:class:`SpectrogramArrayStim`  a precomputed (F, T) spectrogram at its own bin width
=============================  =============================================

Waveform sources go through the front end (a spectrogram of any registered
kind, or the waveform itself at ``audio_fs`` in waveform mode); the sound is
padded with zeros at its native rate before it, so the front end's frame
``k`` is response bin ``k``. A precomputed spectrogram bypasses the front end:
its bins are averaged in blocks of ``dt_ms / bin_ms`` (a whole number, else an
error says which ``dt_ms`` work).

This module runs in worker processes and imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_positive
from deepstrf.errors import RawDataError

__all__ = ["SpectrogramArrayStim", "StimSource", "WavStim", "WaveformArrayStim"]


def _check_common(source: Any) -> None:
    object.__setattr__(source, "inset_ms", check_positive("inset_ms", source.inset_ms,
                                                          allow_zero=True))
    n = source.n_bins
    if not (n is None or n == "response" or (isinstance(n, int) and not isinstance(n, bool)
                                            and n >= 1)):
        raise ValueError(f"n_bins must be None, 'response' or an int >= 1; got {n!r}.")


class _Waveform:
    """What the waveform sources share: rendering through the front end."""

    meta: dict[str, Any]
    inset_ms: float
    n_bins: int | str | None

    def load(self) -> tuple[np.ndarray, float]:  # pragma: no cover - overridden
        raise NotImplementedError

    def declared_rate(self) -> float | None:
        """The native rate, when known without reading the samples (for filter banks)."""
        return None

    def render(self, front: Any, n_bins: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        """``(stim, facts)``: ``(1, F, T)`` or ``(1, T * hop)`` float32, and audio facts."""
        from deepstrf.preprocessing.spectrogram import compute_spectrogram, waveform_on_grid
        from deepstrf.preprocessing.spikes import n_bins_for_duration

        wave, sr = self.load()
        lead = int(round(self.inset_ms * sr / 1000.0))
        natural = n_bins_for_duration(lead + len(wave), sr, front.dt_ms)
        T = natural if n_bins is None else int(n_bins)
        # long enough for T bins, never shorter than the sound (its last frames
        # see the sound's tail, not silence, when T crops it)
        need = max(lead + len(wave), int(math.floor(T * front.dt_ms * sr / 1000.0 + 1e-6)))
        if lead or T > natural:
            padded = np.zeros(need, dtype=np.float32)
            padded[lead:lead + len(wave)] = wave
        else:  # the sound as it is (no copy, and no resampling of added silence)
            padded = wave
        if front.return_waveform:
            out = waveform_on_grid(padded, sr, front.dt_ms, front.audio_fs)
            hop = int(round(front.audio_fs * front.dt_ms / 1000.0))
            stim = _fit(out, T * hop)[None, :]
        else:
            spec = compute_spectrogram(padded, sr, front.spectrogram, prepared=front.prepared)
            stim = _fit(spec, T)[None, :, :]
        facts = {"sample_rate": float(sr), "n_samples": int(len(wave)),
                 "duration_s": float(len(wave)) / float(sr), "n_bins": int(T)}
        if self.inset_ms:
            facts["inset_ms"] = float(self.inset_ms)
        return stim.astype(np.float32, copy=False), facts

    def natural_bins(self, dt_ms: float) -> int | None:
        return None


def _fit(array: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the last axis to ``n``."""
    if array.shape[-1] >= n:
        return array[..., :n]
    pad = [(0, 0)] * (array.ndim - 1) + [(0, n - array.shape[-1])]
    return np.pad(array, pad)


@dataclass(frozen=True)
class WavStim(_Waveform):
    """A wav file (or a segment of it).

    Parameters
    ----------
    path : Path
    meta : dict
    expected_sr : float, optional
        The documented rate; a file at another rate raises. For a header
        that rounds a non-integer true rate (NS1's 48828 Hz for 48828.125),
        give ``sample_rate``.
    channel : int, optional
        Channel to keep (0-based; Downer's mVocs wav has trigger pulses on
        channel 1). None mixes the channels down by their mean.
    start_s, stop_s : float
        The segment of the file, seconds (``stop_s=None``: to the end).
    sample_rate : float, optional
        The true rate, replacing the header's.
    """

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    expected_sr: float | None = None
    channel: int | None = None
    start_s: float = 0.0
    stop_s: float | None = None
    sample_rate: float | None = None
    inset_ms: float = 0.0
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)

    def declared_rate(self) -> float | None:
        if self.sample_rate is not None:
            return float(self.sample_rate)
        return None if self.expected_sr is None else float(self.expected_sr)

    def load(self) -> tuple[np.ndarray, float]:
        from deepstrf.io.readers import read_wav

        wave, sr = read_wav(self.path, expected_sr=self.expected_sr, mono=self.channel is None)
        if self.channel is not None:  # read_wav gives (channels, samples)
            if not 0 <= self.channel < wave.shape[0]:
                raise RawDataError(f"{self.path}: has {wave.shape[0]} channel(s); channel "
                                   f"{self.channel} was asked for.")
            wave = np.ascontiguousarray(wave[self.channel])
        rate = float(self.sample_rate) if self.sample_rate is not None else float(sr)
        if self.start_s or self.stop_s is not None:
            lo = int(round(self.start_s * rate))
            hi = len(wave) if self.stop_s is None else int(round(self.stop_s * rate))
            if not 0 <= lo < hi <= len(wave):
                raise RawDataError(f"{self.path}: segment [{self.start_s:g}, {self.stop_s}] s "
                                   f"is outside the file's {len(wave) / rate:g} s.")
            wave = wave[lo:hi]
        return wave, rate


#: The name the spike-train pipeline first used for a wav stimulus.
StimSource = WavStim


@dataclass(frozen=True)
class WaveformArrayStim(_Waveform):
    """Samples given in memory (``samples``) or read from ``path`` at ``key``.

    ``key`` names a MATLAB variable (any version, :func:`deepstrf.io.readers.read_mat`)
    or an HDF5 dataset; a tuple walks into it (``("sentdet", 3, "sound")``).
    """

    sample_rate: float
    meta: dict[str, Any] = field(default_factory=dict)
    samples: np.ndarray | None = None
    path: Path | None = None
    key: str | tuple[Any, ...] | None = None
    inset_ms: float = 0.0
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        object.__setattr__(self, "sample_rate", check_positive("sample_rate", self.sample_rate))
        if (self.samples is None) == (self.path is None):
            raise ValueError("give WaveformArrayStim either samples or path (with key).")

    def declared_rate(self) -> float | None:
        return float(self.sample_rate)

    def load(self) -> tuple[np.ndarray, float]:
        where = "samples"
        if self.samples is not None:
            value = self.samples
        else:
            from deepstrf.io.readers import read_array

            keys = self.key if isinstance(self.key, tuple) else (self.key,)
            where = f"{self.path} at {'/'.join(str(k) for k in keys)}"
            value = read_array(Path(self.path), self.key)
        wave = np.asarray(value)
        if wave.dtype.kind not in "fiu" or wave.ndim != 1 and not (
                wave.ndim == 2 and 1 in wave.shape):
            raise RawDataError(f"{where}: expected a 1-D array of samples; got {wave.dtype} "
                               f"of shape {wave.shape}.")
        return wave.reshape(-1).astype(np.float32), float(self.sample_rate)


@dataclass(frozen=True)
class SpectrogramArrayStim:
    """A precomputed ``(F, T_native)`` spectrogram at ``bin_ms`` (NS1 ``X_nfht``, NEMS tiles).

    It bypasses the front end. ``dt_ms`` must be a whole multiple of
    ``bin_ms``; blocks of that many bins are averaged (NaN-aware). Values
    are kept as given (no compression). ``n_bins`` may crop it; a grid
    longer than the array is an error, since padding a spectrogram with a
    made-up value for silence would be a guess.
    """

    spectrogram: np.ndarray
    bin_ms: float
    meta: dict[str, Any] = field(default_factory=dict)
    inset_ms: float = 0.0
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        spec = np.asarray(self.spectrogram)
        if spec.ndim != 2 or spec.dtype.kind not in "fiu":
            raise ValueError(f"SpectrogramArrayStim.spectrogram must be a numeric (F, T) array; "
                             f"got {spec.dtype} of shape {spec.shape}.")
        object.__setattr__(self, "spectrogram", spec)
        object.__setattr__(self, "bin_ms", check_positive("bin_ms", self.bin_ms))
        if self.inset_ms:
            raise ValueError("a precomputed spectrogram cannot take an inset: its frames "
                             "already cover the grid (use n_bins to crop).")

    def declared_rate(self) -> float | None:
        return None

    def natural_bins(self, dt_ms: float) -> int:
        from deepstrf.datasets._responses import _factor

        return self.spectrogram.shape[1] // _factor(self.bin_ms, dt_ms, "this spectrogram")

    def render(self, front: Any, n_bins: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        from deepstrf.datasets._responses import _factor
        from deepstrf.preprocessing.continuous import pool_mean

        if front.return_waveform:
            raise ValueError("a precomputed spectrogram has no waveform; the dataset must give "
                             "waveform sources in waveform mode.")
        k = _factor(self.bin_ms, front.dt_ms, "this spectrogram")
        have = self.spectrogram.shape[1] // k
        T = have if n_bins is None else int(n_bins)
        if T > have:
            raise ValueError(f"the grid needs {T} bins of {front.dt_ms:g} ms but the "
                             f"precomputed spectrogram has only {have}.")
        spec = pool_mean(self.spectrogram[:, :T * k].astype(np.float64), k)
        if not np.isfinite(spec).all():
            raise RawDataError("the precomputed spectrogram holds NaN or inf values; stimuli "
                               "must be finite.")
        facts = {"n_bins": int(T), "native_bin_ms": float(self.bin_ms)}
        return spec.astype(np.float32)[None, :, :], facts
