"""Plots for datasets and encoding models.

Needs matplotlib: ``pip install 'deepstrf-datasets[plot]'``.

Every function draws on a new :class:`matplotlib.figure.Figure`, or on the
figure or subfigure passed as ``fig`` (so several plots can share one image),
and returns it; ``fig.savefig("plot.png")`` works without a display. pyplot
is not used, so nothing depends on the backend or leaks global figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["plot_metric_distribution", "plot_prediction", "plot_spectrogram_raster_psth",
           "plot_strfs"]


def _figure(fig: Any, figsize: tuple[float, float]) -> Any:
    """``fig`` itself, or a new Figure (raising a clear error without matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("deepstrf.plotting needs matplotlib, an optional dependency. Install "
                          "it with: pip install 'deepstrf-datasets[plot]'  (or pip install "
                          "matplotlib).") from err
    return Figure(figsize=figsize, layout="constrained") if fig is None else fig


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_spectrogram_raster_psth(ds: Any, stim: int, neuron: int, *,
                                 prediction: Any = None, title: str | None = None,
                                 fig: Any = None) -> Any:
    """Spectrogram, raster and PSTH of one (stimulus, neuron) pair, optionally a prediction.

    Parameters
    ----------
    ds : AudioNeuralDataset
        In spectrogram mode.
    stim, neuron : int
        Indices into the whole dataset (not the selection).
    prediction : array-like, optional
        ``(T,)`` predicted rate (spikes per bin) drawn over the PSTH.
    """
    responses = ds.responses[stim][neuron]
    if torch.isnan(responses).all():
        raise ValueError(f"neuron {neuron} has no responses to stimulus {stim} (ds.nrn_masks"
                         f"[{stim}, {neuron}] is False); pick a pair with data.")
    spec = _np(ds.stims[stim])
    if spec.ndim != 3:
        raise ValueError("plot_spectrogram_raster_psth needs a spectrogram stim (1, F, T); "
                         f"got shape {spec.shape}.")
    counts = _np(responses)
    T = counts.shape[1]
    t = np.arange(T) * ds.dt / 1000.0
    fig = _figure(fig, (8, 6))
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1.2, 1.2]})
    axes[0].imshow(spec[0], aspect="auto", origin="lower", cmap="magma",
                   extent=(0, T * ds.dt / 1000.0, 0, spec.shape[1]))
    axes[0].set_ylabel("band")
    rows, cols = np.nonzero(counts > 0)
    axes[1].scatter(t[cols] + ds.dt / 2000.0, rows, s=4, marker="|", color="k")
    axes[1].set_ylim(-0.5, counts.shape[0] - 0.5)
    axes[1].set_ylabel("repeat")
    psth = np.nanmean(counts, axis=0)
    axes[2].plot(t, psth, color="k", lw=1, label="PSTH")
    if prediction is not None:
        axes[2].plot(t, _np(prediction).reshape(-1)[:T], color="tab:red", lw=1.2,
                     label="prediction")
        axes[2].legend(loc="upper right", frameon=False)
    axes[2].set_ylabel("spikes / bin")
    axes[2].set_xlabel("time (s)")
    nrn, sm = ds.nrn_meta[neuron], ds.stim_meta[stim]  # metadata may be any object
    stim_name = sm.get("name", stim) if isinstance(sm, Mapping) else stim
    cell = nrn.get("cell_id", neuron) if isinstance(nrn, Mapping) else neuron
    axes[0].set_title(title or f"stimulus {stim_name} - neuron {cell}", fontsize=9)
    return fig


def plot_strfs(strfs: Any, *, truth: Any = None, titles: Sequence[str] | None = None,
               dt_ms: float | None = None, ncols: int = 4, fig: Any = None) -> Any:
    """A grid of STRFs (``(K, F, L)``); with ``truth``, true and fitted side by side.

    Each kernel is shown with its own symmetric colour range, lag 0 at the left.
    """
    fitted = _np(strfs)
    if fitted.ndim != 3:
        raise ValueError(f"strfs must be (K, F, L); got shape {fitted.shape}.")
    true = None if truth is None else _np(truth)
    if true is not None and true.shape != fitted.shape:
        raise ValueError(f"truth has shape {true.shape} but strfs has {fitted.shape}.")
    panels = [(f"{titles[k] if titles else k}" + (" fitted" if true is not None else ""),
               fitted[k]) for k in range(len(fitted))]
    if true is not None:
        panels = [p for k in range(len(fitted))
                  for p in ((f"{titles[k] if titles else k} true", true[k]), panels[k])]
    ncols = 2 if true is not None else min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig = _figure(fig, (2.6 * ncols, 2.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    extent = None
    if dt_ms is not None:
        extent = (0, fitted.shape[2] * dt_ms, 0, fitted.shape[1])
    for ax, (label, kernel) in zip(axes.flat, panels):
        lim = float(np.abs(kernel).max()) or 1.0
        ax.imshow(kernel, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                  extent=extent)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("lag (ms)" if dt_ms is not None else "lag (bins)", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return fig


def plot_prediction(psth: Any, prediction: Any, *, dt_ms: float, ax: Any = None,
                    label: str | None = None) -> Any:
    """A PSTH and a prediction over time (both ``(T,)``)."""
    y, p = _np(psth).reshape(-1), _np(prediction).reshape(-1)
    if ax is None:
        ax = _figure(None, (8, 2.5)).subplots()
    fig = ax.figure
    t = np.arange(len(y)) * dt_ms / 1000.0
    ax.plot(t, y, color="k", lw=1, label="PSTH")
    ax.plot(t[:len(p)], p[:len(y)], color="tab:red", lw=1.2, label="prediction")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("spikes / bin")
    ax.legend(frameon=False, loc="upper right")
    if label:
        ax.set_title(label, fontsize=9)
    return fig


def plot_metric_distribution(values: Any, *, label: str = "CCnorm", ax: Any = None,
                             bins: int = 20) -> Any:
    """Histogram of a per-neuron metric (NaN ignored), with its median marked."""
    v = _np(values).astype(float).reshape(-1)
    v = v[np.isfinite(v)]
    if ax is None:
        ax = _figure(None, (4, 3)).subplots()
    fig = ax.figure
    ax.hist(v, bins=bins, color="tab:blue", alpha=0.8)
    if len(v):
        ax.axvline(float(np.median(v)), color="k", ls="--", lw=1,
                   label=f"median {np.median(v):.2f}")
        ax.legend(frameon=False)
    ax.set_xlabel(label)
    ax.set_ylabel("neurons")
    return fig
