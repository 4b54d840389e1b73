"""Tests of deepstrf.preprocessing.continuous: pooling, onsets, padding and bad-span masking."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepstrf.preprocessing.continuous import (
    cut_padded,
    pool_factor,
    pool_mean,
    span_to_bins,
    time_to_sample,
)

NAN = np.nan


# --- pool_mean -------------------------------------------------------------

def test_pool_mean_signed_values_are_averaged_not_rectified():
    x = np.array([1.0, -1.0, -2.0, -4.0, 3.0, -3.0])
    np.testing.assert_array_equal(pool_mean(x, 2), [0.0, -3.0, 0.0])
    np.testing.assert_array_equal(pool_mean(x, 3), [-2.0 / 3.0, -4.0 / 3.0])


def test_pool_mean_leaves_nan_out_of_the_block_mean():
    x = np.array([[1.0, NAN, 3.0, 5.0, NAN, NAN],
                  [-2.0, 4.0, NAN, -6.0, 1.0, 2.0]])
    out = pool_mean(x, 2)
    np.testing.assert_array_equal(out, [[1.0, 4.0, NAN], [1.0, -6.0, 1.5]])


def test_pool_mean_all_nan_block_is_nan_without_a_warning():
    x = np.array([NAN, NAN, 2.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = pool_mean(x, 2)
    np.testing.assert_array_equal(out, [NAN, 3.0])


def test_pool_mean_infinite_samples_count_as_missing():
    out = pool_mean(np.array([np.inf, 2.0, -np.inf, -np.inf]), 2)
    np.testing.assert_array_equal(out, [2.0, NAN])


@pytest.mark.parametrize(("partial", "expected"), [
    ("mean", [-1.0, 4.0, 5.0]),
    ("drop", [-1.0, 4.0]),
    ("nan", [-1.0, 4.0, NAN]),
])
def test_pool_mean_partial_last_block(partial, expected):
    x = np.array([1.0, -3.0, NAN, 4.0, 5.0])
    np.testing.assert_array_equal(pool_mean(x, 2, partial=partial), expected)


def test_pool_mean_factor_one_is_identity_and_shorter_than_factor_is_one_bin():
    x = np.array([[0.5, -1.5, NAN]])
    np.testing.assert_array_equal(pool_mean(x, 1), x)
    np.testing.assert_array_equal(pool_mean(x, 5), [[-0.5]])
    assert pool_mean(x, 5, partial="drop").shape == (1, 0)


def test_pool_mean_dtypes():
    assert pool_mean(np.ones(4, np.float32), 2).dtype == np.float32
    assert pool_mean(np.ones(4, np.float16), 2).dtype == np.float32
    assert pool_mean(np.ones(4), 2).dtype == np.float64
    out = pool_mean(np.array([1, 2, -7, 4], dtype=np.int16), 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [1.5, -1.5])


def test_pool_mean_float32_sums_in_float64():
    # 1e8 + 1 - 1e8 in float32 is 0; summed in float64 the mean is 1/3 exactly as asked.
    x = np.array([1e8, 1.0, -1e8], dtype=np.float32)
    assert pool_mean(x, 3)[0] == np.float32(1.0 / 3.0)


def test_pool_mean_keeps_leading_axes():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    out = pool_mean(x, 2)
    assert out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out[1, 2], [20.5, 22.5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(NAN)), min_size=1, max_size=40),
       st.integers(1, 7), st.integers(1, 5))
def test_pool_mean_matches_brute_force_and_chunking(values, factor, n_chunks):
    x = np.array(values)
    out = pool_mean(x, factor)
    for i in range(out.size):
        block = [v for v in values[i * factor:(i + 1) * factor] if not math.isnan(v)]
        if block:
            assert out[i] == pytest.approx(sum(block) / len(block), rel=1e-12, abs=1e-9)
        else:
            assert math.isnan(out[i])
    # Pooling chunks cut on block boundaries gives the same numbers as pooling the whole.
    n_full = (x.size // factor) * factor
    edges = np.linspace(0, n_full // factor, n_chunks + 1).astype(int) * factor
    parts = [pool_mean(x[a:b], factor) for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), pool_mean(x[:n_full], factor))


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((np.ones(4), 0), {}, ValueError, "factor"),
    ((np.ones(4), 2.5), {}, TypeError, "factor"),
    ((np.ones(4), 2), {"partial": "pad"}, ValueError, "partial"),
    ((np.float64(1.0), 2), {}, ValueError, "scalar"),
    ((np.array(["a", "b"]), 1), {}, TypeError, "real numeric"),
    ((np.ones(4, dtype=complex), 2), {}, TypeError, "real numeric"),
])
def test_pool_mean_rejects_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        pool_mean(*args, **kwargs)


# --- pool_factor -----------------------------------------------------------

@pytest.mark.parametrize(("sfreq", "dt_ms", "expected"), [
    (500.0, 10.0, 5),
    (500.0, 2.0, 1),
    (44100.0, 10.0, 441),
    (1000.0, (0.1 + 0.2) * 10, 3),     # 3.0000000000000004 samples: float noise, not a fraction
    (30000.0, 1.0 / 3.0, 10),          # 9.999999999999998
])
def test_pool_factor(sfreq, dt_ms, expected):
    assert pool_factor(sfreq, dt_ms) == expected


@pytest.mark.parametrize(("sfreq", "dt_ms"), [(500.0, 3.0), (500.0, 1.0), (1000.0, 2.5)])
def test_pool_factor_rejects_fractional_blocks(sfreq, dt_ms):
    with pytest.raises(ValueError, match="whole number of input samples") as info:
        pool_factor(sfreq, dt_ms)
    assert "resample" in str(info.value)


@pytest.mark.parametrize(("sfreq", "dt_ms"), [(0.0, 10.0), (500.0, -1.0), (float("nan"), 1.0)])
def test_pool_factor_rejects_non_positive(sfreq, dt_ms):
    with pytest.raises(ValueError):
        pool_factor(sfreq, dt_ms)


# --- time_to_sample --------------------------------------------------------

def test_onsets_on_sample_boundaries_survive_float_rounding():
    # k * (1/500) and k / 500 differ in the last bit for many k; every one must give sample k.
    for sfreq in (500.0, 100.0, 44100.0, 1000.0 / 3.0):
        period = 1.0 / sfreq
        for k in range(0, 200_000, 7):
            assert time_to_sample(k * period, sfreq) == k
            assert time_to_sample(k / sfreq, sfreq) == k


def test_decimal_onsets_land_on_their_sample():
    # Onsets written with 3 decimals (like the Alice word table) on a 500 Hz clock.
    for ms in range(0, 100_000, 2):
        t = float(f"{ms // 1000}.{ms % 1000:03d}")
        assert time_to_sample(t, 500.0) == ms // 2


@pytest.mark.parametrize(("t", "sfreq", "expected"), [
    (0.001, 500.0, 1),     # 0.5 samples: half rounds up (numpy's half-to-even gives 0)
    (0.003, 500.0, 2),     # 1.5
    (0.005, 100.0, 1),     # 0.5
    (0.025, 100.0, 3),     # 2.5 (half-to-even gives 2)
    (1.15, 10.0, 12),      # 1.15 * 10 = 11.499999999999998: still a half, still up
    (0.0039, 500.0, 2),    # 1.95
    (0.0031, 500.0, 2),    # 1.55
    (0.0029, 500.0, 1),    # 1.45
    (-0.001, 500.0, 0),    # -0.5 rounds up to 0
    (-0.003, 500.0, -1),   # -1.5 rounds up to -1
    (-0.0041, 500.0, -2),
])
def test_time_to_sample_rounds_half_up(t, sfreq, expected):
    assert time_to_sample(t, sfreq) == expected


def test_half_sample_apart_onsets_never_share_a_sample():
    sfreq = 100.0
    samples = [time_to_sample(k * 0.005, sfreq) for k in range(2000)]
    assert samples == [(k + 1) // 2 for k in range(2000)]


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -float("inf")])
def test_time_to_sample_rejects_non_finite(t):
    with pytest.raises(ValueError, match="finite"):
        time_to_sample(t, 500.0)


def test_time_to_sample_rejects_bad_rate():
    with pytest.raises(ValueError, match="sfreq"):
        time_to_sample(1.0, 0.0)


# --- cut_padded ------------------------------------------------------------

def test_cut_padded_inside_is_a_copy():
    x = np.arange(12.0).reshape(2, 6)
    out = cut_padded(x, 1, 3)
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]])
    out[:] = -1
    assert x[0, 1] == 1.0


def test_cut_padded_nan_past_the_end_of_the_recording():
    x = np.arange(12.0).reshape(2, 6)
    out = cut_padded(x, 4, 5)
    np.testing.assert_array_equal(out, [[4.0, 5.0, NAN, NAN, NAN], [10.0, 11.0, NAN, NAN, NAN]])


def test_cut_padded_before_the_start_and_both_sides():
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(cut_padded(x, -2, 3), [NAN, NAN, 1.0])
    np.testing.assert_array_equal(cut_padded(x, -1, 6), [NAN, 1.0, -2.0, 3.0, NAN, NAN])


@pytest.mark.parametrize("start", [3, 10, -4, -100])
def test_cut_padded_entirely_outside_is_all_nan(start):
    out = cut_padded(np.ones((3, 3), np.float32), start, 4)
    assert out.shape == (3, 4) and out.dtype == np.float32
    assert np.isnan(out).all()


def test_cut_padded_zero_length_and_dtype():
    assert cut_padded(np.ones(5), 2, 0).shape == (0,)
    assert cut_padded(np.ones(5, np.float32), 0, 2).dtype == np.float32


@pytest.mark.parametrize(("args", "error"), [
    ((np.arange(4), 0, 2), TypeError),          # int trace cannot hold NaN padding
    ((np.ones(4), 0, -1), ValueError),
    ((np.ones(4), 0.5, 2), TypeError),
])
def test_cut_padded_rejects_bad_input(args, error):
    with pytest.raises(error):
        cut_padded(*args)


def test_cut_then_pool_part_averages_a_partly_recorded_bin():
    # A trace of 23 samples cut into blocks of 5 from sample 10: bins 0-1 are full, bin 2 has
    # 3 recorded samples (averaged, since padding is NaN), bin 3 none. A caller that wants
    # partly recorded bins missing must mask them (deepstrf.preprocessing.eeg does).
    x = np.arange(23.0)
    piece = cut_padded(x, 10, 20)
    np.testing.assert_array_equal(pool_mean(piece, 5), [12.0, 17.0, 21.0, NAN])


# --- span_to_bins ----------------------------------------------------------

def test_span_to_bins_docstring_example():
    assert span_to_bins(0.25, 0.06, origin_s=0.2, dt_s=0.01, n_bins=20, cell="bin") == (5, 11)
    assert span_to_bins(0.25, 0.06, origin_s=0.2, dt_s=0.01, n_bins=20, cell="point") == (5, 12)


def test_span_partly_covering_a_bin_marks_it():
    # Bins of 10 ms from 0: a span 12-27 ms touches bins 1 and 2.
    assert span_to_bins(0.012, 0.015, origin_s=0.0, dt_s=0.01, n_bins=10, cell="bin") == (1, 3)
    # A span of 1 us still marks the bin it lies in.
    assert span_to_bins(0.0555, 1e-6, origin_s=0.0, dt_s=0.01, n_bins=10, cell="bin") == (5, 6)


def test_span_ending_on_a_bin_boundary_does_not_mark_the_next_bin():
    # 0.3 / 0.1 = 2.9999999999999996 and 0.6 / 0.1 = 5.999999999999999: boundaries, not inside.
    assert span_to_bins(0.3, 0.3, origin_s=0.0, dt_s=0.1, n_bins=10, cell="bin") == (3, 6)
    assert span_to_bins(0.7, 0.1, origin_s=0.0, dt_s=0.1, n_bins=10, cell="bin") == (7, 8)
    assert span_to_bins(1.1, 0.2, origin_s=1.0, dt_s=0.1, n_bins=10, cell="bin") == (1, 3)


def test_point_cells_are_centred_on_their_sample():
    # Sample i stands for [i - 1/2, i + 1/2) * dt: on a 100 Hz grid a span 0.04-0.06 s
    # touches the cells of 0.04, 0.05 and 0.06 (which starts at 0.055).
    assert span_to_bins(0.04, 0.02, origin_s=0.0, dt_s=0.01, n_bins=10, cell="point") == (4, 7)
    # A span 0.046-0.054 s lies inside sample 5's cell only.
    assert span_to_bins(0.046, 0.008, origin_s=0.0, dt_s=0.01, n_bins=10, cell="point") == (5, 6)
    # 0.044-0.046 crosses the boundary 0.045 between samples 4 and 5.
    assert span_to_bins(0.044, 0.002, origin_s=0.0, dt_s=0.01, n_bins=10, cell="point") == (4, 6)


def test_span_zero_duration_and_infinite_duration():
    assert span_to_bins(0.034, 0.0, origin_s=0.0, dt_s=0.01, n_bins=10, cell="bin") == (3, 4)
    assert span_to_bins(0.03, 0.0, origin_s=0.0, dt_s=0.01, n_bins=10, cell="bin") == (3, 4)
    assert span_to_bins(0.034, math.inf, origin_s=0.0, dt_s=0.01, n_bins=10,
                        cell="bin") == (3, 10)


def test_span_clipped_to_the_window():
    kw = dict(dt_s=0.01, n_bins=10, cell="bin")
    assert span_to_bins(-1.0, 1.025, origin_s=0.0, **kw) == (0, 3)     # starts before
    assert span_to_bins(0.095, 1.0, origin_s=0.0, **kw) == (9, 10)     # runs past
    assert span_to_bins(0.2, 0.1, origin_s=0.0, **kw) == (10, 10)      # after: empty
    assert span_to_bins(-0.5, 0.2, origin_s=0.0, **kw) == (0, 0)       # before: empty
    assert span_to_bins(-0.5, 0.5, origin_s=0.0, **kw) == (0, 0)       # ends at 0: empty


@settings(max_examples=300, deadline=None)
@given(st.integers(-3000, 3000), st.integers(0, 3000), st.integers(-500, 500),
       st.sampled_from(["1", "2", "5", "10", "4", "3"]), st.integers(0, 40),
       st.sampled_from(["bin", "point"]))
def test_span_to_bins_matches_exact_overlap(onset_us, duration_us, origin_us, dt_ms, n_bins,
                                            cell):
    """Every bin whose interval overlaps the span, with exact rationals, and no other."""
    onset, duration = Fraction(onset_us, 10**5), Fraction(duration_us, 10**5)
    origin, dt = Fraction(origin_us, 10**5), Fraction(dt_ms) / 1000
    shift = Fraction(1, 2) if cell == "point" else Fraction(0)
    marked = []
    for i in range(n_bins):
        lo, hi = origin + (i - shift) * dt, origin + (i + 1 - shift) * dt
        if duration == 0:
            hit = lo <= onset < hi
        else:
            hit = lo < onset + duration and hi > onset
        if hit:
            marked.append(i)
    i0, i1 = span_to_bins(float(onset), float(duration), origin_s=float(origin),
                          dt_s=float(dt), n_bins=n_bins, cell=cell)
    assert list(range(i0, i1)) == marked
    assert 0 <= i0 <= i1 <= n_bins


@pytest.mark.parametrize(("kwargs", "error"), [
    (dict(onset_s=0.0, duration_s=-0.1), ValueError),
    (dict(onset_s=0.0, duration_s=float("nan")), ValueError),
    (dict(onset_s=float("nan"), duration_s=0.1), ValueError),
    (dict(onset_s=0.0, duration_s=0.1, cell="sample"), ValueError),
    (dict(onset_s=0.0, duration_s=0.1, dt_s=0.0), ValueError),
    (dict(onset_s=0.0, duration_s=0.1, n_bins=-1), ValueError),
])
def test_span_to_bins_rejects_bad_input(kwargs, error):
    full = dict(origin_s=0.0, dt_s=0.01, n_bins=10, cell="bin") | kwargs
    with pytest.raises(error):
        span_to_bins(full.pop("onset_s"), full.pop("duration_s"), **full)
