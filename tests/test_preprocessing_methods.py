"""NeuralDataset preprocessing: smoothing, normalisation, standardisation, neuron quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.testing.synthetic import make_ragged_dataset
from deepstrf.utils.data import neural_collate


def dataset(seed=0, **kw):
    kw.setdefault("coverage", 0.6)
    return make_ragged_dataset(6, 5, n_bands=4, T_range=(8, 15), repeats=(1, 5), seed=seed, **kw)


def pairs(ds):
    for s in range(ds.get_S()):
        for n in range(ds.get_N()):
            r = ds.responses[s][n]
            if not torch.isnan(r).all():
                yield s, n, r


# ---------------------------------------------------------------------------- smoothing
def test_smooth_matches_numpy_convolution_and_keeps_sentinels():
    ds = dataset()
    before = {(s, n): r.clone() for s, n, r in pairs(ds)}
    masks = ds.nrn_masks.clone()
    ds.smooth_responses(21.0)
    kernel = np.array([1, 3, 4, 3, 1]) / 12  # dt = 5 ms
    for (s, n), r in before.items():
        expected = np.stack([np.convolve(row, kernel, mode="same") for row in r.numpy()])
        np.testing.assert_allclose(ds.responses[s][n].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(ds.nrn_masks, masks)
    op = ds.provenance["operations"][-1]
    assert op["operation"] == "smooth_responses" and op["parameters"] == {"window_ms": 21.0,
                                                                         "n_taps": 5}


def test_smoothing_preserves_counts_away_from_edges():
    stims = [torch.rand(1, 2, 40)]
    r = torch.zeros(2, 40)
    r[0, 10], r[0, 20], r[1, 25] = 3, 1, 2  # 21 taps: all within [0, 40)
    ds = AudioNeuralDataset.from_data(stims, [[r]], dt_ms=1.0)
    ds.smooth_responses(21.0)
    out = ds.responses[0][0]
    assert torch.allclose(out.sum(1), torch.tensor([4.0, 2.0]), atol=1e-5)
    assert float(out[0, 10]) < 3 and float(out[0, 10]) > 0.2


def test_smoothing_keeps_partial_nan():
    r = torch.ones(1, 9)
    r[0, 4] = float("nan")
    ds = AudioNeuralDataset.from_data([torch.rand(1, 2, 9)], [[r]], dt_ms=5.0)
    ds.smooth_responses()
    out = ds.responses[0][0]
    assert torch.isnan(out[0, 4]) and not torch.isnan(out[0, [0, 3, 5, 8]]).any()


def test_smooth_bad_window():
    with pytest.raises(ValueError, match="window_ms must be a finite number > 0"):
        dataset().smooth_responses(0)


# ---------------------------------------------------------------------------- normalisation
def reference_stats(ds, stims, method):
    out = {}
    for n in range(ds.get_N()):
        vals = [ds.responses[s][n].numpy().ravel() for s in stims
                if not torch.isnan(ds.responses[s][n]).all()]
        if not vals:
            out[n] = (0.0, 1.0)
            continue
        v = np.concatenate(vals).astype(np.float64)
        out[n] = (0.0, np.abs(v).max()) if method == "max" else (v.mean(), v.std(ddof=1))
    return out


@pytest.mark.parametrize("method", ["max", "zscore"])
def test_normalize_against_reference_and_applied_to_all(method):
    ds = dataset(seed=4)
    train = [0, 2, 3]
    ref = reference_stats(ds, train, method)
    before = {(s, n): r.clone() for s, n, r in pairs(ds)}
    record = ds.normalize_responses(method, stim_indices=train)
    assert record["method"] == method and record["stim_indices"] == train
    for n, (offset, scale) in ref.items():
        assert float(record["offset"][n]) == pytest.approx(offset, rel=1e-5, abs=1e-6)
        assert float(record["scale"][n]) == pytest.approx(max(scale, 1e-8), rel=1e-5)
    for (s, n), r in before.items():  # test stimuli too
        offset, scale = ref[n]
        np.testing.assert_allclose(ds.responses[s][n].numpy(),
                                   (r.numpy() - offset) / max(scale, 1e-8), rtol=1e-5, atol=1e-5)
    assert ds.response_normalization is record


def test_normalize_twice_is_not_double_and_can_be_undone():
    ds = dataset(seed=5)
    before = {(s, n): r.clone() for s, n, r in pairs(ds)}
    ds.normalize_responses("max")
    once = {(s, n): r.clone() for s, n, r in pairs(ds)}
    ds.normalize_responses("max")
    for key, r in once.items():
        assert torch.allclose(ds.responses[key[0]][key[1]], r)
    ds.normalize_responses("zscore")  # replaces, statistics from the original values
    ds.denormalize_responses()
    for key, r in before.items():
        assert torch.allclose(ds.responses[key[0]][key[1]], r, atol=1e-5)
    assert ds.response_normalization is None
    ops = [o["operation"] for o in ds.provenance["operations"]]
    assert ops == ["normalize_responses"] * 3 + ["denormalize_responses"]
    assert ds.provenance["operations"][1]["parameters"]["replaced_previous"] is True
    with pytest.raises(RuntimeError, match="nothing to undo"):
        ds.denormalize_responses()


def test_normalize_neuron_without_statistics_is_unchanged():
    ds = dataset(seed=6)
    n = 0
    train = [s for s in range(ds.get_S()) if not ds.nrn_masks[s, n]]
    record = ds.normalize_responses("zscore", stim_indices=train)
    assert n in record["neurons_without_statistics"]
    assert float(record["scale"][n]) == 1.0 and float(record["offset"][n]) == 0.0


def test_normalize_errors():
    ds = dataset()
    with pytest.raises(ValueError, match="method must be one of 'max', 'zscore'"):
        ds.normalize_responses("minmax")
    with pytest.raises(IndexError, match=r"valid range is \[0, 5\]"):
        ds.normalize_responses(stim_indices=[0, 6])
    with pytest.raises(ValueError, match="stim_indices is empty"):
        ds.normalize_responses(stim_indices=[])
    with pytest.raises(ValueError, match="eps"):
        ds.normalize_responses(eps=-1)


# ---------------------------------------------------------------------------- stims
def test_standardize_per_band_and_scalar():
    ds = dataset(seed=7)
    orig = [x.clone() for x in ds.stims]
    train = [1, 2, 4]
    cat = torch.cat([orig[s] for s in train], dim=-1).double()
    record = ds.standardize_stims(stim_indices=train)
    mean, std = cat.mean(dim=(0, 2), keepdim=True), cat.std(dim=(0, 2), keepdim=True)
    assert record["mean"].shape == (1, 4, 1)
    assert torch.allclose(record["mean"].double(), mean, atol=1e-6)
    assert torch.allclose(record["std"].double(), std, atol=1e-6)
    for x, o in zip(ds.stims, orig):
        assert torch.allclose(x, ((o - mean) / std).float(), atol=1e-5)
    record = ds.standardize_stims(per_band=False)  # replaces the previous one
    full = torch.cat(orig, dim=-1).double()
    assert record["mean"].shape == () and float(record["mean"]) == pytest.approx(float(full.mean()))
    ds.destandardize_stims()
    for x, o in zip(ds.stims, orig):
        assert torch.allclose(x, o, atol=1e-5)
    with pytest.raises(RuntimeError, match="not standardised"):
        ds.destandardize_stims()


def test_standardize_waveforms_need_scalar():
    ds = AudioNeuralDataset.from_data([torch.rand(1, 16)], [[torch.ones(1, 4)]], dt_ms=1.0,
                                      audio_fs=4000, F=8)
    with pytest.raises(ValueError, match="per_band=False for waveforms"):
        ds.standardize_stims()
    record = ds.standardize_stims(per_band=False)
    assert abs(float(ds.stims[0].mean())) < 1e-5 and record["per_band"] is False
    with pytest.raises(TypeError, match="per_band must be True or False"):
        ds.standardize_stims(per_band="yes")


# ---------------------------------------------------------------------------- neuron quality
def test_compute_neuron_quality_writes_floats_and_is_reproducible():
    ds = make_ragged_dataset(8, 6, n_bands=3, T_range=(30, 40), coverage=0.7,
                             repeats=(2, 14), seed=9)
    q1 = ds.compute_neuron_quality(seed=3)
    assert set(q1) == {"snr", "ccmax", "signal_power", "noise_power"}
    assert q1["snr"].shape == (6,) and q1["snr"].dtype == torch.float64
    for n, meta in enumerate(ds.nrn_meta):
        assert isinstance(meta["snr"], float) and isinstance(meta["ccmax"], float)
        assert meta["snr"] == pytest.approx(float(q1["snr"][n]), nan_ok=True)
    q2 = ds.compute_neuron_quality(seed=3)
    assert torch.equal(torch.nan_to_num(q1["ccmax"], 7.0), torch.nan_to_num(q2["ccmax"], 7.0))
    assert ds.provenance["operations"][-1]["parameters"] == {"max_ccmax_iters": 126, "seed": 3}


def test_compute_neuron_quality_equals_metrics_on_collated_data():
    from deepstrf.metrics import noise_power, signal_power, snr

    ds = make_ragged_dataset(7, 5, n_bands=3, T_range=(20, 30), coverage=0.8,
                             repeats=(1, 6), seed=11)
    q = ds.compute_neuron_quality()
    batch = neural_collate(ds.__getitems__(list(range(len(ds)))))
    for name, fn in (("snr", snr), ("signal_power", signal_power), ("noise_power", noise_power)):
        ref = fn(batch["responses"].double(), reduction="none")
        assert torch.allclose(q[name], ref, rtol=1e-6, atol=1e-9, equal_nan=True), name


def test_quality_streams_one_stimulus_block_at_a_time(monkeypatch):
    from deepstrf.metrics import NeuronQualityAccumulator

    ds = make_ragged_dataset(5, 4, n_bands=3, T_range=(10, 12), seed=2)
    store = ds.response_store
    seen = []
    original = NeuronQualityAccumulator.add_rows

    def spy(self, neurons, reps, rows):
        seen.append((np.asarray(neurons).tolist(), rows.data_ptr()))
        return original(self, neurons, reps, rows)

    monkeypatch.setattr(NeuronQualityAccumulator, "add_rows", spy)
    ds.compute_neuron_quality()
    # one call per stimulus, on the stored block itself (nothing padded or copied)
    assert seen == [(store.block(s)[0].tolist(), store.block(s)[2].data_ptr())
                    for s in range(5)]


def test_quality_selects_by_query_afterwards():
    ds = make_ragged_dataset(6, 5, n_bands=3, T_range=(20, 30), repeats=(4, 8), seed=3)
    q = ds.compute_neuron_quality()
    chosen = ds.select_pop_by_nrn_query("snr > -100")
    assert chosen == [n for n in range(5) if float(q["snr"][n]) > -100]
