"""Neuron quality: how reliable each simulated neuron is, and how to select on it.
===============================================================================

``compute_neuron_quality`` adds two numbers to every neuron's metadata, computed from the
repeats of the responses (noise-aware, NaN-aware): ``snr``, the Sahani-Linden signal-to-noise
power ratio, and ``ccmax``, the highest correlation any model could reach given the
trial-to-trial noise. This example computes them on a simulated CRCNS AA2 release (in the
release's exact format, loaded by ``CRCNSAA2Dataset``), draws their distributions per
brain area and keeps the reliable neurons with a query.

Usage::

    python examples/neuron_quality.py
"""

# %%
import logging
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deepstrf.datasets.audio import CRCNSAA2Dataset
from deepstrf.plotting import plot_metric_distribution
from deepstrf.testing.fixtures import write_crcns_aa2

logging.getLogger("deepstrf").setLevel(logging.ERROR)  # "smaller than the real release"
tmp = tempfile.TemporaryDirectory()
root = Path(tmp.name) / "AA2"
write_crcns_aa2(root / "raw", n_cells=16, n_conspecific=3, n_flatrip=2, n_songrip=2,
                duration_range_s=(0.4, 0.7), seed=2)
ds = CRCNSAA2Dataset(root, dt_ms=5, smooth=False, progress=False, cache="off")
ds.compute_neuron_quality()
print(ds)

# %%
# Distributions over the population, then per area group.
meta = ds.get_nrn_meta()
snr = np.array([m["snr"] for m in meta])
ccmax = np.array([m["ccmax"] for m in meta])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
plot_metric_distribution(snr, label="snr (signal / noise power)", ax=ax1, bins=10)
plot_metric_distribution(ccmax, label="ccmax", ax=ax2, bins=10)
print(f"median snr {np.nanmedian(snr):.2f}, median ccmax {np.nanmedian(ccmax):.2f}")

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
groups = sorted({m["area_group"] for m in meta})
for g in groups:
    idx = [i for i, m in enumerate(meta) if m["area_group"] == g]
    ax.scatter(snr[idx], ccmax[idx], label=f"{g} ({len(idx)})")
ax.set_xlabel("snr")
ax.set_ylabel("ccmax")
ax.legend(frameon=False, fontsize=8)
ax.set_title("every neuron, by area group", fontsize=9)

# %%
# Keep the reliable neurons. The selection is a query over ``nrn_meta``; the quality keys
# are ordinary metadata, so they combine with the others.
kept = ds.select_pop_by_nrn_query("snr > 0.3 and ccmax > 0.5")
print(f"reliable neurons: {len(kept)} of {ds.get_N()}; stimuli in use: {len(ds)}")
tmp.cleanup()
