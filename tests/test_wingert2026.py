"""Wingert2026Dataset on a miniature Zenodo release; values recomputed from what was written."""

from __future__ import annotations

import io
import shutil
import tarfile
import warnings
import zipfile

import numpy as np
import pytest

from deepstrf.datasets.audio.wingert2026 import Wingert2026Dataset
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.io.cache import list_entries
from deepstrf.io.nems import NemsFormatError
from deepstrf.testing.fixtures.nems import replace_member
from deepstrf.testing.fixtures.wingert2026 import SITES, WingertQuirks, write_wingert2026

CLEAN = WingertQuirks(*(False,) * 5)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_wingert2026(tmp_path_factory.mktemp("wingert") / "raw")


def _load(root, **kw):
    kw.setdefault("scaling", "none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        return Wingert2026Dataset(root, cache="off", **kw)


def _labelled(tree):
    return [r["cellid"] for r in tree.rows if r["area"] and r["cellid"] != "CLT030a-001-1"]


def _session(cell):
    return cell.split("-")[0]


def _stims(ds):
    return {(m["session"], m["name"]): s for s, m in enumerate(ds.stim_meta)}


def _no_entry(home):
    processed = home / "Wingert2026" / "processed"
    assert not processed.exists() or (list_entries(processed) == [] and not any(
        p.name.startswith(".tmp") for p in processed.iterdir()))


@pytest.mark.parametrize("k", [1, 2, 3])  # 3: the last partial 30 ms bin is dropped
def test_every_count_equals_the_counts_the_spikes_were_drawn_from(tree, k):
    ds = _load(tree.root, dt_ms=10.0 * k)
    cells = [m["cell_id"] for m in ds.nrn_meta]
    assert cells == _labelled(tree)  # cell-list order; no unlabelled, unrecorded or unlisted
    stims = _stims(ds)
    expected = [(s, n) for s in tree.sessions if s != "PRN020b" for n in tree.stims[s]]
    assert sorted(stims) == sorted(expected)
    checked = 0
    for (session, name), s in stims.items():
        for n, cell in enumerate(cells):
            got = ds.responses[s][n].numpy()
            if _session(cell) != session:
                assert got.shape == (1, 1) and np.isnan(got).all()  # another session's cell
                continue
            counts = tree.counts[(session, name, cell)]
            R, T = counts.shape
            assert got.shape == (R, T // k) and R == (1 if "STIM_00" not in name else 3)
            np.testing.assert_array_equal(got, counts[:, :T // k * k].reshape(R, T // k, k)
                                          .sum(axis=2))
            checked += 1
    assert checked == int(ds.nrn_masks.sum()) == sum(
        len(tree.stims[_session(c)]) for c in cells)


def test_edge_spikes_land_in_the_bin_they_start(tree):
    # ~30 % of the spikes were written at start + k / 100 s, where t * 100 in float is often a
    # hair below k; counted on whole microseconds they are in bin k, and so must the loader
    ds = _load(tree.root)
    stims, cells = _stims(ds), _labelled(tree)
    below = 0
    for (session, name, cell), written in tree.spikes_s.items():
        if (session, name) not in stims or cell not in cells:
            continue
        rows = ds.responses[stims[(session, name)]][cells.index(cell)].numpy()
        for r, (t_s, t_ms) in enumerate(zip(written, tree.spikes_ms[(session, name, cell)])):
            x = t_s * 100.0
            below += int(((np.rint(x) - x > 0) & (np.rint(x) - x < 1e-9)).sum())
            us = np.round(t_ms * 1000.0).astype(np.int64)
            np.testing.assert_array_equal(rows[r], np.bincount(us // 10_000,
                                                               minlength=rows.shape[1]))
    assert below > 20  # the float trap is exercised


def test_smoothing_is_off_by_default_and_on_when_asked(tree):
    from deepstrf.preprocessing.spikes import hanning_kernel, smooth_rows

    raw, smooth = _load(tree.root), _load(tree.root, smooth=True)
    kernel = hanning_kernel(21.0, 10.0)
    assert len(kernel) == 3 and raw.provenance["manifest"] is None
    for s in range(raw.get_S()):
        for n in range(raw.get_N()):
            if raw.nrn_masks[s, n]:
                np.testing.assert_allclose(smooth.responses[s][n].numpy(),
                                           smooth_rows(raw.responses[s][n].numpy(), kernel),
                                           rtol=1e-6, atol=1e-7)
                assert not np.array_equal(smooth.responses[s][n].numpy(),
                                          raw.responses[s][n].numpy()) or \
                    not raw.responses[s][n].numpy().any()


def test_stimuli_are_the_log_compressed_tiles_per_session(tree):
    ds, coarse = _load(tree.root), _load(tree.root, dt_ms=20.0)
    linear = _load(tree.root, log_compress=False, subset="val")
    steep = _load(tree.root, log_offset=-2.0, subset="val")
    assert ds.F == 32
    for (session, name), s in _stims(ds).items():
        tile = tree.tiles[(session, name)]
        expected = np.log(10.0 * tile + 1.0)  # log((x + d) / d), d = 10**-1
        np.testing.assert_allclose(ds.stims[s][0].numpy(), expected, rtol=1e-5, atol=1e-6)
        T = tile.shape[1]
        np.testing.assert_allclose(coarse.stims[_stims(coarse)[(session, name)]][0].numpy(),
                                   expected.reshape(32, T // 2, 2).mean(axis=2), rtol=1e-5,
                                   atol=1e-6)
        assert ds.stim_meta[s]["n_bins"] == T == 100 * (1 + 2 * tree.pre_s[session])
        if name.startswith("STIM_00"):
            np.testing.assert_allclose(linear.stims[_stims(linear)[(session, name)]][0].numpy(),
                                       tile, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(steep.stims[_stims(steep)[(session, name)]][0].numpy(),
                                       np.log(100.0 * tile + 1.0), rtol=1e-5, atol=1e-6)


def test_one_entry_per_session_and_sound_never_merged(tree):
    ds = _load(tree.root)
    test_sound = "STIM_00seq9001.wav"
    entries = [m for m in ds.stim_meta if m["name"] == test_sound]
    assert [m["session"] for m in entries] == ["CLT027c", "PRN015a", "PRN018a", "SLJ032a"]
    for m in ds.stim_meta:
        assert m["subset"] == ("val" if m["name"].startswith("STIM_00") else "est")
        assert m["wav"] == m["name"][len("STIM_"):]
        assert m["n_repeats"] == (3 if m["subset"] == "val" else 1)
    order = [m["session"] for m in ds.stim_meta]
    assert order == sorted(order, key=["CLT027c", "PRN015a", "PRN018a", "SLJ032a"].index)


def test_metadata_holds_every_cell_list_column_typed(tree):
    ds = _load(tree.root, include_unlabeled=True)
    rows = {r["cellid"]: r for r in tree.rows}
    assert len(ds.nrn_meta) == 12
    for meta in ds.nrn_meta:
        row = rows[meta["cell_id"]]
        assert meta["site"] == row["siteid"] and meta["area"] == (row["area"] or None)
        assert meta["layer"] == row["layer"] and isinstance(meta["layer"], str)
        assert meta["depth"] == float(row["depth"]) and meta["sw"] == float(row["sw"])
        assert meta["narrow"] is (row["narrow"] == "True")
        assert meta["goodpred"] is (row["goodpred"] == "True")
        assert meta["celltype"] == row["celltype"] and meta["r_ln"] == float(row["r_ln"])
        assert meta["r_cnn"] == (float(row["r_cnn"]) if row["r_cnn"] else None)
        parts = meta["cell_id"].split("-")
        assert meta["session"] == parts[0] and meta["animal"] == parts[0][:3]
        assert (meta["electrode"], meta["unit_in_electrode"]) == (int(parts[-2]), int(parts[-1]))
        assert meta["probe"] == (parts[1] if len(parts) == 4 else None)
    probe_b = next(m for m in ds.nrn_meta if m["cell_id"] == "SLJ032a-B-154-1")
    assert (probe_b["site"], probe_b["session"], probe_b["probe"]) == \
        ("SLJ032a-B", "SLJ032a", "B")


def test_area_site_subset_and_unlabelled_select_what_they_say(tree):
    peg = _load(tree.root, area="PEG")
    assert {m["area"] for m in peg.nrn_meta} == {"PEG"}
    assert [m["cell_id"] for m in peg.nrn_meta] == ["CLT027c-040-1", "PRN018a-012-1",
                                                    "SLJ032a-B-154-1"]
    probe = _load(tree.root, site="SLJ032a-B")
    assert [m["cell_id"] for m in probe.nrn_meta] == ["SLJ032a-B-154-1"]
    both = _load(tree.root, site=["SLJ032a", "PRN015a"])
    assert {m["session"] for m in both.nrn_meta} == {"SLJ032a", "PRN015a"}
    assert len(both.nrn_meta) == 5 and both.get_S() == 6
    val = _load(tree.root, subset="val")
    assert {m["subset"] for m in val.stim_meta} == {"val"} and val.get_S() == 5
    est = _load(tree.root, subset="est")
    assert est.get_S() == 9 and {m["subset"] for m in est.stim_meta} == {"est"}
    everyone = _load(tree.root, include_unlabeled=True)
    assert {m["cell_id"] for m in everyone.nrn_meta} - {m["cell_id"] for m in
                                                        _load(tree.root).nrn_meta} == \
        {"PRN020b-005-1", "PRN020b-008-2"}
    with pytest.raises(RawDataError, match="site \\['XYZ001a'\\] matches no session"):
        _load(tree.root, site="XYZ001a")


def test_deepstrf_scaling_is_recorded_and_undoable(tree):
    counts = _load(tree.root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        ds = Wingert2026Dataset(tree.root)
        again = Wingert2026Dataset(tree.root)
    assert ds.provenance["cache_hit"] is False and again.provenance["cache_hit"] is True
    assert [o["operation"] for o in ds.provenance["operations"]] == ["minmax_stims",
                                                                      "minmax_responses"]
    stims = np.concatenate([x[0].numpy() for x in counts.stims], axis=1)
    lo, hi = stims.min(axis=1), stims.max(axis=1)
    for s in range(ds.get_S()):
        np.testing.assert_allclose(ds.stims[s][0].numpy(), (counts.stims[s][0].numpy()
                                                            - lo[:, None]) / (hi - lo)[:, None],
                                   rtol=1e-5, atol=1e-6)
        assert again.stims[s].equal(ds.stims[s])
    for n in range(ds.get_N()):
        rows = [counts.responses[s][n].numpy() for s in range(ds.get_S())
                if counts.nrn_masks[s, n]]
        top = max(r.max() for r in rows)
        assert min(r.min() for r in rows) == 0 and top > 0
        for s in range(ds.get_S()):
            if counts.nrn_masks[s, n]:
                np.testing.assert_allclose(ds.responses[s][n].numpy(),
                                           counts.responses[s][n].numpy() / top, rtol=1e-6)
    before = [ds.responses[s][0].numpy().copy() for s in range(ds.get_S())]
    ds.minmax_scale()  # again: undone first, so the same values
    for s in range(ds.get_S()):
        np.testing.assert_allclose(ds.responses[s][0].numpy(), before[s], rtol=1e-6)
    ds.destandardize_stims()
    ds.denormalize_responses()
    for s in range(ds.get_S()):
        np.testing.assert_allclose(ds.stims[s].numpy(), counts.stims[s].numpy(), rtol=1e-5,
                                   atol=1e-5)
        for n in range(ds.get_N()):
            np.testing.assert_allclose(ds.responses[s][n].numpy(),
                                       counts.responses[s][n].numpy(), rtol=1e-5, atol=1e-5)


def test_quirks_are_warned_and_counted(tree):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = Wingert2026Dataset(tree.root, scaling="none")
    texts = [str(w.message) for w in caught if w.category is DataQuirkWarning]
    assert len(texts) == 4
    assert any("PRN015b_" in t and "holds PRN015a" in t for t in texts)
    assert any(tree.extra["duplicate"] in t and "skipped" in t for t in texts)
    assert ds.provenance["manifest"]["quirks"] == {
        "archive_named_after_another_session": 1, "duplicate_session_archive": 1,
        "cells_without_recording": 1, "recorded_cells_not_in_cell_list": 1}
    assert "CLT027c-064-3" not in {m["cell_id"] for m in ds.nrn_meta}


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_reader_quirks_are_counted_and_warned_once_whatever_n_jobs(tree, tmp_path, n_jobs):
    def with_a_readme(data):  # an archive member that is no NEMS0 file
        out = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(data)) as src, \
                tarfile.open(fileobj=out, mode="w:gz") as dst:
            for m in src.getmembers():
                dst.addfile(m, src.extractfile(m))
            extra = tarfile.TarInfo("CLT027c/README.txt")
            extra.size = 5
            dst.addfile(extra, io.BytesIO(b"notes"))
        return out.getvalue()

    root = tmp_path / "readme"
    shutil.copytree(tree.root, root)
    zpath, member = root / "recordings.zip", tree.archives["CLT027c"]
    with zipfile.ZipFile(zpath) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    members[member] = with_a_readme(members[member])
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = Wingert2026Dataset(root, scaling="none", n_jobs=n_jobs)
    readme = [w for w in caught if "README.txt" in str(w.message)]
    assert len(readme) == 1 and "not NEMS0 recording files" in str(readme[0].message)
    assert ds.provenance["manifest"]["quirks"]["unknown_members"] == 1
    assert _load(root).get_N() == len(_labelled(tree))


def test_a_clean_release_loads_without_warnings(tmp_path):
    info = write_wingert2026(tmp_path / "raw", sites=("CLT027c", "PRN018a"), n_test_repeats=2,
                             write_wav=False, quirks=CLEAN)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)
        ds = Wingert2026Dataset(info.root, scaling="none")
    assert ds.provenance["manifest"]["quirks"] == {} and ds.get_N() == 5


def _repack(tree, tmp_path, rename=None, edit=None):
    """A copy of the tree with recordings.zip members renamed and/or rewritten."""
    root = tmp_path / "broken"
    shutil.copytree(tree.root, root)
    zpath = root / "recordings.zip"
    with zipfile.ZipFile(zpath) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    for old, new in (rename or {}).items():
        members[new] = members.pop(old)
    for name, (suffix, change) in (edit or {}).items():
        site = tmp_path / "site.tgz"
        site.write_bytes(members[name])
        with tarfile.open(site) as tf:
            m = next(m for m in tf.getmembers() if m.name.endswith(suffix))
            data = change(tf.extractfile(m).read())
        replace_member(site, suffix, data)
        members[name] = site.read_bytes()
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return root


def test_copies_of_a_session_named_after_another_one_keep_the_first(tree, tmp_path):
    # PRN018a's archive renamed PRN018c: two copies, neither named after the session
    renamed = tree.archives["PRN018a"].replace("PRN018a", "PRN018c")
    root = _repack(tree, tmp_path, rename={tree.archives["PRN018a"]: renamed})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = Wingert2026Dataset(root, scaling="none", cache="off")
    texts = " ".join(str(w.message) for w in caught)
    assert f"skipped ({renamed})" in texts and "PRN018b_" in texts and "holds PRN018a" in texts
    reference = _load(tree.root)
    for s in range(ds.get_S()):
        for n in range(ds.get_N()):
            np.testing.assert_array_equal(ds.responses[s][n].numpy(),
                                          reference.responses[s][n].numpy())


def test_copies_with_fewer_cells_are_skipped_too(tree, tmp_path):
    import json

    def drop_a_cell(data):
        sidecar = json.loads(data)
        sidecar["chans"] = sidecar["chans"][:-1]
        return json.dumps(sidecar).encode()

    # PRN018b (first by name) holds every cell, so the renamed PRN018c is never read: its
    # resp.json no longer matches its resp.h5, which would be an error if it were
    renamed = tree.archives["PRN018a"].replace("PRN018a", "PRN018c")
    root = _repack(tree, tmp_path, rename={tree.archives["PRN018a"]: renamed},
                   edit={renamed: (".resp.json", drop_a_cell)})
    ds = _load(root)
    assert {m["archive"] for m in ds.stim_meta if m["session"] == "PRN018a"} == \
        {tree.extra["duplicate"].split("/")[1]}
    assert ds.get_N() == len(_labelled(tree))


def test_a_probe_in_its_own_archive_gets_its_own_entries(tmp_path):
    info = write_wingert2026(tmp_path / "raw", sites=("SLJ032a",), write_wav=False,
                             quirks=WingertQuirks(*(False,) * 4, split_probes=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)  # not a departure: no warning
        ds = Wingert2026Dataset(info.root, scaling="none")
    cells = [m["cell_id"] for m in ds.nrn_meta]
    assert cells == ["SLJ032a-A-003-1", "SLJ032a-A-010-2", "SLJ032a-B-154-1"]
    by_archive = {}
    for s, m in enumerate(ds.stim_meta):
        by_archive.setdefault(m["archive"], []).append(s)
        heard = [cells[n] for n in np.flatnonzero(ds.nrn_masks[s].numpy())]
        assert heard == ([cells[2]] if m["archive"].startswith("SLJ032a-B_") else cells[:2])
        for n, cell in enumerate(cells):
            if cell in heard:
                np.testing.assert_array_equal(ds.responses[s][n].numpy(),
                                              info.counts[("SLJ032a", m["name"], cell)])
    assert sorted(by_archive) == sorted(p.split("/")[1] for p in (info.archives["SLJ032a"],
                                                                  info.extra["probe_b"]))
    assert all(len(v) == len(info.stims["SLJ032a"]) for v in by_archive.values())


def _rewrite(tree, tmp_path, session, suffix, data):
    """A copy of the tree whose session archive has the member ending in ``suffix`` replaced."""
    change = data if callable(data) else (lambda _old: data)
    return _repack(tree, tmp_path, edit={tree.archives[session]: (suffix, change)})


def test_epoch_columns_in_another_order_read_the_same(tree, tmp_path):
    def reorder(data):  # name,start,end instead of start,end,name
        rows = [line.split(",") for line in data.decode().splitlines()]
        return ("\n".join(f"{n},{a},{b}" for a, b, n in rows) + "\n").encode()

    root = _rewrite(tree, tmp_path, "CLT027c", ".resp.epoch.csv", reorder)
    a, b = _load(root), _load(tree.root)
    assert a.stim_meta == b.stim_meta
    for s in range(a.get_S()):
        for n in range(a.get_N()):
            np.testing.assert_array_equal(a.responses[s][n].numpy(), b.responses[s][n].numpy())


def _shorten_first_test_epoch(text):
    lines = text.decode().splitlines()
    i = next(j for j, line in enumerate(lines) if line.endswith(",STIM_00seq9001.wav"))
    start, end, name = lines[i].split(",")
    lines[i] = f"{start},{float(end) - 0.05!r},{name}"
    return ("\n".join(lines) + "\n").encode()


def _negative_tile(data):
    import h5py

    buffer = io.BytesIO(data)
    with h5py.File(buffer, "a") as f:
        f["STIM_seq0001.wav"][0, 0] = -1.0
    return buffer.getvalue()


def _drop_tile(data):
    import h5py

    buffer = io.BytesIO(data)
    with h5py.File(buffer, "a") as f:
        del f["STIM_seq0002.wav"]
    return buffer.getvalue()


@pytest.mark.parametrize("session, suffix, data, match", [
    ("CLT027c", ".resp.json", None, r"recordings\.zip > recordings/CLT027c_[0-9a-f]{40}\.tgz, "
     r"member 'CLT027c/CLT027c\.resp\.h5': signal 'resp' has no JSON sidecar"),
    ("CLT027c", ".resp.epoch.csv", _shorten_first_test_epoch,
     r"recordings\.zip > recordings/CLT027c_.*resp\.epoch\.csv.*last \[195, 200\] samples"),
    ("CLT027c", ".stim.h5", _negative_tile,
     r"CLT027c_.*member 'CLT027c/CLT027c\.stim\.h5'.*negative values"),
    ("CLT027c", ".stim.h5", _drop_tile, r"CLT027c_.*stim\.h5': no tile for 'STIM_seq0002\.wav'"),
    ("PRN015a", ".resp.h5", b"not hdf5", r"PRN015b_.*resp\.h5.*not a readable HDF5"),
])
def test_a_malformed_archive_names_archive_and_member_and_leaves_no_entry(
        tree, tmp_path, session, suffix, data, match):
    root = _rewrite(tree, tmp_path, session, suffix, data)
    with pytest.raises(NemsFormatError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        Wingert2026Dataset(root)
    _no_entry(tmp_path / "home")


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("cellid,", "cell,", 1), r"cell_list\.csv: expected a header"),
    (lambda t: t.rstrip("\n") + ",extra\n", r"cell_list\.csv, line \d+: 12 fields"),
    (lambda t: t.replace(",True,", ",maybe,", 1),
     r"cell_list\.csv, line 2: column 'goodpred' must be True or False"),
    (lambda t: t + t.splitlines()[1] + "\n", r"listed twice \(first on line 2\)"),
])
def test_a_malformed_cell_list_names_the_file_and_line(tree, tmp_path, edit, match):
    root = tmp_path / "broken"
    shutil.copytree(tree.root, root)
    path = root / "cell_list.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(RawDataError, match=match):
        Wingert2026Dataset(root)
    _no_entry(tmp_path / "home")


def test_a_pandas_index_column_is_not_a_field(tree, tmp_path):
    root = tmp_path / "indexed"
    shutil.copytree(tree.root, root)
    path = root / "cell_list.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([","+ lines[0]] + [f"{i},{x}" for i, x in enumerate(lines[1:])])
                    + "\n")
    a, b = _load(root), _load(tree.root)
    assert a.nrn_meta == b.nrn_meta and "" not in a.nrn_meta[0]


def test_a_truncated_recordings_zip_is_named_and_leaves_no_entry(tree, tmp_path):
    root = tmp_path / "truncated"
    shutil.copytree(tree.root, root)
    path = root / "recordings.zip"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(NemsFormatError, match=r"(?s)recordings\.zip: not a readable archive.*"
                                              r"Download it again"):
        Wingert2026Dataset(root)
    _no_entry(tmp_path / "home")


def test_missing_files_are_listed(tree, tmp_path):
    root = tmp_path / "partial"
    root.mkdir()
    shutil.copy(tree.files["cell_list"], root)
    with pytest.raises(MissingRawDataError, match=r"recordings\.zip"):
        Wingert2026Dataset(root)


@pytest.mark.parametrize("kwargs", [
    dict(dt_ms=15.0), dict(dt_ms=5.0), dict(area="MGB"), dict(subset="test"),
    dict(scaling="zscore"), dict(log_offset=True), dict(log_offset=99.0),
    dict(log_compress="yes"), dict(include_unlabeled=1), dict(include_unlabeled=True, area="A1"),
    dict(prestim_ms=-1.0), dict(site=""),
    dict(site=[3])])
def test_bad_arguments_fail_before_io(tmp_path, kwargs):
    with pytest.raises((ValueError, TypeError)):
        Wingert2026Dataset(tmp_path / "nothing", **kwargs)
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "home").exists()


def test_extracted_recordings_and_n_jobs_give_the_same_data(tree, tmp_path):
    root = tmp_path / "extracted"
    root.mkdir()
    shutil.copy(tree.files["cell_list"], root)
    with zipfile.ZipFile(tree.files["recordings"]) as zf:
        zf.extractall(root)
    assert (root / "recordings").is_dir() and not (root / "recordings.zip").exists()
    a, b, c = _load(root), _load(tree.root), _load(tree.root, n_jobs=2)
    assert a.stim_meta == b.stim_meta == c.stim_meta and a.nrn_meta == b.nrn_meta == c.nrn_meta
    for s in range(a.get_S()):
        assert a.stims[s].equal(b.stims[s]) and c.stims[s].equal(b.stims[s])
        for n in range(a.get_N()):
            np.testing.assert_array_equal(a.responses[s][n].numpy(), b.responses[s][n].numpy())
            np.testing.assert_array_equal(c.responses[s][n].numpy(), b.responses[s][n].numpy())


def test_waveform_mode_insets_each_sound_by_its_epoch_silence(tree):
    with pytest.raises(MissingRawDataError, match=r"(?s)never written to.*unpacked from wav\.zip"):
        Wingert2026Dataset(tree.root, return_waveform=True)
    ds = _load(tree.root.parent, return_waveform=True, subset="val")  # deepstrf's layout
    spec = _load(tree.root, subset="val")
    assert ds.audio_fs == 44100 and ds.stim_meta == [
        {**m, "sample_rate": 44100.0, "n_samples": 44100, "duration_s": 1.0,
         **({"inset_ms": 500.0} if tree.pre_s[m["session"]] else {})}
        for m in [{k: v for k, v in m.items() if k != "native_bin_ms"} for m in spec.stim_meta]]
    for s, m in enumerate(ds.stim_meta):
        wave, lead = ds.stims[s][0].numpy(), int(tree.pre_s[m["session"]] * 44100)
        assert wave.shape == (m["n_bins"] * 441,)
        np.testing.assert_allclose(wave[lead:lead + 44100], tree.waves[m["name"]], atol=1e-6)
        assert not wave[:lead].any() and not wave[lead + 44100:].any()
        for n in range(ds.get_N()):
            np.testing.assert_array_equal(ds.responses[s][n].numpy(),
                                          spec.responses[s][n].numpy())
    forced = _load(tree.root.parent, return_waveform=True, subset="val", prestim_ms=200.0)
    wave = forced.stims[0][0].numpy()
    np.testing.assert_allclose(wave[8820:8820 + 44100], tree.waves[forced.stim_meta[0]["name"]],
                               atol=1e-6)
    # the grid is the epoch's either way: the responses do not move
    np.testing.assert_array_equal(forced.responses[0][0].numpy(), spec.responses[0][0].numpy())


def test_download_fetches_the_recordings_and_cell_list_only(tree, tmp_path, monkeypatch):
    from deepstrf.io.download import RemoteFile
    from deepstrf.testing.http_server import LocalHTTPServer

    with LocalHTTPServer() as server:
        for path in tree.files.values():
            server.add_file(f"/files/{path.name}/content", path.read_bytes())
        files = tuple(RemoteFile(f.name, url=server.url_for(f"/files/{f.name}/content"))
                      for f in Wingert2026Dataset.remote_files)
        monkeypatch.setattr(Wingert2026Dataset, "remote_files", files)
        ds = _load(tmp_path / "wingert", download=True)
        asked = {r.path.split("/")[2] for r in server.requests}
    assert asked == {"recordings.zip", "cell_list.csv"}  # no wav.zip for spectrograms
    assert (tmp_path / "wingert" / "raw" / "recordings.zip").is_file()
    assert not (tmp_path / "wingert" / "raw" / "recordings").exists()  # read in place
    assert ds.get_N() == len(_labelled(tree)) and len(SITES) == 5


def test_download_raw_fetches_without_building_and_refuses_credentials(tree, tmp_path,
                                                                        monkeypatch):
    from deepstrf.io.download import RemoteFile
    from deepstrf.testing.http_server import LocalHTTPServer

    with pytest.raises(TypeError, match="open data and takes no credentials"):
        Wingert2026Dataset.download_raw(tmp_path / "w", username="someone")
    with LocalHTTPServer() as server:
        for path in tree.files.values():
            server.add_file(f"/files/{path.name}/content", path.read_bytes())
        files = tuple(RemoteFile(f.name, url=server.url_for(f"/files/{f.name}/content"))
                      for f in Wingert2026Dataset.remote_files)
        monkeypatch.setattr(Wingert2026Dataset, "remote_files", files)
        raw = Wingert2026Dataset.download_raw(tmp_path / "w", return_waveform=True)
    assert raw == tmp_path / "w" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == [
        "cell_list.csv", "recordings.zip", "wav", "wav.zip"]  # recordings.zip stays packed
    assert not (tmp_path / "w" / "processed").exists() or not list_entries(
        tmp_path / "w" / "processed")



def test_minmax_keeps_nan_ignores_it_in_the_statistics_and_undoes_exactly():
    import torch

    from deepstrf.datasets._minmax import minmax_responses, minmax_stims
    from deepstrf.datasets.audio import AudioNeuralDataset

    nan = float("nan")
    stims = [torch.tensor([[[1.0, 3.0], [0.0, 2.0]]]), torch.tensor([[[5.0, 1.0], [4.0, 4.0]]])]
    responses = [[torch.tensor([[2.0, nan]]), torch.full((1, 1), nan)],
                 [torch.tensor([[4.0, 6.0], [nan, 3.0]]), torch.tensor([[1.0, 5.0]])]]
    ds = AudioNeuralDataset.from_data(stims, responses, dt_ms=10.0)
    minmax_stims(ds)
    minmax_responses(ds)
    np.testing.assert_allclose(ds.stims[0][0].numpy(), [[0.0, 0.5], [0.0, 0.5]])
    np.testing.assert_allclose(ds.stims[1][0].numpy(), [[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(ds.responses[0][0].numpy(), [[0.0, nan]])   # neuron 0: 2..6
    np.testing.assert_allclose(ds.responses[1][0].numpy(), [[0.5, 1.0], [nan, 0.25]])
    np.testing.assert_allclose(ds.responses[1][1].numpy(), [[0.0, 1.0]])   # neuron 1: 1..5
    assert ds.response_normalization["method"] == "minmax"
    assert [o["operation"] for o in ds.provenance["operations"]] == ["minmax_stims",
                                                                      "minmax_responses"]
    ds.destandardize_stims()
    ds.denormalize_responses()
    for s in range(2):
        np.testing.assert_allclose(ds.stims[s].numpy(), stims[s].numpy(), atol=1e-6)
        for n in range(2):
            np.testing.assert_allclose(ds.responses[s][n].numpy(), responses[s][n].numpy(),
                                       atol=1e-6)
