"""Gammatone spectrogram: ERB-spaced auditory filter bank energies on the response grid.

The filter bank is Slaney's (1993, Apple Technical Report #35) fourth-order
gammatone approximation, as implemented by the ``gammatone`` package
(``gammatone.gtgram``, after Ellis's MATLAB ``gammatonegram``), the front end
Le, Bjoring & Meliza (2025) used:

* centre frequencies equally spaced on the ERB-rate scale of Glasberg & Moore
  (``EarQ = 9.26449``, ``minBW = 24.7`` Hz), the lowest exactly at ``f_min``,
  the highest one step below ``f_max`` (``f_max`` is the top of the scale the
  points divide, not a centre), rows ordered low to high;
* each channel is a cascade of four second-order sections sharing their
  poles, normalised to unit gain at the centre frequency;
* the energy of each channel is averaged over a rectangular window of
  ``window_ms`` and the square root taken: the RMS of the filter output, an
  amplitude (not a power).

:func:`gtgram` reproduces the package's function and framing exactly (frame
``k`` averages samples ``[k*hop, k*hop + nwin)``, ``1 + (n - nwin) // hop``
frames; the tests compare the two). :func:`gammatone_spectrogram` is the
library's front end (``SpectrogramParams(kind="gammatone")``): the same
filter bank on the response time grid of
:mod:`deepstrf.preprocessing.spectrogram`, so

* the sound is analysed at a rate making ``dt_ms`` a whole number of samples
  (resampled when needed, as for the mel front end), so frames never drift
  against the response bins (``gtgram`` rounds the hop instead);
* there are exactly ``T = n_bins_for_duration(n, rate, dt_ms)`` frames, as
  many as response bins, and the window of frame ``k`` is centred on the
  middle of response bin ``k`` (the window is one sample longer when needed
  for the centre to fall on that middle);
* before the onset the filters are silent, and after the end they ring into
  the silence that follows the sound;
* the RMS values are compressed like the other front ends (``"log1p"``:
  ``log(1 + x)``, what deepSTRF 0.1.0 applied to ``gtgram``'s output).

Only numpy is imported, so joblib workers stay light.

References
----------
Slaney M. (1993). An efficient implementation of the Patterson-Holdsworth
auditory filter bank. Apple Computer Technical Report #35.
Glasberg B.R. & Moore B.C.J. (1990). Derivation of auditory filter shapes from
notched-noise data. Hear Res 47:103-138. doi:10.1016/0378-5955(90)90170-T
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepstrf._validation import check_int, check_positive
from deepstrf.preprocessing.spectrogram import register_front_end

__all__ = ["EAR_Q", "MIN_BANDWIDTH_HZ", "band_frequencies", "erb_centre_frequencies",
           "erb_filterbank", "gammatone_spectrogram", "gtgram"]

#: Glasberg & Moore's asymptotic filter quality.
EAR_Q = 9.26449
#: Glasberg & Moore's minimum bandwidth, Hz.
MIN_BANDWIDTH_HZ = 24.7


def _round_half_away(x: float) -> int:
    """Round half away from zero (MATLAB's ``round``, which gtgram follows)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def erb_centre_frequencies(f_min: float, f_max: float, n_bands: int) -> np.ndarray:
    """``n_bands`` centre frequencies equally spaced on the ERB-rate scale, low to high.

    Parameters
    ----------
    f_min : float
        Lowest centre frequency, Hz, > 0.
    f_max : float
        Top of the scale, Hz, > ``f_min``; the highest centre lies one ERB
        step below it.
    n_bands : int
        Number of bands, >= 1.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_bands,)``, ascending, the first equal to ``f_min``
        (``gammatone.filters.centre_freqs`` reversed).
    """
    f_min = check_positive("f_min", f_min)
    f_max = check_positive("f_max", f_max)
    n_bands = check_int("n_bands", n_bands, minimum=1)
    if f_max <= f_min:
        raise ValueError(f"f_max must be above f_min={f_min:g} Hz; got f_max={f_max:g}.")
    corner = EAR_Q * MIN_BANDWIDTH_HZ
    fraction = np.arange(n_bands, 0, -1) / n_bands
    step = np.log(f_min + corner) - np.log(f_max + corner)
    return -corner + np.exp(fraction * step) * (f_max + corner)


def _coefficients(sample_rate: float,
                  centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: the four numerators' ``z^-1`` terms ``(n, 4)``, the shared poles'
    ``a1``, ``a2`` ``(n,)`` and the gain at the centre frequency ``(n,)``.

    Section k is ``(T + num[k] z^-1) / (1 + a1 z^-1 + a2 z^-2)``, T the sample period.
    """
    T = 1.0 / sample_rate
    bandwidth = 1.019 * 2.0 * np.pi * (centres / EAR_Q + MIN_BANDWIDTH_HZ)
    arg = 2.0 * np.pi * centres * T
    decay = np.exp(-bandwidth * T)
    a1 = -2.0 * np.cos(arg) * decay
    a2 = np.exp(-2.0 * bandwidth * T)
    root_plus, root_minus = np.sqrt(3.0 + 2.0 ** 1.5), np.sqrt(3.0 - 2.0 ** 1.5)
    # The four numerators differ only in the sign and size of their sine term.
    ks = np.stack([np.cos(arg) + root_plus * np.sin(arg), np.cos(arg) - root_plus * np.sin(arg),
                   np.cos(arg) + root_minus * np.sin(arg), np.cos(arg) - root_minus * np.sin(arg)],
                  axis=1)
    num = -T * decay[:, None] * ks
    # |H| at the centre frequency, Slaney's closed form.
    z2 = np.exp(2j * arg)
    pole = np.exp(1j * arg - bandwidth * T)
    growth = np.exp(bandwidth * T)
    gain = np.abs(np.prod(z2[:, None] - pole[:, None] * ks, axis=1)
                  * (T * growth / (-1.0 / growth + 1.0 + z2 * (1.0 - growth))) ** 4)
    return num, a1, a2, gain


def _fft_length(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (fast for numpy's FFT)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


#: Complex values per channel chunk of the frequency-domain filtering (bounds memory).
_CHUNK_VALUES = 1 << 22


def erb_filterbank(waveform: np.ndarray, sample_rate: float, centres: np.ndarray) -> np.ndarray:
    """Output of the gammatone filter of each centre frequency.

    The cascade of each channel is applied in the frequency domain: its
    transfer function on an FFT grid long enough for the impulse response to
    have decayed by ``e^-50`` after the sound, so the result equals the
    recursive filter's (``gammatone.filters.erb_filterbank``, scipy's
    ``lfilter``) to rounding, with numpy alone (scipy.signal costs a worker
    process seconds to import).

    Parameters
    ----------
    waveform : numpy.ndarray
        Mono sound, 1-D.
    sample_rate : float
        Its rate, Hz.
    centres : numpy.ndarray
        Centre frequencies, Hz (e.g. :func:`erb_centre_frequencies`).

    Returns
    -------
    numpy.ndarray
        float64 ``(len(centres), len(waveform))``, row ``i`` filtered by the
        channel of ``centres[i]``.
    """
    sample_rate = check_positive("sample_rate", sample_rate)
    x = np.asarray(waveform, dtype=np.float64).reshape(-1)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1)
    out = np.empty((centres.size, x.size))
    if x.size == 0 or centres.size == 0:
        return out
    num, a1, a2, gain = _coefficients(sample_rate, centres)
    slowest = 1.019 * 2.0 * np.pi * (centres.min() / EAR_Q + MIN_BANDWIDTH_HZ)
    n = _fft_length(x.size + int(np.ceil(50.0 * sample_rate / slowest)))
    spectrum = np.fft.rfft(x, n)
    w = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)     # z^-1 on the FFT grid
    T = 1.0 / sample_rate
    step = max(1, _CHUNK_VALUES // w.size)
    for lo in range(0, centres.size, step):
        sl = slice(lo, lo + step)
        h = (T + num[sl, 0, None] * w) * (T + num[sl, 1, None] * w)
        h *= (T + num[sl, 2, None] * w) * (T + num[sl, 3, None] * w)
        den = 1.0 + w * (a1[sl, None] + a2[sl, None] * w)
        den *= den
        den *= den
        h *= spectrum / (den * gain[sl, None])
        out[sl] = np.fft.irfft(h, n)[:, :x.size]
    return out


def _window_rms(energy: np.ndarray, start: int, hop: int, n_frames: int, nwin: int) -> np.ndarray:
    """RMS over windows ``[start + k*hop, start + k*hop + nwin)`` of each row, k < n_frames."""
    if n_frames <= 0:
        return np.zeros((energy.shape[0], 0))
    windows = np.lib.stride_tricks.sliding_window_view(energy, nwin, axis=1)
    return np.sqrt(windows[:, start:start + (n_frames - 1) * hop + 1:hop].mean(axis=-1))


def gtgram(waveform: np.ndarray, sample_rate: float, window_time: float, hop_time: float,
           channels: int, f_min: float, f_max: float | None = None) -> np.ndarray:
    """The ``gammatone`` package's ``gtgram``: same arguments, framing and values.

    Parameters
    ----------
    waveform : numpy.ndarray
        Mono sound, 1-D.
    sample_rate : float
        Its rate, Hz.
    window_time, hop_time : float
        Window and hop, s; each rounded (half away from zero) to samples.
    channels : int
        Number of bands.
    f_min : float
        Lowest centre frequency, Hz.
    f_max : float, optional
        Top of the ERB scale, Hz (default: the Nyquist frequency).

    Returns
    -------
    numpy.ndarray
        float64 ``(channels, 1 + (n - nwin) // hop)``, rows low to high:
        column ``k`` is the RMS of each channel over samples
        ``[k*hop, k*hop + nwin)``.
    """
    sample_rate = check_positive("sample_rate", sample_rate)
    x = np.asarray(waveform, dtype=np.float64).reshape(-1)
    nwin = _round_half_away(check_positive("window_time", window_time) * sample_rate)
    hop = _round_half_away(check_positive("hop_time", hop_time) * sample_rate)
    if nwin < 1 or hop < 1:
        raise ValueError(f"window_time and hop_time must each span at least one sample at "
                         f"{sample_rate:g} Hz; got {nwin} and {hop} samples.")
    centres = erb_centre_frequencies(f_min, sample_rate / 2 if f_max is None else f_max,
                                     channels)
    energy = erb_filterbank(x, sample_rate, centres) ** 2
    n_frames = 1 + (x.size - nwin) // hop
    return _window_rms(energy, 0, hop, n_frames, nwin)


def _analysis(params: Any, sample_rate: float) -> tuple[float, int, float, float]:
    """``(rate, hop, f_min, f_max)`` the front end works at for a sound of ``sample_rate``."""
    from deepstrf.preprocessing.spectrogram import grid_sample_rate

    if params.sample_rate is not None:
        rate = float(params.sample_rate)
        hop = int(round(rate * params.dt_ms / 1000.0))
    else:
        rate, hop = grid_sample_rate(sample_rate, params.dt_ms)
    nyquist = rate / 2.0
    f_min = float(params.f_min)
    f_max = nyquist if params.f_max is None else float(params.f_max)
    if f_min <= 0:
        raise ValueError("the gammatone front end needs f_min > 0 Hz (the lowest centre "
                         f"frequency); got f_min={f_min:g}.")
    if f_max > nyquist * (1 + 1e-12):
        raise ValueError(f"f_max={f_max:g} Hz is above the Nyquist frequency {nyquist:g} Hz of "
                         f"the {rate:g} Hz rate the gammatone spectrogram is computed at; lower "
                         "f_max or set SpectrogramParams.sample_rate higher.")
    if f_min >= f_max:
        raise ValueError(f"f_min={f_min:g} Hz must be below f_max={f_max:g} Hz.")
    return rate, hop, f_min, f_max


def band_frequencies(params: Any, sample_rate: float) -> np.ndarray:
    """Centre frequencies (Hz, low to high) of a gammatone front end's bands.

    Parameters
    ----------
    params : SpectrogramParams
        With ``kind="gammatone"``.
    sample_rate : float
        Rate of the sounds it will analyse (fixes the Nyquist limit when
        ``params.f_max`` is None).
    """
    _, _, f_min, f_max = _analysis(params, check_positive("sample_rate", sample_rate))
    return erb_centre_frequencies(f_min, f_max, params.n_bands)


def gammatone_spectrogram(waveform: np.ndarray, sample_rate: float, params: Any) -> np.ndarray:
    """Gammatone spectrogram on the response time grid (see the module docstring).

    Parameters
    ----------
    waveform : numpy.ndarray
        Mono sound, 1-D, finite.
    sample_rate : float
        Its rate, Hz.
    params : SpectrogramParams
        ``kind="gammatone"``; uses ``dt_ms`` (hop), ``n_bands``,
        ``window_ms``, ``f_min``, ``f_max`` (None: Nyquist),
        ``compression`` and ``sample_rate``.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_bands, T)``, ``T = n_bins_for_duration(len(waveform),
        sample_rate, params.dt_ms)``; never NaN.
    """
    from deepstrf.preprocessing.spectrogram import _check_waveform, _compress, _resample
    from deepstrf.preprocessing.spikes import n_bins_for_duration

    y = _check_waveform(waveform)
    sample_rate = check_positive("sample_rate", sample_rate)
    n_frames = n_bins_for_duration(y.size, sample_rate, params.dt_ms)
    rate, hop, f_min, f_max = _analysis(params, sample_rate)
    nwin = _round_half_away(params.window_ms * rate / 1000.0)
    if (hop - nwin) % 2:  # centring on a bin's middle needs hop and window of equal parity
        nwin += 1
    nwin = max(nwin, 2 if hop % 2 == 0 else 1)
    if n_frames == 0:
        return np.zeros((params.n_bands, 0), dtype=np.float32)
    y = _resample(y, sample_rate, rate).astype(np.float64)
    # Window k covers [k*hop + first, k*hop + first + nwin): centred on the bin's middle.
    first = (hop - nwin) // 2
    lead = max(0, -first)            # silent (zero-output) samples before the onset
    needed = (n_frames - 1) * hop + first + nwin
    signal = np.zeros(max(needed, 0))
    n_copy = min(y.size, signal.size)
    signal[:n_copy] = y[:n_copy]
    energy = erb_filterbank(signal, rate, erb_centre_frequencies(f_min, f_max, params.n_bands))
    energy = np.pad(energy ** 2, ((0, 0), (lead, 0)))
    rms = _window_rms(energy, first + lead, hop, n_frames, nwin)
    return np.ascontiguousarray(_compress(rms, params.compression), dtype=np.float32)



# The one line that makes SpectrogramParams(kind="gammatone") work (imported on first use).
register_front_end("gammatone", gammatone_spectrogram, band_frequencies=band_frequencies,
                   description="RMS of an ERB-spaced gammatone filter bank (gtgram)")
