"""CRCNS AC1: membrane potential and cell-attached spikes, on a simulated release.
===============================================================================

CRCNS AC1 (Asari, Wehr, Machens & Zador) holds intracellular recordings from anaesthetised rats
to natural sounds, in two experimenters' subsets standardised by H. Asari as MATLAB structs:
**Wehr** (A1, blind whole-cell at 4 kHz, one ``.mat`` per trial, 25 cells and 51 natural-sound
fragments; Machens, Wehr & Zador 2004) and **Asari** (A1 whole-cell and MGB cell-attached at
10 kHz, 39 A1 and 14 MGB cells, many triggers per recording file, each stimulus a sequence of
natural-sound segments; Asari & Zador 2009). A whole-cell response is a membrane potential in mV, signed and
subthreshold, not a spike count: ``CRCNSAC1Dataset`` subtracts its slow baseline (a 100 ms
running median smoothed by a 10 ms Gaussian), drops the repeats that fail the lab's gating
(raw Vm beyond +-150 mV, more than 0.5 % of samples 30 mV from the median, or, with 3 or more
repeats, r < 0.05 with the median of the others) and average-pools it to ``dt_ms``. A cell-attached (MGB) trace is detrended too, its
spikes detected by threshold and binned as counts. ``nrn_meta['signal_type']`` says which
(``'subthreshold'`` or ``'spikes'``).

``deepstrf.testing.fixtures`` writes a miniature release in the exact layout from simulated
cells with known kernels, slow drift and noise, and plants three corrupted Wehr repeats for the
gating and some of the release's quirks; the real dataset class loads it. This page prints the
neurons' metadata, shows a Wehr cell's repeats before and after detrending with the gated
repeats marked, and an MGB cell's detected spikes. With the real files, drop the fixture and
point ``path=`` at them (``download=True`` needs a free CRCNS account).

Usage::

    python examples/dataset_crcns_ac1.py
"""

# %%
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deepstrf.datasets.audio import CRCNSAC1Dataset
from deepstrf.plotting import plot_spectrogram_raster_psth
from deepstrf.testing.fixtures.crcns_ac1 import write_crcns_ac1

logging.getLogger("deepstrf").setLevel(logging.ERROR)  # skipped protocols are logged
tmp = tempfile.TemporaryDirectory()
folder = Path(tmp.name)


def load(report=False, **kwargs):
    """The dataset; with ``report``, print the warnings its loader gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CRCNSAC1Dataset(folder / "AC1", cache="off", progress=False, **kwargs)
    for w in caught if report else ():
        text = str(w.message).split(": ", 1)[-1].replace(str(folder), "<tmp>")
        print(f"  {w.category.__name__}: {text}")
    return ds


def khz_axis(ax):
    """Label a spectrogram's band axis in kHz (band k is centred on 100 Hz * 2**(k / 6))."""
    khz = np.array([0.25, 1, 4, 16])
    ax.set(yticks=6 * np.log2(khz * 1000 / 100) + 0.5, yticklabels=[f"{k:g}" for k in khz],
           ylabel="kHz")


def headroom(ax, share=0.3):
    """Room above the traces for a legend."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + share * (high - low))


# %%
# Two Wehr cells (three fragments, four repeats), one Asari A1 cell and one Asari MGB cell.
# Loading everything reports the planted quirks (a trigger type misspelt ``'nauralsound'``, a
# trigger naming a stimulus its file does not list), the three gated repeats, and that
# membrane potential and spike counts are mixed in one dataset.
write_crcns_ac1(folder / "AC1" / "raw", n_wehr_cells=2, n_wehr_stims=3, n_repeats=4, seed=1)
print("everything:")
ds = load(report=True)
print(ds)
for n, m in enumerate(ds.nrn_meta):
    print(f"  neuron {n} {m['cell_id']}: {m['experimenter']}, {m['area']}, "
          f"{m['recording_type']}, signal_type {m['signal_type']!r}, "
          f"{m['n_repeats_gated']} repeat(s) gated")
for s, m in enumerate(ds.stim_meta):
    print(f"  stim {s} {m['name']}: {m['duration_s']:.2f} s at {m['sample_rate']:.0f} Hz, "
          f"{m['n_bands_above_nyquist']} bands above its Nyquist frequency")

# %%
# The Wehr subset three times (the same warnings again, not printed): as published (no
# detrending, no gating), detrended with every repeat, and as loaded by default (detrended and
# gated). Detrending is per file, so the gated load's repeats are rows of the ungated one; the
# rows missing from it are the gated repeats.
raw = load(experimenter="wehr", detrend_med_ms=None, gating=False)
ungated = load(experimenter="wehr", gating=False)
wehr = load(experimenter="wehr")


def gated_rows(stim, neuron):
    """Indices of the ungated repeats that the gated load does not have."""
    kept = wehr.responses[stim][neuron].numpy()
    rows = ungated.responses[stim][neuron].numpy()
    return [i for i, row in enumerate(rows)
            if not any(np.allclose(row, k, equal_nan=True) for k in kept)]


neuron = 0
cell = wehr.nrn_meta[neuron]["cell_id"]
gated = {s: gated_rows(s, neuron) for s in range(len(wehr.stims))
         if wehr.nrn_masks[s, neuron]}
n_dropped = sum(len(v) for v in gated.values())
n_total = sum(ungated.responses[s][neuron].shape[0] for s in gated)
where = "; ".join(f"{wehr.stim_meta[s]['name']} repeat {', '.join(map(str, rows))}"
                  for s, rows in gated.items() if rows)
print(f"Wehr cell {cell}: gating dropped {n_dropped} of {n_total} repeats ({where}); "
      "nrn_meta['gated_repeats']:")
for reason in wehr.nrn_meta[neuron]["gated_repeats"]:
    print(f"  {reason}")
# each entry reads '<category>/<file> <trial file>: <reason>'
reasons = {"wehr/" + r.split(" ", 1)[0]: r.split(": ", 1)[1]
           for r in wehr.nrn_meta[neuron]["gated_repeats"]}

# %%
# One Wehr stimulus: its spectrogram (the lab's log spectrogram in dB; the bands above the
# 44.1 kHz wav's Nyquist frequency are silence and left out of the picture), one repeat as
# recorded and the baseline the detrending subtracts, and every repeat after detrending, the
# gated one dashed, with the mean of the kept ones. The stimulus is the one whose gated repeat
# failed the consistency test (reversed polarity: r < 0.05 with the others).
stim = next(s for s in gated if reasons[wehr.stim_meta[s]["name"]].startswith("r = "))
dt = wehr.dt
spec = wehr.stims[stim][0].numpy()
spec = spec[:spec.shape[0] - wehr.stim_meta[stim]["n_bands_above_nyquist"]]
T = spec.shape[1]
t = np.arange(T) * dt / 1000.0
raw_rows = raw.responses[stim][neuron].numpy()
all_rows = ungated.responses[stim][neuron].numpy()
kept = wehr.responses[stim][neuron].numpy()
fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True, layout="constrained",
                         height_ratios=(1.1, 1, 1.4))
axes[0].imshow(spec, aspect="auto", origin="lower", cmap="magma", extent=(0, T * dt / 1000, 0,
               spec.shape[0]), vmin=np.percentile(spec, 5), vmax=spec.max())
khz_axis(axes[0])
axes[0].set_title(f"{wehr.stim_meta[stim]['name']}, cell {cell}", fontsize=9)
axes[1].plot(t, raw_rows[0], color="0.3", lw=1, label="repeat 0 as recorded")
axes[1].plot(t, raw_rows[0] - all_rows[0], color="tab:orange", lw=1.5,
             label="baseline subtracted (100 ms median, 10 ms Gaussian)")
axes[1].set(ylabel="Vm (mV)")
headroom(axes[1])
axes[1].legend(loc="upper right", fontsize=8, frameon=False)
for i in [i for i in range(len(all_rows)) if i not in gated[stim]]:
    axes[2].plot(t, all_rows[i], color="0.7", lw=0.8)
axes[2].lines[0].set_label("kept repeats")
for i in gated[stim]:
    axes[2].plot(t, all_rows[i], "--", color="tab:red", lw=1.2, label=f"repeat {i}: gated")
axes[2].plot(t, np.nanmean(kept, axis=0), color="k", lw=1.5, label=f"mean of {len(kept)} kept")
axes[2].set(xlabel="time (s)", ylabel="detrended Vm (mV)")
headroom(axes[2])
axes[2].legend(loc="upper right", fontsize=8, frameon=False, ncols=3)

# %%
# What the gating dropped, one repeat per fragment (the fixture plants a 160 mV artefact, a
# 40 mV block and a reversed repeat), each against the kept repeats, with the reason the
# loader recorded. The gating tests the 4 kHz trace; the pictures show 5 ms means, so the
# 2.5 ms artefact peaks lower than the 160 mV it reached.
fig, axes = plt.subplots(1, len(gated), figsize=(9, 3), layout="constrained")
for ax, (s, rows) in zip(axes, gated.items()):
    ts = np.arange(wehr.responses[s][neuron].shape[1]) * dt / 1000.0
    for row in wehr.responses[s][neuron].numpy():
        ax.plot(ts, row, color="0.7", lw=0.8)
    for i in rows:
        ax.plot(ts, ungated.responses[s][neuron][i].numpy(), color="tab:red", lw=1)
    name = wehr.stim_meta[s]["name"]
    ax.set(title=f"{name}, repeat {', '.join(map(str, rows))} (red)\n{reasons.get(name, '')}",
           xlabel="time (s)")
    ax.title.set_fontsize(8)
axes[0].set_ylabel("detrended Vm (mV)")

# %%
# The MGB cell: cell-attached, so its responses are spikes detected in the detrended trace
# (above 5 robust SDs) and counted per 5 ms bin. With ``smooth=False`` the counts are exact
# (raster and PSTH); the default ``smooth=True`` convolves them with a 21 ms unit-sum Hanning
# window (the red line, the mean over repeats).
mgb = load(experimenter="asari", sites="MGB", smooth=False)
m = mgb.nrn_meta[0]
stim = int(np.argmax([r[0].shape[1] for r in mgb.responses]))    # the longest sequence
spikes = int(np.nansum(np.concatenate([r[0].numpy().ravel() for r in mgb.responses])))
fig = plt.figure(figsize=(7, 4.5), layout="constrained")
plot_spectrogram_raster_psth(mgb, stim, 0, fig=fig, title=f"{mgb.stim_meta[stim]['name']}, MGB "
                             f"cell {m['cell_id']} ({m['recording_type']})")
smooth_n = [n for n, x in enumerate(ds.nrn_meta) if x["cell_id"] == m["cell_id"]][0]
smooth_s = [s for s, x in enumerate(ds.stim_meta) if x["name"] == mgb.stim_meta[stim]["name"]][0]
smoothed = np.nanmean(ds.responses[smooth_s][smooth_n].numpy(), axis=0)
khz_axis(fig.axes[0])
psth_ax = fig.axes[2]
psth_ax.lines[0].set_label("smooth=False (counts)")
psth_ax.plot(np.arange(smoothed.size) * dt / 1000.0, smoothed, color="tab:red", lw=1.2,
             label="smooth=True")
headroom(psth_ax)
psth_ax.legend(loc="upper right", fontsize=8, frameon=False, ncols=2)
print(f"AC1: {len(ds.stims)} stims, {len(ds.nrn_meta)} neurons "
      f"({', '.join(sorted(x['signal_type'] for x in ds.nrn_meta))}); Wehr cell {cell}: "
      f"gating dropped {n_dropped} of {n_total} repeats; MGB cell {m['cell_id']}: "
      f"{spikes} spikes detected in {len(mgb.stims)} stims x "
      f"{mgb.responses[0][0].shape[0]} repeats")
tmp.cleanup()
