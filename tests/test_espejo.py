"""EspejoDataset on a miniature Zenodo 3445557 release; counts recomputed from what was written."""

from __future__ import annotations

import shutil
import tarfile
import warnings

import numpy as np
import pytest

from deepstrf.datasets.audio import _espejo_wavs
from deepstrf.datasets.audio.espejo import EspejoDataset
from deepstrf.errors import DataQuirkWarning, MissingRawDataError
from deepstrf.io.cache import list_entries
from deepstrf.io.nems import NemsFormatError
from deepstrf.testing.fixtures.espejo import EspejoQuirks, write_espejo
from deepstrf.testing.fixtures.nems import replace_member, write_container_tgz


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def nat(tmp_path_factory):
    return write_espejo(tmp_path_factory.mktemp("nat") / "raw", stimuli="nat")


@pytest.fixture(scope="module")
def vmn(tmp_path_factory):
    return write_espejo(tmp_path_factory.mktemp("vmn") / "raw", stimuli="vmn")


def _load(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        return EspejoDataset(root, cache="off", **kw)


def _index(ds):
    return ({m["name"]: s for s, m in enumerate(ds.stim_meta)},
            {m["cell_id"]: n for n, m in enumerate(ds.nrn_meta)})


def _expected(info, name, cell, k):
    """A pair's rows from the files' contents, sessions in stored order (independent of the loader).

    Spike times are counted on whole microseconds from each occurrence's start;
    a CSV-raster session contributes its rows summed in blocks (NaN spreads).
    """
    T = info.tiles[name].shape[1]
    rows = []
    for s in info.sessions:
        if cell not in s["cells"] or name not in s["plays"]:
            continue
        if s["resp"] == "csv":
            raw = info.raster[(s["member"], name, cell)]
            rows += list(raw[:, :T // k * k].reshape(len(raw), T // k, k).sum(axis=2))
            continue
        for t, a in zip(info.spikes[(s["member"], name, cell)], info.starts[(s["member"], name)]):
            us = np.round((np.asarray(t) - a) * 1e6).astype(np.int64)
            row = np.zeros(T // k)
            np.add.at(row, us[(us >= 0) & (us < T // k * k * 10_000)] // (10_000 * k), 1)
            rows.append(row)
    return np.array(rows) if rows else None


@pytest.mark.parametrize("which", ["nat", "vmn"])
@pytest.mark.parametrize("k", [1, 2])
def test_every_count_equals_what_was_written(nat, vmn, which, k):
    info = {"nat": nat, "vmn": vmn}[which]
    ds = _load(info.root.parent, stimuli=which, dt_ms=10.0 * k)
    stims, cells = _index(ds)
    assert list(stims) == list(info.stims) and list(cells) == info.cells
    recorded = 0
    for name in info.stims:
        for cell in info.cells:
            got = ds.responses[stims[name]][cells[cell]].numpy()
            want = _expected(info, name, cell, k)
            if want is None:
                assert got.shape == (1, 1) and np.isnan(got).all()  # never heard: sentinel
                continue
            np.testing.assert_array_equal(got, want)
            recorded += 1
    assert int(ds.nrn_masks.sum()) == recorded
    # the check means something: spikes exactly on 10 ms edges were written, and counted
    edges = [t for key, trials in info.spikes.items() for t in trials]
    products = np.concatenate(edges) * 100.0
    assert (np.abs(products - np.round(products)) < 1e-9).sum() > 50


def test_a_cell_in_two_sessions_gets_the_repeats_of_both(vmn):
    ds = _load(vmn.root.parent, stimuli="vmn")
    stims, cells = _index(ds)
    both = [s for s in vmn.sessions if "por020a-c1" in s["cells"]]
    assert len(both) == 2
    name = "STIM_vmn_B_fer02"
    assert ds.responses[stims[name]][cells["por020a-c1"]].shape[0] == sum(
        s["plays"][name] for s in both) == 5
    meta = ds.nrn_meta[cells["por020a-c1"]]
    assert meta["sessions"] == [s["member"].rsplit("/", 1)[1] for s in both]
    # a stimulus only the second session played is still this cell's
    assert ds.nrn_masks[stims["STIM_vmn_E_spc01"], cells["por020a-c1"]]
    assert not ds.nrn_masks[stims["STIM_vmn_E_spc01"], cells["por020a-d1"]]


def test_csv_raster_rows_keep_their_nan_bins(vmn):
    ds = _load(vmn.root.parent, stimuli="vmn")
    stims, cells = _index(ds)
    site = next(s for s in vmn.sessions if s["site"] == "chn002h")
    assert site["resp"] == "csv"
    nan_pairs = [(n, c) for n in site["plays"] for c in site["cells"]
                 if np.isnan(ds.responses[stims[n]][cells[c]].numpy()).any()]
    assert len(nan_pairs) == 1 and nan_pairs[0][1] == "chn002h-a1"
    row = ds.responses[stims[nan_pairs[0][0]]][cells["chn002h-a1"]].numpy()
    assert int(np.isnan(row).sum()) == 3


@pytest.mark.parametrize("which", ["nat", "vmn"])
def test_cochleagrams_are_the_published_ones_and_pool(nat, vmn, which):
    info = {"nat": nat, "vmn": vmn}[which]
    ds, coarse = _load(info.root.parent, stimuli=which), _load(info.root.parent, stimuli=which,
                                                                dt_ms=20.0)
    assert ds.F == {"nat": 18, "vmn": 2}[which]
    for s, m in enumerate(ds.stim_meta):
        tile = info.tiles[m["name"]]
        np.testing.assert_allclose(ds.stims[s][0].numpy(), tile, rtol=1e-6, atol=1e-7)
        T2 = tile.shape[1] // 2
        np.testing.assert_allclose(coarse.stims[s][0].numpy(),
                                   tile[:, :2 * T2].reshape(ds.F, T2, 2).mean(axis=2),
                                   rtol=1e-5, atol=1e-6)
        assert m["n_bins"] == m["n_samples"] == tile.shape[1]
        assert coarse.stim_meta[s]["n_bins"] == T2
    if which == "nat":  # sounds of several lengths, one grid each
        assert sorted({m["n_bins"] for m in ds.stim_meta}) == [200, 220, 250]


@pytest.mark.parametrize("which", ["nat", "vmn"])
def test_metadata_split_and_repeats(nat, vmn, which):
    info = {"nat": nat, "vmn": vmn}[which]
    ds = _load(info.root.parent, stimuli=which)
    for m in ds.stim_meta:
        assert m["type"] == which and m["split"] == info.split[m["name"]]
        assert m["n_repeats"] == info.n_repeats[m["name"]]
        assert m["duration_s"] == pytest.approx(info.tiles[m["name"]].shape[1] / 100)
        assert ("wav" in m) is (which == "nat")
    assert {m["split"] for m in ds.stim_meta} == {"test", "estimation"}
    for meta in ds.nrn_meta:
        assert meta["experiment_set"] == which.upper()
        parts = meta["cell_id"].split("-")
        assert meta["site"] == parts[0] and meta["animal_id"] == parts[0][:3]
        assert meta["channel"] == parts[1]
        assert meta["unit"] == (parts[2] if which == "nat" else None)


def test_the_split_follows_each_sites_repeat_counts(nat):
    # AMT003c plays cat312 x4, 00cat78 x1, cat516 x2 (cat312 is test); BRT026c plays cat312
    # x3, cat43 x3, 00cat78 x1, cat516 x1 (cat312 and cat43 are test): test if any site says so
    ds = _load(nat.root.parent)
    split = {m["name"].split("_")[1]: m["split"] for m in ds.stim_meta}
    repeats = {m["name"].split("_")[1]: m["n_repeats"] for m in ds.stim_meta}
    assert split == {"cat312": "test", "cat43": "test", "00cat78": "estimation",
                     "cat516": "estimation"}
    assert repeats == {"cat312": 4, "cat43": 3, "00cat78": 1, "cat516": 2}


def test_subsets_and_cells_select_what_they_say(vmn):
    full = _load(vmn.root.parent, stimuli="vmn")
    test = _load(vmn.root.parent, stimuli="vmn", subset="test")
    est = _load(vmn.root.parent, stimuli="vmn", subset="estimation")
    assert [m["name"] for m in test.stim_meta] == [m["name"] for m in full.stim_meta
                                                   if m["split"] == "test"]
    assert [m["name"] for m in est.stim_meta] == [m["name"] for m in full.stim_meta
                                                  if m["split"] == "estimation"]
    assert test.get_S() + est.get_S() == full.get_S()
    one = _load(vmn.root.parent, stimuli="vmn", cells=["por020a-c1", "btn144a-a1"])
    assert [m["cell_id"] for m in one.nrn_meta] == ["btn144a-a1", "por020a-c1"]  # release order
    stims, cells = _index(full)
    s1, c1 = _index(one)
    for name, s in s1.items():
        for cell, n in c1.items():
            np.testing.assert_array_equal(one.responses[s][n].numpy(),
                                          full.responses[stims[name]][cells[cell]].numpy())
    with pytest.raises(ValueError, match=r"cells \['nobody-a1'\] are not in the VMN release"):
        _load(vmn.root.parent, stimuli="vmn", cells=["nobody-a1"])


def test_quirks_are_warned_and_counted_then_cached(vmn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = EspejoDataset(vmn.root.parent, stimuli="vmn")
    texts = [str(w.message) for w in caught if w.category is DataQuirkWarning]
    assert texts == ["EspejoDataset: 1 cells were recorded in several sessions (archives); "
                     "their repeats are joined."]
    assert ds.provenance["manifest"]["quirks"] == {"cells_in_several_sessions": 1}
    again = EspejoDataset(vmn.root.parent, stimuli="vmn")
    assert again.provenance["cache_hit"] is True
    for s in range(ds.get_S()):
        assert again.stims[s].equal(ds.stims[s])
        for n in range(ds.get_N()):
            np.testing.assert_array_equal(again.responses[s][n].numpy(),
                                          ds.responses[s][n].numpy())


def test_a_clean_release_has_no_quirk(tmp_path):
    info = write_espejo(tmp_path / "raw", stimuli="vmn", quirks=EspejoQuirks(*(False,) * 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)
        ds = EspejoDataset(info.root.parent, stimuli="vmn")
    assert ds.provenance["manifest"]["quirks"] == {}


def _extracted(info, dest):
    with tarfile.open(info.archive) as tf:
        tf.extractall(dest, filter="data")
    return dest


def test_extracted_folder_in_parallel_equals_the_archive(nat, tmp_path):
    root = _extracted(nat, tmp_path / "extracted")
    assert (root / "A1_natural_sounds" / "NAT").is_dir()
    a, b = _load(root, n_jobs=2), _load(nat.root.parent)
    assert a.stim_meta == b.stim_meta and a.nrn_meta == b.nrn_meta
    for s in range(a.get_S()):
        assert a.stims[s].equal(b.stims[s])
        for n in range(a.get_N()):
            np.testing.assert_array_equal(a.responses[s][n].numpy(), b.responses[s][n].numpy())


def _no_entry(home):
    processed = home / "Espejo" / "processed"
    assert not processed.exists() or (list_entries(processed) == [] and not any(
        p.name.startswith(".tmp") for p in processed.iterdir()))


def _broken(info, tmp_path, site, suffix, edit):
    """The release with one member of one site archive rewritten (``edit(bytes) -> bytes|None``)."""
    tree = _extracted(info, tmp_path / "x")
    session = next(s for s in info.sessions if s["site"] == site)
    inner = tree / session["member"]
    with tarfile.open(inner) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(suffix))
        data = tf.extractfile(member).read()
    replace_member(inner, suffix, edit(data))
    root = tmp_path / "broken"
    members = {s["member"]: tree / s["member"] for s in info.sessions}
    write_container_tgz(root / info.archive.name, members)
    return root, session["member"]


@pytest.mark.parametrize("site,suffix,edit,match", [
    ("AMT003c", ".meta.json", lambda d: d.replace(b'"ozgf"', b'"envelope"'),
     r"'AMT003c/AMT003c\.meta\.json'.*stimfmt.*'envelope'.*other stimulus set"),
    ("AMT003c", ".resp.json", lambda d: None, r"resp\.h5.*no JSON sidecar"),
    ("AMT003c", ".resp.h5", lambda d: None, r"resp\.json.*PointProcess.*no '<rec>\.resp\.h5'"),
    ("BRT026c", ".resp.epoch.csv", lambda d: d.replace(b",STIM_cat43", b";STIM_cat43", 1),
     r"resp\.epoch\.csv.*line \d+ has 2 fields, the header 3"),
    ("AMT003c", ".stim.h5", lambda d: d[: len(d) // 2], r"stim\.h5.*not a readable HDF5"),
    ("BRT026c", ".stim.csv", lambda d: b"1,2\n", r"stim\.csv.*2 columns.*18 channels"),
])
def test_a_malformed_site_names_archive_and_member_and_leaves_no_cache(
        nat, tmp_path, site, suffix, edit, match):
    root, member = _broken(nat, tmp_path, site, suffix, edit)
    with pytest.raises(NemsFormatError, match=match) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        EspejoDataset(root)
    assert f"A1_natural_sounds.tgz > {member}" in str(err.value)
    _no_entry(tmp_path / "home")


def test_a_truncated_release_archive_is_reported(nat, tmp_path):
    root = tmp_path / "cut"
    root.mkdir()
    data = nat.archive.read_bytes()
    (root / nat.archive.name).write_bytes(data[: len(data) // 3])
    with pytest.raises(NemsFormatError, match=r"A1_natural_sounds\.tgz.*truncated"):
        EspejoDataset(root)
    _no_entry(tmp_path / "home")


def test_the_other_sets_archive_is_missing_not_misread(nat, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(MissingRawDataError, match=r"A1_voc_mod_noise"):
        EspejoDataset(nat.root, stimuli="vmn")


@pytest.mark.parametrize("kwargs", [dict(dt_ms=15.0), dict(dt_ms=5.0), dict(stimuli="tones"),
                                    dict(subset="val"), dict(cells=3), dict(cells=[""]),
                                    dict(stimuli="vmn", return_waveform=True)])
def test_bad_arguments_fail_before_io(tmp_path, kwargs):
    with pytest.raises((ValueError, TypeError)):
        EspejoDataset(tmp_path / "nothing", **kwargs)
    assert not (tmp_path / "nothing").exists()


def test_waveform_mode_from_local_wavs_insets_the_sound_and_reports_the_missing(tmp_path):
    info = write_espejo(tmp_path / "nat" / "raw", write_wavs=True)
    spec = _load(info.root.parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = EspejoDataset(info.root.parent, return_waveform=True)
    assert any("have no wav" in str(w.message) for w in caught)
    assert ds.provenance["manifest"]["quirks"]["nat_waveforms_missing"] == 1
    have = {"STIM_" + p.name for p in (info.root / "nat_waveforms").iterdir()}
    assert len(have) == len(info.stims) - 1
    assert [m["name"] for m in ds.stim_meta] == [n for n in info.stims if n in have]
    s_spec, c_spec = _index(spec)
    lead = int(0.5 * 44100)
    for s, m in enumerate(ds.stim_meta):
        wave = ds.stims[s][0].numpy()
        assert wave.shape == (m["n_bins"] * 441,)
        clip = info.wavs[m["name"]]
        np.testing.assert_allclose(wave[lead:lead + len(clip)], clip, atol=1e-6)
        assert not wave[:lead].any() and not wave[lead + len(clip):].any()
        for n, meta in enumerate(ds.nrn_meta):
            np.testing.assert_array_equal(
                ds.responses[s][n].numpy(),
                spec.responses[s_spec[m["name"]]][c_spec[meta["cell_id"]]].numpy())


def test_download_verifies_the_zenodo_archive_and_fetches_wavs_from_the_mirror(
        tmp_path, monkeypatch):
    from deepstrf.testing.http_server import LocalHTTPServer

    info = write_espejo(tmp_path / "made" / "raw", write_wavs=True)
    wavs = sorted((info.root / "nat_waveforms").iterdir())
    with LocalHTTPServer() as server:
        server.add_zenodo_record(3445557, {info.archive.name: info.archive.read_bytes()})
        for i, wav in enumerate(wavs):  # spread over the folders, tried in order
            sub = _espejo_wavs.MIRROR_SUBDIRS[2 * i]
            server.add_file(f"/baphy/{sub}/{wav.name}", wav.read_bytes())
        for key, value in server.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(_espejo_wavs, "MIRROR_BASE", server.url_for("/baphy"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataQuirkWarning)
            ds = EspejoDataset(tmp_path / "espejo", return_waveform=True, download=True)
        asked = [r.path for r in server.requests]
        # a warm load with download=True asks the mirror nothing and is a cache hit
        again = EspejoDataset(tmp_path / "espejo", return_waveform=True, download=True)
        assert len(server.requests) == len(asked) and again.provenance["cache_hit"] is True
    raw = tmp_path / "espejo" / "raw"
    assert (raw / info.archive.name).read_bytes() == info.archive.read_bytes()
    assert sorted(p.name for p in (raw / "nat_waveforms").glob("*.wav")) == \
        [w.name for w in wavs]
    missing, = {n[len("STIM_"):] for n in info.stims} - {w.name for w in wavs}
    assert sum(missing in p for p in asked) == len(_espejo_wavs.MIRROR_SUBDIRS)  # every folder
    assert any("have no wav" in str(w.message) for w in caught)
    assert ds.get_S() == len(wavs)
    shutil.rmtree(raw / "nat_waveforms")
    spectro = _load(tmp_path / "espejo")  # spectrogram mode needs no wav
    assert spectro.get_S() == len(info.stims)


def _scaled_tiles(data: bytes) -> bytes:
    import io

    import h5py

    out = io.BytesIO()
    with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
        for key in src:
            dst.create_dataset(key, data=src[key][()] * 2.0 + 0.5, compression="gzip")
    return out.getvalue()


def test_a_site_with_other_cochleagram_values_is_reported_and_the_first_kept(vmn, tmp_path):
    root, member = _broken(vmn, tmp_path, "por020a", ".stim.h5", _scaled_tiles)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = EspejoDataset(root, stimuli="vmn")
    assert any("differ from the first site's" in str(w.message) for w in caught)
    # por020a's first session shares vmn_B with btn144a (first seen), vmn_D too
    assert ds.provenance["manifest"]["quirks"]["stim_values_differ_between_sites"] == 2
    for s, m in enumerate(ds.stim_meta):
        np.testing.assert_allclose(ds.stims[s][0].numpy(), vmn.tiles[m["name"]], rtol=1e-6)


def test_sessions_of_different_kinds_cannot_be_joined():
    from deepstrf.datasets._responses import BinnedRows, SpikeTrains
    from deepstrf.datasets.audio._espejo_sites import joined
    from deepstrf.errors import RawDataError

    spikes = SpikeTrains.from_trials([np.array([1.0, 5.0])])
    rows = BinnedRows(np.ones((2, 4)), 10.0)
    assert joined(spikes, spikes, "E", "c", "s").n_trials == 2
    assert joined(rows, rows, "E", "c", "s").rows.shape == (4, 4)
    with pytest.raises(RawDataError, match="cell c has responses to s in sessions of different"):
        joined(spikes, rows, "E", "c", "s")


def test_download_raw_fetches_only_the_chosen_set(vmn, tmp_path, monkeypatch):
    from deepstrf.cli import main
    from deepstrf.testing.http_server import LocalHTTPServer

    with LocalHTTPServer() as server:
        server.add_zenodo_record(3445557, {vmn.archive.name: vmn.archive.read_bytes(),
                                           "A1_natural_sounds.tgz": b"never asked for"})
        for key, value in server.host_env().items():
            monkeypatch.setenv(key, value)
        assert main(["download", "espejo", "--path", str(tmp_path / "e"), "--quiet",
                     "--param", "stimuli=vmn"]) == 0
        asked = {r.path.rsplit("/", 2)[-2] for r in server.requests if "/files/" in r.path}
    assert asked == {"A1_voc_mod_noise.tgz"}
    raw = tmp_path / "e" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == [
        "A1_voc_mod_noise.tgz"]
    assert _load(tmp_path / "e", stimuli="vmn").get_S() == len(vmn.stims)


def test_an_occurrence_of_another_length_is_cut_on_the_cochleagram_and_reported(nat, tmp_path):
    # one occurrence of cat43 at BRT026c ends 90 ms late: the grid stays the cochleagram's
    root, _ = _broken(nat, tmp_path, "BRT026c", ".resp.epoch.csv",
                      lambda d: d.replace(b",STIM_cat43", b"9,STIM_cat43", 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = EspejoDataset(root)
    assert any("last longer or shorter than their cochleagram" in str(w.message) for w in caught)
    assert ds.provenance["manifest"]["quirks"] == {
        "occurrence_length_differs_from_cochleagram": 1}
    stims, cells = _index(ds)
    name = "STIM_cat43_rec1_chimes_excerpt1.wav"
    for cell in ("BRT026c-05-1", "BRT026c-08-2"):
        np.testing.assert_array_equal(ds.responses[stims[name]][cells[cell]].numpy(),
                                      _expected(nat, name, cell, 1))


def test_smoothing_is_off_by_default_and_a_window_smooths_counts(vmn):
    plain = _load(vmn.root.parent, stimuli="vmn")
    smooth = _load(vmn.root.parent, stimuli="vmn", smooth=50.0)  # 5 bins of 10 ms
    kernel = np.hanning(7)[1:-1] / np.hanning(7)[1:-1].sum()  # MATLAB's hanning(5), unit sum
    s, n = 0, 0
    rows = plain.responses[s][n].numpy()
    want = np.stack([np.convolve(r, kernel, mode="same") for r in rows])
    np.testing.assert_allclose(smooth.responses[s][n].numpy(), want, rtol=1e-5, atol=1e-6)
    assert rows.sum() > 0 and not np.allclose(want, rows)


def _longer_tile(name):
    def edit(data: bytes) -> bytes:
        import io

        import h5py

        out = io.BytesIO()
        with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
            for key in src:
                tile = src[key][()]
                if key == name:
                    tile = np.concatenate([tile, tile[:, -10:]], axis=1)
                dst.create_dataset(key, data=tile, compression="gzip")
        return out.getvalue()
    return edit


def test_a_site_with_a_longer_cochleagram_loses_those_pairs_and_says_so(vmn, tmp_path):
    name = "STIM_vmn_B_fer02"
    root, member = _broken(vmn, tmp_path, "por020a", ".stim.h5", _longer_tile(name))
    edited = next(s for s in vmn.sessions if s["member"] == member)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = EspejoDataset(root, stimuli="vmn")
    assert any("another length than the first site's" in str(w.message) for w in caught)
    quirks = ds.provenance["manifest"]["quirks"]
    assert quirks["stim_length_differs_between_sites"] == len(edited["cells"])
    assert quirks["occurrence_length_differs_from_cochleagram"] == edited["plays"][name]
    stims, cells = _index(ds)
    kept = [s for s in vmn.sessions if s["member"] != member and "por020a-c1" in s["cells"]]
    got = ds.responses[stims[name]][cells["por020a-c1"]].numpy()
    assert got.shape[0] == kept[0]["plays"][name]  # only the other session's repeats
    only_edited = [c for c in edited["cells"] if c != "por020a-c1"]
    assert not ds.nrn_masks[stims[name], cells[only_edited[0]]]


def test_a_checksum_mismatch_keeps_nothing(vmn, tmp_path, monkeypatch):
    from deepstrf.errors import ChecksumError
    from deepstrf.testing.http_server import LocalHTTPServer

    with LocalHTTPServer() as server:
        server.add_zenodo_record(3445557, {vmn.archive.name: vmn.archive.read_bytes()},
                                 checksums={vmn.archive.name: "md5:" + "0" * 32})
        for key, value in server.host_env().items():
            monkeypatch.setenv(key, value)
        with pytest.raises(ChecksumError):
            EspejoDataset(tmp_path / "e", stimuli="vmn", download=True)
    raw = tmp_path / "e" / "raw"
    assert not (raw / vmn.archive.name).exists()
    processed = tmp_path / "e" / "processed"
    assert not processed.exists() or list_entries(processed) == []


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_reader_quirks_reach_the_user_from_worker_processes(vmn, tmp_path, n_jobs):
    import json

    tree = _extracted(vmn, tmp_path / "x")
    inner = tree / vmn.sessions[0]["member"]
    with tarfile.open(inner) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(".resp.json"))
        sidecar = json.loads(tf.extractfile(member).read())
    del sidecar["segments"]
    replace_member(inner, ".resp.json", json.dumps(sidecar).encode())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = EspejoDataset(tree, stimuli="vmn", n_jobs=n_jobs)
    texts = [str(w.message) for w in caught if w.category is DataQuirkWarning]
    assert sum("no 'segments'" in t for t in texts) == 1
    assert ds.provenance["manifest"]["quirks"]["sidecar_without_segments"] == 1


def test_waveform_mode_keeps_the_grid_lock_at_a_coarser_bin(tmp_path):
    info = write_espejo(tmp_path / "nat" / "raw", write_wavs=True,
                        quirks=EspejoQuirks(missing_wav=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)
        ds = EspejoDataset(info.root.parent, return_waveform=True, dt_ms=20.0)
    spec = _load(info.root.parent, dt_ms=20.0)
    assert ds.get_S() == len(info.stims) and ds.audio_fs == 44100
    for s, m in enumerate(ds.stim_meta):
        T = info.tiles[m["name"]].shape[1] // 2
        assert m["n_bins"] == T and tuple(ds.stims[s].shape) == (1, T * 882)
        for n in range(ds.get_N()):
            np.testing.assert_array_equal(ds.responses[s][n].numpy(),
                                          spec.responses[s][n].numpy())
