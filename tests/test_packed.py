"""Packed batches: layout, conversion to dense, losses / metrics / training equal to dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.metrics import (
    coherence,
    corrcoef,
    fve,
    mse_loss,
    noise_power,
    normalized_corrcoef,
    poisson_loss,
    signal_power,
    snr,
)
from deepstrf.models.strf import PopulationLinearSTRF
from deepstrf.testing.synthetic import make_ragged_dataset
from deepstrf.utils.data import (
    PackedBatch,
    PackedView,
    neural_collate,
    packed_collate,
    packed_loader,
)

TIGHT = {"rtol": 1e-11, "atol": 1e-12, "equal_nan": True}


def nan_inside_dataset(seed: int = 3) -> AudioNeuralDataset:
    """Ragged repeats and lengths, sentinels, and NaN inside real rows (a whole repeat too)."""
    rng = np.random.default_rng(seed)
    S, N, F = 7, 6, 4
    T = rng.integers(5, 30, size=S)
    T[-1] = 1
    blocks = []
    for s in range(S):
        neurons = np.flatnonzero(rng.random(N) < 0.5)
        if len(neurons) == 0:
            neurons = np.array([s % N])
        reps = rng.integers(1, 6, size=len(neurons))
        rows = rng.poisson(1.5, size=(int(reps.sum()), int(T[s]))).astype(np.float32)
        holes = rng.random(rows.shape) < 0.1
        rows[holes] = np.nan
        if rows.shape[0] > 2 and s % 2:
            rows[1] = np.nan  # a repeat without any valid bin
        if not np.isfinite(rows).any():
            rows[0, 0] = 1.0
        blocks.append((neurons, reps, torch.from_numpy(rows)))
    store = ResponseStore.from_blocks(N, blocks)
    stims = [torch.rand((1, F, int(t)), generator=torch.Generator().manual_seed(s))
             for s, t in enumerate(T)]
    return AudioNeuralDataset.from_data(stims, store, dt_ms=5.0,
                                        stim_meta=[{"name": f"s{s}"} for s in range(S)],
                                        nrn_meta=[{"cell_id": f"n{n}"} for n in range(N)],
                                        path=None, F=F)


DATASETS = {
    "ragged": lambda: make_ragged_dataset(14, 9, coverage=0.3, repeats=(1, 7), seed=1,
                                          n_bands=6, T_range=(3, 40)),
    "dense_reps": lambda: make_ragged_dataset(9, 5, coverage=1.0, repeats=(2, 2), seed=2,
                                              n_bands=6, T_range=(20, 20)),
    "nan_inside": nan_inside_dataset,
}


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def batch_pairs(ds, batch_size=4):
    dense = DataLoader(ds, batch_size=batch_size, collate_fn=neural_collate)
    packed = packed_loader(ds, batch_size=batch_size)
    pairs = list(zip(dense, packed))
    assert len(pairs) == len(dense) == len(packed)
    return pairs


def prediction(shape, seed):
    B, N, _, T = shape
    g = torch.Generator().manual_seed(seed)
    return torch.rand((B, N, 1, T), generator=g, dtype=torch.float64) + 0.05


# ---------------------------------------------------------------------------- layout
@pytest.mark.parametrize("name", list(DATASETS))
def test_to_dense_is_neural_collate(name):
    ds = DATASETS[name]()
    for dense, packed in batch_pairs(ds):
        assert isinstance(packed, PackedBatch)
        back = packed.to_dense()
        assert packed.shape == dense["responses"].shape
        assert same(back["responses"], dense["responses"])
        assert torch.equal(back["valid_mask"], dense["valid_mask"])
        assert torch.equal(back["stims"], dense["stims"])
        assert back["stim_meta"] == dense["stim_meta"]


def test_rows_are_the_stored_rows_and_nothing_else():
    ds = DATASETS["ragged"]()
    packed = packed_loader(ds, batch_size=len(ds)).__iter__().__next__()
    store = ds.response_store
    assert packed.values.numel() == sum(store.block(s)[2].numel() for s in range(ds.get_S()))
    for i in range(packed.n_rows):
        b, n, r = (int(packed.row_stim[i]), int(packed.row_neuron[i]),
                   int(packed.row_repeat[i]))
        s = ds.iterable_stims[b]
        a, e = int(packed.row_offsets[i]), int(packed.row_offsets[i + 1])
        assert torch.equal(packed.values[a:e], ds.responses[s][n][r])
    # the pairs are exactly the (stim, neuron) pairs with data
    masks = ds.nrn_masks
    got = {(ds.iterable_stims[int(b)], int(n)) for b, n in zip(packed.pair_stim,
                                                                 packed.pair_neuron)}
    assert got == {(int(s), int(n)) for s, n in torch.nonzero(masks).tolist()}
    assert packed.pair_reps.tolist() == [ds.responses[ds.iterable_stims[int(b)]][int(n)].shape[0]
                                         for b, n in zip(packed.pair_stim, packed.pair_neuron)]


def test_low_coverage_packs_far_smaller_than_dense():
    ds = make_ragged_dataset(40, 60, coverage=0.25, repeats=lambda rng, s: 11 if s % 10 == 0
                             else 1, seed=5, n_bands=4, T_range=(60, 100))
    packed = next(iter(packed_loader(ds, batch_size=10)))
    dense = next(iter(DataLoader(ds, batch_size=10, collate_fn=neural_collate)))
    real = int(dense["valid_mask"].sum())
    assert packed.values.numel() == real  # no padding at all (this data has no NaN)
    assert packed.dense_nbytes() > 10 * packed.nbytes


def test_selection_applies():
    ds = DATASETS["ragged"]()
    ds.select_population([7, 2, 5, 0])
    ds.select_stims(range(2, 11))
    for dense, packed in batch_pairs(ds, 3):
        assert packed.n_neurons == 4
        assert same(packed.to_dense()["responses"], dense["responses"])


def test_packed_collate_of_items_equals_storage_path():
    ds = DATASETS["nan_inside"]()
    fast = packed_loader(ds, batch_size=len(ds))
    slow = DataLoader(ds, batch_size=len(ds), collate_fn=packed_collate)
    for a, b in zip(fast, slow):
        assert same(a.to_dense()["responses"], b.to_dense()["responses"])
    # single packed items (no batched fetch) are joined
    view = PackedView(ds)
    joined = packed_collate([view[i] for i in range(len(ds))])
    assert same(joined.to_dense()["responses"], next(iter(fast)).to_dense()["responses"])
    # deepSTRF 4-tuples
    item = ds[0]
    tup = packed_collate([(item["stims"], item["responses"], item["valid_mask"],
                           item["stim_meta"])])
    assert same(tup.to_dense()["responses"], neural_collate([item])["responses"])


def test_dataloader_workers_shuffle_and_mapping_access():
    ds = DATASETS["ragged"]()
    loader = packed_loader(ds, batch_size=5, shuffle=True, num_workers=1,
                           generator=torch.Generator().manual_seed(0))
    names = []
    for packed in loader:
        assert packed["responses"] is packed and packed["valid_mask"] is None
        assert packed["stims"].shape[0] == packed.B
        names += [m["name"] for m in packed["stim_meta"]]
    assert sorted(names) == sorted(m["name"] for m in ds.stim_meta)


def test_bad_layouts_are_refused():
    ok = {"stims": torch.zeros(2, 1, 1, 3), "values": torch.zeros(2 + 3),
          "row_stim": [0, 1], "row_neuron": [0, 1], "row_repeat": [0, 0],
          "lengths": [2, 3], "n_neurons": 2, "stim_meta": [{}, {}]}
    PackedBatch(**ok)
    with pytest.raises(ValueError, match="sum\\(lengths"):
        PackedBatch(**{**ok, "values": torch.zeros(4)})
    with pytest.raises(ValueError, match="grouped by stimulus"):
        PackedBatch(**{**ok, "row_stim": [1, 0], "lengths": [3, 2]})
    with pytest.raises(ValueError, match="contiguous"):
        PackedBatch(**{**ok, "row_repeat": [1, 0]})
    with pytest.raises(ValueError, match="row_neuron must lie"):
        PackedBatch(**{**ok, "row_neuron": [0, 2]})
    with pytest.raises(TypeError, match="integers"):
        PackedBatch(**{**ok, "row_stim": torch.tensor([0.0, 1.0])})
    with pytest.raises(ValueError, match="separate runs"):
        PackedBatch(**{**ok, "values": torch.zeros(6), "row_stim": [0, 0, 0],
                       "row_neuron": [0, 1, 0], "row_repeat": [0, 0, 0], "lengths": [2, 3]})
    packed = PackedBatch(**ok)
    with pytest.raises(ValueError, match="mask=None"):
        mse_loss(torch.zeros(2, 2, 1, 3), packed, mask=torch.ones(2, 2, 1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="agree on N"):
        mse_loss(torch.zeros(2, 3, 1, 3), packed)
    with pytest.raises(KeyError, match="stim_meta"):
        packed["nope"]


# ---------------------------------------------------------------------------- losses and metrics
LOSS_CASES = {
    "mse": lambda p, r, **kw: mse_loss(p, r, **kw),
    "mse_psth_neurons": lambda p, r, **kw: mse_loss(p, r, target="psth", pool="neurons", **kw),
    "poisson": lambda p, r, **kw: poisson_loss(p, r, **kw),
    "poisson_log": lambda p, r, **kw: poisson_loss(p, r, log_input=True, **kw),
}


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("loss", list(LOSS_CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_and_gradients_equal_dense(name, loss, reduction):
    ds = DATASETS[name]()
    f = LOSS_CASES[loss]
    for k, (dense, packed) in enumerate(batch_pairs(ds)):
        pred = prediction(packed.shape, k)
        p1 = pred.clone().requires_grad_(True)
        p2 = pred.clone().requires_grad_(True)
        a = f(p1, dense["responses"], mask=dense["valid_mask"], reduction=reduction)
        b = f(p2, packed, reduction=reduction)
        torch.testing.assert_close(b, a, **TIGHT)
        if reduction != "none":
            a.backward()
            b.backward()
            torch.testing.assert_close(p2.grad, p1.grad, **TIGHT)


METRIC_CASES = {
    "corrcoef": lambda p, r: corrcoef(p, r, reduction="none"),
    "fve": lambda p, r: fve(p, r, reduction="none"),
    "ccnorm": lambda p, r: normalized_corrcoef(p, r, reduction="none"),
    "ccnorm_raw": lambda p, r: normalized_corrcoef(p, r, reduction="none",
                                                   single_repeat="raw"),
    "coherence": lambda p, r: coherence(p, r, 5.0, reduction="none", nperseg=8),
    "signal_power": lambda p, r: signal_power(r, reduction="none"),
    "noise_power": lambda p, r: noise_power(r, reduction="none"),
    "snr": lambda p, r: snr(r, reduction="mean"),
}


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("metric", list(METRIC_CASES))
def test_metrics_equal_dense(name, metric):
    ds = DATASETS[name]()
    f = METRIC_CASES[metric]
    checked = 0
    for k, (dense, packed) in enumerate(batch_pairs(ds)):
        pred = prediction(packed.shape, k)
        a = f(pred, dense["responses"])
        b = f(pred, packed)
        torch.testing.assert_close(b, a, **TIGHT)
        checked += int((~torch.isnan(a)).sum())
    assert checked > 0  # some values were real numbers, not only NaN == NaN


def test_all_missing_neuron_is_nan_in_both():
    ds = DATASETS["ragged"]()
    dense, packed = batch_pairs(ds, 2)[0]
    absent = (~dense["valid_mask"].any(dim=(0, 2, 3))).nonzero().reshape(-1)
    assert len(absent)  # at 30 % coverage some neuron misses both stims of the batch
    pred = prediction(packed.shape, 0)
    per_neuron = mse_loss(pred, packed, reduction="none")
    assert torch.isnan(per_neuron[absent]).all()
    torch.testing.assert_close(per_neuron, mse_loss(pred, dense["responses"], reduction="none"),
                               **TIGHT)


# ---------------------------------------------------------------------------- training
def train(ds, loader, steps_per_epoch_check=None, epochs=3):
    torch.manual_seed(0)
    model = PopulationLinearSTRF(ds.get_N(), ds.F, n_lags=3, output_nonlinearity="softplus")
    with torch.no_grad():
        model.weight.normal_(0, 0.1)
    model.initial_weight = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad()
            value = poisson_loss(model(batch["stims"]), batch["responses"],
                                 mask=batch["valid_mask"])
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
    return model, losses


@pytest.mark.parametrize("name", ["ragged", "nan_inside"])
def test_model_trained_on_packed_equals_dense(name):
    ds = DATASETS[name]()
    dense_model, dense_losses = train(ds, DataLoader(ds, batch_size=4,
                                                     collate_fn=neural_collate))
    packed_model, packed_losses = train(ds, packed_loader(ds, batch_size=4))
    assert len(dense_losses) >= 6
    np.testing.assert_allclose(packed_losses, dense_losses, rtol=1e-5)
    for a, b in zip(dense_model.parameters(), packed_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # and it did learn something: the weights moved well beyond the tolerance
    moved = (dense_model.weight.detach() - dense_model.initial_weight).abs().max()
    assert float(moved) > 1e-3


def test_gather_pred_and_device_copy():
    ds = DATASETS["ragged"]()
    packed = next(iter(packed_loader(ds, batch_size=3)))
    pred = prediction(packed.shape, 1)
    rows = packed.gather_pred(pred)
    assert rows.shape == packed.values.shape
    i = packed.n_rows - 1
    b, n = int(packed.row_stim[i]), int(packed.row_neuron[i])
    a, e = int(packed.row_offsets[i]), int(packed.row_offsets[i + 1])
    assert torch.equal(rows[a:e], pred[b, n, 0, :e - a])
    moved = packed.to(torch.float64)
    assert moved.values.dtype == torch.float64 and moved.row_stim.dtype == torch.int64
    torch.testing.assert_close(mse_loss(pred, moved), mse_loss(pred, packed), **TIGHT)


def test_fit_gradient_packed_equals_dense():
    from deepstrf.models import fit_gradient

    ds = DATASETS["ragged"]()
    histories, weights = [], []
    for packed in (False, True):
        torch.manual_seed(0)
        model = PopulationLinearSTRF(ds.get_N(), ds.F, n_lags=2, output_nonlinearity="softplus")
        histories.append(fit_gradient(model, ds, range(2, 12), loss="poisson", epochs=3,
                                      lr=0.05, batch_size=3, progress=False, packed=packed))
        weights.append(model.weight.detach().clone())
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-6)
    assert float(weights[0].abs().max()) > 1e-3  # it trained


def test_stim_loader_packed_keeps_the_neuron_axis():
    from deepstrf.utils.data import stim_loader

    ds = DATASETS["ragged"]()
    dense = list(stim_loader(ds, [1, 4, 9], batch_size=2))
    packed = list(stim_loader(ds, [1, 4, 9], batch_size=2, packed=True))
    assert len(dense) == len(packed) == 2
    for d, p in zip(dense, packed):
        assert p.n_neurons == ds.get_N()
        assert same(p.to_dense()["responses"], d["responses"])
    with pytest.raises(TypeError, match="packed must be"):
        stim_loader(ds, [1], packed="yes")
