"""Every registered dataset: complete facts, early argument checks, offline errors, a fixture load."""

from __future__ import annotations

import re

import pytest

from deepstrf.cli import main
from deepstrf.datasets.registry import DATASETS, get_dataset, list_datasets
from deepstrf.errors import MissingRawDataError
from deepstrf.testing.fixtures import (
    write_crcns_aa1,
    write_crcns_aa2,
    write_crcns_aa4,
    write_le_2025,
)

#: A fixture writer for every registered dataset (a new dataset must add one here).
FIXTURES = {
    "aa1": lambda root: write_crcns_aa1(root, n_cells=2, n_conspecific=1, n_flatrip=1, seed=1),
    "aa2": lambda root: write_crcns_aa2(root, n_cells=3, seed=1),
    "aa4": lambda root: write_crcns_aa4(root, animals=("GreBlu9508M",), n_units=2, seed=1),
    "le2025": lambda root: write_le_2025(root, experiments=("nat8b",), n_motifs=1, seed=1),
}
LOAD_KWARGS = {"aa4": {"animals": "GreBlu9508M"}}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


def test_every_dataset_has_a_fixture_writer():
    assert set(FIXTURES) == set(DATASETS)


def test_registry_is_consistent():
    infos = list_datasets()
    assert [i.name for i in infos] == list(DATASETS)
    folders = [get_dataset(n).folder for n in DATASETS]
    assert len(set(folders)) == len(folders)
    with pytest.raises(KeyError, match="known datasets: aa1, aa2, aa4"):
        get_dataset("nope")


@pytest.mark.parametrize("name", list(DATASETS))
def test_facts_and_docs(name):
    cls = get_dataset(name)
    assert get_dataset(cls.__name__) is cls
    info = cls.info
    for field in ("title", "species", "area", "signal", "repeats", "download_size", "citation",
                  "url"):
        assert getattr(info, field).strip(), field
    assert re.fullmatch(r"10\.\d{4,}/\S+", info.doi)
    assert info.access in ("open", "CRCNS login")
    assert cls.remote_files and cls.raw_markers and isinstance(cls.cache_version, int)
    doc = cls.__doc__
    assert "species" in doc and "References" in doc and info.doi in doc
    assert "Parameters" in doc and "Preprocessing" in doc


@pytest.mark.parametrize("name", list(DATASETS))
def test_bad_argument_fails_before_any_io(name, tmp_path):
    with pytest.raises(ValueError, match="dt_ms"):
        get_dataset(name)(tmp_path / "untouched", dt_ms=0)
    assert not (tmp_path / "untouched").exists()


@pytest.mark.parametrize("name", list(DATASETS))
def test_offline_without_files_lists_what_is_missing(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    cls = get_dataset(name)
    with pytest.raises(MissingRawDataError) as err:
        cls(tmp_path / "empty", dt_ms=5.0, **LOAD_KWARGS.get(name, {}))
    text = str(err.value)
    assert "offline" in text
    # the CRCNS account help only where a login is needed
    assert ("crcns.org/register" in text) == (cls.info.access == "CRCNS login")
    assert any(f.name in text for f in cls.remote_files)


@pytest.mark.parametrize("name", list(DATASETS))
def test_fixture_loads_and_cli_info(name, tmp_path, capsys):
    cls = get_dataset(name)
    FIXTURES[name](tmp_path / "data" / "raw")
    ds = cls(tmp_path / "data", dt_ms=5.0, **LOAD_KWARGS.get(name, {}))
    assert ds.get_N() > 0 and len(ds) > 0 and ds.provenance["manifest"]["dataset"] == cls.__name__
    assert main(["info", name, "--path", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "present" in out and ds.provenance["manifest"]["key"] in out
