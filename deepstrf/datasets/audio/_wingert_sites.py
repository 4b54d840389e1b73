"""Wingert 2026's cell list and per-site NEMS0 recordings, read in worker processes (no torch).

Two worker tasks, both on one recording ``.tgz`` inside ``recordings.zip``
(or an extracted ``recordings/`` folder), read in place by
:mod:`deepstrf.io.nems`: :func:`scan_site` reads only the sidecars and
epochs (to map sessions to archives by the cell ids in ``resp.json``'s
``chans``, since some file names are wrong), :func:`read_site` reads the
spike times and the stimulus tiles of the cells asked for.
"""

from __future__ import annotations

import csv
import logging
import math
import posixpath
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf.errors import DataQuirkWarning, RawDataError

__all__ = ["NATIVE_MS", "N_BANDS", "archive_site", "cell_parts", "plan_archives",
           "read_cell_list", "read_site", "scan_site", "select_cells"]

logger = logging.getLogger(__name__)

#: The release's bin (``resp`` and ``stim`` at 100 Hz) and its spectrogram bands.
NATIVE_MS, N_BANDS = 10.0, 32
_CELL = re.compile(r"^(?P<session>(?P<animal>[A-Za-z]{3})\d+[a-z]?)-(?:(?P<probe>[A-Za-z])-)?"
                   r"(?P<e>\d+)-(?P<u>\d+)$")
_BOOL = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
_REQUIRED = ("cellid", "siteid", "area")


def cell_parts(cell: str) -> dict[str, Any]:
    """``session``, ``animal``, ``probe``, ``electrode``, ``unit_in_electrode`` of a cell id.

    ``CLT027c-009-1`` (session, 3-digit channel, unit) or, for the two-probe
    recording, ``SLJ032a-B-154-1`` (probe letter after the session).
    """
    m = _CELL.match(cell)
    if m is None:
        return {"session": cell.split("-")[0], "animal": None, "probe": None, "electrode": None,
                "unit_in_electrode": None}
    return {"session": m["session"], "animal": m["animal"], "probe": m["probe"],
            "electrode": int(m["e"]), "unit_in_electrode": int(m["u"])}


def _typed(path: Path, line: int, column: str, text: str) -> Any:
    text = text.strip()
    if not text or text.lower() == "nan":
        return None
    if column in ("narrow", "goodpred"):
        if text.lower() not in _BOOL:
            raise RawDataError(f"{path}, line {line}: column {column!r} must be True or False; "
                               f"got {text!r}.")
        return _BOOL[text.lower()]
    if column in ("cellid", "siteid", "area", "layer", "celltype"):
        return text
    try:
        value = float(text)
    except ValueError:
        if column in ("depth", "sw"):
            raise RawDataError(f"{path}, line {line}: column {column!r} must be a number; got "
                               f"{text!r}.") from None
        return text
    return value if math.isfinite(value) else None


def read_cell_list(path: Path) -> list[dict[str, Any]]:
    """Every row of ``cell_list.csv``, typed (``None`` for an empty field), in file order.

    ``cellid``/``siteid``/``area``/``layer``/``celltype`` stay strings (``layer``
    is '1-3', '4' or '56'), ``narrow``/``goodpred`` are bools, the others
    numbers where they parse (``depth`` and ``sw`` must).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or not set(_REQUIRED) <= set(header):
                raise RawDataError(f"{path}: expected a header with at least the columns "
                                   f"{', '.join(_REQUIRED)}; got {header!r}. Download "
                                   "cell_list.csv again.")
            rows, seen = [], {}
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != len(header):
                    raise RawDataError(f"{path}, line {line}: {len(row)} fields, the header "
                                       f"has {len(header)}.")
                # an unnamed first column is a pandas index written along: not a field
                typed = {c: _typed(path, line, c, v) for c, v in zip(header, row)
                         if c and not c.startswith("Unnamed:")}
                cell = typed["cellid"]
                if cell is None:
                    raise RawDataError(f"{path}, line {line}: empty cellid.")
                if cell in seen:
                    raise RawDataError(f"{path}, line {line}: cell {cell!r} is listed twice "
                                       f"(first on line {seen[cell]}).")
                seen[cell] = line
                rows.append(typed)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RawDataError(f"{path}: not a readable CSV ({type(err).__name__}: {err}).") from err


def archive_site(member: str) -> str:
    """The site a recording's file name claims: ``PRN015b`` of ``recordings/PRN015b_<hex>.tgz``."""
    return posixpath.basename(member).split("_")[0].split(".")[0]


def scan_site(task: tuple[str, str]) -> dict[str, Any]:
    """The cell ids (``resp.json`` ``chans``) of one recording."""
    from deepstrf.io.nems import read_recording

    container, member = task
    with warnings.catch_warnings(record=True) as caught:  # re-issued by the parent
        warnings.simplefilter("always", DataQuirkWarning)
        rec = read_recording(container, member=member, signals=["resp"], load_data=False)
    return {"member": member, "archive": rec.archive,
            "chans": list(rec.sidecars["resp"].chans or ()), "quirks": dict(rec.quirks),
            "warnings": _messages(caught)}


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The data-quirk warnings a worker caught, for the parent to issue (joblib drops them)."""
    out = []
    for w in caught:
        if issubclass(w.category, DataQuirkWarning):
            out.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def _log(tile: np.ndarray, log_offset: float | None, archive: str, member: str,
         name: str) -> np.ndarray:
    from deepstrf.io.nems import NemsFormatError

    x = np.asarray(tile, dtype=np.float64)
    if not np.isfinite(x).all():
        raise NemsFormatError(archive, member, f"tile {name!r} holds NaN or inf values.")
    if log_offset is None:
        return x.astype(np.float32)
    if x.min() < 0:
        raise NemsFormatError(archive, member, f"tile {name!r} holds negative values "
                              f"({x.min():g}), so it is not the linear gammatone power the "
                              "release documents; pass log_compress=False to keep it as is.")
    d = 10.0 ** log_offset
    return np.log((x + d) / d).astype(np.float32)


def read_site(task: tuple[str, str, list[str], str, float | None, float | str]
              ) -> dict[str, Any]:
    """One recording: its stimulus tiles and the listed cells' spikes per stimulus.

    ``task`` is ``(container, member, cells, subset, log_offset, shift_ms)``:
    ``log_offset`` None keeps the tiles linear; spike times are in ms from
    ``shift_ms`` after each occurrence's start (the sound's onset in waveform
    mode), ``'epoch'`` meaning the occurrence's ``PreStimSilence``.
    Returns ``stims`` as ``(name, tile (F, T) float32, T, pre_samples, R)``
    in presentation order and ``trains[cell][name] = (times_ms, lengths)``.
    """
    from deepstrf.io.nems import (
        NemsFormatError,
        PointProcess,
        TiledSignal,
        occurrence_spike_times,
        read_recording,
    )

    container, member, cells, subset, log_offset, shift_ms = task
    with warnings.catch_warnings(record=True) as caught:  # re-issued by the parent
        warnings.simplefilter("always", DataQuirkWarning)
        rec = read_recording(container, member=member, signals=["resp", "stim"])
    resp, stim = rec["resp"], rec["stim"]
    for sig, kind in ((resp, PointProcess), (stim, TiledSignal)):
        if not isinstance(sig, kind) or sig.fs != 1000.0 / NATIVE_MS:
            raise NemsFormatError(rec.archive, sig.sidecar.member, f"expected a "
                                  f"{kind.__name__} at 100 Hz; got {sig.sidecar.signal_type} at "
                                  f"{sig.fs:g} Hz.")
    tiles_member = posixpath.splitext(stim.sidecar.member)[0] + ".h5"  # <rec>.stim.h5
    first: dict[str, Any] = {}
    for occ in resp.stim_occurrences():
        first.setdefault(occ.name, occ)
    wanted = [n for n in first
              if subset == "all" or n.startswith("STIM_00") == (subset == "val")]
    stims, trains, spans_of = [], {c: {} for c in cells}, []
    for name in wanted:
        tile = stim.tiles.get(name)
        if tile is None:
            raise NemsFormatError(rec.archive, tiles_member, f"no tile for {name!r}, "
                                  "which the resp epochs present.")
        if tile.shape[0] != N_BANDS:
            raise NemsFormatError(rec.archive, tiles_member, f"tile {name!r} has "
                                  f"{tile.shape[0]} bands; the release has {N_BANDS}.")
        bounds = resp.occurrence_samples(name)
        spans = set((bounds[:, 1] - bounds[:, 0]).tolist())
        if spans != {tile.shape[1]}:
            raise NemsFormatError(rec.archive, resp.epochs.member, f"occurrences of {name!r} "
                                  f"last {sorted(spans)} samples; its tile has {tile.shape[1]}.")
        stims.append((name, _log(tile, log_offset, rec.archive, tiles_member, name),
                      int(tile.shape[1]), int(first[name].pre_samples), int(len(bounds))))
        spans_of.append(bounds)
    # one pass per cell over every occurrence (sorting a cell's spikes once, not per sound)
    every = np.concatenate(spans_of) if spans_of else np.zeros((0, 2), dtype=np.int64)
    edges = np.cumsum([0] + [len(b) for b in spans_of])
    for cell in cells:
        times, lengths = occurrence_spike_times(resp.spike_times[cell], every, resp.fs)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for i, (name, _, _, pre, _) in enumerate(stims):
            a, b = edges[i], edges[i + 1]
            shift = pre * NATIVE_MS if shift_ms == "epoch" else shift_ms
            trains[cell][name] = (times[starts[a]:starts[b]] - float(shift), lengths[a:b])
    return {"archive": rec.archive, "member": member, "stims": stims, "trains": trains,
            "quirks": dict(rec.quirks), "warnings": _messages(caught)}


def select_cells(owner: str, rows: list[dict[str, Any]], params: Mapping[str, Any]
                 ) -> list[dict[str, Any]]:
    """The cell-list rows the ``area``, ``site`` and ``include_unlabeled`` parameters keep."""
    if params["area"] == "all":
        kept = [r for r in rows if r["area"] is not None or params["include_unlabeled"]]
        unlabeled = sum(r["area"] is None for r in rows) if not params[
            "include_unlabeled"] else 0
        if unlabeled:
            logger.info("%s: %d units without an area left out (include_unlabeled=True "
                        "keeps them)", owner, unlabeled)
    else:
        kept = [r for r in rows if r["area"] in params["area"]]
    if params["site"] != "all":
        known = {r["siteid"] for r in rows} | {cell_parts(r["cellid"])["session"]
                                               for r in rows}
        unknown = [s for s in params["site"] if s not in known]
        if unknown:
            raise RawDataError(f"{owner}: site {unknown} matches no session or siteid of "
                               f"cell_list.csv; known: {', '.join(sorted(map(str, known))[:8])}"
                               ", ...")
        kept = [r for r in kept if r["siteid"] in params["site"]
                or cell_parts(r["cellid"])["session"] in params["site"]]
    return kept


def plan_archives(owner: str, scans: list[dict[str, Any]], cells: list[dict[str, Any]],
                  listed: set[str], quirks: dict[str, int]) -> dict[str, list[str]]:
    """Which archive to read for which cells: by the ``chans`` they hold, not file names.

    Each cell is read from an archive whose ``chans`` list it: the one named
    after the cell's session or cell-list site if there is one, else the first
    by name. An archive holding wanted cells that all come from another one is
    a duplicate and skipped. Every departure is counted in ``quirks`` and
    warned. Returns ``{member: cell ids}`` in cell-list order.
    """
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for scan in sorted(scans, key=lambda s: s["member"]):
        for chan in scan["chans"]:
            by_cell.setdefault(chan, []).append(scan)
    plan: dict[str, list[str]] = {}
    absent = 0
    for row in cells:
        found = by_cell.get(row["cellid"], [])
        if not found:
            absent += 1
            continue
        own = {cell_parts(row["cellid"])["session"], row["siteid"]}
        scan = next((s for s in found if archive_site(s["member"]) in own), found[0])
        plan.setdefault(scan["member"], []).append(row["cellid"])
    wanted = {row["cellid"] for row in cells}
    duplicates = [s["member"] for s in scans if s["member"] not in plan
                  and any(c in wanted for c in s["chans"])]
    misnamed, unlisted = [], 0
    sites = {row["cellid"]: row["siteid"] for row in cells}
    for scan in scans:
        if scan["member"] not in plan:
            continue
        sessions = {cell_parts(c)["session"] for c in plan[scan["member"]]}
        if archive_site(scan["member"]) not in sessions | {sites[c] for c in
                                                           plan[scan["member"]]}:
            misnamed.append(f"{Path(scan['member']).name} holds {', '.join(sorted(sessions))}")
        unlisted += sum(cell_parts(c)["session"] in sessions and c not in listed
                        for c in scan["chans"])
    for kind, count, text in (
            ("archive_named_after_another_session", len(misnamed), "recording archives "
             f"are named after another session than their cells' ({'; '.join(misnamed)}); "
             "they are read by their resp.json chans"),
            ("duplicate_session_archive", len(duplicates), "recording archives hold only "
             f"cells another archive holds and are skipped ({', '.join(duplicates)})"),
            ("cells_without_recording", absent, "cells of cell_list.csv are in no "
             "recording archive (left out)"),
            ("recorded_cells_not_in_cell_list", unlisted, "cells of the recordings are "
             "not in cell_list.csv (left out)")):
        if count:
            quirks[kind] = quirks.get(kind, 0) + count
            warnings.warn(f"{owner}: {count} {text}.", DataQuirkWarning, stacklevel=3)
    return plan
