"""Worker-side reading of the CRCNS AC1 raw files (no torch import).

The functions here run in joblib workers (:func:`~deepstrf.preprocessing.parallel_map`)
and return plain dicts; :class:`AsariSequenceStim` is the stimulus source of
an Asari sequence, assembled in the worker that renders it. The file formats
are described in :mod:`deepstrf.datasets.audio.crcns_ac1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf.datasets.audio._stimuli import _check_common, _Waveform
from deepstrf.errors import RawDataError

__all__ = ["ASARI_NATURAL_TYPES", "AsariSequenceStim", "WEHR_NATURAL_TYPES", "assemble_sequence",
           "parse_sequence", "read_asari_recording", "read_segment_info", "read_wehr_stim",
           "read_wehr_trial", "sin2_ramp"]

#: trigger types of natural-sound trials (Wehr: the correct spelling, the typo, the short form)
WEHR_NATURAL_TYPES = ("naturalsound", "nauralsound", "natural")
WEHR_TYPO_TYPES = ("nauralsound",)
ASARI_NATURAL_TYPES = ("naturalsound", "natural sound")
_SEQUENCE = re.compile(r"^\s*sequence\s*\d*\s*:\s*((?:\d+\s*)+)$", re.IGNORECASE)


def _read(path: Path, names: list[str] | None = None) -> dict[str, Any]:
    from deepstrf.io.readers import read_mat

    try:
        return read_mat(path, names)
    except RawDataError as err:
        raise RawDataError(f"{path}: not a readable MATLAB file of the AC1 release ({err}).") \
            from err


def _get(node: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(node, dict) or key not in node:
        have = sorted(node) if isinstance(node, dict) else type(node).__name__
        raise RawDataError(f"{path}: {where} has no field {key!r} (has {have}); not a file of "
                           "the CRCNS AC1 layout.")
    return node[key]


def _number(value: Any, path: Path, where: str) -> float:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.size != 1:
        raise RawDataError(f"{path}: {where} should be a number; got {arr.dtype} of shape "
                           f"{arr.shape}.")
    return float(arr.reshape(-1)[0])


def _text(value: Any, path: Path, where: str) -> str:
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.size == 0:
        return ""
    raise RawDataError(f"{path}: {where} should be text; got {arr.dtype} of shape {arr.shape}.")


def _records(value: Any) -> list[dict[str, Any]]:
    """A struct array as read (one struct: a dict; several: a list of dicts)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, dict)]
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [v for v in value.reshape(-1) if isinstance(v, dict)]
    return []


def _response(data: dict[str, Any], path: Path) -> tuple[np.ndarray, float]:
    """``(trace in mV, sf)`` of a file's ``response`` struct."""
    if "response" not in data:
        raise RawDataError(f"{path}: no 'response' variable (has {sorted(data)}); every AC1 "
                           "trial/recording file holds response.trace, .scale and .sf.")
    response = data["response"]
    trace = np.asarray(_get(response, "trace", path, "response"))
    if trace.dtype.kind not in "fiu" or trace.ndim != 1 or trace.size == 0:
        raise RawDataError(f"{path}: response.trace should be a non-empty numeric vector; got "
                           f"{trace.dtype} of shape {trace.shape}.")
    scale = _number(_get(response, "scale", path, "response"), path, "response.scale")
    sf = _number(_get(response, "sf", path, "response"), path, "response.sf")
    if not sf > 0:
        raise RawDataError(f"{path}: response.sf must be > 0; got {sf:g}.")
    return trace.astype(np.float64) * scale, sf


def _window(path: Path, trigger: dict[str, Any], n_trace: int, sf: float, i: int
            ) -> tuple[int, int, float]:
    """``(onset sample (0-based), samples wanted, duration ms)`` of a trigger."""
    time = _number(_get(trigger, "time", path, f"triggers({i})"), path, f"triggers({i}).time")
    param = _get(trigger, "param", path, f"triggers({i})")
    duration = _number(_get(param, "duration", path, f"triggers({i}).param"), path,
                       f"triggers({i}).param.duration")
    if time != int(time) or not 1 <= time <= n_trace:
        raise RawDataError(f"{path}: triggers({i}).time = {time:g} points outside the "
                           f"{n_trace}-sample response.trace (1-based sample indices expected).")
    if not duration > 0:
        raise RawDataError(f"{path}: triggers({i}).param.duration must be > 0 ms; got "
                           f"{duration:g}.")
    return int(time) - 1, int(round(duration * sf / 1000.0)), duration


def _repeat(kind: str, trace: np.ndarray, raw: np.ndarray, onset: int, want: int, sf: float,
            opts: dict[str, Any], spikes: np.ndarray | None, path: Path) -> dict[str, Any]:
    """One repeat, reduced here in the worker to what the parent needs.

    Membrane potential: average-pooled to the response bins (``pooled``, the
    last bin from the samples it has) and the gating numbers of its raw
    trace; spikes: their times from onset. The parent never holds a trace at
    its native rate (20 to 50 times the size).
    """
    from deepstrf.preprocessing.continuous import pool_factor, pool_mean
    from deepstrf.preprocessing.intracellular import gating_stats

    stop = min(onset + want, trace.size)
    out: dict[str, Any] = {"onset": onset, "n_wanted": want, "n_samples": stop - onset,
                           "truncated": stop - onset < want}
    if kind == "spikes":
        assert spikes is not None
        inside = spikes[(spikes >= onset) & (spikes < stop)]
        out["spike_ms"] = (inside - onset) * 1000.0 / sf
    else:
        try:
            k = pool_factor(sf, opts["dt_ms"])
        except ValueError as err:
            raise RawDataError(f"{path}: response.sf = {sf:g} Hz: {err}") from err
        out["pooled"] = pool_mean(trace[onset:stop], k).astype(np.float32)
        out["stats"] = gating_stats(raw[onset:stop], sf, opts["gating"])
    return out


def _clean(raw: np.ndarray, sf: float, kind: str, opts: dict[str, Any]
           ) -> tuple[np.ndarray, np.ndarray | None]:
    from deepstrf.preprocessing.intracellular import detrend_median_gauss

    trace = detrend_median_gauss(raw, sf, opts["median_ms"], opts["gauss_ms"])
    spikes = opts["spikes"].detect(trace, sf) if kind == "spikes" else None
    return trace, spikes


# ---------------------------------------------------------------------------- Wehr
def read_wehr_stim(path: Path) -> dict[str, Any]:
    """A Wehr stimulus file: its description, rate and length."""
    data = _read(path, None)
    stim = _get(data, "stimulus", path, "the file")
    samples = np.asarray(_get(stim, "samples", path, "stimulus"))
    if samples.dtype.kind not in "fiu" or samples.ndim != 1 or samples.size == 0:
        raise RawDataError(f"{path}: stimulus.samples should be a non-empty numeric vector; got "
                           f"{samples.dtype} of shape {samples.shape}.")
    param = _get(stim, "param", path, "stimulus")
    sf = _number(_get(param, "sf", path, "stimulus.param"), path, "stimulus.param.sf")
    return {"description": _text(_get(param, "description", path, "stimulus.param"), path,
                                 "stimulus.param.description"),
            "sample_rate": sf, "n_samples": int(samples.size)}


def read_wehr_trial(task: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """One Wehr trial file: its first trigger and, for a natural sound, the cleaned response."""
    path, opts = task
    data = _read(path, None)
    triggers = _records(data.get("triggers"))
    if "triggers" not in data or not triggers:
        raise RawDataError(f"{path}: no 'triggers' struct (has {sorted(data)}).")
    trigger = triggers[0]
    kind = _text(_get(trigger, "type", path, "triggers(1)"), path, "triggers(1).type")
    out: dict[str, Any] = {"path": str(path), "type": kind}
    if kind.strip().lower() not in WEHR_NATURAL_TYPES:
        return out
    raw, sf = _response(data, path)
    onset, want, duration = _window(path, trigger, raw.size, sf, 1)
    param = _get(trigger, "param", path, "triggers(1)")
    out.update(description=_text(_get(param, "description", path, "triggers(1).param"), path,
                                 "triggers(1).param.description"),
               duration_ms=duration, sample_rate=sf)
    trace, _ = _clean(raw, sf, "subthreshold", opts)
    out["repeat"] = _repeat("subthreshold", trace, raw, onset, want, sf, opts, None, path)
    return out


# ---------------------------------------------------------------------------- Asari
def parse_sequence(description: str) -> tuple[int, ...] | None:
    """``'Sequence 1: 2  1  3'`` -> ``(2, 1, 3)`` (1-based positions); None if not one."""
    found = _SEQUENCE.match(description)
    return tuple(int(t) for t in found.group(1).split()) if found else None


def read_asari_recording(task: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """One Asari recording file: site, type, stimulus list and every natural-sound repeat."""
    path, opts = task
    data = _read(path, None)
    param = _get(data, "param", path, "the file")
    written = [_text(_get(s, "file", path, f"param.stimulus({k + 1})"), path,
                     f"param.stimulus({k + 1}).file")
               for k, s in enumerate(_records(_get(param, "stimulus", path, "param")))]
    # a path written on Windows ('class6\\3.mat') names the same file
    files = [f.strip().replace("\\", "/") for f in written]
    recording = _get(param, "recording", path, "param")
    site = _text(_get(recording, "site", path, "param.recording"), path, "param.recording.site")
    rec_type = _text(_get(recording, "type", path, "param.recording"), path,
                     "param.recording.type").strip().lower().replace(" ", "-")
    kind = "spikes" if "attached" in rec_type else "subthreshold"
    raw, sf = _response(data, path)
    triggers = _records(data.get("triggers"))
    if "triggers" not in data:
        raise RawDataError(f"{path}: no 'triggers' struct (has {sorted(data)}).")
    out: dict[str, Any] = {"path": str(path), "site": site, "recording_type": rec_type,
                           "signal_type": kind, "sample_rate": sf, "files": files,
                           "repeats": [], "missing_refs": [], "other_types": {},
                           "backslash_paths": [w for w in written if "\\" in w]}
    natural = []
    for i, trig in enumerate(triggers, start=1):
        ttype = _text(_get(trig, "type", path, f"triggers({i})"), path, f"triggers({i}).type")
        if ttype.strip().lower() not in ASARI_NATURAL_TYPES:
            out["other_types"][ttype] = out["other_types"].get(ttype, 0) + 1
            continue
        tparam = _get(trig, "param", path, f"triggers({i})")
        text = _text(_get(tparam, "description", path, f"triggers({i}).param"), path,
                     f"triggers({i}).param.description")
        positions = parse_sequence(text)
        if positions is None:
            raise RawDataError(f"{path}: triggers({i}).param.description = {text!r} is not a "
                               "stimulus description of the Asari format ('Sequence N: i j "
                               "k ...', 1-based positions in param.stimulus).")
        absent = [p for p in positions if not 1 <= p <= len(files)]
        if absent:   # skipped (reported by the caller), its window unread
            out["missing_refs"].append(f"triggers({i}) '{text}' names position(s) {absent} of "
                                       f"a {len(files)}-entry param.stimulus")
            continue
        onset, want, duration = _window(path, trig, raw.size, sf, i)
        natural.append((positions, text, onset, want, duration))
    if natural:
        trace, spikes = _clean(raw, sf, kind, opts)
        for positions, text, onset, want, duration in natural:
            rep = _repeat(kind, trace, raw, onset, want, sf, opts, spikes, path)
            rep.update(positions=positions, description=text, duration_ms=duration)
            out["repeats"].append(rep)
    return out


def read_segment_info(path: Path) -> dict[str, Any]:
    """An Asari segment file: its rate and length (checked)."""
    samples, sf = _read_segment(path)
    return {"sample_rate": sf, "n_samples": int(samples.size)}


def _read_segment(path: Path) -> tuple[np.ndarray, float]:
    data = _read(Path(path), None)
    stim = _get(data, "stimulus", path, "the file")
    samples = np.asarray(_get(stim, "sample", path, "stimulus"))
    if samples.dtype.kind not in "fiu" or samples.ndim != 1 or samples.size == 0:
        raise RawDataError(f"{path}: stimulus.sample should be a non-empty numeric vector; got "
                           f"{samples.dtype} of shape {samples.shape}.")
    sf = _number(_get(_get(stim, "param", path, "stimulus"), "sf", path, "stimulus.param"),
                 path, "stimulus.param.sf")
    return samples.astype(np.float64), sf


def sin2_ramp(n_samples: int, ramp: int) -> np.ndarray:
    """Gain of a segment: ``sin^2`` rise over its first ``ramp`` samples, mirrored at its end.

    ``g[j] = sin^2(pi/2 * j / ramp)`` for ``j < ramp`` (starting at 0), and
    the same read backwards over the last ``ramp`` samples; 1 between.
    """
    gain = np.ones(n_samples)
    ramp = min(int(ramp), n_samples)
    if ramp > 0:
        rise = np.sin(0.5 * np.pi * np.arange(ramp) / ramp) ** 2
        gain[:ramp] *= rise
        gain[n_samples - ramp:] *= rise[::-1]
    return gain


def assemble_sequence(paths: tuple[Path, ...], ramp_ms: float) -> tuple[np.ndarray, float]:
    """The segments, each ramped (:func:`sin2_ramp`), one after the other."""
    if not paths:
        raise ValueError("assemble_sequence needs at least one segment file; got none.")
    parts, rate = [], None
    for path in paths:
        samples, sf = _read_segment(path)
        if rate is not None and sf != rate:
            raise RawDataError(f"{path}: segment at {sf:g} Hz in a sequence at {rate:g} Hz; the "
                               "segments of a sequence must share one rate.")
        rate = sf
        parts.append(samples * sin2_ramp(samples.size, int(round(ramp_ms * sf / 1000.0))))
    return np.concatenate(parts).astype(np.float32), float(rate)


@dataclass(frozen=True)
class AsariSequenceStim(_Waveform):
    """An Asari sequence stimulus: segment files concatenated with sin-squared ramps."""

    segment_paths: tuple[Path, ...]
    sample_rate: float
    meta: dict[str, Any] = field(default_factory=dict)
    ramp_ms: float = 5.0
    inset_ms: float = 0.0
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)

    def declared_rate(self) -> float | None:
        return float(self.sample_rate)

    def load(self) -> tuple[np.ndarray, float]:
        return assemble_sequence(self.segment_paths, self.ramp_ms)
