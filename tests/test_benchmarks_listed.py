"""`./dev bench` (benchmarks/run_all.py) runs every benchmark script there is."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_all_lists_every_benchmark():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    on_disk = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert sorted(run_all.SCRIPTS) == on_disk
    assert run_all.SCRIPTS[0] == "bench_data_api.py"  # the one that takes the arguments
