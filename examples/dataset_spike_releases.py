"""Spike-time releases: NS1 and Le 2025, one simulated stimulus each.
==================================================================

Two releases of sorted single units, each in a format of its own. NS1 (Harper et al. 2016,
ferret A1) keeps spike times in MATLAB structs per unit, beside a precomputed cochleagram of its
natural sounds. Le 2025 (Le, Bjoring & Meliza, zebra finch auditory pallium) has one ``.pprox``
JSON file of trials per unit and experiment, its stimuli being songs whose motifs are occluded in
various ways. (The David-lab NEMS releases, NAT4 among them, have a page of their own:
``dataset_david_lab.py``.) ``deepstrf.testing.fixtures`` writes a miniature release of each in
its exact format from simulated neurons, and the real dataset class loads it. For each, this page
shows the spectrogram of one stimulus with the raster and PSTH of one neuron that heard it. With
the real files, drop the fixture and point ``path=`` at them.

Usage::

    python examples/dataset_spike_releases.py
"""

# %%
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt

from deepstrf.datasets.audio import Le2025Dataset, NS1Dataset
from deepstrf.errors import DataQuirkWarning
from deepstrf.plotting import plot_spectrogram_raster_psth
from deepstrf.testing.fixtures.le_2025 import write_le_2025
from deepstrf.testing.fixtures.ns1 import NS1Quirks, write_ns1

logging.getLogger("deepstrf").setLevel(logging.ERROR)  # "smaller than the real release"
# A loader tolerates the known quirks of its release and says so with a DataQuirkWarning each;
# a cached build also records them in its manifest. Here they are collected and printed.


def load(cls, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = cls(*args, cache="off", progress=False, **kwargs)
    for w in caught:
        if issubclass(w.category, DataQuirkWarning):
            print(f"  quirk: {w.message}")
    return ds


tmp = tempfile.TemporaryDirectory()
folder = Path(tmp.name)


def show(ds, title):
    """Spectrogram, raster and PSTH of the first recorded pair of stimulus 0."""
    neuron = int(ds.nrn_masks[0].nonzero()[0, 0])
    print(f"{title}: {ds}\n  stim 0 shape {tuple(ds.stims[0].shape)}; neuron {neuron}, "
          f"responses {tuple(ds.responses[0][neuron].shape)}")
    fig = plt.figure(figsize=(7, 4.5), layout="constrained")
    return plot_spectrogram_raster_psth(ds, 0, neuron, fig=fig,
                                        title=f"{title}: stimulus 0, neuron {neuron}")


# %%
# NS1: natural sounds at 20 repeats in the release (3 here), spike times per unit in
# ``.mat`` structs, 5 ms bins. One of the release's quirks is planted: a unit whose metadata
# names its spike file without the ``_1`` suffix the file has.
info = write_ns1(folder / "NS1" / "raw", n_units=3, n_repeats=3, seed=1,
                 quirks=NS1Quirks(missing_suffix=1))
show(load(NS1Dataset, info.root, dt_ms=5.0), "NS1")

# %%
# Le 2025: zebra finch songs with occluded motifs, one ``.pprox`` JSON file per unit and
# experiment.
le = write_le_2025(folder / "Le2025" / "tree", experiments=("nat8a",), n_motifs=2, seed=1)
show(load(Le2025Dataset, le.root, experiment="nat8a", dt_ms=5.0), "Le 2025")
tmp.cleanup()
