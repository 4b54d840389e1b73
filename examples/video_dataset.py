"""Movies as stimuli: load a (simulated) visual release and fit spatio-temporal filters.
=====================================================================================

Writes a miniature visual release whose neurons have known spatio-temporal receptive
fields (``deepstrf.testing.visual``): 1/f-noise movies stored as ``.npy``, HDF5, MATLAB
files and folders of png frames (and a lossless video file when PyAV is installed), spike
times as JSON. Loads it through the visual build pipeline (``SimulatedVisualDataset``, a
``VideoSourceDataset``), keeps the well-driven neurons, applies two of the movie methods,
batches it, and fits one linear filter per neuron on the flattened pixels with the model
kit's ``fit_ridge``; then compares each fitted filter with the truth.

Usage::

    python examples/video_dataset.py [FOLDER]

FOLDER receives the simulated release and its processed cache (default: a temporary folder,
deleted at the end).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from deepstrf.models import fit_ridge, split_stimuli
from deepstrf.testing.visual import SimulatedVisualDataset, write_visual_release
from deepstrf.utils.data import neural_collate

N_LAGS = 5  # 50 ms of history at 10 ms bins, as long as the simulated filters


def main(folder: Path) -> None:
    try:
        import av  # noqa: F401
        formats = ("npy", "h5", "mat", "png", "mp4")
    except ImportError:
        formats = ("npy", "h5", "mat", "png")
    # 1. A simulated release: 8 neurons (the first two barely driven), 30 movies of 2 s,
    # 12x12 pixels at 10 ms per frame, 10 repeats.
    # The release goes into FOLDER/visual/raw, so its processed cache goes to
    # FOLDER/visual/processed.
    release = write_visual_release(folder / "visual" / "raw", n_neurons=8, n_movies=30, n_frames=200,
                                   H=12, W=12, n_lags=N_LAGS, n_repeats=10, kinds=("noise",),
                                   formats=formats, n_weak=2, base_rate_hz=40, alpha_time=0.5,
                                   seed=2)
    # 2. Load it: the movies are rendered on the response grid, the spikes binned at 10 ms.
    ds = SimulatedVisualDataset(folder / "visual", dt_ms=10.0, progress=False)
    print(ds)
    print(f"movies (C, H, W) = ({ds.C}, {ds.H}, {ds.W}) at {ds.frame_rate_hz:g} frames/s; "
          f"formats read: {sorted(set(release.formats))}")

    # 3. Keep the neurons the movies drive (SNR of Sahani & Linden).
    quality = ds.compute_neuron_quality()
    ds.select_pop_by_nrn_query("snr > 0.3")
    print(f"well-driven neurons: {len(ds.I)} of {ds.get_N()} "
          f"(SNR {np.round(quality['snr'].numpy(), 2).tolist()})")

    # 4. Movie methods work in place and are recorded; one batch shows the layout.
    train, val, test = split_stimuli(ds, (0.7, 0.15, 0.15), seed=0)
    ds.normalize_videos("global", stim_indices=train + val)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=neural_collate)))
    print(f"a batch: stims {tuple(batch['stims'].shape)}, responses "
          f"{tuple(batch['responses'].shape)}")

    # 5. One linear filter per neuron on the flattened pixels: weights (N, C*H*W, lags).
    fit = fit_ridge(ds, train, val, n_lags=N_LAGS)
    fitted = fit.model.weight.detach().numpy().reshape(len(ds.I), ds.C, ds.H, ds.W, N_LAGS)
    truth = release.population.rfs[ds.I]
    corr = [float(np.corrcoef(f[0].ravel(), t.ravel())[0, 1]) for f, t in zip(fitted, truth)]
    print(f"median filter correlation with the truth: {np.median(corr):.2f} "
          f"(worst {min(corr):.2f})")
    print("operations:", [op["operation"] for op in ds.provenance["operations"]])

    # 6. Pictures (matplotlib): fitted and true filters of two neurons at every lag.
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, N_LAGS, figsize=(7, 5.6), layout="constrained")
    for row, k in enumerate((0, 1)):
        for which, rf in ((0, fitted[k, 0]), (1, truth[k])):
            lim = np.abs(rf).max()
            for lag in range(N_LAGS):
                ax = axes[2 * row + which, lag]
                ax.imshow(rf[..., lag], cmap="RdBu_r", vmin=-lim, vmax=lim)
                ax.set_xticks([])
                ax.set_yticks([])
                if lag == 0:
                    name = ds.get_nrn_meta()[k]["cell_id"]
                    ax.set_ylabel(f"{name}\n{('fitted', 'true')[which]}", fontsize=8)
                if row == which == 0:
                    ax.set_title(f"lag {lag * 10} ms", fontsize=8)
    fig.savefig(folder / "filters.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        help="where to write the simulated data (default: a temporary folder)")
    args = parser.parse_args()
    logging.getLogger("deepstrf").setLevel(logging.ERROR)
    if args.folder is not None:
        main(args.folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
