"""The CRCNS AA family (AA1, AA2, AA4): one simulated stimulus in each dataset's format.
=====================================================================================

The three Theunissen-lab releases on CRCNS share a design (zebra finch auditory neurons,
spike times to songs and noises, about ten repeats) but not a file format: AA1 and AA2 are
folders of ``stimN`` / ``spikeN`` text files per cell next to the wavs, AA4 is one HDF5
file per unit. ``deepstrf.testing.fixtures`` writes a miniature release of each in its
exact format, with simulated neurons of known STRFs; the real dataset class loads it. For
each, this page shows the spectrogram of one stimulus with the raster and PSTH of one
neuron that heard it. With the real files, drop the fixture and point ``path=`` at them.

Usage::

    python examples/dataset_crcns_aa.py
"""

# %%
import logging
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from deepstrf.datasets.audio import CRCNSAA1Dataset, CRCNSAA2Dataset, CRCNSAA4Dataset
from deepstrf.plotting import plot_spectrogram_raster_psth
from deepstrf.testing.fixtures import write_crcns_aa1, write_crcns_aa2, write_crcns_aa4

logging.getLogger("deepstrf").setLevel(logging.ERROR)  # "smaller than the real release"
tmp = tempfile.TemporaryDirectory()
folder = Path(tmp.name)


def show(ds, title):
    """Spectrogram, raster and PSTH of the first recorded pair of stimulus 0."""
    neuron = int(ds.nrn_masks[0].nonzero()[0, 0])
    meta = ds.nrn_meta[neuron]
    print(f"{title}: {ds}\n  stim 0 {ds.stim_meta[0].get('type')!r}, "
          f"shape {tuple(ds.stims[0].shape)}; neuron {neuron} {meta.get('cell_id')!r}, "
          f"responses {tuple(ds.responses[0][neuron].shape)}")
    fig = plt.figure(figsize=(7, 4.5), layout="constrained")
    return plot_spectrogram_raster_psth(ds, 0, neuron, fig=fig,
                                        title=f"{title}: stimulus 0, neuron {neuron}")


# %%
# CRCNS AA1: Field L and MLd, conspecific songs and flat ripples (32 kHz wavs, text spikes).
write_crcns_aa1(folder / "AA1" / "raw", n_cells=3, n_conspecific=2, n_flatrip=1,
                duration_range_s=(0.6, 0.8), seed=1)
show(CRCNSAA1Dataset(folder / "AA1", dt_ms=5, progress=False, cache="off"), "CRCNS AA1")

# %%
# CRCNS AA2: MLd, OV, Field L and CM, songs and two kinds of ripples (same text format,
# more areas; not every cell heard every stimulus class).
write_crcns_aa2(folder / "AA2" / "raw", n_cells=3, n_conspecific=2, n_flatrip=1, n_songrip=1,
                duration_range_s=(0.6, 0.8), seed=1)
show(CRCNSAA2Dataset(folder / "AA2", dt_ms=5, progress=False, cache="off"), "CRCNS AA2")

# %%
# CRCNS AA4: the vocal repertoire (songs, calls, noise), one HDF5 file per unit, one folder
# per bird (24414 Hz wavs).
write_crcns_aa4(folder / "AA4" / "raw", animals=("GreBlu9508M",), n_units=2, n_songs=1,
                n_calls=1, n_mlnoise=1, seed=1)
show(CRCNSAA4Dataset(folder / "AA4", animals="GreBlu9508M", dt_ms=5, progress=False,
                     cache="off"), "CRCNS AA4")
tmp.cleanup()
