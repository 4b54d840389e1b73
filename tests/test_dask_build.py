"""A dataset built on a dask.distributed cluster equals the one built with n_jobs=1."""

from __future__ import annotations

import logging

import joblib
import pytest
import torch

from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset
from deepstrf.testing.fixtures import write_crcns_aa1

distributed = pytest.importorskip("distributed")


def test_dataset_build_on_a_local_dask_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    info = write_crcns_aa1(tmp_path / "aa1", n_cells=4, n_conspecific=2, n_flatrip=2, seed=11)
    reference = CRCNSAA1Dataset(info.root, dt_ms=5.0, cache="off", progress=False)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream, \
                joblib.parallel_config(backend="dask"):
            ds = CRCNSAA1Dataset(info.root, dt_ms=5.0, cache="off", progress=False, n_jobs=2)
    assert len(stream.data) > 0  # the parsing and stimulus tasks ran on the cluster
    assert [m["cell_id"] for m in ds.nrn_meta] == [m["cell_id"] for m in reference.nrn_meta]
    for s in range(ds.get_S()):
        assert torch.equal(ds.stims[s], reference.stims[s])
        for n in range(ds.get_N()):
            assert torch.equal(torch.nan_to_num(ds.responses[s][n], -1.0),
                               torch.nan_to_num(reference.responses[s][n], -1.0))
