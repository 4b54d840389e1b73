"""Processed cache: keys, hits, atomicity, locking, modes, provenance, the raw-less reuse."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepstrf.datasets._source import DatasetInfo, SourceDataset
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.errors import CacheError, CacheMissError, MissingRawDataError
from deepstrf.io import cache as cache_mod
from deepstrf.io.cache import BuiltData, cache_key, cached_build, list_entries, verify_entry

INFO = DatasetInfo(name="toy", title="Toy", species="-", area="-", signal="-", n_neurons=None,
                   n_stims=None, repeats="-", download_size="-", access="open", citation="-",
                   doi="-", url="-")


class ToySource(SourceDataset, AudioNeuralDataset):
    """Builds a small ragged dataset from raw/values.txt (one number: the seed)."""

    info = INFO
    folder = "Toy"
    raw_markers = ("values.txt",)
    builds = 0
    build_log: Path | None = None
    build_delay_s = 0.0

    def __init__(self, path, scale=1.0, *, cache="use", dt_ms=5.0):
        AudioNeuralDataset.__init__(self, path, dt_ms)
        self._load(path, {"scale": scale}, download=False, username=None, password=None,
                   n_jobs=1, cache=cache, progress=False, expect_full=False)

    def _build(self, raw_dir, params, n_jobs, progress):
        from deepstrf.testing.synthetic import make_ragged_dataset

        type(self).builds += 1
        if self.build_log is not None:
            with open(self.build_log, "a") as f:
                f.write(f"{os.getpid()}\n")
        time.sleep(self.build_delay_s)
        seed = int((raw_dir / "values.txt").read_text())
        ds = make_ragged_dataset(4, 3, n_bands=5, T_range=(3, 6), seed=seed)
        blocks = []
        store = ds.response_store
        for s in range(ds.get_S()):
            neurons, reps, rows = store.block(s)
            blocks.append((neurons, reps, rows * params["scale"]))
        from deepstrf.datasets._storage import ResponseStore

        return BuiltData(stims=ds.stims, store=ResponseStore.from_blocks(3, blocks),
                         stim_meta=ds.stim_meta, nrn_meta=ds.nrn_meta, attributes={"F": 5},
                         sources=[{"file": "values.txt"}])


@pytest.fixture
def toy_root(tmp_path):
    root = tmp_path / "toy"
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "values.txt").write_text("7")
    ToySource.builds = 0
    ToySource.build_log = None
    ToySource.build_delay_s = 0.0
    return root


def same_data(a, b):
    if a.get_S() != b.get_S() or a.get_N() != b.get_N():
        return False
    for s in range(a.get_S()):
        if not torch.equal(a.stims[s], b.stims[s]):
            return False
        for n in range(a.get_N()):
            x, y = a.responses[s][n], b.responses[s][n]
            if not torch.equal(torch.nan_to_num(x, 3.5), torch.nan_to_num(y, 3.5)):
                return False
    return a.stim_meta == b.stim_meta and a.nrn_meta == b.nrn_meta


def test_second_construction_reads_the_cache(toy_root):
    a = ToySource(toy_root)
    assert ToySource.builds == 1
    b = ToySource(toy_root)
    assert ToySource.builds == 1  # no build: served from the cache
    assert same_data(a, b) and b.F == 5
    entries = list_entries(toy_root / "processed")
    assert len(entries) == 1 and entries[0][1]["complete"]


def test_warm_load_is_memory_mapped(toy_root):
    ToySource(toy_root)
    b = ToySource(toy_root)
    rows = b.response_store.block(0)[2]
    block = b.response_store._blocks[0]
    assert block._rows is None and block.file is not None  # mapped from the file on access
    flat = np.load(block.file.source.path, mmap_mode="r")
    assert np.array_equal(flat[block.file.start:block.file.start + rows.numel()],
                          rows.numpy().reshape(-1))
    rows_before = rows.clone()
    b.responses[0][int(b.response_store.block(0)[0][0])] = torch.zeros_like(
        b.responses[0][int(b.response_store.block(0)[0][0])])
    c = ToySource(toy_root)  # edits never reach the file
    assert torch.equal(c.response_store.block(0)[2], rows_before)


def test_manifest_is_readable_and_complete(toy_root):
    ds = ToySource(toy_root, scale=2.0)
    manifest = ds.provenance["manifest"]
    assert manifest["parameters"] == {"scale": 2.0}
    assert manifest["dataset"] == "ToySource" and manifest["raw_fingerprint"]["n_files"] == 1
    assert {"deepstrf", "numpy", "torch", "python"} <= set(manifest["versions"])
    assert manifest["build_seconds"] >= 0 and manifest["created"].startswith("20")
    assert manifest["counts"] == {"stims": 4, "neurons": 3, "pairs": ds.response_store.n_pairs,
                                  "response_bytes": ds.response_store.nbytes}
    assert manifest["sources"] == [{"file": "values.txt"}]
    on_disk = json.loads((toy_root / "processed" / manifest["key"] / "manifest.json").read_text())
    assert on_disk["files"]["responses.npy"]["sha256"] == manifest["files"]["responses.npy"]["sha256"]


def test_changed_parameter_or_raw_file_makes_a_new_key(toy_root):
    a = ToySource(toy_root, scale=1.0)
    b = ToySource(toy_root, scale=3.0)
    assert ToySource.builds == 2 and a.provenance["manifest"]["key"] != b.provenance["manifest"]["key"]
    raw = toy_root / "raw" / "values.txt"
    raw.write_text("8")
    os.utime(raw, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns + 10**9))
    c = ToySource(toy_root, scale=1.0)
    assert ToySource.builds == 3 and not same_data(a, c)
    assert len(list_entries(toy_root / "processed")) == 3


def test_readonly_mode(toy_root):
    with pytest.raises(CacheMissError, match="cache='readonly' forbids computing it") as err:
        ToySource(toy_root, cache="readonly")
    assert isinstance(err.value, FileNotFoundError)
    assert ToySource.builds == 0 and list_entries(toy_root / "processed") == []
    ToySource(toy_root)
    ToySource(toy_root, cache="readonly")
    assert ToySource.builds == 1


def test_rebuild_and_off_modes(toy_root):
    a = ToySource(toy_root)
    key = a.provenance["manifest"]["key"]
    ToySource(toy_root, cache="rebuild")
    assert ToySource.builds == 2
    assert [p.name for p, _ in list_entries(toy_root / "processed")] == [key]
    d = ToySource(toy_root, cache="off")
    assert ToySource.builds == 3 and d.provenance["manifest"] is None
    with pytest.raises(ValueError, match="cache must be one of 'use', 'rebuild', 'readonly'"):
        ToySource(toy_root, cache="sometimes")


def test_failed_build_leaves_no_entry(toy_root, monkeypatch):
    def explode(path, tensors, n):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "_write_flat", explode)
    ds = ToySource(toy_root)  # still usable in memory
    assert ds.provenance["manifest"] is None
    assert list_entries(toy_root / "processed") == []
    assert not [p for p in (toy_root / "processed").iterdir() if p.name.startswith(".tmp")]


def _killed_midway(root: str) -> None:
    import deepstrf.io.cache as cm

    original = cm._write_flat
    calls = []

    def write_then_die(path, tensors, n):
        calls.append(path)
        digest = original(path, tensors, n)
        if len(calls) == 2:
            os._exit(3)  # killed between writing the data and renaming the entry
        return digest

    cm._write_flat = write_then_die
    ToySource(Path(root))


def test_build_killed_midway_leaves_nothing_that_loads(toy_root):
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_killed_midway, args=(str(toy_root),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    processed = toy_root / "processed"
    assert list_entries(processed) == []
    assert any(p.name.startswith(".tmp-") for p in processed.iterdir())  # debris, hidden
    ds = ToySource(toy_root)  # rebuilds cleanly
    assert ToySource.builds == 1 and len(list_entries(processed)) == 1 and ds.get_S() == 4


def _construct(root: str, log: str, delay: float) -> None:
    ToySource.build_log = Path(log)
    ToySource.build_delay_s = delay
    ToySource(Path(root))


def test_two_processes_building_at_once_produce_one_entry(toy_root, tmp_path):
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_construct, args=(str(toy_root), str(log), 1.5))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(log.read_text().split()) == 1  # one build; the other waited and read it
    assert len(list_entries(toy_root / "processed")) == 1


def test_raw_files_removed_after_caching(toy_root):
    a = ToySource(toy_root)
    (toy_root / "raw" / "values.txt").unlink()
    b = ToySource(toy_root)
    assert ToySource.builds == 1 and same_data(a, b)
    with pytest.raises(MissingRawDataError):
        ToySource(toy_root, scale=9.0)  # nothing cached for these parameters


def test_verify_detects_damage(toy_root):
    ds = ToySource(toy_root)
    entry = toy_root / "processed" / ds.provenance["manifest"]["key"]
    assert verify_entry(entry) == []
    data = entry / "responses.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert verify_entry(entry) == ["responses.npy does not match its recorded sha256"]
    (entry / "index.npz").write_bytes(b"short")
    assert any("index.npz has 5 bytes" in p for p in verify_entry(entry))
    # a damaged entry (sizes differ) is not trusted: the next load rebuilds it
    ToySource(toy_root)
    assert ToySource.builds == 2


def test_cache_key_is_stable_and_sensitive():
    base = {"dataset": "X", "params": {"a": 1, "b": (1, 2), "c": 0.1}}
    assert cache_key(base) == cache_key({"params": {"c": 0.1, "b": [1, 2], "a": 1},
                                         "dataset": "X"})
    assert cache_key(base) != cache_key({**base, "params": {"a": 1, "b": (1, 2), "c": 0.2}})
    assert len(cache_key(base)) == 20
    with pytest.raises(TypeError, match="cannot hash"):
        cache_key({"x": object()})


def test_cached_build_direct_and_corrupt_entry(tmp_path):
    from deepstrf.testing.synthetic import make_ragged_dataset

    ds = make_ragged_dataset(2, 2, n_bands=3, seed=1)

    def build():
        return BuiltData(stims=ds.stims, store=ds.response_store, stim_meta=ds.stim_meta,
                         nrn_meta=ds.nrn_meta, attributes={})

    data, manifest, hit = cached_build(tmp_path, "k1", "use", build, {"x": 1})
    assert not hit and manifest["x"] == 1
    data, manifest, hit = cached_build(tmp_path, "k1", "use", build, {"x": 1})
    assert hit and np.allclose(data.stims[0].numpy(), ds.stims[0].numpy())
    (tmp_path / "k1" / "meta.json").write_text("{")  # same size check fails -> rebuilt
    data, manifest, hit = cached_build(tmp_path, "k1", "use", build, {"x": 1})
    assert not hit
    with pytest.raises(CacheError, match="incomplete or corrupt"):
        cache_mod.load_entry(tmp_path / "nothing")


def test_moving_the_data_keeps_the_cache(toy_root, tmp_path):
    a = ToySource(toy_root)
    moved = tmp_path / "elsewhere"
    toy_root.rename(moved)
    b = ToySource(moved)
    assert ToySource.builds == 1 and b.provenance["cache_hit"] and same_data(a, b)
    (moved / "raw" / "values.txt").unlink()  # and still found once the raw files are gone
    c = ToySource(moved)
    assert ToySource.builds == 1 and same_data(a, c)


@pytest.mark.parametrize("damage", [
    {"files": "oops"}, {"files": None}, {"files": ["stims.npy"]}, {"counts": "3"},
    {"parameters": None}, "not json", [1, 2]])
def test_damaged_manifest_marks_the_entry_invalid(toy_root, damage, capsys):

    ToySource(toy_root)
    (entry, _), = list_entries(toy_root / "processed")
    path = entry / "manifest.json"
    if isinstance(damage, dict):
        record = json.loads(path.read_text())
        record.update(damage)
        path.write_text(json.dumps(record))
    else:
        path.write_text(damage if isinstance(damage, str) else json.dumps(damage))
    assert list_entries(toy_root / "processed") == [(entry, None)]
    assert verify_entry(entry)  # problems reported, no crash
    ToySource(toy_root)  # rebuilt on use instead of an AttributeError
    assert ToySource.builds == 2
    assert list_entries(toy_root / "processed")[0][1]["complete"] is True


# ------------------------------------------------------------- digests of the built arrays
def test_digest_ignores_the_file_layout_and_names_what_differs(toy_root, tmp_path):
    from deepstrf.io.cache import compare_entries, data_digest, entry_digest, load_entry

    ds = ToySource(toy_root)
    entry = toy_root / "processed" / ds.provenance["manifest"]["key"]
    recorded = ds.provenance["manifest"]["digest"]
    copy = tmp_path / "copy" / entry.name
    import shutil
    shutil.copytree(entry, copy)
    # same content in another layout: meta.json re-serialised with other key order and
    # spacing, index.npz re-zipped; the files' checksums change, the digest does not
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps(dict(reversed(list(meta.items()))), indent=3))
    index = dict(np.load(copy / "index.npz"))
    np.savez(copy / "index.npz", **dict(reversed(list(index.items()))))
    manifest = json.loads((copy / "manifest.json").read_text())
    for name in ("meta.json", "index.npz"):
        manifest["files"][name] = {"bytes": (copy / name).stat().st_size, "sha256": "x"}
    del manifest["digest"]  # as an entry written before digests: computed on the fly
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert data_digest(load_entry(copy)[0]) == recorded == entry_digest(copy)
    assert compare_entries(entry, copy).equal

    # one response value changed in a copy: only 'responses' differs, counted
    flat = np.load(copy / "responses.npy")
    flat[5] += 0.25
    np.save(copy / "responses.npy", flat)
    result = compare_entries(entry, copy)
    assert not result.equal and result.context == []
    assert result.differences == [
        "responses: 1 of 4 stimuli (first: stimulus 0); 1 of "
        f"{ds.response_store.nbytes // 4} values, max |a - b| = 0.25"]
    assert result.lines()[0] == "differ: responses"


def test_digest_treats_nan_payloads_alike_and_sees_metadata(toy_root):
    from deepstrf.io.cache import data_digest

    ds = ToySource(toy_root, cache="off")

    def built(stims, stim_meta):
        return BuiltData(stims=stims, store=ds.response_store, stim_meta=stim_meta,
                         nrn_meta=ds.nrn_meta, attributes={"F": 5})

    stims = [s.clone() for s in ds.stims]
    other_nan = [s.clone() for s in ds.stims]
    stims[0].view(-1)[0] = float("nan")
    other_nan[0].view(-1).view(torch.int32)[0] = 0x7FC00001  # a NaN with another payload
    assert torch.isnan(other_nan[0].view(-1)[0])
    base = data_digest(built(stims, ds.stim_meta))
    assert data_digest(built(other_nan, ds.stim_meta)) == base
    one_value = [s.clone() for s in stims]
    one_value[1].view(-1)[0] = -1.0
    changed = data_digest(built(one_value, ds.stim_meta))
    assert changed["stims"] != base["stims"] and changed["responses"] == base["responses"]
    meta = [dict(m) for m in ds.stim_meta]
    meta[2]["extra"] = 1
    moved = data_digest(built(stims, meta))
    assert moved["stim_meta"] != base["stim_meta"] and moved["stims"] == base["stims"]
    assert moved["all"] != base["all"]


def test_a_damaged_digest_field_marks_the_manifest_invalid():
    from deepstrf.io.cache import manifest_problems

    good = {"complete": True, "storage_format_version": cache_mod.STORAGE_FORMAT_VERSION,
            "files": {"a": {"bytes": 1, "sha256": "x"}}}
    assert manifest_problems(good) == []
    assert manifest_problems({**good, "digest": "oops"}) == [
        "'digest' is 'oops', expected an object with a hex string for each of stims, "
        "responses, stim_meta, nrn_meta, attributes, all"]


# ------------------------------------------------------------- leftovers of killed builds
def _hold_lock(lock_path: str, ready, release) -> None:
    with cache_mod._lock(Path(lock_path), None, "a test build"):
        ready.set()
        release.wait(120)


@pytest.fixture
def lock_holder():
    """Start a process holding a cache lock until the test ends (or releases it)."""
    ctx = multiprocessing.get_context("spawn")
    started = []

    def hold(lock_path: Path):
        ready, release = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_hold_lock, args=(str(lock_path), ready, release))
        proc.start()
        assert ready.wait(120), "the lock-holding process did not start"
        started.append((proc, release))
        return release

    yield hold
    for proc, release in started:
        release.set()
        proc.join(60)
        assert proc.exitcode == 0


def test_leftovers_are_removed_unless_a_build_holds_their_lock(toy_root, lock_holder):
    import shutil

    from deepstrf.io.cache import list_leftovers, remove_leftovers

    processed = toy_root / "processed"
    k1 = ToySource(toy_root).provenance["manifest"]["key"]
    k2 = ToySource(toy_root, scale=2.0).provenance["manifest"]["key"]
    orphan = "0123456789abcdef0123"  # a key whose build never got to create the lock
    made = {name: processed / name for name in (
        f".tmp-{k1}-4242-aaaa0000", f".old-{k1}-bbbb1111", f".tmp-{k2}-4243-cccc2222",
        f".tmp-{orphan}-4244-dddd3333")}
    for path in made.values():
        shutil.copytree(processed / k1, path)
    assert list_leftovers(processed) == sorted(
        (p, name.split("-")[1]) for name, p in made.items())
    assert len(list_entries(processed)) == 2  # leftovers are not entries

    release = lock_holder(processed / f".{k1}.lock")  # a build of k1 is under way
    assert remove_leftovers(processed, key_prefix="ffff") == ([], [])
    removed, kept = remove_leftovers(processed)
    assert sorted(removed) == sorted([made[f".tmp-{k2}-4243-cccc2222"],
                                      made[f".tmp-{orphan}-4244-dddd3333"]])
    assert kept == sorted([made[f".old-{k1}-bbbb1111"], made[f".tmp-{k1}-4242-aaaa0000"]])
    assert all(p.is_dir() for p in kept) and not any(p.exists() for p in removed)
    assert not (processed / f".{orphan}.lock").exists()  # no lock file left behind
    assert (processed / f".{k2}.lock").exists()           # the build's own is kept
    assert [m["complete"] for _, m in list_entries(processed)] == [True, True]

    release.set()  # the build ended: its leftovers can go
    for _ in range(600):
        removed, kept = remove_leftovers(processed)
        if not kept:
            break
        time.sleep(0.1)
    assert sorted(removed) == sorted([made[f".old-{k1}-bbbb1111"],
                                      made[f".tmp-{k1}-4242-aaaa0000"]])
    assert list_leftovers(processed) == [] and len(list_entries(processed)) == 2
