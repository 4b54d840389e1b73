"""Synthetic ragged datasets of any size, for tests and benchmarks.

The values are random spike counts, not a model of anything: use the
simulated neurons of :mod:`deepstrf.testing.simulate` when the responses must
depend on the sound.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from deepstrf._validation import check_int, check_positive
from deepstrf.datasets._storage import ResponseStore

__all__ = ["make_ragged_dataset"]


def make_ragged_dataset(n_stims: int, n_neurons: int, *, n_bands: int = 32,
                        T_range: tuple[int, int] = (50, 100), coverage: float = 0.5,
                        repeats: tuple[int, int] | Callable[[np.random.Generator, int], int] = (1, 10),
                        dt_ms: float = 5.0, rate: float = 0.2, seed: int = 0,
                        cls: type | None = None):
    """Build a random ragged dataset deterministically from ``seed``.

    Parameters
    ----------
    n_stims, n_neurons : int
        S and N.
    n_bands : int
        F of the random ``(1, F, T_s)`` spectrogram stims.
    T_range : (int, int)
        Inclusive range of stimulus lengths in bins.
    coverage : float
        Probability that a neuron heard a stimulus (each stimulus is heard by
        at least one neuron and each neuron hears at least one stimulus).
    repeats : (int, int) or callable
        Inclusive range of repeat counts per (stim, neuron) pair, or
        ``repeats(rng, s) -> R`` giving every neuron the same count on stim s.
    dt_ms : float
        Bin width.
    rate : float
        Mean Poisson spike count per bin.
    seed : int
        Seed of the generator; the same arguments always give the same data.
    cls : type, optional
        Dataset class to build (default ``AudioNeuralDataset``).

    Returns
    -------
    AudioNeuralDataset
        With ``stim_meta`` keys ``name``, ``type`` (``'a'``/``'b'``/``'c'``),
        ``duration_s`` and ``nrn_meta`` keys ``cell_id``, ``area``
        (``'A1'``/``'A2'``), ``depth_um``.
    """
    from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset

    S = check_int("n_stims", n_stims, minimum=1)
    N = check_int("n_neurons", n_neurons, minimum=1)
    check_positive("coverage", coverage)
    if coverage > 1:
        raise ValueError(f"coverage must be in (0, 1]; got {coverage}.")
    lo, hi = (int(T_range[0]), int(T_range[1]))
    if not 1 <= lo <= hi:
        raise ValueError(f"T_range must be (low, high) with 1 <= low <= high; got {T_range}.")
    rng = np.random.default_rng(seed)
    T = rng.integers(lo, hi + 1, size=S)
    heard = rng.random((S, N)) < coverage
    heard[np.arange(S), rng.integers(0, N, size=S)] = True
    heard[rng.integers(0, S, size=N), np.arange(N)] = True

    blocks = []
    for s in range(S):
        neurons = np.flatnonzero(heard[s])
        if callable(repeats):
            reps = np.full(len(neurons), int(repeats(rng, s)), dtype=np.int64)
        else:
            reps = rng.integers(repeats[0], repeats[1] + 1, size=len(neurons))
        rows = rng.poisson(rate, size=(int(reps.sum()), int(T[s]))).astype(np.float32)
        blocks.append((neurons, reps, torch.from_numpy(rows)))
    store = ResponseStore.from_blocks(N, blocks, owned=True)  # rows made here
    stims = [torch.from_numpy(rng.random((1, n_bands, int(t)), dtype=np.float32)) for t in T]
    types = ("a", "b", "c")
    stim_meta = [{"name": f"stim{s:05d}", "type": types[s % 3],
                  "duration_s": float(T[s]) * dt_ms / 1000.0} for s in range(S)]
    nrn_meta = [{"cell_id": f"cell{n:05d}", "area": "A1" if n % 2 == 0 else "A2",
                 "depth_um": float(100 + 10 * (n % 50))} for n in range(N)]
    cls = cls or AudioNeuralDataset
    return cls.from_data(stims, store, dt_ms=dt_ms, stim_meta=stim_meta, nrn_meta=nrn_meta,
                         path=None, F=n_bands)
