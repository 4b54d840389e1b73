"""A dataset much larger than what it may hold in memory: opened and iterated from the cache.

The dataset is built once into the processed cache; a fresh Python process
then opens it and runs epochs through ``DataLoader``, reading its own resident
memory from ``/proc/self/status``. Every check is a ratio to the size of the
data (or of a batch), never an absolute time or byte count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from deepstrf.testing.large import (
    LargeSyntheticDataset,
    downer_like_spec,
    spec_nbytes,
    write_spec,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(),
                                reason="reads resident memory from /proc (Linux)")

SPEC = downer_like_spec(dt_ms=5.0, coverage=0.6, n_bands=8, seed=4, n_neurons=800,
                        n_sessions=20, n_timit=150, n_mvocs=90)
SPEC.update(reps_timit_test=3, reps_mvocs_test=3)

CHILD = textwrap.dedent("""
    import json, sys, time

    def mib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    import torch
    from torch.utils.data import DataLoader
    from deepstrf.testing.large import LargeSyntheticDataset
    from deepstrf.utils.data import neural_collate, packed_loader
    from deepstrf.metrics import mse_loss

    out = {"rss_start": mib("VmRSS")}
    t = time.perf_counter()
    ds = LargeSyntheticDataset(sys.argv[1], cache="readonly")
    out["open_s"] = time.perf_counter() - t
    out["rss_open"] = mib("VmRSS")
    out["mapped"] = all(b.file is not None and b._rows is None
                        for b in ds.response_store._blocks)
    t = time.perf_counter()
    largest = total = 0
    for i, batch in enumerate(packed_loader(ds, batch_size=4, shuffle=True,
                                            generator=torch.Generator().manual_seed(0))):
        if i < 2:  # the loss's temporaries take part in the peak too
            pred = torch.full((batch.B, batch.n_neurons, 1, batch.T_max), 0.5)
            float(mse_loss(pred, batch))
            del pred
        largest = max(largest, batch.nbytes)
        total += int(batch.values.numel())
    out["epoch_s"] = time.perf_counter() - t
    out["packed_values"] = total
    out["packed_batch_max"] = largest
    out["hwm_packed"] = mib("VmHWM")
    largest = 0
    for batch in DataLoader(ds, batch_size=2, collate_fn=neural_collate):
        largest = max(largest, batch["responses"].numel() * 5)
    out["dense_batch_max"] = largest
    out["hwm_dense"] = mib("VmHWM")
    out["rss_end"] = mib("VmRSS")
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_spec(tmp_path_factory.mktemp("large") / "synthetic", SPEC)
    ds = LargeSyntheticDataset(root)
    nbytes = ds.response_store.nbytes
    assert nbytes == spec_nbytes(SPEC)
    stim_bytes = sum(x.numel() * 4 for x in ds.stims)
    reference = {s: ds.response_store.block(s) for s in (0, ds.get_S() - 1)}
    del ds
    return root, nbytes, stim_bytes, reference


def test_warm_open_maps_the_file_and_reads_back_the_build(built):
    root, nbytes, _, reference = built
    ds = LargeSyntheticDataset(root, cache="readonly")
    assert ds._cache_hit
    for s, (neurons, reps, rows) in reference.items():
        n2, r2, rows2 = ds.response_store.block(s)
        assert np.array_equal(n2, neurons) and np.array_equal(r2, reps)
        assert torch.equal(rows2, rows)
    assert ds.response_store.nbytes == nbytes
    # pickling (spawned DataLoader workers) sends the file regions, not the values
    import pickle

    held = ds.response_store.block(0)[2]  # a live weak reference to a mapping pickles too
    blob = pickle.dumps(ds.response_store)
    assert len(blob) < 0.05 * nbytes
    clone = pickle.loads(blob)
    for s, (_, _, rows) in reference.items():
        assert torch.equal(clone.block(s)[2], rows)
    del held
    # a concatenation keeps the blocks file-backed
    both = ds + LargeSyntheticDataset(root, cache="readonly")
    S = ds.get_S()
    assert all(b._rows is None for b in both.response_store._blocks)
    neurons, reps, rows = reference[0]
    n2, _, rows2 = both.response_store.block(S)
    assert np.array_equal(n2, neurons + ds.get_N()) and torch.equal(rows2, rows)
    del both
    # a view the user keeps stays valid after the block's other users are gone
    n = int(ds.response_store.block(0)[0][0])
    kept = ds.responses[0][n]
    again = ds.responses[0][n].clone()
    del ds
    assert torch.equal(kept, again)


def test_epochs_hold_a_few_batches_not_the_dataset(built):
    root, nbytes, stim_bytes, _ = built
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["mapped"]
    assert got["packed_values"] * 4 == nbytes  # the epoch saw every stored value
    # opening reads the metadata, not the data
    assert got["rss_open"] - got["rss_start"] < 0.05 * nbytes
    assert got["open_s"] < 0.5 * got["epoch_s"]
    # Had the epoch kept what it read, the growth would exceed the data (every
    # value is read); it holds the batch being built, the one in use, the loss's
    # temporaries (float64, dense in (B, N, T) like the prediction) and the
    # stims, which stay mapped.
    growth = got["hwm_packed"] - got["rss_open"]
    assert growth < 0.5 * nbytes, got
    assert growth < 20 * got["packed_batch_max"] + stim_bytes, got
    # a dense epoch: a few pooled (much larger) batches, still not the data
    dense_growth = got["hwm_dense"] - got["rss_open"]
    assert dense_growth < 0.5 * nbytes, got
    assert dense_growth < 6 * got["dense_batch_max"] + stim_bytes + growth, got
