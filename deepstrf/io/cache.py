"""The processed cache: a dataset's tensors stored once per set of parameters.

An entry lives in ``processed/<key>/``, where ``key`` hashes everything that
changes the result: the dataset, its parameters, a fingerprint of the raw
files (sizes and modification times), the dataset's cache version and the
storage format version. An entry holds:

``manifest.json``
    readable record: parameters, sources, versions of deepstrf and of the
    libraries that computed it, creation time, build duration, sizes and
    sha256 of the data files;
``meta.json``
    stimulus and neuron metadata, modality attributes;
``stims.npy``
    every stimulus value, flat float32 (``stim_shapes.npy`` gives shapes);
``responses.npy``
    every response value, flat float32, one block per stimulus;
``index.npz``
    the integer arrays locating blocks and (stim, neuron) pairs.

The ``.npy`` files are opened memory-mapped (copy-on-write), so a warm load is
a file open, not a rebuild, and a dataset larger than memory can be iterated.

Writes are atomic: an entry is written to a temporary folder and renamed into
place only when complete, so a build killed midway leaves nothing that loads.
A lock file (``fcntl``/``msvcrt`` byte lock, released by the OS if the holder
dies) makes a second process building the same entry wait, then read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepstrf.datasets._storage import ResponseStore
from deepstrf.errors import CacheError, CacheMissError

__all__ = [
    "CACHE_MODES",
    "STORAGE_FORMAT_VERSION",
    "BuiltData",
    "cache_key",
    "cached_build",
    "list_entries",
    "load_entry",
    "manifest_problems",
    "raw_fingerprint",
    "verify_entry",
    "write_entry",
]

logger = logging.getLogger(__name__)

#: Bump when the on-disk layout of an entry changes.
STORAGE_FORMAT_VERSION = 1
#: ``use``: read a matching entry or build and write one; ``rebuild``: always
#: build and replace; ``readonly``: read or fail, never compute; ``off``: build
#: in memory, never read or write the cache.
CACHE_MODES = ("use", "rebuild", "readonly", "off")

_LIBRARIES = ("deepstrf", "numpy", "scipy", "torch", "librosa", "soundfile", "h5py", "joblib")
_LOCK_POLL_S = 0.2
_LOCK_LOG_EVERY_S = 30.0


@dataclass
class BuiltData:
    """What a dataset build produces and a cache entry stores."""

    stims: list[torch.Tensor]
    store: ResponseStore
    stim_meta: list[dict]
    nrn_meta: list[dict]
    attributes: dict[str, Any]
    sources: list[dict] | None = None
    #: data quirks the build tolerated, kind -> count (recorded in the manifest)
    quirks: dict[str, int] | None = None


def _canonical(obj: Any) -> Any:
    """A JSON-able, order-independent form of ``obj`` for hashing."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return repr(float(obj))
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "to_dict"):
        return _canonical(obj.to_dict())
    raise TypeError(f"cannot hash a cache parameter of type {type(obj).__name__}: {obj!r}")


def cache_key(payload: Mapping[str, Any]) -> str:
    """A short stable hash of everything that changes a dataset's processed result."""
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _listing(root: str, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """``(relative path, stat)`` of every non-hidden file under ``root``, sorted, depth first."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith(".part"):
            continue
        child = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=True):
            yield from _listing(entry.path, child)
        elif entry.is_file(follow_symlinks=True):
            yield child, entry.stat(follow_symlinks=True)


def raw_fingerprint(raw_dir: Path, subpaths: Sequence[str] = ()) -> dict[str, Any]:
    """Sizes and modification times of the raw files a dataset reads, hashed.

    Walks ``raw_dir / p`` for each of ``subpaths`` (the whole folder when
    empty), skipping hidden files (download and extraction markers) and
    partial downloads. Plain ``os.scandir`` keeps this to a few
    microseconds per file, since it runs at every warm load.
    """
    digest = hashlib.sha256()
    n_files = total = 0
    for sub in (subpaths or [""]):
        root = os.path.join(raw_dir, sub) if sub else str(raw_dir)
        if os.path.isfile(root):
            listing: Iterator[tuple[str, os.stat_result]] = iter([(sub, os.stat(root))])
        elif os.path.isdir(root):
            listing = _listing(root, sub)
        else:
            continue
        for rel, st in listing:
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n_files += 1
            total += st.st_size
    return {"n_files": n_files, "total_bytes": total, "listing_sha256": digest.hexdigest()}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "deepstrf":
                from deepstrf import __version__
                out[name] = __version__
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _to_json(obj: Any) -> Any:
    """Metadata values made JSON-able (numpy scalars and arrays to Python)."""
    if isinstance(obj, Mapping):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_flat(path: Path, tensors: Iterator[torch.Tensor], n_elements: int) -> str:
    """Write tensors one after another into a flat float32 ``.npy``; return its sha256."""
    flat = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_elements,))
    pos = 0
    for t in tensors:
        values = t.detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1)
        flat[pos:pos + values.size] = values
        pos += values.size
    if pos != n_elements:
        raise CacheError(f"internal error writing {path}: wrote {pos} values, expected "
                         f"{n_elements}.")
    flat.flush()
    del flat
    return _sha256_file(path)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_entry(entry_dir: Path, data: BuiltData, manifest: dict[str, Any]) -> Path:
    """Write ``data`` as a complete cache entry at ``entry_dir``, atomically.

    The entry is assembled in a temporary sibling folder and renamed into
    place; an existing entry at ``entry_dir`` is replaced.
    """
    entry_dir = Path(entry_dir)
    parent = entry_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{entry_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shapes = [list(x.shape) for x in data.stims]
        ndim = max((len(s) for s in shapes), default=1)
        shape_arr = np.full((len(shapes), ndim), -1, dtype=np.int64)
        for i, s in enumerate(shapes):
            shape_arr[i, :len(s)] = s
        np.save(tmp / "stim_shapes.npy", shape_arr)
        n_stim = sum(int(x.numel()) for x in data.stims)
        files = {"stims.npy": _write_flat(tmp / "stims.npy", iter(data.stims), n_stim)}
        flat = data.store.to_flat()
        files["responses.npy"] = _write_flat(tmp / "responses.npy", data.store.iter_block_data(),
                                             int(flat["n_elements"][0]))
        np.savez(tmp / "index.npz", **{k: v for k, v in flat.items() if k != "n_elements"})
        meta = {"stim_meta": _to_json(data.stim_meta), "nrn_meta": _to_json(data.nrn_meta),
                "attributes": _to_json(data.attributes), "n_neurons": data.store.n_neurons}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        for name in ("stim_shapes.npy", "index.npz", "meta.json"):
            files[name] = _sha256_file(tmp / name)
        manifest = dict(manifest)
        manifest["files"] = {name: {"bytes": (tmp / name).stat().st_size, "sha256": digest}
                             for name, digest in files.items()}
        manifest["storage_format_version"] = STORAGE_FORMAT_VERSION
        manifest["complete"] = True
        (tmp / "manifest.json").write_text(json.dumps(_to_json(manifest), indent=2),
                                           encoding="utf-8")
        old = None
        if entry_dir.exists():
            old = parent / f".old-{entry_dir.name}-{uuid.uuid4().hex[:8]}"
            os.replace(entry_dir, old)
        os.replace(tmp, entry_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry_dir


def manifest_problems(manifest: Any) -> list[str]:
    """What is wrong with a parsed manifest's schema (empty when it is usable).

    The one place the manifest's shape is checked: every reader of a manifest
    (loading, listing, verifying, the command line) goes through it, so a
    hand-edited or damaged manifest marks its entry invalid instead of
    crashing whoever reads it.
    """
    if not isinstance(manifest, dict):
        return [f"manifest.json holds a {type(manifest).__name__}, expected a JSON object"]
    problems = []
    if manifest.get("complete") is not True:
        problems.append("the entry is not marked complete")
    if manifest.get("storage_format_version") != STORAGE_FORMAT_VERSION:
        problems.append(f"storage_format_version is {manifest.get('storage_format_version')!r},"
                        f" expected {STORAGE_FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        problems.append(f"'files' is {files!r}, expected an object of file records")
    else:
        for name, info in files.items():
            if not (isinstance(info, dict) and isinstance(info.get("bytes"), int)
                    and isinstance(info.get("sha256"), str)):
                problems.append(f"files[{name!r}] is {info!r}, expected "
                                "{'bytes': int, 'sha256': str}")
    for name in ("parameters", "counts"):
        if name in manifest and not isinstance(manifest[name], dict):
            problems.append(f"{name!r} is {manifest[name]!r}, expected an object")
    for name in ("key", "created", "params_key"):
        if name in manifest and not isinstance(manifest[name], str):
            problems.append(f"{name!r} is {manifest[name]!r}, expected a string")
    return problems


def _parse_manifest(entry_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """``(manifest, problems)``: the manifest only when its schema is sane."""
    try:
        manifest = json.loads((Path(entry_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, [f"manifest.json unreadable: {err}"]
    problems = manifest_problems(manifest)
    return (None if problems else manifest), problems


def read_manifest(entry_dir: Path) -> dict[str, Any] | None:
    """The entry's manifest if the entry is complete and sane, else None."""
    manifest, _ = _parse_manifest(entry_dir)
    if manifest is None:
        return None
    for name, info in manifest["files"].items():
        path = Path(entry_dir) / name
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            return None
    return manifest


def load_entry(entry_dir: Path) -> tuple[BuiltData, dict[str, Any]]:
    """Open a complete entry (``.npy`` memory-mapped copy-on-write)."""
    entry_dir = Path(entry_dir)
    manifest = read_manifest(entry_dir)
    if manifest is None:
        raise CacheError(f"the cache entry {entry_dir} is incomplete or corrupt; delete it (or "
                         "construct the dataset with cache='rebuild').")
    try:
        meta = json.loads((entry_dir / "meta.json").read_text(encoding="utf-8"))
        shapes = np.load(entry_dir / "stim_shapes.npy")
        stim_flat = torch.from_numpy(np.load(entry_dir / "stims.npy", mmap_mode="c"))
        stims, pos = [], 0
        for row in shapes:
            shape = [int(v) for v in row if v >= 0]
            n = int(np.prod(shape))
            stims.append(stim_flat[pos:pos + n].view(*shape))
            pos += n
        index = np.load(entry_dir / "index.npz")
        resp_flat = torch.from_numpy(np.load(entry_dir / "responses.npy", mmap_mode="c"))
        store = ResponseStore.from_flat(int(meta["n_neurons"]), resp_flat, index["T"],
                                        index["offsets"], index["pair_stim_start"],
                                        index["pair_neuron"], index["pair_reps"])
    except (OSError, ValueError, KeyError) as err:
        raise CacheError(f"could not read the cache entry {entry_dir}: {err}. Delete it (or "
                         "construct the dataset with cache='rebuild').") from err
    data = BuiltData(stims=stims, store=store, stim_meta=meta["stim_meta"],
                     nrn_meta=meta["nrn_meta"], attributes=meta["attributes"])
    return data, manifest


def verify_entry(entry_dir: Path) -> list[str]:
    """Re-hash an entry's files; return a list of problems (empty when intact)."""
    entry_dir = Path(entry_dir)
    manifest, problems = _parse_manifest(entry_dir)
    if manifest is None:
        return problems
    for name, info in manifest["files"].items():
        path = entry_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != info["bytes"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, expected {info['bytes']}")
        elif _sha256_file(path) != info["sha256"]:
            problems.append(f"{name} does not match its recorded sha256")
    return problems


def list_entries(processed_dir: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Every entry folder under ``processed_dir`` with its manifest (None if unusable)."""
    processed_dir = Path(processed_dir)
    if not processed_dir.is_dir():
        return []
    return [(p, read_manifest(p)) for p in sorted(processed_dir.iterdir())
            if p.is_dir() and not p.name.startswith(".")]


@contextlib.contextmanager
def _lock(lock_path: Path, timeout_s: float | None, what: str) -> Iterator[None]:
    """An exclusive OS-level lock on ``lock_path`` (released if the holder dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = last_log = time.monotonic()
        while True:
            if _try_lock(fd):
                break
            now = time.monotonic()
            if timeout_s is not None and now - start > timeout_s:
                raise CacheError(f"timed out after {timeout_s:.0f} s waiting for another process "
                                 f"that is building {what} (lock {lock_path}).")
            if now - last_log > _LOCK_LOG_EVERY_S:
                logger.info("waiting for another process building %s", what)
                last_log = now
            time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def cached_build(processed_dir: Path, key: str, mode: str, build: Callable[[], BuiltData],
                 manifest: dict[str, Any], *, owner: str = "",
                 lock_timeout_s: float | None = None) -> tuple[BuiltData, dict[str, Any] | None, bool]:
    """Return the data for ``key``: read from the cache or built (and written).

    Parameters
    ----------
    processed_dir : Path
        The dataset's ``processed/`` folder.
    key : str
        From :func:`cache_key`.
    mode : {'use', 'rebuild', 'readonly', 'off'}
        See :data:`CACHE_MODES`.
    build : callable
        Produces the data when there is no usable entry.
    manifest : dict
        What to record (parameters, sources...); versions, times and file
        checksums are added here.
    owner : str
        The dataset's class name, for messages.

    Returns
    -------
    (data, manifest, from_cache)
    """
    if mode not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(map(repr, CACHE_MODES))}; got {mode!r}.")
    entry = Path(processed_dir) / key
    if mode == "off":
        return build(), None, False
    if mode in ("use", "readonly") and read_manifest(entry) is not None:
        data, found = load_entry(entry)
        return data, found, True
    if mode == "readonly":
        raise CacheMissError(
            f"{owner + ': ' if owner else ''}no processed cache entry {key} under "
            f"{processed_dir} and cache='readonly' forbids computing it. Construct the dataset "
            "once with cache='use' (the default) to build it, or check the parameters match "
            "the ones used when the cache was built (`deepstrf cache ls` lists the entries).")
    with _lock(Path(processed_dir) / f".{key}.lock", lock_timeout_s, f"cache entry {key}"):
        if mode == "use" and read_manifest(entry) is not None:  # another process built it
            data, found = load_entry(entry)
            return data, found, True
        start = time.perf_counter()
        data = build()
        record = dict(manifest)
        record.update({
            "key": key,
            "created": _now(),
            "build_seconds": round(time.perf_counter() - start, 3),
            "versions": _versions(),
            "counts": {"stims": len(data.stims), "neurons": data.store.n_neurons,
                       "pairs": data.store.n_pairs, "response_bytes": data.store.nbytes},
        })
        if data.sources is not None:
            record["sources"] = data.sources
        if data.quirks is not None:
            record["quirks"] = dict(data.quirks)
        try:
            write_entry(entry, data, record)
        except OSError as err:
            logger.warning("could not write the processed cache entry %s (%s); the dataset "
                           "is built in memory only", entry, err)
            return data, None, False
        return data, read_manifest(entry), False
