"""The log-spaced spectrogram of the Zador lab's ``logspectrogram.m`` (CRCNS AC1).

A front end of the shared registry (``SpectrogramParams(kind="logspectrogram")``),
evaluated directly from its definition rather than through an FFT and a
filter bank:

* band centres ``f_k = f_min * 2**(k / bpo)``, ``k = 0 .. n_bands - 1``: a
  geometric grid from ``f_min`` to ``f_max`` (so ``f_max`` is the top centre
  and ``bpo = (n_bands - 1) / log2(f_max / f_min)``;
  :func:`log_band_grid` gives ``n_bands`` and ``f_max`` from the lab's
  ``fmin, fmax, bins_per_octave``: 53 bands, top 40.6 kHz, for 100 Hz-45 kHz
  at 6 per octave);
* a Hamming window (symmetric, MATLAB's ``hamming(L)``) of
  ``L = round(window_ms * sr / 1000)`` samples (the lab's ``window_ms`` is
  twice the bin width);
* frame ``i`` centred on sample ``c_i = round(i * dt_ms * sr / 1000)``: the
  window covers samples ``c_i - L // 2 .. c_i - L // 2 + L - 1``, the sound
  being zero outside itself;
* ``X_k(i) = sum_n w[n] x[c_i - L//2 + n] exp(-2 pi j f_k n / sr)`` (one
  Goertzel evaluation per band and frame), in decibels
  ``20 log10(|X_k(i)| + 1e-12)``;
* ``T = ceil(len / (sr * dt_ms / 1000))`` frames, the response grid's length.

Two departures from ``logspectrogram.m`` and deepSTRF 0.1.0, both on purpose:

* The lab rounds the hop to whole samples (``round(dt * sr / 1000)``) and
  steps by it, so at rates where the hop is not whole (97656 Hz for the
  Asari stimuli: 488.28 samples per 5 ms) its frames drift against the
  response bins (2.9 ms over 5 s). Here each centre is rounded on its own, so
  frame ``i`` stays within half a sample of ``i * dt``.
* A band at or above the sound's Nyquist frequency holds no energy of that
  sound, and evaluating the formula there aliases lower frequencies into it
  (deepSTRF 0.1.0 does so for the low-rate Wehr stimuli). It is not
  evaluated: it is given :data:`SILENCE_DB`, the formula's own value for a
  silent input, so a band above Nyquist reads as silence.

Compression: ``"log"`` is the lab's dB scale above; ``"none"`` gives the
magnitude ``|X|``; ``"cubic"`` and ``"log1p"`` apply the package's usual
compressions to the power ``|X|**2``.

This module imports numpy only and registers itself when imported (which
:class:`~deepstrf.preprocessing.spectrogram.SpectrogramParams` does on first
use of the kind).
"""

from __future__ import annotations

import math

import numpy as np

from deepstrf._validation import check_int, check_positive
from deepstrf.preprocessing.spectrogram import register_front_end

__all__ = ["DB_FLOOR", "SILENCE_DB", "log_band_frequencies", "log_band_grid",
           "logspectrogram"]

#: Added to ``|X|`` before the logarithm (the lab's ``1e-12``).
DB_FLOOR = 1e-12
#: ``20 * log10(DB_FLOOR)``: the dB value of silence, given to bands above Nyquist.
SILENCE_DB = 20.0 * math.log10(DB_FLOOR)
# frames evaluated per matrix product (bounds the memory of the frame matrix)
_CHUNK = 512


def log_band_grid(fmin: float, fmax: float, bins_per_octave: float) -> tuple[int, float]:
    """``(n_bands, top band centre)`` of the lab's grid ``fmin * 2**(k / bpo)``, ``f_k <= fmax``.

    >>> log_band_grid(100.0, 45000.0, 6)
    (53, 40637.46693038589)
    """
    fmin = check_positive("fmin", fmin)
    fmax = check_positive("fmax", fmax)
    bpo = check_positive("bins_per_octave", bins_per_octave)
    if fmax <= fmin:
        raise ValueError(f"fmax must be above fmin; got fmin={fmin:g}, fmax={fmax:g}.")
    k_top = int(math.floor(math.log2(fmax / fmin) * bpo + 1e-9))
    return k_top + 1, float(fmin * 2.0 ** (k_top / bpo))


def log_band_frequencies(params, sample_rate: float | None = None) -> np.ndarray:
    """Band centres (Hz) of a ``logspectrogram`` front end: geometric from f_min to f_max."""
    n = int(params.n_bands)
    f_min = float(params.f_min)
    if f_min <= 0:
        raise ValueError(f"the logspectrogram front end needs f_min > 0; got {f_min:g}.")
    if n == 1:
        return np.array([f_min])
    if params.f_max is None:
        raise ValueError("the logspectrogram front end needs f_max (the top band centre) when "
                         "n_bands > 1.")
    return f_min * (float(params.f_max) / f_min) ** (np.arange(n) / (n - 1))


def _hamming(n: int) -> np.ndarray:
    if n == 1:
        return np.ones(1)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(n) / (n - 1))


def logspectrogram(waveform: np.ndarray, sample_rate: float, params) -> np.ndarray:
    """``(n_bands, T)`` float32 spectrogram of the module docstring."""
    from deepstrf.preprocessing.spikes import n_bins_for_duration

    sr = check_positive("sample_rate", sample_rate)
    y = np.asarray(waveform, dtype=np.float64).reshape(-1)
    dt_ms = float(params.dt_ms)
    T = n_bins_for_duration(y.size, sr, dt_ms)
    freqs = log_band_frequencies(params, sr)
    L = check_int("window length in samples", int(round(params.window_ms * sr / 1000.0)),
                  minimum=1)
    out = np.full((freqs.size, T), SILENCE_DB if params.compression == "log" else 0.0)
    below = freqs < sr / 2.0
    if T == 0 or not below.any():
        return out.astype(np.float32)
    basis = _hamming(L)[:, None] * np.exp(-2j * np.pi * np.outer(np.arange(L), freqs[below])
                                          / sr)
    half = L // 2
    padded = np.concatenate([np.zeros(half + L), y, np.zeros(L + half)])
    centres = np.round(np.arange(T) * dt_ms * sr / 1000.0).astype(np.int64)
    starts = centres - half + (half + L)         # index into padded
    offsets = np.arange(L)
    mag = np.empty((int(below.sum()), T))
    for lo in range(0, T, _CHUNK):
        idx = starts[lo:lo + _CHUNK, None] + offsets[None, :]
        mag[:, lo:lo + _CHUNK] = np.abs(padded[idx] @ basis).T
    out[below] = _compress_magnitude(mag, params.compression)
    return out.astype(np.float32)


def _compress_magnitude(mag: np.ndarray, compression: str) -> np.ndarray:
    if compression == "log":
        return 20.0 * np.log10(mag + DB_FLOOR)
    if compression == "none":
        return mag
    if compression == "cubic":
        return np.cbrt(mag ** 2)
    return np.log1p(mag ** 2)


register_front_end("logspectrogram", logspectrogram, band_frequencies=log_band_frequencies,
                   description="the Zador lab's logspectrogram.m: Hamming-windowed direct "
                               "evaluation at log-spaced frequencies, dB")
