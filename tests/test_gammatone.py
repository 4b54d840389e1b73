"""The gammatone front end: equal to the ``gammatone`` package, on the response grid."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from deepstrf.preprocessing import gammatone as gt
from deepstrf.preprocessing.spectrogram import (
    SpectrogramParams,
    band_frequencies,
    compute_spectrogram,
)
from deepstrf.preprocessing.spikes import n_bins_for_duration

gtgram_module = pytest.importorskip("gammatone.gtgram")
gt_filters = pytest.importorskip("gammatone.filters")


def _noise(rate, seconds, seed=0):
    return (np.random.default_rng(seed).standard_normal(int(round(rate * seconds))) * 0.1)


def _params(dt_ms, compression="none", **kw):
    kw = {"n_bands": 50, "window_ms": 2.5, "f_min": 1000.0, "f_max": 8000.0, **kw}
    return SpectrogramParams(dt_ms=dt_ms, kind="gammatone", compression=compression, **kw)


@pytest.mark.parametrize("rate", [40000, 48000, 44100, 20000])
@pytest.mark.parametrize("hop_time,f_max", [(0.005, 8000.0), (0.001, None), (0.0025, 6000.0)])
def test_gtgram_equals_the_package(rate, hop_time, f_max):
    x = _noise(rate, 0.25, seed=rate)
    ours = gt.gtgram(x, rate, 0.0025, hop_time, 50, 1000.0, f_max)
    theirs = gtgram_module.gtgram(x, rate, 0.0025, hop_time, 50, 1000.0, f_max)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * theirs.max())


def test_centres_and_filters_equal_the_package():
    ours = gt.erb_centre_frequencies(1000.0, 8000.0, 50)
    theirs = gt_filters.centre_freqs(40000, 50, 1000.0, 8000.0)[::-1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)
    assert ours[0] == pytest.approx(1000.0, rel=1e-12) and ours[-1] < 8000.0
    assert np.all(np.diff(ours) > 0)
    x = _noise(40000, 0.05)
    coefs = np.flipud(gt_filters.make_erb_filters(40000, theirs[::-1]))
    np.testing.assert_allclose(gt.erb_filterbank(x, 40000, ours),
                               gt_filters.erb_filterbank(x, coefs), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("dt_ms,rate", [(5.0, 40000), (1.0, 40000), (5.0, 48000), (2.5, 48000)])
def test_grid_frames_are_gtgram_of_the_padded_sound(dt_ms, rate):
    """Frame k is gtgram's window centred on response bin k's middle, nothing else."""
    x = _noise(rate, 0.3, seed=3)
    spec = compute_spectrogram(x, rate, _params(dt_ms))
    T = n_bins_for_duration(x.size, rate, dt_ms)
    assert spec.shape == (50, T) and spec.dtype == np.float32
    hop, nwin = round(rate * dt_ms / 1000), round(0.0025 * rate)
    first = (hop - nwin) // 2                 # window start relative to bin start
    pad = (-first) % hop                      # zeros that put window k on a gtgram column
    shift = (pad + first) // hop              # that column's index minus k
    padded = np.concatenate([np.zeros(pad), x, np.zeros(2 * nwin + hop)])
    ref = gtgram_module.gtgram(padded, rate, nwin / rate, hop / rate, 50, 1000.0, 8000.0)
    np.testing.assert_allclose(spec, ref[:, shift:shift + T], rtol=2e-6, atol=1e-7 * ref.max())


def test_click_peaks_in_its_bin_and_silence_is_zero():
    rate, dt = 40000, 5.0
    x = np.zeros(rate // 2)
    k = 37
    x[int(k * 200 + 100)] = 1.0               # a click in the middle of bin 37
    spec = compute_spectrogram(x, rate, _params(dt))
    assert int(np.argmax(spec[-1])) == k       # top band: shortest ringing
    assert np.abs(spec[:, :k]).max() < 1e-9 * spec.max()  # causal: (rounding) zero before
    silent = compute_spectrogram(np.zeros(4000), rate, _params(dt, compression="log1p"))
    assert silent.shape == (50, 20) and not silent.any()


def test_compression_applies_to_the_rms():
    x = _noise(48000, 0.2)
    raw = compute_spectrogram(x, 48000, _params(5.0))
    for compression, expected in (("log1p", np.log1p(raw)), ("cubic", np.cbrt(raw)),
                                  ("log", np.log(raw.astype(np.float64) + 1e-10))):
        np.testing.assert_allclose(compute_spectrogram(x, 48000, _params(5.0, compression)),
                                   expected, rtol=1e-5, atol=1e-6)


def test_a_rate_without_whole_hop_is_resampled_onto_the_grid():
    x = _noise(44100, 0.5)
    spec = compute_spectrogram(x, 44100, _params(5.0))
    assert spec.shape == (50, n_bins_for_duration(x.size, 44100, 5.0)) == (50, 100)
    # 220.5 samples per bin at 44.1 kHz; the analysis runs at 44 kHz (hop 220)
    fixed = compute_spectrogram(x, 44100, _params(5.0, sample_rate=44000.0))
    np.testing.assert_array_equal(spec, fixed)


def test_band_frequencies_through_the_registry():
    freqs = band_frequencies(_params(5.0), 40000)
    np.testing.assert_allclose(freqs, gt.erb_centre_frequencies(1000, 8000, 50))
    nyquist_top = band_frequencies(_params(5.0, f_max=None), 40000)
    np.testing.assert_allclose(nyquist_top, gt.erb_centre_frequencies(1000, 20000, 50))


def test_bad_settings_raise_clearly():
    x = _noise(12000, 0.1)
    with pytest.raises(ValueError, match="Nyquist"):
        compute_spectrogram(x, 12000, _params(5.0))  # f_max 8 kHz > 6 kHz
    with pytest.raises(ValueError, match="f_min > 0"):
        compute_spectrogram(x, 12000, _params(5.0, f_min=0.0, f_max=5000.0))
    with pytest.raises(ValueError, match="kind"):
        SpectrogramParams(dt_ms=5.0, kind="gammatones")
    with pytest.raises(ValueError, match="f_max must be above"):
        gt.erb_centre_frequencies(8000, 1000, 10)


def test_worker_import_stays_light():
    code = ("import sys, numpy as np\n"
            "from deepstrf.preprocessing.spectrogram import SpectrogramParams, "
            "compute_spectrogram\n"
            "p = SpectrogramParams(dt_ms=5, kind='gammatone', n_bands=8, window_ms=2.5, "
            "f_min=1000, f_max=8000)\n"
            "compute_spectrogram(np.ones(4000, np.float32), 40000, p)\n"
            "print(sorted(m for m in ('torch', 'librosa', 'gammatone', 'matplotlib', 'scipy') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
