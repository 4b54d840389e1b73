"""Bad input found by probing as a new user: each answered by a clear error or a quirk report."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from deepstrf.datasets._query import MAX_QUERY_DEPTH, Query
from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.cache import list_entries
from deepstrf.io.readers import read_spike_times_flat
from deepstrf.testing.fixtures import write_crcns_aa1

DT = 5.0


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture
def tree(tmp_path):
    return write_crcns_aa1(tmp_path / "aa1", n_cells=4, n_conspecific=2, n_flatrip=1, seed=3)


def no_entry(root) -> bool:
    processed = CRCNSAA1Dataset.default_paths(root).processed
    return not processed.exists() or list_entries(processed) == []


# ------------------------------------------------------------- item 3: not a zip
@pytest.mark.parametrize("content", [
    b"<!DOCTYPE html><html><body><form>username password</form></body></html>",
    b"PK\x03\x04" + b"\x00" * 40,   # a truncated zip: the local header and nothing else
])
def test_a_file_that_is_not_a_zip_names_itself_and_the_remedy(tmp_path, content):
    raw = tmp_path / "AA1" / "raw"
    raw.mkdir(parents=True)
    (raw / "crcns-aa1.zip").write_bytes(content)
    with pytest.raises(RawDataError) as err:
        CRCNSAA1Dataset(tmp_path / "AA1", dt_ms=DT)
    text = str(err.value)
    assert str(raw / "crcns-aa1.zip") in text
    assert "Delete it and download it again" in text
    assert ("HTML" in text) == content.startswith(b"<!DOCTYPE")
    assert no_entry(tmp_path / "AA1")


# ------------------------------------------------------------- item 4: empty spikeN
def test_a_zero_byte_spike_file_is_reported_and_its_pair_is_missing(tree):
    cell = tree.cells[0]
    entry = tree.responses_of(cell.cell_id)[0]
    entry.spike_file.write_bytes(b"")
    with pytest.warns(DataQuirkWarning, match=r"1 spikeN file\(s\) are empty") as record:
        ds = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False)
    assert any(str(entry.spike_file) in str(w.message) for w in record)
    # the build's record counts it
    assert ds.provenance["manifest"]["quirks"]["empty_spike_files"] == 1
    n = [m["cell_id"] for m in ds.nrn_meta].index(cell.cell_id)
    s = [m["name"] for m in ds.stim_meta].index(entry.stim_file.read_text().split()[0])
    assert ds.responses[s][n].shape == (1, 1) and torch.isnan(ds.responses[s][n]).all()
    assert not ds.nrn_masks[s, n]
    # an empty trial (a blank line) is a real repeat with no spike, not a missing pair
    entry.spike_file.write_bytes(b"\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)
        ds = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False, cache="off")
    assert ds.responses[s][n].shape[0] == 1 and ds.responses[s][n].sum() == 0


# ------------------------------------------------------------- item 5: cell twice
@pytest.mark.parametrize("areas", [("Field_L", "MLd"), ("MLd",), ("Field_L",)])
def test_a_cell_folder_under_two_areas_is_loaded_once(tree, areas):
    cell = tree.cells[0]
    other = "MLd" if cell.area == "Field_L" else "Field_L"
    copy = tree.root / f"{other}_cells" / cell.cell_id
    shutil.copytree(tree.root / f"{cell.area}_cells" / cell.cell_id, copy)
    kept = min((cell.area, other), key=("Field_L", "MLd").index)
    with pytest.warns(DataQuirkWarning, match=f"{cell.cell_id} .kept {kept}_cells"):
        ds = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False, cache="off", areas=areas)
    ids = [m["cell_id"] for m in ds.nrn_meta]
    assert ids.count(cell.cell_id) == (1 if kept in areas else 0)
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------- item 6: overflow
def test_an_overflowing_spike_time_names_the_file_and_line(tree, tmp_path):
    entry = tree.responses_of(tree.cells[1].cell_id)[0]
    lines = entry.spike_file.read_text().split("\n")
    lines[2] = lines[2] + " 1e400"
    entry.spike_file.write_text("\n".join(lines))
    with pytest.raises(RawDataError, match=r"line 3: spike time '1e400' is not a finite") as err:
        CRCNSAA1Dataset(tree.root, dt_ms=DT)
    assert str(entry.spike_file) in str(err.value)
    assert no_entry(tree.root)
    one = tmp_path / "spike1"
    one.write_text("1.5 2.5\n\n3.0 -1e999 4\n")
    with pytest.raises(RawDataError, match=r"spike1: line 3: spike time '-1e999'"):
        read_spike_times_flat(one)


# ------------------------------------------------------------- item 7: arguments
@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_jobs": 0}, ValueError, "n_jobs must be a non-zero integer"),
    ({"n_jobs": "2"}, ValueError, "n_jobs must be a non-zero integer"),
    ({"n_jobs": 1.5}, ValueError, "n_jobs must be a non-zero integer"),
    ({"n_jobs": True}, ValueError, "n_jobs must be a non-zero integer"),
    ({"username": 42}, TypeError, "username must be a string or None; got a int"),
    ({"password": b"pw"}, TypeError, "password must be a string or None; got a bytes"),
])
def test_n_jobs_and_credentials_are_checked_before_any_io_even_on_a_cache_hit(
        tree, tmp_path, kwargs, error, match):
    CRCNSAA1Dataset(tree.root, dt_ms=DT)          # a warm entry now exists
    with pytest.raises(error, match=match) as err:
        CRCNSAA1Dataset(tree.root, dt_ms=DT, **kwargs)
    assert "pw" not in str(err.value)              # a password is never echoed
    with pytest.raises(error, match=match):
        CRCNSAA1Dataset(tmp_path / "untouched", dt_ms=DT, **kwargs)
    assert not (tmp_path / "untouched").exists()


# ------------------------------------------------------------- item 9: deep queries
@pytest.mark.parametrize("text", ["not " * 1500 + "x", "(" * 3000 + "x" + ")" * 3000,
                                  " and ".join(["(a == 1"] * 200) + ")" * 200,
                                  "-" * 5000 + "1 < x"])
def test_a_deeply_nested_query_is_refused_with_a_caret(text):
    with pytest.raises(ValueError, match="invalid query") as err:
        Query(text)
    message = str(err.value)
    assert "^" in message and not isinstance(err.value, RecursionError)


def test_queries_just_under_the_depth_limit_still_work():
    depth = MAX_QUERY_DEPTH - 2
    q = Query("not " * depth + "x")
    assert q({"x": True}) is (depth % 2 == 0)
    assert q({"x": False}) is (depth % 2 == 1)
    assert Query("x > " + "-" * 50 + "1")({"x": 0}) is (0 > (-1) ** 50 * 1)


def test_flat_spike_reader_still_reads_ordinary_values(tmp_path):
    path = tmp_path / "spike1"
    path.write_text("0.5 1e3\n\n-20\n")
    times, counts = read_spike_times_flat(path)
    np.testing.assert_array_equal(times, [0.5, 1000.0, -20.0])
    assert counts.tolist() == [2, 0, 1]


# ------------------------------------------------------------- section 1: build digests
def test_n_jobs_1_and_2_builds_have_equal_digests_and_another_parameter_differs(
        tree, tmp_path, monkeypatch, capsys):
    from deepstrf.cli import main
    from deepstrf.io.cache import compare_entries, data_digest, load_entry

    def entry_of(ds):  # the raw tree is read in place: entries go to the data home
        return ds.default_paths(tree.root).processed / ds.provenance["manifest"]["key"]

    # separate data homes, so the second build is really built, not read
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home-1"))
    one = CRCNSAA1Dataset(tree.root, dt_ms=DT, n_jobs=1)
    a = entry_of(one)
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home-2"))
    two = CRCNSAA1Dataset(tree.root, dt_ms=DT, n_jobs=2)
    other = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False)
    assert not one.provenance["cache_hit"] and not two.provenance["cache_hit"]
    b, c = entry_of(two), entry_of(other)
    assert a.parent != b.parent and a.name == b.name
    da, db, dc = (ds.provenance["manifest"]["digest"] for ds in (one, two, other))
    assert da == db and da["version"] == 1 and len(da["all"]) == 64
    # the digest is of the arrays: recomputed from the files it is the recorded one
    assert data_digest(load_entry(a)[0]) == da
    assert dc["all"] != da["all"] and dc["responses"] != da["responses"]
    assert {k: dc[k] for k in ("stims", "stim_meta", "nrn_meta")} == \
        {k: da[k] for k in ("stims", "stim_meta", "nrn_meta")}

    same = compare_entries(a, b)
    assert same.equal and same.differences == [] and same.context == []
    assert same.lines() == ["equal: the arrays and metadata are identical"]
    diff = compare_entries(a, c)
    assert not diff.equal and len(diff.differences) == 1
    assert diff.differences[0].startswith(f"responses: {one.get_S()} of {one.get_S()} stimuli")
    # the smoothed build also carries the smoothing's version (SMOOTHING_ARITHMETIC)
    assert diff.context == ["parameters differ: front_end.smooth_ms=21.0 vs None, "
                            "front_end.smoothing=2 vs '(absent)'"]

    # one command: exit 0 when equal, 1 when not, naming the part and the parameter
    capsys.readouterr()
    assert main(["cache", "diff", str(a), str(b / "manifest.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:] == ["equal: the arrays and metadata are identical"]
    assert main(["cache", "diff", str(a), c.name[:8]]) == 1  # a key, found under the data home
    out = capsys.readouterr().out
    assert "differ: responses" in out and "front_end.smooth_ms=21.0 vs None" in out


# ------------------------------------------------------------- item 10: tensor indices
def test_integer_tensors_and_numpy_integers_index_like_ints():
    from deepstrf.testing.synthetic import make_ragged_dataset

    ds = make_ragged_dataset(5, 3, n_bands=4, T_range=(3, 6), seed=2)

    def same(a, b):
        return (torch.equal(a["stims"], b["stims"]) and a["stim_meta"] == b["stim_meta"]
                and torch.equal(a["valid_mask"], b["valid_mask"])
                and torch.equal(a["responses"].nan_to_num(-7), b["responses"].nan_to_num(-7)))

    for i in (0, 3, -1):
        for idx in (torch.tensor(i), torch.tensor(i, dtype=torch.int32),
                    torch.tensor(i, dtype=torch.uint8) if i >= 0 else torch.tensor(i),
                    np.int64(i), np.int32(i), np.array(i), np.array(i, dtype=np.uint16)
                    if i >= 0 else np.array(i)):
            assert same(ds[idx], ds[i]), (idx, i)
    with pytest.raises(IndexError, match="dataset index 5 is out of range"):
        ds[torch.tensor(5)]
    # 1-D integer tensors and arrays stay sequences of indices, as lists are
    batch = ds[torch.tensor([4, 0])]
    assert batch["stim_meta"] == [ds[4]["stim_meta"], ds[0]["stim_meta"]]
    assert ds[np.array([1, 2])]["stim_meta"] == ds[[1, 2]]["stim_meta"]
    assert ds[[torch.tensor(2), np.int64(1)]]["stim_meta"] == ds[[2, 1]]["stim_meta"]


@pytest.mark.parametrize("idx, got", [
    (torch.tensor(0.0), "a torch.float32 tensor of shape ()"),
    (torch.tensor(True), "a torch.bool tensor of shape ()"),
    (torch.tensor([[0, 1]]), "a torch.int64 tensor of shape (1, 2)"),
    (np.array(1.0), "a float64 array of shape ()"),
    (np.array([True, False]), "a bool array of shape (2,)"),
])
def test_float_bool_and_2d_tensor_indices_are_refused_clearly(idx, got):
    from deepstrf.testing.synthetic import make_ragged_dataset

    ds = make_ragged_dataset(3, 2, n_bands=4, seed=2)
    with pytest.raises(TypeError) as err:
        ds[idx]
    message = str(err.value)
    assert message.startswith("dataset index must be an int, a slice, a sequence of ints, or "
                              "an integer ")
    assert got in message and (("nonzero" in message) == ("bool" in got))
    with pytest.raises(TypeError, match="a sequence of indices must hold ints"):
        ds[[0, torch.tensor([1, 2])]]


# ------------------------------------------------------------- item 11: in-place edits
def _edit_keeping_size_and_mtime(path) -> None:
    """Move one spike time inside the stimulus, with the same number of characters, and put
    the file's modification time back, as an editor that preserves times would."""
    before = path.stat()
    lines = path.read_text().split("\n")
    for k, line in enumerate(lines):
        tokens = line.split(" ")
        for j, token in enumerate(tokens):
            if token[:1].isdigit() and 20.0 <= float(token) < 80.0:  # "dd.ddd", in the stimulus
                tokens[j] = str(int(token[0]) + 2) + token[1:]          # 20 ms later
                lines[k] = " ".join(tokens)
                path.write_text("\n".join(lines))
                os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
                after = path.stat()
                assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
                return
    raise AssertionError(f"no spike time between 20 and 80 ms in {path}")


def test_a_raw_file_edited_in_place_with_size_and_mtime_kept_is_rebuilt(tree):
    first = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False)
    fp = first.provenance["manifest"]["raw_fingerprint"]
    # every file of the fixture is small: all are fingerprinted by content
    assert fp["content_files"] == fp["n_files"] > 0 and fp["content_bytes"] == fp["total_bytes"]
    entry = tree.responses_of(tree.cells[1].cell_id)[0]
    _edit_keeping_size_and_mtime(entry.spike_file)

    second = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False)
    assert not second.provenance["cache_hit"]
    assert second.provenance["manifest"]["key"] != first.provenance["manifest"]["key"]
    fresh = CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False, cache="off")  # the new numbers
    d1, d2, d3 = (ds.provenance["manifest"]["digest"] if ds.provenance["manifest"] else None
                  for ds in (first, second, fresh))
    from deepstrf.io.cache import BuiltData, data_digest

    def digest_of(ds):
        return data_digest(BuiltData(ds.stims, ds.response_store, ds.stim_meta, ds.nrn_meta,
                                     {"F": ds.F}))["responses"]

    assert d3 is None and digest_of(second) == digest_of(fresh) != digest_of(first)
    assert d2["responses"] != d1["responses"] and d2["stims"] == d1["stims"]
    n = [m["cell_id"] for m in second.nrn_meta].index(tree.cells[1].cell_id)
    s = [m["name"] for m in second.stim_meta].index(entry.stim_file.read_text().split()[0])
    a, b = first.responses[s][n], second.responses[s][n]
    assert a.shape == b.shape and a.sum() == b.sum() and not torch.equal(a, b)  # one spike moved
    assert torch.equal(b, fresh.responses[s][n])
    # a third construction reads the new entry
    assert CRCNSAA1Dataset(tree.root, dt_ms=DT, smooth=False).provenance["cache_hit"]


def test_touching_a_small_raw_file_keeps_its_entry(tree):
    """By content, a new modification time alone (a copy, a re-extraction) changes nothing."""
    key = CRCNSAA1Dataset(tree.root, dt_ms=DT).provenance["manifest"]["key"]
    spike = tree.responses_of(tree.cells[0].cell_id)[0].spike_file
    st = spike.stat()
    os.utime(spike, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    again = CRCNSAA1Dataset(tree.root, dt_ms=DT)
    assert again.provenance["cache_hit"] and again.provenance["manifest"]["key"] == key


def test_files_beyond_the_content_budget_count_by_size_and_time(tmp_path):
    from deepstrf.io.cache import RAW_CONTENT_LIMIT_BYTES, raw_fingerprint

    assert RAW_CONTENT_LIMIT_BYTES == 64 * 2**20
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    small, medium, big = raw / "sub" / "small.txt", raw / "medium.txt", raw / "big.bin"
    small.write_bytes(b"1" * 10)
    medium.write_bytes(b"2" * 30)
    big.write_bytes(b"3" * 50)
    (raw / ".hidden").write_bytes(b"marker")
    (raw / "x.part").write_bytes(b"partial")

    def fp(limit):
        return raw_fingerprint(raw, content_limit_bytes=limit)

    # smallest first, while they fit: 10 + 30 <= 45 < 10 + 30 + 50
    got = fp(45)
    assert {k: got[k] for k in ("n_files", "total_bytes", "content_files", "content_bytes")} \
        == {"n_files": 3, "total_bytes": 90, "content_files": 2, "content_bytes": 40}
    assert fp(90)["content_files"] == 3 and fp(9)["content_files"] == 0

    def edit_in_place(path, byte):
        st = path.stat()
        path.write_bytes(byte * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def touch(path):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    before = {limit: fp(limit)["listing_sha256"] for limit in (45, 90)}
    edit_in_place(big, b"4")  # beyond a 45-byte budget: not seen there, seen with 90
    assert fp(45)["listing_sha256"] == before[45]
    assert fp(90)["listing_sha256"] != before[90]
    touch(big)                # its time is what counts beyond the budget
    assert fp(45)["listing_sha256"] != before[45]
    mid = fp(45)["listing_sha256"]
    touch(small)              # within the budget the time does not count, the content does
    assert fp(45)["listing_sha256"] == mid
    edit_in_place(small, b"5")
    assert fp(45)["listing_sha256"] != mid
    # the same tree in another place, with other times, has the same content fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(raw, copy, copy_function=shutil.copyfile)
    assert raw_fingerprint(copy, content_limit_bytes=90) == fp(90)
    assert raw_fingerprint(raw, ["sub", "medium.txt", "absent"], content_limit_bytes=90)[
        "n_files"] == 2


# ------------------------------------------------------------- item 1 (2.1): the CLI on damage
@pytest.mark.parametrize("damage", ["manifest types", "manifest truncated", "data truncated"])
def test_a_damaged_entry_of_a_registered_dataset_through_the_command_line(
        tmp_path, capsys, monkeypatch, damage):
    """Entries found the way the command finds them: the registry's classes under the data home."""
    import json

    from deepstrf.cli import main
    from deepstrf.datasets.registry import get_dataset

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    cls = get_dataset("aa1")
    home = tmp_path / "home"
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(home))
    write_crcns_aa1(home / "AA1" / "raw", n_cells=2, n_conspecific=1, n_flatrip=1, seed=4)
    first = cls(dt_ms=DT).provenance["manifest"]  # no dataset kept: its arrays map the files
    bad = first["key"]
    good = cls(dt_ms=10.0).provenance["manifest"]["key"]
    entry = home / "AA1" / "processed" / bad
    assert cls.default_paths().processed == entry.parent
    if damage == "manifest types":
        record = json.loads((entry / "manifest.json").read_text())
        record.update({"files": "oops", "counts": "3", "parameters": None})
        (entry / "manifest.json").write_text(json.dumps(record))
    elif damage == "manifest truncated":
        text = (entry / "manifest.json").read_text()
        (entry / "manifest.json").write_text(text[: len(text) // 2])
    else:
        blob = (entry / "responses.npy").read_bytes()
        (entry / "responses.npy").write_bytes(blob[:-64])
    capsys.readouterr()

    code, out, err = run("cache", "ls")
    assert code == 0 and err == "" and "Traceback" not in out
    lines = out.splitlines()
    assert lines[0] == f"{cls.__name__}  ({entry.parent})"
    [bad_line] = [line for line in lines if bad in line]
    assert "DAMAGED or incomplete: rebuilt on use" in bad_line
    [good_line] = [line for line in lines if good in line]
    assert "N=2 S=2" in good_line and "dt_ms=10.0" in good_line

    code, out, err = run("cache", "verify")
    lines = out.splitlines()
    assert code == 1 and f"{cls.__name__} {good}: OK" in lines  # the others are still checked
    [bad_line] = [line for line in lines if bad in line]
    assert bad_line.startswith(f"{cls.__name__} {bad}: DAMAGED: ")
    assert {"manifest types": "'files' is 'oops'", "manifest truncated": "manifest.json "
            "unreadable", "data truncated": "responses.npy has "}[damage] in bad_line
    assert err.startswith("deepstrf: error: 1 damaged cache entry; remove with `deepstrf cache "
                          "clear NAME --key KEY`") and "Traceback" not in err

    code, out, err = run("info", "aa1")
    assert code == 0 and err == ""
    assert f"  processed {entry.parent}  (2 cache entries)" in out.splitlines()
    assert any(bad in line and "DAMAGED" in line for line in out.splitlines())

    code, out, err = run("cache", "clear", "aa1", "--key", bad[:6], "--yes")
    assert code == 0 and out.splitlines() == [f"removed {cls.__name__} {bad}"]
    assert not entry.exists() and (entry.parent / good).is_dir()
    code, out, _ = run("cache", "verify")
    assert code == 0 and out.splitlines() == [f"{cls.__name__} {good}: OK"]
    # the next construction builds the entry again, with the same numbers
    again = cls(dt_ms=DT)
    assert not again.provenance["cache_hit"] and again.provenance["manifest"]["key"] == bad
    assert again.provenance["manifest"]["digest"] == first["digest"]


def test_a_subset_with_tensor_indices_batches_through_the_dataloader():
    """``Subset(ds, torch.tensor(...))`` hands 0-d tensors to the batched-fetch hook."""
    from torch.utils.data import DataLoader, Subset

    from deepstrf.testing.synthetic import make_ragged_dataset
    from deepstrf.utils.data import neural_collate

    ds = make_ragged_dataset(6, 3, n_bands=4, T_range=(3, 6), seed=5)
    order = torch.tensor([4, 1, 5])
    loader = DataLoader(Subset(ds, order), batch_size=3, collate_fn=neural_collate)
    [batch] = list(loader)
    expected = neural_collate([ds[i] for i in order.tolist()])
    assert batch["stim_meta"] == expected["stim_meta"] == [ds[i]["stim_meta"] for i in (4, 1, 5)]
    assert torch.equal(batch["stims"], expected["stims"])
    assert torch.equal(batch["valid_mask"], expected["valid_mask"])
    assert torch.equal(batch["responses"].nan_to_num(-7), expected["responses"].nan_to_num(-7))
