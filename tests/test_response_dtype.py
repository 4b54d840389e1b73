"""Binned response rows stay float32 from the raw raster to the store (no float64 copy)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from deepstrf.datasets._responses import BinnedRows, ResponseBlock, render_responses
from deepstrf.datasets.audio import _spikes_audio
from deepstrf.datasets.audio.nat4 import NAT4Dataset
from deepstrf.errors import DataQuirkWarning
from deepstrf.testing.fixtures.nat4 import NAT4Quirks, write_nat4


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


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


def test_nat4_est_rows_are_one_float32_block_per_sound_kept_by_the_store(mid_tree,
                                                                         monkeypatch):
    seen: list = []
    ds = _build(mid_tree.root, monkeypatch, seen)
    recording = seen[0]
    assert not any(isinstance(src, BinnedRows) for src in recording.trials.values())
    assert len(recording.blocks) == 80  # one per est sound, not one per pair
    bases = {id(b.source.rows.base) for b in recording.blocks.values()}
    raster = next(iter(recording.blocks.values())).source.rows.base
    # transposed in place in the raster's own rows: the est responses are held once
    assert len(bases) == 1 and raster.dtype == np.float32 and raster.size == 82 * 150 * 80
    for s, block in recording.blocks.items():
        rows = block.source.rows
        assert rows.dtype == np.float32 and rows.flags.c_contiguous
        assert rows.shape == (80, 150) and list(block.neurons) == list(range(80))
        # the store holds the block itself (n_jobs=1): no second copy of the est rows
        neurons, reps, stored = ds.response_store.block(s)
        assert stored.numpy().ctypes.data == rows.ctypes.data
    neurons, reps, rows = ds.response_store.block(0)
    assert rows.dtype.is_floating_point and rows.element_size() == 4
    cell = ds.nrn_meta[int(neurons[3])]["cell_id"]
    np.testing.assert_array_equal(rows[3].numpy(), mid_tree.est_counts[(mid_tree.est[0], cell)])


def test_response_block_checks_its_shape():
    rows = BinnedRows(np.zeros((3, 10), np.float32), 10.0)
    assert list(ResponseBlock([0, 4], [1, 2], rows).repeats) == [1, 2]
    with pytest.raises(ValueError, match="must match the source's 3 rows"):
        ResponseBlock([0, 4], [1, 1], rows)
    with pytest.raises(ValueError, match="increasing"):
        ResponseBlock([4, 0], [1, 2], rows)
    with pytest.raises(TypeError, match="BinnedRows or ContinuousTrace"):
        ResponseBlock([0], [1], np.zeros((1, 10)))


def test_nat4_build_peak_memory_stays_near_the_built_data(mid_tree, monkeypatch):
    _build(mid_tree.root, monkeypatch, [])  # imports and one-off caches out of the count
    tracemalloc.start()
    try:
        ds = _build(mid_tree.root, monkeypatch, [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    built = ds.response_store.nbytes + sum(x.numel() * x.element_size() for x in ds.stims)
    # measured 2.4x (one float32 block per sound, kept by the store); a source per pair
    # (views of the raster) rendered into new arrays gave 3.1x, and a float64 copy of
    # every pair's rows 4.3x
    assert peak < 2.8 * built, peak / built


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_build_merges_blocks_and_pairs_in_neuron_order_and_keeps_a_lone_block(n_jobs):
    from deepstrf.datasets._responses import SpikeTrains
    from deepstrf.datasets.audio._spike_tasks import make_front_end
    from deepstrf.datasets.audio._spikes_audio import Recording, build_recording
    from deepstrf.datasets.audio._stimuli import SpectrogramArrayStim

    front = make_front_end(dt_ms=5.0, smooth=False, compression="log1p", window_ms=10.0,
                           return_waveform=False, audio_fs=16000, n_bands=8)
    raster = np.arange(60, dtype=np.float32).reshape(3, 20)
    lone = np.ascontiguousarray(raster[:2, :10])

    def stim(name):
        return SpectrogramArrayStim(np.ones((8, 10)), 5.0, {"name": name}, n_bins="response")

    recording = Recording(
        stims=[stim("mixed"), stim("block only")],
        neurons=[{"cell_id": c} for c in "abcde"],  # e heard nothing
        trials={(0, 1): SpikeTrains.from_trials([[1.0, 7.0, 8.0]])},
        blocks={0: ResponseBlock([0, 2], [1, 2], BinnedRows(raster[:, :10].copy(), 5.0)),
                1: ResponseBlock([0, 3], [1, 1], BinnedRows(lone, 5.0))})
    built = build_recording(recording, front, n_jobs=n_jobs)
    neurons, reps, rows = built.store.block(0)
    assert list(neurons) == [0, 1, 2] and list(reps) == [1, 1, 2]
    np.testing.assert_array_equal(rows.numpy(), [raster[0, :10], [1, 2] + [0] * 8,
                                                 raster[1, :10], raster[2, :10]])
    neurons, reps, rows = built.store.block(1)
    # the lone block never went to a worker and back: the store holds it, not a copy
    assert list(neurons) == [0, 3] and rows.numpy().ctypes.data == lone.ctypes.data
    assert [m["cell_id"] for m in built.nrn_meta] == list("abcd")
    twice = Recording(stims=[stim("x")], neurons=[{"cell_id": "a"}],
                      trials={(0, 0): SpikeTrains.from_trials([[1.0]])},
                      blocks={0: ResponseBlock([0], [1], BinnedRows(lone[:1], 5.0))})
    with pytest.raises(ValueError, match="both in a ResponseBlock and in trials"):
        build_recording(twice, front, n_jobs=1)


def test_est_blocks_transpose_in_place_only_rows_no_other_sound_reads():
    from deepstrf.datasets.audio._nat4_sites import est_blocks

    raster = np.arange(12 * 3, dtype=np.float32).reshape(12, 3).copy()  # 12 bins x 3 cells
    raster[0:2, 1] = np.nan  # cell 1 not recorded for sound 0
    want = raster.copy()
    spans = {0: np.array([[0, 2]]),             # heard once, rows of its own: in place
             1: np.array([[2, 4], [6, 8]]),     # heard twice: a stacked copy
             2: np.array([[7, 9]])}             # shares row 7 with sound 1: a copy
    blocks = est_blocks(raster, spans)
    assert list(blocks[0].neurons) == [0, 2] and list(blocks[0].repeats) == [1, 1]
    np.testing.assert_array_equal(blocks[0].source.rows, want[0:2, [0, 2]].T)
    assert np.shares_memory(blocks[0].source.rows, raster)
    np.testing.assert_array_equal(blocks[1].source.rows,
                                  [want[2:4, 0], want[6:8, 0], want[2:4, 1], want[6:8, 1],
                                   want[2:4, 2], want[6:8, 2]])
    np.testing.assert_array_equal(blocks[2].source.rows, want[7:9].T)
    assert not np.shares_memory(blocks[2].source.rows, raster)
    assert all(b.source.rows.dtype == np.float32 and b.source.rows.flags.c_contiguous
               for b in blocks.values())
    view = np.zeros((4, 2), np.float32)[:, :]  # not its own memory: never written
    assert not np.shares_memory(est_blocks(view, {0: np.array([[0, 2]])})[0].source.rows, view)
