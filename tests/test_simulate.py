"""Tests of deepstrf.testing.simulate: sounds, neurons with known STRFs, spikes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepstrf.preprocessing.spectrogram import SpectrogramParams, compute_spectrogram
from deepstrf.preprocessing.spikes import bin_spike_times
from deepstrf.testing.simulate import (
    NONLINEARITIES,
    SOUND_KINDS,
    NeuronPopulation,
    Simulation,
    draw_spike_trains,
    lag_matrix,
    make_neurons,
    make_sounds,
    pcm16_to_float,
    simulate,
    to_pcm16,
)

PARAMS = SpectrogramParams(dt_ms=5.0, n_bands=16, f_min=200.0, f_max=8000.0)


@pytest.fixture(scope="module")
def small_sim() -> Simulation:
    sounds = make_sounds(["song", "flatrip", "call", "mlnoise"], 0.8, 32000, seed=2)
    pop = make_neurons(8, PARAMS, n_lags=10, seed=3)
    return simulate([pcm16_to_float(to_pcm16(s)) for s in sounds], 32000, pop)


# --- sounds ------------------------------------------------------------------

def test_make_sounds_kinds_range_and_determinism():
    sounds = make_sounds(list(SOUND_KINDS), [0.3, 0.25, 0.2, 0.2, 0.1], 32000, seed=7)
    assert [s.size for s in sounds] == [9600, 8000, 6400, 6400, 3200]
    for s in sounds:
        assert s.dtype == np.float32 and s.ndim == 1
        assert np.abs(s).max() <= 1.0
        assert 0.01 < float(np.sqrt(np.mean(s.astype(np.float64) ** 2))) < 0.5
    again = make_sounds(list(SOUND_KINDS), [0.3, 0.25, 0.2, 0.2, 0.1], 32000, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(sounds, again, strict=True))
    other = make_sounds(list(SOUND_KINDS), [0.3, 0.25, 0.2, 0.2, 0.1], 32000, seed=8)
    assert not any(np.array_equal(a, b) for a, b in zip(sounds, other, strict=True))


def test_sound_i_depends_only_on_seed_and_index():
    a = make_sounds(["song", "flatrip"], 0.2, 24414, seed=1)
    b = make_sounds(["song", "flatrip", "call"], 0.2, 24414, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_song_has_silent_gaps_and_ripples_do_not():
    song, ripple = make_sounds(["song", "flatrip"], 1.0, 32000, seed=4)
    # 10 ms frame energies: a song has gaps near the noise floor, ripple noise has none.
    def frame_rms(x):
        frames = x[: x.size // 320 * 320].reshape(-1, 320).astype(np.float64)
        return np.sqrt((frames**2).mean(axis=1))
    song_rms, ripple_rms = frame_rms(song), frame_rms(ripple)
    assert (song_rms < 0.01).mean() > 0.1
    assert (ripple_rms[2:-2] < 0.01).mean() == 0
    # the ripple's energy stays within 250 Hz - 8 kHz
    spectrum = np.abs(np.fft.rfft(ripple.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(ripple.size, 1 / 32000)
    inside = spectrum[(freqs >= 200) & (freqs <= 8500)].sum()
    assert inside / spectrum.sum() > 0.99


@pytest.mark.parametrize("kwargs, error", [
    (dict(kinds="song", durations_s=1.0), ValueError),
    (dict(kinds=["song", "chirp"], durations_s=1.0), ValueError),
    (dict(kinds=["song"], durations_s=[1.0, 2.0]), ValueError),
    (dict(kinds=["song"], durations_s=-1.0), ValueError),
    (dict(kinds=["song"], durations_s=1.0, sample_rate=2000), ValueError),
    (dict(kinds=["song"], durations_s=1.0, seed=-1), ValueError),
    (dict(kinds=["song"], durations_s=1.0, seed=1.5), TypeError),
    (dict(kinds=5, durations_s=[1.0]), TypeError),
])
def test_make_sounds_bad_input(kwargs, error):
    kwargs.setdefault("sample_rate", 32000)
    with pytest.raises(error):
        make_sounds(**kwargs)


def test_pcm16_round_trip():
    x = np.array([-1.0, -0.5, 0.0, 0.25, 1.0, 2.0])
    q = to_pcm16(x)
    assert q.dtype == np.int16
    assert q.tolist() == [-32767, -16384, 0, 8192, 32767, 32767]
    y = pcm16_to_float(q)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, q.astype(np.float32) / 32768)
    with pytest.raises(ValueError):
        to_pcm16(np.array([np.nan]))
    with pytest.raises(TypeError):
        pcm16_to_float(np.zeros(3, dtype=np.int32))


# --- neurons -----------------------------------------------------------------

def test_make_neurons_structure_and_determinism():
    pop = make_neurons(20, PARAMS, n_lags=12, seed=1)
    assert isinstance(pop, NeuronPopulation) and not pop.calibrated
    assert pop.strfs.shape == (20, 16, 12) and (pop.n_neurons, pop.n_bands, pop.n_lags) == (20, 16, 12)
    np.testing.assert_allclose((pop.strfs**2).sum(axis=(1, 2)), 1.0)
    assert set(pop.nonlinearity) <= set(NONLINEARITIES)
    for i in range(20):
        truth = pop.neuron(i)
        strf = truth.strf
        # excitatory peak near the best band and latency, and an inhibitory part
        peak_band, peak_lag = np.unravel_index(np.argmax(strf), strf.shape)
        assert abs(peak_band - truth.best_band) <= 1
        assert abs(peak_lag * 5.0 - truth.latency_ms) <= 5.0
        assert strf.min() < -0.1 * strf.max()
        assert 1 <= truth.best_band <= 14
    assert not pop.strfs.flags.writeable
    same = make_neurons(20, PARAMS, n_lags=12, seed=1)
    np.testing.assert_array_equal(pop.strfs, same.strfs)
    assert not np.array_equal(pop.strfs, make_neurons(20, PARAMS, n_lags=12, seed=2).strfs)
    # default lags cover 100 ms
    assert make_neurons(1, PARAMS).n_lags == 20


def test_uncalibrated_rates_follow_targets_for_gaussian_drive():
    pop = make_neurons(30, PARAMS, n_lags=4, seed=5)
    # A white standard-normal spectrogram gives a unit-variance drive to unit-norm STRFs.
    z = np.random.default_rng(0).standard_normal((16, 40000))
    rates_hz = pop.rates(z) / 0.005
    np.testing.assert_allclose(rates_hz.mean(axis=1), pop.target_rate_hz, rtol=0.1)


@pytest.mark.parametrize("kwargs", [
    dict(n=0),
    dict(params="mel"),
    dict(n_lags=0),
    dict(latency_ms=(10.0, 5.0)),
    dict(sigma_time_ms=(0.0, 1.0)),
    dict(best_bands=(0, 16)),
    dict(best_bands=(2.5, 3)),
    dict(rate_hz=(0.0, 1.0)),
    dict(nonlinearities=("sigmoid",)),
    dict(nonlinearities=()),
    dict(threshold="high"),
    dict(max_rate_hz=-1.0),
])
def test_make_neurons_bad_input(kwargs):
    args = dict(n=2, params=PARAMS)
    args.update(kwargs)
    with pytest.raises((TypeError, ValueError)):
        make_neurons(**args)


def test_lag_matrix_convention():
    spec = np.arange(12, dtype=np.float64).reshape(2, 6)
    X = lag_matrix(spec, 3)
    assert X.shape == (6, 6)
    # row f * L + l holds band f delayed by l bins, zero before the onset
    np.testing.assert_array_equal(X[0], spec[0])
    np.testing.assert_array_equal(X[1], [0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(X[2], [0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(X[4], [0, 6, 7, 8, 9, 10])
    with pytest.raises(ValueError):
        lag_matrix(np.zeros(5), 2)
    with pytest.raises(ValueError):
        lag_matrix(spec, 0)


def test_simulation_calibration_and_realistic_rates(small_sim):
    sim = small_sim
    pop = sim.population
    assert pop.calibrated
    # spectrograms are exactly compute_spectrogram of the sounds
    for wave, spec in zip(sim.sounds, sim.spectrograms, strict=True):
        np.testing.assert_array_equal(spec, compute_spectrogram(wave, 32000, PARAMS))
    frames = np.concatenate(sim.spectrograms, axis=1)
    np.testing.assert_allclose(pop.band_mean, frames.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pop.band_std, frames.std(axis=1), rtol=1e-6)
    z = np.concatenate([pop.standardize(s) for s in sim.spectrograms], axis=1)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-9)
    # the drive over the calibration sounds has sd 1 and mean -threshold
    drive = np.concatenate([pop.drive(s) for s in sim.spectrograms], axis=1)
    np.testing.assert_allclose(drive.std(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(drive.mean(axis=1), -pop.threshold, atol=1e-6)
    # rates: spikes per 5 ms bin, mean in spikes/s at the target (up to the ceiling)
    rates_hz = np.concatenate(sim.rates, axis=1) / 0.005
    assert rates_hz.min() >= 0 and rates_hz.max() <= pop.max_rate_hz + 1e-9
    mean_hz = rates_hz.mean(axis=1)
    assert np.all((mean_hz > 30) & (mean_hz < 110))  # default target 40-100 spikes/s
    np.testing.assert_allclose(mean_hz, pop.target_rate_hz, rtol=1e-3)
    # the same rates from a dataset-shaped (1, F, T) stim
    np.testing.assert_allclose(pop.rates(sim.spectrograms[0][None]), sim.rates[0])
    # nonlinearities as documented
    d = pop.drive(sim.spectrograms[0])
    for n, kind in enumerate(pop.nonlinearity):
        g = {"relu": np.maximum(d[n], 0), "exp": np.exp(d[n]),
             "softplus": np.log1p(np.exp(d[n]))}[kind]
        expected = np.minimum(pop.gain_hz[n] * g, pop.max_rate_hz) * 0.005
        np.testing.assert_allclose(sim.rates[0][n], expected, rtol=1e-9, atol=1e-12)
    # spontaneous rate: rate at the band means
    assert np.allclose(pop.spontaneous_rate_hz * 0.005,
                       pop.rates(np.repeat(pop.band_mean[:, None], 30, axis=1))[:, -1])


def test_simulate_is_deterministic(small_sim):
    sounds = make_sounds(["song", "flatrip", "call", "mlnoise"], 0.8, 32000, seed=2)
    again = simulate([pcm16_to_float(to_pcm16(s)) for s in sounds], 32000,
                     make_neurons(8, PARAMS, n_lags=10, seed=3))
    for a, b in zip(small_sim.rates, again.rates, strict=True):
        np.testing.assert_array_equal(a, b)
    t1 = small_sim.spike_trains(0, 3, 11, pre_ms=100, post_ms=100)
    t2 = again.spike_trains(0, 3, 11, pre_ms=100, post_ms=100)
    assert all(np.array_equal(a, b) for x, y in zip(t1, t2, strict=True)
               for a, b in zip(x, y, strict=True))


def test_population_bad_spectrogram(small_sim):
    pop = small_sim.population
    with pytest.raises(ValueError):
        pop.rates(np.zeros((5, 10)))
    with pytest.raises(ValueError):
        pop.rates(np.full((16, 10), np.nan))
    with pytest.raises(ValueError):
        pop.calibrate([np.zeros((16, 1))])
    with pytest.raises(ValueError):
        pop.neuron(8)
    with pytest.raises(TypeError):
        simulate([np.zeros(100)], 32000, "pop")
    with pytest.raises(ValueError):
        simulate([], 32000, pop)
    with pytest.raises(IndexError):
        small_sim.spike_trains(0, 1, 0, neurons=[8])
    with pytest.raises(ValueError):
        small_sim.spike_trains(9, 1, 0)


# --- spikes ------------------------------------------------------------------

def test_spike_times_sit_on_the_clock_rounded_down_to_microseconds():
    rates = np.full((2, 40), 0.8)
    trains = draw_spike_trains(rates, 5.0, 5, np.random.default_rng(0),
                               spontaneous=np.array([0.3, 0.3]), pre_ms=50, post_ms=30)
    times = np.concatenate([t for neuron in trains for t in neuron])
    assert times.size > 100
    us = np.round(times * 1000).astype(np.int64)
    np.testing.assert_array_equal(us / 1000.0, times)  # exactly 3 decimals
    # floor(j * 1e6 / 32000) for some sample index j: j = ceil(us / 31.25) maps back to us
    j = -((-us * 32) // 1000)
    np.testing.assert_array_equal(j * 1000 // 32, us)
    assert times.min() >= -50 and times.max() < 200 + 30
    assert (times < 0).any() and (times >= 200).any()
    for neuron in trains:
        for t in neuron:
            assert np.all(np.diff(t) >= 0)
    assert [f"{t:.3f}" for t in times[:5]] == [f"{u // 1000}.{u % 1000:03d}" if u >= 0 else
                                               f"-{-u // 1000}.{-u % 1000:03d}" for u in us[:5]]


def test_spikes_stay_in_their_bin_at_awkward_bin_widths():
    # one bin only is active; every spike must bin back into it
    for dt in (5.0, 1.0, 0.25, 3.3):
        rates = np.zeros((1, 12))
        rates[0, 7] = 4.0
        trains = draw_spike_trains(rates, dt, 200, 1)[0]
        counts = bin_spike_times(trains, dt, 12)
        assert counts.sum() > 500
        assert counts[:, 7].sum() == counts.sum()


def test_poisson_counts_match_rates_on_average():
    rng = np.random.default_rng(3)
    rates = rng.uniform(0, 0.6, size=(3, 50))
    trains = draw_spike_trains(rates, 5.0, 400, rng)
    for n in range(3):
        counts = bin_spike_times(trains[n], 5.0, 50)
        mean = counts.mean(axis=0)
        z = (mean - rates[n]) / np.sqrt(np.maximum(rates[n], 1e-3) / 400)
        assert np.abs(z).max() < 5
        # Poisson: variance equals mean
        assert abs(counts.var(axis=0).sum() / rates[n].sum() - 1) < 0.15


def test_bernoulli_refractory():
    rates = np.full((1, 200), 2.0)
    trains = draw_spike_trains(rates, 1.0, 20, 4, model="bernoulli", refractory_ms=0.8)[0]
    counts = bin_spike_times(trains, 1.0, 200)
    assert counts.max() == 1
    assert counts.mean() > 0.5
    for t in trains:
        assert np.all(np.diff(t) >= 0.8 - 1e-9)


def test_draw_spike_trains_shapes_and_empty():
    out = draw_spike_trains(np.zeros((3, 10)), 5.0, 2, 0)
    assert len(out) == 3 and all(len(n) == 2 for n in out)
    assert all(t.size == 0 and t.dtype == np.float64 for n in out for t in n)
    assert draw_spike_trains(np.ones((2, 4)), 5.0, 0, 0) == [[], []]


@pytest.mark.parametrize("kwargs, error", [
    (dict(rates=np.zeros(5)), ValueError),
    (dict(rates=-np.ones((1, 5))), ValueError),
    (dict(dt_ms=0.0), ValueError),
    (dict(dt_ms=0.0004), ValueError),
    (dict(n_repeats=-1), ValueError),
    (dict(rng="seed"), TypeError),
    (dict(pre_ms=10.0), ValueError),
    (dict(pre_ms=10.0, spontaneous=np.ones(3)), ValueError),
    (dict(model="gamma"), ValueError),
    (dict(clock_hz=100), ValueError),
    (dict(refractory_ms=-1.0), ValueError),
])
def test_draw_spike_trains_bad_input(kwargs, error):
    args = dict(rates=np.ones((1, 5)) * 0.1, dt_ms=5.0, n_repeats=2, rng=0)
    args.update(kwargs)
    with pytest.raises(error):
        draw_spike_trains(**args)


# --- recovery of the true STRF -----------------------------------------------

def _lagged(z: np.ndarray, n_lags: int) -> np.ndarray:
    """(F * L, T) lagged copies, written independently of lag_matrix."""
    n_bands, n_frames = z.shape
    out = np.zeros((n_bands, n_lags, n_frames))
    for lag in range(n_lags):
        out[:, lag, lag:] = z[:, : n_frames - lag]
    return out.reshape(n_bands * n_lags, n_frames)


def test_true_strf_is_recoverable_by_ridge_regression():
    n_lags = 12
    kinds = ["flatrip", "song", "mlnoise", "songrip"] * 4
    sounds = [pcm16_to_float(to_pcm16(s)) for s in make_sounds(kinds, 2.0, 32000, seed=3)]
    pop = make_neurons(6, PARAMS, n_lags=n_lags, seed=5, rate_hz=(30.0, 50.0),
                       nonlinearities=("softplus", "relu"), threshold=(-0.5, 0.0))
    sim = simulate(sounds, 32000, pop)
    pop = sim.population
    rng = np.random.default_rng(0)
    X, Y = [], []
    for s, spec in enumerate(sim.spectrograms):
        X.append(_lagged(pop.standardize(spec), n_lags))
        trains = sim.spike_trains(s, 10, rng)
        Y.append(np.stack([bin_spike_times(t, 5.0, spec.shape[1]).mean(axis=0) for t in trains]))
    # fit on 12 sounds, pick the ridge penalty on the other 4
    fit, held = slice(0, 12), slice(12, 16)
    Xf, Yf = np.concatenate(X[fit], axis=1), np.concatenate(Y[fit], axis=1)
    Xh, Yh = np.concatenate(X[held], axis=1), np.concatenate(Y[held], axis=1)
    x_mean, y_mean = Xf.mean(axis=1, keepdims=True), Yf.mean(axis=1, keepdims=True)
    Xc, Yc = Xf - x_mean, Yf - y_mean
    gram, cross = Xc @ Xc.T, Xc @ Yc.T
    best_w, best_score = None, np.full(pop.n_neurons, -np.inf)
    for penalty in (10.0, 100.0, 1000.0, 3000.0):
        W = np.linalg.solve(gram + penalty * np.eye(gram.shape[0]), cross).T
        pred = W @ (Xh - x_mean) + y_mean
        score = np.array([np.corrcoef(pred[n], Yh[n])[0, 1] for n in range(pop.n_neurons)])
        better = score > best_score
        best_w = W if best_w is None else np.where(better[:, None], W, best_w)
        best_score = np.maximum(score, best_score)
    r = np.array([np.corrcoef(best_w[n], pop.strfs[n].ravel())[0, 1]
                  for n in range(pop.n_neurons)])
    driven = np.argsort([rate.var() for rate in np.concatenate(sim.rates, axis=1)])[-3:]
    assert np.all(r[driven] > 0.8), (r, driven)
    assert math.isfinite(r.mean()) and np.median(r) > 0.7
