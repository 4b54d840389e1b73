"""Reading the Theunissen lab's cell folders (CRCNS AA1 and AA2 share the format).

A cell folder holds one subfolder per stimulus class (``conspecific``,
``flatrip``, ``songrip``), each with pairs of text files: ``stimN`` names the
wav (one line, ``<MD5>.wav``) and ``spikeN`` lists the trials (one line per
trial, spike times in ms from stimulus onset). Files pair by N. Real folders
have quirks this module tolerates and reports once per build, with a
:class:`~deepstrf.errors.DataQuirkWarning`: a ``stimN`` without its ``spikeN``
or the reverse (skipped), and the same wav presented twice in one cell's
protocol (its trials are merged: they are repeats of one stimulus).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepstrf.errors import DataQuirkWarning, RawDataError

__all__ = ["CellProtocol", "ProtocolEntry", "collect_trials", "parse_cell_name",
           "read_cell_protocol"]

_FILE = re.compile(r"(stim|spike)(\d+)")
_CELL = re.compile(r"(?P<animal>[^_]+)_(?P<seq>\d+)(?:_(?P<rig>[A-Za-z]))?")


@dataclass
class ProtocolEntry:
    """One presentation block of a cell: stimulus class, wav name and its trials."""

    stim_class: str
    number: int
    wav: str
    trials: list[np.ndarray]
    spike_file: Path


@dataclass
class CellProtocol:
    """Everything read from one cell folder."""

    cell: str
    entries: list[ProtocolEntry] = field(default_factory=list)
    unpaired: list[Path] = field(default_factory=list)


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
    from deepstrf.io.readers import read_spike_times, read_stim_file

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
            out.entries.append(ProtocolEntry(stim_class=stim_class, number=number,
                                             wav=read_stim_file(stims[number]),
                                             trials=read_spike_times(spikes[number]),
                                             spike_file=spikes[number]))
    return out


def collect_trials(protocols: Sequence[CellProtocol],
                   stim_index: Mapping[tuple[str, str], int], *, owner: str,
                   wav_dir_for: Mapping[str, Path]) -> dict[tuple[int, int], list[np.ndarray]]:
    """Map every protocol entry to ``trials[(stim, neuron)]``; report quirks once.

    ``protocols[n]`` belongs to neuron n (read for the requested classes
    only). ``stim_index`` maps ``(class, wav name)`` to a stimulus index for
    every wav present; an entry naming a wav that is absent raises
    :class:`~deepstrf.errors.RawDataError` naming its ``stimN`` file.
    """
    trials: dict[tuple[int, int], list[np.ndarray]] = {}
    unpaired: list[Path] = []
    duplicates: list[str] = []
    for n, protocol in enumerate(protocols):
        unpaired.extend(protocol.unpaired)
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
                trials[(s, n)] = trials[(s, n)] + list(entry.trials)
            else:
                trials[(s, n)] = list(entry.trials)
    if unpaired:
        shown = ", ".join(str(p) for p in unpaired[:3])
        warnings.warn(f"{owner}: {len(unpaired)} stimN/spikeN file(s) have no partner and were "
                      f"skipped (e.g. {shown}).", DataQuirkWarning, stacklevel=3)
    if duplicates:
        warnings.warn(f"{owner}: {len(duplicates)} stimulus presentation(s) repeat a stimulus "
                      f"already in the same cell's protocol; their trials were merged as extra "
                      f"repeats (e.g. {duplicates[0]}).", DataQuirkWarning, stacklevel=3)
    return trials
