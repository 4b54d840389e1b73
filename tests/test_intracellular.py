"""Units: intracellular trace processing and the logspectrogram front end (CRCNS AC1)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from deepstrf.preprocessing.intracellular import (
    RepeatGating,
    SpikeDetection,
    detrend_median_gauss,
    gating_stats,
    odd_window,
)
from deepstrf.preprocessing.logspectrogram import SILENCE_DB, log_band_grid, logspectrogram
from deepstrf.preprocessing.spectrogram import SpectrogramParams, band_frequencies
from deepstrf.preprocessing.spikes import n_bins_for_duration


def _params(dt_ms=5.0, compression="log", **kw):
    n, top = log_band_grid(kw.pop("fmin", 100.0), kw.pop("fmax", 45000.0), 6)
    return SpectrogramParams(dt_ms=dt_ms, kind="logspectrogram", n_bands=n, f_min=100.0,
                             f_max=top, window_ms=2 * dt_ms, compression=compression, **kw)


def test_detrend_removes_slow_drift_and_keeps_fast_signal():
    sf = 4000.0
    t = np.arange(int(4 * sf)) / sf
    fast = np.sin(2 * np.pi * 40 * t)
    drift = 8 * np.sin(2 * np.pi * 0.3 * t) + 3 * t - 60
    out = detrend_median_gauss(fast + drift, sf, 100.0, 10.0)
    inner = slice(int(0.2 * sf), -int(0.2 * sf))
    assert np.std(out[inner] - fast[inner]) < 0.05
    assert np.corrcoef(out, fast)[0, 1] > 0.99
    same = detrend_median_gauss(fast + drift, sf, None, 10.0)
    np.testing.assert_array_equal(same, fast + drift)
    assert odd_window(100.0, 4000.0) == 401 and odd_window(5.0, 10000.0) == 51


def test_gating_criteria_and_their_validation():
    sf = 4000.0
    rng = np.random.default_rng(0)
    signal = np.repeat(rng.standard_normal(100), 20)
    reps = [signal + 0.1 * rng.standard_normal(signal.size) - 60 for _ in range(5)]
    reps[1] = reps[1].copy()
    reps[1][500:510] = 170.0
    gate = RepeatGating()
    stats = [gating_stats(r, sf, gate) for r in reps]
    binned = np.stack([r.reshape(100, 20).mean(axis=1) for r in reps])  # 5 repeats
    binned[3] = -binned[3]
    reasons = gate.decide(stats, binned)
    assert reasons[0] is None and reasons[2] is None and reasons[4] is None
    assert "170.0 mV" in reasons[1] and reasons[3].startswith("r = -")
    # with fewer repeats left than min_repeats_loo the consistency test is not run
    assert RepeatGating(min_repeats_loo=5).decide(stats, binned)[3] is None
    assert RepeatGating(max_abs_mv=None).decide(stats, binned)[1] is None
    saturated = reps[0].copy()
    saturated[:40] += 35.0  # 2 % of the samples
    assert gating_stats(saturated, sf, gate)["saturated_frac"] == pytest.approx(0.02, abs=3e-3)
    for bad in ({"max_abs_mv": -1}, {"min_loo_r": 3}, {"min_repeats_loo": 1},
                {"smooth_ms": 0}):
        with pytest.raises(ValueError):
            RepeatGating(**bad)


def test_spike_detection_finds_the_planted_spikes_and_no_noise():
    sf = 10000.0
    rng = np.random.default_rng(1)
    x = 0.05 * rng.standard_normal(int(10 * sf))
    planted = np.sort(rng.choice(np.arange(100, x.size - 100, 40), 200, replace=False))
    for i in planted:
        x[i:i + 3] -= 1.0
    found = SpikeDetection().detect(x, sf)
    np.testing.assert_array_equal(found, planted)
    noise = 0.05 * rng.standard_normal(int(10 * sf))
    assert SpikeDetection().detect(noise, sf).size <= 1
    # the old 2.5 SD threshold: white noise alone gives hundreds of "spikes" per second
    assert SpikeDetection(threshold_sd=2.5).detect(noise, sf).size > 1000
    with pytest.raises(ValueError):
        SpikeDetection(threshold_sd=0)


def test_logspectrogram_grid_frames_and_centres():
    params = _params()
    assert params.n_bands == 53
    freqs = band_frequencies(params, 97656.0)
    np.testing.assert_allclose(freqs, 100 * 2 ** (np.arange(53) / 6), rtol=1e-12)
    sr = 97656.0
    n = int(2.5 * sr)
    y = np.zeros(n)
    i = 450  # the lab's rounded hop (488) would put this click 126 samples early
    centre = round(i * 5.0 * sr / 1000)
    y[centre] = 1.0
    spec = logspectrogram(y, sr, params)
    assert spec.shape == (53, n_bins_for_duration(n, sr, 5.0))
    # the window is centred on the click in frame i only: energy peaks there in every band
    assert np.all(np.argmax(spec, axis=1) == i)
    low = logspectrogram(np.ones(4410), 44100.0, params)
    assert np.all(low[freqs >= 22050] == np.float32(SILENCE_DB))
    mag = logspectrogram(y, sr, _params(compression="none"))
    np.testing.assert_allclose(20 * np.log10(mag[:, i] + 1e-12), spec[:, i], atol=1e-3)
    assert logspectrogram(np.zeros(0), sr, params).shape == (53, 0)


def test_the_kind_registers_itself_without_an_import():
    code = ("from deepstrf.preprocessing.spectrogram import SpectrogramParams, front_end_kinds\n"
            "p = SpectrogramParams(dt_ms=5, kind='logspectrogram', n_bands=3, f_min=100, "
            "f_max=400)\nprint('logspectrogram' in front_end_kinds())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("n, sigma", [(50, 3.0), (3000, 40.0), (7, 10.0), (20000, 100.0)])
def test_fft_gaussian_equals_scipys_direct_one(n, sigma):
    from scipy.ndimage import gaussian_filter1d

    from deepstrf.preprocessing.intracellular import gaussian_smooth

    x = np.random.default_rng(n).standard_normal(n).cumsum()
    np.testing.assert_allclose(gaussian_smooth(x, sigma),
                               gaussian_filter1d(x, sigma, mode="reflect"), atol=1e-9)
