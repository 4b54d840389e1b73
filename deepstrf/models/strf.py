"""A population linear STRF and its closed-form ridge fit.

:class:`PopulationLinearSTRF` predicts every neuron's rate from a
spectrogram with its own causal spectro-temporal kernel:

.. math:: \\hat r_n(t) = g\\Big(b_n + \\sum_f \\sum_{l=0}^{L-1} w_{n,f,l}\\, x_f(t - l)\\Big)

(``g`` the optional output nonlinearity). :func:`fit_ridge` fits ``w`` and
``b`` in closed form on the training stimuli, streaming the batches of a
``DataLoader`` with :func:`~deepstrf.utils.data.neural_collate` so only
``D x D`` sufficient statistics (``D = F * L``) are kept, and chooses each
neuron's ridge penalty on the validation stimuli.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepstrf._validation import check_choice, check_int, check_positive

__all__ = ["PopulationLinearSTRF", "RidgeFit", "fit_ridge", "lagged"]

logger = logging.getLogger(__name__)

_NONLINEARITIES = (None, "relu", "softplus", "exp")


def lagged(stim: torch.Tensor, n_lags: int) -> torch.Tensor:
    """Causal lagged design matrix of one spectrogram.

    Parameters
    ----------
    stim : Tensor
        ``(F, T)`` (or ``(1, F, T)``).
    n_lags : int

    Returns
    -------
    Tensor
        ``(T, F * n_lags)``; column ``f * n_lags + l`` holds ``x_f(t - l)``
        (zero before onset), matching the model's ``weight[n, f, l]``.
    """
    x = stim.reshape(-1, stim.shape[-1])
    F, T = x.shape
    padded = torch.nn.functional.pad(x, (n_lags - 1, 0))
    # windows[f, t, j] = padded[f, t + j] = x_f(t + j - (L - 1)); lag l = L - 1 - j
    windows = padded.unfold(1, n_lags, 1).flip(-1)
    return windows.permute(1, 0, 2).reshape(T, F * n_lags)


class PopulationLinearSTRF(nn.Module):
    """One causal linear STRF per neuron, evaluated on batches of spectrograms.

    Parameters
    ----------
    n_neurons : int
    n_bands : int
        F, the spectrogram's frequency bands.
    n_lags : int
        L, the kernel's length in time bins (lag 0 = same bin).
    bias : bool, default True
    output_nonlinearity : {None, 'relu', 'softplus', 'exp'}
        Applied to the linear drive (None: linear model).

    Shapes
    ------
    ``forward(stims)``: ``(B, 1, F, T)`` -> ``(B, N, 1, T)``, the shape the
    metrics and losses of :mod:`deepstrf.metrics` take.
    """

    def __init__(self, n_neurons: int, n_bands: int, n_lags: int, bias: bool = True,
                 output_nonlinearity: str | None = None):
        super().__init__()
        self.n_neurons = check_int("n_neurons", n_neurons, minimum=1)
        self.n_bands = check_int("n_bands", n_bands, minimum=1)
        self.n_lags = check_int("n_lags", n_lags, minimum=1)
        self.output_nonlinearity = check_choice("output_nonlinearity", output_nonlinearity,
                                                _NONLINEARITIES)
        self.weight = nn.Parameter(torch.zeros(self.n_neurons, self.n_bands, self.n_lags))
        self.bias = nn.Parameter(torch.zeros(self.n_neurons)) if bias else None

    def forward(self, stims: torch.Tensor) -> torch.Tensor:
        if stims.dim() != 4 or stims.shape[1] != 1 or stims.shape[2] != self.n_bands:
            raise ValueError(f"stims must be (B, 1, F={self.n_bands}, T); got shape "
                             f"{tuple(stims.shape)}.")
        x = torch.nn.functional.pad(stims[:, 0], (self.n_lags - 1, 0))
        # conv1d correlates; flipping the lag axis makes it the causal convolution above
        drive = torch.nn.functional.conv1d(x, self.weight.flip(-1), self.bias)
        if self.output_nonlinearity == "relu":
            drive = torch.relu(drive)
        elif self.output_nonlinearity == "softplus":
            drive = torch.nn.functional.softplus(drive)
        elif self.output_nonlinearity == "exp":
            drive = torch.exp(drive)
        return drive.unsqueeze(2)

    def extra_repr(self) -> str:
        return (f"n_neurons={self.n_neurons}, n_bands={self.n_bands}, n_lags={self.n_lags}, "
                f"bias={self.bias is not None}, output_nonlinearity={self.output_nonlinearity}")


@dataclass
class RidgeFit:
    """Result of :func:`fit_ridge`.

    Attributes
    ----------
    model : PopulationLinearSTRF
        The fitted model (weights set).
    alphas : Tensor
        ``(N,)`` penalty chosen for each neuron.
    val_corr : Tensor
        ``(N,)`` validation correlation at the chosen penalty (NaN when the
        neuron has no validation data).
    alpha_grid : Tensor
        The penalties tried.
    """

    model: PopulationLinearSTRF
    alphas: torch.Tensor
    val_corr: torch.Tensor
    alpha_grid: torch.Tensor


def _batches(ds: Any, stims: Sequence[int], n_lags: int, batch_size: int):
    """Yield ``(X, psth, has)`` per stimulus: lagged design, PSTH ``(T, N)``, neuron mask."""
    from deepstrf.utils.data import stim_loader

    for batch in stim_loader(ds, stims, batch_size=batch_size):
        resp, valid = batch["responses"], batch["valid_mask"]
        counts = valid.sum(2)                                   # (B, N, T)
        total = torch.where(valid, resp, torch.zeros((), dtype=resp.dtype)).sum(2)
        psth = total / counts.clamp(min=1)
        for b in range(resp.shape[0]):
            bins = counts[b].any(0)                             # bins with any data
            T = int(bins.nonzero().max()) + 1 if bins.any() else 0
            if T == 0:
                continue
            has = counts[b, :, :T].gt(0).all(1)                 # neuron heard this stim
            # every stim axis but time is a feature: a spectrogram's bands, a movie's pixels
            stim = batch["stims"][b]
            X = lagged(stim.reshape(-1, stim.shape[-1])[:, :T].to(torch.float64), n_lags)
            yield X, psth[b, :, :T].T.to(torch.float64), has


def fit_ridge(ds: Any, train_stims: Sequence[int], val_stims: Sequence[int], *, n_lags: int,
              alphas: Sequence[float] | None = None, batch_size: int = 8,
              output_nonlinearity: str | None = None) -> RidgeFit:
    """Fit a :class:`PopulationLinearSTRF` in closed form (ridge regression).

    For each selected neuron, ``w`` and ``b`` minimise
    ``mean_t (y_t - b - w . x_t)^2 + alpha * lambda_mean * |w|^2`` over the
    valid bins of the training stimuli it heard (``y`` the PSTH, the mean over
    repeats; ``x_t`` the lagged spectrogram; ``lambda_mean`` the mean
    eigenvalue of the centred feature covariance, so ``alpha`` is relative to
    the stimulus power). The bias is not penalised (features and targets are
    centred). Neurons that heard the same training stimuli share their
    Gram matrix, which is eigen-decomposed once, so every penalty of the grid
    costs one matrix product. Each neuron keeps the penalty with the best
    correlation between prediction and PSTH on ``val_stims``.

    Parameters
    ----------
    ds : AudioNeuralDataset or VideoNeuralDataset
        Spectrograms, or movies at one frame per bin (each pixel of each
        channel is a feature, so the weights are the flattened
        spatio-temporal filter: ``weight.reshape(N, C, H, W, n_lags)``); its
        current neuron selection is fitted. No
        stimulus selection may be active (the stimuli are given here; see
        :func:`~deepstrf.utils.data.stim_loader`).
    train_stims, val_stims : sequence of int
        Stimulus indices (e.g. from :func:`~deepstrf.models.split_stimuli`).
    n_lags : int
        Kernel length in bins.
    alphas : sequence of float, optional
        Penalties to try, relative to the mean eigenvalue of the Gram matrix
        (default: 13 values from 1e-4 to 1e2, log-spaced).
    batch_size : int
        Stimuli per batch while streaming the data.
    output_nonlinearity : optional
        Set on the returned model (the fit itself is linear).

    Returns
    -------
    RidgeFit
    """
    n_lags = check_int("n_lags", n_lags, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if getattr(ds, "is_waveform", False):
        raise ValueError("fit_ridge needs spectrogram stims; this dataset is in waveform mode "
                         "(build it with return_waveform=False).")
    train = sorted({int(s) for s in train_stims})
    val = sorted({int(s) for s in val_stims})
    if not train:
        raise ValueError("train_stims is empty; give the stimuli to fit on.")
    if not val:
        raise ValueError("val_stims is empty; the ridge penalty is chosen on validation "
                         "stimuli, so give at least one (see deepstrf.models.split_stimuli).")
    grid = torch.tensor([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1, 3, 10, 30, 100]
                        if alphas is None else [check_positive("alpha", a) for a in alphas],
                        dtype=torch.float64)
    if getattr(ds, "frames_per_bin", 1) != 1:
        raise ValueError(f"fit_ridge needs one movie frame per response bin; this dataset has "
                         f"{ds.frames_per_bin} (use change_video_temporal_resolution).")
    neurons = ds.selected_neurons
    # features per bin: F bands of a spectrogram, or C * H * W pixels of a movie (flattened)
    N, F = len(neurons), int(np.prod(ds.stims[train[0]].shape[:-1]))
    D = F * n_lags
    masks = ds.nrn_masks[train][:, neurons].numpy()             # (S_train, N)
    patterns: dict[bytes, list[int]] = {}
    for j in range(N):
        patterns.setdefault(masks[:, j].tobytes(), []).append(j)
    group_of = np.empty(N, dtype=np.int64)
    for g, members in enumerate(patterns.values()):
        group_of[members] = g
    G = len(patterns)
    xtx = torch.zeros(G, D, D, dtype=torch.float64)
    xsum = torch.zeros(G, D, dtype=torch.float64)
    nbins = torch.zeros(G, dtype=torch.float64)
    xty = torch.zeros(D, N, dtype=torch.float64)
    ysum = torch.zeros(N, dtype=torch.float64)
    group_t = torch.from_numpy(group_of)
    for X, Y, has in _batches(ds, train, n_lags, batch_size):
        gram, xs, T = X.T @ X, X.sum(0), X.shape[0]
        groups = torch.unique(group_t[has])
        xtx[groups] += gram
        xsum[groups] += xs
        nbins[groups] += T
        Yh = torch.where(has, Y, torch.zeros((), dtype=Y.dtype))
        xty += X.T @ Yh
        ysum += Yh.sum(0)
    weights = torch.zeros(len(grid), N, D, dtype=torch.float64)
    biases = torch.zeros(len(grid), N, dtype=torch.float64)
    for g in range(G):
        members = torch.from_numpy(np.flatnonzero(group_of == g))
        n = nbins[g]
        if n < 2:
            continue
        mean_x = xsum[g] / n
        cov = xtx[g] / n - torch.outer(mean_x, mean_x)
        mean_y = ysum[members] / n
        cross = xty[:, members] / n - torch.outer(mean_x, mean_y)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp(min=0)
        scale = float(evals.mean()) if float(evals.mean()) > 0 else 1.0
        projected = evecs.T @ cross                              # (D, M)
        for k, alpha in enumerate(grid):
            w = evecs @ (projected / (evals + alpha * scale).unsqueeze(1))
            weights[k, members] = w.T
            biases[k, members] = mean_y - mean_x @ w
    model = PopulationLinearSTRF(N, F, n_lags, output_nonlinearity=output_nonlinearity)
    # validation correlation of every (penalty, neuron) from streamed moments
    n = torch.zeros(N, dtype=torch.float64)
    sy = torch.zeros(N, dtype=torch.float64)
    syy = torch.zeros(N, dtype=torch.float64)
    sp = torch.zeros(len(grid), N, dtype=torch.float64)
    spp = torch.zeros(len(grid), N, dtype=torch.float64)
    spy = torch.zeros(len(grid), N, dtype=torch.float64)
    for X, Y, has in _batches(ds, val, n_lags, batch_size):
        pred = torch.einsum("td,knd->ktn", X, weights) + biases.unsqueeze(1)  # (K, T, N)
        m = has.to(torch.float64)
        n += X.shape[0] * m
        sy += Y.sum(0) * m
        syy += (Y * Y).sum(0) * m
        sp += pred.sum(1) * m
        spp += (pred * pred).sum(1) * m
        spy += (pred * Y.unsqueeze(0)).sum(1) * m
    cov = spy / n - sp * sy / n ** 2
    var_p = spp / n - (sp / n) ** 2
    var_y = syy / n - (sy / n) ** 2
    val_corr = cov / torch.sqrt(var_p * var_y)
    best = torch.nan_to_num(val_corr, nan=-2.0).argmax(0)        # (N,)
    idx = torch.arange(N)
    with torch.no_grad():
        model.weight.copy_(weights[best, idx].reshape(N, F, n_lags).to(torch.float32))
        model.bias.copy_(biases[best, idx].to(torch.float32))
    return RidgeFit(model=model, alphas=grid[best], val_corr=val_corr[best, idx],
                    alpha_grid=grid)
