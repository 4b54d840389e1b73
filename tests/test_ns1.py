"""NS1Dataset on fixture trees in the distributed format; counts recomputed from the files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from deepstrf.datasets.audio.ns1 import RAHMAN2020_TEST, NS1Dataset
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.cache import list_entries
from deepstrf.preprocessing.spectrogram import waveform_on_grid
from deepstrf.preprocessing.spikes import hanning_kernel, smooth_rows
from deepstrf.testing.fixtures import truncate_file
from deepstrf.testing.fixtures.ns1 import NS1Quirks, published, write_ns1


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns1") / "raw"
    return write_ns1(root, n_units=6, n_repeats=3,
                     quirks=NS1Quirks(missing_suffix=1, missing_file=1))


def _load(info, tmp_path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        return NS1Dataset(info.root, cache="off", **kw)


def _expected_counts(trials, dt_ms=5.0, binning="counts"):
    """Counts from the times written, in integer arithmetic (times are whole microseconds)."""
    T = 999 // int(dt_ms // 5)
    out = np.zeros((len(trials), T))
    for r, times in enumerate(trials):
        if binning == "deepstrf":
            ms = np.unique(np.round(times)).astype(np.int64)  # whole ms, one spike per ms
            ticks = ms * 1000
        else:
            ticks = np.round(np.asarray(times) * 1000).astype(np.int64)
        for tick in ticks:
            k = tick // int(dt_ms * 1000)
            if 0 <= tick and k < T:
                out[r, k] += 1
    return out


@pytest.mark.parametrize(("dt_ms", "binning"), [(5.0, "counts"), (5.0, "deepstrf"),
                                                 (10.0, "counts")])
def test_every_count_equals_the_spike_times_written(tree, tmp_path, dt_ms, binning):
    ds = _load(tree, tmp_path, dt_ms=dt_ms, smooth=False, binning=binning)
    ids = [m["cell_id"] for m in ds.nrn_meta]
    written = [c.cell_id for c in tree.cells if c.cell_id not in tree.quirk_sites["missing_file"]]
    assert ids == written  # the '_1' unit is kept, the absent one left out
    checked = 0
    for rec in tree.responses:
        if rec.trials is None or rec.stim_type != "natural":
            continue
        s, n = rec.number - 1, ids.index(rec.cell_id)
        got = ds.responses[s][n].numpy()
        np.testing.assert_array_equal(got, _expected_counts(rec.trials, dt_ms, binning))
        checked += 1
    assert checked == 20 * len(written) and ds.get_S() == 20  # the 12 DRC sets are dropped


def test_bin_edges_and_same_millisecond_spikes(tree, tmp_path):
    counts = _load(tree, tmp_path, smooth=False)
    binary = _load(tree, tmp_path, smooth=False, binning="deepstrf")
    rec = next(r for r in tree.responses if r.cell_id == tree.cells[1].cell_id and r.number == 3)
    planted = rec.trials[-1]
    assert {0.0, 15.0, 100.2, 100.4, 4990.0, 4995.0} <= set(planted)
    row_c, row_b = counts.responses[2][1][-1].numpy(), binary.responses[2][1][-1].numpy()
    in_bin = lambda k: int(((planted >= 5 * k) & (planted < 5 * k + 5)).sum())  # noqa: E731
    assert row_c[0] == in_bin(0) and row_c[3] == in_bin(3) and row_c[998] == in_bin(998)
    assert row_c[20] == in_bin(20) >= 2                     # 100.2 and 100.4 both count
    assert row_b[20] == row_c[20] - 1                       # the binary 1 ms vector merges them
    assert row_c.sum() == ((planted >= 0) & (planted < 4995)).sum()  # 4995.0 is out


def test_spectrogram_is_x_nfht_pooled_and_meta_has_the_split(tree, tmp_path):
    ds = _load(tree, tmp_path)
    assert ds.F == 34 and [tuple(s.shape) for s in ds.stims] == [(1, 34, 999)] * 20
    for s in (0, 7, 19):
        np.testing.assert_allclose(ds.stims[s][0].numpy(), tree.truth.spectrograms[s], rtol=1e-6)
    assert [m["split"] for m in ds.stim_meta].count("test") == 4
    assert [i for i, m in enumerate(ds.stim_meta) if m["split"] == "test"] == list(RAHMAN2020_TEST)
    assert ds.stim_meta[3]["type"] == "ferret_vocalization" and ds.stim_meta[0]["name"] == "nat01"
    coarse = _load(tree, tmp_path, dt_ms=15.0)
    spec = tree.truth.spectrograms[5]
    np.testing.assert_allclose(coarse.stims[5][0].numpy(),
                               spec.reshape(34, 333, 3).mean(axis=2), rtol=1e-5)
    assert coarse.responses[5][0].shape == (3, 333)


def test_smoothing_is_the_shared_unit_sum_hanning(tree, tmp_path):
    raw = _load(tree, tmp_path, smooth=False)
    smooth = _load(tree, tmp_path)
    kernel = hanning_kernel(21.0, 5.0)
    np.testing.assert_allclose(smooth.responses[4][2].numpy(),
                               smooth_rows(raw.responses[4][2].numpy(), kernel), atol=1e-6)


def test_units_filter_published_and_by_id(tree, tmp_path):
    ds = _load(tree, tmp_path, units="published")
    kept = [c.cell_id for c in tree.cells if published(c.meta)
            and c.cell_id not in tree.quirk_sites["missing_file"]]
    assert [m["cell_id"] for m in ds.nrn_meta] == kept
    assert all(m["single_t"] in ("Yes", "Maybe") and m["depth_um"] >= 0 for m in ds.nrn_meta)
    one = _load(tree, tmp_path, units=[tree.cells[2].cell_id])
    assert one.get_N() == 1 and one.nrn_meta[0]["depth_um"] == tree.cells[2].meta["depth"]
    with pytest.raises(ValueError, match="not in MetadataSHEnCneurons.mat"):
        _load(tree, tmp_path, units=["nobody"])


def test_waveform_mode_reads_the_sounds_at_their_true_rate(tree, tmp_path):
    ds = _load(tree, tmp_path, return_waveform=True, smooth=False)
    assert ds.audio_fs == 48000 and ds.hop == 240
    assert tuple(ds.stims[0].shape) == (1, 999 * 240)
    expected = waveform_on_grid(tree.truth.sounds[6], 48828.125, 5.0, 48000)[:999 * 240]
    np.testing.assert_allclose(ds.stims[6][0].numpy(), expected, atol=1e-6)
    spec = _load(tree, tmp_path, smooth=False)
    np.testing.assert_array_equal(ds.responses[6][0].numpy(), spec.responses[6][0].numpy())


def test_quirks_are_warned_and_counted_in_the_manifest(tree, tmp_path):
    with pytest.warns(DataQuirkWarning, match="'_1' suffix"):
        ds = NS1Dataset(tree.root, smooth=False)
    quirks = ds.provenance["manifest"]["quirks"]
    assert quirks == {"spike_file_suffix_1": 1, "missing_spike_files": 1}


def test_wav_extension_variant_loads(tmp_path):
    info = write_ns1(tmp_path / "raw", n_units=1, n_repeats=1,
                     quirks=NS1Quirks(wav_extension=True))
    ds = _load(info, tmp_path, return_waveform=True)
    assert ds.get_S() == 20 and ds.stims[0].shape[-1] == 999 * 240


@pytest.mark.parametrize("kwargs", [dict(dt_ms=7.0), dict(dt_ms=0), dict(units=3),
                                    dict(units="some"), dict(binning="binary")])
def test_bad_arguments_fail_before_io(tmp_path, kwargs):
    with pytest.raises((ValueError, TypeError)):
        NS1Dataset(tmp_path / "nothing", **kwargs)
    assert not (tmp_path / "nothing").exists()


def _no_entry(root):
    processed = root.parent / "processed"
    assert not processed.exists() or (list_entries(processed) == [] and not any(
        p.name.startswith(".tmp") for p in processed.iterdir()))


def test_truncated_spike_file_names_the_file_and_leaves_no_entry(tmp_path):
    info = write_ns1(tmp_path / "data" / "raw", n_units=2, n_repeats=1, write_wavs=False)
    truncate_file(info.cells[1].path, 200)
    with pytest.raises(RawDataError, match=info.cells[1].path.name):
        NS1Dataset(tmp_path / "data")
    _no_entry(info.root)


def test_html_as_data_names_the_file_and_leaves_no_entry(tmp_path):
    info = write_ns1(tmp_path / "data" / "raw", n_units=2, n_repeats=1, write_wavs=False)
    (info.root / "test_data_5ms.mat").write_text("<!DOCTYPE html><html><form>password</form>")
    with pytest.raises(RawDataError, match="test_data_5ms.mat"):
        NS1Dataset(tmp_path / "data")
    _no_entry(info.root)
    (info.root / "MetadataSHEnCneurons.mat").write_text("<html>Sign in</html>")
    with pytest.raises(RawDataError, match="MetadataSHEnCneurons.mat"):
        NS1Dataset(tmp_path / "data")
    _no_entry(info.root)


def test_waveform_mode_without_sounds_says_what_is_missing(tmp_path):
    info = write_ns1(tmp_path / "data" / "raw", n_units=1, n_repeats=1, write_wavs=False)
    with pytest.raises(RawDataError, match="waveform mode needs the 20 sound files"):
        NS1Dataset(tmp_path / "data", return_waveform=True)
    _no_entry(info.root)


def test_result_does_not_depend_on_n_jobs(tmp_path):
    info = write_ns1(tmp_path / "raw", n_units=2, n_repeats=2, write_wavs=False)
    one = NS1Dataset(info.root, cache="off", n_jobs=1)
    two = NS1Dataset(info.root, cache="off", n_jobs=2)
    for s in range(20):
        assert one.stims[s].equal(two.stims[s])
        for n in range(2):
            assert one.responses[s][n].equal(two.responses[s][n])
