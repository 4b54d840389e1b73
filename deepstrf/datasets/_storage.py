"""Packed ragged storage behind ``NeuralDataset.responses``.

A dataset has S stimuli and N neurons, but each neuron heard only some
stimuli, with its own number of repeats. Keeping one tensor per (stim, neuron)
pair costs a Python object per pair, which does not scale to millions of
pairs. Instead each stimulus s owns one *block*: a float32 tensor of shape
``(rows_s, T_s)`` that stacks the repeats of every neuron that heard it, in
increasing neuron order, plus three small integer arrays:

``neurons[s]``  the K_s neurons that heard stimulus s (sorted, unique);
``reps[s]``     their repeat counts (each >= 1);
``starts[s]``   the first row of each neuron inside the block.

So neuron ``neurons[s][k]``'s responses are ``blocks[s][starts[s][k]:
starts[s][k] + reps[s][k]]``, a view with the contract's ``(R, T)`` shape.
A pair that is absent has no rows at all and reads back as the ``(1, 1)`` NaN
sentinel. Blocks may be views into one flat buffer (a memory-mapped cache) or
separate tensors (after an edit); the code does not care which. Block tensors
are written in place only when nothing else can see them: memory this module
allocated itself (``owned``), referenced by the store alone (no view, no
other store, no tensor object held elsewhere, checked at the time of the
write). Every other edit builds a new tensor for the block, so a block can be
shared between a dataset, its concatenations, a user's numpy array and a
cache file without any of them changing.
"""

from __future__ import annotations

import itertools
import math
import mmap
import operator
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ResponseStore", "ResponsesView", "StimResponses", "nan_sentinel", "is_sentinel"]

_NAN = float("nan")


def nan_sentinel() -> torch.Tensor:
    """Return a fresh ``(1, 1)`` all-NaN float32 tensor: the missing-pair marker."""
    return torch.full((1, 1), _NAN, dtype=torch.float32)


def is_sentinel(value: torch.Tensor) -> bool:
    """True for a tensor that marks a missing (stim, neuron) pair: all NaN (or empty)."""
    if value.numel() == 0:
        return True
    if value.is_floating_point() and bool(torch.isnan(value).all()):
        return True
    return False


def _has_nan(values: np.ndarray) -> bool:
    """True if some value of this non-empty array is NaN.

    numpy's ``maximum`` propagates NaN (unlike ``fmax``), so the maximum is
    NaN exactly when a value is: an exact test in one vectorised pass without
    a temporary, about 3x faster than a sum (which ``inf - inf`` would also
    turn NaN) and without a thread team per call.
    """
    return bool(np.isnan(np.maximum.reduce(values, axis=None)))


_NAN_ROWS: dict[int, torch.Tensor] = {}


def _nan_row(T: int) -> torch.Tensor:
    """A shared, never written ``(1, T)`` NaN row (a few thousand lengths kept at most)."""
    row = _NAN_ROWS.get(T)
    if row is None:
        row = torch.full((1, T), _NAN, dtype=torch.float32)
        if len(_NAN_ROWS) < 4096:
            _NAN_ROWS[T] = row
    return row


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concat([arange(c) for c in counts])`` without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)


class _MappedFile:
    """A flat float32 cache file whose regions blocks map on access.

    One descriptor per file, opened on first use (and again in a process that
    received the object by pickling); each :meth:`map` is a private
    copy-on-write mapping of just the region asked for, unmapped when the
    returned tensor (and every view of it) is released.
    """

    def __init__(self, path: str, header_bytes: int, n_values: int):
        self.path = str(path)
        self.header_bytes = int(header_bytes)
        self.n_values = int(n_values)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _fileno(self) -> int:
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._fd

    def map(self, start: int, shape: tuple[int, int]) -> torch.Tensor:
        """Values ``[start, start + rows * T)`` as a ``(rows, T)`` tensor on a fresh mapping."""
        count = shape[0] * shape[1]
        if count == 0:
            return torch.zeros(shape, dtype=torch.float32)
        if start < 0 or start + count > self.n_values:
            raise ValueError(f"block [{start}, {start + count}) lies outside the "
                             f"{self.n_values} values of {self.path}.")
        byte = self.header_bytes + 4 * start
        aligned = byte - byte % mmap.ALLOCATIONGRANULARITY
        region = mmap.mmap(self._fileno(), byte - aligned + 4 * count, access=mmap.ACCESS_COPY,
                           offset=aligned)
        values = np.frombuffer(region, dtype="<f4", count=count, offset=byte - aligned)
        return torch.from_numpy(values.reshape(shape))

    def read_into(self, start: int, out: np.ndarray) -> None:
        """Read values ``[start, start + out.size)`` into the C-contiguous float32 ``out``.

        One ``preadv`` straight into ``out``: no mapping to set up and fault
        in, for a block assembled from several files (:class:`_JoinedRows`).
        """
        count = int(out.size)
        if start < 0 or start + count > self.n_values:
            raise ValueError(f"block [{start}, {start + count}) lies outside the "
                             f"{self.n_values} values of {self.path}.")
        view = memoryview(out.reshape(-1).view(np.uint8))
        byte = self.header_bytes + 4 * start
        while len(view):
            n = os.preadv(self._fileno(), [view], byte)
            if n <= 0:
                raise OSError(f"{self.path} ended at byte {byte}; the file is truncated.")
            view, byte = view[n:], byte + n

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "header_bytes": self.header_bytes, "n_values": self.n_values}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["header_bytes"], state["n_values"])

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass(frozen=True)
class _FileRows:
    """A block's region of a :class:`_MappedFile`: first value and ``(rows, T)``."""

    source: _MappedFile
    start: int
    shape: tuple[int, int]

    def map(self) -> torch.Tensor:
        return self.source.map(self.start, self.shape)


@dataclass(frozen=True)
class _JoinedRows:
    """A block whose rows are the rows of several sources, one after the other.

    Each source is a region of a cache file (:class:`_FileRows`) or a tensor
    held in memory; all have the same ``T``. Nothing is copied until the
    block's values are used: :meth:`map` maps each file region and joins
    them (one block's worth of memory, released with the returned tensor).
    This is how shards are composed at load time without a composed copy.
    """

    parts: tuple[Any, ...]
    shape: tuple[int, int]

    def map(self) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=torch.float32)
        self.fill(out.numpy())
        return out

    def fill(self, out: np.ndarray) -> None:
        """Write the joined rows into ``out``, a C-contiguous ``(rows, T)`` float32 array."""
        pos = 0
        for part in self.parts:
            n = int(part.shape[0])
            if not n:
                continue
            dst = out[pos:pos + n]
            if isinstance(part, _FileRows) and _PREAD:
                part.source.read_into(part.start, dst)
            else:
                x = part.map() if isinstance(part, _FileRows) else part
                dst[...] = x.detach().numpy()
                del x
            pos += n


#: Joined blocks read their file regions with ``preadv`` where the platform has it
#: (and the file's little-endian float32 is the machine's float32).
_PREAD = hasattr(os, "preadv") and sys.byteorder == "little"


@dataclass
class _Block:
    """One stimulus's responses. See the module docstring."""

    _rows: torch.Tensor | None  # (rows, T) float32; None for a block read from ``file``
    neurons: np.ndarray       # (K,) int64, sorted, unique
    reps: np.ndarray          # (K,) int64, >= 1
    starts: np.ndarray        # (K,) int64, row offsets
    #: None until asked; then False if some value may be NaN (see ``nan_free``).
    _nan_free: bool | None = None
    #: The data's memory was allocated by this module and is not shared by design
    #: (a concatenation, a user's array or a cache file make it False).
    owned: bool = False
    #: Where the rows live in a cache file (or in several: :class:`_JoinedRows`),
    #: for a block that maps them on access.
    file: _FileRows | _JoinedRows | None = None
    _mapped: Any = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> torch.Tensor:
        """The ``(rows, T)`` values: held in memory, or mapped from the cache file.

        A file block maps its region of the file at each access and keeps only
        a weak reference to it, so the pages stay in the process's resident
        memory exactly as long as someone uses the tensor (a batch being
        built, a view the user kept): iterating over a dataset larger than
        memory holds a few blocks at a time, never the file.
        """
        rows = self._rows
        if rows is not None:
            return rows
        ref = self._mapped
        rows = ref() if ref is not None else None
        if rows is None:
            rows = self.file.map()
            self._mapped = weakref.ref(rows)
        return rows

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mapped"] = None  # a weak reference does not pickle; the file region does
        return state

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, T)`` without touching the values."""
        if self._rows is None:
            return self.file.shape
        return (int(self._rows.shape[0]), int(self._rows.shape[1]))

    @property
    def numel(self) -> int:
        rows, T = self.shape
        return rows * T

    @property
    def T(self) -> int:
        return self.shape[1]

    @property
    def nan_free(self) -> bool:
        """True if no value of the block is NaN (computed once: blocks are never written).

        The test is :func:`_has_nan`, one read of the block at memory speed;
        the blocks packed by :meth:`ResponseStore.from_nested` get the answer
        while they are copied.
        """
        if self._nan_free is None:
            data = self.data
            if data.numel() == 0:
                self._nan_free = True
            elif data.device.type == "cpu" and not data.requires_grad:
                self._nan_free = not _has_nan(data.numpy())
            else:
                self._nan_free = not bool(torch.isnan(data.detach().max()))
        return self._nan_free


@dataclass
class _GatherPlan:
    """Rows of one block kept by a selection: ``src`` rows go to ``(n_idx, r_idx)``."""

    s: int
    T: int
    R: int
    n_idx: np.ndarray
    r_idx: np.ndarray
    src: np.ndarray | None
    #: ``src`` as a tensor (None: every row in order), made once per plan.
    src_t: torch.Tensor | None = None
    #: Row index of a single item and which of its rows hold data (see
    #: ResponseStore.gather_plan), made on first use.
    item_index: torch.Tensor | None = None
    item_row_valid: torch.Tensor | None = None
    #: Output rows of the kept rows (in block order) and of the padding rows.
    item_dst: torch.Tensor | None = None
    item_pad: torch.Tensor | None = None

    @property
    def n_rows(self) -> int:
        """Number of block rows the plan writes."""
        return len(self.n_idx)


def _copy_rows_into(block: _Block, dst: torch.Tensor) -> None:
    """``dst.copy_(block.data)``; a joined block copies its sources straight into ``dst``.

    Assembling a joined block's rows (:class:`_JoinedRows`) would copy them
    once more, so unless they are assembled already (someone holds them),
    each source's rows go to their place in ``dst`` directly.
    """
    joined = block.file if block._rows is None else None
    held = block._mapped() if block._mapped is not None else None
    if not isinstance(joined, _JoinedRows) or held is not None or not dst.is_contiguous() \
            or dst.dtype != torch.float32 or dst.device.type != "cpu":
        dst.copy_(held if held is not None else block.data)
        return
    joined.fill(dst.numpy())


def _make_block(neurons: np.ndarray, reps: np.ndarray, data: torch.Tensor,
                owned: bool = False) -> _Block:
    starts = np.zeros(len(reps), dtype=np.int64)
    if len(reps) > 1:
        np.cumsum(reps[:-1], out=starts[1:])
    return _Block(data, neurons=neurons, reps=reps, starts=starts, owned=owned)


_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _data_refs(block: _Block) -> int:
    return sys.getrefcount(block.data)


def _storage_uses(tensor: torch.Tensor) -> int:
    return _storage_use_count(tensor.untyped_storage()._cdata)


# Reference counts of a block nobody else sees, measured on one (they include
# the temporaries of the measuring calls themselves).
_LONE = _Block(torch.empty((1, 1)), np.zeros(1, np.int64), np.ones(1, np.int64),
               np.zeros(1, np.int64), owned=True)
_LONE_REFS = _data_refs(_LONE)
_LONE_USES = _storage_uses(_LONE.data) if _storage_use_count is not None else -1
del _LONE


def _writable_in_place(block: _Block) -> bool:
    """True if writing into ``block.data`` can change nothing anyone else sees.

    The memory must be ``owned`` (allocated here, never handed to a second
    store) and referenced by this block alone: no other reference to the
    tensor object (``sys.getrefcount``) and no other tensor on its storage
    (a view such as ``responses[s][n]`` the user kept, a batch item). Where
    PyTorch does not expose the storage's use count, nothing is written in
    place.
    """
    if block._rows is None:  # mapped from a cache file: shared by design
        return False
    data = block.data
    if not block.owned or _storage_use_count is None or data.requires_grad \
            or data.device.type != "cpu" or not data.is_contiguous():
        return False
    del data
    return _data_refs(block) <= _LONE_REFS and _storage_uses(block.data) <= _LONE_USES


def _first(flags: np.ndarray) -> int:
    return int(np.flatnonzero(flags)[0])


_shape_of = operator.attrgetter("shape")
_dtype_of = operator.attrgetter("dtype")


def _distinct(row: Sequence[Any]) -> tuple[Sequence[Any], np.ndarray | None]:
    """The distinct objects of ``row`` (by identity) and, for each entry, its object's index.

    A row filled the usual way reuses one sentinel object for all its missing
    pairs, so its distinct objects are its real tensors plus one: every
    per-object look (type, dtype, shape, NaN test) is then paid once per
    distinct object, and the per-entry cost is two C-level passes (``id``,
    ``np.unique``). The index is None when every entry is its own object.
    """
    ids = np.fromiter(map(id, row), dtype=np.uint64, count=len(row))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    if len(first) == len(row):
        return row, None
    if len(first) == 1:
        return [row[int(first[0])]], inverse.reshape(-1)
    return operator.itemgetter(*first.tolist())(row), inverse.reshape(-1)


def _check_nested_row(s: int, row: Any, n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``responses[s]`` of the nested form; return its neurons with data and their R.

    Each distinct object of the row is looked at once (:func:`_distinct`),
    with C-level iteration (types, shapes, dtypes); the ``(1, 1)`` candidates
    are tested for NaN together. Errors name the first entry at fault.
    """
    if not isinstance(row, (list, tuple)):
        raise TypeError(f"responses[{s}] must be a list of {n_neurons} tensors; got "
                        f"{type(row).__name__}.")
    if len(row) != n_neurons:
        raise ValueError(f"responses[{s}] has {len(row)} entries but the dataset has "
                         f"N_neurons={n_neurons}; every row needs one entry per neuron "
                         "(the (1, 1) NaN sentinel for a neuron that did not hear it).")
    if not row:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    objs, inverse = _distinct(row)
    for kind in set(map(type, objs)):
        if not issubclass(kind, torch.Tensor):
            n = next(n for n, v in enumerate(row) if type(v) is kind)
            raise TypeError(f"responses[{s}][{n}] must be a torch.Tensor; got "
                            f"{kind.__name__}.")
    for dtype in set(map(_dtype_of, objs)):
        if dtype.is_complex or dtype == torch.bool:
            n = next(n for n, v in enumerate(row) if v.dtype == dtype)
            raise TypeError(f"responses[{s}][{n}] must hold real numbers; got dtype {dtype}.")
    shapes = list(map(_shape_of, objs))
    if set(map(len, shapes)) - {2}:
        n = next(n for n, v in enumerate(row) if v.dim() != 2)
        raise ValueError(f"responses[{s}][{n}] must be 2-D (R, T) or the (1, 1) NaN "
                         f"sentinel; got shape {tuple(row[n].shape)}.")
    dims = np.fromiter(itertools.chain.from_iterable(shapes), dtype=np.int64,
                       count=2 * len(shapes)).reshape(-1, 2)
    R, T = dims[:, 0], dims[:, 1]
    missing = (R >= 1) & (T == 0)  # no values at all: nothing to keep
    cand = np.flatnonzero((R == 1) & (T == 1))
    if len(cand):
        missing[cand] = _all_nan_singletons([objs[i] for i in cand.tolist()])
    if inverse is not None:  # back from distinct objects to entries
        R, T, missing = R[inverse], T[inverse], missing[inverse]
    empty = (R == 0) & ~missing
    if empty.any():
        n = _first(empty)
        raise ValueError(f"responses[{s}][{n}] has 0 repeats; mark a missing pair "
                         "with the (1, 1) NaN sentinel instead.")
    real = np.flatnonzero(~missing)
    if len(real):
        t_real = T[real]
        bad = t_real != t_real[0]
        if bad.any():
            n, n0 = int(real[_first(bad)]), int(real[0])
            raise ValueError(f"responses[{s}][{n}] has T={int(T[n])} but "
                             f"responses[{s}][{n0}] has T={int(T[n0])}; all "
                             "neurons share the time axis of a stimulus.")
    return real.astype(np.int64), R[real]


def _all_nan_singletons(values: list[torch.Tensor]) -> np.ndarray:
    """Which of these ``(1, 1)`` tensors hold NaN, tested in one operation."""
    try:
        with torch.no_grad():  # no detached copies needed: nothing is recorded
            flat = torch.cat(values).reshape(-1)
        if flat.device.type != "cpu":
            flat = flat.cpu()
    except RuntimeError:  # mixed devices: test one by one
        return np.array([v.is_floating_point() and bool(torch.isnan(v).all()) for v in values])
    if not flat.is_floating_point():
        return np.zeros(len(values), dtype=bool)
    return torch.isnan(flat).numpy()


#: Bytes of a block copied and then tested for NaN while they are still in cache.
_PACK_GROUP_BYTES = 1 << 19


def _pack_rows(parts: Sequence[torch.Tensor], reps: np.ndarray) -> tuple[torch.Tensor, bool]:
    """Stack the pairs' ``(R, T)`` tensors as one float32 block; also say if it is NaN free.

    The parts are copied in groups of about :data:`_PACK_GROUP_BYTES`, and
    each group is tested for NaN (:func:`_has_nan`) right after its copy,
    while it is in cache: the block's :attr:`_Block.nan_free` costs no second
    read of it from memory. Once a NaN is seen the rest is only copied.
    """
    rows, T = int(reps.sum()), int(parts[0].shape[1])
    out = torch.empty((rows, T), dtype=torch.float32)
    values = out.numpy()
    starts = np.zeros(len(reps) + 1, dtype=np.int64)
    np.cumsum(reps, out=starts[1:])
    group = starts[:-1] // max(1, _PACK_GROUP_BYTES // (4 * T))
    cuts = np.concatenate([[0], np.flatnonzero(group[1:] != group[:-1]) + 1, [len(reps)]])
    nan_free = True
    with torch.no_grad():  # a part that requires grad is copied as plain values
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            r0, r1 = int(starts[a]), int(starts[b])
            try:
                torch.cat(parts[a:b], 0, out=out[r0:r1])
            except (RuntimeError, TypeError):  # other devices: bring each part here first
                torch.cat([v.to("cpu", torch.float32) for v in parts[a:b]], 0, out=out[r0:r1])
            if nan_free and _has_nan(values[r0:r1]):
                nan_free = False
    return out, nan_free


def _drop_all_nan_pairs(block: _Block) -> _Block:
    """Remove pairs whose values are all NaN: they mark missing pairs, as the sentinel does."""
    if block.data.numel() == 0:
        return block
    row_all_nan = torch.isnan(block.data).all(dim=1).numpy()
    pair_all_nan = np.logical_and.reduceat(row_all_nan, block.starts)
    if not pair_all_nan.any():
        return block
    keep = ~pair_all_nan
    reps = block.reps[keep]
    src = np.repeat(block.starts[keep], reps) + _ragged_arange(reps)
    data = block.data.index_select(0, torch.from_numpy(src))
    return _make_block(block.neurons[keep], reps, data, owned=True)


class ResponseStore:
    """Responses of N neurons to S stimuli, one packed block per stimulus.

    Build it with :meth:`from_nested` (a list of S lists of N tensors, the
    contract's form), :meth:`from_blocks` (per-stimulus arrays, the fast path
    for dataset loaders) or :meth:`from_flat` (a cache on disk).
    """

    def __init__(self, blocks: list[_Block], n_neurons: int):
        self._blocks = blocks
        self.n_neurons = int(n_neurons)
        self._masks: torch.Tensor | None = None
        #: Bumped at every structural change, so caches built on the store can tell.
        self.version = 0
        # (sel_pos, version, {s: plan}) of the last selection seen by cached_plan
        self._plan_cache: tuple[np.ndarray, int, dict[int, _GatherPlan]] | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_blocks(cls, n_neurons: int,
                    blocks: Iterable[tuple[Sequence[int], Sequence[int], torch.Tensor | np.ndarray]],
                    *, owned: bool = False) -> ResponseStore:
        """Build from one ``(neuron_indices, repeat_counts, rows)`` triple per stimulus.

        ``rows`` stacks the repeats of the listed neurons in the listed order,
        shape ``(sum(repeat_counts), T_s)``. Neurons need not be sorted; they
        are sorted here. A stimulus nobody heard is ``([], [], zeros((0, T_s)))``.

        ``owned=True`` hands the arrays over: the caller keeps no other use of
        them (a loader's freshly built counts), so whole-dataset operations
        may rewrite them in place instead of allocating a new block each (a
        tensor view or another store on them is still detected at the time
        of the write; a numpy array the caller kept is not, hence the
        default False: the caller's own arrays are never written).
        """
        out: list[_Block] = []
        for s, (neurons, reps, rows) in enumerate(blocks):
            neurons = np.asarray(neurons, dtype=np.int64).reshape(-1)
            reps = np.asarray(reps, dtype=np.int64).reshape(-1)
            data = source = torch.as_tensor(rows)
            if data.dtype != torch.float32:
                data = data.to(torch.float32)
            if data.dim() != 2:
                raise ValueError(f"stim {s}: rows must be 2-D (rows, T); got shape "
                                 f"{tuple(data.shape)}.")
            if len(neurons) != len(reps):
                raise ValueError(f"stim {s}: {len(neurons)} neuron indices but {len(reps)} "
                                 "repeat counts; give one count per neuron.")
            if (reps < 1).any():
                raise ValueError(f"stim {s}: every listed neuron needs >= 1 repeat; got "
                                 f"counts {reps.tolist()}. Leave a neuron out to mark it missing.")
            if int(reps.sum()) != data.shape[0]:
                raise ValueError(f"stim {s}: repeat counts sum to {int(reps.sum())} but rows "
                                 f"has {data.shape[0]} rows.")
            if len(neurons) and (neurons.min() < 0 or neurons.max() >= n_neurons):
                raise IndexError(f"stim {s}: neuron index out of range [0, {n_neurons - 1}]: "
                                 f"{neurons.tolist()}.")
            if len(np.unique(neurons)) != len(neurons):
                raise ValueError(f"stim {s}: a neuron is listed twice: {neurons.tolist()}.")
            order = np.argsort(neurons, kind="stable")
            if (order != np.arange(len(order))).any():
                starts = np.concatenate([[0], np.cumsum(reps)[:-1]])
                src = np.repeat(starts[order], reps[order]) + _ragged_arange(reps[order])
                data = data[torch.from_numpy(src)]
                neurons, reps = neurons[order], reps[order]
            data = data.contiguous()
            # a converted or reordered copy is ours; the caller's own array only if handed over
            ours = data.numel() > 0 and (owned or data.data_ptr() != source.data_ptr())
            out.append(_make_block(neurons, reps, data, owned=ours))
        return cls(out, n_neurons)

    @classmethod
    def from_nested(cls, rows: list, n_neurons: int, *, stim_T: Sequence[int] | None = None,
                    release: bool = False) -> ResponseStore:
        """Pack the contract's ``responses[s][n]`` list of lists.

        Entries that are all NaN (the ``(1, 1)`` sentinel, or any all-NaN
        tensor) mark missing pairs. ``stim_T`` gives each stimulus's length,
        used for stimuli that no neuron heard. Raises ``TypeError``/``ValueError`` naming
        the stim and neuron at fault. With ``release=True`` each row of the
        input list is replaced by ``None`` once packed, so peak memory stays
        near one copy of the data.

        The cost is one copy of the data (``torch.cat`` per stimulus, in
        groups each tested for NaN right after its copy, see :func:`_pack_rows`)
        plus a small per-pair constant: each distinct object of a row (a
        sentinel object shared by many pairs counts once) has its type, dtype
        and shape read with C-level iteration, and the row's ``(1, 1)``
        candidates are tested for NaN in one operation.
        """
        if not isinstance(rows, (list, tuple)):
            raise TypeError(f"responses must be a list of S lists of N tensors; got "
                            f"{type(rows).__name__}.")
        # Check everything before packing so a bad entry leaves the input intact.
        real_rows = [_check_nested_row(s, row, n_neurons) for s, row in enumerate(rows)]
        blocks: list[_Block] = []
        for s, (real, reps) in enumerate(real_rows):
            row = rows[s]
            if len(real):
                parts = [row[int(real[0])]] if len(real) == 1 else \
                    operator.itemgetter(*real.tolist())(row)
                data, nan_free = _pack_rows(parts, reps)
                del parts
                block = _make_block(real, reps, data, owned=True)
                if nan_free:
                    block._nan_free = True
                else:
                    block = _drop_all_nan_pairs(block)
            else:
                T = int(stim_T[s]) if stim_T is not None else 0
                block = _make_block(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                    torch.zeros((0, T), dtype=torch.float32))
            blocks.append(block)
            if release and isinstance(rows, list):
                rows[s] = None
        return cls(blocks, n_neurons)

    @classmethod
    def from_flat(cls, n_neurons: int, data: torch.Tensor, T: np.ndarray, offsets: np.ndarray,
                  pair_stim_start: np.ndarray, pair_neuron: np.ndarray,
                  pair_reps: np.ndarray) -> ResponseStore:
        """Rebuild from the flat arrays written by :meth:`to_flat` (blocks are views)."""
        blocks = []
        for s in range(len(T)):
            a, b = int(pair_stim_start[s]), int(pair_stim_start[s + 1])
            reps = np.asarray(pair_reps[a:b], dtype=np.int64)
            rows = int(reps.sum())
            start = int(offsets[s])
            view = data[start:start + rows * int(T[s])].view(rows, int(T[s]))
            blocks.append(_make_block(np.asarray(pair_neuron[a:b], dtype=np.int64), reps, view))
        return cls(blocks, n_neurons)

    @classmethod
    def from_npy(cls, n_neurons: int, path: str | os.PathLike, T: np.ndarray,
                 offsets: np.ndarray, pair_stim_start: np.ndarray, pair_neuron: np.ndarray,
                 pair_reps: np.ndarray) -> ResponseStore:
        """Open the flat ``.npy`` written from :meth:`to_flat` without reading its values.

        Each block maps its own region of the file when its values are used
        and unmaps it once they are released (see ``_Block.data``), so
        opening costs a header read, and resident memory while iterating is a
        few blocks, whatever the size of the file.
        """
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            header_bytes = f.tell()
        if dtype != np.dtype("<f4") or len(shape) != 1 or fortran:
            raise ValueError(f"{path} must hold a flat little-endian float32 array; got dtype "
                             f"{dtype}, shape {shape}.")
        source = _MappedFile(os.fspath(path), header_bytes, int(shape[0]))
        pair_reps = np.asarray(pair_reps, dtype=np.int64)
        pair_neuron = np.asarray(pair_neuron, dtype=np.int64)
        # row offsets of every pair within its block, in one pass (opening is per block)
        csum = np.zeros(len(pair_reps) + 1, dtype=np.int64)
        np.cumsum(pair_reps, out=csum[1:])
        blocks = []
        for s in range(len(T)):
            a, b = int(pair_stim_start[s]), int(pair_stim_start[s + 1])
            rows, t = int(csum[b] - csum[a]), int(T[s])
            start = int(offsets[s])
            if start + rows * t > source.n_values:
                raise ValueError(f"{path} holds {source.n_values} values but stim {s}'s block "
                                 f"ends at {start + rows * t}; the file is truncated.")
            blocks.append(_Block(None, neurons=pair_neuron[a:b], reps=pair_reps[a:b],
                                 starts=csum[a:b] - csum[a],
                                 file=_FileRows(source, start, (rows, t))))
        return cls(blocks, n_neurons)

    def to_flat(self) -> dict[str, np.ndarray | torch.Tensor]:
        """Flat arrays describing the store: ``data`` (1-D float32) plus integer indexes."""
        T = np.array([b.T for b in self._blocks], dtype=np.int64)
        sizes = np.array([b.numel for b in self._blocks], dtype=np.int64)
        offsets = np.zeros(len(sizes), dtype=np.int64)
        if len(sizes) > 1:
            np.cumsum(sizes[:-1], out=offsets[1:])
        counts = np.array([len(b.neurons) for b in self._blocks], dtype=np.int64)
        pair_stim_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        pair_neuron = (np.concatenate([b.neurons for b in self._blocks])
                       if self._blocks else np.zeros(0, np.int64))
        pair_reps = (np.concatenate([b.reps for b in self._blocks])
                     if self._blocks else np.zeros(0, np.int64))
        return {"T": T, "offsets": offsets, "pair_stim_start": pair_stim_start,
                "pair_neuron": pair_neuron.astype(np.int64), "pair_reps": pair_reps.astype(np.int64),
                "n_elements": np.array([int(sizes.sum())], dtype=np.int64)}

    def iter_block_data(self) -> Iterator[torch.Tensor]:
        """Each block's ``(rows, T)`` data in stimulus order (for writing caches)."""
        for b in self._blocks:
            yield b.data

    @classmethod
    def concat(cls, stores: Sequence[ResponseStore]) -> ResponseStore:
        """Block-diagonal concatenation: stims and neurons of each store in turn."""
        blocks: list[_Block] = []
        offset = 0
        for store in stores:
            for b in store._blocks:
                b.owned = False  # now shared with the result: never written in place again
                blocks.append(_Block(b._rows, b.neurons + offset, b.reps.copy(), b.starts.copy(),
                                     b._nan_free, file=b.file))
            offset += store.n_neurons
        return cls(blocks, offset)

    @classmethod
    def join(cls, n_neurons: int,
             pieces: Sequence[Sequence[tuple[ResponseStore, int, np.ndarray]]]) -> ResponseStore:
        """A store whose block ``s`` joins blocks of other stores, without copying values.

        Parameters
        ----------
        n_neurons : int
        pieces : sequence (one per stimulus of the result) of sequences of
            ``(store, s_local, neurons)``: block ``s_local`` of ``store``,
            its neurons renumbered to ``neurons`` (same length as the block's).
            The renumbered neurons of one stimulus, taken in order, must be
            strictly increasing (a block's neurons are sorted and unique).

        Each resulting block reads its rows from the source blocks' file
        regions (or tensors) when used (:class:`_JoinedRows`); the sources
        are never written through the result.
        """
        blocks: list[_Block] = []
        for s, group in enumerate(pieces):
            neurons, reps, parts, nan_free = [], [], [], True
            T = None
            for store, s_local, new_neurons in group:
                b = store._blocks[s_local]
                new_neurons = np.asarray(new_neurons, dtype=np.int64)
                if len(new_neurons) != len(b.neurons):
                    raise ValueError(f"stimulus {s}: {len(new_neurons)} neuron indices for a "
                                     f"block of {len(b.neurons)} neurons.")
                if T is not None and b.T != T:
                    raise ValueError(f"stimulus {s}: blocks of {T} and {b.T} bins cannot be "
                                     "joined.")
                T = b.T
                b.owned = False  # shared with the result: never written in place again
                parts.append(b.file if b._rows is None else b._rows)
                neurons.append(new_neurons)
                reps.append(b.reps)
                nan_free = nan_free and b._nan_free is True
            neurons_a = np.concatenate(neurons) if neurons else np.zeros(0, np.int64)
            if len(neurons_a) > 1 and not (np.diff(neurons_a) > 0).all():
                raise ValueError(f"stimulus {s}: the joined neuron indices are not strictly "
                                 "increasing.")
            reps_a = np.concatenate(reps).astype(np.int64) if reps else np.zeros(0, np.int64)
            shape = (int(reps_a.sum()), int(T or 0))
            block = _make_block(neurons_a, reps_a, None)
            block.file = _JoinedRows(tuple(parts), shape)
            block._nan_free = True if (nan_free and parts) else None
            blocks.append(block)
        return cls(blocks, n_neurons)

    # ------------------------------------------------------------------ queries
    @property
    def n_stims(self) -> int:
        return len(self._blocks)

    @property
    def n_pairs(self) -> int:
        return sum(len(b.neurons) for b in self._blocks)

    @property
    def nbytes(self) -> int:
        """Bytes of response values held (excluding the small index arrays)."""
        return sum(b.numel * 4 for b in self._blocks)

    def T(self, s: int) -> int:
        """Number of time bins of stimulus ``s``."""
        return self._blocks[s].T

    def block_neurons(self, s: int) -> np.ndarray:
        """The neurons with data for stimulus ``s`` (sorted), without touching the values."""
        return self._blocks[s].neurons

    def block(self, s: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """``(neurons, repeat_counts, rows)`` of stimulus ``s`` (rows is the stored tensor)."""
        b = self._blocks[s]
        return b.neurons, b.reps, b.data

    def masks(self) -> torch.Tensor:
        """``(S, N)`` bool: True where a (stim, neuron) pair has data. Cached."""
        if self._masks is None:
            m = np.zeros((self.n_stims, self.n_neurons), dtype=bool)
            for s, b in enumerate(self._blocks):
                m[s, b.neurons] = True
            self._masks = torch.from_numpy(m)
        return self._masks

    def invalidate(self) -> None:
        """Forget derived state (masks) after a structural change."""
        self._masks = None
        self.version += 1

    def _locate(self, s: int, n: int) -> int:
        """Position of neuron n in block s, or -1."""
        neurons = self._blocks[s].neurons
        k = int(np.searchsorted(neurons, n))
        if k < len(neurons) and neurons[k] == n:
            return k
        return -1

    def get(self, s: int, n: int) -> torch.Tensor:
        """The ``(R, T)`` view of pair (s, n), or a fresh ``(1, 1)`` NaN sentinel."""
        k = self._locate(s, n)
        if k < 0:
            return nan_sentinel()
        b = self._blocks[s]
        start = int(b.starts[k])
        return b.data[start:start + int(b.reps[k])]

    def set(self, s: int, n: int, value: torch.Tensor) -> None:
        """Replace pair (s, n); a sentinel removes it. Rebuilds block s only."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"responses[{s}][{n}] must be a torch.Tensor; got "
                            f"{type(value).__name__}.")
        if value.dim() != 2:
            raise ValueError(f"responses[{s}][{n}] must be 2-D (R, T) or the (1, 1) NaN "
                             f"sentinel; got shape {tuple(value.shape)}.")
        b = self._blocks[s]
        k = self._locate(s, n)
        missing = is_sentinel(value)
        if not missing:
            others = len(b.neurons) - (1 if k >= 0 else 0)
            if others and value.shape[1] != b.T:
                raise ValueError(f"responses[{s}][{n}] must have T={b.T} like the other "
                                 f"neurons of stim {s}; got T={value.shape[1]}.")
            if k >= 0 and value.shape[0] == b.reps[k]:
                # copy-on-write: blocks may be shared with a concatenation's sources or
                # memory-mapped from a cache, so never write into them
                data = b.data.clone()
                start = int(b.starts[k])
                data[start:start + int(b.reps[k])] = value.to(torch.float32)
                self.replace_data(s, data, owned=True)
                return
        entries = [(int(nj), b.data[int(st):int(st) + int(r)])
                   for nj, st, r in zip(b.neurons, b.starts, b.reps) if nj != n]
        if not missing:
            entries.append((n, value.detach().to("cpu", torch.float32)))
        entries.sort(key=lambda e: e[0])
        T = entries[0][1].shape[1] if entries else b.T
        data = (torch.cat([e[1] for e in entries], 0) if entries
                else torch.zeros((0, T), dtype=torch.float32))
        self._blocks[s] = _make_block(np.array([e[0] for e in entries], dtype=np.int64),
                                      np.array([e[1].shape[0] for e in entries], dtype=np.int64),
                                      data.contiguous(), owned=len(entries) > 1)
        self.invalidate()

    def replace_data(self, s: int, data: torch.Tensor, *, owned: bool = False) -> None:
        """Swap block s's values for a same-shaped tensor (in-place style edits).

        ``owned=True`` says the caller made ``data`` for this store alone (so
        later edits may write into it); by default it is treated as shared.
        """
        old = self._blocks[s]
        if tuple(data.shape) != tuple(old.shape):
            raise ValueError(f"stim {s}: new block shape {tuple(data.shape)} differs from "
                             f"{tuple(old.shape)}.")
        self._blocks[s] = _Block(data.to(torch.float32).contiguous(), old.neurons, old.reps,
                                 old.starts, owned=owned)

    def row_neurons(self, s: int) -> np.ndarray:
        """Neuron index of every row of block s."""
        b = self._blocks[s]
        return np.repeat(b.neurons, b.reps)

    # ------------------------------------------------------------------ gathering
    def plan(self, s: int, sel_pos: np.ndarray) -> _GatherPlan:
        """Which rows of stimulus s the selection keeps, and where they go.

        ``sel_pos[n]`` is neuron n's position in the output, or -1 if it is
        not selected.
        """
        b = self._blocks[s]
        pos = sel_pos[b.neurons]
        kept = np.flatnonzero(pos >= 0)
        counts = b.reps[kept]
        within = _ragged_arange(counts)
        if len(kept) == len(b.neurons):
            src = None  # every row, in order
        else:
            src = np.repeat(b.starts[kept], counts) + within
        return _GatherPlan(s=s, T=b.T, R=int(counts.max()) if len(kept) else 1,
                           n_idx=np.repeat(pos[kept], counts), r_idx=within, src=src,
                           src_t=None if src is None else torch.from_numpy(src))

    def cached_plan(self, s: int, sel_pos: np.ndarray) -> _GatherPlan:
        """:meth:`plan`, remembered while ``sel_pos`` (the same array object) is in use.

        The dataset hands the same read-only ``sel_pos`` array until its
        selection changes, so item access and epochs plan each stimulus once
        per selection. A structural edit of the store (``version``) or another
        ``sel_pos`` object starts a new cache; only one selection is kept.
        """
        cache = self._plan_cache
        if cache is None or cache[0] is not sel_pos or cache[1] != self.version:
            cache = self._plan_cache = (sel_pos, self.version, {})
        plans = cache[2]
        plan = plans.get(s)
        if plan is None:
            plan = plans[s] = self.plan(s, sel_pos)
        return plan

    def write_padded(self, plans: Sequence[_GatherPlan], out: torch.Tensor, mask: torch.Tensor,
                     ext: torch.Tensor | None = None, mask_ext: torch.Tensor | None = None
                     ) -> None:
        """Write items into a padded batch: every element of ``out`` and ``mask``.

        ``out`` (float32) and ``mask`` (bool) are contiguous ``(B, n_sel, R_out,
        T_out)`` tensors with any prior content; item ``b`` is ``plans[b]``.
        Stored values land at their place, every other element becomes NaN in
        ``out`` and False in ``mask``, and ``mask`` is True exactly where
        ``out`` is not NaN.

        Each output byte is written once. The kept rows of all items are first
        copied into a small table ``ext`` (``(rows + 1, T_out)``, time-padded
        with NaN, last row all NaN), then one row gather (``index_select``, a
        memory copy per row) writes the whole batch, padding rows included:
        no NaN fill that data then overwrites, and no second pass over the
        batch for the mask, which is gathered the same way from ``mask_ext``
        (True on the stored values of blocks without NaN, ``~isnan``
        otherwise). ``ext`` and ``mask_ext`` may be passed in (a recycled
        buffer) with exactly that shape.
        """
        B, n_sel, R_out, T_out = out.shape
        if out.numel() == 0:
            return
        n_ext = sum(p.n_rows for p in plans) + 1
        if ext is None:
            ext = torch.empty((n_ext, T_out), dtype=torch.float32)
        if mask_ext is None:
            mask_ext = torch.empty((n_ext, T_out), dtype=torch.bool)
        rows_b = n_sel * R_out
        pad_row = n_ext - 1
        index = np.full(B * rows_b, pad_row, dtype=np.int64)
        off = 0
        for b, p in enumerate(plans):
            n = p.n_rows
            if not n:
                continue
            index[b * rows_b + p.n_idx * R_out + p.r_idx] = np.arange(off, off + n)
            block = self._blocks[p.s]
            e, me = ext[off:off + n], mask_ext[off:off + n]
            if p.T == T_out:
                if p.src_t is None:
                    _copy_rows_into(block, e)
                else:
                    torch.index_select(block.data, 0, p.src_t, out=e)
                head, mhead = e, me
            else:
                head, mhead = e[:, :p.T], me[:, :p.T]
                if p.src_t is None:
                    _copy_rows_into(block, head)
                else:
                    head.copy_(block.data.index_select(0, p.src_t))
                e[:, p.T:].fill_(_NAN)
                me[:, p.T:].fill_(False)
            if block.nan_free:
                mhead.fill_(True)
            else:
                torch.eq(head, head, out=mhead)  # x == x is ~isnan(x)
            off += n
        ext[pad_row].fill_(_NAN)
        mask_ext[pad_row].fill_(False)
        idx = torch.from_numpy(index)
        torch.index_select(ext, 0, idx, out=out.view(-1, T_out))
        torch.index_select(mask_ext, 0, idx, out=mask.view(-1, T_out))

    def gather_plan(self, plan: _GatherPlan, n_sel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(responses, mask)`` of one planned item, ``(n_sel, plan.R, plan.T)`` each.

        The gather of :meth:`write_padded` for one item in as few tensor
        operations as possible: the kept rows plus one NaN row are joined
        (``torch.cat``), one row gather writes the item, and for a block
        without NaN the mask is one broadcast copy of the per-row validity.
        The plan keeps the output row index and that validity (at most a few
        percent of the block's bytes).
        """
        n, T, R = plan.n_rows, plan.T, plan.R
        index, row_valid = plan.item_index, plan.item_row_valid
        dst, pad = plan.item_dst, plan.item_pad
        if index is None or index.numel() != n_sel * R:
            rows = np.full(n_sel * R, n, dtype=np.int64)
            where = plan.n_idx * R + plan.r_idx
            rows[where] = np.arange(n)
            index, row_valid = torch.from_numpy(rows), torch.from_numpy(rows < n)
            dst, pad = torch.from_numpy(where), torch.from_numpy(np.flatnonzero(rows == n))
            block_bytes = self._blocks[plan.s].numel * 4
            if rows.nbytes * 16 <= max(block_bytes, 1 << 16):
                plan.item_index, plan.item_row_valid = index, row_valid
                plan.item_dst, plan.item_pad = dst, pad
        block = self._blocks[plan.s]
        data = block.data if plan.src_t is None else block.data.index_select(0, plan.src_t)
        if pad.numel() == 0:
            # every output row holds data: one gather from the block
            out = torch.index_select(data, 0, index).view(n_sel, R, T)
        else:
            # the kept rows scattered to their places, the others NaN: each output byte written
            # once, without first copying the block beside a NaN row
            flat = np.empty((n_sel * R, T), dtype=np.float32)
            flat[dst.numpy()] = data.numpy()
            flat[pad.numpy()] = np.nan
            out = torch.from_numpy(flat).view(n_sel, R, T)
        if block.nan_free:
            mask = np.empty((n_sel * R, T), dtype=np.bool_)
            mask[...] = row_valid.numpy()[:, None]
            mask = torch.from_numpy(mask).view(n_sel, R, T)
        else:
            mask = torch.eq(out, out)  # x == x is ~isnan(x)
        return out, mask

    def gather_into(self, plan: _GatherPlan, out: torch.Tensor, mask: torch.Tensor) -> None:
        """Write the planned rows into ``out`` / ``mask`` (``(n_sel, R_out, T_out)``).

        ``out`` must already be NaN and ``mask`` False where nothing is written.
        The mask marks the written values that are not NaN.
        """
        if len(plan.n_idx) == 0:
            return
        data = self._blocks[plan.s].data
        rows = data if plan.src is None else data.index_select(0, torch.from_numpy(plan.src))
        valid = ~torch.isnan(rows)
        R_out, T_out = out.shape[1], out.shape[2]
        if T_out == plan.T and out.is_contiguous() and mask.is_contiguous():
            dst = torch.from_numpy(plan.n_idx * R_out + plan.r_idx)
            out.view(-1, T_out).index_copy_(0, dst, rows)
            mask.view(-1, T_out).index_copy_(0, dst, valid)
        else:
            n_idx, r_idx = torch.from_numpy(plan.n_idx), torch.from_numpy(plan.r_idx)
            out[n_idx, r_idx, :plan.T] = rows
            mask[n_idx, r_idx, :plan.T] = valid

    def gather(self, s: int, sel_pos: np.ndarray, n_sel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Responses of the selected neurons to stimulus ``s`` and their validity mask.

        Returns ``(responses, mask)``, both ``(n_sel, R, T_s)`` with R the
        largest repeat count among the selected neurons that heard s (1 if
        none did); absent pairs and padded repeats are NaN in ``responses``
        and False in ``mask``.
        """
        return self.gather_plan(self.plan(s, sel_pos), n_sel)

    # ------------------------------------------------------------------ bulk edits
    def map_blocks_(self, fn) -> None:
        """Replace each block's data by ``fn(s, neurons, reps, data)`` (same shape)."""
        for s, b in enumerate(self._blocks):
            if b.shape[0] == 0:
                continue
            new = fn(s, b.neurons, b.reps, b.data)
            if new is not b.data:
                self.replace_data(s, new)

    def transform_rows_(self, fn, *, chunk_bytes: int = 1 << 20) -> int:
        """Rewrite every block chunk by chunk: ``fn(s, rows, src, dst)``.

        ``src`` and ``dst`` are ``(n, T)`` float32 numpy arrays of a chunk of
        block s's rows (``rows`` is their slice of the block); ``fn`` writes
        the new values into ``dst``, which may be ``src`` itself (an
        elementwise ``fn`` is fine; one that reads neighbours must write
        through a scratch array). Blocks nobody else can see
        (:func:`_writable_in_place`) are rewritten in place, so an operation
        allocates no memory and touches no fresh page; the others get a new
        block of their own, and the old one is released as soon as nothing
        refers to it, so peak memory stays at the data plus one block. Chunks
        of about ``chunk_bytes`` keep the temporaries of ``fn`` in cache;
        each chunk written is tested for NaN while it is there, so the block's
        NaN flag stays known. Returns the number of blocks written in place.
        """
        in_place = 0
        for s, b in enumerate(self._blocks):
            if b.numel == 0:
                continue
            if _writable_in_place(b):
                dst_t = b.data
                in_place += 1
                data = dst_t
            else:
                # held once: a joined block assembles its rows at each fresh access
                data = b.data
                dst_t = torch.empty_like(data, memory_format=torch.contiguous_format)
            src, dst = data.detach().numpy(), dst_t.numpy()
            del data
            step = max(1, chunk_bytes // max(1, 4 * b.T))
            has_nan = False
            for a in range(0, src.shape[0], step):
                rows = slice(a, min(a + step, src.shape[0]))
                fn(s, rows, src[rows], dst[rows])
                # the new values are tested while they are in cache, so the next
                # operation knows the block's NaN flag without a pass over memory
                has_nan = has_nan or _has_nan(dst[rows])
            del src, dst, b
            if dst_t is not self._blocks[s].data:
                self.replace_data(s, dst_t, owned=True)
            self._blocks[s]._nan_free = not has_nan
            del dst_t
        return in_place

    def iter_row_chunks(self, stims: Iterable[int] | None = None, *,
                        chunk_bytes: int = 1 << 20) -> Iterator[tuple[int, np.ndarray, np.ndarray, bool]]:
        """``(s, row_neurons, rows, nan_free)`` for chunks of each block's rows (read-only).

        ``rows`` is a float32 numpy view ``(n, T)`` of about ``chunk_bytes``;
        ``row_neurons`` the neuron of each row; ``nan_free`` the block's flag.
        """
        for s in (range(self.n_stims) if stims is None else stims):
            b = self._blocks[s]
            if b.numel == 0:
                continue
            data = b.data.detach().numpy()
            rn = np.repeat(b.neurons, b.reps)
            step = max(1, chunk_bytes // max(1, 4 * b.T))
            nan_free = b.nan_free
            for a in range(0, data.shape[0], step):
                yield s, rn[a:a + step], data[a:a + step], nan_free

    def padded_block(self, s: int) -> tuple[np.ndarray, torch.Tensor]:
        """``(neurons (K,), responses (K, R_max, T))`` of stimulus s, repeats NaN-padded."""
        b = self._blocks[s]
        K = len(b.neurons)
        R = int(b.reps.max()) if K else 1
        sel_pos = np.full(self.n_neurons, -1, dtype=np.int64)
        sel_pos[b.neurons] = np.arange(K)
        if K and (b.reps == R).all():
            return b.neurons, b.data.view(K, R, b.T)
        return b.neurons, self.gather(s, sel_pos, K)[0]


class StimResponses(Sequence):
    """``responses[s]``: the N responses to one stimulus, read-write, as a list would be."""

    __slots__ = ("_store", "_s")

    def __init__(self, store: ResponseStore, s: int):
        self._store = store
        self._s = s

    def __len__(self) -> int:
        return self._store.n_neurons

    def _index(self, n) -> int:
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
            n = int(n)
            N = self._store.n_neurons
            if n < 0:
                n += N
            if not 0 <= n < N:
                raise IndexError(f"neuron index {n} is out of range; the valid range is "
                                 f"[0, {N - 1}].")
            return n
        raise TypeError(f"neuron index must be an int; got {type(n).__name__}.")

    def __getitem__(self, n):
        if isinstance(n, slice):
            return [self._store.get(self._s, i) for i in range(*n.indices(len(self)))]
        return self._store.get(self._s, self._index(n))

    def __setitem__(self, n, value: torch.Tensor) -> None:
        self._store.set(self._s, self._index(n), value)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for n in range(len(self)):
            yield self._store.get(self._s, n)

    def __repr__(self) -> str:
        K = len(self._store.block(self._s)[0])
        return (f"<responses to stim {self._s}: {K} of {len(self)} neurons have data; "
                "the rest read as (1, 1) NaN sentinels>")


class ResponsesView(Sequence):
    """``responses``: S rows of N tensors, backed by a :class:`ResponseStore`."""

    __slots__ = ("_store",)

    def __init__(self, store: ResponseStore):
        self._store = store

    def __len__(self) -> int:
        return self._store.n_stims

    def __getitem__(self, s):
        if isinstance(s, slice):
            return [StimResponses(self._store, i) for i in range(*s.indices(len(self)))]
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            s = int(s)
            S = len(self)
            if s < 0:
                s += S
            if not 0 <= s < S:
                raise IndexError(f"stim index {s} is out of range; the valid range is "
                                 f"[0, {S - 1}].")
            return StimResponses(self._store, s)
        raise TypeError(f"stim index must be an int or slice; got {type(s).__name__}.")

    def __iter__(self) -> Iterator[StimResponses]:
        for s in range(len(self)):
            yield StimResponses(self._store, s)

    def __repr__(self) -> str:
        st = self._store
        total = st.n_stims * st.n_neurons
        pct = 100.0 * st.n_pairs / total if total else math.nan
        return (f"<packed responses: {st.n_stims} stims x {st.n_neurons} neurons, "
                f"{st.n_pairs} pairs with data ({pct:.0f}%), {st.nbytes / 1e6:.1f} MB>")
