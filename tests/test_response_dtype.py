"""Binned response rows stay float32 from the raw raster to the store (no float64 copy)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from deepstrf.datasets._responses import BinnedRows, render_responses
from deepstrf.datasets.audio import _spikes_audio
from deepstrf.datasets.audio.nat4 import NAT4Dataset
from deepstrf.errors import DataQuirkWarning
from deepstrf.testing.fixtures.nat4 import NAT4Quirks, write_nat4


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def test_float_rows_are_held_as_given_and_integer_rows_become_float32():
    raster = np.arange(60, dtype=np.float32).reshape(20, 3)  # (T, cells), as NEMS stores it
    column = BinnedRows(raster[:, 1][None], bin_ms=10.0)
    assert column.rows.dtype == np.float32 and np.shares_memory(column.rows, raster)
    wide = np.ones((2, 6))
    assert BinnedRows(wide, bin_ms=10.0).rows is wide  # float64 kept, not copied either
    counts = BinnedRows(np.array([[1, 2, 3, 4]], dtype=np.int64), bin_ms=5.0)
    assert counts.rows.dtype == np.float32
    np.testing.assert_array_equal(counts.render(10.0, 2), [[3, 7]])
    assert BinnedRows(np.array([[True, False]]), bin_ms=5.0).rows.dtype == np.float32
    with pytest.raises(ValueError, match="must hold numbers"):
        BinnedRows(np.array([["a", "b"]]), bin_ms=5.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_render_is_float32_and_block_sums_round_once(dtype):
    rows = np.array([[2.0 ** 24, 1.0, 1.0, 5.0, np.nan, 1.0]], dtype=dtype)
    source = BinnedRows(rows, bin_ms=10.0)
    out = source.render(30.0, 3)
    assert out.dtype == np.float32
    # a float32 running sum gives 2**24 (each +1 is lost to rounding); the exact sum is
    # 2**24 + 2, which float32 holds
    np.testing.assert_array_equal(out, np.array([[2.0 ** 24 + 2, np.nan, np.nan]], np.float32))
    same = source.render(10.0, 6)
    assert same.dtype == np.float32
    np.testing.assert_array_equal(same, rows.astype(np.float32))
    scaled = np.random.default_rng(0).random((4, 300)).astype(np.float32)
    got = BinnedRows(scaled, bin_ms=10.0).render(50.0, 60)
    want = scaled.astype(np.float64).reshape(4, 60, 5).sum(axis=2).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    stacked = render_responses([source, BinnedRows(rows[:, :3].astype(np.float32), 10.0)],
                               10.0, 6, onset_ms=0.0, smooth_ms=None)
    assert stacked.dtype == np.float32 and stacked.shape == (2, 6)
    assert np.isnan(stacked[1, 3:]).all()


@pytest.fixture(scope="module")
def mid_tree(tmp_path_factory):
    # mid-size: 80 cells x 80 est sounds, so the est rows dominate the built data
    return write_nat4(tmp_path_factory.mktemp("nat4mid") / "raw", n_est=80, n_val=2,
                      n_val_repeats=3, cells_per_site=40, write_wav=False,
                      quirks=NAT4Quirks(*(False,) * 7))


def _build(root, monkeypatch, seen):
    real = _spikes_audio.build_recording

    def spy(recording, *args, **kwargs):
        seen.append(recording)
        return real(recording, *args, **kwargs)

    monkeypatch.setattr(_spikes_audio, "build_recording", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        warnings.simplefilter("ignore", UserWarning)  # the full release's documented counts
        return NAT4Dataset(root, cache="off", progress=False)


def test_nat4_est_rows_are_float32_views_of_one_raster(mid_tree, monkeypatch):
    seen: list = []
    ds = _build(mid_tree.root, monkeypatch, seen)
    est = [src for src in seen[0].trials.values() if isinstance(src, BinnedRows)]
    assert len(est) == 80 * 80
    assert all(src.rows.dtype == np.float32 for src in est)
    roots = {id(_root(src.rows)) for src in est}
    assert len(roots) == 1  # the raster read once, every pair a view of it
    raster = _root(est[0].rows)
    assert raster.dtype == np.float32 and raster.shape == (82 * 150, 80)
    neurons, reps, rows = ds.response_store.block(0)
    assert rows.dtype.is_floating_point and rows.element_size() == 4
    cell = [c["cell_id"] for c in mid_tree.cells].index(ds.nrn_meta[int(neurons[3])]["cell_id"])
    np.testing.assert_array_equal(rows[3].numpy(),
                                  mid_tree.est_counts[(mid_tree.est[0], mid_tree.cells[cell]
                                                       ["cell_id"])])


def test_nat4_build_peak_memory_stays_near_the_built_data(mid_tree, monkeypatch):
    _build(mid_tree.root, monkeypatch, [])  # imports and one-off caches out of the count
    tracemalloc.start()
    try:
        ds = _build(mid_tree.root, monkeypatch, [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    built = ds.response_store.nbytes + sum(x.numel() * x.element_size() for x in ds.stims)
    est_bytes = 80 * 80 * 150 * 4
    # measured 3.1x; a float64 copy of every est row (2 x est_bytes, 0.77 x built
    # here) pushed it to 4.3x
    assert peak < built * 3.1 + 0.4 * est_bytes, (peak / built, est_bytes / built)
