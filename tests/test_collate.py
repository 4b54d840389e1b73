"""neural_collate and DataLoader batching, including property-based round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from deepstrf.testing.synthetic import make_ragged_dataset
from deepstrf.utils.data import neural_collate
from tests.conftest import toy_parts


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(torch.nan_to_num(a, nan=-7.5),
                                                   torch.nan_to_num(b, nan=-7.5))) and bool(
        torch.equal(torch.isnan(a), torch.isnan(b)))


def test_collate_padding_values(toy, toy_values):
    batch = neural_collate([toy[1], toy[0]])
    assert set(batch) == {"stims", "responses", "valid_mask", "stim_meta"}
    stims, resp, mask = batch["stims"], batch["responses"], batch["valid_mask"]
    assert stims.shape == (2, 1, 6, 5) and resp.shape == (2, 4, 3, 5) and mask.shape == resp.shape
    assert torch.equal(stims[0, ..., :3], toy.stims[1]) and (stims[0, ..., 3:] == 0).all()
    assert not torch.isnan(stims).any()
    assert torch.equal(resp[0, 1, :2, :3], toy_values[(1, 1)])
    assert torch.isnan(resp[0, 1, 2]).all() and torch.isnan(resp[0, 1, :, 3:]).all()
    assert torch.isnan(resp[0, [0, 2, 3]]).all()
    assert torch.equal(resp[1, 3], toy_values[(0, 3)])
    assert torch.equal(mask, ~torch.isnan(resp))
    assert [m["name"] for m in batch["stim_meta"]] == ["s1", "s0"]


def test_collate_extra_keys_pass_through(toy):
    items = [dict(toy[0], weight=1.0, tag="a"), dict(toy[1], weight=2.0, tag="b")]
    batch = neural_collate(items)
    assert batch["weight"] == [1.0, 2.0] and batch["tag"] == ["a", "b"]


def test_collate_accepts_deepstrf_tuples(toy_values):
    stims, responses, _, _, _ = toy_parts()
    item = (stims[0], responses[0], torch.ones(4, dtype=torch.bool), {"name": "s0"})
    batch = neural_collate([item])
    assert batch["responses"].shape == (1, 4, 3, 5)
    assert torch.equal(batch["responses"][0, 3], toy_values[(0, 3)])
    assert torch.isnan(batch["responses"][0, 1]).all()


def test_collate_errors(toy):
    with pytest.raises(ValueError, match="non-empty"):
        neural_collate([])
    with pytest.raises(KeyError, match="lacks key"):
        neural_collate([{"stims": torch.ones(1, 2)}])
    with pytest.raises(TypeError, match="expected the dict"):
        neural_collate([torch.ones(2)])
    a = toy[0]
    b = dict(toy[1], stims=torch.ones(1, 5, 3))
    with pytest.raises(ValueError, match="only the last \\(time\\) axis may differ"):
        neural_collate([a, b])
    c = dict(toy[1], responses=torch.ones(3, 1, 3))
    with pytest.raises(ValueError, match="one neuron selection"):
        neural_collate([a, c])


def test_waveform_response_axis_sized_independently():
    from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset

    _, responses, stim_meta, nrn_meta, _ = toy_parts()
    stims = [torch.rand(1, t * 8) for t in (5, 3, 4)]
    ds = AudioNeuralDataset.from_data(stims, responses, dt_ms=1.0, stim_meta=stim_meta,
                                      nrn_meta=nrn_meta, audio_fs=8000, F=16)
    batch = neural_collate(ds.__getitems__([0, 1]))
    assert batch["stims"].shape == (2, 1, 40) and batch["responses"].shape == (2, 4, 3, 5)


def test_batched_fetch_equals_item_by_item(toy):
    toy.select_population([3, 1, 0])
    fast = toy.__getitems__([1, 0])
    assert [it["stim_meta"]["name"] for it in fast] == ["s1", "s0"]
    for it, i in zip(fast, [1, 0]):
        ref = toy[i]
        assert same(it["responses"], ref["responses"])
        assert torch.equal(it["valid_mask"], ref["valid_mask"])
    a = neural_collate(fast)
    b = neural_collate([toy[1], toy[0]])
    for key in ("stims", "responses", "valid_mask"):
        assert same(a[key].float(), b[key].float())
    fast.append(toy[0])  # a modified list is collated the ordinary way
    assert neural_collate(fast)["responses"].shape[0] == 3


def test_dataloader_epoch_covers_every_stim(toy):
    seen = []
    for batch in DataLoader(toy, batch_size=2, shuffle=True, collate_fn=neural_collate):
        assert batch["responses"].shape[:2] == (len(batch["stim_meta"]), 4)
        seen += [m["name"] for m in batch["stim_meta"]]
    assert sorted(seen) == ["s0", "s1"]


def test_dataloader_with_workers():
    ds = make_ragged_dataset(12, 7, n_bands=4, T_range=(5, 9), coverage=0.6, seed=3)
    ds.select_pop_by_nrn_attr("area", "A1")
    ref = {m["name"]: ds[i] for i, m in enumerate(ds[:]["stim_meta"])}
    loader = DataLoader(ds, batch_size=3, shuffle=True, collate_fn=neural_collate,
                        num_workers=2, generator=torch.Generator().manual_seed(0))
    count = 0
    for batch in loader:
        for b, meta in enumerate(batch["stim_meta"]):
            item = ref[meta["name"]]
            R, T = item["responses"].shape[1:]
            assert same(batch["responses"][b, :, :R, :T], item["responses"])
            assert torch.isnan(batch["responses"][b, :, R:]).all()
            assert torch.isnan(batch["responses"][b, :, :, T:]).all()
            count += 1
    assert count == len(ds)


@st.composite
def ragged(draw):
    S = draw(st.integers(1, 6))
    N = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 10_000))
    coverage = draw(st.floats(0.1, 1.0))
    ds = make_ragged_dataset(S, N, n_bands=3, T_range=(1, 7), coverage=coverage,
                             repeats=(1, 4), seed=seed)
    nrn = draw(st.one_of(st.none(), st.lists(st.integers(0, N - 1), unique=True, max_size=N)))
    stim = draw(st.one_of(st.none(), st.lists(st.integers(0, S - 1), unique=True, max_size=S)))
    if nrn is not None:
        ds.select_population(nrn)
    if stim is not None:
        ds.select_stims(stim)
    return ds


def reference_selection(ds):
    """Bidirectional rule recomputed naively from responses[s][n]."""
    S, N = ds.get_S(), ds.get_N()
    has = np.array([[not torch.isnan(ds.responses[s][n]).all() for n in range(N)]
                    for s in range(S)])
    base = ds.I
    stims = range(S) if ds.S_sel is None else ds.S_sel
    neurons = [n for n in base if ds.S_sel is None or any(has[s, n] for s in stims)]
    iterable = [s for s in stims if any(has[s, n] for n in neurons)]
    return neurons, sorted(iterable)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ragged())
def test_round_trip_to_exactly_the_stored_numbers(ds):
    neurons, iterable = reference_selection(ds)
    assert ds.selected_neurons == neurons and ds.iterable_stims == iterable
    assert len(ds) == len(iterable)
    if not len(ds):
        return
    batch = neural_collate([ds[i] for i in range(len(ds))])
    fast = neural_collate(ds.__getitems__(list(range(len(ds)))))
    for key in ("stims", "responses", "valid_mask"):
        assert same(batch[key].float(), fast[key].float())
    resp = batch["responses"]
    for b, s in enumerate(iterable):
        T = ds.response_store.T(s)
        assert torch.equal(batch["stims"][b, ..., :ds.stims[s].shape[-1]], ds.stims[s])
        for j, n in enumerate(neurons):
            stored = ds.responses[s][n]
            if torch.isnan(stored).all():
                assert torch.isnan(resp[b, j]).all()
                continue
            R = stored.shape[0]
            assert torch.equal(resp[b, j, :R, :T], stored)
            assert torch.isnan(resp[b, j, R:]).all() and torch.isnan(resp[b, j, :, T:]).all()
    assert torch.equal(batch["valid_mask"], ~torch.isnan(resp))


def test_stim_loader_keeps_the_neuron_axis(toy):
    from deepstrf.utils.data import stim_loader

    batches = list(stim_loader(toy, [1], batch_size=4))
    assert len(batches) == 1 and batches[0]["responses"].shape[1] == 4  # all neurons kept
    toy.select_stims([1])
    assert toy.selected_neurons == [1]  # whereas a stim selection hides them
    toy.reset_stim_selection()
    assert [m["name"] for b in stim_loader(toy, [0, 2, 1]) for m in b["stim_meta"]] == ["s0", "s1"]
    with pytest.raises(ValueError, match="none of the given stimuli"):
        stim_loader(toy, [2])
    with pytest.raises(TypeError, match="neural_collate"):
        stim_loader(toy, [0], collate_fn=list)


def test_large_batches_on_huge_pages_match_and_cross_workers():
    from deepstrf.utils.data import _HUGE_PAGE_MIN_BYTES

    ds = make_ragged_dataset(16, 300, n_bands=4, T_range=(400, 400), coverage=1.0,
                             repeats=(10, 10), seed=1)
    fast = neural_collate(ds.__getitems__(list(range(8))))
    assert fast["responses"].numel() * 4 >= _HUGE_PAGE_MIN_BYTES  # the mmap path ran
    slow = neural_collate([ds[i] for i in range(8)])
    assert same(fast["responses"], slow["responses"])
    assert torch.equal(fast["valid_mask"], slow["valid_mask"])
    loader = DataLoader(ds, batch_size=8, collate_fn=neural_collate, num_workers=2)
    first = next(iter(loader))
    assert same(first["responses"], fast["responses"])
