"""Reading one Espejo 2019 site recording, in worker processes (no torch here).

A site archive (``<site>_<hash>.tgz``, NEMS0) holds ``resp`` (a PointProcess of
spike times, or for three VMN sites a RasterizedSignal CSV at 100 Hz) and
``stim`` (a TiledSignal, one ``(F, T)`` cochleagram per ``STIM_`` epoch, or a
RasterizedSignal sliced at each stimulus' first occurrence). The epoch
arithmetic (sample bounds, NEMS's floor rule) is :mod:`deepstrf.io.nems`'s.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from typing import Any

import numpy as np

__all__ = ["BANDS", "NATIVE_MS", "STIMFMT", "cell_parts", "joined", "read_site",
           "summarise_site"]

#: The release's bin: ``rasterfs`` 100 Hz.
NATIVE_MS = 10.0
#: ``meta['stimfmt']`` and bands of each stimulus set.
STIMFMT = {"nat": "ozgf", "vmn": "envelope"}
BANDS = {"nat": 18, "vmn": 2}
_NAT_ID = re.compile(r"^(?P<site>(?P<animal>[A-Za-z]{3})\d+[a-z]?)-(?P<chan>\d+)-(?P<unit>\d+)$")
_VMN_ID = re.compile(r"^(?P<site>(?P<animal>[A-Za-z]{3})\d+[a-z]?)-(?P<chan>[A-Za-z]+\d*)$")


def cell_parts(cell: str) -> dict[str, Any]:
    """``site``, ``animal_id``, ``channel`` (str) and ``unit`` (str or None) of a cell id.

    NAT ids are ``<site>-<channel>-<unit>`` (``AMT003c-11-1``), VMN ids
    ``<site>-<letter><digit>`` (``btn144a-c1``, no unit). Other ids give the
    first dash-separated part as the site and None elsewhere.
    """
    for pattern in (_NAT_ID, _VMN_ID):
        m = pattern.match(cell)
        if m is not None:
            return {"site": m["site"], "animal_id": m["animal"], "channel": m["chan"],
                    "unit": m.groupdict().get("unit")}
    return {"site": cell.split("-")[0], "animal_id": None, "channel": None, "unit": None}


def read_site(task: tuple[str, str, str]) -> dict[str, Any]:
    """A worker task: ``(container, member, stimuli)`` -> :func:`summarise_site`.

    The warnings the reader gives are returned under ``warnings`` as
    ``(category, message)`` for the parent to give again: those of a worker
    process would not reach the user.
    """
    from deepstrf.io.nems import read_recording

    container, member, stimuli = task
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = summarise_site(read_recording(container, member=member,
                                                signals=["resp", "stim"]), stimuli, member)
    summary["warnings"] = [(w.category, str(w.message)) for w in caught]
    return summary


def _member(rec: Any, suffix: str) -> str:
    """The member ``<rec>.<suffix>`` in the folder the sidecars were found in."""
    folders = [posixpath.dirname(s.member) for s in rec.sidecars.values()]
    return posixpath.join(folders[0] if folders else "", f"{rec.name}.{suffix}")


def summarise_site(rec: Any, stimuli: str, member: str = "") -> dict[str, Any]:
    """A site's cochleagrams, occurrence counts and per-(cell, stimulus) responses.

    Returns
    -------
    dict
        ``archive``, ``member``, ``site``, ``chans``, ``tiles`` (name -> float32
        ``(F, T)``), ``counts`` (name -> occurrences), ``pre_ms`` (name ->
        silence before the sound), ``kind`` (``'spikes'`` or ``'raster'``),
        ``responses`` (cell -> name -> ``(times_ms, lengths)`` from each
        occurrence's start, or ``(R, T)`` counts), ``quirks``.
    """
    from deepstrf.io.nems import NemsFormatError, PointProcess, RasterizedSignal, TiledSignal, \
        occurrence_spike_times

    fmt = rec.meta.get("stimfmt")
    if fmt != STIMFMT[stimuli]:
        raise NemsFormatError(rec.archive, _member(rec, "meta.json"),
                              f"meta 'stimfmt' is {fmt!r}; the {stimuli.upper()} set's sites "
                              f"have {STIMFMT[stimuli]!r}. Is this archive from the other "
                              f"stimulus set (stimuli={'vmn' if stimuli == 'nat' else 'nat'!r})?")
    rasterfs = rec.meta.get("rasterfs", 100)
    if not np.isclose(float(rasterfs), 1000.0 / NATIVE_MS):
        raise NemsFormatError(rec.archive, _member(rec, "meta.json"),
                              f"meta 'rasterfs' is {rasterfs!r}; the release is at 100 Hz.")
    resp, stim = rec["resp"], rec["stim"]
    if not isinstance(resp, (PointProcess, RasterizedSignal)):
        raise NemsFormatError(rec.archive, resp.sidecar.member, "'resp' must be a PointProcess "
                              f"or a RasterizedSignal; got {resp.sidecar.signal_type}.")
    for sig in (resp, stim):
        if isinstance(sig, RasterizedSignal) and not np.isclose(sig.fs, 1000.0 / NATIVE_MS):
            raise NemsFormatError(rec.archive, sig.sidecar.member, f"a RasterizedSignal "
                                  f"'{sig.name}' must be at 100 Hz; got {sig.fs:g} Hz.")
    occurrences = resp.stim_occurrences()
    names = list(dict.fromkeys(o.name for o in occurrences))
    if not names:
        raise NemsFormatError(rec.archive, resp.epochs.member, "no STIM_ epochs: not a "
                                                              "stimulus-response recording.")
    tiles, counts, pre_ms = {}, {}, {}
    for name in names:
        if isinstance(stim, TiledSignal):
            if name not in stim.tiles:
                raise NemsFormatError(rec.archive, _member(rec, "stim.h5"), f"no tile for "
                                      f"epoch {name!r}; it holds {len(stim.tiles)} others.")
            tile = np.asarray(stim.tiles[name], dtype=np.float32)
        elif isinstance(stim, RasterizedSignal):
            rows = stim.sidecar.sample_rows(stim.occurrence_samples(name)[:1])
            if not len(rows):
                raise NemsFormatError(rec.archive, stim.epochs.member, f"no {name!r} epoch in "
                                      "the stimulus' epoch table.")
            (a, b), = rows
            tile = np.ascontiguousarray(stim.values[a:b].T, dtype=np.float32)
        else:
            raise NemsFormatError(rec.archive, stim.sidecar.member, "'stim' must be a "
                                  f"TiledSignal or a RasterizedSignal; got "
                                  f"{stim.sidecar.signal_type}.")
        if tile.ndim != 2 or tile.shape[0] != BANDS[stimuli] or not np.isfinite(tile).all():
            finite = "finite" if np.isfinite(tile).all() else "NaN or inf"
            raise NemsFormatError(rec.archive, stim.sidecar.member, f"the cochleagram of "
                                  f"{name!r} must be a finite ({BANDS[stimuli]}, T) array; got "
                                  f"shape {tile.shape}, {finite} values.")
        tiles[name] = tile
    by_name: dict[str, list[Any]] = {}
    for occ in occurrences:
        by_name.setdefault(occ.name, []).append(occ)
    responses: dict[str, dict[str, Any]] = {c: {} for c in resp.chans or ()}
    per_bin = resp.fs * NATIVE_MS / 1000.0  # resp samples per 10 ms bin
    quirks, off = dict(rec.quirks), 0
    for name, occs in by_name.items():
        n_bins = tiles[name].shape[1]
        counts[name] = len(occs)
        pre_ms[name] = occs[0].pre_samples * 1000.0 / resp.fs
        # the grid is the cochleagram's, from each occurrence's start (as deepSTRF); an
        # occurrence of another length is tolerated and reported
        length = int(round(n_bins * per_bin))
        off += sum(o.n_samples != length for o in occs)
        bounds = np.array([[o.start, o.start + length] for o in occs], dtype=np.int64)
        if isinstance(resp, PointProcess):
            for chan in responses:
                responses[chan][name] = occurrence_spike_times(resp.spike_times[chan], bounds,
                                                               resp.fs)
            continue
        try:
            block = resp.extract(bounds)  # (R, C, T)
        except ValueError as err:
            raise NemsFormatError(rec.archive, resp.sidecar.member, f"the {n_bins} bins of "
                                  f"{name!r} from its occurrences' starts are not all in the "
                                  f"stored raster ({err}).") from err
        for c, chan in enumerate(responses):
            responses[chan][name] = np.ascontiguousarray(block[:, c, :])
    if off:
        quirks["occurrence_length_differs_from_cochleagram"] = off
    site = rec.meta.get("siteid") or resp.sidecar.recording or rec.name
    return {"archive": rec.archive, "member": member, "site": str(site),
            "chans": list(resp.chans or ()), "tiles": tiles, "counts": counts, "pre_ms": pre_ms,
            "kind": "spikes" if isinstance(resp, PointProcess) else "raster",
            "responses": responses, "quirks": quirks}


def joined(old: Any, new: Any, owner: str, cell: str, name: str) -> Any:
    """A pair's repeats from a further session appended to those already found."""
    from deepstrf.datasets._responses import BinnedRows, SpikeTrains
    from deepstrf.errors import RawDataError

    if old is None:
        return new
    if isinstance(old, SpikeTrains) and isinstance(new, SpikeTrains):
        return old.merged(new)
    if isinstance(old, BinnedRows) and isinstance(new, BinnedRows) and \
            old.rows.shape[1] == new.rows.shape[1]:
        return BinnedRows(np.concatenate([old.rows, new.rows]), NATIVE_MS)
    raise RawDataError(f"{owner}: cell {cell} has responses to {name} in sessions of "
                       f"different kinds (spike times and a binned raster); they cannot be "
                       f"joined.")
