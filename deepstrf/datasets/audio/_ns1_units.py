"""Reading one NS1 spike file, in worker processes (no torch import here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepstrf.errors import RawDataError

__all__ = ["N_NATURAL", "read_unit"]

#: Sets of a spike file that are natural sounds (the 12 after them are DRCs).
N_NATURAL = 20


def read_unit(task: tuple[Path, str]) -> list[list[np.ndarray]] | None:
    """The natural-sound trials of one spike file (None if absent); picklable, no torch."""
    from deepstrf.io.readers import read_mat

    path, binning = task
    if not path.is_file():
        return None
    data = read_mat(path, ["data"])["data"]
    sets = data.get("set") if isinstance(data, dict) else None
    sets = [sets] if isinstance(sets, dict) else sets
    if not isinstance(sets, list) or len(sets) < N_NATURAL:
        raise RawDataError(f"{path}: expected data.set, a struct array of 32 sets (20 natural "
                           f"sounds, 12 DRCs); got {type(sets).__name__} "
                           f"{len(sets) if isinstance(sets, list) else ''}.")
    out = []
    for s, entry in enumerate(sets[:N_NATURAL]):
        repeats = entry.get("repeats") if isinstance(entry, dict) else None
        repeats = [repeats] if isinstance(repeats, dict) else repeats
        if not isinstance(repeats, list) or not all(isinstance(r, dict) and "t" in r
                                                    for r in repeats):
            raise RawDataError(f"{path}: data.set({s + 1}).repeats must be a struct array "
                               "with a field t (spike times, ms).")
        trials = [np.atleast_1d(np.asarray(r["t"], dtype=np.float64)).reshape(-1)
                  for r in repeats]
        if binning == "deepstrf":  # whole ms, at most one spike per ms (deepSTRF 0.1.0)
            trials = [np.unique(np.round(t)) for t in trials]
        out.append(trials)
    return out
