"""Sharded builds: a processed dataset made of per-unit entries, composed at load time.

A large release is recorded in units (sessions, sites, subjects, birds) that
can be built independently. Each unit is a :class:`Shard`: its own
parameters (what changes its result) and the fingerprint of the raw files it
reads. :func:`build_shards` keys every shard by those alone
(:func:`shard_key`), reads the shards that exist and builds the others, in
parallel through :func:`~deepstrf.preprocessing.parallel_map`, each written
as an ordinary cache entry (atomic, locked, with a manifest marked
``"kind": "shard"``) by the worker that built it, the moment it is done. So:

* a selection (``sessions=[a, b]``) builds two shards, and a later build of
  the whole release reuses them and builds only the rest;
* a build that is killed keeps every shard finished before the kill, and the
  next build resumes at the first missing one;
* ``deepstrf cache ls`` lists the shards beside the composed entries.

:func:`join_shards` puts a stimulus part (the rendered stimuli and their
metadata) and response parts (the neurons of each unit and their blocks,
stimuli named in their ``stim_meta``) together into one dataset build:
neurons in part order, stimuli in the stimulus part's order, those no
selected neuron heard left out. It copies nothing: each block of the result
reads the rows of the shards' memory-mapped blocks when used. The dataset's
processed entry is then only the record of that composition (which shard
entries, which stimuli; :func:`~deepstrf.io.cache.write_composition`), and a
warm open opens the shard entries and joins them again, a few file opens and
index arithmetic. :func:`compose_shards` makes the same result as an
independent copy (for a build that is not cached).

With ``cache="off"`` nothing is read or written; ``"readonly"`` fails when a
shard is missing; ``"rebuild"`` builds every shard again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepstrf.errors import CacheError, CacheMissError
from deepstrf.io.cache import (
    STORAGE_FORMAT_VERSION,
    BuiltData,
    cache_key,
    cached_build,
    load_entry,
    read_manifest,
)

__all__ = ["Shard", "ShardReport", "build_shards", "compose_shards", "join_shards", "shard_key"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """One independently built unit of a dataset.

    Attributes
    ----------
    name : str
        Readable name, e.g. ``"session 180413"`` (shown by ``cache ls``).
    params : dict
        JSON-able: everything that changes this shard's result.
    fingerprint : dict
        Of the raw files the shard reads (e.g. :func:`~deepstrf.io.cache.raw_fingerprint`
        of its folder, or a zip's CRCs of its members).
    task : object or callable
        What ``build`` receives; a zero-argument callable is called (in
        this process) only when the shard has to be built, so reading what
        a task needs is skipped when the shard exists.
    """

    name: str
    params: Mapping[str, Any]
    fingerprint: Mapping[str, Any]
    task: Any


@dataclass
class ShardReport:
    """Which shards a build reused and which it built (names, in order)."""

    reused: list[str]
    built: list[str]
    keys: list[str]


def shard_key(owner: str, cache_version: int, shard: Shard) -> str:
    """The cache key of a shard: its dataset, versions, name, parameters and raw fingerprint."""
    return cache_key({"dataset": owner, "cache_version": cache_version,
                      "storage_format": STORAGE_FORMAT_VERSION, "kind": "shard",
                      "shard": shard.name, "params": dict(shard.params),
                      "raw": dict(shard.fingerprint)})


def _record(owner: str, cache_version: int, shard: Shard) -> dict[str, Any]:
    return {"dataset": owner, "kind": "shard", "shard": shard.name,
            "parameters": dict(shard.params), "params_key": cache_key(dict(shard.params)),
            "cache_version": cache_version, "raw_fingerprint": dict(shard.fingerprint)}


def _task_of(shard: Shard) -> Any:
    return shard.task() if callable(shard.task) else shard.task


def _shard_job(job: tuple) -> tuple[str, BuiltData | None]:
    """Build one shard in a worker and write it; the data only if it could not be written."""
    processed, key, mode, build, task, record, owner = job
    if mode == "off":
        return key, build(task, 1)
    data, manifest, _ = cached_build(Path(processed), key, mode, lambda: build(task, 1), record,
                                     owner=owner)
    return key, (data if manifest is None else None)


def build_shards(processed_dir: Path, shards: Sequence[Shard],
                 build: Callable[[Any, int | None], BuiltData], *, owner: str,
                 cache_version: int, mode: str = "use", n_jobs: int | None = 1,
                 progress: bool | None = None, desc: str = "shards"
                 ) -> tuple[list[BuiltData], ShardReport]:
    """Every shard's data, read from its entry or built (and written) now.

    Parameters
    ----------
    processed_dir : Path
        The dataset's ``processed/`` folder; shards are entries there.
    shards : sequence of Shard
    build : callable
        ``build(task, n_jobs) -> BuiltData``, a module-level function (it
        runs in worker processes). Several missing shards are built in
        parallel, one per task with ``n_jobs=1``; a single missing shard is
        built here with the caller's ``n_jobs`` (so it may parallelise
        inside, e.g. over stimuli).
    owner : str
        The dataset's class name (part of the keys, and of messages).
    cache_version : int
        The dataset's cache version (part of the keys).
    mode : {'use', 'rebuild', 'readonly', 'off'}
        As the dataset's ``cache`` argument.
    n_jobs, progress, desc
        As :func:`~deepstrf.preprocessing.parallel_map`.

    Returns
    -------
    (list of BuiltData, ShardReport)
        In the order of ``shards``; those read from entries are memory-mapped.
    """
    from deepstrf.preprocessing.parallel import parallel_map

    processed_dir = Path(processed_dir)
    keys = [shard_key(owner, cache_version, s) for s in shards]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{owner}: two shards have the same name, parameters and raw files; "
                         "give each shard its own name.")
    if mode == "off":
        todo = list(range(len(shards)))
    else:
        todo = [i for i, k in enumerate(keys)
                if mode == "rebuild" or read_manifest(processed_dir / k) is None]
    if mode == "readonly" and todo:
        raise CacheMissError(
            f"{owner}: {len(todo)} of {len(shards)} shards are not in the processed cache "
            f"{processed_dir} (first: {shards[todo[0]].name}) and cache='readonly' forbids "
            "building them. Construct the dataset once with cache='use'.")
    built: dict[int, BuiltData | None] = {}
    if todo:
        logger.info("%s: building %d of %d shards (%d reused)", owner, len(todo), len(shards),
                    len(shards) - len(todo))
        jobs = [(str(processed_dir), keys[i], mode, build, _task_of(shards[i]),
                 _record(owner, cache_version, shards[i]), owner) for i in todo]
        if len(jobs) == 1:  # one shard: its own build may use the workers
            i = todo[0]
            task, record = jobs[0][4], jobs[0][5]
            if mode == "off":
                results = [(keys[i], build(task, n_jobs))]
            else:
                data, manifest, _ = cached_build(processed_dir, keys[i], mode,
                                                 lambda: build(task, n_jobs), record,
                                                 owner=owner)
                results = [(keys[i], data if manifest is None else None)]
        else:
            results = parallel_map(_shard_job, jobs, n_jobs=n_jobs, progress=progress,
                                   desc=f"{owner}: {desc}")
        built = {i: data for i, (_, data) in zip(todo, results)}
    out = []
    for i, key in enumerate(keys):
        data = built.get(i)
        if data is None:
            data, manifest = load_entry(processed_dir / key)
            data.quirks = dict(manifest.get("quirks") or {})
        out.append(data)
    report = ShardReport(reused=[s.name for i, s in enumerate(shards) if i not in built],
                         built=[shards[i].name for i in todo], keys=keys)
    return out, report


def _plan(stim_part: BuiltData, parts: Sequence[BuiltData],
          keep: Callable[[Mapping[str, Any]], bool] | None, owner: str):
    """Which stimuli and neurons a composition keeps, shared by both forms.

    Returns ``(chosen, pieces, n_neurons, nrn_meta)``: the chosen stimulus
    indices of the stimulus part, per chosen stimulus the
    ``(part, s_local, new neuron indices)`` of each part that has a block for
    it, the number of neurons kept and their metadata.
    """
    names = [m["name"] for m in stim_part.stim_meta]
    index = {n: s for s, n in enumerate(names)}
    if len(index) != len(names):
        raise CacheError(f"{owner}: the stimulus part names a stimulus twice.")
    lengths = [int(x.shape[-1]) if x.dim() == 3 else None for x in stim_part.stims]
    per_stim: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in names]
    nrn_meta: list[dict] = []
    offset = 0
    for p, part in enumerate(parts):
        store = part.store
        blocks = store._blocks
        for s_local, meta in enumerate(part.stim_meta):
            s = index.get(meta["name"])
            if s is None:
                raise CacheError(f"{owner}: shard {p} has responses to {meta['name']!r}, which "
                                 "is not among the stimuli.")
            neurons = blocks[s_local].neurons
            if not len(neurons):
                continue
            T = blocks[s_local].shape[1]
            want = stim_part.stim_meta[s].get("n_bins", lengths[s])
            if want is not None and T != int(want):
                raise CacheError(f"{owner}: shard {p} has {T} bins for {meta['name']!r}; the "
                                 f"stimulus has {want}.")
            per_stim[s].append((p, s_local, np.asarray(neurons) + offset))
        nrn_meta.extend(dict(m) for m in part.nrn_meta)
        offset += store.n_neurons
    chosen = [s for s in range(len(names))
              if per_stim[s] and (keep is None or keep(stim_part.stim_meta[s]))]
    heard = np.zeros(offset, dtype=bool)
    for s in chosen:
        for _, _, neurons in per_stim[s]:
            heard[neurons] = True
    new_index = np.cumsum(heard) - 1
    if not heard.all():
        logger.info("%s: %d neuron(s) have no response to any selected stimulus and are left "
                    "out", owner, int((~heard).sum()))
    pieces = [[(p, s_local, new_index[n]) for p, s_local, n in per_stim[s]] for s in chosen]
    return chosen, pieces, int(heard.sum()), [m for m, h in zip(nrn_meta, heard) if h]


def _summed_quirks(stim_part: BuiltData, parts: Sequence[BuiltData]) -> dict[str, int]:
    quirks: dict[str, int] = dict(stim_part.quirks or {})
    for part in parts:
        for kind, count in (part.quirks or {}).items():
            quirks[kind] = quirks.get(kind, 0) + int(count)
    return quirks


def join_shards(stim_part: BuiltData, parts: Sequence[BuiltData], *,
                keep: Callable[[Mapping[str, Any]], bool] | None = None,
                owner: str = "") -> BuiltData:
    """The composition of :func:`compose_shards`, made at load time without copying.

    The same stimuli, neurons, metadata and values as :func:`compose_shards`
    (equal :func:`~deepstrf.io.cache.data_digest`), but each response block
    of the result reads the rows of the parts' blocks, memory-mapped from
    the shard entries, when it is used
    (:meth:`~deepstrf.datasets._storage.ResponseStore.join`): composing costs
    index arithmetic, and nothing is written. The parts must stay in place
    (they are the shards' cache entries).
    """
    from deepstrf.datasets._storage import ResponseStore

    chosen, pieces, n_neurons, nrn_meta = _plan(stim_part, parts, keep, owner)
    store = ResponseStore.join(n_neurons, [[(parts[p].store, s_local, n)
                                            for p, s_local, n in group] for group in pieces])
    return BuiltData(stims=[stim_part.stims[s] for s in chosen], store=store,
                     stim_meta=[dict(stim_part.stim_meta[s]) for s in chosen],
                     nrn_meta=nrn_meta, attributes=dict(stim_part.attributes),
                     quirks=_summed_quirks(stim_part, parts))


def compose_shards(stim_part: BuiltData, parts: Sequence[BuiltData], *,
                   keep: Callable[[Mapping[str, Any]], bool] | None = None,
                   owner: str = "", scratch_dir: Path | None = None) -> BuiltData:
    """One build from a stimulus part and response parts, copied (module docstring).

    Datasets compose at load time with :func:`join_shards`, which gives the
    same result without copying; this form makes an independent copy (for
    a build that is not cached, or a store that must outlive the shards).

    Parameters
    ----------
    stim_part : BuiltData
        The stimuli (tensors and metadata; each ``stim_meta`` has a unique
        ``name``); its store is not used.
    parts : sequence of BuiltData
        One per unit: its neurons (``nrn_meta``), and per stimulus it heard a
        block, the stimulus named by ``stim_meta[s]["name"]``.
    keep : callable, optional
        ``keep(stim_meta) -> bool`` picks the stimuli (a subset).
    owner : str
        For messages.
    scratch_dir : Path, optional
        When the responses exceed a quarter of the machine's memory, compose
        them into a memory-mapped scratch file there (its name is removed at
        once; the mapping keeps the data), holding one block in memory at a
        time; otherwise, and when None, in memory.

    Raises
    ------
    CacheError
        When a part names a stimulus the stimulus part lacks, or its block
        has another length than the stimulus.
    """
    from deepstrf.datasets._storage import ResponseStore

    chosen, plan, n_neurons, nrn_meta = _plan(stim_part, parts, keep, owner)
    # (neurons, reps, (store, block)): a block's values are read only when copied, so
    # memory-mapped parts hold one mapping at a time, not one per block
    pieces = [[(n, parts[p].store._blocks[s_local].reps, (parts[p].store, s_local))
               for p, s_local, n in group] for group in plan]
    T = np.array([p[0][2][0].T(p[0][2][1]) for p in pieces], dtype=np.int64)
    rows = np.array([sum(int(r.sum()) for _, r, _ in p) for p in pieces], dtype=np.int64)
    sizes = rows * T
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    counts = np.array([sum(len(n) for n, _, _ in p) for p in pieces], dtype=np.int64)
    pair_stim_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    pair_neuron = np.concatenate([n for p in pieces for n, _, _ in p] or
                                 [np.zeros(0, np.int64)]).astype(np.int64)
    pair_reps = np.concatenate([r for p in pieces for _, r, _ in p] or
                               [np.zeros(0, np.int64)]).astype(np.int64)
    total = int(sizes.sum())
    scratch = None
    if scratch_dir is not None and total and total * 4 > _in_memory_limit():
        # on disk, one block in memory at a time: a composition larger than memory works
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
        scratch = Path(scratch_dir) / f".tmp-compose-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
        flat_np = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32,
                                            shape=(total,))
    else:
        flat_np = np.empty(total, dtype=np.float32)
    try:
        for p, start in zip(pieces, offsets):
            pos = int(start)
            for _, _, (part_store, s_local) in p:
                x = part_store.block(s_local)[2]
                values = torch.as_tensor(x).to(torch.float32).contiguous().numpy().reshape(-1)
                del x
                flat_np[pos:pos + values.size] = values
                pos += values.size
        if scratch is not None:
            flat_np.flush()
            del flat_np
            flat_np = np.load(scratch, mmap_mode="c")
    finally:
        if scratch is not None:
            with contextlib.suppress(OSError):  # POSIX: the mapping outlives the name
                scratch.unlink()
    store = ResponseStore.from_flat(n_neurons, torch.from_numpy(flat_np), T, offsets,
                                    pair_stim_start, pair_neuron, pair_reps)
    return BuiltData(stims=[stim_part.stims[s] for s in chosen], store=store,
                     stim_meta=[dict(stim_part.stim_meta[s]) for s in chosen],
                     nrn_meta=nrn_meta, attributes=dict(stim_part.attributes),
                     quirks=_summed_quirks(stim_part, parts))


def _in_memory_limit() -> int:
    """Bytes of responses composed in memory: a quarter of the physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):  # not POSIX: always on disk
        return 0
