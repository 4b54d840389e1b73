"""Shards composed at load time: join_shards equals compose_shards without copying, composed
cache entries (record only, validated through their shards, digests from the shards')."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from deepstrf.datasets._storage import ResponseStore, _JoinedRows
from deepstrf.errors import CacheError
from deepstrf.io.cache import (
    COMPOSITION_FILE,
    cached_build,
    data_digest,
    entry_digest,
    load_entry,
    read_manifest,
    verify_entry,
    write_entry,
)
from deepstrf.io.shards import build_shards, compose_shards, join_shards
from tests.test_shards import _shards, _stim_part, build_unit


def _written_parts(tmp_path):
    """The toy stimulus part and units, each written and read back as a cache entry."""
    stim = _stim_part()
    write_entry(tmp_path / "stim", stim, {"kind": "shard", "shard": "stimuli"})
    stim_read, _ = load_entry(tmp_path / "stim")
    parts, report = build_shards(tmp_path, _shards(["a", "b", "c"]), build_unit, owner="D",
                                 cache_version=1, n_jobs=1)
    return stim_read, parts, report


@pytest.mark.parametrize("subset", [None, "test"])
def test_join_equals_the_copied_composition(tmp_path, subset):
    stim, parts, _ = _written_parts(tmp_path)
    keep = None if subset is None else (lambda m: m["split"] == subset)
    joined = join_shards(stim, parts, keep=keep)
    copied = compose_shards(stim, parts, keep=keep)
    assert data_digest(joined) == data_digest(copied)
    assert joined.nrn_meta == copied.nrn_meta and joined.quirks == copied.quirks == {"odd": 1}
    # no value was read or copied: every block points at the shards' file regions
    for b in joined.store._blocks:
        assert b._rows is None and isinstance(b.file, _JoinedRows)
        assert all(not isinstance(p, torch.Tensor) for p in b.file.parts)
    # the joined store survives pickling (DataLoader workers) with its values
    again = pickle.loads(pickle.dumps(joined.store))
    for s in range(again.n_stims):
        np.testing.assert_array_equal(again.block(s)[2].numpy(), copied.store.block(s)[2].numpy())


def test_join_of_parts_held_in_memory(tmp_path):
    stim = _stim_part()
    units = [build_unit(s.task) for s in _shards(["a", "b", "c"])]
    assert data_digest(join_shards(stim, units)) == data_digest(compose_shards(stim, units))


def test_join_refuses_blocks_that_do_not_fit():
    a = ResponseStore.from_blocks(2, [([0, 1], [1, 1], torch.zeros(2, 4))])
    b = ResponseStore.from_blocks(1, [([0], [1], torch.zeros(1, 5))])
    with pytest.raises(ValueError, match="4 and 5 bins"):
        ResponseStore.join(3, [[(a, 0, np.array([0, 1])), (b, 0, np.array([2]))]])
    with pytest.raises(ValueError, match="strictly increasing"):
        ResponseStore.join(3, [[(a, 0, np.array([1, 2])), (a, 0, np.array([0, 1]))]])
    with pytest.raises(ValueError, match="1 neuron indices for a block of 2"):
        ResponseStore.join(3, [[(a, 0, np.array([0]))]])


def _composed(tmp_path, parts, report, stim, stim_key="stim"):
    joined = join_shards(stim, parts)
    joined.composition = {"stimuli": stim_key, "parts": list(report.keys),
                          "stim_names": [m["name"] for m in joined.stim_meta]}
    return cached_build(tmp_path, "composed", "use", lambda: joined, {"dataset": "D"}, owner="D")


def test_a_composed_entry_is_a_record_and_loads_the_same_values(tmp_path):
    stim, parts, report = _written_parts(tmp_path)
    before = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    data, manifest, hit = _composed(tmp_path, parts, report, stim)
    assert not hit and manifest["kind"] == "composed"
    entry = tmp_path / "composed"
    assert sorted(p.name for p in entry.iterdir()) == [COMPOSITION_FILE, "manifest.json"]
    assert sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) - before < 8192
    # the shards' digests are the provenance; the composed digest is made from them
    assert set(manifest["shard_digests"]) == {"stim", *report.keys}
    assert manifest["digest"]["version"] == "composed-1"
    again, found = load_entry(entry)
    expected = data_digest(compose_shards(stim, parts))
    assert data_digest(again) == expected
    assert entry_digest(entry) == expected  # computed from the values when asked
    assert verify_entry(entry) == []
    assert found["counts"] == {"stims": 3, "neurons": 9, "pairs": again.store.n_pairs,
                               "response_bytes": again.store.nbytes}


def test_a_damaged_shard_invalidates_the_composition_and_is_named(tmp_path):
    stim, parts, report = _written_parts(tmp_path)
    _composed(tmp_path, parts, report, stim)
    entry = tmp_path / "composed"
    shard = tmp_path / report.keys[1]
    responses = shard / "responses.npy"
    raw = bytearray(responses.read_bytes())
    raw[-4:] = b"\x00\x00\xc0\x7f"  # same size, other value: only hashing sees it
    responses.write_bytes(bytes(raw))
    assert any(p.startswith(f"shard {report.keys[1]}: responses.npy does not match")
               for p in verify_entry(entry))
    responses.write_bytes(bytes(raw[:-4]))  # truncated: the composition is not usable
    assert read_manifest(shard) is None and read_manifest(entry) is None
    with pytest.raises(CacheError, match="incomplete or corrupt"):
        load_entry(entry)
    # the dataset's next build rebuilds that shard alone
    _, again = build_shards(tmp_path, _shards(["a", "b", "c"]), build_unit, owner="D",
                            cache_version=1)
    assert again.built == ["b"] and again.reused == ["a", "c"]
    assert read_manifest(entry) is not None


def test_a_composition_that_no_longer_matches_its_shards_fails_clearly(tmp_path):
    stim, parts, report = _written_parts(tmp_path)
    _composed(tmp_path, parts, report, stim)
    entry = tmp_path / "composed"
    import json

    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["counts"]["neurons"] = 99
    (entry / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="does not match its shards"):
        load_entry(entry)


@pytest.mark.parametrize("pread", [True, False])
def test_batches_from_joined_blocks_equal_those_of_the_copy(tmp_path, monkeypatch, pread):
    import deepstrf.datasets._storage as storage

    monkeypatch.setattr(storage, "_PREAD", pread and storage._PREAD)
    stim, parts, _ = _written_parts(tmp_path)
    joined = join_shards(stim, parts).store
    copied = compose_shards(stim, parts).store
    n = joined.n_neurons
    for sel in (np.arange(n), np.array([0, 3, 8])):
        outs = []
        sel_pos = np.full(n, -1, dtype=np.int64)
        sel_pos[sel] = np.arange(len(sel))
        for store in (joined, copied):
            plans = [store.plan(s, sel_pos) for s in range(store.n_stims)]
            R = max(int(store.block(s)[1].max()) for s in range(store.n_stims))
            T = max(store.T(s) for s in range(store.n_stims))
            out = torch.empty((store.n_stims, len(sel), R, T))
            mask = torch.empty(out.shape, dtype=torch.bool)
            store.write_padded(plans, out, mask)
            outs.append((out, mask))
        (a, ma), (b, mb) = outs
        assert torch.equal(ma, mb) and int(ma.sum()) > 0
        np.testing.assert_array_equal(a.numpy(), b.numpy())
