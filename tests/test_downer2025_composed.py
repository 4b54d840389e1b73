"""Downer 2025 composed at load time: the full release writes its shards and a record of the
composition, never a composed copy of the responses, and loads exactly what the copy held."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from deepstrf.datasets._storage import _JoinedRows
from deepstrf.datasets.audio.downer2025 import Downer2025Dataset
from deepstrf.errors import DataQuirkWarning
from deepstrf.io.cache import COMPOSITION_FILE, BuiltData, data_digest, list_entries, load_entry
from deepstrf.io.shards import compose_shards
from deepstrf.testing.fixtures.downer2025 import write_downer2025


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def zipped(tmp_path_factory):
    root = tmp_path_factory.mktemp("downer_composed")
    info = write_downer2025(root / "raw", make_zip=True, seed=5)
    return info.zip_path


def _path(zipped, tmp_path) -> Path:
    target = tmp_path / "d" / "raw" / zipped.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(zipped)
    return tmp_path / "d"


def _quiet(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        return Downer2025Dataset(**kwargs)


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _digest(ds) -> dict:
    """A dataset's data digest but for the attributes (a dataset holds them as attributes)."""
    digest = data_digest(BuiltData(stims=list(ds.stims), store=ds._store,
                                   stim_meta=ds.stim_meta, nrn_meta=ds.nrn_meta, attributes={}))
    return {k: digest[k] for k in ("stims", "responses", "stim_meta", "nrn_meta")}


@pytest.mark.parametrize("subset", ["all", "test"])
def test_the_full_release_writes_no_composed_copy_and_loads_the_copy_s_values(zipped, tmp_path,
                                                                              subset):
    path = _path(zipped, tmp_path)
    built = _quiet(path=path, smooth=False, subset=subset)
    processed = path / "processed"
    entries = list_entries(processed)
    shards = [(p, m) for p, m in entries if m["kind"] == "shard"]
    composed = [(p, m) for p, m in entries if m.get("kind") == "composed"]
    assert len(shards) == 4 and len(composed) == 1  # stimuli + 3 sessions; one record
    entry, manifest = composed[0]
    assert sorted(f.name for f in entry.iterdir()) == [COMPOSITION_FILE, "manifest.json"]
    shard_bytes = sum(_bytes(p) for p, _ in shards)
    # what is on disk is the shards (and lock files, a record of a few kB), no second copy
    assert shard_bytes <= _bytes(processed) < shard_bytes + 32 * 1024
    assert _bytes(processed) < 1.5 * shard_bytes
    assert [s["key"] for s in manifest["shards"]] == list(manifest["shard_digests"])
    # the blocks read the shards' files: nothing was copied into memory
    assert all(b._rows is None and isinstance(b.file, _JoinedRows) for b in built._store._blocks)

    # exactly the values of the copied composition, and of a build that caches nothing
    by_key = {p.name: load_entry(p)[0] for p, _ in shards}
    loaded = load_entry(entry)[0]
    record = loaded.composition
    keep = None if subset == "all" else (lambda m: m["split"] == subset)
    parts = [by_key[key] for key in record["parts"]]
    copy = compose_shards(by_key[record["stimuli"]], parts, keep=keep)
    assert data_digest(loaded) == data_digest(copy)
    expected = {k: v for k, v in data_digest(copy).items()
                if k in ("stims", "responses", "stim_meta", "nrn_meta")}
    assert _digest(built) == expected
    off = _quiet(path=path, smooth=False, subset=subset, cache="off")
    assert _digest(off) == expected
    assert off.nrn_meta == built.nrn_meta

    warm = _quiet(path=path, smooth=False, subset=subset)
    assert warm.provenance["cache_hit"] is True
    assert warm.provenance["manifest"]["key"] == manifest["key"]
    assert _digest(warm) == expected
    for s in range(warm.get_S()):
        for n in range(warm.N_neurons):
            np.testing.assert_array_equal(warm.responses[s][n].numpy(),
                                          off.responses[s][n].numpy())


def test_a_damaged_session_shard_is_rebuilt_alone(zipped, tmp_path):
    path = _path(zipped, tmp_path)
    first = _quiet(path=path, smooth=False)
    expected = _digest(first)
    key = first.provenance["manifest"]["shards"][2]["key"]
    name = first.provenance["manifest"]["shards"][2]["name"]
    responses = path / "processed" / key / "responses.npy"
    responses.write_bytes(responses.read_bytes()[:-8])
    again = _quiet(path=path, smooth=False)
    assert again.provenance["cache_hit"] is False
    assert again.shard_report.built == [name]
    assert len(again.shard_report.reused) == 2
    assert _digest(again) == expected


def test_cache_ls_shows_what_a_load_is_composed_of(zipped, tmp_path, capsys):
    from deepstrf.cli import main

    path = _path(zipped, tmp_path)
    _quiet(path=path, sessions=["180413"], smooth=False)
    assert main(["cache", "ls", "downer2025", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "composed at load time of 2 shards" in out
    assert "session 180413 timit" in out
