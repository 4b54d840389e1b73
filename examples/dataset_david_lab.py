"""The David-lab releases (NAT4, Espejo 2019, Wingert 2026): one simulated stimulus each.
==========================================================================================

Three releases of S. V. David's lab hold single units in the auditory cortex of awake,
passively listening ferrets. All three are published on Zenodo as NEMS0 recordings (a signal per
file, an epoch table saying when each sound played), read by one shared reader
(``deepstrf.io.nems``); they differ in how the recordings are cut and packed.

* **NAT4** (Pennington & David 2022, 2023): one population recording per area, A1 (849 units)
  or PEG (398), with an 18-band spectrogram and a 10 ms raster for the 575 estimation sounds
  (heard once), and per-site spike times for the 18 validation sounds (20 repeats); each sound
  is 1 s with 0.25 s of silence on both sides.
* **Espejo 2019** (Lopez Espejo, Schwartz & David): A1 units in two disjoint releases, natural
  sounds (``stimuli='nat'``, about 540 units from 35 sites, 18-band cochleagrams) and
  vocalization-modulated noise (``stimuli='vmn'``, about 200 units from 103 sites, 2 envelopes),
  each a ``.tgz`` of per-session recording archives read in place; a test sound is one a site
  played as often as its most repeated one (when that is more than once).
* **Wingert 2026** (Wingert, Parida, Norman-Haignere & David): 3128 labelled units of A1, PEG,
  AC and HC from four ferrets, one archive per session (64-67 sessions), each session playing
  about ten 20 s sequences of natural sounds (32 gammatone bands); a sound is a stimulus *per
  session*, and ``cell_list.csv`` adds the units' areas, layers and cell types.

``deepstrf.testing.fixtures`` writes a miniature release of each in its exact format, with
simulated neurons of known STRFs and shorter sounds than the real ones (Espejo NAT 1-1.5 s
instead of about 4 s, Wingert 1 s instead of 20 s), and the real dataset class loads it. For
each, this page shows the spectrogram of the stimulus with the most repeats and the raster and
PSTH of one neuron that heard it, and prints the quirks of the release that the writer planted
and the loader reported. With the real files, drop the fixture and point ``path=`` at them (or
pass ``download=True``: all three are open).

Usage::

    python examples/dataset_david_lab.py
"""

# %%
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt

from deepstrf.datasets.audio import EspejoDataset, NAT4Dataset, Wingert2026Dataset
from deepstrf.errors import DataQuirkWarning
from deepstrf.plotting import plot_spectrogram_raster_psth
from deepstrf.testing.fixtures.espejo import write_espejo
from deepstrf.testing.fixtures.nat4 import write_nat4
from deepstrf.testing.fixtures.wingert2026 import write_wingert2026

logging.getLogger("deepstrf").setLevel(logging.ERROR)  # "smaller than the real release"
# Each miniature tree plants some of its release's known quirks (a cell in no site file, an
# archive named after another session...). The loaders tolerate them and say so with a
# DataQuirkWarning each; a cached build also records them in its manifest. Here they are
# collected and printed.


def load(cls, *args, **kwargs):
    """The dataset, and the messages of the DataQuirkWarnings its loader gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = cls(*args, cache="off", progress=False, **kwargs)
    quirks = [str(w.message).split(": ", 1)[-1] for w in caught
              if issubclass(w.category, DataQuirkWarning)]
    return ds, quirks


def most_repeated(ds):
    """The (stimulus, neuron) pair with the most recorded repeats (the first of ties)."""
    best = (0, 0, -1)
    for s, n in ds.nrn_masks.nonzero().tolist():
        repeats = ds.responses[s][n].shape[0]
        if repeats > best[2]:
            best = (s, n, repeats)
    return best[:2]


def show(ds, quirks, title):
    """Print the dataset and its quirks; spectrogram, raster and PSTH of the most repeated pair."""
    stim, neuron = most_repeated(ds)
    sm, nm = ds.stim_meta[stim], ds.nrn_meta[neuron]
    split = sm.get("subset", sm.get("split"))
    print(f"{title}: {ds}\n  stim {stim} {sm['name']!r} ({split}), shape "
          f"{tuple(ds.stims[stim].shape)}; neuron {neuron} {nm['cell_id']!r}, responses "
          f"{tuple(ds.responses[stim][neuron].shape)}")
    for message in quirks or ["none reported"]:
        print(f"  quirk: {message}")
    fig = plt.figure(figsize=(7, 4.5), layout="constrained")
    return plot_spectrogram_raster_psth(
        ds, stim, neuron, fig=fig,
        title=f"{title}: {sm['name']} ({split}), neuron {nm['cell_id']}")


tmp = tempfile.TemporaryDirectory()
folder = Path(tmp.name)

# %%
# NAT4: one NEMS recording per area (A1 here). The estimation sounds' responses come from the
# population raster, the validation sounds' (repeated, 4 times here) from the site files'
# spike times.
nat = write_nat4(folder / "NAT4" / "raw", area="A1", n_est=2, n_val=1, n_val_repeats=4, seed=1)
nat4, quirks = load(NAT4Dataset, nat.root)
show(nat4, quirks, "NAT4 A1")

# %%
# Espejo 2019, natural sounds: two sites (sessions) in ``A1_natural_sounds.tgz``, read inside
# the archive; one site stores its cochleagram as a CSV raster. The split follows the
# per-site rule: a sound played as often as the site's most repeated one is a test sound.
esp = write_espejo(folder / "Espejo" / "nat", stimuli="nat", seed=1)
espejo_nat, quirks = load(EspejoDataset, esp.root, stimuli="nat")
show(espejo_nat, quirks, "Espejo NAT")

# %%
# Espejo 2019, vocalization-modulated noise: the stimulus is two slow envelopes (bands 0 and
# 1), 3 s of sound in a 4 s epoch; one site's responses are a CSV raster with a few NaN bins,
# and one cell was recorded in two sessions (its repeats are joined).
vmn = write_espejo(folder / "Espejo" / "vmn", stimuli="vmn", seed=1)
espejo_vmn, quirks = load(EspejoDataset, vmn.root, stimuli="vmn")
show(espejo_vmn, quirks, "Espejo VMN")

# %%
# Wingert 2026: five sessions, some with silent flanks around the sound (0.5 s here, 1 s in
# the release) and some without; each session's copy of a test sound (``STIM_00seq...``) is
# its own stimulus. By default (``scaling='deepstrf'``) stims and responses are min-max scaled
# after loading, as deepSTRF does; ``scaling='none'`` keeps spike counts per bin, which is what
# the PSTH shows. Units without an area in ``cell_list.csv`` are left out unless
# ``include_unlabeled=True``.
win = write_wingert2026(folder / "Wingert2026" / "raw", seed=1)
wingert, quirks = load(Wingert2026Dataset, win.root, scaling="none")
show(wingert, quirks, "Wingert 2026")
sessions = sorted({m["session"] for m in wingert.stim_meta})
copies = sum(m["name"] == wingert.stim_meta[0]["name"] for m in wingert.stim_meta)
unlabelled = sorted({r["siteid"] for r in win.rows if not r["area"]})
print(f"  areas {sorted({m['area'] for m in wingert.nrn_meta})}; sessions {sessions} "
      f"({wingert.stim_meta[0]['name']} is {copies} stimuli, one per session); left out, "
      f"units without an area: {unlabelled}")

# %%
# The four loads at a glance: the recorded pairs are the True entries of ``ds.nrn_masks``
# (a neuron heard only the sounds its session played).
for title, ds in [("NAT4 A1", nat4), ("Espejo NAT", espejo_nat), ("Espejo VMN", espejo_vmn),
                  ("Wingert 2026", wingert)]:
    print(f"{title}: {len(ds.stims)} stims, {len(ds.nrn_meta)} neurons, "
          f"{int(ds.nrn_masks.sum())} recorded pairs")
tmp.cleanup()
