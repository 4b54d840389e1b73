"""The one smoothing routine (``smooth_rows`` / ``RowSmoother``): values, bound, invariance.

``RowSmoother`` computes in float32; these tests hold it to its documented
bound against a float64 convolution, and check that chunking, writing in
place, the input's layout and the caller (dataset method, builder, video
smoothing) never change a single value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepstrf.preprocessing.spikes import RowSmoother, hanning_kernel, smooth_rows
from deepstrf.preprocessing.video import gaussian_kernel, smooth_gaussian
from deepstrf.testing.synthetic import make_ragged_dataset

EPS32 = float(np.finfo(np.float32).eps)


def reference(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Zero-padded "same" convolution of each row, float64 (np.convolve, full then cropped)."""
    h = len(kernel) // 2
    T = x.shape[1]
    return np.stack([np.convolve(row.astype(np.float64), kernel)[h:h + T] for row in x]) \
        if len(x) else np.zeros(x.shape)


def bound(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The documented bound: (K + 2) * eps * sum_j |w_j| |x_(i+h-j)| per value."""
    return (len(kernel) + 2) * EPS32 * reference(np.abs(x), np.abs(kernel))


KERNELS = {
    "hanning 21 ms at 5 ms (5 taps)": hanning_kernel(21.0, 5.0),
    "hanning 21 ms at 1 ms (21 taps)": hanning_kernel(21.0, 1.0),
    "hanning 21 ms at 10 ms (3 taps)": hanning_kernel(21.0, 10.0),
    "hanning 150 ms at 1 ms (151 taps)": hanning_kernel(150.0, 1.0),
    "gaussian sigma 2 (13 taps)": gaussian_kernel(2.0),
    "asymmetric, negative taps": np.array([0.1, -0.4, 0.55, 0.3, 0.25, 0.05, 0.15]),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_within_the_float32_bound_of_a_float64_convolution(name):
    kernel = KERNELS[name]
    rng = np.random.default_rng(len(kernel))
    K = len(kernel)
    # lengths around every regime: shorter than the kernel, exactly 2h, 2h + 1, long
    for T in sorted({1, 2, K // 2, K - 1, K, K + 1, 2 * K + 3, 57, 600}):
        if T < 1:
            continue
        x = (rng.normal(size=(37, T)) * 1e3).astype(np.float32)       # signed, large
        x[::5] = rng.poisson(2.0, size=x[::5].shape)                  # and counts
        got = smooth_rows(x, kernel)
        assert got.dtype == np.float32 and got.shape == x.shape
        err = np.abs(got.astype(np.float64) - reference(x, kernel))
        limit = bound(x, kernel)
        assert (err <= limit).all(), (T, float((err / np.maximum(limit, 1e-300)).max()))
        # the bound is tight enough to catch a real error (a tap off by one ulp-ish is not)
        shifted = np.roll(kernel, 1) if K > 1 else kernel * 2
        if K > 1 and T > 1:
            assert (np.abs(reference(x, shifted) - reference(x, kernel)) > limit).any()


def test_hanning_counts_stay_counts_per_bin():
    """A unit-sum kernel keeps the count of a spike train well inside the response."""
    x = np.zeros((1, 40), dtype=np.float32)
    x[0, 20] = 12.0
    got = smooth_rows(x, hanning_kernel(21.0, 5.0))
    np.testing.assert_allclose(got[0, 18:23], [1, 3, 4, 3, 1], rtol=0, atol=4 * EPS32 * 12)
    assert got[0, :18].tolist() == [0.0] * 18 and got[0, 23:].tolist() == [0.0] * 17


@pytest.mark.parametrize("dt_ms, weights", [(5.0, [1, 3, 4, 3, 1]), (10.0, [1, 2, 1])])
def test_whole_number_kernels_round_counts_correctly(dt_ms, weights):
    """[1, 3, 4, 3, 1] / 12 and [1, 2, 1] / 4 on counts: the exact value, rounded once."""
    kernel = hanning_kernel(21.0, dt_ms)
    np.testing.assert_allclose(kernel * sum(weights), weights, rtol=1e-12)
    counts = np.random.default_rng(8).poisson(3.0, size=(40, 90)).astype(np.float32)
    counts[::7] *= 1000                                    # large counts too
    exact = reference(counts, np.asarray(weights, dtype=np.float64))    # integers, exact
    expected = (exact / sum(weights)).astype(np.float32)
    np.testing.assert_array_equal(smooth_rows(counts, kernel), expected)


@pytest.mark.parametrize("kernel", [hanning_kernel(21.0, 5.0), hanning_kernel(21.0, 1.0),
                                    hanning_kernel(21.0, 10.0), gaussian_kernel(1.0),
                                    KERNELS["asymmetric, negative taps"],
                                    hanning_kernel(150.0, 1.0)])     # the long-kernel path
def test_chunks_layout_and_in_place_give_identical_values(kernel):
    rng = np.random.default_rng(3)
    for T in (3, len(kernel) // 2 * 2, 41, 300):
        x = rng.poisson(1.5, size=(50, T)).astype(np.float32)
        expected = smooth_rows(x, kernel)
        for chunk in (1, 5, 64, 1000, 1 << 16):
            smoother = RowSmoother(kernel, chunk_values=chunk)
            assert np.array_equal(smoother(x), expected)
            # row by row and in uneven groups, reusing the same scratch memory
            parts = np.concatenate([smoother(x[a:a + 7]) for a in range(0, len(x), 7)])
            assert np.array_equal(parts, expected)
            inplace = x.copy()
            assert smoother(inplace, inplace) is inplace
            assert np.array_equal(inplace, expected)
        # non-contiguous input and output
        wide = np.zeros((50, 2 * T), dtype=np.float32)
        wide[:, ::2] = x
        out = np.full((50, 2 * T), -1.0, dtype=np.float32)
        RowSmoother(kernel)(wide[:, ::2], out[:, 1::2])
        assert np.array_equal(out[:, 1::2], expected) and (out[:, ::2] == -1).all()
        assert np.array_equal(smooth_rows(np.asfortranarray(x), kernel), expected)


@pytest.mark.parametrize("kernel", [hanning_kernel(21.0, 5.0), hanning_kernel(150.0, 1.0)])
def test_nan_counts_as_zero_for_neighbours_and_stays_nan(kernel):
    rng = np.random.default_rng(4)
    x = rng.poisson(2.0, size=(9, 30)).astype(np.float32)
    x[2, 0] = x[2, 14] = x[5, 29] = np.nan
    x[7] = np.nan                                          # a wholly missing row
    nan = np.isnan(x)
    got = smooth_rows(x, kernel)
    expected = smooth_rows(np.where(nan, 0, x), kernel)
    expected[nan] = np.nan
    np.testing.assert_array_equal(got, expected)           # NaN where NaN, equal elsewhere
    assert np.isnan(got).sum() == nan.sum()
    assert np.isfinite(got[2, 12]) and got[2, 12] == expected[2, 12]
    assert np.isfinite(got[2, 1:14]).all() and np.isfinite(got[2, 15:]).all()
    inplace = x.copy()                                     # in place with NaN too
    RowSmoother(kernel)(inplace, inplace)
    np.testing.assert_array_equal(inplace, expected)
    clean = np.where(nan, 0, x)                            # nan_free=True skips the check only
    np.testing.assert_array_equal(RowSmoother(kernel)(clean, nan_free=True),
                                  smooth_rows(clean, kernel))
    # an infinite value without NaN is arithmetic (inf - inf would be NaN), not missing
    y = np.zeros((1, 9), dtype=np.float32)
    y[0, 4] = np.inf
    got = smooth_rows(y, hanning_kernel(21.0, 5.0))
    assert np.isinf(got[0, 2:7]).all() and (got[0, [0, 1, 7, 8]] == 0).all()


def test_identity_empty_and_bad_kernels():
    x = np.random.default_rng(5).normal(size=(4, 6)).astype(np.float32)
    x[1, 2] = np.nan
    same = smooth_rows(x, hanning_kernel(3.0, 5.0))        # one tap [1.0]
    np.testing.assert_array_equal(same, x)
    assert same is not x and not np.shares_memory(same, x)
    np.testing.assert_array_equal(smooth_rows(x, np.array([2.0])), 2 * x)
    assert smooth_rows(np.zeros((0, 7), np.float32), hanning_kernel(21.0, 1.0)).shape == (0, 7)
    assert smooth_rows(np.zeros((3, 0), np.float32), hanning_kernel(21.0, 1.0)).shape == (3, 0)
    with pytest.raises(ValueError, match="odd length"):
        smooth_rows(x, np.ones(4) / 4)
    with pytest.raises(ValueError, match="odd length"):
        RowSmoother(np.ones(0))
    with pytest.raises(ValueError, match="2-D"):
        smooth_rows(np.zeros(5, np.float32), hanning_kernel(21.0, 5.0))
    with pytest.raises(ValueError, match="out must be float32"):
        RowSmoother(hanning_kernel(21.0, 5.0))(x, np.zeros((4, 5), np.float32))


def test_tensors_in_tensors_out():
    kernel = hanning_kernel(21.0, 5.0)
    rows = torch.poisson(torch.full((6, 50), 2.0, dtype=torch.float64),
                         generator=torch.Generator().manual_seed(0))
    got = smooth_rows(rows, kernel)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert torch.equal(got, torch.from_numpy(smooth_rows(rows.numpy().astype(np.float32), kernel)))
    r32 = rows.float()
    out = smooth_rows(r32, kernel)
    assert out.data_ptr() != r32.data_ptr() and torch.equal(r32, rows.float())   # input kept
    movie = torch.poisson(torch.full((3, 2, 40), 1.0), generator=torch.Generator().manual_seed(1))
    smoothed = smooth_gaussian(movie, 2.0)
    assert smoothed.shape == movie.shape
    assert torch.equal(smoothed.reshape(-1, 40),
                       smooth_rows(movie.reshape(-1, 40), gaussian_kernel(2.0)))


@pytest.mark.parametrize("dt_ms, T_range", [(5.0, (1, 40)), (1.0, (2, 60))])
def test_smooth_responses_equals_smooth_rows_exactly(dt_ms, T_range):
    """In place, chunk by chunk, on blocks of every length (shorter than the kernel too)."""
    ds = make_ragged_dataset(12, 7, n_bands=2, T_range=T_range, coverage=0.8, repeats=(1, 30),
                             dt_ms=dt_ms, rate=1.0, seed=6)
    v = ds.responses[0][int(ds.response_store.block(0)[0][0])].clone()
    v.view(-1)[0] = float("nan")
    ds.responses[0][int(ds.response_store.block(0)[0][0])] = v
    before = [ds.response_store.block(s)[2].clone() for s in range(ds.get_S())]
    kernel = hanning_kernel(21.0, dt_ms)
    for _ in range(2):                                      # a copy first, then in place
        ds.smooth_responses(21.0)
        for s, rows in enumerate(before):
            rows = smooth_rows(rows, kernel)
            np.testing.assert_array_equal(ds.response_store.block(s)[2].numpy(), rows.numpy())
            before[s] = rows


def test_builds_that_smooth_carry_the_smoothing_version_in_their_cache_key():
    from deepstrf.datasets.audio._spike_tasks import make_front_end
    from deepstrf.datasets.video._tasks import make_video_front_end
    from deepstrf.preprocessing.spikes import SMOOTHING_ARITHMETIC

    args = dict(dt_ms=5.0, n_bands=8, compression="none", window_ms=25.0,
                return_waveform=False, audio_fs=None)
    smoothed, raw = make_front_end(smooth=True, **args), make_front_end(smooth=False, **args)
    assert smoothed.to_dict()["smoothing"] == SMOOTHING_ARITHMETIC
    assert "smoothing" not in raw.to_dict()        # unsmoothed builds keep their keys
    assert make_video_front_end(dt_ms=10.0, smooth=True).to_dict()["smoothing"] == \
        SMOOTHING_ARITHMETIC
    assert "smoothing" not in make_video_front_end(dt_ms=10.0).to_dict()
