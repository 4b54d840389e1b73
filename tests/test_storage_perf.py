"""The memory-floor paths of the packed storage: recycled batches, one-pass padding,
packing, streaming whole-dataset operations and when blocks may be written in place."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from deepstrf.datasets._storage import ResponseStore, nan_sentinel
from deepstrf.testing.synthetic import make_ragged_dataset
from deepstrf.utils import data as data_mod
from deepstrf.utils.data import neural_collate, release_batch_memory


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(torch.nan_to_num(a, nan=-7.5),
                                                   torch.nan_to_num(b, nan=-7.5))) and bool(
        torch.equal(torch.isnan(a), torch.isnan(b)))


def naive_item(ds, i):
    """ds[i] rebuilt from responses[s][n] with a Python loop (the contract, spelled out)."""
    s = ds.iterable_stims[i]
    neurons = ds.selected_neurons
    values = [ds.responses[s][n] for n in neurons]
    real = [v for v in values if not torch.isnan(v).all()]
    R = max(v.shape[0] for v in real)
    T = ds.response_store.T(s)
    out = torch.full((len(neurons), R, T), float("nan"))
    for j, v in enumerate(values):
        if not torch.isnan(v).all():
            out[j, :v.shape[0]] = v
    return out


def with_nan_values(ds, seed=0):
    """Put NaN at a few stored values (missing samples), through the public setter."""
    rng = np.random.default_rng(seed)
    for s in range(ds.get_S()):
        neurons = ds.response_store.block(s)[0]
        n = int(neurons[rng.integers(len(neurons))])
        v = ds.responses[s][n].clone()
        v.view(-1)[rng.integers(v.numel())] = float("nan")
        ds.responses[s][n] = v
    return ds


# ---------------------------------------------------------------------------- batches
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.booleans(), st.booleans())
def test_padded_batches_hold_exactly_the_stored_numbers(seed, nan_values, select):
    ds = make_ragged_dataset(7, 5, n_bands=2, T_range=(1, 9), coverage=0.6, repeats=(1, 4),
                             seed=seed)
    if nan_values:
        with_nan_values(ds, seed)
    if select:
        ds.select_population([4, 0, 2])
    positions = list(range(len(ds)))[::-1]
    batch = neural_collate(ds.__getitems__(positions))
    R, T = batch["responses"].shape[2:]
    for b, p in enumerate(positions):
        ref = naive_item(ds, p)
        item = ds[p]
        assert same(item["responses"], ref)
        assert torch.equal(item["valid_mask"], ~torch.isnan(ref))
        got = batch["responses"][b]
        assert same(got[:, :ref.shape[1], :ref.shape[2]], ref)
        assert torch.isnan(got[:, ref.shape[1]:]).all() and torch.isnan(got[:, :, ref.shape[2]:]).all()
    assert torch.equal(batch["valid_mask"], ~torch.isnan(batch["responses"]))


def test_batch_memory_is_recycled_only_once_released():
    release_batch_memory()
    ds = make_ragged_dataset(16, 40, n_bands=3, T_range=(30, 60), coverage=0.7, seed=4)
    ref = neural_collate([ds[i] for i in range(4)])
    first = neural_collate(ds.__getitems__([0, 1, 2, 3]))
    kept = first["responses"][1:3]          # a view the user keeps; the batch dict is dropped
    kept_values = kept.clone()
    ptr = first["responses"].data_ptr()
    del first
    gc.collect()
    for _ in range(4):                      # buffer still visible through `kept`: not reused
        other = neural_collate(ds.__getitems__([7, 6, 5, 4]))
        assert other["responses"].data_ptr() != ptr
        del other
    assert same(kept, kept_values)
    del kept
    gc.collect()
    again = neural_collate(ds.__getitems__([0, 1, 2, 3]))
    reused = {again["responses"].data_ptr()}
    del again
    gc.collect()
    again = neural_collate(ds.__getitems__([0, 1, 2, 3]))
    reused.add(again["responses"].data_ptr())
    assert ptr in reused or len(reused) == 1  # memory comes back from the pool
    for key in ("stims", "responses", "valid_mask"):
        assert same(again[key].float(), ref[key].float())


def test_batches_kept_alive_are_never_overwritten():
    release_batch_memory()
    ds = make_ragged_dataset(24, 30, n_bands=3, T_range=(20, 50), coverage=0.8, seed=5)
    loader = DataLoader(ds, batch_size=4, shuffle=True, collate_fn=neural_collate,
                        generator=torch.Generator().manual_seed(1))
    kept = list(loader)                     # every batch alive at once
    snapshot = [b["responses"].clone() for b in kept]
    list(loader)                            # another epoch while they are alive
    for b, s in zip(kept, snapshot):
        assert same(b["responses"], s)
        for j, meta in enumerate(b["stim_meta"]):
            i = [m["name"] for m in ds[:]["stim_meta"]].index(meta["name"])
            ref = ds[i]["responses"]
            assert same(b["responses"][j, :, :ref.shape[1], :ref.shape[2]], ref)
    assert len(data_mod._POOL._buffers) <= data_mod._POOL.max_buffers


def test_workers_and_pin_memory_give_the_same_batches():
    ds = make_ragged_dataset(12, 9, n_bands=3, T_range=(5, 20), coverage=0.7, seed=6)
    ref = list(DataLoader(ds, batch_size=3, collate_fn=neural_collate))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CPU-only builds warn that nothing gets pinned
        pinned = list(DataLoader(ds, batch_size=3, collate_fn=neural_collate, pin_memory=True))
        workers = list(DataLoader(ds, batch_size=3, collate_fn=neural_collate, num_workers=2))
    for other in (pinned, workers):
        assert len(other) == len(ref)
        for a, b in zip(ref, other):
            for key in ("stims", "responses", "valid_mask"):
                assert same(a[key].float(), b[key].float())
            assert a["stim_meta"] == b["stim_meta"]


def test_shared_memory_batches_in_workers():
    specs = [((2, 3), torch.float32), ((2, 3), torch.bool)]
    out = data_mod._shared_tensors(specs)
    assert [tuple(t.shape) for t in out] == [(2, 3), (2, 3)]
    assert all(t.is_shared() for t in out)


# ---------------------------------------------------------------------------- packing
def nested_from(ds, distinct=True):
    store = ds.response_store
    rows = []
    for s in range(store.n_stims):
        neurons, reps, data = store.block(s)
        shared = nan_sentinel()
        row = [nan_sentinel() if distinct else shared for _ in range(store.n_neurons)]
        for n, v in zip(neurons.tolist(), torch.split(data, reps.tolist())):
            row[n] = v.clone()
        rows.append(row)
    return rows


def test_packing_lists_gives_the_same_store():
    ds = make_ragged_dataset(9, 7, n_bands=2, T_range=(1, 8), coverage=0.5, seed=8)
    store = ds.response_store
    for distinct in (True, False):
        packed = ResponseStore.from_nested(nested_from(ds, distinct), store.n_neurons)
        for s in range(store.n_stims):
            for a, b in zip(packed.block(s), store.block(s)):
                assert np.array_equal(np.asarray(a), np.asarray(b))


def test_packing_quirks_all_nan_pairs_dtypes_and_grad():
    rows = [[torch.full((2, 3), float("nan")), torch.arange(6.0, dtype=torch.float64).view(2, 3),
             torch.ones(1, 3, requires_grad=True)],
            [torch.tensor([[5.0]]), nan_sentinel(), torch.zeros(1, 0)]]
    store = ResponseStore.from_nested(rows, 3, stim_T=[3, 1])
    neurons, reps, data = store.block(0)
    assert neurons.tolist() == [1, 2] and reps.tolist() == [2, 1]  # all-NaN pair = missing
    assert data.dtype == torch.float32 and not data.requires_grad
    assert torch.equal(data, torch.tensor([[0.0, 1, 2], [3, 4, 5], [1, 1, 1]]))
    neurons, reps, data = store.block(1)                    # a real (1, 1) value at T = 1
    assert neurons.tolist() == [0] and torch.equal(data, torch.tensor([[5.0]]))


@pytest.mark.parametrize("bad, error, match", [
    ([[torch.ones(1, 2), "x"]], TypeError, r"responses\[1\]\[1\] must be a torch.Tensor"),
    ([[torch.ones(1, 2), torch.ones(2, dtype=torch.bool).view(1, 2)]], TypeError, "real numbers"),
    ([[torch.ones(1, 2), torch.ones(2)]], ValueError, r"responses\[1\]\[1\] must be 2-D"),
    ([[torch.ones(1, 2), torch.ones(0, 2)]], ValueError, r"responses\[1\]\[1\] has 0 repeats"),
    ([[torch.ones(1, 2), torch.ones(1, 3)]], ValueError, r"responses\[1\]\[1\] has T=3"),
    ([[torch.ones(1, 2)]], ValueError, "has 1 entries"),
])
def test_packing_errors_name_the_pair_and_leave_the_input(bad, error, match):
    rows = [[torch.ones(1, 2), nan_sentinel()]] + bad
    with pytest.raises(error, match=match):
        ResponseStore.from_nested(rows, 2, release=True)
    assert rows[0] is not None  # validated before anything was packed or released


def test_packing_looks_at_shared_objects_once_but_keeps_every_entry():
    """One sentinel object reused, distinct sentinels, and one real tensor object reused."""
    nan = float("nan")
    shared, one = nan_sentinel(), torch.tensor([[2.5]])
    wide_nan = torch.full((3, 1), nan, dtype=torch.float64)      # all NaN, not (1, 1): missing
    real = torch.tensor([[1.0], [-4.0]])
    row0 = [shared, one, nan_sentinel(), shared, real, one, wide_nan, shared,
            torch.tensor([[nan]], dtype=torch.float64), torch.tensor([[7]]), shared]
    reused = torch.arange(6.0).view(2, 3)
    row1 = [reused, shared, reused, torch.full((1, 3), nan), reused, shared, shared,
            nan_sentinel(), torch.tensor([[1.0, nan, 3.0]]), shared, shared]
    row2 = [shared] * 11                                         # nobody heard it
    rows = [row0, row1, row2]
    store = ResponseStore.from_nested(rows, 11, stim_T=[1, 3, 4], release=True)
    assert rows == [None, None, None]
    neurons, reps, data = store.block(0)
    assert neurons.tolist() == [1, 4, 5, 9] and reps.tolist() == [1, 2, 1, 1]
    assert torch.equal(data, torch.tensor([[2.5], [1.0], [-4.0], [2.5], [7.0]]))
    neurons, reps, data = store.block(1)
    assert neurons.tolist() == [0, 2, 4, 8] and reps.tolist() == [2, 2, 2, 1]
    want = torch.cat([reused, reused, reused, torch.tensor([[1.0, nan, 3.0]])])
    assert same(data, want) and data.data_ptr() != reused.data_ptr()
    neurons, reps, data = store.block(2)
    assert neurons.tolist() == [] and data.shape == (0, 4)
    assert [store.get(s, n).shape for s, n in [(0, 0), (0, 6), (1, 3), (2, 5)]] == [(1, 1)] * 4
    assert same(store.get(0, 5), one) and same(store.get(1, 4), reused)


@pytest.mark.parametrize("bad, match", [
    (torch.ones(2), "must be 2-D"),
    (torch.ones(1, 2, dtype=torch.bool), "must hold real numbers"),
    ("x", "must be a torch.Tensor"),
    (torch.ones(0, 2), "has 0 repeats"),
    (torch.ones(1, 5), "has T=5"),
])
def test_packing_errors_name_the_first_entry_of_a_shared_bad_object(bad, match):
    """A bad object reused at neurons 6, 8 and 9 is looked at once, and named at neuron 6.

    (The row has 5 distinct objects, so an index among them could not be 6.)
    """
    ok, shared = torch.ones(1, 2), nan_sentinel()
    row = [ok, shared, torch.ones(1, 2), shared, ok, torch.zeros(1, 2), bad, shared, bad, bad]
    rows = [[ok] * 10, row]
    with pytest.raises((TypeError, ValueError), match=r"responses\[1\]\[6\] " + match):
        ResponseStore.from_nested(rows, 10, release=True)
    assert rows[0] is not None and rows[1] is row


@pytest.mark.parametrize("group_bytes", [1, 24, 100, 1 << 19])
@pytest.mark.parametrize("where", ["none", "first", "middle", "last", "all-nan pair", "inf"])
def test_nan_flag_found_while_copying_equals_a_direct_test(monkeypatch, group_bytes, where):
    """The flag from the grouped copy is np.isnan(block).any(), NaN in any group."""
    from deepstrf.datasets import _storage
    monkeypatch.setattr(_storage, "_PACK_GROUP_BYTES", group_bytes)
    rng = np.random.default_rng(len(where) + group_bytes)
    T, N = 5, 9
    reps = rng.integers(1, 4, size=N)
    parts = [torch.from_numpy(rng.standard_normal((r, T))).float() for r in reps]
    if where == "first":
        parts[0][0, 0] = float("nan")
    elif where == "middle":
        parts[N // 2][-1, 2] = float("nan")
    elif where == "last":
        parts[-1][-1, -1] = float("nan")     # the very last value: the last group of the block
    elif where == "all-nan pair":
        parts[-1][:] = float("nan")
    elif where == "inf":
        parts[3][0, 0], parts[5][-1, 1] = float("inf"), float("-inf")
    data, nan_free = _storage._pack_rows(parts, reps)
    expect = torch.cat(parts)
    assert same(data, expect) and data.dtype == torch.float32
    assert nan_free == (not bool(np.isnan(expect.numpy()).any()))

    store = ResponseStore.from_nested([list(parts)], N)
    block = store._blocks[0]
    kept = N - 1 if where == "all-nan pair" else N
    assert len(block.neurons) == kept
    assert block.nan_free == (not bool(np.isnan(block.data.numpy()).any()))
    assert block.nan_free == (where in ("none", "inf", "all-nan pair"))


def test_nan_flag_of_a_block_is_exact():
    """inf - inf is no NaN: blocks with both infinities are NaN free; one NaN is not."""
    data = torch.tensor([[np.inf, 1.0, -np.inf], [0.0, np.inf, 2.0]])
    store = ResponseStore.from_blocks(3, [([0, 2], [1, 1], data)])
    assert store._blocks[0].nan_free
    data = data.clone()
    data[1, 2] = float("nan")
    store = ResponseStore.from_blocks(3, [([0, 2], [1, 1], data)])
    assert not store._blocks[0].nan_free


# ---------------------------------------------------------------------------- operations
def packed(seed=9, **kwargs):
    """A dataset packed from lists (its blocks are memory of the store's own)."""
    ds = make_ragged_dataset(8, 6, n_bands=2, T_range=(10, 30), coverage=0.7, seed=seed, **kwargs)
    rows = nested_from(ds)
    return type(ds).from_data(ds.stims, rows, dt_ms=ds.dt, stim_meta=ds.stim_meta,
                              nrn_meta=ds.nrn_meta, F=ds.F)


def reference_moments(ds):
    """Per-neuron count, mean and centred sum of squares, two-pass in float64."""
    N = ds.N_neurons
    vals = [[] for _ in range(N)]
    for s in range(ds.get_S()):
        for n in range(N):
            v = ds.responses[s][n].double().flatten()
            vals[n].append(v[~torch.isnan(v)])
    out = []
    for n in range(N):
        v = torch.cat(vals[n])
        out.append((len(v), float(v.mean()), float(((v - v.mean()) ** 2).sum()), float(v.abs().max())))
    return out


@pytest.mark.parametrize("nan_values", [False, True])
def test_normalisation_statistics_match_two_pass_float64(nan_values):
    from deepstrf.datasets._preprocess import _neuron_moments

    ds = packed(rate=3.0)
    if nan_values:
        with_nan_values(ds)
    ds.response_store.masks()
    count, mean, m2, _ = _neuron_moments(ds, list(range(ds.get_S())), with_var=True)
    count_max, _, _, peak = _neuron_moments(ds, list(range(ds.get_S())), with_var=False)
    for n, (c, mu, sq, pk) in enumerate(reference_moments(ds)):
        assert count[n] == c and count_max[n] == c and peak[n] == pk
        assert mean[n] == pytest.approx(mu, rel=1e-12)
        assert m2[n] == pytest.approx(sq, rel=1e-9)


def test_normalisation_values_and_round_trip():
    ds = packed(rate=2.0)
    before = [[ds.responses[s][n].clone() for n in range(ds.N_neurons)] for s in range(ds.get_S())]
    rec = ds.normalize_responses("zscore")
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            x = before[s][n]
            expected = (x - rec["offset"][n]) / rec["scale"][n]   # float32, the same two steps
            assert same(ds.responses[s][n], expected)
    ds.denormalize_responses()
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            assert torch.allclose(ds.responses[s][n], before[s][n], atol=1e-5, equal_nan=True)


def test_results_do_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    results = []
    try:
        for k in (1, 2):
            torch.set_num_threads(k)
            ds = packed(seed=12, rate=2.0)
            q = ds.compute_neuron_quality()
            ds.smooth_responses(15.0)
            rec = ds.normalize_responses("zscore")
            batch = neural_collate(ds.__getitems__(list(range(len(ds)))))
            results.append((q, rec, batch))
    finally:
        torch.set_num_threads(threads)
    (q1, r1, b1), (q2, r2, b2) = results
    for key in ("snr", "ccmax", "signal_power", "noise_power"):
        assert same(q1[key], q2[key])
    assert torch.equal(r1["scale"], r2["scale"]) and torch.equal(r1["offset"], r2["offset"])
    assert same(b1["responses"], b2["responses"])


def test_smoothing_equals_smooth_rows_exactly():
    from deepstrf.preprocessing.spikes import hanning_kernel, smooth_rows

    for nan_values in (False, True):
        ds = packed(seed=13, rate=1.5)
        if nan_values:
            with_nan_values(ds)
        blocks = [ds.response_store.block(s)[2].clone() for s in range(ds.get_S())]
        ds.smooth_responses(21.0)
        kernel = hanning_kernel(21.0, ds.dt)
        for s, rows in enumerate(blocks):
            np.testing.assert_array_equal(ds.response_store.block(s)[2].numpy(),
                                          smooth_rows(rows, kernel).numpy())


def test_in_place_only_when_nothing_else_sees_the_block():
    ds = packed(seed=14)
    store = ds.response_store
    s, n = 0, int(store.block(0)[0][0])
    view = ds.responses[s][n]                  # a view the user keeps
    view_values = view.clone()
    held = store.block(1)[2]                   # a block tensor object the user keeps
    held_values = held.clone()
    written = store.transform_rows_(lambda s, rows, src, dst: np.multiply(src, 2, out=dst))
    assert written == store.n_stims - 2        # every other block was rewritten in place
    assert torch.equal(view, view_values) and torch.equal(held, held_values)
    assert torch.equal(ds.responses[s][n], 2 * view_values)
    assert torch.equal(store.block(1)[2], 2 * held_values)


def test_shared_blocks_are_never_written_in_place():
    a, b = packed(seed=15), packed(seed=16)
    a_before = [a.response_store.block(s)[2].clone() for s in range(a.get_S())]
    both = a + b
    both.normalize_responses("max")
    for s in range(a.get_S()):                 # the sources keep their values
        assert torch.equal(a.response_store.block(s)[2], a_before[s])
    a.smooth_responses()                       # and the concatenation keeps its own
    rows = np.random.default_rng(0).poisson(1.0, size=(6, 12)).astype(np.float32)
    user = rows.copy()
    store = ResponseStore.from_blocks(3, [([0, 1, 2], [2, 2, 2], user)])
    assert store.transform_rows_(lambda s, r, src, dst: np.add(src, 1, out=dst)) == 0
    assert np.array_equal(user, rows)          # the caller's array is untouched
    assert np.array_equal(store.block(0)[2].numpy(), rows + 1)


def test_arrays_handed_over_are_rewritten_in_place():
    rows = np.random.default_rng(1).poisson(1.0, size=(6, 12)).astype(np.float32)
    handed = rows.copy()
    store = ResponseStore.from_blocks(3, [([0, 1, 2], [2, 2, 2], handed)], owned=True)
    assert store.transform_rows_(lambda s, r, src, dst: np.add(src, 1, out=dst)) == 1
    assert store.block(0)[2].data_ptr() == handed.ctypes.data   # no new block was allocated
    assert np.array_equal(store.block(0)[2].numpy(), rows + 1)
    held = store.block(0)[2]                    # a user's reference still stops the write
    assert store.transform_rows_(lambda s, r, src, dst: np.add(src, 1, out=dst)) == 0
    assert torch.equal(held, torch.from_numpy(rows + 1))
    # a dataset made by the synthetic generator owns its rows: the first op is in place
    ds = make_ragged_dataset(5, 4, n_bands=2, T_range=(5, 9), coverage=0.8, seed=3)
    assert ds.response_store.transform_rows_(lambda s, r, src, dst: None) == ds.get_S()




def test_rewrites_keep_the_nan_flag_known_and_exact():
    ds = packed(seed=21, rate=2.0)
    store = ds.response_store
    assert all(b._nan_free is True for b in store._blocks)
    ds.smooth_responses()
    assert all(b._nan_free is True for b in store._blocks)      # known without a new pass
    # a rewrite that puts a NaN in the last row of one block: that block alone is flagged
    target = 3

    def poke(s, rows, src, dst):
        dst[...] = src
        if s == target and rows.stop == store.block(s)[2].shape[0]:
            dst[-1, -1] = np.nan

    store.transform_rows_(poke)
    flags = [b._nan_free for b in store._blocks]
    assert flags == [s != target for s in range(store.n_stims)]
    for b in store._blocks:
        assert b._nan_free == (not bool(np.isnan(b.data.numpy()).any()))


@pytest.mark.parametrize("nan_values", [False, True])
@pytest.mark.parametrize("first, then", [("zscore", "max"), ("max", "zscore"), ("zscore", "zscore")])
def test_renormalising_in_one_pass_equals_undoing_then_normalising(first, then, nan_values):
    a, b = packed(seed=22, rate=2.0), packed(seed=22, rate=2.0)
    if nan_values:
        with_nan_values(a), with_nan_values(b)
    stims = [0, 2, 5]
    for ds in (a, b):
        ds.normalize_responses(first, stim_indices=[1, 3])
    ra = a.normalize_responses(then, stim_indices=stims)      # undone and measured in one pass
    b.denormalize_responses()
    rb = b.normalize_responses(then, stim_indices=stims)      # two passes, then the rewrite
    for key in ("scale", "offset"):
        assert torch.equal(ra[key], rb[key])
    assert ra["neurons_without_statistics"] == rb["neurons_without_statistics"]
    for s in range(a.get_S()):
        assert same(a.response_store.block(s)[2], b.response_store.block(s)[2])
        assert a.response_store._blocks[s]._nan_free == b.response_store._blocks[s]._nan_free
