"""Reader of pprox files: the Meliza lab's JSON format for point processes (spike times).

A pprox file is one JSON object per unit: top-level metadata and ``pprox``,
a list of trials. Two layouts occur (Le, Bjoring & Meliza 2025 has both):

``stimtrial`` (``"$schema": "https://meliza.org/spec:2/stimtrial.json#"``)
    each trial has ``events`` (spike times, **seconds**) and ``stimulus``, an
    object with ``name`` and ``interval`` ``[on, off]`` (s) in the same time
    frame as the events. Files written since October 2022 put the onset at
    0, older ones are trial-relative with a non-zero onset; times from onset
    are therefore always ``events - stimulus.interval[0]``, never ``events``
    alone. The older spec's ``"stimulus": "<name>"`` with a number
    ``stimulus_begin`` (s) is read the same way.
legacy (``"$schema": "https://meliza.org/spec:2/pprox.json#"``)
    each trial has ``event`` (spike times, **milliseconds**), ``stim_on``
    (ms, same frame), ``stimulus`` (a name) and usually ``condition``; times
    from onset are ``event - stim_on``.

A file without ``$schema`` is read by the keys its trials use (``events``
or ``event``); :attr:`PproxUnit.schema_declared` tells the caller so it can
report it.

Times are returned in ms from stimulus onset, rounded to
:data:`TIME_RESOLUTION_MS` (1 ns). The subtraction of an onset of several
seconds leaves a float error of up to about 1e-12 ms, which could move a
spike written exactly on a bin edge (0.015 s in a trial whose stimulus starts
at 2.0 s) just below it; rounding to 1 ns removes that error and moves no
real spike time, the acquisition clocks (20-50 kHz) being 4 orders of
magnitude coarser.

Every malformed piece raises :class:`~deepstrf.errors.RawDataError` (a
``ValueError``) naming the file, the trial and the field: a file that is not
JSON (truncated, or an HTML page saved in its place), a trial without spike
times, a value of the wrong type, a non-finite number. Only the standard
library and numpy are imported (the reader runs in joblib workers).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf.errors import RawDataError

__all__ = ["PproxUnit", "STIMTRIAL_SCHEMA", "LEGACY_SCHEMA", "TIME_RESOLUTION_MS",
           "read_pprox", "parse_pprox"]

#: ``$schema`` of the newer files: times in s, relative to ``stimulus.interval[0]``.
STIMTRIAL_SCHEMA = "https://meliza.org/spec:2/stimtrial.json#"
#: ``$schema`` of the legacy files: times in ms, relative to ``stim_on``.
LEGACY_SCHEMA = "https://meliza.org/spec:2/pprox.json#"
#: Times from onset are rounded to this grid (ms), see the module docstring.
TIME_RESOLUTION_MS = 1e-6
_DECIMALS = 6


@dataclass(frozen=True, eq=False)
class PproxUnit:
    """One unit's pprox file, read and checked.

    The trials' spike times are stored flat (one array, one length per
    trial), which is cheap to send between processes.

    Attributes
    ----------
    path : Path
        The file.
    schema : {"stimtrial", "legacy"}
        The layout its trials use.
    schema_declared : bool
        False when the file has no ``$schema`` and the layout was read from
        the trials' keys.
    metadata : dict
        Top-level fields other than ``pprox`` (``$schema`` included).
    times_ms : numpy.ndarray
        float64, every trial's spike times in ms from stimulus onset, one
        trial after the other, in file order.
    lengths : numpy.ndarray
        intp, spikes per trial.
    stimuli : tuple of str
        Per trial, the stimulus name (stimtrial ``stimulus.name``; legacy
        ``stimulus``).
    conditions : tuple of (str or None)
        Per trial, the legacy ``condition`` (None when absent, and always for
        stimtrial).
    durations_ms : numpy.ndarray
        float64, per trial, the stimulus duration the file records (stimtrial
        ``interval[1] - interval[0]``; legacy ``stim_off - stim_on``), NaN
        when not recorded.
    """

    path: Path
    schema: str
    schema_declared: bool
    metadata: dict[str, Any]
    times_ms: np.ndarray
    lengths: np.ndarray
    stimuli: tuple[str, ...]
    conditions: tuple[str | None, ...]
    durations_ms: np.ndarray

    @property
    def n_trials(self) -> int:
        return len(self.lengths)

    def trial_times(self, i: int) -> np.ndarray:
        """Spike times (ms from onset) of trial ``i``."""
        starts = np.concatenate([[0], np.cumsum(self.lengths)])
        return self.times_ms[starts[i]:starts[i + 1]]


def read_pprox(path: str | os.PathLike[str]) -> PproxUnit:
    """Read and check one pprox file (either layout, see the module docstring).

    Parameters
    ----------
    path : str or path-like
        The ``.pprox`` (JSON) file.

    Returns
    -------
    PproxUnit

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    RawDataError
        If it is not a pprox file of either layout; the message names the
        file and what is wrong.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"pprox file {path} does not exist.") from None
    except OSError as err:
        raise RawDataError(f"{path}: cannot read the pprox file ({err.strerror or err}).") \
            from err
    return parse_pprox(data, path)


def _bad_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def parse_pprox(data: bytes | str, path: str | os.PathLike[str]) -> PproxUnit:
    """:func:`read_pprox` on the file's content; ``path`` names it in errors."""
    path = Path(path)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as err:
        raise RawDataError(f"{path}: not a pprox JSON file (not UTF-8 text: {err.reason} at "
                           f"byte {err.start}); it may be corrupt. Delete it and fetch the "
                           "dataset again.") from err
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if head == "<":
        raise RawDataError(
            f"{path}: expected a pprox JSON object but the file starts with '<' (an HTML or "
            "XML page, e.g. an error page saved by a failed download). Delete it and fetch "
            "the dataset again.")
    try:
        document = json.loads(text, parse_constant=_bad_constant)
    except ValueError as err:  # JSONDecodeError, and the non-finite constants
        where = (f" at line {err.lineno}, column {err.colno}"
                 if isinstance(err, json.JSONDecodeError) else "")
        raise RawDataError(
            f"{path}: not a valid pprox JSON file ({err.args[0] if err.args else err}"
            f"{where}); it may be truncated or corrupt. Delete it and fetch the dataset "
            "again.") from err
    if not isinstance(document, dict):
        raise RawDataError(f"{path}: expected a JSON object with a 'pprox' list of trials; got "
                           f"a JSON {type(document).__name__}.")
    trials = document.get("pprox")
    if not isinstance(trials, list):
        raise RawDataError(f"{path}: expected a 'pprox' list of trials at the top level; got "
                           f"{'nothing' if trials is None else type(trials).__name__}.")
    schema, declared = _layout(document, trials, path)
    read_trial = _stimtrial_trial if schema == "stimtrial" else _legacy_trial
    times, lengths, stimuli, conditions, durations = [], [], [], [], []
    for i, trial in enumerate(trials):
        if not isinstance(trial, dict):
            raise RawDataError(f"{path}: trial {i} of 'pprox' must be a JSON object; got "
                               f"{type(trial).__name__}.")
        t, stim, condition, duration = read_trial(trial, i, path)
        times.append(t)
        lengths.append(t.size)
        stimuli.append(stim)
        conditions.append(condition)
        durations.append(duration)
    flat = np.concatenate(times) if times else np.zeros(0)
    return PproxUnit(path=path, schema=schema, schema_declared=declared,
                     metadata={k: v for k, v in document.items() if k != "pprox"},
                     times_ms=np.round(flat, _DECIMALS) + 0.0,  # + 0.0: no -0.0
                     lengths=np.asarray(lengths, dtype=np.intp), stimuli=tuple(stimuli),
                     conditions=tuple(conditions),
                     durations_ms=np.asarray(durations, dtype=np.float64))


def _layout(document: Mapping[str, Any], trials: list, path: Path) -> tuple[str, bool]:
    schema = document.get("$schema")
    if schema is not None and not isinstance(schema, str):
        raise RawDataError(f"{path}: '$schema' must be a string; got {schema!r}.")
    if schema and "stimtrial.json" in schema:
        return "stimtrial", True
    keys = set().union(*(t for t in trials if isinstance(t, dict))) if trials else set()
    if schema and "pprox.json" in schema:
        # stimtrial is a superset of pprox: a file declaring the base schema may use it
        return ("stimtrial" if "events" in keys and "event" not in keys else "legacy"), True
    if schema:
        raise RawDataError(f"{path}: unknown '$schema' {schema!r}; expected {STIMTRIAL_SCHEMA!r} "
                           f"or {LEGACY_SCHEMA!r}.")
    if "event" in keys:
        return "legacy", False
    return "stimtrial", False


def _number(value: Any, what: str, i: int, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise RawDataError(f"{path}: trial {i}: {what} must be a finite number; got {value!r}.")
    return float(value)


def _times(trial: Mapping[str, Any], key: str, unit: str, i: int, path: Path) -> np.ndarray:
    if key not in trial:
        raise RawDataError(
            f"{path}: trial {i} has no '{key}' field (its spike times, in {unit}); every trial "
            f"must list its spikes, [] for none. Fields present: {sorted(trial)}.")
    events = trial[key]
    if not isinstance(events, list) or not all(
            type(v) is float or type(v) is int for v in events):
        shown = events if not isinstance(events, list) else next(
            v for v in events if not (type(v) is float or type(v) is int))
        raise RawDataError(f"{path}: trial {i}: '{key}' must be a list of numbers ({unit}); "
                           f"found {shown!r}.")
    return np.asarray(events, dtype=np.float64)


def _name(value: Any, what: str, i: int, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise RawDataError(f"{path}: trial {i}: {what} must be a non-empty string; got "
                           f"{value!r}.")
    return value


def _stimtrial_trial(trial: Mapping[str, Any], i: int,
                     path: Path) -> tuple[np.ndarray, str, None, float]:
    events = _times(trial, "events", "s", i, path)
    stimulus = trial.get("stimulus")
    if isinstance(stimulus, dict):
        name = _name(stimulus.get("name"), "'stimulus.name'", i, path)
        interval = stimulus.get("interval")
        if not isinstance(interval, list) or len(interval) != 2:
            raise RawDataError(
                f"{path}: trial {i}: 'stimulus.interval' must be [onset, offset] in s (the "
                f"onset the spike times are measured from); got {interval!r}.")
        onset = _number(interval[0], "'stimulus.interval[0]'", i, path)
        offset = _number(interval[1], "'stimulus.interval[1]'", i, path)
        if offset < onset:
            raise RawDataError(f"{path}: trial {i}: 'stimulus.interval' ends before it starts: "
                               f"{interval!r}.")
        duration = (offset - onset) * 1000.0
    elif isinstance(stimulus, str) and "stimulus_begin" in trial:
        name = _name(stimulus, "'stimulus'", i, path)
        onset = _number(trial["stimulus_begin"], "'stimulus_begin'", i, path)
        duration = math.nan
    else:
        raise RawDataError(
            f"{path}: trial {i}: expected 'stimulus' as an object with 'name' and 'interval' "
            f"(or a name with 'stimulus_begin'); got {stimulus!r}.")
    return (events - onset) * 1000.0, name, None, duration


def _legacy_trial(trial: Mapping[str, Any], i: int,
                  path: Path) -> tuple[np.ndarray, str, str | None, float]:
    events = _times(trial, "event", "ms", i, path)
    if "stim_on" not in trial:
        raise RawDataError(f"{path}: trial {i} has no 'stim_on' (stimulus onset, ms), which "
                           "its spike times are measured from.")
    onset = _number(trial["stim_on"], "'stim_on'", i, path)
    name = _name(trial.get("stimulus"), "'stimulus'", i, path)
    condition = trial.get("condition")
    if condition is not None:
        condition = _name(condition, "'condition'", i, path)
    duration = math.nan
    if trial.get("stim_off") is not None:
        duration = _number(trial["stim_off"], "'stim_off'", i, path) - onset
    return events - onset, name, condition, duration
