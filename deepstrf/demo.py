"""The main job end to end, offline: ``deepstrf demo``.

1. write a simulated dataset in CRCNS AA1's distributed format (neurons with
   known STRFs; :mod:`deepstrf.testing.fixtures`), unless it is already there;
2. load it with the real :class:`~deepstrf.datasets.audio.crcns_aa1.CRCNSAA1Dataset`
   (parallel first build, cached afterwards);
3. compute each neuron's SNR and CCmax and keep the well-driven neurons with a
   predicate;
4. split the stimuli into train / validation / test, stratified by type, and
   standardise the spectrograms with train + validation statistics;
5. fit a population linear STRF in closed form (ridge, penalty chosen on the
   validation stimuli), streaming ``DataLoader`` + ``neural_collate`` batches;
6. evaluate on the test stimuli (CCraw and CCnorm of :mod:`deepstrf.metrics`),
   compare each fitted STRF with its ground truth, and draw a figure.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepstrf._validation import check_choice, check_int

__all__ = ["DemoReport", "SIZES", "run_demo"]

logger = logging.getLogger(__name__)

#: Simulated dataset sizes: cells, conspecific songs, ripples, repeats, durations (s).
SIZES: dict[str, dict[str, Any]] = {
    "small": {"n_cells": 24, "n_conspecific": 6, "n_flatrip": 8, "n_repeats": 10,
              "duration_range_s": (1.0, 1.6)},
    "default": {"n_cells": 100, "n_conspecific": 10, "n_flatrip": 20, "n_repeats": 10,
                "duration_range_s": (1.0, 2.0)},
    "large": {"n_cells": 200, "n_conspecific": 15, "n_flatrip": 30, "n_repeats": 12,
              "duration_range_s": (1.0, 2.5)},
}
DT_MS = 5.0
N_LAGS = 20          # 100 ms of history, as the simulated STRFs
SNR_MIN = 0.3        # "well-driven": Sahani-Linden SNR of the unsmoothed counts


@dataclass
class DemoReport:
    """Numbers the demo prints (also returned for scripts and tests)."""

    path: Path
    figure: Path | None
    n_neurons: int
    n_kept: int
    n_stims: tuple[int, int, int]
    cc_raw: np.ndarray
    cc_norm: np.ndarray
    strf_corr: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    from_cache: bool = False

    @staticmethod
    def _summary(values: np.ndarray) -> str:
        v = values[np.isfinite(values)]
        if not len(v):
            return "n/a"
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        return f"median {med:.3f}  (IQR {q1:.3f}-{q3:.3f}, n={len(v)})"

    def text(self) -> str:
        """The report as printed by ``deepstrf demo``."""
        good = np.isfinite(self.strf_corr)
        above = int((self.strf_corr[good] > 0.8).sum())
        lines = [
            f"deepstrf demo: simulated CRCNS AA1 data in {self.path}",
            f"  neurons            {self.n_kept} kept of {self.n_neurons} "
            f"(Sahani-Linden SNR > {SNR_MIN})",
            f"  stimuli            {self.n_stims[0]} train / {self.n_stims[1]} validation / "
            f"{self.n_stims[2]} test",
            f"  CCraw  (test)      {self._summary(self.cc_raw)}",
            f"  CCnorm (test)      {self._summary(self.cc_norm)}",
            f"  STRF vs truth      {self._summary(self.strf_corr)}; {above} of {int(good.sum())} "
            "above 0.8",
            "  time               " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
            + (" (dataset from the cache)" if self.from_cache else ""),
        ]
        if self.figure is not None:
            lines.append(f"  figure             {self.figure}")
        return "\n".join(lines)


def _write_dataset(root: Path, size: str, seed: int) -> Path:
    """The simulated tree under ``root/raw`` and its ground truth, reused when present."""
    from deepstrf.testing.fixtures import write_crcns_aa1

    truth_file = root / "ground_truth.npz"
    stamp = {"size": size, "seed": seed, **{k: list(v) if isinstance(v, tuple) else v
                                            for k, v in SIZES[size].items()}}
    stamp_file = root / "demo.json"
    if truth_file.is_file() and stamp_file.is_file() and \
            json.loads(stamp_file.read_text()) == stamp and (root / "raw" / "all_stims").is_dir():
        return truth_file
    info = write_crcns_aa1(root / "raw", dt_ms=DT_MS, seed=seed, n_lags=N_LAGS, **SIZES[size])
    cells = [c.cell_id for c in info.cells]
    strfs = np.stack([info.truth.population.strfs[info.neuron_of(c)] for c in cells])
    tmp = root / "ground_truth.tmp.npz"
    np.savez(tmp, cell_id=np.array(cells), strf=strfs,
             band_mean=info.truth.population.band_mean, band_std=info.truth.population.band_std)
    tmp.replace(truth_file)
    stamp_file.write_text(json.dumps(stamp))
    return truth_file


def run_demo(path: str | Path | None = None, *, size: str = "default", seed: int = 0,
             n_jobs: int = 2, output: str | Path | None = "deepstrf-demo.png",
             progress: bool | None = None,
             log: Callable[[str], None] | None = None) -> DemoReport:
    """Run the demo; see the module docstring.

    Parameters
    ----------
    path : path-like, optional
        Folder for the simulated dataset (default: ``<data home>/demo/<size>-seed<seed>``).
        Written once; later runs reuse it and its processed cache.
    size : {'small', 'default', 'large'}
    seed : int
        Seed of the simulation and of the split.
    n_jobs : int
        Workers for the first build of the dataset.
    output : path-like or None
        PNG to write (None: no figure).
    progress : bool, optional
        Progress bars on the long steps (default: on a terminal).
    log : callable, optional
        Receives one line per step (the command line passes ``print``).

    Returns
    -------
    DemoReport
    """
    from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset
    from deepstrf.io.paths import data_home
    from deepstrf.metrics import corrcoef, normalized_corrcoef
    from deepstrf.models import fit_ridge, split_stimuli

    check_choice("size", size, tuple(SIZES))
    seed = check_int("seed", seed, minimum=0)
    say = log or (lambda line: None)
    root = Path(path).expanduser().absolute() if path is not None else \
        data_home() / "demo" / f"{size}-seed{seed}"
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    say(f"[1/5] simulated AA1-format dataset ({size}) in {root}")
    truth_file = _write_dataset(root, size, seed)
    seconds["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("[2/5] loading it with CRCNSAA1Dataset")
    # a simulated release of another size than the real one is expected here
    quiet = logging.getLogger("deepstrf.datasets._source")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        ds = CRCNSAA1Dataset(root, dt_ms=DT_MS, smooth=False, n_jobs=n_jobs, progress=progress)
    finally:
        quiet.setLevel(level)
    from_cache = ds.provenance["cache_hit"]
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("[3/5] neuron quality, selection, split")
    ds.compute_neuron_quality(seed=seed)
    kept = ds.select_pop_by_nrn_predicate(lambda n: n["snr"] > SNR_MIN)
    if not kept:
        raise RuntimeError(f"no neuron has SNR > {SNR_MIN}; try another seed or size.")
    train, val, test = split_stimuli(ds, seed=seed, stratify="type")
    ds.standardize_stims(train + val)
    seconds["quality"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"[4/5] fitting a population linear STRF ({len(kept)} neurons, ridge)")
    fit = fit_ridge(ds, train, val, n_lags=N_LAGS)
    seconds["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("[5/5] evaluating on the test stimuli")
    from deepstrf.utils.data import stim_loader

    batch = next(iter(stim_loader(ds, test, batch_size=len(test))))
    with torch.no_grad():
        pred = fit.model(batch["stims"])
    cc_raw = corrcoef(pred, batch["responses"], reduction="none").numpy()
    cc_norm = normalized_corrcoef(pred, batch["responses"], reduction="none").numpy()
    truth = np.load(truth_file)
    strf_of = {str(c): k for k, c in enumerate(truth["cell_id"])}
    fitted = fit.model.weight.detach().numpy()
    true_strfs = np.stack([truth["strf"][strf_of[m["cell_id"]]] for m in ds.get_nrn_meta()])
    strf_corr = np.array([np.corrcoef(f.ravel(), t.ravel())[0, 1]
                          for f, t in zip(fitted, true_strfs)])
    figure = None
    if output is not None:
        figure = _figure(ds, fit, batch, pred, test, fitted, true_strfs, strf_corr, cc_norm,
                         Path(output))
    seconds["evaluate"] = time.perf_counter() - t0
    return DemoReport(path=root, figure=figure, n_neurons=ds.get_N(), n_kept=len(kept),
                      n_stims=(len(train), len(val), len(test)), cc_raw=cc_raw, cc_norm=cc_norm,
                      strf_corr=strf_corr, seconds=seconds, from_cache=from_cache)


def _figure(ds: Any, fit: Any, batch: dict, pred: torch.Tensor, test: list[int],
            fitted: np.ndarray, truth: np.ndarray, strf_corr: np.ndarray, cc_norm: np.ndarray,
            output: Path) -> Path:
    from matplotlib.figure import Figure

    from deepstrf.plotting import plot_metric_distribution, plot_spectrogram_raster_psth, plot_strfs

    best = np.argsort(-np.nan_to_num(strf_corr, nan=-2))[:3]
    neurons = ds.selected_neurons
    fig = Figure(figsize=(13, 8.5), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.3])
    titles = [f"{ds.nrn_meta[neurons[k]]['cell_id']} r={strf_corr[k]:.2f}" for k in best]
    plot_strfs(fitted[best], truth=truth[best], titles=titles, dt_ms=ds.dt, fig=left)
    left.suptitle("true vs fitted STRFs (best three)", fontsize=10)
    top, bottom = right.subfigures(2, 1, height_ratios=[1.6, 1])
    k = int(best[0])
    b = 0
    stim = int(test[0])
    for i, meta in enumerate(batch["stim_meta"]):
        if ds.nrn_masks[ds.stim_meta.index(meta), neurons[k]]:
            b, stim = i, ds.stim_meta.index(meta)
            break
    T = ds.response_store.T(stim)
    plot_spectrogram_raster_psth(ds, stim, neurons[k], prediction=pred[b, k, 0, :T], fig=top,
                                 title=f"test stimulus {ds.stim_meta[stim]['type']}, neuron "
                                       f"{ds.nrn_meta[neurons[k]]['cell_id']}")
    plot_metric_distribution(cc_norm, label="CCnorm on test stimuli", ax=bottom.subplots())
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    return output.absolute()
