"""The data paradigm in pictures: missing pairs, one item, one batch's padding and mask.
=====================================================================================

A dataset of S stimuli and N neurons is ragged: not every neuron heard every stimulus, and
pairs differ in repeats and stimuli in length. deepstrf stores a ``(1, 1)`` all-NaN sentinel
for a pair never recorded, derives ``nrn_masks`` (S, N) from those sentinels, and pads when it
batches: stimuli with zeros (never NaN), responses with NaN, with ``valid_mask`` saying which
values are real. This example draws each of those on a small random ragged dataset
(``deepstrf.testing.make_ragged_dataset``); nothing is read from or written to disk.

Usage::

    python examples/data_paradigm_in_pictures.py
"""

# %%
# A random ragged dataset: 8 stimuli of 40-90 bins, 6 neurons, each pair recorded with
# probability 0.6 and 2-6 repeats.
import matplotlib.pyplot as plt
import numpy as np
import torch

from deepstrf.testing import make_ragged_dataset
from deepstrf.utils.data import neural_collate

ds = make_ragged_dataset(8, 6, n_bands=16, T_range=(40, 90), coverage=0.6, repeats=(2, 6),
                         seed=4)
print(ds)

# %%
# The sentinel pattern: which (stimulus, neuron) pairs hold data. ``responses[s][n]`` is a
# ``(1, 1)`` NaN tensor where the mask is False, and ``(R, T_s)`` counts where it is True.
masks = ds.nrn_masks.numpy()
repeats = np.array([[ds.responses[s][n].shape[0] if masks[s, n] else 0
                     for n in range(ds.get_N())] for s in range(ds.get_S())])
fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
ax.imshow(masks, cmap="Greens", vmin=-0.3, vmax=1.3, aspect="auto")
for s, n in zip(*np.nonzero(masks)):
    ax.text(n, s, f"R={repeats[s, n]}", ha="center", va="center", fontsize=7)
for s, n in zip(*np.nonzero(~masks)):
    ax.text(n, s, "(1, 1)\nNaN", ha="center", va="center", fontsize=6, color="0.4")
ax.set_xlabel("neuron n")
ax.set_ylabel("stimulus s")
ax.set_title("nrn_masks[s, n] (green: recorded, with its repeats)", fontsize=9)
print("pairs recorded:", int(masks.sum()), "of", masks.size)
print("responses[s][n] of a missing pair:", ds.responses[int(np.argwhere(~masks)[0, 0])][
    int(np.argwhere(~masks)[0, 1])])

# %%
# One batch of four stimuli. ``neural_collate`` pads every stimulus to the longest one
# (zeros) and every response to the longest stimulus and the most repeats (NaN);
# ``valid_mask`` is True exactly on the real values.
batch = neural_collate([ds[i] for i in range(4)])
print("stims", tuple(batch["stims"].shape), "responses", tuple(batch["responses"].shape),
      "valid values", int(batch["valid_mask"].sum()))
assert not torch.isnan(batch["stims"]).any()
assert torch.equal(batch["valid_mask"], ~torch.isnan(batch["responses"]))

B, N, R, T = batch["responses"].shape
fig, axes = plt.subplots(2, B, figsize=(10, 4.5), sharex=True, layout="constrained",
                         gridspec_kw={"height_ratios": [1, 1.6]})
for b in range(B):
    axes[0, b].imshow(batch["stims"][b, 0], aspect="auto", origin="lower", cmap="magma")
    length = ds[b]["stims"].shape[-1]
    axes[0, b].axvline(length - 0.5, color="w", ls="--", lw=1)
    axes[0, b].set_title(f"item {b}: T={length}, zero-padded to {T}", fontsize=8)
    # rows: neuron-major, repeats stacked; white = valid, grey = NaN padding
    valid = batch["valid_mask"][b].reshape(N * R, T).numpy()
    axes[1, b].imshow(valid, aspect="auto", cmap="Greys_r", vmin=-0.5, vmax=1,
                      interpolation="nearest")
    counts = np.nan_to_num(batch["responses"][b].reshape(N * R, T).numpy())
    rows, cols = np.nonzero(counts > 0)
    axes[1, b].scatter(cols, rows, s=2, marker="|", color="k")
    for n in range(1, N):
        axes[1, b].axhline(n * R - 0.5, color="tab:blue", lw=0.6)
axes[0, 0].set_ylabel("band")
axes[1, 0].set_ylabel("neuron x repeat")
for ax in axes[1]:
    ax.set_xlabel("time bin")
fig.suptitle("one batch: stims zero-padded (top), responses NaN-padded with valid_mask "
             "(bottom, grey = padding)", fontsize=9)
