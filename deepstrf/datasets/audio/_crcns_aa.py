"""Readers of the Theunissen lab's CRCNS releases (AA1 and AA2 text folders, AA4 HDF5 units).

They run in joblib worker processes, so this module imports no torch.

AA1 and AA2 share the text format.
A cell folder holds one subfolder per stimulus class (``conspecific``,
``flatrip``, ``songrip``), each with pairs of text files: ``stimN`` names the
wav (one line, ``<MD5>.wav``) and ``spikeN`` lists the trials (one line per
trial, spike times in ms from stimulus onset). Files pair by N. Real folders
have quirks this module tolerates and reports once per build, with a
:class:`~deepstrf.errors.DataQuirkWarning`: a ``stimN`` without its ``spikeN``
or the reverse (skipped), and the same wav presented twice in one cell's
protocol (its trials are merged: they are repeats of one stimulus), and a
zero-byte ``spikeN`` (no trial line at all; the pair is left missing).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf.datasets._responses import SpikeTrains
from deepstrf.errors import DataQuirkWarning, RawDataError

__all__ = ["CellProtocol", "ProtocolEntry", "UnitRead", "collect_trials", "parse_cell_name",
           "read_cell_protocol", "read_unit"]

_FILE = re.compile(r"(stim|spike)(\d+)")
_CELL = re.compile(r"(?P<animal>[^_]+)_(?P<seq>\d+)(?:_(?P<rig>[A-Za-z]))?")


@dataclass
class ProtocolEntry:
    """One presentation block of a cell: stimulus class, wav name and its trials.

    The spike times are kept as one flat array plus the spikes per trial, the
    cheap form to send back from a worker process.
    """

    stim_class: str
    number: int
    wav: str
    times: np.ndarray
    lengths: np.ndarray
    spike_file: Path

    @property
    def trains(self) -> SpikeTrains:
        return SpikeTrains(self.times, self.lengths)


@dataclass
class CellProtocol:
    """Everything read from one cell folder."""

    cell: str
    entries: list[ProtocolEntry] = field(default_factory=list)
    unpaired: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)   #: zero-byte spikeN files


def parse_cell_name(name: str) -> tuple[str, int | None, str | None]:
    """``'gg0304_10_B'`` -> ``('gg0304', 10, 'B')``; unknown patterns keep the animal prefix."""
    m = _CELL.fullmatch(name)
    if m is None:
        return name.split("_")[0], None, None
    return m["animal"], int(m["seq"]), m["rig"]


def read_cell_protocol(task: tuple[Path, Sequence[str]]) -> CellProtocol:
    """Read the ``stimN``/``spikeN`` pairs of one cell for the given classes.

    Module-level (picklable) so :func:`~deepstrf.preprocessing.parallel_map`
    can run it in worker processes.
    """
    from deepstrf.io.readers import read_spike_times_flat, read_stim_file

    cell_dir, classes = task
    out = CellProtocol(cell=cell_dir.name)
    for stim_class in classes:
        folder = cell_dir / stim_class
        if not folder.is_dir():
            continue
        stims: dict[int, Path] = {}
        spikes: dict[int, Path] = {}
        for path in folder.iterdir():
            m = _FILE.fullmatch(path.name)
            if m is None or not path.is_file():
                continue
            (stims if m[1] == "stim" else spikes)[int(m[2])] = path
        for number in sorted(stims.keys() | spikes.keys()):
            if number not in stims or number not in spikes:
                out.unpaired.append(stims.get(number) or spikes[number])
                continue
            if spikes[number].stat().st_size == 0:
                # no trial at all, not trials without spikes (those are empty lines)
                out.empty.append(spikes[number])
                continue
            times, lengths = read_spike_times_flat(spikes[number])
            out.entries.append(ProtocolEntry(stim_class=stim_class, number=number,
                                             wav=read_stim_file(stims[number]), times=times,
                                             lengths=lengths, spike_file=spikes[number]))
    return out


def collect_trials(protocols: Sequence[CellProtocol],
                   stim_index: Mapping[tuple[str, str], int], *, owner: str,
                   wav_dir_for: Mapping[str, Path],
                   quirks: dict[str, int] | None = None) -> dict[tuple[int, int], SpikeTrains]:
    """Map every protocol entry to ``trials[(stim, neuron)]``; report quirks once.

    ``protocols[n]`` belongs to neuron n (read for the requested classes
    only). ``stim_index`` maps ``(class, wav name)`` to a stimulus index for
    every wav present; an entry naming a wav that is absent raises
    :class:`~deepstrf.errors.RawDataError` naming its ``stimN`` file. The
    number of each kind of quirk is added to ``quirks`` when given.
    """
    trials: dict[tuple[int, int], SpikeTrains] = {}
    unpaired: list[Path] = []
    empty: list[Path] = []
    duplicates: list[str] = []
    for n, protocol in enumerate(protocols):
        unpaired.extend(protocol.unpaired)
        empty.extend(protocol.empty)
        for entry in protocol.entries:
            s = stim_index.get((entry.stim_class, entry.wav))
            if s is None:
                stim_file = entry.spike_file.with_name(f"stim{entry.number}")
                raise RawDataError(
                    f"{owner}: {stim_file} names the stimulus {entry.wav!r}, which is not in "
                    f"{wav_dir_for[entry.stim_class]}. The stimulus folder is incomplete or "
                    "belongs to another release; re-extract the archives.")
            if (s, n) in trials:
                duplicates.append(f"{protocol.cell}/{entry.stim_class}/{entry.wav}")
                trials[(s, n)] = trials[(s, n)].merged(entry.trains)
            else:
                trials[(s, n)] = entry.trains
    if quirks is not None:
        for kind, found in (("unpaired_files", unpaired), ("empty_spike_files", empty),
                            ("merged_presentations", duplicates)):
            if found:
                quirks[kind] = quirks.get(kind, 0) + len(found)
    if unpaired:
        shown = ", ".join(str(p) for p in unpaired[:3])
        warnings.warn(f"{owner}: {len(unpaired)} stimN/spikeN file(s) have no partner and were "
                      f"skipped (e.g. {shown}).", DataQuirkWarning, stacklevel=3)
    if empty:
        shown = ", ".join(str(p) for p in empty[:3])
        warnings.warn(f"{owner}: {len(empty)} spikeN file(s) are empty (0 bytes, no trial "
                      f"line) and were skipped; those (stimulus, cell) pairs are missing "
                      f"(e.g. {shown}).", DataQuirkWarning, stacklevel=3)
    if duplicates:
        warnings.warn(f"{owner}: {len(duplicates)} stimulus presentation(s) repeat a stimulus "
                      f"already in the same cell's protocol; their trials were merged as extra "
                      f"repeats (e.g. {duplicates[0]}).", DataQuirkWarning, stacklevel=3)
    return trials


# ---------------------------------------------------------------------------- AA4 units
_METADATA_GROUPS = frozenset({"class_info", "extra_info"})
_SUBSORT = re.compile(r"_ss(\d+)$")
_EMPTY_TRIAL = -999.0


@dataclass
class UnitRead:
    """Everything read from one unit file."""

    meta: dict[str, Any]
    # stim md5 -> (stim attrs, its trials, ms from onset)
    stims: dict[str, tuple[dict[str, Any], SpikeTrains]] = field(default_factory=dict)


def _scalar(value: Any) -> Any:
    from deepstrf.io.readers import decode_attr

    value = decode_attr(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value


def read_unit(task: tuple[Path, str, tuple[str, ...]]) -> UnitRead | None:
    """Read one unit's HDF5 file; None if its sort type is not wanted (picklable)."""
    import h5py

    path, animal, unit_types = task
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _scalar(v) for k, v in f.attrs.items()}
            sort_type = str(attrs.get("sortType", "")).strip().lower()
            sort_type = {"singl": "single"}.get(sort_type, sort_type)
            if sort_type not in unit_types:
                return None
            sub = _SUBSORT.search(path.stem)
            meta = {"cell_id": path.stem, "animal_id": animal, "sex": animal[-1],
                    "site": attrs.get("site"), "electrode": _int_or_none(attrs.get("electrode")),
                    "ldepth": _float_or_nan(attrs.get("ldepth")),
                    "rdepth": _float_or_nan(attrs.get("rdepth")),
                    "sort_type": sort_type, "sort_id": _int_or_none(attrs.get("sortid")),
                    "subsort_id": int(sub[1]) if sub else None}
            unit = UnitRead(meta=meta)
            for protocol_name, protocol in f.items():
                if protocol_name in _METADATA_GROUPS or not isinstance(protocol, h5py.Group):
                    continue
                for stim_name, stim in protocol.items():
                    if not isinstance(stim, h5py.Group):
                        continue
                    where = f"{protocol_name}/{stim_name}"
                    s_attrs = {k: _scalar(v) for k, v in stim.attrs.items()}
                    md5 = s_attrs.get("stim_md5")
                    if not md5:
                        raise RawDataError(f"{path}: group {where!r} has no 'stim_md5' attribute; "
                                           "every stimulus group must name its stimulus.")
                    trials = [_trial(path, f"{where}/{name}", stim[name])
                              for name in sorted(stim, key=_trial_order)]
                    if not trials:
                        raise RawDataError(f"{path}: stimulus group {where!r} has no trial groups "
                                           "('1', '2', ...); the file is incomplete.")
                    s_attrs["number"] = stim_name
                    trains = SpikeTrains.from_trials(trials)
                    if md5 in unit.stims:
                        unit.stims[md5] = (unit.stims[md5][0], unit.stims[md5][1].merged(trains))
                    else:
                        unit.stims[md5] = (s_attrs, trains)
            return unit
    except OSError as err:
        raise RawDataError(f"{path}: not a readable HDF5 unit file ({err}).") from err


def _trial_order(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 30, name)


def _trial(path: Path, where: str, group: Any) -> np.ndarray:
    import h5py

    if not isinstance(group, h5py.Group) or "spike_times" not in group:
        raise RawDataError(f"{path}: trial {where!r} has no 'spike_times' dataset; the file is "
                           "incomplete or not an AA4 unit file.")
    times = np.asarray(group["spike_times"][()], dtype=np.float64).reshape(-1)
    if times.size == 1 and times[0] == _EMPTY_TRIAL:
        return np.zeros(0, dtype=np.float64)
    return times * 1000.0


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
