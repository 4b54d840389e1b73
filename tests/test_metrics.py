"""Tests of deepstrf.metrics.performance against plain numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import deepstrf.metrics._masking as masking
from deepstrf.metrics import (
    coherence,
    compute_CCmax,
    compute_TTRC,
    corrcoef,
    fve,
    noise_power,
    normalized_corrcoef,
    signal_power,
    snr,
)
from tests._metrics_reference import (
    ragged_batch,
    ref_ccmax,
    ref_ccmax_pair,
    ref_ccnorm,
    ref_corr_fve,
    ref_quality,
    ref_ttrc,
)

RTOL = 1e-6


def assert_close_nan(actual: torch.Tensor, expected: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(actual.numpy(), expected, rtol=rtol, atol=1e-12, equal_nan=True)


@pytest.fixture(params=[0, 1, 2])
def batch(request):
    return ragged_batch(request.param)


# ----------------------------------------------------------------------------
# Against the references
# ----------------------------------------------------------------------------


def test_ragged_batch_has_the_awkward_cases(batch):
    _, resp, _ = batch
    reps = (~torch.isnan(resp)).any(-1).sum(-1)
    assert (reps == 0).any()  # sentinels
    assert (reps == 1).any()  # single repeat
    assert len(torch.unique(reps)) >= 4  # unequal repeat counts
    assert ((reps >= 3) & (reps % 2 == 1)).any()  # odd repeat counts: one repeat dropped
    assert torch.isnan(resp[-1, :, :, 1:]).all()  # a one-bin stimulus


def test_corrcoef_and_fve_match_reference(batch):
    pred, resp, _ = batch
    cc_ref, fve_ref = ref_corr_fve(pred.numpy(), resp.numpy())
    assert np.isfinite(cc_ref).all()
    assert_close_nan(corrcoef(pred, resp, reduction="none"), cc_ref)
    assert_close_nan(fve(pred, resp, reduction="none"), fve_ref)


def test_signal_noise_snr_match_reference(batch):
    _, resp, _ = batch
    sp_ref, np_ref, snr_ref = ref_quality(resp.numpy())
    assert_close_nan(signal_power(resp, reduction="none"), sp_ref)
    assert_close_nan(noise_power(resp, reduction="none"), np_ref)
    assert_close_nan(snr(resp, reduction="none"), snr_ref)


@pytest.mark.parametrize("method", ["schoppe", "hsu"])
def test_normalized_corrcoef_matches_reference(batch, method):
    pred, resp, _ = batch
    expected = ref_ccnorm(pred.numpy(), resp.numpy(), method)
    assert np.isfinite(expected).sum() >= 2
    assert_close_nan(normalized_corrcoef(pred, resp, method=method, reduction="none"), expected)


def test_compute_ccmax_enumerates_all_splits_up_to_ten_repeats():
    rng = np.random.default_rng(5)
    rate = 2 + np.sin(np.linspace(0, 12, 80))
    resp = np.full((9, 10, 80), np.nan)
    for b, r in enumerate(range(2, 11)):
        resp[b, :r] = rng.poisson(rate, size=(r, 80))
    out = compute_CCmax(torch.from_numpy(resp))
    expected = [ref_ccmax_pair(resp[b, : b + 2]) for b in range(9)]
    assert_close_nan(out, np.array(expected))
    # R = 10 has exactly 126 distinct splits: the default uses them all, so no seed matters.
    assert torch.equal(compute_CCmax(torch.from_numpy(resp), seed=3), out)


def test_compute_ccmax_odd_repeats_drop_the_last_and_correct_to_all_repeats():
    rng = np.random.default_rng(1)
    rate = 3 + 2 * np.sin(np.linspace(0, 10, 60))
    resp = rng.poisson(rate, size=(1, 5, 60)).astype(float)
    covs = [np.cov(resp[0, list(a)].mean(0), resp[0, [i for i in range(4) if i not in a]].mean(0))
            for a in [(0, 1), (0, 2), (0, 3)]]
    signal = np.mean([c[0, 1] for c in covs])
    half_var = np.mean([(c[0, 0] + c[1, 1]) / 2 for c in covs])
    rho = signal / half_var
    expected = math.sqrt(5 * rho / (2 + 3 * rho))  # halves of 2 trials -> PSTH of 5 trials
    assert compute_CCmax(torch.from_numpy(resp)).item() == pytest.approx(expected, rel=1e-10)
    # Even R: the Spearman-Brown form of the same moment ratio.
    four = torch.from_numpy(resp[:, :4])
    assert compute_CCmax(four).item() == pytest.approx(math.sqrt(2 * rho / (1 + rho)), rel=1e-10)


def test_compute_ccmax_is_the_pooled_ceiling_of_a_single_stimulus():
    pred, resp, _ = ragged_batch(4, n_stims=1, n_neurons=6, max_rep=9, min_rep=2)
    per_stim = torch.stack([compute_CCmax(resp[:, n])[0] for n in range(resp.shape[1])])
    assert torch.isfinite(per_stim).all()
    np.testing.assert_allclose(per_stim.numpy(), ref_ccmax(resp.numpy()), rtol=1e-9)
    # normalized_corrcoef's pooled CCmax for one stimulus is compute_CCmax.
    cc_within = []
    for n in range(resp.shape[1]):
        bins = ~torch.isnan(resp[0, n, 0])
        cc_within.append(np.corrcoef(pred[0, n, 0, bins], resp[0, n, :, bins].nanmean(0))[0, 1])
    cc_within = np.array(cc_within)
    hsu = normalized_corrcoef(pred, resp, method="hsu", reduction="none")
    np.testing.assert_allclose(hsu.numpy(), cc_within / per_stim.numpy(), rtol=1e-10)


def test_compute_ccmax_random_splits_are_reproducible():
    rng = np.random.default_rng(2)
    rate = 2 + np.sin(np.linspace(0, 15, 100))
    resp = torch.from_numpy(rng.poisson(rate, size=(3, 20, 100)).astype(float))
    a = compute_CCmax(resp, max_iters=50, seed=7)
    b = compute_CCmax(resp, max_iters=50, seed=7)
    c = compute_CCmax(resp, max_iters=50, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Random subsets of 50 splits estimate the same ceiling as many splits.
    many = compute_CCmax(resp, max_iters=2000, seed=0)
    np.testing.assert_allclose(a.numpy(), many.numpy(), rtol=0.03)


def test_compute_ttrc_matches_reference(batch):
    _, resp, _ = batch
    for n in range(resp.shape[1]):
        assert_close_nan(compute_TTRC(resp[:, n]), ref_ttrc(resp[:, n].numpy()))


def test_compute_ttrc_skips_constant_repeats():
    resp = torch.tensor([[[0.0, 0, 0, 0], [1, 2, 3, 4], [2, 4, 6, 9], [1, 1, 1, 1]]])
    expected = np.corrcoef([1, 2, 3, 4], [2, 4, 6, 9])[0, 1]
    assert compute_TTRC(resp).item() == pytest.approx(expected)
    assert torch.isnan(compute_TTRC(resp[:, :1]))  # one repeat
    assert torch.isnan(compute_TTRC(torch.zeros(1, 3, 5)))  # all constant


def test_coherence_matches_scipy_on_a_single_unpadded_stimulus():
    rng = np.random.default_rng(3)
    t = 1024
    rate = 2 + np.sin(np.linspace(0, 60, t)) + 0.5 * np.sin(np.linspace(0, 250, t))
    resp = rng.poisson(rate, size=(1, 1, 4, t)).astype(float)
    pred = (rate + rng.normal(0, 0.3, t))[None, None, None]
    psth = resp.mean(axis=2)[0, 0]
    _, coh = scipy.signal.coherence(pred[0, 0, 0], psth, fs=200.0, nperseg=128)
    out = coherence(torch.from_numpy(pred), torch.from_numpy(resp), 5.0, reduction="none", nperseg=128)
    assert out.item() == pytest.approx(coh.mean(), rel=1e-9)
    freqs = np.fft.rfftfreq(128, d=0.005)
    low = coherence(torch.from_numpy(pred), torch.from_numpy(resp), 5.0, nperseg=128, max_freq_hz=30.0)
    assert low.item() == pytest.approx(coh[freqs <= 30.0].mean(), rel=1e-9)


def test_coherence_pools_segments_and_ignores_padding():
    rng = np.random.default_rng(4)
    t = 512
    rate = 2 + np.sin(np.linspace(0, 40, t))
    resp = rng.poisson(rate, size=(2, 1, 3, t)).astype(float)
    pred = np.broadcast_to(rate, (2, 1, 1, t)).copy()
    # The second stimulus is 300 bins long: one full 128-bin window less.
    resp[1, :, :, 300:] = np.nan
    pred[1, :, :, 300:] = 1e6  # garbage in the padding must not matter
    win = scipy.signal.get_window("hann", 128)
    sxy = sxx = syy = 0
    for b, length in ((0, t), (1, 300)):
        y = resp[b, 0, :, :length].mean(0)
        p = pred[b, 0, 0, :length]
        for start in range(0, length - 127, 64):
            fp = np.fft.rfft(win * scipy.signal.detrend(p[start:start + 128], type="constant"))
            fy = np.fft.rfft(win * scipy.signal.detrend(y[start:start + 128], type="constant"))
            sxy = sxy + np.conj(fp) * fy
            sxx = sxx + abs(fp) ** 2
            syy = syy + abs(fy) ** 2
    expected = np.mean(abs(sxy) ** 2 / (sxx * syy))
    out = coherence(torch.from_numpy(pred), torch.from_numpy(resp), 5.0, nperseg=128)
    assert out.item() == pytest.approx(expected, rel=1e-9)


def test_coherence_needs_two_segments():
    pred, resp, _ = ragged_batch(0, max_bins=40)
    out = coherence(pred, resp, 5.0, reduction="none")  # nperseg 256 > 40 bins
    assert torch.isnan(out).all()
    one_segment = coherence(pred[:1], resp[:1], 5.0, nperseg=40, reduction="none")
    assert torch.isnan(one_segment).all()


# ----------------------------------------------------------------------------
# Closed-form and degenerate cases
# ----------------------------------------------------------------------------


def poisson_neuron(seed: int, n_rep: int | list[int], rates: list[float], n_bins: int = 400):
    """Responses of a Poisson neuron to stims of different mean rates, and its true rate.

    ``n_rep`` is one repeat count for all stims or one per stim (NaN-padded).
    """
    rng = np.random.default_rng(seed)
    reps = [n_rep] * len(rates) if isinstance(n_rep, int) else n_rep
    rate = np.stack([
        mean * (1 + 0.9 * np.sin(np.linspace(0, 20 + 3 * i, n_bins)))
        for i, mean in enumerate(rates)
    ])[:, None, None, :]
    resp = np.full((len(rates), 1, max(reps), n_bins), np.nan)
    for i, r in enumerate(reps):
        resp[i, 0, :r] = rng.poisson(np.broadcast_to(rate[i, 0], (r, n_bins)))
    return torch.from_numpy(rate), torch.from_numpy(resp)


@pytest.mark.parametrize("method", ["schoppe", "hsu"])
def test_true_rate_scores_one_with_many_repeats_and_different_stim_means(method):
    rate, resp = poisson_neuron(0, n_rep=40, rates=[0.5, 3.0, 8.0])
    cc_norm = normalized_corrcoef(rate, resp, method=method).item()
    assert cc_norm == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("method", ["schoppe", "hsu"])
@pytest.mark.parametrize("n_rep", [[10, 15, 20], [20, 13, 10], [11, 17, 12]])
def test_true_rate_scores_one_when_stims_differ_in_snr_and_repeat_count(method, n_rep):
    # Mean rates 0.5 to 8 per bin: the stims' SNR differ about tenfold. A CCmax
    # averaged over stims instead of pooled like CC_within gave 1.04-1.07 here.
    values = [
        normalized_corrcoef(*poisson_neuron(seed, n_rep, [0.5, 3.0, 8.0]), method=method).item()
        for seed in range(4)
    ]
    assert np.mean(values) == pytest.approx(1.0, abs=0.02)


def test_hsu_equals_schoppe_with_even_repeats_and_all_splits():
    # Averaged over every split, the half-split moments are the Sahani-Linden SP
    # and NP / R, so the pooled CCmax turns CC_within into Cov / sqrt(Var_p SP).
    pred, resp, _ = ragged_batch(6, n_stims=6, n_neurons=5, max_rep=10)
    reps = (~torch.isnan(resp)).any(-1).sum(-1)
    even = resp.clone()
    for b, n in torch.nonzero(reps % 2 == 1).tolist():
        even[b, n, reps[b, n] - 1] = float("nan")
    assert ((reps % 2 == 1) & (reps > 1)).any()
    hsu = normalized_corrcoef(pred, even, method="hsu", reduction="none")
    schoppe = normalized_corrcoef(pred, even, method="schoppe", reduction="none")
    assert torch.isfinite(hsu).sum() >= 3
    np.testing.assert_allclose(hsu.numpy(), schoppe.numpy(), rtol=1e-9, equal_nan=True)
    # With odd counts they differ: hsu drops a repeat in the ceiling.
    assert not torch.allclose(normalized_corrcoef(pred, resp, method="hsu", reduction="none"),
                              normalized_corrcoef(pred, resp, reduction="none"), equal_nan=True)


@pytest.mark.parametrize("method", ["schoppe", "hsu"])
def test_noise_correction_undoes_the_noise_of_few_repeats(method):
    rate, resp = poisson_neuron(1, n_rep=10, rates=[3.0, 3.0, 3.0], n_bins=1000)
    assert corrcoef(rate, resp).item() < 0.97  # the raw correlation is hurt by the noise
    assert normalized_corrcoef(rate, resp, method=method).item() == pytest.approx(1.0, abs=0.01)


def test_schoppe_stays_unbiased_when_stimulus_snr_differs():
    # Few repeats and stims of very different rates: within-stimulus moments keep
    # numerator and denominator consistent (a pooled covariance would exceed 1).
    rate, resp = poisson_neuron(2, n_rep=6, rates=[0.5, 3.0, 8.0], n_bins=2000)
    assert normalized_corrcoef(rate, resp).item() == pytest.approx(1.0, abs=0.01)


def test_ccnorm_ignores_stimulus_mean_offsets_of_the_prediction():
    rate, resp = poisson_neuron(1, n_rep=10, rates=[1.0, 4.0])
    shifted = rate + torch.tensor([5.0, -2.0]).view(2, 1, 1, 1)
    for method in ("schoppe", "hsu"):
        a = normalized_corrcoef(rate, resp, method=method)
        b = normalized_corrcoef(shifted, resp, method=method)
        assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_identical_repeats_have_zero_noise_and_infinite_snr():
    rng = np.random.default_rng(0)
    one = rng.poisson(3.0, size=(2, 1, 1, 50)).astype(float)
    resp = torch.from_numpy(np.repeat(one, 5, axis=2))
    assert noise_power(resp).item() == 0.0
    # Both stims are 50 bins long, so SP is the plain mean of their variances.
    expected = (np.var(one[0, 0, 0], ddof=1) + np.var(one[1, 0, 0], ddof=1)) / 2
    assert signal_power(resp).item() == pytest.approx(expected)
    assert snr(resp).item() == math.inf
    assert compute_CCmax(resp[:, 0]).tolist() == pytest.approx([1.0, 1.0])


def test_pure_noise_has_no_signal_and_a_low_ceiling():
    rng = np.random.default_rng(1)
    resp = torch.from_numpy(rng.poisson(5.0, size=(4, 1, 20, 2000)).astype(float))
    sp = signal_power(resp).item()
    np_ = noise_power(resp).item()
    assert abs(sp) < 0.02 * np_
    assert np_ == pytest.approx(5.0, rel=0.05)
    ccmax = compute_CCmax(resp[:, 0])
    assert torch.all(torch.isnan(ccmax) | (ccmax < 0.35))
    assert snr(resp).abs().item() < 0.02


def test_negative_signal_power_is_kept():
    resp = torch.tensor([[[[0.0, 2.0, 0.0, 2.0], [2.0, 0.0, 2.0, 0.0]]]])  # anti-correlated
    sp = signal_power(resp).item()
    assert sp == pytest.approx(-4 / 3)
    assert snr(resp).item() < 0
    assert torch.isnan(normalized_corrcoef(torch.arange(4.0).view(1, 1, 1, 4), resp))


def test_single_repeat_everywhere_gives_nan_for_noise_corrected_metrics():
    pred, resp, _ = ragged_batch(0)
    single = resp[:, :, :1]
    for value in (signal_power(single, reduction="none"), noise_power(single, reduction="none"),
                  snr(single, reduction="none"),
                  normalized_corrcoef(pred, single, reduction="none"),
                  normalized_corrcoef(pred, single, method="hsu", reduction="none")):
        assert torch.isnan(value).all()
    assert torch.isnan(compute_CCmax(single[:, 0])).all()
    assert torch.isfinite(corrcoef(pred, single, reduction="none")).any()


def test_zero_variance_gives_nan():
    pred, resp, _ = ragged_batch(1)
    flat_pred = torch.full_like(pred, 0.1)  # 0.1 is not exact in binary: rounding must not leak
    assert torch.isnan(corrcoef(flat_pred, resp, reduction="none")).all()
    assert torch.isnan(normalized_corrcoef(flat_pred, resp, reduction="none")).all()
    assert torch.isnan(normalized_corrcoef(flat_pred, resp, method="hsu", reduction="none")).all()
    flat_resp = torch.where(torch.isnan(resp), resp, torch.full_like(resp, 0.7))
    assert torch.isnan(corrcoef(pred, flat_resp, reduction="none")).all()
    assert torch.isnan(fve(pred, flat_resp, reduction="none")).all()
    assert torch.isnan(snr(flat_resp, reduction="none")).all()


def test_fewer_than_two_valid_bins_gives_nan():
    pred = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    resp = torch.tensor([[[[1.0, float("nan"), float("nan")], [2.0, float("nan"), float("nan")]]]])
    for f in (corrcoef, fve, normalized_corrcoef):
        assert torch.isnan(f(pred, resp))
    assert torch.isnan(signal_power(resp))
    assert torch.isnan(compute_CCmax(resp[:, 0]))


def test_nan_prediction_at_a_valid_bin_is_loud():
    pred, resp, _ = ragged_batch(0)
    pred = pred.clone()
    pred[0, 1, 0, 3] = float("nan")
    for f in (corrcoef, fve, normalized_corrcoef):
        values = f(pred, resp, reduction="none")
        assert torch.isnan(values[1]) and torch.isfinite(values[0])


def test_time_bin_missing_in_one_repeat_is_dropped_for_the_pair():
    pred, resp, _ = ragged_batch(2, n_stims=3, short_stim=False, min_rep=3)
    holed = resp.clone()
    holed[0, 0, 0, 5] = float("nan")
    dropped = resp.clone()
    dropped[0, 0, :, 5] = float("nan")
    for f in (corrcoef, fve, normalized_corrcoef):
        assert torch.equal(f(pred, holed, reduction="none"), f(pred, dropped, reduction="none"))
    assert torch.equal(snr(holed, reduction="none"), snr(dropped, reduction="none"))


# ----------------------------------------------------------------------------
# Masks, reductions, dtypes, chunking
# ----------------------------------------------------------------------------


def test_explicit_mask_replaces_nan_test():
    pred, resp, _ = ragged_batch(0)
    valid = ~torch.isnan(resp)
    filled = torch.nan_to_num(resp, nan=123.0)
    for f in (corrcoef, fve, normalized_corrcoef):
        assert torch.allclose(f(pred, filled, mask=valid, reduction="none"),
                              f(pred, resp, reduction="none"), equal_nan=True, rtol=1e-12)
    assert torch.allclose(snr(filled, mask=valid, reduction="none"),
                          snr(resp, reduction="none"), equal_nan=True, rtol=1e-12)
    # A broadcastable mask: hide stimulus 0 for every neuron.
    stim_mask = torch.ones(resp.shape[0], 1, 1, 1, dtype=torch.bool)
    stim_mask[0] = False
    hidden = resp.clone()
    hidden[0] = float("nan")
    assert torch.allclose(corrcoef(pred, resp, mask=stim_mask & valid, reduction="none"),
                          corrcoef(pred, hidden, reduction="none"), equal_nan=True, rtol=1e-12)
    assert torch.allclose(compute_CCmax(filled[:, 0], mask=valid[:, 0]),
                          compute_CCmax(resp[:, 0]), equal_nan=True)


def test_reductions_are_nan_aware():
    pred, resp, _ = ragged_batch(0)
    per = snr(resp, reduction="none")
    finite = per[~torch.isnan(per)].numpy()
    assert np.isnan(per.numpy()).any() or len(finite) == len(per)
    assert snr(resp, reduction="mean").item() == pytest.approx(finite.mean())
    assert snr(resp, reduction="sum").item() == pytest.approx(finite.sum())
    assert snr(resp, reduction="median").item() == pytest.approx(np.median(finite))
    even = torch.tensor([[[[1.0, 2, 3, 4]], [[1.0, 3, 2, 5]], [[4.0, 1, 1, 0]], [[0.0, 1, 5, 5]]]])
    per_even = corrcoef(even.transpose(0, 1), even.transpose(0, 1) * 2, reduction="none")
    assert corrcoef(even.transpose(0, 1), even.transpose(0, 1) * 2, reduction="median").item() == 1.0
    assert per_even.shape == (1,)
    none = signal_power(resp[:, :, :1])
    assert torch.isnan(none)  # a reduction over no finite value is NaN
    assert torch.isnan(signal_power(resp[:, :, :1], reduction="sum"))


def test_median_of_even_count_averages_middle_values():
    values = torch.tensor([1.0, float("nan"), 4.0, 2.0, 10.0])
    assert masking.reduce_over_neurons(values, "median").item() == 3.0
    assert masking.reduce_over_neurons(values, "sum").item() == 17.0
    inf = torch.tensor([1.0, math.inf, float("nan")])
    assert masking.reduce_over_neurons(inf, "mean").item() == math.inf


def test_output_dtype_and_device_follow_the_input():
    pred, resp, _ = ragged_batch(0)
    assert corrcoef(pred.float(), resp.float()).dtype == torch.float32
    assert corrcoef(pred, resp).dtype == torch.float64
    assert snr(resp.float(), reduction="none").dtype == torch.float32
    counts = torch.nan_to_num(resp, nan=0).to(torch.int64)
    assert signal_power(counts).dtype == torch.get_default_dtype()
    # float32 inputs are computed in float64: same values to float32 precision.
    assert torch.allclose(corrcoef(pred.float(), resp.float(), reduction="none").double(),
                          corrcoef(pred, resp, reduction="none"), rtol=1e-6, equal_nan=True)


def test_chunked_computation_matches_one_chunk(monkeypatch):
    pred, resp, _ = ragged_batch(1, n_stims=6, n_neurons=5, max_rep=10)
    whole = {
        "cc": corrcoef(pred, resp, reduction="none"),
        "hsu": normalized_corrcoef(pred, resp, method="hsu", reduction="none"),
        "snr": snr(resp, reduction="none"),
        "coh": coherence(pred, resp, 5.0, nperseg=16, reduction="none"),
    }
    monkeypatch.setattr(masking, "_CHUNK_ELEMENTS", 700)  # about 2 pairs per chunk
    chunked = {
        "cc": corrcoef(pred, resp, reduction="none"),
        "hsu": normalized_corrcoef(pred, resp, method="hsu", reduction="none"),
        "snr": snr(resp, reduction="none"),
        "coh": coherence(pred, resp, 5.0, nperseg=16, reduction="none"),
    }
    for key, value in whole.items():
        assert torch.allclose(value, chunked[key], rtol=1e-12, equal_nan=True), key


def test_metrics_do_not_track_gradients():
    pred, resp, _ = ragged_batch(0)
    pred = pred.clone().requires_grad_(True)
    assert not corrcoef(pred, resp).requires_grad
    assert not normalized_corrcoef(pred, resp).requires_grad


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 100.0), offset=st.floats(-50.0, 50.0))
def test_correlations_are_affine_invariant(seed, scale, offset):
    pred, resp, _ = ragged_batch(seed, n_stims=3, n_neurons=2)
    moved = pred * scale + offset
    for f in (corrcoef, normalized_corrcoef):
        assert torch.allclose(f(pred, resp, reduction="none"), f(moved, resp, reduction="none"),
                              rtol=1e-9, atol=1e-12, equal_nan=True)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_repeat_order_does_not_matter_for_signal_power(seed):
    _, resp, _ = ragged_batch(seed, n_stims=3, n_neurons=3, min_rep=2)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(resp.shape[2]))
    shuffled = resp[:, :, perm]
    assert torch.allclose(signal_power(resp, reduction="none"),
                          signal_power(shuffled, reduction="none"), rtol=1e-10, equal_nan=True)


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


def test_shape_errors():
    pred, resp, _ = ragged_batch(0)
    with pytest.raises(ValueError, match="pred must be a 4-D tensor"):
        corrcoef(pred[0], resp)
    with pytest.raises(ValueError, match="responses must be a 4-D tensor"):
        fve(pred, resp[0])
    with pytest.raises(ValueError, match="single repeat"):
        normalized_corrcoef(resp, resp)
    with pytest.raises(ValueError, match="agree on B"):
        corrcoef(pred[:2], resp)
    with pytest.raises(ValueError, match="agree on N"):
        corrcoef(pred[:, :2], resp)
    with pytest.raises(ValueError, match="agree on T"):
        coherence(pred[..., :5], resp, 5.0)
    with pytest.raises(ValueError, match="responses must be a 4-D tensor"):
        snr(resp[0])
    with pytest.raises(ValueError, match=r"3-D tensor \(B, R, T\)"):
        compute_CCmax(resp)
    with pytest.raises(ValueError, match=r"3-D tensor \(B, R, T\)"):
        compute_TTRC(resp[0, 0])
    with pytest.raises(TypeError, match="torch.as_tensor"):
        corrcoef(pred.numpy(), resp)
    with pytest.raises(TypeError, match="real-valued"):
        signal_power(resp.to(torch.complex128))


def test_option_errors():
    pred, resp, _ = ragged_batch(0)
    with pytest.raises(ValueError, match="method must be one of 'schoppe', 'hsu'; got 'sahani'"):
        normalized_corrcoef(pred, resp, method="sahani")
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'sum', 'median'"):
        corrcoef(pred, resp, reduction="max")
    with pytest.raises(ValueError, match="reduction must be one of"):
        snr(resp, reduction="avg")
    with pytest.raises(ValueError, match="ccmax_iters must be >= 1; got 0"):
        normalized_corrcoef(pred, resp, method="hsu", ccmax_iters=0)
    with pytest.raises(TypeError, match="ccmax_iters must be an integer"):
        normalized_corrcoef(pred, resp, ccmax_iters=12.5)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        normalized_corrcoef(pred, resp, seed=-1)
    with pytest.raises(ValueError, match="max_iters must be >= 1"):
        compute_CCmax(resp[:, 0], max_iters=0)
    with pytest.raises(ValueError, match="dt_ms must be a finite number > 0; got -5.0"):
        coherence(pred, resp, -5.0)
    with pytest.raises(ValueError, match="nperseg must be >= 2"):
        coherence(pred, resp, 5.0, nperseg=1)
    with pytest.raises(ValueError, match="max_freq_hz must be a finite number > 0"):
        coherence(pred, resp, 5.0, max_freq_hz=0.0)


def test_mask_errors():
    pred, resp, _ = ragged_batch(0)
    with pytest.raises(TypeError, match="mask must have dtype torch.bool"):
        corrcoef(pred, resp, mask=torch.ones_like(resp))
    with pytest.raises(ValueError, match="mask must have the shape of responses"):
        corrcoef(pred, resp, mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool torch.Tensor or None"):
        snr(resp, mask=np.ones(resp.shape, dtype=bool))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), mean_rate=st.floats(0.02, 5.0))
def test_ccmax_is_at_most_one_even_with_sparse_spikes(seed, mean_rate):
    # Sparse spikes make many half-PSTHs constant; they contribute zero covariance
    # instead of being skipped, and the noise term Var(A - B) / 2 is never negative.
    rng = np.random.default_rng(seed)
    resp = rng.poisson(mean_rate, size=(6, 7, 30)).astype(float)
    resp[rng.random(6) < 0.3, rng.integers(2, 7):] = np.nan  # fewer repeats for some stims
    ccmax = compute_CCmax(torch.from_numpy(resp))
    finite = ccmax[torch.isfinite(ccmax)]
    assert torch.all((finite > 0) & (finite <= 1.0))
    expected = [ref_ccmax_pair(resp[b][~np.isnan(resp[b]).all(axis=1)]) for b in range(6)]
    assert_close_nan(ccmax, np.array(expected))
