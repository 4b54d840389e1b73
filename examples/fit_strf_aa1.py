"""Fit spectro-temporal receptive fields on (simulated) CRCNS AA1 data.
====================================================================

Writes a miniature release in CRCNS AA1's distributed format whose neurons have known STRFs
(``deepstrf.testing.fixtures``), loads it with ``CRCNSAA1Dataset`` exactly as the real
release would be loaded, keeps the reliable neurons, fits one linear STRF per neuron in
closed form (ridge regression, penalty chosen on validation stimuli) and reports how well
the fit predicts held-out stimuli and how close each STRF is to the truth.

Usage::

    python examples/fit_strf_aa1.py [FOLDER]

FOLDER receives the simulated release and its processed cache (default: a temporary folder,
deleted at the end). With the real data, replace the fixture by
``CRCNSAA1Dataset(dt_ms=5, smooth=False, download=True)``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from deepstrf.datasets.audio import CRCNSAA1Dataset
from deepstrf.metrics import corrcoef, normalized_corrcoef
from deepstrf.models import fit_ridge, split_stimuli
from deepstrf.testing.fixtures import write_crcns_aa1
from deepstrf.utils.data import neural_collate, stim_loader

N_LAGS = 20  # 100 ms of history at 5 ms bins, as long as the simulated STRFs


def main(folder: Path) -> None:
    # 1. A simulated AA1 release: 12 cells, 4 songs and 6 ripples of 1-1.5 s, 10 repeats.
    root = folder / "AA1"
    info = write_crcns_aa1(root / "raw", n_cells=12, n_conspecific=4, n_flatrip=6,
                           duration_range_s=(1.0, 1.5), n_lags=N_LAGS, seed=3)

    # 2. Load it. Raw spike counts (no smoothing): what the quality metrics expect.
    ds = CRCNSAA1Dataset(root, dt_ms=5, smooth=False, progress=False)
    print(ds)

    # 3. Keep the neurons that follow the stimulus (Sahani-Linden signal-to-noise ratio).
    ds.compute_neuron_quality()
    kept = ds.select_pop_by_nrn_query("snr > 0.2")
    print(f"neurons kept: {len(kept)} of {ds.get_N()}")

    # 4. Split the stimuli, stratified by type; standardise with train + validation only.
    train, val, test = split_stimuli(ds, seed=0, stratify="type")
    print(f"stimuli: train {train}, validation {val}, test {test}")
    ds.standardize_stims(train + val)

    # A DataLoader with neural_collate gives padded batches of the selected neurons.
    loader = DataLoader(ds, batch_size=4, shuffle=True, collate_fn=neural_collate,
                        generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    print("one batch: stims", tuple(batch["stims"].shape), "responses",
          tuple(batch["responses"].shape), "valid values", int(batch["valid_mask"].sum()))

    # 5. Closed-form ridge fit; it streams the training stimuli through neural_collate.
    fit = fit_ridge(ds, train, val, n_lags=N_LAGS)

    # 6. Predict the test stimuli (stim_loader keeps the neuron axis of the fit).
    batch = next(iter(stim_loader(ds, test, batch_size=len(test))))
    with torch.no_grad():
        pred = fit.model(batch["stims"])
    cc_raw = corrcoef(pred, batch["responses"], reduction="none")
    cc_norm = normalized_corrcoef(pred, batch["responses"], reduction="none")

    # 7. Compare each fitted STRF with the one the neuron was simulated with.
    strf_r = []
    for k, meta in enumerate(ds.get_nrn_meta()):
        true = torch.tensor(info.truth.population.strfs[info.neuron_of(meta["cell_id"])])
        fitted = fit.model.weight[k].detach().to(true.dtype)
        strf_r.append(float(torch.corrcoef(torch.stack([fitted.flatten(),
                                                        true.flatten()]))[0, 1]))
    for meta, a, b, r in zip(ds.get_nrn_meta(), cc_raw.tolist(), cc_norm.tolist(), strf_r):
        print(f"  {meta['cell_id']:<16} {meta['area']:<8} snr {meta['snr']:5.2f}  "
              f"CCraw {a:5.2f}  CCnorm {b:5.2f}  STRF vs truth {r:5.2f}")
    print(f"median CCnorm on the test stimuli: {cc_norm.nanmedian():.2f}; "
          f"median STRF correlation with the truth: {torch.tensor(strf_r).median():.2f}")

    # 8. Pictures (matplotlib): three fitted STRFs beside the true ones, and the prediction of
    # one test stimulus over the measured PSTH; saved into FOLDER (shown in the gallery).
    import matplotlib.pyplot as plt

    from deepstrf.plotting import plot_prediction, plot_strfs

    shown = list(range(min(3, ds.get_N())))
    ids = [ds.get_nrn_meta()[k]["cell_id"] for k in shown]
    truth = torch.stack([torch.tensor(info.truth.population.strfs[info.neuron_of(i)])
                         for i in ids])
    fig = plt.figure(figsize=(6, 6.5), layout="constrained")
    plot_strfs(fit.model.weight[shown].detach(), truth=truth, titles=ids, dt_ms=5, fig=fig)
    fig.savefig(folder / "strfs.png")
    fig, ax = plt.subplots(figsize=(7, 2.5), layout="constrained")
    psth = batch["responses"][0, 0].nanmean(dim=0)
    length = int(batch["valid_mask"][0, 0].any(dim=0).sum())
    plot_prediction(psth[:length], pred[0, 0, :length], dt_ms=5, ax=ax)
    ax.set_title(f"{ids[0]}: test stimulus {test[0]}, CCraw {cc_raw[0]:.2f}", fontsize=9)
    fig.savefig(folder / "prediction.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        help="where to write the simulated data (default: a temporary folder)")
    args = parser.parse_args()
    # The simulated release is smaller than the real one, which the loader would report.
    logging.getLogger("deepstrf").setLevel(logging.ERROR)
    if args.folder is not None:
        main(args.folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
