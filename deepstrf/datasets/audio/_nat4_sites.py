"""Reading NAT4's single-site recordings and cell ids, in worker processes (no torch here)."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf.datasets._quirks import count_quirks
from deepstrf.datasets._responses import BinnedRows, ResponseBlock
from deepstrf.errors import RawDataError

__all__ = ["NATIVE_MS", "canonical", "cell_parts", "count_quirks", "est_blocks",
           "read_pred_correlation", "read_site"]

#: The release's bin: the population raster and the stimulus at 100 Hz.
NATIVE_MS = 10.0
_CELL = re.compile(r"^(?P<animal>[A-Za-z]{3})(?P<num>\d+)(?P<letter>[a-z]?)-(?P<e>\d+)-(?P<u>\d+)$")


def canonical(cell: str) -> str:
    """A cell id with its electrode and unit as plain integers (``TNC015a-1-1``)."""
    m = _CELL.match(cell)
    return cell if m is None else f"{cell.split('-')[0]}-{int(m['e'])}-{int(m['u'])}"


def read_site(task: tuple[str, str, dict[str, tuple[int, float]]]) -> dict[str, Any]:
    """One single-site recording: each channel's spikes per validation epoch (a worker task).

    ``task`` is ``(container, member, {epoch: (samples at 100 Hz, shift ms)})``; times
    come back in ms from the epoch's start minus the shift.
    """
    from deepstrf.io.nems import NemsFormatError, PointProcess, occurrence_spike_times, \
        read_recording

    container, member, wanted = task
    rec = read_recording(container, member=member, signals=["resp"])
    resp = rec["resp"]
    if not isinstance(resp, PointProcess):
        raise NemsFormatError(rec.archive, resp.sidecar.member, "the single-site 'resp' must be "
                              f"a PointProcess (spike times); got {resp.sidecar.signal_type}.")
    trains: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name, (pop_samples, shift) in wanted.items():
        bounds = resp.occurrence_samples(name)
        spans_ms = (bounds[:, 1] - bounds[:, 0]) * 1000.0 / resp.fs
        if len(bounds) and not np.allclose(spans_ms, pop_samples * NATIVE_MS):
            raise NemsFormatError(rec.archive, resp.epochs.member,
                                  f"occurrences of {name!r} last {sorted(set(spans_ms))} ms; "
                                  f"the population recording's {pop_samples * NATIVE_MS:g} ms.")
        for chan in resp.chans if len(bounds) else ():
            times, lengths = occurrence_spike_times(resp.spike_times[chan], bounds, resp.fs)
            trains.setdefault(chan, {})[name] = (times - shift, lengths)
    return {"archive": rec.archive, "chans": list(resp.chans), "trains": trains,
            "quirks": dict(rec.quirks)}


def est_blocks(values: np.ndarray, spans: Mapping[int, np.ndarray]) -> dict[int, ResponseBlock]:
    """Every est sound's responses from the population raster ``values`` (T x cells, float32).

    ``spans[s]`` holds sound s's occurrences as ``[start, end)`` rows of the
    raster. Each block is cells x repeats by T, contiguous float32, for the
    cells not NaN throughout (the others were not recorded); the built store
    keeps it as is. The raster is consumed: a sound heard once whose rows no
    other sound reads is transposed in place, in those rows, so the blocks
    are views of the raster and the responses are held once, not twice.
    """
    in_place = values.flags.c_contiguous and values.flags.owndata
    if in_place:
        values.flags.writeable = True  # the caller's recording is dropped right after
    cover = np.zeros(len(values) + 1, np.int64)
    for rows in spans.values():
        for a, b in rows:
            cover[a] += 1
            cover[b] -= 1
    cover = np.cumsum(cover)
    out = {}
    for s, rows in spans.items():
        parts = [values[a:b].T for a, b in rows]
        keep = np.flatnonzero(~np.logical_and.reduce([np.isnan(p).all(axis=1) for p in parts]))
        block = parts[0][keep] if len(parts) == 1 else \
            np.stack([p[keep] for p in parts], axis=1).reshape(-1, parts[0].shape[1])
        (a, b) = rows[0]
        if in_place and len(rows) == 1 and cover[a:b].max(initial=0) <= 1:
            flat = values[a:b].reshape(-1)  # these rows' memory, read by no other sound
            flat[:block.size] = block.reshape(-1)
            block = flat[:block.size].reshape(block.shape)
        out[s] = ResponseBlock(keep, np.full(len(keep), len(parts)),
                               BinnedRows(np.ascontiguousarray(block), NATIVE_MS))
    return out


def cell_parts(cell: str) -> dict[str, Any]:
    m = _CELL.match(cell)
    if m is None:
        return {"site": None, "animal": None, "electrode": None, "unit_in_electrode": None}
    return {"site": cell.split("-")[0], "animal": m["animal"], "electrode": int(m["e"]),
            "unit_in_electrode": int(m["u"])}


def read_pred_correlation(path: Path) -> dict[str, bool]:
    """``cellid -> sig_auditory`` of ``<area>_pred_correlation.csv``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return {r["cellid"]: r["sig_auditory"].strip().lower() in ("true", "1", "1.0")
                    for r in csv.DictReader(f)}
    except (KeyError, AttributeError, OSError, UnicodeDecodeError, csv.Error) as err:
        raise RawDataError(f"{path}: expected a CSV with columns cellid and sig_auditory "
                           f"({type(err).__name__}: {err}).") from err
