"""The Kaldi fbank front end: equal to kaldi-native-fbank frame for frame, and on the grid."""

from __future__ import annotations

import numpy as np
import pytest

from deepstrf.preprocessing.kaldi import kaldi_fbank, kaldi_mel_banks, kaldi_spectrogram
from deepstrf.preprocessing.spectrogram import SpectrogramParams, compute_spectrogram
from deepstrf.preprocessing.spikes import n_bins_for_duration

knf = pytest.importorskip("kaldi_native_fbank", reason="needs the 'kaldi' extra")


def _reference(y, rate, *, n_mels, shift_ms, length_ms=25.0, low=0.0, high=8000.0,
               window="hanning"):
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = float(rate)
    opts.frame_opts.frame_shift_ms = shift_ms
    opts.frame_opts.frame_length_ms = length_ms
    opts.frame_opts.window_type = window
    opts.mel_opts.num_bins = n_mels
    opts.mel_opts.low_freq = low
    opts.mel_opts.high_freq = high
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(float(rate), y.astype(np.float32).tolist())
    fbank.input_finished()
    return np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


@pytest.mark.parametrize("n_mels, shift_ms, window, high", [
    (80, 5.0, "hanning", 8000.0), (80, 10.0, "hanning", 8000.0), (40, 10.0, "povey", 0.0),
    (23, 7.5, "hamming", -400.0)])
def test_kaldi_fbank_equals_kaldi_native_fbank(n_mels, shift_ms, window, high):
    rng = np.random.default_rng(n_mels)
    t = np.arange(24000) / 16000
    y = 8000 * np.sin(2 * np.pi * 440 * t * (1 + t)) + 500 * rng.standard_normal(t.size)
    ref = _reference(y, 16000, n_mels=n_mels, shift_ms=shift_ms, high=high, window=window)
    ours = kaldi_fbank(y, 16000, n_mels=n_mels, frame_shift_ms=shift_ms, low_freq=0.0,
                       high_freq=high, window=window)
    assert ours.shape == ref.shape
    # kaldi-native-fbank computes in float32; log energies agree to ~1e-3 absolute
    np.testing.assert_allclose(ours, ref, atol=5e-3, rtol=1e-4)


def test_mel_banks_are_kaldis_triangles():
    banks = kaldi_mel_banks(80, 512, 16000, 0.0, 8000.0)
    assert banks.shape == (80, 256)
    assert (banks >= 0).all() and (banks <= 1).all()
    # every bin but the first and last is covered by two overlapping triangles summing to 1
    total = banks.sum(axis=0)
    np.testing.assert_allclose(total[5:200], 1.0, atol=1e-9)  # below the top band


def test_front_end_frames_are_kaldi_frames_centred_on_the_bins():
    rng = np.random.default_rng(0)
    rate, dt = 16000, 5.0
    y = (0.2 * rng.standard_normal(8000)).astype(np.float32)
    params = SpectrogramParams(dt_ms=dt, kind="kaldi", n_bands=80, window_ms=25.0, f_min=0.0,
                               f_max=8000.0, compression="log", sample_rate=rate)
    spec = compute_spectrogram(y, rate, params)
    T = n_bins_for_duration(y.size, rate, dt)
    assert spec.shape == (80, T)
    # frame k covers [k*80 + 40 - 200, ... + 400): Kaldi's frame of the zero-padded sound
    padded = np.concatenate([np.zeros(160), y.astype(np.float64) * 32768, np.zeros(400)])
    ref = kaldi_fbank(padded, rate, n_mels=80, frame_shift_ms=dt, low_freq=0.0,
                      high_freq=8000.0, window="hanning")
    np.testing.assert_allclose(spec.T, ref[:T], atol=1e-4, rtol=1e-5)


def test_front_end_averages_10ms_frames_above_10ms():
    rng = np.random.default_rng(1)
    y = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    fine = SpectrogramParams(dt_ms=10.0, kind="kaldi", n_bands=40, window_ms=25.0,
                             f_max=8000.0, compression="log", sample_rate=16000)
    coarse = SpectrogramParams(dt_ms=30.0, kind="kaldi", n_bands=40, window_ms=25.0,
                               f_max=8000.0, compression="log", sample_rate=16000)
    a = kaldi_spectrogram(y, 16000, fine)
    b = kaldi_spectrogram(y, 16000, coarse)
    n = a.shape[1] // 3  # whole blocks of the 10 ms frames
    np.testing.assert_allclose(b[:, :n], a[:, :3 * n].reshape(40, n, 3).mean(axis=2),
                               atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 10"):
        kaldi_spectrogram(y, 16000, SpectrogramParams(dt_ms=25.0, kind="kaldi", n_bands=40,
                                                      window_ms=25.0, sample_rate=16000))


def test_resamples_to_the_analysis_rate():
    rng = np.random.default_rng(2)
    y = (0.1 * rng.standard_normal(41000)).astype(np.float32)
    params = SpectrogramParams(dt_ms=5.0, kind="kaldi", n_bands=80, window_ms=25.0,
                               f_max=8000.0, compression="log", sample_rate=16000)
    spec = kaldi_spectrogram(y, 41000, params)
    assert spec.shape == (80, n_bins_for_duration(y.size, 41000, 5.0))
    assert np.isfinite(spec).all()
