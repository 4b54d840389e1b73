"""Kaldi-style log mel filter bank ("fbank") features, on the response time grid.

Ahmed, Downer, Malone & Makin (2025) fed their models the Kaldi filter bank of
each sound (``torchaudio.compliance.kaldi.fbank``: 80 mel bins, 25 ms Hann
window, 0-8000 Hz at 16 kHz, pre-emphasis 0.97, DC removed per frame, power
spectrum, natural log floored at the float32 epsilon). This module does the
same computation in numpy:

* :func:`kaldi_fbank` is Kaldi's own framing and arithmetic (``snip_edges``:
  frame ``i`` covers samples ``[i * shift, i * shift + win)``, ``1 + (n - win)
  // shift`` frames); ``tests/test_kaldi.py`` checks it equals
  ``kaldi-native-fbank`` (the ``kaldi`` extra; the C++ port of Kaldi's
  ``compute-fbank-feats`` that torchaudio's version follows);
* :func:`kaldi_spectrogram` is the library's front end
  (``SpectrogramParams(kind="kaldi")``): the same per-frame processing and
  filters, framed on the response grid as every front end of
  :mod:`deepstrf.preprocessing.spectrogram` is (frame ``k`` centred on the
  middle of response bin ``k``, silence before the onset and after the end,
  exactly ``T = n_bins_for_duration(n, rate, dt_ms)`` frames). With
  ``snip_edges`` the published pipeline's frame ``k`` is centred 12.5 ms after
  bin ``k`` starts, a lag of about a bin and a half at 5 ms, and it crops or
  pads the frames to T: the one difference from the peer, on purpose.

Details kept from Kaldi: the window length and shift are truncated to whole
samples (``int(rate * ms / 1000)``); the FFT is the next power of two; the
mel scale is ``1127 ln(1 + f / 700)`` and the triangles are linear in mel,
over the FFT bins below Nyquist; ``high_freq <= 0`` means Nyquist plus it.
The waveform is scaled by ``2**15`` first, as the peer (and Kaldi's int16
input) does: the log values are then comparable with published ones.

Above 10 ms per bin the peer computes 10 ms frames and averages them in
blocks of ``dt_ms / 10`` (so ``dt_ms`` must be a multiple of 10 there); the
front end does the same. The ``compression`` of the parameters applies to
the mel energies: ``"log"`` is Kaldi's (``log(max(e, eps))``, eps the float32
epsilon), ``"none"`` the energies, ``"log1p"``/``"cubic"`` as elsewhere.

Only numpy (and soxr for resampling) is imported, so workers stay light.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepstrf.preprocessing.spectrogram import register_front_end

__all__ = ["FLOAT_EPS", "KALDI_WINDOWS", "kaldi_fbank", "kaldi_mel_banks", "kaldi_spectrogram",
           "mel_band_frequencies"]

#: Kaldi's log floor: ``std::numeric_limits<float>::epsilon()``.
FLOAT_EPS = float(np.finfo(np.float32).eps)
#: Kaldi's window types (``window_type``).
KALDI_WINDOWS = ("hanning", "hamming", "povey", "rectangular")
#: Above this bin width (ms) frames are computed at it and averaged (as the peer).
MAX_FRAME_SHIFT_MS = 10.0


def _mel(f: Any) -> Any:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> np.ndarray:
    """Kaldi's triangular mel filters, ``(n_mels, n_fft // 2)`` (Nyquist bin excluded)."""
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0 <= low_freq < high <= nyquist:
        raise ValueError(f"the mel bins need 0 <= low_freq < high_freq <= Nyquist "
                         f"({nyquist:g} Hz); got low_freq={low_freq:g}, high_freq={high:g}.")
    n_bins = n_fft // 2
    mel_low, mel_high = _mel(low_freq), _mel(high)
    delta = (mel_high - mel_low) / (n_mels + 1)
    left = mel_low + delta * np.arange(n_mels)[:, None]
    centre, right = left + delta, left + 2 * delta
    mel = _mel(sample_rate / n_fft * np.arange(n_bins))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    weights = np.where(mel <= centre, up, down)
    return np.where((mel > left) & (mel < right), weights, 0.0)


def mel_band_frequencies(params: Any, sample_rate: float) -> np.ndarray:
    """Centre frequency (Hz) of each Kaldi mel band of ``params``."""
    rate = params.sample_rate or sample_rate
    high = params.f_max if params.f_max is not None else rate / 2
    lo, hi = _mel(params.f_min), _mel(high)
    centres = lo + (hi - lo) / (params.n_bands + 1) * np.arange(1, params.n_bands + 1)
    return 700.0 * (np.exp(centres / 1127.0) - 1.0)


def _window(kind: str, n: int) -> np.ndarray:
    if kind not in KALDI_WINDOWS:
        raise ValueError(f"window must be one of {KALDI_WINDOWS}; got {kind!r}.")
    a = 2 * math.pi / (n - 1) * np.arange(n)
    if kind == "hanning":
        return 0.5 - 0.5 * np.cos(a)
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(a)
    if kind == "povey":
        return (0.5 - 0.5 * np.cos(a)) ** 0.85
    return np.ones(n)


def _process_frames(frames: np.ndarray, *, window: np.ndarray, preemphasis: float,
                    remove_dc_offset: bool, n_fft: int) -> np.ndarray:
    """Kaldi's ProcessWindow + power spectrum, for ``(n_frames, win)`` frames."""
    x = frames.astype(np.float64, copy=True)
    if remove_dc_offset:
        x -= x.mean(axis=1, keepdims=True)
    if preemphasis:
        x[:, 1:] -= preemphasis * x[:, :-1].copy()
        x[:, 0] -= preemphasis * x[:, 0]
    x *= window
    spectrum = np.fft.rfft(x, n=n_fft, axis=1)
    return spectrum.real ** 2 + spectrum.imag ** 2


def kaldi_fbank(waveform: np.ndarray, sample_rate: float, *, n_mels: int = 23,
                frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                low_freq: float = 20.0, high_freq: float = 0.0, preemphasis: float = 0.97,
                remove_dc_offset: bool = True, window: str = "povey",
                use_log: bool = True) -> np.ndarray:
    """Kaldi's ``compute-fbank-feats`` (no dither, no energy, ``snip_edges=True``).

    Parameters
    ----------
    waveform : numpy.ndarray
        1-D samples, on the scale Kaldi reads (int16 values, not [-1, 1]).
    sample_rate : float
        Hz.
    n_mels, frame_length_ms, frame_shift_ms, low_freq, high_freq, preemphasis,
    remove_dc_offset, window
        Kaldi's options of the same names (``window`` is ``window_type``);
        the defaults are Kaldi's.
    use_log : bool
        ``use_log_fbank``: natural log floored at :data:`FLOAT_EPS`.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_frames, n_mels)``, Kaldi's layout.
    """
    y = np.asarray(waveform, dtype=np.float64).reshape(-1)
    win = int(sample_rate * 0.001 * frame_length_ms)
    shift = int(sample_rate * 0.001 * frame_shift_ms)
    if win < 2 or shift < 1:
        raise ValueError(f"frame_length_ms={frame_length_ms:g} and frame_shift_ms="
                         f"{frame_shift_ms:g} give {win} and {shift} samples at "
                         f"{sample_rate:g} Hz; both must be whole samples (window >= 2).")
    n_fft = 1 << (win - 1).bit_length()
    n_frames = 0 if y.size < win else 1 + (y.size - win) // shift
    banks = kaldi_mel_banks(n_mels, n_fft, sample_rate, low_freq, high_freq)
    if n_frames == 0:
        return np.zeros((0, n_mels), np.float32)
    idx = np.arange(n_frames)[:, None] * shift + np.arange(win)[None, :]
    power = _process_frames(y[idx], window=_window(window, win), preemphasis=preemphasis,
                            remove_dc_offset=remove_dc_offset, n_fft=n_fft)
    energies = power[:, :n_fft // 2] @ banks.T
    if use_log:
        energies = np.log(np.maximum(energies, FLOAT_EPS))
    return energies.astype(np.float32)


def kaldi_spectrogram(waveform: np.ndarray, sample_rate: float, params: Any) -> np.ndarray:
    """The Kaldi fbank front end on the response grid (see the module docstring).

    ``params`` is a :class:`~deepstrf.preprocessing.spectrogram.SpectrogramParams`
    with ``kind="kaldi"``; it uses ``dt_ms``, ``n_bands`` (mel bins),
    ``window_ms`` (frame length), ``f_min``/``f_max`` (None: Nyquist),
    ``compression`` and ``sample_rate`` (the analysis rate, 16 kHz for the
    peer's pipeline; None: the sound's own). Returns float32 ``(n_bands, T)``.
    """
    from deepstrf.preprocessing.spectrogram import _check_waveform, _compress, _resample
    from deepstrf.preprocessing.spikes import n_bins_for_duration

    y = _check_waveform(waveform)
    n_frames = n_bins_for_duration(y.size, sample_rate, params.dt_ms)
    rate = float(params.sample_rate or sample_rate)
    shift_ms = params.dt_ms
    pool = 1
    if params.dt_ms > MAX_FRAME_SHIFT_MS + 1e-9:
        ratio = params.dt_ms / MAX_FRAME_SHIFT_MS
        pool = round(ratio)
        if abs(ratio - pool) > 1e-9:
            raise ValueError(f"the kaldi front end computes 10 ms frames above dt_ms=10 and "
                             f"averages them, so dt_ms must be a multiple of 10 there; got "
                             f"dt_ms={params.dt_ms:g}.")
        shift_ms = MAX_FRAME_SHIFT_MS
    hop_exact = rate * shift_ms / 1000.0
    hop = int(round(hop_exact))
    if abs(hop_exact - hop) > 1e-6 or hop < 1:
        raise ValueError(f"the kaldi front end needs a whole number of samples per frame; "
                         f"{rate:g} Hz x {shift_ms:g} ms = {hop_exact:g}. Set "
                         "SpectrogramParams.sample_rate (16000 for the published pipeline).")
    win = int(rate * 0.001 * params.window_ms)
    n_fft = 1 << (win - 1).bit_length()
    high = params.f_max if params.f_max is not None else rate / 2
    banks = kaldi_mel_banks(params.n_bands, n_fft, rate, params.f_min, high)
    if n_frames == 0:
        return np.zeros((params.n_bands, 0), np.float32)
    y = _resample(y, sample_rate, rate).astype(np.float64) * 32768.0
    n_sub = n_frames * pool
    # frame k's window centred on the middle of its hop: starts at k*hop + (hop - win)/2
    first = (hop - win) // 2
    lead = max(0, -first)
    need = (n_sub - 1) * hop + first + win + lead
    padded = np.zeros(max(need, lead + y.size))
    padded[lead:lead + y.size] = y
    idx = (np.arange(n_sub)[:, None] * hop + first + lead) + np.arange(win)[None, :]
    power = _process_frames(padded[idx], window=_window("hanning", win), preemphasis=0.97,
                            remove_dc_offset=True, n_fft=n_fft)
    energies = power[:, :n_fft // 2] @ banks.T  # (n_sub, F)
    if params.compression == "log":
        out = np.log(np.maximum(energies, FLOAT_EPS))
    else:
        out = _compress(energies, params.compression)
    if pool > 1:
        out = out.reshape(n_frames, pool, -1).mean(axis=1)
    return np.ascontiguousarray(out.T, dtype=np.float32)


register_front_end("kaldi", kaldi_spectrogram, band_frequencies=mel_band_frequencies,
                   description="Kaldi log mel filter bank (fbank), as Ahmed et al. 2025")
