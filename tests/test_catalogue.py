"""The catalogue itself: names, lookups, folders. Per-dataset checks are in test_battery.py."""

from __future__ import annotations

import pytest

from deepstrf.datasets.registry import DATASETS, get_dataset, list_datasets


def test_registry_is_consistent():
    infos = list_datasets()
    assert [i.name for i in infos] == list(DATASETS)
    folders = [get_dataset(n).folder for n in DATASETS]
    assert len(set(folders)) == len(folders)
    assert get_dataset("NS1dataset") is get_dataset("ns1")
    with pytest.raises(KeyError, match="known datasets: " + ", ".join(sorted(DATASETS))):
        get_dataset("nope")
    with pytest.raises(TypeError, match="string"):
        get_dataset(3)
