"""CRCNSAA2Dataset on fixture trees, on the real aa-2 files, and through its archives."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest
import torch

from deepstrf.datasets.audio.crcns_aa2 import CRCNSAA2Dataset
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.testing.fixtures import write_crcns_aa2
from tests._aa_helpers import check_all_responses, expected_counts, merged_trials

DT = 5.0


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_crcns_aa2(tmp_path_factory.mktemp("aa2") / "tree", n_cells=9, seed=2,
                           quirks={"shared_wav_across_types": True})


def load(root, **kw):
    kw.setdefault("dt_ms", DT)
    kw.setdefault("smooth", False)
    kw.setdefault("cache", "off")
    return CRCNSAA2Dataset(root, **kw)


def trials_of(info):
    return lambda cell, name, stim_type: merged_trials(info, cell, name, stim_type)


def test_every_response_equals_independent_counts(fixture):
    ds = load(fixture.root)
    check_all_responses(ds, fixture, DT, lambda m: (m["name"], m["type"]), trials_of(fixture))
    referenced = {(r.stim_type, r.stim_name) for r in fixture.responses if r.paired}
    assert {(m["type"], m["name"]) for m in ds.stim_meta} == referenced
    unused = [s.name for s in fixture.stims if not s.referenced]
    assert unused and not {m["name"] for m in ds.stim_meta} & set(unused)


def test_a_wav_played_in_two_classes_is_one_stimulus_per_class(fixture):
    ds = load(fixture.root)
    by_name = {}
    for m in ds.stim_meta:
        by_name.setdefault(m["name"], set()).add(m["type"])
    assert any(types == {"conspecific", "songrip"} for types in by_name.values())


def test_regions_and_area_aliases(fixture):
    ds = load(fixture.root)
    for meta in ds.nrn_meta:
        cell = fixture.cell(meta["cell_id"])
        assert meta["area"] == cell.area
        group = {"mld": "MLd"}.get(cell.area, "Field_L" if cell.area.startswith("L") else cell.area)
        assert meta["area_group"] == group
    field_l = load(fixture.root, areas="Field_L")
    assert {m["area"] for m in field_l.nrn_meta} <= {"L", "L1", "L2a", "L2b", "L3"}
    assert field_l.get_N() == sum(c.area.startswith("L") for c in fixture.cells
                                  if any(r.paired for r in fixture.responses_of(c.cell_id)))
    assert load(fixture.root, areas="L").get_N() == field_l.get_N()
    mld = [c for c in fixture.cells if c.area == "mld"]
    if mld:
        assert load(fixture.root, areas="MLd").get_N() == len(mld)
    with pytest.raises(ValueError, match="unknown value 'Cortex'"):
        load(fixture.root, areas="Cortex")


def test_first_row_of_header_less_csv_is_a_cell(fixture):
    first_cell = (fixture.root / "cell_regions.csv").read_text().splitlines()[0].split(",")[0]
    ds = load(fixture.root)
    assert first_cell in [m["cell_id"] for m in ds.nrn_meta]
    assert ds.nrn_meta[[m["cell_id"] for m in ds.nrn_meta].index(first_cell)]["area"] == \
        fixture.cell(first_cell).area


def test_missing_regions_file_warns(tmp_path):
    info = write_crcns_aa2(tmp_path / "t", n_cells=3, seed=3)
    (info.root / "cell_regions.csv").unlink()
    with pytest.warns(DataQuirkWarning, match="cell_regions.csv is missing"):
        ds = load(info.root)
    assert {m["area"] for m in ds.nrn_meta} == {"None"}


def test_bad_regions_file(tmp_path):
    info = write_crcns_aa2(tmp_path / "t", n_cells=3, seed=3)
    (info.root / "cell_regions.csv").write_text("cellA,Cortex\n")
    with pytest.raises(RawDataError, match=r"cell_regions.csv, line 1: unknown region 'Cortex'"):
        load(info.root)


def test_cache_and_archives_end_to_end(tmp_path, monkeypatch):
    import deepstrf.io.download as dl
    from deepstrf.testing.http_server import LocalHTTPServer

    info = write_crcns_aa2(tmp_path / "src", n_cells=4, seed=4, archive_dir=tmp_path / "arch")
    names = {a.name for a in info.archives}
    assert names == {"crcns-aa2-docs.tar.gz", "crcns-aa2-all_cells.tar.gz",
                     "crcns-aa2-all_stims.tar.gz"}
    # the release's checksums are declared; the fixture's archives differ, so declare theirs
    records = {a.name: a for a in info.archives}
    files = tuple(dl.RemoteFile(f.name, crcns=f.crcns, size=records[f.name].size,
                                md5=records[f.name].md5) for f in CRCNSAA2Dataset.remote_files)
    monkeypatch.setattr(CRCNSAA2Dataset, "remote_files", files)
    with LocalHTTPServer() as server:
        server.add_crcns_user("ada", "pw")
        server.add_crcns_dataset("aa-2", info.archive_payloads())
        monkeypatch.setattr(dl, "CRCNS_LOGIN_URL", server.crcns_login_url)
        monkeypatch.setattr(dl, "CRCNS_DOWNLOAD_URL", server.crcns_download_url)
        ds = CRCNSAA2Dataset(tmp_path / "AA2", dt_ms=DT, smooth=False, download=True,
                             username="ada", password="pw")
    assert (tmp_path / "AA2" / "raw" / "all_cells").is_dir()
    assert (tmp_path / "AA2" / "raw" / "cell_regions.csv").is_file()
    ref = load(info.root)
    assert [m["cell_id"] for m in ds.nrn_meta] == [m["cell_id"] for m in ref.nrn_meta]
    assert all(torch.equal(torch.nan_to_num(ds.responses[s][n], -1.0),
                           torch.nan_to_num(ref.responses[s][n], -1.0))
               for s in range(ds.get_S()) for n in range(ds.get_N()))


def test_release_checksum_mismatch_is_reported(tmp_path, monkeypatch):
    import deepstrf.io.download as dl
    from deepstrf.errors import ChecksumError
    from deepstrf.testing.http_server import LocalHTTPServer

    info = write_crcns_aa2(tmp_path / "src", n_cells=2, seed=5, archive_dir=tmp_path / "arch")
    with LocalHTTPServer() as server:
        server.add_crcns_user("ada", "pw")
        server.add_crcns_dataset("aa-2", info.archive_payloads())
        monkeypatch.setattr(dl, "CRCNS_LOGIN_URL", server.crcns_login_url)
        monkeypatch.setattr(dl, "CRCNS_DOWNLOAD_URL", server.crcns_download_url)
        with pytest.raises(ChecksumError, match="expected"):
            CRCNSAA2Dataset(tmp_path / "AA2", dt_ms=DT, download=True, username="ada",
                            password="pw")
    raw = tmp_path / "AA2" / "raw"
    assert not any(p.suffix == ".gz" for p in raw.iterdir()) if raw.exists() else True


# ---------------------------------------------------------------------------- real files
def _parse_real_spikes(path):
    text = path.read_text()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return [np.array([float(tok) for tok in line.split()]) for line in lines]


@pytest.mark.realdata
def test_real_cell_yy1617_4_A_in_place(realdata):
    root = realdata / "aa2"
    with pytest.warns(DataQuirkWarning) as record:
        ds = load(root, cache="use")
    messages = " ".join(str(w.message) for w in record)
    assert "cell_regions.csv is missing" in messages
    assert "have no partner" in messages  # oo0909_4_A holds spike files only
    assert [m["cell_id"] for m in ds.nrn_meta] == ["yy1617_4_A"]
    cell_dir = root / "all_cells" / "yy1617_4_A" / "conspecific"
    assert ds.get_S() == 20 and {m["type"] for m in ds.stim_meta} == {"conspecific"}
    for k in range(1, 21):
        wav = (cell_dir / f"stim{k}").read_text().strip()
        s = [m["name"] for m in ds.stim_meta].index(wav)
        with wave.open(str(root / "all_stims" / wav)) as w:
            assert w.getframerate() == 32000
            n_samples = w.getnframes()
        T = math.ceil(n_samples / 32000 * 1000 / DT)
        trials = _parse_real_spikes(cell_dir / f"spike{k}")
        assert len(trials) == 10
        expected = expected_counts(trials, DT, T)
        np.testing.assert_array_equal(ds.responses[s][0].numpy(), expected)
        assert ds.stims[s].shape == (1, 32, T)
    assert not (root / "processed").exists()  # the read-only source is left untouched
    assert ds.provenance["manifest"] is not None  # cached under the data home instead
