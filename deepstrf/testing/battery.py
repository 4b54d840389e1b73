"""Cases of the shared dataset test battery (``tests/test_battery.py``).

The battery runs the same checks over every dataset of
:data:`deepstrf.datasets.registry.DATASETS` (torchvision's ``DatasetTestCase``
idea): offline errors, argument checks before I/O, a fixture load whose counts
equal the fixture's ground truth, a cache hit on the second construction, a
complete catalogue entry and docs page. A dataset joins by registering a
:class:`BatteryCase` with :func:`register_case` in its fixture module under
``deepstrf/testing/fixtures/`` (every module there is imported by
:func:`cases`), for example::

    register_case(BatteryCase(
        name="ns1", docs_page="ns1.md",
        write=lambda root: write_ns1(root, n_units=3, n_repeats=2, write_wavs=False),
        pairs=lambda info: {(f"nat{r.number:02d}", r.cell_id): r.trials
                            for r in info.responses if r.trials and r.number <= 20},
        bad_kwargs=({"dt_ms": 7.0},)))

The battery fails for a registered dataset without a case.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IMPORT_ERRORS", "BatteryCase", "cases", "register_case", "spike_pairs"]


@dataclass(frozen=True)
class BatteryCase:
    """How the battery exercises one dataset.

    Attributes
    ----------
    name : str
        The dataset's short name in the catalogue.
    docs_page : str
        Its page under ``docs/datasets/``.
    write : callable
        ``write(root) -> FixtureInfo``: a small raw tree at ``root``.
    pairs : callable
        ``pairs(info) -> {(stim name, cell id): trials}``: the ground truth,
        every (stimulus, unit) pair the loader must return with the spike
        times (ms from onset) of each of its repeats. Names are
        ``stim_meta['name']`` and ``nrn_meta['cell_id']``.
    kwargs : dict
        Constructor arguments of the load (``smooth=False`` is added).
    dt_ms : float
        A bin width the dataset accepts.
    bad_kwargs : tuple of dict
        Further arguments its own rules refuse (before any I/O).
    compare : callable, optional
        ``compare(rows, truth, stim_meta)`` asserts that one pair's ``(R, T)``
        rows match its ``pairs`` entry, for responses that are not spike
        trains (binned rows, continuous traces). By default the truth is the
        spike times of each repeat and every row must sum to the spikes in
        the grid window ``[-inset_ms, T * dt - inset_ms)`` ms from onset.
    """

    name: str
    docs_page: str
    write: Callable[[Path], Any]
    pairs: Callable[[Any], Mapping[tuple[str, str], Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    dt_ms: float = 5.0
    bad_kwargs: tuple[dict[str, Any], ...] = ()
    compare: Callable[[Any, Any, Mapping[str, Any]], None] | None = None


_CASES: dict[str, BatteryCase] = {}
#: fixture module -> the error its import raised (reported by the battery, not hidden)
IMPORT_ERRORS: dict[str, str] = {}


def register_case(case: BatteryCase) -> BatteryCase:
    """Add a dataset to the battery (idempotent for the same name)."""
    if not isinstance(case, BatteryCase):
        raise TypeError(f"register_case needs a BatteryCase; got {type(case).__name__}.")
    _CASES[case.name] = case
    return case


def cases() -> dict[str, BatteryCase]:
    """Every registered case, after importing every fixture module (which register theirs)."""
    import deepstrf.testing.fixtures as fixtures

    for module in pkgutil.iter_modules(fixtures.__path__):
        name = f"{fixtures.__name__}.{module.name}"
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - one broken module must not hide the rest
            IMPORT_ERRORS[name] = f"{type(err).__name__}: {err}"
    return dict(_CASES)


def spike_pairs(info: Any, keep_cell: Callable[[Any], bool] = lambda cell: True
                ) -> dict[tuple[str, str], list[Any]]:
    """Ground truth of the CRCNS-style fixtures: paired protocol entries, merged per pair."""
    cells = {c.cell_id: c for c in info.cells}
    out: dict[tuple[str, str], list[Any]] = {}
    for rec in info.responses:
        if rec.paired and rec.trials and keep_cell(cells[rec.cell_id]):
            out.setdefault((rec.stim_name, rec.cell_id), []).extend(rec.trials)
    return out


def _crcns_cases() -> None:
    from deepstrf.testing.fixtures import write_crcns_aa1, write_crcns_aa2, write_crcns_aa4

    register_case(BatteryCase(
        name="aa1", docs_page="crcns-aa1.md",
        write=lambda root: write_crcns_aa1(root, n_cells=2, n_conspecific=1, n_flatrip=1,
                                           seed=1),
        pairs=spike_pairs))
    register_case(BatteryCase(
        name="aa2", docs_page="crcns-aa2.md",
        write=lambda root: write_crcns_aa2(root, n_cells=3, seed=1), pairs=spike_pairs))
    register_case(BatteryCase(
        name="aa4", docs_page="crcns-aa4.md",
        write=lambda root: write_crcns_aa4(root, animals=("GreBlu9508M",), n_units=2, seed=1),
        pairs=lambda info: spike_pairs(
            info, lambda c: c.meta.get("sort_type") in ("single", "multi")),
        kwargs={"animals": "GreBlu9508M"}))


_crcns_cases()
