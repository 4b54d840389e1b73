"""The processed cache: a dataset's tensors stored once per set of parameters.

An entry lives in ``processed/<key>/``, where ``key`` hashes everything that
changes the result: the dataset, its parameters, a fingerprint of the raw
files (small ones by content, large ones by size and modification time), the
dataset's cache version and the storage format version. An entry holds:

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

The manifest also holds a digest of the built arrays themselves
(:func:`data_digest`), independent of how the files are laid out, so two
builds can be compared (:func:`compare_entries`, ``deepstrf cache diff``).

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
    "RAW_CONTENT_LIMIT_BYTES",
    "STORAGE_FORMAT_VERSION",
    "DIGEST_VERSION",
    "BuiltData",
    "EntryComparison",
    "cache_key",
    "cached_build",
    "composition_digest",
    "compare_entries",
    "data_digest",
    "entry_digest",
    "list_entries",
    "list_leftovers",
    "load_entry",
    "manifest_problems",
    "raw_fingerprint",
    "remove_entry",
    "remove_leftovers",
    "verify_entry",
    "write_composition",
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
#: Bump when what :func:`data_digest` hashes, or how, changes.
DIGEST_VERSION = 1
#: The parts of a build :func:`data_digest` hashes separately, in this order.
DIGEST_PARTS = ("stims", "responses", "stim_meta", "nrn_meta", "attributes")
#: Raw files are fingerprinted by content, smallest first, up to this many bytes in
#: total per dataset; the rest by size and modification time (:func:`raw_fingerprint`).
RAW_CONTENT_LIMIT_BYTES = 64 * 2**20
_READ_CHUNK = 2**20
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
    #: further facts for the manifest (e.g. the shards a composed build was made of)
    manifest_extra: dict[str, Any] | None = None
    #: set when the data is a load-time composition of shard entries in the same
    #: ``processed/`` folder (:func:`~deepstrf.io.shards.join_shards`):
    #: ``{"stimuli": key, "parts": [keys], "stim_names": [names kept]}``. The
    #: entry is then written as that record alone (:func:`write_composition`),
    #: never as a copy of the values.
    composition: dict[str, Any] | None = None


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


def _listing(root: str, rel: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """``(relative path, path, stat)`` of each non-hidden file under ``root``, sorted."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith(".part"):
            continue
        child = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=True):
            yield from _listing(entry.path, child)
        elif entry.is_file(follow_symlinks=True):
            yield child, entry.path, entry.stat(follow_symlinks=True)


def _hash_content(digest: Any, path: str, expected: int) -> int | None:
    """Feed the bytes of ``path`` to ``digest``; the number read, or None if it cannot be read."""
    n = 0
    try:
        with open(path, "rb", buffering=0) as f:
            if expected <= _READ_CHUNK:  # most raw files: one read, no loop
                chunk = f.read(expected + 1)
                digest.update(chunk)
                n = len(chunk)
                if n <= expected:
                    return n
            while chunk := f.read(_READ_CHUNK):
                digest.update(chunk)
                n += len(chunk)
    except OSError as err:
        logger.warning("cannot read the raw file %s to fingerprint its content (%s); using its "
                       "size and modification time instead", path, err)
        return None
    return n


def raw_fingerprint(raw_dir: Path, subpaths: Sequence[str] = (), *,
                    content_limit_bytes: int = RAW_CONTENT_LIMIT_BYTES) -> dict[str, Any]:
    """A hash of the raw files a dataset reads: small ones by content, large ones by size and time.

    Walks ``raw_dir / p`` for each of ``subpaths`` (the whole folder when
    empty), skipping hidden files (download and extraction markers) and
    partial downloads. The files are taken smallest first, and those that
    fit together within ``content_limit_bytes`` (64 MiB by default: every
    file of most releases, and the text files of the larger ones) are hashed
    by their relative path, size and content, so a file edited in place is
    seen even if its size and modification time were kept, and copying the
    files (new modification times) keeps the key. The others, too large to
    read at every construction, count by relative path, size and
    modification time. A file that cannot be read counts by size and time
    (with a logged warning).

    Returns
    -------
    dict
        ``n_files``, ``total_bytes``, ``content_files`` and ``content_bytes``
        (how many files, and bytes, were hashed by content) and
        ``listing_sha256``, the hash itself.
    """
    files: list[tuple[str, str, os.stat_result]] = []
    for sub in (subpaths or [""]):
        root = os.path.join(raw_dir, sub) if sub else str(raw_dir)
        if os.path.isfile(root):
            files.append((sub, root, os.stat(root)))
        elif os.path.isdir(root):
            files.extend(_listing(root, sub))
    by_content: set[str] = set()
    budget = content_limit_bytes
    for rel, _, st in sorted(files, key=lambda f: (f[2].st_size, f[0])):
        if st.st_size > budget:
            break  # the rest are as large or larger
        by_content.add(rel)
        budget -= st.st_size
    digest = hashlib.sha256(f"raw-fingerprint-v2\0{content_limit_bytes}\n".encode())
    content_bytes = n_content = 0
    for rel, full, st in files:  # in listing order, so the hash does not depend on the sizes' ties
        if rel in by_content:
            digest.update(f"{rel}\0{st.st_size}\0content\0".encode())
            read = _hash_content(digest, full, st.st_size)
            if read is not None:
                digest.update(b"\0%d\n" % read)
                n_content += 1
                content_bytes += read
                continue
            digest.update(b"\0unreadable\n")
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"n_files": len(files), "total_bytes": sum(st.st_size for _, _, st in files),
            "content_files": n_content, "content_bytes": content_bytes,
            "listing_sha256": digest.hexdigest()}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        if name == "deepstrf":
            # our own version, not looked up by distribution name: the index's `deepstrf`
            # distribution is the published deepSTRF, which may be installed beside us
            from deepstrf import __version__
            out[name] = __version__
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
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
    """Write tensors one after another into a flat float32 ``.npy``; return its sha256.

    Written through the file, not a memory map: a mapped file's written pages
    count in the process's resident memory until it is unmapped, which put a
    second copy of a NAT4-sized build (~470 MB) on the peak.
    """
    pos = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.dtype("<f4").str,
                                                 "fortran_order": False,
                                                 "shape": (n_elements,)})
        for t in tensors:
            values = t.detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1)
            f.write(np.ascontiguousarray(values, dtype="<f4").data)
            pos += values.size
    if pos != n_elements:
        raise CacheError(f"internal error writing {path}: wrote {pos} values, expected "
                         f"{n_elements}.")
    return _sha256_file(path)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- digests
def _canonical_f32(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """Values as little-endian float32, every NaN the same quiet NaN (its payload is noise)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().to("cpu", torch.float32).contiguous().numpy()
    values = np.ascontiguousarray(t, dtype="<f4").reshape(-1)
    nan = np.isnan(values)
    if nan.any():
        values = values.copy()
        values[nan] = np.float32(np.nan)
    return values


def _i64(values: Any) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(_to_json(obj), sort_keys=True, separators=(",", ":")).encode()


def data_digest(data: BuiltData) -> dict[str, Any]:
    """SHA-256 digests of a build's arrays and metadata, independent of the file layout.

    What is hashed is the content, never the files: each stimulus's shape and
    values, each response block's neuron indices, repeat counts, length and
    values, and the metadata as sorted-key JSON. Values are hashed as
    little-endian float32, with every NaN mapped to one quiet NaN, so two
    builds have equal digests exactly when their tensors are equal element for
    element (NaN equal to NaN) and their metadata are equal, whatever the
    ``.npy`` headers, zip timestamps or key order of ``meta.json``.

    Returns
    -------
    dict
        ``version`` (:data:`DIGEST_VERSION`), one hex digest per part of
        :data:`DIGEST_PARTS`, and ``all``, a digest of those.
    """
    stims = hashlib.sha256(_i64([len(data.stims)]))
    for x in data.stims:
        stims.update(_i64([x.dim(), *x.shape]))
        stims.update(_canonical_f32(x).tobytes())
    store = data.store
    responses = hashlib.sha256(_i64([store.n_neurons, store.n_stims]))
    for s in range(store.n_stims):
        neurons, reps, rows = store.block(s)
        responses.update(_i64([store.T(s), len(neurons)]))
        responses.update(_i64(neurons))
        responses.update(_i64(reps))
        responses.update(_canonical_f32(rows).tobytes())
    out: dict[str, Any] = {"version": DIGEST_VERSION, "stims": stims.hexdigest(),
                           "responses": responses.hexdigest()}
    for name in ("stim_meta", "nrn_meta", "attributes"):
        out[name] = hashlib.sha256(_json_bytes(getattr(data, name))).hexdigest()
    whole = hashlib.sha256(f"deepstrf-digest-v{DIGEST_VERSION}\n".encode())
    for name in DIGEST_PARTS:
        whole.update(f"{name}={out[name]}\n".encode())
    out["all"] = whole.hexdigest()
    return out


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
        manifest["digest"] = data_digest(data)
        _commit_entry(tmp, entry_dir, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry_dir


COMPOSITION_FILE = "composition.json"


def _composition_problems(composition: Any) -> list[str]:
    if not isinstance(composition, dict):
        return [f"{COMPOSITION_FILE} holds a {type(composition).__name__}, expected an object"]
    problems = []
    if not isinstance(composition.get("stimuli"), str):
        problems.append(f"'stimuli' is {composition.get('stimuli')!r}, expected a shard key")
    parts = composition.get("parts")
    if not (isinstance(parts, list) and all(isinstance(k, str) for k in parts)):
        problems.append(f"'parts' is {parts!r}, expected a list of shard keys")
    names = composition.get("stim_names")
    if not isinstance(names, list):
        problems.append(f"'stim_names' is {names!r}, expected a list of stimulus names")
    return problems


COMPOSED_DIGEST_VERSION = "composed-1"


def composition_digest(composition: Mapping[str, Any],
                       shard_digests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A digest of a composed entry made from its shards' digests, without reading values.

    Each part hashes the selection (the stimulus names kept, in order) and
    that part's digest of every shard in order, so two compositions have
    equal digests when they join equal shards the same way. Its ``version``
    is :data:`COMPOSED_DIGEST_VERSION`, not :data:`DIGEST_VERSION`: it is not
    comparable with the content digest of an entry stored whole, and
    :func:`entry_digest` computes the content digest when asked.
    """
    out: dict[str, Any] = {"version": COMPOSED_DIGEST_VERSION}
    selection = _json_bytes(list(composition["stim_names"]))
    for name in DIGEST_PARTS:
        h = hashlib.sha256(f"deepstrf-composed-{name}\n".encode() + selection + b"\n")
        for d in shard_digests:
            h.update(f"{d.get(name)}\n".encode())
        out[name] = h.hexdigest()
    whole = hashlib.sha256(f"deepstrf-digest-{COMPOSED_DIGEST_VERSION}\n".encode())
    for name in DIGEST_PARTS:
        whole.update(f"{name}={out[name]}\n".encode())
    out["all"] = whole.hexdigest()
    return out


def write_composition(entry_dir: Path, composition: Mapping[str, Any],
                      manifest: dict[str, Any]) -> Path:
    """Write a composed entry: the record of which shard entries it joins, atomically.

    No value is copied: :func:`load_entry` opens the shard entries named in
    ``composition`` (siblings of ``entry_dir``) and joins them
    (:func:`~deepstrf.io.shards.join_shards`). The manifest records each
    shard's digest (the provenance of every number) instead of a digest of
    the joined values, which would read them all.
    """
    problems = _composition_problems(composition)
    if problems:
        raise ValueError("bad composition record: " + "; ".join(problems))
    entry_dir = Path(entry_dir)
    parent = entry_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{entry_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shard_digests, found_digests = {}, []
        for key in _shard_keys(composition):
            found = read_manifest(parent / key)
            if found is None:
                raise CacheError(f"the shard entry {parent / key} a composition names is "
                                 "missing or damaged.")
            found_digests.append(found.get("digest") or {})
            shard_digests[key] = found_digests[-1].get("all")
        (tmp / COMPOSITION_FILE).write_text(json.dumps(_to_json(dict(composition))),
                                            encoding="utf-8")
        manifest = dict(manifest)
        manifest["kind"] = "composed"
        manifest["files"] = {COMPOSITION_FILE: {
            "bytes": (tmp / COMPOSITION_FILE).stat().st_size,
            "sha256": _sha256_file(tmp / COMPOSITION_FILE)}}
        manifest["shard_digests"] = shard_digests
        if all(isinstance(d.get("all"), str) for d in found_digests):
            manifest["digest"] = composition_digest(composition, found_digests)
        _commit_entry(tmp, entry_dir, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry_dir


def _read_composition(entry_dir: Path) -> dict[str, Any] | None:
    try:
        composition = json.loads((Path(entry_dir) / COMPOSITION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return None if _composition_problems(composition) else composition


def _shard_keys(composition: Mapping[str, Any]) -> list[str]:
    return [composition["stimuli"], *composition["parts"]]


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
    if "digest" in manifest:
        digest = manifest["digest"]
        if not (isinstance(digest, dict) and all(isinstance(digest.get(k), str)
                                                 for k in (*DIGEST_PARTS, "all"))):
            problems.append(f"'digest' is {digest!r}, expected an object with a hex string "
                            f"for each of {', '.join(DIGEST_PARTS)}, all")
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
    if manifest.get("kind") == "composed":
        # usable only while every shard it joins is: a damaged shard makes the
        # dataset build again, which rebuilds that shard alone
        composition = _read_composition(entry_dir)
        if composition is None or any(read_manifest(Path(entry_dir).parent / k) is None
                                      for k in _shard_keys(composition)):
            return None
    return manifest


def _load_composed(entry_dir: Path, manifest: dict[str, Any]) -> BuiltData:
    """Open the shard entries a composed entry names and join them (no copy)."""
    from deepstrf.io.shards import join_shards

    composition = _read_composition(entry_dir)
    if composition is None:
        raise CacheError(f"the composed cache entry {entry_dir} has an unreadable "
                         f"{COMPOSITION_FILE}; delete it (or construct the dataset with "
                         "cache='rebuild').")
    stim_part, _ = load_entry(entry_dir.parent / composition["stimuli"])
    parts = []
    for key in composition["parts"]:
        part, found = load_entry(entry_dir.parent / key)
        part.quirks = dict(found.get("quirks") or {})
        parts.append(part)
    wanted = set(composition["stim_names"])
    data = join_shards(stim_part, parts, keep=lambda m: m["name"] in wanted,
                       owner=str(manifest.get("dataset", "")))
    counts = manifest.get("counts") or {}
    found_counts = {"stims": len(data.stims), "neurons": data.store.n_neurons,
                    "pairs": data.store.n_pairs}
    off = {k: (counts[k], v) for k, v in found_counts.items() if k in counts and counts[k] != v}
    if off or [m["name"] for m in data.stim_meta] != list(composition["stim_names"]):
        raise CacheError(f"the composed cache entry {entry_dir} does not match its shards "
                         f"(recorded vs found: {off or 'stimulus names differ'}); delete it (or "
                         "construct the dataset with cache='rebuild').")
    data.composition = dict(composition)
    return data


def load_entry(entry_dir: Path) -> tuple[BuiltData, dict[str, Any]]:
    """Open a complete entry (``.npy`` memory-mapped copy-on-write).

    A composed entry (:func:`write_composition`) opens the shard entries it
    names, each memory-mapped, and joins them without copying.
    """
    entry_dir = Path(entry_dir)
    manifest = read_manifest(entry_dir)
    if manifest is None:
        raise CacheError(f"the cache entry {entry_dir} is incomplete or corrupt; delete it (or "
                         "construct the dataset with cache='rebuild').")
    if manifest.get("kind") == "composed":
        return _load_composed(entry_dir, manifest), manifest
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
        # each block maps its own region when used: a file open, whatever its size
        store = ResponseStore.from_npy(int(meta["n_neurons"]), entry_dir / "responses.npy",
                                       index["T"], index["offsets"], index["pair_stim_start"],
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
    if manifest.get("kind") == "composed" and not problems:
        composition = _read_composition(entry_dir)
        if composition is None:
            return [f"{COMPOSITION_FILE} is not a valid composition record"]
        for key in _shard_keys(composition):
            shard = entry_dir.parent / key
            if not shard.is_dir():
                problems.append(f"shard {key} is missing")
                continue
            problems.extend(f"shard {key}: {p}" for p in verify_entry(shard))
            found = read_manifest(shard)
            recorded = (manifest.get("shard_digests") or {}).get(key)
            if found is not None and recorded is not None and \
                    (found.get("digest") or {}).get("all") != recorded:
                problems.append(f"shard {key} was rebuilt with other values since the "
                                "composition was recorded")
    return problems


def list_entries(processed_dir: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Every entry folder under ``processed_dir`` with its manifest (None if unusable)."""
    processed_dir = Path(processed_dir)
    if not processed_dir.is_dir():
        return []
    return [(p, read_manifest(p)) for p in sorted(processed_dir.iterdir())
            if p.is_dir() and not p.name.startswith(".")]


# ---------------------------------------------------------------------------- comparing builds
def entry_digest(entry_dir: Path) -> dict[str, Any]:
    """The digest of an entry's arrays: the manifest's, or computed from the files.

    Entries written before digests were recorded, and composed entries
    (whose manifest holds a :func:`composition_digest`), get theirs computed
    here (the same function, on the loaded arrays). Raises :class:`CacheError`
    when the entry cannot be read.
    """
    manifest = read_manifest(Path(entry_dir))
    if manifest is not None and manifest.get("digest", {}).get("version") == DIGEST_VERSION:
        return manifest["digest"]
    data, _ = load_entry(entry_dir)
    return data_digest(data)


@dataclass
class EntryComparison:
    """How two cache entries compare (from :func:`compare_entries`).

    Attributes
    ----------
    equal : bool
        True when the arrays and metadata are identical (equal digests).
    differences : list of str
        One line per part that differs, naming it and, where both entries can
        be read, how much differs and where first.
    context : list of str
        Recorded facts that differ between the builds (parameters, raw files,
        library versions, cache versions), to explain a difference.
    """

    equal: bool
    differences: list[str]
    context: list[str]

    def lines(self) -> list[str]:
        """The comparison as text, verdict first."""
        head = ["equal: the arrays and metadata are identical"] if self.equal else \
            [f"differ: {', '.join(d.split(':')[0] for d in self.differences)}"]
        return head + [f"  {d}" for d in self.differences] + \
            [f"  note: {c}" for c in self.context]


def _value_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Differing values of two equal-shape float arrays (NaN equals NaN), max |a - b|."""
    differ = (a != b) & ~(np.isnan(a) & np.isnan(b))
    n = int(differ.sum())
    if not n:
        return 0, 0.0
    with np.errstate(invalid="ignore"):
        gap = np.abs(a[differ].astype(np.float64) - b[differ].astype(np.float64))
    return n, float(np.nanmax(gap)) if np.isfinite(gap).any() else float("nan")


def _describe_values(what: str, unit: str, n_units: int, first: list[int], n_values: int,
                     total: int, max_gap: float, shape_msgs: list[str]) -> str:
    parts = [f"{len(first)} of {n_units} {unit} (first: stimulus {first[0]})"]
    if total:
        parts.append(f"{n_values} of {total} values, max |a - b| = {max_gap:.3g}")
    parts.extend(shape_msgs)
    return f"{what}: " + "; ".join(parts)


def _stim_differences(a: BuiltData, b: BuiltData) -> str | None:
    if len(a.stims) != len(b.stims):
        return f"stims: {len(a.stims)} vs {len(b.stims)} stimuli"
    first, shapes, n_values, total, gap = [], 0, 0, 0, 0.0
    for s, (x, y) in enumerate(zip(a.stims, b.stims)):
        if tuple(x.shape) != tuple(y.shape):
            first.append(s)
            shapes += 1
            continue
        n, g = _value_diff(_canonical_f32(x), _canonical_f32(y))
        total += x.numel()
        if n:
            first.append(s)
            n_values += n
            gap = max(gap, g)
    if not first:
        return None
    return _describe_values("stims", "stimuli", len(a.stims), first, n_values, total, gap,
                            [f"{shapes} with another shape"] if shapes else [])


def _response_differences(a: BuiltData, b: BuiltData) -> str | None:
    sa, sb = a.store, b.store
    if (sa.n_stims, sa.n_neurons) != (sb.n_stims, sb.n_neurons):
        return (f"responses: {sa.n_stims} stimuli x {sa.n_neurons} neurons vs {sb.n_stims} x "
                f"{sb.n_neurons}")
    first, layout, n_values, total, gap = [], 0, 0, 0, 0.0
    for s in range(sa.n_stims):
        na, ra, xa = sa.block(s)
        nb, rb, xb = sb.block(s)
        if not (np.array_equal(na, nb) and np.array_equal(ra, rb) and xa.shape == xb.shape):
            first.append(s)
            layout += 1
            continue
        n, g = _value_diff(_canonical_f32(xa), _canonical_f32(xb))
        total += xa.numel()
        if n:
            first.append(s)
            n_values += n
            gap = max(gap, g)
    if not first:
        return None
    return _describe_values(
        "responses", "stimuli", sa.n_stims, first, n_values, total, gap,
        [f"{layout} with other neurons, repeat counts or lengths"] if layout else [])


def _meta_differences(name: str, a: Any, b: Any) -> str | None:
    a, b = _to_json(a), _to_json(b)
    if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in set(a) | set(b) if a.get(k, ...) != b.get(k, ...))
        return f"{name}: differs in {', '.join(map(repr, keys))}"
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        bad = [i for i, (x, y) in enumerate(zip(a, b))
               if json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True)]
        where = ""
        if isinstance(a[bad[0]], dict) and isinstance(b[bad[0]], dict):
            x, y = a[bad[0]], b[bad[0]]
            keys = sorted(k for k in set(x) | set(y) if x.get(k, ...) != y.get(k, ...))
            where = f", keys {', '.join(map(repr, keys))}"
        return f"{name}: {len(bad)} of {len(a)} entries (first: {bad[0]}{where})"
    size = (lambda v: len(v) if isinstance(v, list) else type(v).__name__)
    return f"{name}: {size(a)} vs {size(b)} entries"


def _context(ma: dict | None, mb: dict | None) -> list[str]:
    if ma is None or mb is None:
        return []
    out = []
    pa, pb = ma.get("parameters", {}), mb.get("parameters", {})
    flat_a, flat_b = _flatten(pa), _flatten(pb)
    changed = [f"{k}={flat_a.get(k, '(absent)')!r} vs {flat_b.get(k, '(absent)')!r}"
               for k in sorted(set(flat_a) | set(flat_b))
               if flat_a.get(k, ...) != flat_b.get(k, ...)]
    if changed:
        out.append("parameters differ: " + ", ".join(changed))
    for name in ("dataset", "cache_version", "storage_format_version"):
        if ma.get(name) != mb.get(name):
            out.append(f"{name} differs: {ma.get(name)!r} vs {mb.get(name)!r}")
    if ma.get("raw_fingerprint") != mb.get("raw_fingerprint"):
        out.append("the raw files' fingerprints differ")
    va, vb = ma.get("versions", {}), mb.get("versions", {})
    if isinstance(va, dict) and isinstance(vb, dict):
        libs = [f"{k} {va.get(k)} vs {vb.get(k)}" for k in sorted(set(va) | set(vb))
                if va.get(k) != vb.get(k)]
        if libs:
            out.append("built with other versions: " + ", ".join(libs))
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{'front_end.dt_ms': 5.0, ...}`` from nested parameter dicts."""
    if not isinstance(obj, dict):
        return {prefix or "parameters": obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def compare_entries(a: Path, b: Path) -> EntryComparison:
    """Compare the arrays of two cache entries (for example two builds of one dataset).

    Equal digests (:func:`data_digest`) mean the builds are identical: every
    stimulus and response value bit for bit (NaN equal to NaN), the
    (stimulus, neuron) layout and the metadata. When they differ, the parts
    that differ are named and, as both entries are read, counted (how many
    stimuli and values, the largest difference, the first stimulus); the
    differing recorded parameters and versions are listed as context.

    Parameters
    ----------
    a, b : Path
        Entry folders (``processed/<key>``), possibly under different data homes.

    Raises
    ------
    CacheError
        When an entry cannot be read (incomplete, damaged manifest, missing files).
    """
    a, b = Path(a), Path(b)
    da, db = entry_digest(a), entry_digest(b)
    context = _context(read_manifest(a), read_manifest(b))
    if da["all"] == db["all"]:
        return EntryComparison(True, [], context)
    data_a, _ = load_entry(a)
    data_b, _ = load_entry(b)
    differences = []
    for name in DIGEST_PARTS:
        if da[name] == db[name]:
            continue
        if name == "stims":
            line = _stim_differences(data_a, data_b)
        elif name == "responses":
            line = _response_differences(data_a, data_b)
        else:
            line = _meta_differences(name, getattr(data_a, name), getattr(data_b, name))
        # equal values under unequal digests cannot happen unless a digest was edited
        differences.append(line or f"{name}: the recorded digests differ (values compare "
                                   "equal: a manifest was edited?)")
    return EntryComparison(False, differences, context)


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


def _leftover_key(name: str) -> str | None:
    """The key of a ``.tmp-<key>-<pid>-<id>`` or ``.old-<key>-<id>`` folder name, else None."""
    for prefix in (".tmp-", ".old-"):
        if name.startswith(prefix):
            key = name[len(prefix):].split("-", 1)[0]
            return key or None
    return None


def list_leftovers(processed_dir: Path) -> list[tuple[Path, str]]:
    """Folders left by interrupted builds under ``processed_dir``, with their entry's key.

    A build writes its entry into ``.tmp-<key>-...`` and moves the entry it
    replaces to ``.old-<key>-...`` for the instant of the swap; a build that
    was killed leaves them behind. They never load (hidden, no complete
    manifest in place); :func:`remove_leftovers` deletes them.
    """
    processed_dir = Path(processed_dir)
    if not processed_dir.is_dir():
        return []
    out = []
    for p in sorted(processed_dir.iterdir()):
        key = _leftover_key(p.name)
        if key is not None and p.is_dir():
            out.append((p, key))
    return out


def _remove_under_lock(processed_dir: Path, key: str, paths: list[Path]) -> bool:
    """Delete ``paths`` (all of one key) holding the key's lock; False if a build holds it.

    The lock is taken without waiting. When nothing of the key remains (no
    entry, no leftovers), its lock file goes too, unlinked while held so no
    other process can be holding it at that moment. (A process already
    waiting on it then builds next to one that opens a new lock file: the
    writes are atomic, so at worst work is done twice.)
    """
    processed_dir = Path(processed_dir)
    lock_path = processed_dir / f".{key}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            logger.info("kept %s: a build holds %s", ", ".join(p.name for p in paths), lock_path)
            return False
        try:
            for path in paths:
                shutil.rmtree(path)
            if not (processed_dir / key).exists() and \
                    not any(k == key for _, k in list_leftovers(processed_dir)):
                with contextlib.suppress(OSError):  # (Windows: not while open; harmless)
                    lock_path.unlink()
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
    return True


def remove_entry(entry_dir: Path) -> bool:
    """Delete a cache entry unless a build of it is under way (its lock is held).

    Returns True when deleted, False when kept because a process holds the
    entry's lock (it is being built or rebuilt; clear it once that ends).
    """
    entry_dir = Path(entry_dir)
    return _remove_under_lock(entry_dir.parent, entry_dir.name, [entry_dir])


def remove_leftovers(processed_dir: Path, key_prefix: str = "") -> tuple[list[Path], list[Path]]:
    """Delete the leftovers of interrupted builds, except those of a build still running.

    For each key, the entry's lock (``processed/.<key>.lock``) is taken
    without waiting: when a process holds it, a build of that key is under
    way and its temporary folder is in use, so that key's folders are kept.

    Parameters
    ----------
    processed_dir : Path
        A dataset's ``processed/`` folder.
    key_prefix : str
        Only the leftovers of keys starting with this.

    Returns
    -------
    (removed, kept)
        The folders deleted, and those kept because a build holds their lock.
    """
    by_key: dict[str, list[Path]] = {}
    for path, key in list_leftovers(processed_dir):
        if key.startswith(key_prefix):
            by_key.setdefault(key, []).append(path)
    removed: list[Path] = []
    kept: list[Path] = []
    for key, paths in by_key.items():
        (removed if _remove_under_lock(processed_dir, key, paths) else kept).extend(paths)
    return removed, kept


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
        if data.manifest_extra:
            record.update(data.manifest_extra)
        try:
            if data.composition is not None:
                write_composition(entry, data.composition, record)
            else:
                write_entry(entry, data, record)
        except OSError as err:
            logger.warning("could not write the processed cache entry %s (%s); the dataset "
                           "is built in memory only", entry, err)
            return data, None, False
        return data, read_manifest(entry), False


def _commit_entry(tmp: Path, entry_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` (marked complete) into the staged ``tmp`` and swap it in for
    ``entry_dir`` in one rename; a previous entry is removed only once the new one is there."""
    manifest["storage_format_version"] = STORAGE_FORMAT_VERSION
    manifest["complete"] = True
    (tmp / "manifest.json").write_text(json.dumps(_to_json(manifest), indent=2),
                                       encoding="utf-8")
    old = None
    if entry_dir.exists():
        old = entry_dir.parent / f".old-{entry_dir.name}-{uuid.uuid4().hex[:8]}"
        os.replace(entry_dir, old)
    os.replace(tmp, entry_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
