"""Preprocessing shared by every dataset: spike binning, spectrograms, parallel map.

=================================  =============================================
:func:`bin_spike_times`            spike times -> (R, T) counts (the one binner)
:func:`n_bins_for_duration`        T of a sound at a bin width
:func:`hanning_kernel`             unit-sum PSTH smoothing kernel
:func:`smooth_rows`                the one smoothing convolution
:class:`RowSmoother`               its arithmetic, into a given output, chunk by chunk
:class:`SpectrogramParams`         parameters of a spectrogram front end
:func:`compute_spectrogram`        waveform -> (F, T) on the response grid
:func:`waveform_on_grid`           waveform resampled and fitted to T * hop
:func:`grid_sample_rate`           nearest rate with a whole-sample hop
:func:`band_frequencies`           centre frequencies of the bands
:func:`parallel_map`               the one joblib call site
=================================  =============================================

Submodules load on first use (librosa and joblib are slow to import), so
importing this package touches nothing.
"""

from __future__ import annotations

from deepstrf._lazy import lazy_exports

_LAZY = {
    "bin_spike_times": "deepstrf.preprocessing.spikes",
    "n_bins_for_duration": "deepstrf.preprocessing.spikes",
    "hanning_kernel": "deepstrf.preprocessing.spikes",
    "smooth_rows": "deepstrf.preprocessing.spikes",
    "RowSmoother": "deepstrf.preprocessing.spikes",
    "SpectrogramParams": "deepstrf.preprocessing.spectrogram",
    "compute_spectrogram": "deepstrf.preprocessing.spectrogram",
    "waveform_on_grid": "deepstrf.preprocessing.spectrogram",
    "grid_sample_rate": "deepstrf.preprocessing.spectrogram",
    "band_frequencies": "deepstrf.preprocessing.spectrogram",
    "parallel_map": "deepstrf.preprocessing.parallel",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
