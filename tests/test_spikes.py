"""Tests of deepstrf.preprocessing.spikes: binning, the time grid, smoothing kernels."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepstrf.preprocessing.spikes import bin_spike_times, hanning_kernel, n_bins_for_duration


def reference_binning(trials: list[list[str]], dt: str, n_bins: int, onset: str) -> np.ndarray:
    """Brute force with exact rational arithmetic on the decimal strings."""
    out = np.zeros((len(trials), n_bins), dtype=np.float32)
    dt_q, onset_q = Fraction(dt), Fraction(onset)
    for r, trial in enumerate(trials):
        for spike in trial:
            k = math.floor((Fraction(spike) - onset_q) / dt_q)
            if 0 <= k < n_bins:
                out[r, k] += 1
    return out


def binned(trials: list[list[str]], dt: str, n_bins: int, onset: str) -> np.ndarray:
    arrays = [np.array([float(s) for s in trial], dtype=np.float64) for trial in trials]
    return bin_spike_times(arrays, float(dt), n_bins, onset_ms=float(onset))


def ms(thousandths: int) -> str:
    """An integer number of microseconds as a 3-decimal ms string, like the CRCNS files."""
    return str(Decimal(thousandths).scaleb(-3).quantize(Decimal("0.001")))


# --- bin_spike_times -------------------------------------------------------


def test_doc_example_values():
    out = bin_spike_times([[-1.0, 0.0, 4.999, 5.0, 15.0], []], dt_ms=5, n_bins=3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[2, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize(
    ("spike", "dt", "onset", "expected_bin"),
    [
        ("15.000", "5", "0", 3),
        ("0.3", "0.1", "0", 3),
        ("0.7", "0.1", "0", 7),
        ("2.9", "0.1", "0", 29),
        ("0.6", "0.2", "0", 3),
        ("1.1", "0.1", "0.2", 9),
        ("-99.9", "0.1", "-100", 1),
        ("4.999", "5", "0", 0),
        ("5", "5", "0", 1),
        ("0", "1", "0", 0),
        ("-0.0", "1", "0", 0),
        ("993.312", "1", "0", 993),
        ("12.5", "2.5", "0", 5),
    ],
)
def test_spike_on_an_edge_goes_to_the_bin_starting_there(spike, dt, onset, expected_bin):
    out = binned([[spike]], dt, 2000, onset)
    assert out.sum() == 1
    assert int(np.flatnonzero(out[0])[0]) == expected_bin


def test_cropping_before_onset_and_at_or_after_the_end():
    trials = [["-0.001", "-5", "0", "9.999", "10", "10.001", "1000"]]
    out = binned(trials, "5", 2, "0")
    np.testing.assert_array_equal(out, [[1, 1]])


def test_onset_shifts_the_grid():
    trials = [["-100", "-99.5", "-95", "0", "5"]]
    out = binned(trials, "5", 22, "-100")
    expected = np.zeros((1, 22), np.float32)
    expected[0, [0, 1, 20, 21]] = [2, 1, 1, 1]
    np.testing.assert_array_equal(out, expected)


def test_zero_trials_and_zero_bins():
    assert bin_spike_times([], 5.0, 7).shape == (0, 7)
    out = bin_spike_times([np.array([1.0]), np.array([])], 5.0, 0)
    assert out.shape == (2, 0) and out.dtype == np.float32


def test_empty_trials_give_zero_rows_and_keep_their_place():
    out = bin_spike_times([np.array([]), np.array([1.0, 6.0]), np.array([])], 5.0, 3)
    np.testing.assert_array_equal(out, [[0, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_lists_scalars_and_unsorted_times_are_accepted():
    out = bin_spike_times([[7.0, 1.0, 2.0], 3.0, (11.0,)], 5.0, 3)
    np.testing.assert_array_equal(out, [[2, 1, 0], [1, 0, 0], [0, 0, 1]])


def test_counts_accumulate_in_one_bin():
    out = bin_spike_times([np.full(1000, 2.5)], 5.0, 2)
    np.testing.assert_array_equal(out, [[1000, 0]])


def test_random_trains_match_the_exact_reference():
    rng = np.random.default_rng(12)
    for dt in ("0.1", "0.25", "0.3", "1", "2.5", "5", "10"):
        for onset in ("0", "-50", "0.1", "2.5"):
            trials = []
            for _ in range(int(rng.integers(0, 8))):
                n = int(rng.integers(0, 40))
                micro = rng.integers(-200_000, 700_000, size=n).tolist()
                # Put a third of the spikes exactly on bin edges.
                step = Fraction(dt) * 1000
                onset_us = Fraction(onset) * 1000
                for i in range(0, n, 3):
                    edge = onset_us + step * int(rng.integers(-5, 60))
                    if edge.denominator == 1:
                        micro[i] = int(edge)
                trials.append([ms(m) for m in micro])
            n_bins = int(rng.integers(0, 300))
            np.testing.assert_array_equal(
                binned(trials, dt, n_bins, onset), reference_binning(trials, dt, n_bins, onset),
                err_msg=f"dt={dt} onset={onset}",
            )


decimal_dt = st.sampled_from(["0.05", "0.1", "0.2", "0.25", "0.3", "0.5", "1", "1.5", "2",
                              "2.5", "3", "4", "5", "7.5", "10", "20", "25"])
decimal_onset = st.sampled_from(["0", "-2000", "-0.5", "0.1", "0.3", "12.5", "100"])


@st.composite
def spike_trains(draw):
    dt = draw(decimal_dt)
    onset = draw(decimal_onset)
    n_bins = draw(st.integers(min_value=0, max_value=400))
    step_us = Fraction(dt) * 1000
    onset_us = Fraction(onset) * 1000
    edge = st.integers(-20, 420).map(lambda k: onset_us + step_us * k).filter(
        lambda q: q.denominator == 1).map(int)
    anywhere = st.integers(-3_000_000, 12_000_000)
    spike = st.one_of(edge, anywhere, edge.map(lambda m: m - 1), edge.map(lambda m: m + 1))
    trials = draw(st.lists(st.lists(spike.map(ms), max_size=30), max_size=6))
    return trials, dt, n_bins, onset


@settings(max_examples=150, deadline=None)
@given(spike_trains())
def test_property_matches_exact_reference(case):
    trials, dt, n_bins, onset = case
    out = binned(trials, dt, n_bins, onset)
    assert out.shape == (len(trials), n_bins)
    np.testing.assert_array_equal(out, reference_binning(trials, dt, n_bins, onset))


def test_seconds_converted_to_ms_still_bin_exactly():
    # AA4 stores seconds; the loader multiplies by 1000 before binning.
    seconds = np.array([0.003, 0.015, 0.0299, 0.03])
    out = bin_spike_times([seconds * 1000.0], 1.0, 31)
    assert np.flatnonzero(out[0]).tolist() == [3, 15, 29, 30]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(dt_ms=0, n_bins=3), ValueError, "dt_ms"),
        (dict(dt_ms=-1, n_bins=3), ValueError, "dt_ms"),
        (dict(dt_ms=float("nan"), n_bins=3), ValueError, "dt_ms"),
        (dict(dt_ms="5", n_bins=3), TypeError, "dt_ms"),
        (dict(dt_ms=5, n_bins=-1), ValueError, "n_bins"),
        (dict(dt_ms=5, n_bins=2.0), TypeError, "n_bins"),
        (dict(dt_ms=5, n_bins=3, onset_ms=float("inf")), ValueError, "onset_ms"),
        (dict(dt_ms=5, n_bins=3, onset_ms=True), TypeError, "onset_ms"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        bin_spike_times([[1.0]], **kwargs)


def test_non_finite_spike_names_the_trial():
    with pytest.raises(ValueError, match="trial 1 holds nan"):
        bin_spike_times([[1.0], [2.0, np.nan]], 5.0, 3)


def test_two_dimensional_trial_raises():
    with pytest.raises(ValueError, match="trial 0 must be a 1-D"):
        bin_spike_times([np.ones((2, 3))], 5.0, 3)


# --- n_bins_for_duration ---------------------------------------------------


@pytest.mark.parametrize(
    ("n_samples", "sample_rate", "dt", "expected"),
    [
        (32000, 32000, 0.1, 10000),
        (32000, 32000, 5.0, 200),
        (32001, 32000, 5.0, 201),
        (31999, 32000, 5.0, 200),
        (0, 32000, 5.0, 0),
        (1, 32000, 5.0, 1),
        (24414, 24414.0625, 1.0, 1000),
        (244140, 48828.125, 5.0, 1000),
        (44100 * 3, 44100, 0.3, 10000),
        (48000, 48000, 2.5, 400),
    ],
)
def test_n_bins_values(n_samples, sample_rate, dt, expected):
    assert n_bins_for_duration(n_samples, sample_rate, dt) == expected


def test_n_bins_matches_exact_ceiling():
    rng = np.random.default_rng(3)
    for _ in range(500):
        rate = int(rng.choice([8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000]))
        dt = str(rng.choice(["0.1", "0.25", "0.5", "1", "2", "2.5", "5", "10", "20"]))
        n = int(rng.integers(0, 400_000))
        exact = math.ceil(Fraction(n * 1000, rate) / Fraction(dt))
        assert n_bins_for_duration(n, rate, float(dt)) == exact


@pytest.mark.parametrize(
    ("args", "error"),
    [((-1, 32000, 5.0), ValueError), ((10, 0, 5.0), ValueError), ((10, 32000, 0), ValueError),
     ((10.0, 32000, 5.0), TypeError)],
)
def test_n_bins_bad_arguments(args, error):
    with pytest.raises(error):
        n_bins_for_duration(*args)


# --- hanning_kernel --------------------------------------------------------


def test_kernel_values_at_the_usual_bin_widths():
    np.testing.assert_allclose(hanning_kernel(21, 5.0), np.array([1, 3, 4, 3, 1]) / 12)
    np.testing.assert_allclose(hanning_kernel(21, 10.0), np.array([1, 2, 1]) / 4)
    one_ms = hanning_kernel(21, 1.0)
    assert one_ms.size == 21
    np.testing.assert_allclose(one_ms, np.hanning(23)[1:-1] / np.hanning(23).sum())


@pytest.mark.parametrize(("window", "dt"), [(21, 1), (21, 2), (21, 2.5), (21, 5), (21, 10),
                                            (20, 0.1), (0.3, 0.1), (50, 3)])
def test_kernel_properties(window, dt):
    kernel = hanning_kernel(window, dt)
    k = math.floor(Fraction(str(window)) / Fraction(str(dt)))
    expected_size = 1 if k < 2 else k + (k % 2 == 0)
    assert kernel.size == expected_size and kernel.size % 2 == 1
    assert kernel.dtype == np.float64
    assert np.all(kernel > 0)
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1])
    assert np.argmax(kernel) == kernel.size // 2


@pytest.mark.parametrize(("window", "dt"), [(21, 15), (21, 21), (21, 30), (1, 5)])
def test_kernel_shorter_than_two_bins_is_identity(window, dt):
    np.testing.assert_array_equal(hanning_kernel(window, dt), [1.0])


def test_smoothing_preserves_spike_counts():
    counts = bin_spike_times([np.random.default_rng(1).uniform(0, 500, 80)], 1.0, 500)[0]
    smoothed = np.convolve(counts, hanning_kernel(21, 1.0), mode="full")
    np.testing.assert_allclose(smoothed.sum(), counts.sum(), rtol=1e-6)


@pytest.mark.parametrize("args", [(0, 5), (21, 0), (-21, 5), (21, float("inf"))])
def test_kernel_bad_arguments(args):
    with pytest.raises(ValueError):
        hanning_kernel(*args)
