"""The model kit: population linear STRF, ridge fit, gradient training, stimulus splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.models import PopulationLinearSTRF, fit_gradient, fit_ridge, lagged, split_stimuli
from deepstrf.testing.synthetic import make_ragged_dataset


def test_lagged_definition():
    x = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    X = lagged(x, 3)
    assert X.shape == (6, 6)
    for t in range(6):
        for f in range(2):
            for lag in range(3):
                expected = x[f, t - lag] if t - lag >= 0 else 0.0
                assert X[t, f * 3 + lag] == expected


def test_forward_is_the_causal_convolution():
    torch.manual_seed(0)
    model = PopulationLinearSTRF(3, 4, 5)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.normal_()
    stims = torch.randn(2, 1, 4, 30)
    out = model(stims)
    assert out.shape == (2, 3, 1, 30)
    for b in range(2):
        X = lagged(stims[b, 0], 5)
        expected = X @ model.weight.reshape(3, -1).T + model.bias
        assert torch.allclose(out[b, :, 0].T, expected, atol=1e-5)
    bumped = stims.clone()
    bumped[:, :, :, 20] += 5.0
    changed = (model(bumped) - out).abs().sum(dim=(0, 1, 2)) > 1e-6
    assert not changed[:20].any() and changed[20:25].any()  # no effect before t = 20


def test_nonlinearities_and_errors():
    stims = torch.randn(1, 1, 2, 8)
    for name, check in (("relu", lambda y: (y >= 0).all()), ("softplus", lambda y: (y > 0).all()),
                        ("exp", lambda y: (y > 0).all())):
        model = PopulationLinearSTRF(2, 2, 3, output_nonlinearity=name)
        with torch.no_grad():
            model.weight.normal_()
        assert check(model(stims))
    with pytest.raises(ValueError, match="output_nonlinearity must be one of"):
        PopulationLinearSTRF(2, 2, 3, output_nonlinearity="tanh")
    with pytest.raises(ValueError, match=r"stims must be \(B, 1, F=2, T\)"):
        PopulationLinearSTRF(2, 2, 3)(torch.randn(1, 1, 3, 8))
    assert "n_lags=3" in repr(PopulationLinearSTRF(2, 2, 3))


def linear_dataset(noise=0.0, seed=0, n_stims=12):
    """Responses are exactly a known linear STRF of the stims (plus optional noise)."""
    rng = np.random.default_rng(seed)
    F, L, N = 4, 3, 3
    true_w = rng.standard_normal((N, F, L))
    true_b = np.array([0.5, -0.2, 1.0])
    stims, blocks = [], []
    for s in range(n_stims):
        T = int(rng.integers(40, 60))
        x = rng.standard_normal((1, F, T)).astype(np.float32)
        X = lagged(torch.from_numpy(x[0]).double(), L).numpy()
        y = X @ true_w.reshape(N, -1).T + true_b  # (T, N)
        neurons = [n for n in range(N) if not (n == 2 and s % 4 == 0)]  # neuron 2 misses some
        rows = np.stack([y[:, n] for n in neurons]) + noise * rng.standard_normal((len(neurons), T))
        blocks.append((neurons, [1] * len(neurons), torch.from_numpy(rows.astype(np.float32))))
        stims.append(torch.from_numpy(x))
    ds = AudioNeuralDataset.from_data(stims, ResponseStore.from_blocks(N, blocks), dt_ms=5.0,
                                      stim_meta=[{"type": "a" if s % 2 else "b"}
                                                 for s in range(n_stims)])
    return ds, true_w, true_b


def test_ridge_recovers_a_linear_population_exactly():
    ds, w, b = linear_dataset()
    fit = fit_ridge(ds, range(8), range(8, 12), n_lags=3, alphas=[1e-6, 1e-3, 1.0])
    assert torch.allclose(fit.model.weight.double(), torch.from_numpy(w), atol=1e-3)
    assert torch.allclose(fit.model.bias.double(), torch.from_numpy(b), atol=1e-3)
    assert (fit.val_corr > 0.999).all() and fit.alpha_grid.tolist() == [1e-6, 1e-3, 1.0]


def test_ridge_respects_the_selection_and_noise():
    ds, w, _ = linear_dataset(noise=2.0, seed=1, n_stims=16)
    ds.select_population([2, 0])
    fit = fit_ridge(ds, range(12), range(12, 16), n_lags=3)
    assert fit.model.n_neurons == 2
    for j, n in enumerate([2, 0]):
        r = np.corrcoef(fit.model.weight[j].detach().numpy().ravel(), w[n].ravel())[0, 1]
        assert r > 0.9
    assert fit.alphas.shape == (2,) and torch.isfinite(fit.val_corr).all()


def test_ridge_errors():
    ds, *_ = linear_dataset()
    with pytest.raises(ValueError, match="val_stims is empty"):
        fit_ridge(ds, range(8), [], n_lags=3)
    with pytest.raises(ValueError, match="train_stims is empty"):
        fit_ridge(ds, [], [9], n_lags=3)
    with pytest.raises(ValueError, match="n_lags must be >= 1"):
        fit_ridge(ds, range(8), [9], n_lags=0)
    wave = AudioNeuralDataset.from_data([torch.rand(1, 8)], [[torch.ones(1, 2)]], dt_ms=1.0,
                                        audio_fs=4000, F=4)
    with pytest.raises(ValueError, match="waveform mode"):
        fit_ridge(wave, [0], [0], n_lags=2)


def test_gradient_training_decreases_the_masked_loss():
    ds, *_ = linear_dataset(noise=0.5, seed=2)
    model = PopulationLinearSTRF(3, 4, 3)
    history = fit_gradient(model, ds, range(10), loss="mse", epochs=15, lr=0.05, progress=False)
    assert history[-1] < 0.5 * history[0]
    with pytest.raises(ValueError, match="loss must be one of 'poisson', 'mse'"):
        fit_gradient(model, ds, range(10), loss="l1")


def test_split_is_reproducible_stratified_and_complete():
    ds = make_ragged_dataset(30, 5, n_bands=2, T_range=(5, 6), seed=4)
    a = split_stimuli(ds, seed=3, stratify="type")
    assert a == split_stimuli(ds, seed=3, stratify="type")
    assert a != split_stimuli(ds, seed=4, stratify="type")
    train, val, test = a
    assert sorted(train + val + test) == list(range(30)) and not set(train) & set(val)
    for kind in ("a", "b", "c"):  # 10 of each: 7 / 2 / 1 with largest remainders
        counts = [sum(ds.stim_meta[s]["type"] == kind for s in part) for part in a]
        assert counts[0] >= 6 and counts[1] >= 1 and counts[2] >= 1
    assert len(split_stimuli(ds, (0.5, 0.5, 0.0))[2]) == 0
    assert split_stimuli(ds, stims=[0, 1, 2])[0] != []


def test_split_errors():
    ds = make_ragged_dataset(5, 2, n_bands=2, seed=1)
    with pytest.raises(ValueError, match="summing to 1"):
        split_stimuli(ds, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="train > 0"):
        split_stimuli(ds, (0.0, 0.5, 0.5))
    with pytest.raises(TypeError, match="three numbers"):
        split_stimuli(ds, "abc")
    with pytest.raises(IndexError, match=r"\[0, 4\]"):
        split_stimuli(ds, stims=[7])


def test_fitting_refuses_an_active_stim_selection():
    ds, *_ = linear_dataset()
    ds.select_stims([0, 1, 8])
    with pytest.raises(ValueError, match="reset_stim_selection"):
        fit_ridge(ds, range(8), range(8, 12), n_lags=3)
    with pytest.raises(ValueError, match="reset_stim_selection"):
        fit_gradient(PopulationLinearSTRF(3, 4, 3), ds, range(8), epochs=1)
