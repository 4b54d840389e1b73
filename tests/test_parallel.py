"""Tests of deepstrf.preprocessing.parallel.parallel_map (joblib, tqdm, dask)."""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest

from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.preprocessing.parallel import PROGRESS_ENV, parallel_map
from deepstrf.preprocessing.spikes import bin_spike_times

REPO = Path(__file__).resolve().parents[1]


def spike_trials(n_pairs: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Real-ish inputs: per (stim, neuron) pair, 10 trials of spike times in ms."""
    rng = np.random.default_rng(seed)
    return [[np.sort(rng.uniform(-500, 2500, rng.integers(0, 80))) for _ in range(10)]
            for _ in range(n_pairs)]


BIN = functools.partial(bin_spike_times, dt_ms=5.0, n_bins=400)


def test_results_in_input_order_sequential():
    assert parallel_map(math.sqrt, [16, 1, 9, 4]) == [4.0, 1.0, 3.0, 2.0]
    assert parallel_map(abs, iter([-3, 2, -1])) == [3, 2, 1]
    assert parallel_map(abs, []) == []


@pytest.mark.parametrize("n_jobs", [2, -1, None])
def test_process_pool_matches_sequential(n_jobs):
    items = spike_trials(24)
    expected = [BIN(trials) for trials in items]
    got = parallel_map(BIN, items, n_jobs=n_jobs)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_enclosing_parallel_config_is_used():
    seen: list[int] = []

    def record(x: int) -> int:  # a closure: only thread backends can run it
        seen.append(x)
        return x * 10

    with joblib.parallel_config(backend="threading", n_jobs=2):
        assert parallel_map(record, range(6), n_jobs=None) == [0, 10, 20, 30, 40, 50]
    assert sorted(seen) == list(range(6))


@pytest.mark.parametrize("n_jobs", [0, 1.5, True, "2", [1]])
def test_bad_n_jobs(n_jobs):
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
        parallel_map(abs, [1], n_jobs=n_jobs)


def test_bad_func_desc_and_progress():
    with pytest.raises(TypeError, match="callable"):
        parallel_map(5, [1])
    with pytest.raises(TypeError, match="desc"):
        parallel_map(abs, [1], desc=3)
    with pytest.raises(TypeError, match="progress"):
        parallel_map(abs, [1], progress="yes")


def parse_or_fail(value: float) -> float:
    if value < 0:
        raise RawDataError(f"negative value {value}")
    return value * 2


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_worker_exception_keeps_type_and_names_the_item(n_jobs):
    with pytest.raises(RawDataError, match="negative value -7") as info:
        parallel_map(parse_or_fail, [1.0, 2.0, -7.0, 3.0, -9.0], n_jobs=n_jobs, desc="parsing")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "parallel_map('parsing')" in notes
    assert "item 2: -7.0" in notes
    if n_jobs > 1:
        assert "Traceback in the worker" in notes and "parse_or_fail" in notes


def test_progress_bar_switches(capsys, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    parallel_map(abs, [1, -2, 3], desc="binning", progress=True)
    err = capsys.readouterr().err
    assert "binning" in err and "3/3" in err
    parallel_map(abs, [1, -2, 3], desc="binning", progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(PROGRESS_ENV, "1")
    parallel_map(abs, [1, -2, 3], desc="env-on")
    assert "env-on" in capsys.readouterr().err
    monkeypatch.setenv(PROGRESS_ENV, "0")
    parallel_map(abs, [1, -2, 3], desc="env-off")
    assert capsys.readouterr().err == ""
    # An explicit argument wins over the environment.
    parallel_map(abs, [1], desc="forced", progress=True)
    assert "forced" in capsys.readouterr().err


def test_unknown_progress_setting_raises(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "maybe")
    with pytest.raises(ValueError, match=f"{PROGRESS_ENV} must be one of .*got 'maybe'"):
        parallel_map(abs, [1])


def test_dask_cluster_gives_identical_results(monkeypatch):
    distributed = pytest.importorskip("distributed")
    # Worker processes are spawned fresh: let them import deepstrf from this checkout.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    items = spike_trials(40, seed=5)
    expected = parallel_map(BIN, items, n_jobs=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            with joblib.parallel_config(backend="dask"):
                got = parallel_map(BIN, items, n_jobs=-1)
        assert len(stream.data) > 0  # the work really ran on the cluster
        workers = {task["worker"] for task in stream.data}
        assert workers <= set(client.scheduler_info()["workers"])
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
        bad = items[:3] + [[np.array([1.0, np.nan])]] + items[3:]
        with joblib.parallel_config(backend="dask"):
            with pytest.raises(ValueError, match="must be finite") as info:
                parallel_map(BIN, bad, n_jobs=-1, desc="dask binning")
        assert "item 3" in "\n".join(info.value.__notes__)


def _blas_threads(_: object) -> list[int]:
    from threadpoolctl import threadpool_info

    return sorted({pool["num_threads"] for pool in threadpool_info()})


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_every_task_runs_single_threaded(n_jobs):
    # the main process has as many BLAS threads as cores; its tasks must not
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    assert parallel_map(_blas_threads, range(4), n_jobs=n_jobs) == [[1]] * 4
    assert [pool["num_threads"] for pool in threadpool_info()] == before  # restored


def _matmul_bits(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.random((64, 513), dtype=np.float32)
    b = rng.random((513, 400), dtype=np.float32)
    return (a @ b).tobytes()


def test_float32_products_equal_in_process_and_in_workers():
    # the rounding of a multi-threaded sgemm differs from a one-thread one;
    # tasks must give the same bits whichever process ran them
    here = parallel_map(_matmul_bits, range(3), n_jobs=1)
    there = parallel_map(_matmul_bits, range(3), n_jobs=2)
    assert here == there


def _warn_for(x):
    if x % 2:
        warnings.warn(f"odd item {x}", DataQuirkWarning)
    if x == 5:
        raise ValueError("five")
    return x


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_warnings_given_in_workers_reach_the_caller_in_input_order(n_jobs):
    """A task's warnings come back from worker processes, so what a build reports does not
    depend on n_jobs; the caller's filters decide what is shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert parallel_map(_warn_for, [0, 1, 2, 3], n_jobs=n_jobs) == [0, 1, 2, 3]
    assert [(w.category, str(w.message)) for w in caught] == [
        (DataQuirkWarning, "odd item 1"), (DataQuirkWarning, "odd item 3")]
    assert all(w.filename.endswith("test_parallel.py") for w in caught)
    # the warnings of a failing task are given before its error is raised
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="five"):
            parallel_map(_warn_for, [5], n_jobs=n_jobs)
    assert [str(w.message) for w in caught] == ["odd item 5"]
    # the caller's filters apply
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQuirkWarning)
        with pytest.raises(DataQuirkWarning, match="odd item 1"):
            parallel_map(_warn_for, [0, 1], n_jobs=n_jobs)
