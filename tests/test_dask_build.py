"""Builds are bit for bit the same in this process, in loky workers and on a dask cluster."""

from __future__ import annotations

import logging

import joblib
import pytest

from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset
from deepstrf.testing.fixtures import write_crcns_aa1


def _assert_identical(ds, reference) -> None:
    assert [m["cell_id"] for m in ds.nrn_meta] == [m["cell_id"] for m in reference.nrn_meta]
    assert ds.get_S() == reference.get_S() and ds.get_N() == reference.get_N()
    for s in range(ds.get_S()):
        # bit for bit: compare the bytes, not values within a tolerance
        assert ds.stims[s].numpy().tobytes() == reference.stims[s].numpy().tobytes(), s
        for n in range(ds.get_N()):
            assert ds.responses[s][n].numpy().tobytes() == \
                reference.responses[s][n].numpy().tobytes(), (s, n)


@pytest.fixture
def aa1_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    return write_crcns_aa1(tmp_path / "aa1", n_cells=4, n_conspecific=2, n_flatrip=2, seed=11)


def test_n_jobs_1_and_2_build_identical_datasets(aa1_tree):
    reference = CRCNSAA1Dataset(aa1_tree.root, dt_ms=5.0, cache="off", progress=False, n_jobs=1)
    ds = CRCNSAA1Dataset(aa1_tree.root, dt_ms=5.0, cache="off", progress=False, n_jobs=2)
    _assert_identical(ds, reference)


def test_dataset_build_on_a_local_dask_cluster(aa1_tree):
    distributed = pytest.importorskip("distributed")
    reference = CRCNSAA1Dataset(aa1_tree.root, dt_ms=5.0, cache="off", progress=False)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream, \
                joblib.parallel_config(backend="dask"):
            ds = CRCNSAA1Dataset(aa1_tree.root, dt_ms=5.0, cache="off", progress=False, n_jobs=2)
    assert len(stream.data) > 0  # the parsing and stimulus tasks ran on the cluster
    _assert_identical(ds, reference)
