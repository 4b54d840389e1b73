"""NAT4Dataset on a miniature Zenodo release; every count recomputed from the values written."""

from __future__ import annotations

import shutil
import tarfile
import warnings
import zipfile

import numpy as np
import pytest

from deepstrf.datasets.audio.nat4 import NAT4Dataset
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.io.cache import list_entries
from deepstrf.io.nems import NemsFormatError
from deepstrf.testing.fixtures.nat4 import NAT4Quirks, write_nat4
from deepstrf.testing.fixtures.nems import replace_member


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_nat4(tmp_path_factory.mktemp("nat4") / "raw", n_val_repeats=4)


def _load(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        return NAT4Dataset(root, cache="off", **kw)


def _rows(times_s, starts_s, k=1):
    """Counts per 10*k ms from the spike times written, in whole microseconds (independent)."""
    out = np.zeros((len(times_s), 150 // k))
    for r, (t, s) in enumerate(zip(times_s, starts_s)):
        us = np.round((np.asarray(t) - s) * 1e6).astype(np.int64)
        np.add.at(out[r], us[(us >= 0) & (us < 1_500_000)] // (10_000 * k), 1)
    return out


def _index(ds):
    return ({m["name"]: s for s, m in enumerate(ds.stim_meta)},
            {m["cell_id"]: n for n, m in enumerate(ds.nrn_meta)})


@pytest.mark.parametrize("k", [1, 2])
def test_every_count_equals_what_was_written(tree, k):
    ds = _load(tree.root, dt_ms=10.0 * k)
    stims, cells = _index(ds)
    assert list(stims) == list(tree.est) + list(tree.val)  # est first, then val
    assert list(cells) == [c["cell_id"] for c in tree.cells]  # the population's order
    checked = 0
    for cell in tree.cells:
        c = cell["cell_id"]
        site = cell["site"]
        for name in tree.est:
            got = ds.responses[stims[name]][cells[c]].numpy()
            written = tree.est_counts[(name, c)]
            if np.isnan(written).all():
                assert got.shape == (1, 1) and np.isnan(got).all()  # sentinel
                continue
            np.testing.assert_array_equal(got[0], written.reshape(-1, k).sum(axis=1))
            known = ~np.isnan(got)  # NaN where a summed block touches a NaN bin
            np.testing.assert_array_equal(got[known], _rows(tree.spikes[(name, c)],
                                                            tree.starts[(site, name)], k)[known])
            checked += 1
        for name in tree.val:
            got = ds.responses[stims[name]][cells[c]].numpy()
            if cell["site_id"] is None:  # in no site file
                assert got.shape == (1, 1) and np.isnan(got).all()
                continue
            assert got.shape == (4, 150 // k)
            np.testing.assert_array_equal(got, _rows(tree.spikes[(name, c)],
                                                     tree.starts[(site, name)], k))
            checked += 1
    n_cells = len(tree.cells)
    assert checked == n_cells * len(tree.est) - 1 + (n_cells - 1) * len(tree.val)
    assert int(ds.nrn_masks.sum()) == checked


def test_nan_bins_stay_nan_and_spread_to_their_block(tree):
    fine, coarse = _load(tree.root), _load(tree.root, dt_ms=20.0)
    nan_fine = np.flatnonzero(np.isnan(fine.responses[1][1][0].numpy()))
    nan_coarse = np.flatnonzero(np.isnan(coarse.responses[1][1][0].numpy()))
    assert nan_fine.tolist() == [101, 102, 103, 104] and nan_coarse.tolist() == [50, 51, 52]
    assert not np.isnan(fine.responses[1][0].numpy()).any()


def test_results_do_not_depend_on_n_jobs(tree):
    one, two = _load(tree.root), _load(tree.root, n_jobs=2)
    assert one.nrn_meta == two.nrn_meta and one.stim_meta == two.stim_meta
    for s in range(one.get_S()):
        assert one.stims[s].equal(two.stims[s])
        for n in range(one.get_N()):
            np.testing.assert_array_equal(one.responses[s][n].numpy(),
                                          two.responses[s][n].numpy())


def test_spectrogram_is_log1p_of_the_stim_signal_and_pools(tree):
    ds = _load(tree.root)
    coarse = _load(tree.root, dt_ms=20.0)
    assert ds.F == 18 and coarse.F == 18
    for s, m in enumerate(ds.stim_meta):
        expected = np.log1p(tree.spectrograms[m["name"]])
        np.testing.assert_allclose(ds.stims[s][0].numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(coarse.stims[s][0].numpy(),
                                   expected.reshape(18, 75, 2).mean(axis=2), rtol=1e-5,
                                   atol=1e-6)
        assert m["n_bins"] == 150 and coarse.stim_meta[s]["n_bins"] == 75
    assert [m["subset"] for m in ds.stim_meta] == ["est"] * 4 + ["val"] * 3


def test_an_already_logarithmic_stim_is_kept_and_reported(tmp_path):
    info = write_nat4(tmp_path / "raw", n_est=1, n_val=1, n_val_repeats=2, log_stim=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = NAT4Dataset(info.root)
    assert any("already logarithmic" in str(w.message) for w in caught)
    assert ds.provenance["manifest"]["quirks"]["stim_already_logarithmic"] == 1
    for s, m in enumerate(ds.stim_meta):
        np.testing.assert_allclose(ds.stims[s][0].numpy(), info.spectrograms[m["name"]],
                                   rtol=1e-5, atol=1e-5)


def test_metadata_auditory_flags_and_cell_parts(tree):
    ds = _load(tree.root)
    for meta, cell in zip(ds.nrn_meta, tree.cells):
        assert meta["cell_id"] == cell["cell_id"] and meta["area"] == "A1"
        assert meta["auditory"] is (cell["auditory"] is True)  # no CSV row: False
        site, electrode, unit = cell["cell_id"].split("-")
        assert (meta["site"], meta["animal"], meta["electrode"], meta["unit_in_electrode"]) \
            == (site, site[:3], int(electrode), int(unit))
    assert [c["auditory"] for c in tree.cells].count(None) == 1
    assert "TNC015a-09-1" not in {m["cell_id"] for m in ds.nrn_meta}  # site-only cell


def test_subsets_select_what_they_say(tree):
    est = _load(tree.root, subset="est")
    val = _load(tree.root, subset="val")
    assert [m["name"] for m in est.stim_meta] == list(tree.est)
    assert [m["name"] for m in val.stim_meta] == list(tree.val)
    assert est.get_N() == len(tree.cells)
    assert [m["cell_id"] for m in val.nrn_meta] == [c["cell_id"] for c in tree.cells
                                                    if c["site_id"] is not None]
    full = _load(tree.root)
    np.testing.assert_array_equal(val.responses[1][0].numpy(), full.responses[5][0].numpy())


def test_quirks_are_warned_and_counted(tree):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = NAT4Dataset(tree.root)
    texts = [str(w.message) for w in caught if w.category is DataQuirkWarning]
    assert len(texts) == 5 and any("electrode numbers read as integers" in t for t in texts)
    assert ds.provenance["manifest"]["quirks"] == {
        "est_pairs_all_nan": 1, "electrode_id_zero_padding": 3,
        "site_cells_not_in_population": 1, "cells_absent_from_site_files": 1,
        "cells_not_in_pred_correlation": 1}
    assert NAT4Dataset(tree.root).provenance["cache_hit"] is True


def test_without_zero_padding_the_tnc_cells_match_directly(tmp_path):
    info = write_nat4(tmp_path / "raw", n_est=1, n_val=1, n_val_repeats=2,
                      quirks=NAT4Quirks(tnc_zero_padding=False, site_only_cell=False,
                                        nan_est_pair=False, absent_from_sites=False,
                                        missing_pred_row=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)
        ds = NAT4Dataset(info.root)
    assert ds.provenance["manifest"]["quirks"] == {} and bool(ds.nrn_masks.all())


def test_deepstrf_scale_min_max_normalises_est_only(tree):
    counts = _load(tree.root)
    scaled = _load(tree.root, response_scale="deepstrf")
    matrix = np.stack([tree.est_counts[k] for k in tree.est_counts])
    # the whole matrix: est rows and the val means (which hold the maximum or not)
    val_means = [np.mean(_rows(tree.spikes[(n, c["cell_id"])],
                               tree.starts[(c["site"], n)]), axis=0)
                 for n in tree.val for c in tree.cells if (n, c["cell_id"]) in tree.spikes]
    lo = min(np.nanmin(matrix), np.min(val_means))
    hi = max(np.nanmax(matrix), np.max(val_means))
    np.testing.assert_allclose(scaled.responses[1][2].numpy(),
                               (counts.responses[1][2].numpy() - lo) / (hi - lo), rtol=1e-6)
    np.testing.assert_array_equal(scaled.responses[5][1].numpy(),
                                  counts.responses[5][1].numpy())


def test_waveform_mode_insets_the_sound_and_keeps_the_grid(tree):
    # the raw folder given in place is never written to, so wav.zip is not unpacked there
    with pytest.raises(MissingRawDataError, match=r"(?s)never written to.*unpacked from wav\.zip"):
        NAT4Dataset(tree.root, return_waveform=True)
    assert not (tree.root / "wav").exists()
    # in deepstrf's own layout (the folder holding raw/), the archive is unpacked
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = NAT4Dataset(tree.root.parent, return_waveform=True)
    assert any("letter case" in str(w.message) for w in caught)
    spec = _load(tree.root)
    assert ds.audio_fs == 44100 and tuple(ds.stims[0].shape) == (1, 150 * 441)
    for s, m in enumerate(ds.stim_meta):
        wave = ds.stims[s][0].numpy()
        np.testing.assert_allclose(wave[11025:11025 + 44100], tree.waves[m["name"]], atol=1e-6)
        assert not wave[:11025].any() and not wave[11025 + 44100:].any()
        for n in range(ds.get_N()):
            np.testing.assert_array_equal(ds.responses[s][n].numpy(),
                                          spec.responses[s][n].numpy())
    assert ds.provenance["manifest"]["quirks"]["wav_name_case"] == 1


def _no_entry(home):
    processed = home / "NAT4" / "processed"
    assert not processed.exists() or (list_entries(processed) == [] and not any(
        p.name.startswith(".tmp") for p in processed.iterdir()))


def test_bad_population_csv_names_archive_and_member_and_leaves_no_entry(tree, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(tree.root, root)
    pop = root / "A1_NAT4_ozgf.fs100.ch18.tgz"
    replace_member(pop, ".resp.csv", b"1.0,2.0\n3.0\n")
    with pytest.raises(NemsFormatError, match=r"A1_NAT4_ozgf\.fs100\.ch18\.tgz.*resp\.csv"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        NAT4Dataset(root)
    _no_entry(tmp_path / "home")


def test_bad_site_epochs_name_the_site_archive_and_member(tree, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(tree.root, root)
    zpath = root / "A1_single_sites.zip"
    with zipfile.ZipFile(zpath) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    name = next(n for n in members if "TNC015a" in n)
    site = tmp_path / "site.tgz"
    site.write_bytes(members[name])
    with tarfile.open(site) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(".resp.epoch.csv"))
        text = tf.extractfile(member).read().decode()
    val = tree.val[0]
    lines = text.splitlines()
    i = next(j for j, line in enumerate(lines) if line.endswith("," + val))
    start, end, _ = lines[i].split(",")
    lines[i] = f"{start},{float(end) - 0.1!r},{val}"  # one occurrence 100 ms short
    replace_member(site, ".resp.epoch.csv", ("\n".join(lines) + "\n").encode())
    with zipfile.ZipFile(zpath, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, site.read_bytes() if n == name else data)
    with pytest.raises(RawDataError, match=r"A1_single_sites\.zip > .*TNC015a.*resp\.epoch"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        NAT4Dataset(root)
    _no_entry(tmp_path / "home")
    assert _load(root, subset="est").get_S() == 4  # est needs no site file


@pytest.mark.parametrize("kwargs", [dict(dt_ms=15.0), dict(dt_ms=5.0), dict(area="MGB"),
                                    dict(subset="test"), dict(response_scale="rates")])
def test_bad_arguments_fail_before_io(tmp_path, kwargs):
    with pytest.raises((ValueError, TypeError)):
        NAT4Dataset(tmp_path / "nothing", **kwargs)
    assert not (tmp_path / "nothing").exists()


def test_extracted_population_and_site_folders_load_the_same(tree, tmp_path):
    root = tmp_path / "extracted"
    root.mkdir()
    shutil.copy(tree.files["pred"], root)
    with tarfile.open(tree.files["pop"]) as tf:
        tf.extractall(root, filter="data")
    with zipfile.ZipFile(tree.files["sites"]) as zf:
        zf.extractall(root)
    assert (root / "A1_NAT4_ozgf.fs100.ch18").is_dir() and (root / "A1_single_sites").is_dir()
    a, b = _load(root), _load(tree.root)
    assert a.stim_meta == b.stim_meta and a.nrn_meta == b.nrn_meta
    for s in range(a.get_S()):
        for n in range(a.get_N()):
            np.testing.assert_array_equal(a.responses[s][n].numpy(), b.responses[s][n].numpy())



def test_download_fetches_only_the_area_files_and_unpacks_the_wavs(tree, tmp_path, monkeypatch):
    from deepstrf.io.download import RemoteFile
    from deepstrf.testing.http_server import LocalHTTPServer

    with LocalHTTPServer() as server:
        for path in tree.files.values():
            server.add_file(f"/files/{path.name}/content", path.read_bytes())
        files = tuple(RemoteFile(f.name, url=server.url_for(f"/files/{f.name}/content"))
                      for f in NAT4Dataset.remote_files)
        monkeypatch.setattr(NAT4Dataset, "remote_files", files)
        ds = _load(tmp_path / "nat4", download=True, return_waveform=True)
        asked = {r.path.split("/")[2] for r in server.requests}
    assert asked == {p.name for p in tree.files.values()}  # no PEG file asked for
    assert (tmp_path / "nat4" / "raw" / "wav").is_dir() and ds.get_S() == 7
    spec = _load(tree.root, subset="val")
    np.testing.assert_array_equal(ds.responses[4][0].numpy(), spec.responses[0][0].numpy())
