"""The shared battery: the same checks over every registered dataset.

Cases come from :mod:`deepstrf.testing.battery`; a dataset joins by
registering one in its fixture module (see that module's docstring).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from deepstrf.cli import main
from deepstrf.datasets.registry import DATASETS, get_dataset
from deepstrf.errors import MissingRawDataError
from deepstrf.testing.battery import IMPORT_ERRORS, cases

CASES = cases()
NAMES = list(DATASETS)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


def _case(name):
    if name not in CASES:
        pytest.fail(f"dataset {name!r} is registered but has no battery case; add one with "
                    "deepstrf.testing.battery.register_case in its fixture module.")
    return CASES[name]


def test_every_registered_dataset_has_a_case():
    assert not IMPORT_ERRORS, IMPORT_ERRORS
    assert set(DATASETS) <= set(CASES), sorted(set(DATASETS) - set(CASES))


@pytest.mark.parametrize("name", NAMES)
def test_catalogue_entry_and_docs_page_are_complete(name):
    case, cls = _case(name), get_dataset(name)
    info = cls.info
    assert info.name == name and get_dataset(cls.__name__) is cls
    for attr in ("title", "species", "area", "signal", "repeats", "download_size", "citation",
                 "url"):
        assert getattr(info, attr).strip(), attr
    assert re.fullmatch(r"10\.\d{4,}/\S+", info.doi)
    assert info.access in ("open", "CRCNS login")
    assert cls.remote_files and cls.raw_markers and isinstance(cls.cache_version, int)
    assert all(f.crcns is None for f in cls.remote_files) == (info.access == "open")
    doc = cls.__doc__
    for section in ("species", "Preprocessing", "Parameters", "References", info.doi):
        assert section in doc, section
    assert "%(" not in doc  # every shared parameter text was filled
    page = (REPO / "docs" / "datasets" / case.docs_page).read_text()
    assert cls.__name__ in page and info.doi in page
    assert info.url in page  # where the data come from
    readme = (REPO / "README.md").read_text()
    assert re.search(rf"^\| `{name}` \| `{cls.__name__}` \|", readme, re.M)


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_fail_before_any_io(name, tmp_path):
    case, cls = _case(name), get_dataset(name)
    for kwargs in ({"dt_ms": 0}, {"dt_ms": -5.0}, {"cache": "sometimes"},
                   {"download": "yes"}, *case.bad_kwargs):
        with pytest.raises((ValueError, TypeError)):
            cls(tmp_path / "untouched", **{**case.kwargs, **kwargs})
    assert not (tmp_path / "untouched").exists() and not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", NAMES)
def test_offline_without_files_lists_what_is_missing(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    case, cls = _case(name), get_dataset(name)
    with pytest.raises(MissingRawDataError) as err:
        cls(tmp_path / "empty", dt_ms=case.dt_ms, **case.kwargs)
    text = str(err.value)
    assert "offline" in text and "download=True" in text
    assert any(f.name in text for f in cls.remote_files)
    if cls.info.access == "open":
        assert "crcns" not in text.lower() and "password" not in text.lower()
        assert any(f.url in text for f in cls.remote_files if f.name in text)
    else:
        assert "crcns.org/register" in text


def _ticks_in_window(trial, n_bins, dt_ms, inset_ms=0.0):
    """Spikes in the grid window, counted on whole microseconds (how fixtures write times)."""
    ticks = np.round(np.asarray(trial, dtype=np.float64) * 1000).astype(np.int64)
    lo = -round(inset_ms * 1000)
    return int(((ticks >= lo) & (ticks < lo + round(n_bins * dt_ms * 1000))).sum())


@pytest.mark.parametrize("name", NAMES)
def test_fixture_loads_with_the_ground_truth_counts_then_hits_the_cache(name, tmp_path,
                                                                       capsys):
    case, cls = _case(name), get_dataset(name)
    info = case.write(tmp_path / "data" / "raw")
    kwargs = {"dt_ms": case.dt_ms, "smooth": False, **case.kwargs}
    ds = cls(tmp_path / "data", **kwargs)
    truth = case.pairs(info)
    stims = {m["name"]: s for s, m in enumerate(ds.stim_meta)}
    cells = {m["cell_id"]: n for n, m in enumerate(ds.nrn_meta)}
    assert {k for k, _ in truth} == set(stims) and {c for _, c in truth} == set(cells)
    assert int(ds.nrn_masks.sum()) == len(truth)
    for (stim, cell), trials in truth.items():
        s, n = stims[stim], cells[cell]
        rows, meta = ds.responses[s][n].numpy(), ds.stim_meta[s]
        if case.compare is not None:
            case.compare(rows, trials, meta)
            continue
        T, inset = meta["n_bins"], meta.get("inset_ms", 0.0)
        assert rows.shape == (len(trials), T), (stim, cell)
        np.testing.assert_array_equal(rows.sum(axis=1), [_ticks_in_window(t, T, case.dt_ms, inset)
                                                         for t in trials])
    assert ds.provenance["cache_hit"] is False
    again = cls(tmp_path / "data", **kwargs)
    assert again.provenance["cache_hit"] is True
    assert again.provenance["manifest"]["key"] == ds.provenance["manifest"]["key"]
    for s in range(ds.get_S()):
        assert again.stims[s].equal(ds.stims[s])
    assert main(["info", name, "--path", str(tmp_path / "data")]) == 0
    assert ds.provenance["manifest"]["key"] in capsys.readouterr().out
