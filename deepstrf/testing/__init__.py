"""Tools for testing code that uses deepstrf, and for the library's own tests.

* synthetic ragged datasets of any size (:func:`make_ragged_dataset`);
* simulated sounds and neurons with known spectro-temporal receptive
  fields (:mod:`deepstrf.testing.simulate`);
* simulated movies and visual neurons with known spatio-temporal receptive
  fields, written as a miniature release on disk (:mod:`deepstrf.testing.visual`);
* miniature raw trees in each public dataset's exact distributed format,
  filled from those simulated neurons (:mod:`deepstrf.testing.fixtures`);
* a local HTTP server that imitates the dataset hosts (plain files, CRCNS login).

Submodules load on first use; importing this package touches nothing.
"""

from __future__ import annotations

from deepstrf._lazy import lazy_exports

_LAZY = {
    "make_ragged_dataset": "deepstrf.testing.synthetic",
    "LocalHTTPServer": "deepstrf.testing.http_server",
    "RecordedRequest": "deepstrf.testing.http_server",
    "LOGIN_PAGE": "deepstrf.testing.http_server",
    "write_mat": "deepstrf.testing.matfiles",
    "struct_array": "deepstrf.testing.matfiles",
    "make_sounds": "deepstrf.testing.simulate",
    "make_neurons": "deepstrf.testing.simulate",
    "NeuronPopulation": "deepstrf.testing.simulate",
    "NeuronTruth": "deepstrf.testing.simulate",
    "simulate": "deepstrf.testing.simulate",
    "Simulation": "deepstrf.testing.simulate",
    "draw_spike_trains": "deepstrf.testing.simulate",
    "lag_matrix": "deepstrf.testing.simulate",
    "to_pcm16": "deepstrf.testing.simulate",
    "pcm16_to_float": "deepstrf.testing.simulate",
    "make_movies": "deepstrf.testing.visual",
    "make_visual_neurons": "deepstrf.testing.visual",
    "VisualPopulation": "deepstrf.testing.visual",
    "write_visual_release": "deepstrf.testing.visual",
    "SimulatedVisualDataset": "deepstrf.testing.visual",
    "write_crcns_aa1": "deepstrf.testing.fixtures",
    "write_crcns_aa2": "deepstrf.testing.fixtures",
    "write_crcns_aa4": "deepstrf.testing.fixtures",
    "write_le_2025": "deepstrf.testing.fixtures",
    "FixtureInfo": "deepstrf.testing.fixtures",
    "Quirks": "deepstrf.testing.fixtures",
    "break_stim_reference": "deepstrf.testing.fixtures",
    "corrupt_spike_file": "deepstrf.testing.fixtures",
    "set_wav_sample_rate": "deepstrf.testing.fixtures",
    "truncate_file": "deepstrf.testing.fixtures",
    "delete_h5_group": "deepstrf.testing.fixtures",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
