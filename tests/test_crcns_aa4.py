"""CRCNSAA4Dataset on fixture trees in the distributed HDF5 layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepstrf.datasets.audio.crcns_aa4 import CRCNSAA4Dataset
from deepstrf.errors import MissingRawDataError, RawDataError
from deepstrf.testing.fixtures import delete_h5_group, write_crcns_aa4
from tests._aa_helpers import check_all_responses, merged_trials

DT = 5.0
ANIMALS = ("GreBlu9508M", "YelBlu6903F")


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_crcns_aa4(tmp_path_factory.mktemp("aa4") / "tree", animals=ANIMALS, n_units=3,
                           seed=7, quirks={"empty_trials": True, "mixed_attr_types": True,
                                           "missing_depth": True, "singl_typo": True,
                                           "noise_units": True})


def load(root, **kw):
    kw.setdefault("dt_ms", DT)
    kw.setdefault("smooth", False)
    kw.setdefault("cache", "off")
    kw.setdefault("animals", ANIMALS)
    return CRCNSAA4Dataset(root, **kw)


def trials_of(info):
    # every protocol entry of the unit for that stimulus, in the HDF5 file's group order
    return lambda cell, md5, _type: merged_trials(info, cell, md5, order=lambda r: r.group)


def wanted(info, unit_types=("single", "multi")):
    sort = {"singl": "single"}
    return [c for c in info.cells
            if sort.get(c.meta["sort_type"], c.meta["sort_type"]) in unit_types]


def test_every_response_equals_independent_counts(fixture):
    ds = load(fixture.root)
    assert sorted(m["cell_id"] for m in ds.nrn_meta) == sorted(c.cell_id for c in wanted(fixture))
    pairs = check_all_responses(ds, fixture, DT, lambda m: (m["name"], m["type"]),
                                trials_of(fixture))
    assert pairs > 0
    # a stimulus heard in two animals is one stimulus (same md5)
    assert len({m["name"] for m in ds.stim_meta}) == ds.get_S()
    shared = [s for s in fixture.stims if len(s.meta["numbers"]) == 2]
    assert shared and all(s.name in {m["name"] for m in ds.stim_meta} for s in shared)


def test_empty_trials_are_zero_count_repeats(fixture):
    ds = load(fixture.root)
    cell_id = fixture.quirk_sites["empty_trials"][0].split("/")[0].removesuffix(".h5")
    cell_id = next(c.cell_id for c in fixture.cells if c.cell_id in
                   fixture.quirk_sites["empty_trials"][0] or c.cell_id == cell_id)
    n = [m["cell_id"] for m in ds.nrn_meta].index(cell_id)
    zero_rows = sum(int((ds.responses[s][n].sum(1) == 0).sum())
                    for s in range(ds.get_S()) if ds.nrn_masks[s, n])
    assert zero_rows > 0


def test_metadata_including_quirky_attributes(fixture):
    ds = load(fixture.root)
    for meta in ds.nrn_meta:
        cell = fixture.cell(meta["cell_id"])
        assert meta["animal_id"] == cell.animal and meta["sex"] == cell.animal[-1]
        assert meta["site"] == cell.meta["site"] and meta["electrode"] == cell.meta["electrode"]
        assert meta["sort_id"] == cell.meta["sort_id"]
        assert meta["subsort_id"] == cell.meta["subsort_id"]
        assert meta["sort_type"] in ("single", "multi")
        for side in ("ldepth", "rdepth"):
            expected = cell.meta[side]
            if expected is None:
                assert math.isnan(meta[side])
            else:
                assert meta[side] == float(expected)
    for meta in ds.stim_meta:
        stim = fixture.stim(meta["name"])
        assert meta["type"] == stim.type and meta["class"] == stim.meta["class"]
        assert meta["sample_rate"] == 24414.0


def test_unit_types_stimuli_and_animals(fixture):
    everything = load(fixture.root, unit_types=("single", "multi", "noise", "tdt"))
    assert everything.get_N() == len(fixture.cells) > load(fixture.root).get_N()
    calls = load(fixture.root, stimuli="call")
    assert {m["type"] for m in calls.stim_meta} == {"call"}
    one = load(fixture.root, animals="YelBlu6903F")
    assert {m["animal_id"] for m in one.nrn_meta} == {"YelBlu6903F"}
    with pytest.raises(ValueError, match="animals: unknown value 'Robin'"):
        load(fixture.root, animals="Robin")


def test_spectrogram_grid_at_the_tdt_rate(fixture):
    ds = load(fixture.root)
    for s, meta in enumerate(ds.stim_meta):
        stim = fixture.stim(meta["name"])
        T = math.ceil(stim.n_samples / 24414 * 1000 / DT)
        assert ds.stims[s].shape == (1, 32, T)
    wave = load(fixture.root, return_waveform=True)
    assert wave.audio_fs == 24000 and wave.hop == 120
    assert all(x.shape[1] == wave.response_store.T(s) * 120 for s, x in enumerate(wave.stims))


def test_missing_group_names_the_file(tmp_path):
    info = write_crcns_aa4(tmp_path / "bad", animals=("GreBlu9508M",), n_units=1, seed=8)
    record = next(r for r in info.responses if r.group)
    trial_group = f"{record.group}/1"
    delete_h5_group(record.spike_file, f"{trial_group}/spike_times")
    with pytest.raises(RawDataError, match=r"\.h5: trial .* has no 'spike_times' dataset") as err:
        CRCNSAA4Dataset(info.root, animals="GreBlu9508M", dt_ms=DT)
    assert record.spike_file.name in str(err.value)
    processed = CRCNSAA4Dataset.default_paths(info.root).processed
    assert not processed.exists() or not any(p for p in processed.iterdir()
                                             if not p.name.startswith("."))


def test_missing_animals_list_their_archives(tmp_path):
    info = write_crcns_aa4(tmp_path / "t", animals=("GreBlu9508M",), n_units=1, seed=9)
    with pytest.raises(MissingRawDataError) as err:
        CRCNSAA4Dataset(info.root, dt_ms=DT)  # all six birds requested
    text = str(err.value)
    assert "YelBlu6903F.tar.gz" in text and "GreBlu9508M.tar.gz" not in text


def test_cached_second_load(fixture, monkeypatch):
    a = load(fixture.root, cache="use")
    monkeypatch.setattr(CRCNSAA4Dataset, "_parse", lambda *a, **k: pytest.fail("parsed again"))
    b = load(fixture.root, cache="use")
    assert all(torch.equal(torch.nan_to_num(a.responses[s][n], -1.0),
                           torch.nan_to_num(b.responses[s][n], -1.0))
               for s in range(a.get_S()) for n in range(a.get_N()))
    assert np.isnan(b.nrn_meta[[m["cell_id"] for m in b.nrn_meta].index(
        next(c.cell_id for c in fixture.cells if c.meta["ldepth"] is None
             and c in wanted(fixture)))]["ldepth"])
