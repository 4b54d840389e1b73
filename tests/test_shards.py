"""The sharded build mechanism on toy units: keys, reuse, resume, composition (in memory or on disk)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepstrf.datasets._storage import ResponseStore
from deepstrf.errors import CacheMissError
from deepstrf.io.cache import BuiltData, list_entries
from deepstrf.io.shards import Shard, build_shards, compose_shards, shard_key

BUILT: list[str] = []


def build_unit(task, n_jobs=1):
    """A unit of ``task['n']`` neurons; stimulus s heard by the unit when s % task['every'] == 0."""
    BUILT.append(task["name"])
    if task.get("fail"):
        raise RuntimeError(f"unit {task['name']} fails")
    n, base = task["n"], task["base"]
    blocks, metas = [], []
    for s, T in enumerate((4, 6, 5)):
        if s % task["every"]:
            continue
        rows = torch.arange(n * 2 * T, dtype=torch.float32).reshape(n * 2, T) + base + 100 * s
        blocks.append((list(range(n)), [2] * n, rows))
        metas.append({"name": f"stim{s}", "n_bins": T})
    return BuiltData(stims=[], store=ResponseStore.from_blocks(n, blocks), stim_meta=metas,
                     nrn_meta=[{"cell_id": f"{task['name']}-{k}"} for k in range(n)],
                     attributes={}, quirks={"odd": 1} if task["n"] % 2 else {})


def _stim_part():
    stims = [torch.rand(1, 3, T) for T in (4, 6, 5)]
    metas = [{"name": f"stim{s}", "n_bins": T, "split": "test" if s == 1 else "est"}
             for s, T in enumerate((4, 6, 5))]
    store = ResponseStore.from_blocks(0, [([], [], torch.zeros(0, T)) for T in (4, 6, 5)])
    return BuiltData(stims=stims, store=store, stim_meta=metas, nrn_meta=[],
                     attributes={"F": 3})


def _shards(names, **over):
    return [Shard(name, {"n": 2 + i, "every": 1 + (i % 2)}, {"sha": name},
                  {"name": name, "n": 2 + i, "every": 1 + (i % 2), "base": 1000 * i, **over})
            for i, name in enumerate(names)]


def test_keys_depend_on_the_shard_alone():
    a, b = _shards(["a", "b"])
    assert shard_key("D", 1, a) != shard_key("D", 1, b)
    assert shard_key("D", 1, a) == shard_key("D", 1, Shard("a", a.params, a.fingerprint, None))
    assert shard_key("D", 1, a) != shard_key("D", 2, a)
    assert shard_key("D", 1, a) != shard_key("D", 1, Shard("a", a.params, {"sha": "x"}, None))


def test_reuse_resume_and_readonly(tmp_path):
    BUILT.clear()
    parts, report = build_shards(tmp_path, _shards(["a", "b"]), build_unit, owner="D",
                                 cache_version=1)
    assert report.built == ["a", "b"] and BUILT == ["a", "b"]
    BUILT.clear()
    shards = _shards(["a", "b", "c", "d"])
    shards[3] = Shard("d", shards[3].params, shards[3].fingerprint, {**shards[3].task,
                                                                     "fail": True})
    with pytest.raises(RuntimeError, match="unit d fails"):
        build_shards(tmp_path, shards, build_unit, owner="D", cache_version=1)
    assert BUILT == ["c", "d"]  # a, b reused; c written before d failed
    BUILT.clear()
    parts, report = build_shards(tmp_path, _shards(["a", "b", "c", "d"]), build_unit,
                                 owner="D", cache_version=1)
    assert report.reused == ["a", "b", "c"] and report.built == ["d"] and BUILT == ["d"]
    assert [m.get("shard") for _, m in list_entries(tmp_path)] and \
        sorted(m["shard"] for _, m in list_entries(tmp_path)) == ["a", "b", "c", "d"]
    with pytest.raises(CacheMissError, match="shards are not in the processed cache"):
        build_shards(tmp_path, _shards(["a", "e"]), build_unit, owner="D", cache_version=1,
                     mode="readonly")
    BUILT.clear()
    build_shards(tmp_path, _shards(["a"]), build_unit, owner="D", cache_version=1, mode="off")
    assert BUILT == ["a"]


def test_parallel_build_writes_every_shard(tmp_path):
    parts, report = build_shards(tmp_path, _shards(["a", "b", "c"]), build_unit, owner="D",
                                 cache_version=1, n_jobs=2)
    assert report.built == ["a", "b", "c"] and len(list_entries(tmp_path)) == 3
    assert parts[2].quirks == {} and parts[1].quirks == {"odd": 1}


@pytest.mark.parametrize("on_disk", [False, True])
def test_composition_puts_every_block_in_place(tmp_path, on_disk, monkeypatch):
    import deepstrf.io.shards as shards

    monkeypatch.setattr(shards, "_in_memory_limit", lambda: 0)  # any size goes to disk
    units = [build_unit(s.task) for s in _shards(["a", "b", "c"])]  # n = 2, 3, 4 neurons
    out = compose_shards(_stim_part(), units, scratch_dir=tmp_path if on_disk else None)
    assert [m["cell_id"] for m in out.nrn_meta][:3] == ["a-0", "a-1", "b-0"]
    assert out.store.n_neurons == 9 and len(out.stims) == 3
    offset = 0
    for unit in units:
        for s_local, meta in enumerate(unit.stim_meta):
            s = [m["name"] for m in out.stim_meta].index(meta["name"])
            neurons, reps, rows = unit.store.block(s_local)
            for k, n in enumerate(neurons):
                got = out.store.get(s, offset + int(n))
                np.testing.assert_array_equal(got.numpy(), rows[2 * k:2 * k + 2].numpy())
        offset += unit.store.n_neurons
    # b (every=2) did not hear stim1: sentinels there
    assert not bool(out.store.masks()[1, 2:5].any()) and bool(out.store.masks()[1, :2].all())
    assert out.quirks == {"odd": 1}
    assert not list(tmp_path.iterdir())  # the scratch file's name is gone
    test_only = compose_shards(_stim_part(), units, keep=lambda m: m["split"] == "test")
    assert [m["name"] for m in test_only.stim_meta] == ["stim1"]
    assert [m["cell_id"] for m in test_only.nrn_meta] == \
        ["a-0", "a-1", "c-0", "c-1", "c-2", "c-3"]  # b heard no selected stimulus
