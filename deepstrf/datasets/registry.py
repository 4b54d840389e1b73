"""The catalogue of public datasets, read by the command line.

Each entry maps a short name to the module and class that load the dataset;
the facts (species, area, size, access, citation) live on the class as its
:class:`~deepstrf.datasets._source.DatasetInfo`, so they are written once.
"""

from __future__ import annotations

import importlib

from deepstrf.datasets._source import DatasetInfo, SourceDataset

__all__ = ["DATASETS", "get_dataset", "list_datasets"]

#: short name -> "module:Class"
DATASETS: dict[str, str] = {
    "aa1": "deepstrf.datasets.audio.crcns_aa1:CRCNSAA1Dataset",
    "aa2": "deepstrf.datasets.audio.crcns_aa2:CRCNSAA2Dataset",
    "aa4": "deepstrf.datasets.audio.crcns_aa4:CRCNSAA4Dataset",
    "le2025": "deepstrf.datasets.audio.le_2025:Le2025Dataset",
    "nat4": "deepstrf.datasets.audio.nat4:NAT4Dataset",
    "ns1": "deepstrf.datasets.audio.ns1:NS1Dataset",
}


def get_dataset(name: str) -> type[SourceDataset]:
    """The dataset class registered under ``name`` (case-insensitive; class names work too).

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string; got {type(name).__name__}.")
    wanted = name.strip().lower()
    for short, target in DATASETS.items():
        if wanted in (short, target.rsplit(":", 1)[1].lower()):
            module, cls = target.split(":")
            return getattr(importlib.import_module(module), cls)
    known = ", ".join(sorted(DATASETS))
    raise KeyError(f"unknown dataset {name!r}; known datasets: {known}. "
                   "`deepstrf list` shows them with their facts.")


def list_datasets() -> list[DatasetInfo]:
    """Facts about every registered dataset, in catalogue order."""
    return [get_dataset(name).info for name in DATASETS]
