"""Independent expectations for the CRCNS AA loaders, computed from what a fixture wrote."""

from __future__ import annotations

import math

import numpy as np
import torch


def expected_counts(trials, dt_ms: float, n_bins: int) -> np.ndarray:
    """Bin spike times (ms) exactly, in whole microseconds: bin k = [k dt, (k+1) dt)."""
    dt_us = int(round(dt_ms * 1000))
    out = np.zeros((len(trials), n_bins), dtype=np.float32)
    for r, times in enumerate(trials):
        for t in np.asarray(times, dtype=np.float64):
            us = int(round(t * 1000))
            if us < 0:
                continue
            k = us // dt_us
            if k < n_bins:
                out[r, k] += 1
    return out


def n_bins(stim, dt_ms: float) -> int:
    """Response bins covering a fixture stimulus: ceil(duration / dt)."""
    return math.ceil(round(stim.n_samples * 1000 / stim.sample_rate / dt_ms, 9))


def merged_trials(info, cell_id: str, stim_name: str, stim_type: str | None = None,
                  order=lambda r: (r.stim_type, r.number)):
    """All paired protocol entries of a cell for one stimulus, in the loader's reading order."""
    entries = [r for r in info.responses_of(cell_id)
               if r.stim_name == stim_name and r.paired
               and (stim_type is None or r.stim_type == stim_type)]
    if not entries:
        return None
    return [t for r in sorted(entries, key=order) for t in r.trials]


def check_all_responses(ds, info, dt_ms: float, stim_key, trials_of) -> int:
    """Compare every (stim, neuron) tensor of ``ds`` with counts from the fixture's trials.

    ``stim_key(meta)`` identifies a dataset stimulus in the fixture (returns
    ``(name, type)``); ``trials_of(cell_id, name, type)`` gives the trials or
    None. Returns the number of pairs with data.
    """
    with_data = 0
    for s, smeta in enumerate(ds.stim_meta):
        name, stim_type = stim_key(smeta)
        T = n_bins(info.stim(name), dt_ms)
        assert ds.stims[s].shape[-1] == T or getattr(ds, "is_waveform", False)
        for n, nmeta in enumerate(ds.nrn_meta):
            got = ds.responses[s][n]
            trials = trials_of(nmeta["cell_id"], name, stim_type)
            if trials is None:
                assert got.shape == (1, 1) and torch.isnan(got).all(), (s, n)
                continue
            expected = expected_counts(trials, dt_ms, T)
            assert got.shape == expected.shape, (s, n, got.shape, expected.shape)
            np.testing.assert_array_equal(got.numpy(), expected, err_msg=f"stim {s} neuron {n}")
            with_data += 1
    return with_data
