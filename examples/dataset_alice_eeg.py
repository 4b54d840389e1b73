"""Alice EEG: continuous responses, a word table, and a TRF, on a simulated release.
===================================================================================

The Alice dataset (Bhattasali, Brennan et al. 2020) is EEG from 61 scalp channels while
participants listened to the first chapter of *Alice in Wonderland*, cut in 12 segments. Its
responses are continuous voltages, not spikes: each EEG channel of each subject is a "neuron" of
the dataset (``treat_subjects_as='repeats'`` makes the subjects repeats instead), one repeat, on
the same 10 ms grid as the stimulus spectrogram. ``stim_meta[s]['words']`` carries the release's
word table (onset bin, word, frequency, n-gram surprisal...), and ``ds.word_predictor()`` turns a
column into a time series on the response grid.

``deepstrf.testing.fixtures`` writes a miniature release in the exact format (MNE ``.fif``
recordings with their annotations, the segment wavs, the word table CSV) from a simulated
temporal response function (TRF) to the speech envelope and to word onsets;
``AliceEEGDataset`` loads it through MNE. This page shows one segment with its words and a few
channels, then fits an envelope TRF per channel with :func:`deepstrf.models.fit_ridge` and
compares it with the simulated one. With the real files, drop the fixture and point ``path=``
at them.

Usage::

    python examples/dataset_alice_eeg.py
"""

# %%
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deepstrf.datasets.audio import AliceEEGDataset
from deepstrf.errors import DataQuirkWarning
from deepstrf.models import fit_ridge, split_stimuli
from deepstrf.testing.fixtures.alice import ALICE_EEG_CHANNELS, write_alice_eeg

logging.getLogger("deepstrf").setLevel(logging.ERROR)  # "smaller than the real release"
tmp = tempfile.TemporaryDirectory()
folder = Path(tmp.name)

# %%
# Two subjects; S26 is one of the participants whose recording lacks segment 1 in the release,
# and the writer reproduces that. The loader says so (a DataQuirkWarning) and keeps the
# ``(1, 1)`` NaN sentinel for those pairs.
fixture = write_alice_eeg(folder / "Alice" / "raw", subjects=("S01", "S26"),
                          segment_durations_s=10.0, seed=2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", DataQuirkWarning)
    ds = AliceEEGDataset(folder / "Alice", cache="off", progress=False)
for w in caught:
    if issubclass(w.category, DataQuirkWarning):
        print("quirk:", str(w.message).split(": ", 1)[-1])
s26 = [n for n, m in enumerate(ds.nrn_meta) if m["subject"] == "S26"]
print(f"{ds}\n  segment 1 heard by S26's channels: {bool(ds.nrn_masks[0][s26].any())}")

# %%
# One item: segment 1 (stimulus 0) as an 8-band spectrogram, its word onsets, and four channels
# of S01 in microvolts.
stim = 0
spec = ds.stims[stim][0].numpy()
words = ds.stim_meta[stim]["words"]
onsets = np.asarray(words["bin"]) * ds.dt / 1000.0
t = np.arange(spec.shape[1]) * ds.dt / 1000.0
picks = [n for n, m in enumerate(ds.nrn_meta)
         if m["subject"] == "S01" and m["channel_id"] in ("1", "10", "25", "44")]
fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True, layout="constrained",
                         height_ratios=(1, 1.6))
axes[0].imshow(spec, aspect="auto", origin="lower", extent=(0, t[-1], 0, spec.shape[0]),
               cmap="magma")
axes[0].vlines(onsets, spec.shape[0], spec.shape[0] + 1, color="k", lw=1, clip_on=False)
axes[0].set(ylabel="band", title=f"segment {ds.stim_meta[stim]['segment']}: "
            f"{len(onsets)} words (ticks), spectrogram")
for k, n in enumerate(picks):
    trace = ds.responses[stim][n][0].numpy() * 1e6
    axes[1].plot(t[:trace.size], trace - 12 * k, lw=0.8,
                 label=f"channel {ds.nrn_meta[n]['channel_id']}")
axes[1].set(xlabel="time (s)", ylabel="EEG (µV, offset)")
axes[1].legend(loc="upper right", fontsize=8)

# %%
# An envelope TRF per channel: ridge regression of each channel on the lagged spectrogram
# (0-400 ms), the penalty chosen on validation segments, for S01's channels.
ds.select_pop_by_nrn_attr("subject", "S01")
s01 = ds.selected_neurons
train, val, test = split_stimuli(ds, (0.6, 0.2, 0.2), seed=0)
fit = fit_ridge(ds, train, val, n_lags=40)
weights = fit.model.weight.detach().numpy()          # (channels, bands, lags)
trf = weights.sum(axis=1)                             # summed over bands
best = int(np.nanargmax(fit.val_corr.numpy()))
channel = ds.nrn_meta[s01[best]]["channel_id"]
lags_ms = np.arange(trf.shape[1]) * ds.dt
truth_index = fixture.truth.lags_s * 1000.0
# The simulated kernel of this channel (its gain times the shared envelope kernel), read at
# the bins' lags.
kernel = fixture.truth.kernels("envelope")[ALICE_EEG_CHANNELS.index(channel)]
truth = np.interp(lags_ms, truth_index, kernel)
r = np.corrcoef(trf[best], truth)[0, 1]
print(f"TRF of channel {channel}: validation r = {float(fit.val_corr[best]):.2f}; "
      f"correlation with the simulated kernel {r:.2f}")

xyz = np.array([ds.nrn_meta[n]["xyz"] for n in s01], dtype=float)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8, 3.4), layout="constrained")
dots = ax0.scatter(xyz[:, 0], xyz[:, 1], c=fit.val_corr.numpy(), cmap="viridis", s=40)
ax0.set(aspect="equal", xticks=[], yticks=[], title="validation r per channel (top view)")
fig.colorbar(dots, ax=ax0, shrink=0.8)
ax1.plot(lags_ms, trf[best] / np.abs(trf[best]).max(), label="fitted (sum over bands)")
ax1.plot(lags_ms, truth / np.abs(truth).max(), "--", label="simulated kernel")
ax1.set(xlabel="lag (ms)", ylabel="normalised", title=f"envelope TRF, channel {channel}")
ax1.legend(fontsize=8)
tmp.cleanup()
