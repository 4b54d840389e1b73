"""Reproducible train / validation / test splits of a dataset's stimuli."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepstrf._validation import check_int

__all__ = ["split_stimuli"]


def _allot(n: int, fractions: Sequence[float]) -> list[int]:
    """Split n items by fractions with the largest-remainder rule."""
    raw = [n * f for f in fractions]
    counts = [math.floor(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def split_stimuli(ds: Any, fractions: Sequence[float] = (0.7, 0.15, 0.15), *, seed: int = 0,
                  stratify: str | None = None, stims: Sequence[int] | None = None
                  ) -> tuple[list[int], list[int], list[int]]:
    """Split stimulus indices into train, validation and test sets.

    Parameters
    ----------
    ds : NeuralDataset
    fractions : (train, val, test)
        Non-negative, summing to 1; train must be positive.
    seed : int
        The same seed (and dataset) always gives the same split.
    stratify : str, optional
        A ``stim_meta`` key (e.g. ``'type'``): each value is split with the
        same fractions, so every set has its share of songs and ripples.
        Stimuli lacking the key form their own stratum.
    stims : sequence of int, optional
        The stimuli to split (default: every stimulus with data).

    Returns
    -------
    (train, val, test) : lists of int, each sorted
        When a stratum has at least three stimuli and the validation and test
        fractions are positive, each set gets at least one of them.
    """
    seed = check_int("seed", seed, minimum=0)
    try:
        fractions = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise TypeError(f"fractions must be three numbers (train, val, test); got "
                        f"{fractions!r}.") from None
    if len(fractions) != 3 or any(f < 0 or not math.isfinite(f) for f in fractions) \
            or fractions[0] <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be (train, val, test), non-negative, train > 0, "
                         f"summing to 1; got {tuple(fractions)}.")
    if stims is None:
        stims = [int(s) for s in np.flatnonzero(ds.nrn_masks.numpy().any(axis=1))]
    else:
        stims = sorted({check_int("stims entry", s, minimum=0) for s in stims})
        if stims and stims[-1] >= ds.get_S():
            raise IndexError(f"stims entry {stims[-1]} is out of range; the valid range is "
                             f"[0, {ds.get_S() - 1}].")
    if not stims:
        raise ValueError("there are no stimuli to split.")
    strata: dict[Any, list[int]] = {}
    for s in stims:
        meta = ds.stim_meta[s]  # any object; a non-mapping has no key, like a missing one
        key = meta.get(stratify, None) if stratify is not None and isinstance(meta, Mapping) \
            else None
        strata.setdefault(repr(key), []).append(s)
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[], [], []]
    for key in sorted(strata):
        members = list(strata[key])
        rng.shuffle(members)
        counts = _allot(len(members), fractions)
        if len(members) >= 3:  # keep every set represented when the fractions allow it
            for i in (1, 2):
                if fractions[i] > 0 and counts[i] == 0:
                    counts[i] += 1
                    counts[0] -= 1
        start = 0
        for i, c in enumerate(counts):
            out[i].extend(members[start:start + c])
            start += c
    return sorted(out[0]), sorted(out[1]), sorted(out[2])
