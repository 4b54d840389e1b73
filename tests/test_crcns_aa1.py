"""CRCNSAA1Dataset on fixture trees written in the exact distributed format."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.io.cache import list_entries
from deepstrf.testing.fixtures import (
    break_stim_reference,
    corrupt_spike_file,
    set_wav_sample_rate,
    truncate_file,
    write_crcns_aa1,
)
from tests._aa_helpers import check_all_responses, expected_counts, merged_trials, n_bins

DT = 5.0


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_crcns_aa1(tmp_path_factory.mktemp("aa1") / "tree", n_cells=6, seed=1)


def load(root, **kw):
    kw.setdefault("dt_ms", DT)
    kw.setdefault("smooth", False)
    kw.setdefault("cache", "off")
    return CRCNSAA1Dataset(root, **kw)


def stim_key(meta):
    return meta["name"], meta["type"]


def trials_of(info):
    return lambda cell, name, stim_type: merged_trials(info, cell, name, stim_type)


def test_every_response_equals_independent_counts(fixture):
    ds = load(fixture.root)
    assert ds.get_N() == len(fixture.cells) and ds.get_S() == len(fixture.stims)
    pairs = check_all_responses(ds, fixture, DT, stim_key, trials_of(fixture))
    assert pairs == len(fixture.cells) * len(fixture.stims)  # every cell heard everything
    assert ds.dt == DT and ds.F == 32


def test_metadata(fixture):
    ds = load(fixture.root)
    for meta in ds.nrn_meta:
        cell = fixture.cell(meta["cell_id"])
        assert meta["area"] == cell.area and meta["animal_id"] == cell.animal
        assert meta["cell_seq"] == cell.meta["cell_seq"] and meta["rig"] == cell.meta["rig"]
    assert [m["cell_id"] for m in ds.nrn_meta] == sorted(
        [c.cell_id for c in fixture.cells if c.area == "Field_L"]) + sorted(
        [c.cell_id for c in fixture.cells if c.area == "MLd"])
    for meta in ds.stim_meta:
        stim = fixture.stim(meta["name"])
        assert meta["type"] == stim.type and meta["sample_rate"] == 32000.0
        assert meta["n_samples"] == stim.n_samples
        assert meta["duration_s"] == pytest.approx(stim.duration_s)


def test_spectrograms_are_aligned_with_the_responses(fixture):
    ds = load(fixture.root)
    for s, meta in enumerate(ds.stim_meta):
        stim = fixture.stim(meta["name"])
        T = n_bins(stim, DT)
        assert ds.stims[s].shape == (1, 32, T) and ds.responses[s][0].shape[1] == T
        truth = fixture.truth.spectrograms[stim.sound]
        np.testing.assert_allclose(ds.stims[s][0].numpy(), truth, rtol=1e-5, atol=1e-6)


def test_selection_by_area_and_animal(fixture):
    mld = load(fixture.root, areas="MLd")
    assert {m["area"] for m in mld.nrn_meta} == {"MLd"}
    assert mld.get_N() == sum(c.area == "MLd" for c in fixture.cells)
    bird = fixture.cells[0].animal
    one = load(fixture.root, animals=[bird])
    assert {m["animal_id"] for m in one.nrn_meta} == {bird}
    flat = load(fixture.root, stimuli="flatrip")
    assert {m["type"] for m in flat.stim_meta} == {"flatrip"}
    full = load(fixture.root)
    full.select_pop_by_nrn_attr("area", "MLd")
    assert [m["cell_id"] for m in full.get_nrn_meta()] == [m["cell_id"] for m in mld.nrn_meta]


def test_waveform_mode_grid_lock(fixture):
    ds = load(fixture.root, return_waveform=True)
    assert ds.is_waveform and ds.hop == 160 and ds.audio_fs == 32000
    for s, meta in enumerate(ds.stim_meta):
        stim = fixture.stim(meta["name"])
        T = n_bins(stim, DT)
        assert ds.stims[s].shape == (1, T * 160)
        sound = fixture.truth.sounds[stim.sound]
        np.testing.assert_allclose(ds.stims[s][0, :len(sound)].numpy(), sound, atol=1e-6)
        assert not ds.stims[s][0, len(sound):].any()
    with pytest.raises(ValueError, match="whole number of samples"):
        load(fixture.root, return_waveform=True, audio_fs=44100)


def test_smoothing_default(fixture):
    from deepstrf.preprocessing.spikes import hanning_kernel, smooth_rows

    raw = load(fixture.root)
    smoothed = load(fixture.root, smooth=True)
    kernel = hanning_kernel(21.0, DT)
    assert torch.allclose(smoothed.responses[2][1], smooth_rows(raw.responses[2][1], kernel))
    assert smoothed.provenance["manifest"] is None  # cache='off'


def test_second_construction_is_served_from_the_cache(fixture, monkeypatch):
    a = load(fixture.root, cache="use")
    processed = CRCNSAA1Dataset.default_paths(fixture.root).processed
    assert processed.is_relative_to(CRCNSAA1Dataset.default_paths().root.parent)  # data home
    assert not (fixture.root / "processed").exists()  # raw files read in place, never written
    assert len(list_entries(processed)) >= 1

    def no_parse(*args, **kwargs):
        raise AssertionError("the raw files were parsed again")

    monkeypatch.setattr(CRCNSAA1Dataset, "_parse", no_parse)
    b = load(fixture.root, cache="use")
    assert b.provenance["manifest"]["key"] == a.provenance["manifest"]["key"]
    for s in range(a.get_S()):
        assert torch.equal(a.stims[s], b.stims[s])
        assert torch.equal(a.responses[s][3], b.responses[s][3])
    assert b.provenance["manifest"]["parameters"]["areas"] == ["Field_L", "MLd"]


# ---------------------------------------------------------------------------- quirks
def test_quirks_of_real_files(tmp_path):
    quirks = {"no_trailing_space": True, "orphan_stim": True, "orphan_spike": True,
              "missing_type_folder": True, "duplicate_stim": True, "empty_trials": True}
    info = write_crcns_aa1(tmp_path / "q", n_cells=6, seed=3, quirks=quirks)
    with pytest.warns(DataQuirkWarning) as record:
        ds = load(info.root)
    messages = " ".join(str(w.message) for w in record)
    assert "have no partner and were skipped" in messages
    assert "trials were merged as extra repeats" in messages
    check_all_responses(ds, info, DT, stim_key, trials_of(info))
    # the cell without a whole stimulus type has sentinels there
    missing = info.quirk_sites["missing_type_folder"][0]
    n = [m["cell_id"] for m in ds.nrn_meta].index(missing.split("/")[-2] if "/" in missing
                                                  else missing)
    lacking = [s for s, m in enumerate(ds.stim_meta)
               if m["type"] not in info.cell(ds.nrn_meta[n]["cell_id"]).stim_types]
    assert lacking and all(not ds.nrn_masks[s, n] for s in lacking)
    # empty trials are kept as zero-count repeats
    assert any(bool((ds.responses[s][k].sum(1) == 0).any())
               for s in range(ds.get_S()) for k in range(ds.get_N()) if ds.nrn_masks[s, k])


def test_stims_nobody_heard_are_dropped(tmp_path):
    info = write_crcns_aa1(tmp_path / "d", n_cells=2, seed=4)
    ds = load(info.root, areas="MLd")
    assert ds.get_S() == len(info.stims)  # every cell hears every stim in this fixture
    heard = {m["name"] for m in ds.stim_meta}
    assert heard == {s.name for s in info.stims}


# ---------------------------------------------------------------------------- bad input
def assert_no_entry(root):
    processed = CRCNSAA1Dataset.default_paths(root).processed
    assert not processed.exists() or list_entries(processed) == []


def test_missing_folder(tmp_path):
    with pytest.raises(MissingRawDataError, match="crcns-aa1.zip") as err:
        CRCNSAA1Dataset(tmp_path / "nowhere", dt_ms=DT)
    assert "download=True" in str(err.value) and "crcns.org/register" in str(err.value)
    assert_no_entry(tmp_path / "nowhere")


@pytest.mark.parametrize("damage, match", [
    ("stim_reference", r"stim1 names the stimulus 'FFFF.*which is not in"),
    ("spike_line", r"spike1.*line 2.*12\.5x"),
    ("sample_rate", r"44100.*32000|32000.*44100"),
    ("truncated", r"truncat|data chunk|RIFF"),
])
def test_bad_raw_files_name_the_file_and_leave_no_cache(tmp_path, damage, match):
    info = write_crcns_aa1(tmp_path / "bad", n_cells=2, n_conspecific=1, n_flatrip=1, seed=5)
    cell = info.cells[0]
    entry = info.responses_of(cell.cell_id)[0]
    if damage == "stim_reference":
        break_stim_reference(entry.stim_file)
    elif damage == "spike_line":
        corrupt_spike_file(entry.spike_file, line=2)
    elif damage == "sample_rate":
        set_wav_sample_rate(info.stims[0].path, 44100)
    else:
        truncate_file(info.stims[0].path, 2000)
    with pytest.raises(RawDataError, match=match) as err:
        CRCNSAA1Dataset(info.root, dt_ms=DT)
    text = str(err.value)
    assert str(info.root) in text or info.stims[0].path.name in text
    assert_no_entry(info.root)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"areas": "Cortex"}, ValueError, "areas: unknown value 'Cortex'.*'Field_L', 'MLd'"),
    ({"stimuli": []}, ValueError, "stimuli must name at least one"),
    ({"dt_ms": -1}, ValueError, "dt_ms must be a finite number > 0; got -1"),
    ({"smooth": "yes"}, TypeError, "smooth must be True, False or a window"),
    ({"n_mels": 0}, ValueError, "n_mels must be >= 1"),
    ({"compression": "sqrt"}, ValueError, "compression must be one of"),
    ({"cache": "maybe"}, ValueError, "cache must be one of"),
    ({"download": "yes"}, TypeError, "download must be True or False"),
    ({"animals": [""]}, ValueError, "animals must be 'all' or"),
])
def test_bad_arguments_fail_before_any_io(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        CRCNSAA1Dataset(tmp_path / "untouched", **kwargs)
    assert not (tmp_path / "untouched").exists()


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("archive_root", [None, "crcns-aa1"])
def test_download_extract_load_through_crcns_login(tmp_path, monkeypatch, archive_root):
    import deepstrf.io.download as dl
    from deepstrf.testing.http_server import LocalHTTPServer

    info = write_crcns_aa1(tmp_path / "src", n_cells=3, n_conspecific=1, n_flatrip=2, seed=6,
                           archive_dir=tmp_path / "archives", archive_root=archive_root)
    (archive,) = info.archives
    with LocalHTTPServer() as server:
        server.add_crcns_user("ada", "s3cret")
        server.add_crcns_dataset("aa-1", info.archive_payloads())
        monkeypatch.setattr(dl, "CRCNS_LOGIN_URL", server.crcns_login_url)
        monkeypatch.setattr(dl, "CRCNS_DOWNLOAD_URL", server.crcns_download_url)
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        target = tmp_path / "AA1"
        with pytest.raises(Exception, match="crcns.org/register"):
            CRCNSAA1Dataset(target, dt_ms=DT, download=True, username="ada", password="wrong")
        ds = CRCNSAA1Dataset(target, dt_ms=DT, smooth=False, download=True, username="ada",
                             password="s3cret")
        assert any(r.method == "POST" for r in server.requests)
        assert server.requests_for(f"/aa-1/{archive.name}")
    assert (target / "raw" / "all_stims").is_dir()
    assert (target / "raw" / archive.name).stat().st_size == archive.size
    reference = load(info.root)
    assert [m["cell_id"] for m in ds.nrn_meta] == [m["cell_id"] for m in reference.nrn_meta]
    for s in range(ds.get_S()):
        for n in range(ds.get_N()):
            assert torch.equal(ds.responses[s][n], reference.responses[s][n])
    # offline afterwards: served from the cache without the network
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    again = CRCNSAA1Dataset(target, dt_ms=DT, smooth=False)
    assert again.provenance["manifest"]["key"] == ds.provenance["manifest"]["key"]


def test_expected_counts_helper_is_exact():
    trials = [np.array([-1.0, 0.0, 4.999, 5.0, 9.999, 10.0, 14.999]), np.array([])]
    counts = expected_counts(trials, 5.0, 3)
    assert counts.tolist() == [[2, 2, 2], [0, 0, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert expected_counts([], 5.0, 2).shape == (0, 2)
