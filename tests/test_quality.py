"""Tests of deepstrf.metrics.quality: block statistics, half-splits, the streaming accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepstrf.metrics import (
    NeuronQualityAccumulator,
    compute_CCmax,
    noise_power,
    performance,
    signal_power,
    snr,
)
from deepstrf.metrics.quality import block_stats, half_splits
from tests._metrics_reference import all_splits, ragged_batch, ref_ccmax, ref_quality


def stim_blocks(resp: torch.Tensor):
    """Yield (neuron_idx, block) per stimulus as a dataset would: only the neurons
    that heard it, repeats trimmed to that stim's largest count, bins to its length."""
    valid = ~torch.isnan(resp)
    for b in range(resp.shape[0]):
        heard = valid[b].any(dim=(1, 2))
        idx = torch.nonzero(heard).squeeze(1)
        if idx.numel() == 0:
            continue
        n_rep = int(valid[b, idx].any(-1).sum(-1).max())
        n_bins = int(valid[b, idx].any(1).sum(-1).max())
        yield idx, resp[b, idx, :n_rep, :n_bins]


def feed(acc: NeuronQualityAccumulator, resp: torch.Tensor, order=None):
    blocks = list(stim_blocks(resp))
    for i in order if order is not None else range(len(blocks)):
        acc.add_block(*blocks[i])
    return acc.result()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulator_equals_batch_metrics_and_reference(seed):
    _, resp, _ = ragged_batch(seed, n_stims=6, n_neurons=5, max_rep=6)
    acc = NeuronQualityAccumulator(resp.shape[1])
    a_snr, a_ccmax, a_sp, a_np = feed(acc, resp)
    for mine, batch in ((a_snr, snr), (a_sp, signal_power), (a_np, noise_power)):
        np.testing.assert_allclose(mine.numpy(), batch(resp, reduction="none").numpy(),
                                   rtol=1e-12, atol=1e-14, equal_nan=True)
    sp_ref, np_ref, snr_ref = ref_quality(resp.numpy())
    np.testing.assert_allclose(a_sp.numpy(), sp_ref, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a_np.numpy(), np_ref, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a_snr.numpy(), snr_ref, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a_ccmax.numpy(), ref_ccmax(resp.numpy()), rtol=1e-9, equal_nan=True)
    assert torch.isfinite(a_ccmax).sum() >= 3


def batch_ccmax(resp: torch.Tensor, max_iters: int = 126, seed: int = 0) -> torch.Tensor:
    """The pooled per-neuron CCmax that normalized_corrcoef(method='hsu') divides by."""
    pred = torch.zeros_like(resp[:, :, :1])
    table = performance._pair_table(pred, resp, None, power=True, ccmax_iters=max_iters, seed=seed)
    return performance._within_moments(table)["ccmax"]


def test_accumulator_with_random_splits_is_reproducible_and_matches_batch():
    _, resp, _ = ragged_batch(3, n_stims=4, n_neurons=3, max_rep=20, min_rep=14, max_bins=60)
    args = dict(max_ccmax_iters=40, seed=11)
    first = feed(NeuronQualityAccumulator(3, **args), resp)
    again = feed(NeuronQualityAccumulator(3, **args), resp)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    # Stronger than asked: the splits depend only on (seed, repeat count).
    reordered = feed(NeuronQualityAccumulator(3, **args), resp, order=[2, 0, 3, 1])
    np.testing.assert_allclose(reordered[1].numpy(), first[1].numpy(), rtol=1e-12)
    np.testing.assert_allclose(first[1].numpy(), batch_ccmax(resp, 40, 11).numpy(), rtol=1e-12)
    # Reference using the very same splits.
    lookup = lambda n: [tuple(np.flatnonzero(r)) for r in half_splits(n, 40, 11).numpy()]  # noqa: E731
    np.testing.assert_allclose(first[1].numpy(), ref_ccmax(resp.numpy(), lookup), rtol=1e-9)
    other_seed = feed(NeuronQualityAccumulator(3, max_ccmax_iters=40, seed=12), resp)
    assert not torch.equal(other_seed[1], first[1])


def test_accumulator_ccmax_of_one_stimulus_is_compute_ccmax():
    _, resp, _ = ragged_batch(5, n_stims=1, n_neurons=6, max_rep=13, min_rep=2)
    acc = NeuronQualityAccumulator(6, max_ccmax_iters=30, seed=2)
    acc.add_block(torch.arange(6), resp[0])
    expected = compute_CCmax(resp[0], max_iters=30, seed=2)
    assert torch.isfinite(expected).all()
    np.testing.assert_allclose(acc.result()[1].numpy(), expected.numpy(), rtol=1e-12)


def test_ccmax_is_pooled_not_averaged_over_stimuli():
    # A reliable stim and a noisy one: the pooled ceiling is not the length-weighted
    # average of the per-stim ceilings, and it equals the reference pooling.
    rng = np.random.default_rng(9)
    t = 300
    resp = np.full((2, 1, 10, t), np.nan)
    resp[0, 0, :10] = rng.poisson(8 * (1 + 0.9 * np.sin(np.linspace(0, 20, t))), size=(10, t))
    resp[1, 0, :5] = rng.poisson(0.5 * (1 + 0.9 * np.sin(np.linspace(0, 23, t))), size=(5, t))
    resp = torch.from_numpy(resp)
    acc = NeuronQualityAccumulator(1)
    pooled = feed(acc, resp)[1].item()
    per_stim = compute_CCmax(resp[:, 0]).numpy()
    assert pooled == pytest.approx(ref_ccmax(resp.numpy())[0], rel=1e-9)
    assert pooled == pytest.approx(batch_ccmax(resp).item(), rel=1e-12)
    assert per_stim.min() < pooled < per_stim.max()
    assert abs(pooled - per_stim.mean()) > 0.01


def test_accumulator_handles_unseen_neurons_and_empty_blocks():
    acc = NeuronQualityAccumulator(4)
    for value in acc.result():
        assert value.shape == (4,) and torch.isnan(value).all()
    acc.add_block(torch.tensor([], dtype=torch.int64), torch.zeros(0, 3, 10))
    acc.add_block(torch.tensor([1]), torch.tensor([[[0.0, 1, 2, 3], [0, 2, 2, 4]]]))
    snr_, ccmax, sp, np_ = acc.result()
    assert torch.isnan(sp[[0, 2, 3]]).all() and torch.isfinite(sp[1])
    assert sp.dtype == torch.float64
    c = np.cov([0, 1, 2, 3], [0, 2, 2, 4])
    rho = c[0, 1] / ((c[0, 0] + c[1, 1]) / 2)  # covariance over the mean half variance
    assert ccmax[1].item() == pytest.approx(math.sqrt(2 * rho / (1 + rho)), rel=1e-12)


def test_accumulator_errors():
    with pytest.raises(ValueError, match="n_neurons must be >= 1"):
        NeuronQualityAccumulator(0)
    with pytest.raises(TypeError, match="n_neurons must be an integer"):
        NeuronQualityAccumulator(2.5)
    with pytest.raises(ValueError, match="max_ccmax_iters must be >= 1"):
        NeuronQualityAccumulator(3, max_ccmax_iters=0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        NeuronQualityAccumulator(3, seed=-2)
    acc = NeuronQualityAccumulator(3)
    block = torch.rand(2, 4, 10)
    with pytest.raises(IndexError, match=r"neuron index 3 is out of range; the valid range is \[0, 2\]"):
        acc.add_block(torch.tensor([0, 3]), block)
    with pytest.raises(IndexError, match="neuron index -1"):
        acc.add_block(torch.tensor([-1, 0]), block)
    with pytest.raises(ValueError, match="one entry per row of block"):
        acc.add_block(torch.tensor([0]), block)
    with pytest.raises(TypeError, match="1-D integer tensor"):
        acc.add_block(torch.tensor([0.0, 1.0]), block)
    with pytest.raises(ValueError, match=r"block must be a 3-D tensor \(K, R, T\)"):
        acc.add_block(torch.tensor([0, 1]), block[0])
    with pytest.raises(TypeError, match="block must be a torch.Tensor"):
        acc.add_block(torch.tensor([0, 1]), block.numpy())
    acc.add_block([0, 1], block)  # a list of indices is fine
    assert torch.isfinite(acc.result()[2][:2]).all()


def test_half_splits_enumerate_or_sample_distinct_splits():
    ten = half_splits(10, 126)
    assert ten.shape == (126, 10)
    assert {tuple(np.flatnonzero(r)) for r in ten.numpy()} == set(all_splits(10))
    assert torch.equal(half_splits(10, 500), ten)  # fewer splits than asked: all of them
    twenty = half_splits(20, 126, seed=3)
    rows = {tuple(np.flatnonzero(r)) for r in twenty.numpy()}
    assert len(rows) == 126
    assert torch.all(twenty.sum(1) == 10) and torch.all(twenty[:, 0] == 1)
    assert torch.equal(half_splits(20, 126, seed=3), twenty)
    assert not torch.equal(half_splits(20, 126, seed=4), twenty)
    # Between 1x and 4x the request: a random subset of the enumeration.
    subset = half_splits(10, 100, seed=1)
    assert len({tuple(r) for r in subset.tolist()}) == 100
    with pytest.raises(ValueError, match="n_items must be even"):
        half_splits(7, 10)
    with pytest.raises(ValueError, match="max_iters must be >= 1"):
        half_splits(8, 0)


def test_block_stats_values():
    x = torch.tensor([[[1.0, 2.0, 4.0, float("nan")],
                       [2.0, 2.0, 7.0, 1.0],
                       [float("nan")] * 4]])
    stats = block_stats(x, gram=True)
    assert stats.n_rep.tolist() == [2] and stats.n_bins.tolist() == [3]
    assert stats.time_valid.tolist() == [[True, True, True, False]]
    sub = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 7.0]])
    np.testing.assert_allclose(stats.psth[0, :3].numpy(), sub.mean(0))
    assert stats.psth[0, 3].item() == 0.0
    np.testing.assert_allclose(stats.gram[0, :2, :2].numpy(), np.cov(sub) * 2)
    assert torch.all(stats.gram[0, 2] == 0)
    no_gram = block_stats(x)
    assert no_gram.gram is None
    assert no_gram.trace.item() == pytest.approx(stats.trace.item())
    assert no_gram.total.item() == pytest.approx(stats.total.item())


# ---------------------------------------------------------------------------- packed rows
def packed_pairs(seed=0):
    """``(neurons, reps, rows)`` of one stimulus with every case add_rows treats apart."""
    rng = np.random.default_rng(seed)
    T = 40
    reps = [1, 2, 3, 4, 5, 6, 7, 10, 12, 13, 3, 4, 5, 4, 6]
    wave = np.sin(np.linspace(0, 6, T))
    rows = [rng.poisson(4.0 * (1 + 0.9 * wave),
                        size=(r, T)).astype(np.float32) for r in reps]
    rows[10] = np.full((3, T), 0.1, np.float32)               # constant repeats (not 0)
    rows[11] = (1e4 + rng.standard_normal((4, T))).astype(np.float32)  # mean >> spread
    rows[12][2, 7] = np.nan                                   # one missing sample
    rows[13] = np.zeros((4, T), np.float32)                   # silent neuron
    rows[14] = (2 * wave + rng.standard_normal((6, T)) - 3).astype(np.float32)  # negative
    neurons = rng.permutation(20)[:len(reps)]
    return neurons, np.array(reps), np.concatenate(rows)


def per_pair_reference(n_neurons, neurons, reps, rows, **kwargs):
    acc = NeuronQualityAccumulator(n_neurons, **kwargs)
    start = 0
    for n, r in zip(neurons, reps):
        acc.add_block(torch.tensor([n]), torch.from_numpy(rows[start:start + r]).view(1, r, -1))
        start += r
    return acc.result()


@pytest.mark.parametrize("kwargs", [{}, {"max_ccmax_iters": 20, "seed": 4}])
def test_packed_rows_equal_dense_blocks(kwargs):
    neurons, reps, rows = packed_pairs()
    acc = NeuronQualityAccumulator(20, **kwargs)
    acc.add_rows(neurons, reps, torch.from_numpy(rows))
    acc.add_rows(neurons[:4], reps[:4], rows[:int(reps[:4].sum()), :9])  # a second, shorter stim
    ref = NeuronQualityAccumulator(20, **kwargs)
    for n, r, x in ((neurons, reps, rows), (neurons[:4], reps[:4], rows[:int(reps[:4].sum()), :9])):
        start = 0
        for k, rk in zip(n, r):
            ref.add_block(torch.tensor([k]), torch.from_numpy(x[start:start + rk]).reshape(1, rk, -1))
            start += rk
    for got, want in zip(acc.result(), ref.result()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-300)
    snr_, ccmax, sp, np_ = acc.result()
    assert torch.isfinite(ccmax[neurons[[2, 3, 4, 5, 7, 14]]]).all()
    assert (sp[neurons[[10, 13]]] == 0).all() and (np_[neurons[[10, 13]]] == 0).all()
    assert torch.isnan(snr_[neurons[[10, 13]]]).all()       # constant: no signal, no noise
    assert torch.isnan(sp[neurons[0]])                       # one repeat: nothing to say


def test_packed_rows_send_only_the_hard_pairs_to_the_exact_path(monkeypatch):
    neurons, reps, rows = packed_pairs()
    dense = []
    original = NeuronQualityAccumulator.add_block

    def spy(self, idx, block):
        dense.extend(idx.tolist())
        return original(self, idx, block)

    monkeypatch.setattr(NeuronQualityAccumulator, "add_block", spy)
    NeuronQualityAccumulator(20).add_rows(neurons, reps, rows)
    # random half-splits (12 and 13 repeats), constant repeats, a mean far above the
    # spread and a NaN sample; the other pairs take the one-pass sums
    assert sorted(dense) == sorted(neurons[[8, 9, 10, 11, 12]].tolist())


def test_packed_rows_chunking_does_not_change_the_result(monkeypatch):
    from deepstrf.metrics import quality

    neurons, reps, rows = packed_pairs(seed=3)
    whole = NeuronQualityAccumulator(20)
    whole.add_rows(neurons, reps, rows)
    monkeypatch.setattr(quality, "_PACKED_CHUNK_VALUES", 50)   # about one pair per chunk
    chunked = NeuronQualityAccumulator(20)
    chunked.add_rows(neurons, reps, rows)
    for a, b in zip(whole.result(), chunked.result()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("args, error, match", [
    (([0, 1], [1], np.zeros((1, 4), np.float32)), ValueError, "one repeat count per neuron"),
    (([0], [0], np.zeros((0, 4), np.float32)), ValueError, ">= 1"),
    (([0], [2], np.zeros((3, 4), np.float32)), ValueError, "repeats sum to 2"),
    (([5], [1], np.zeros((1, 4), np.float32)), IndexError, "out of range"),
    (([0], [1], np.zeros(4, np.float32)), ValueError, "2-D float array"),
    (([0.0], [1], np.zeros((1, 4), np.float32)), TypeError, "neuron_idx must hold integers"),
    (([0], [1.5], np.zeros((1, 4), np.float32)), TypeError, "repeats must hold integers"),
])
def test_packed_rows_errors(args, error, match):
    with pytest.raises(error, match=match):
        NeuronQualityAccumulator(3).add_rows(*args)
