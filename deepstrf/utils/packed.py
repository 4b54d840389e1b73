"""Packed batches: only the real ``(R, T)`` response rows of a batch, no padding.

A dense batch from :func:`~deepstrf.utils.data.neural_collate` is ``(B, N,
R_max, T_max)``: every neuron for every stimulus of the batch, every pair
padded to the largest repeat count and the longest stimulus. When each neuron
heard only part of the stimuli, or a few stimuli have many more repeats than
the rest, most of it is NaN padding. A :class:`PackedBatch` holds the same
batch as the real rows only:

``values``
    1-D float32, every row's ``T_b`` values one after the other (``T_b`` is
    the response length of the row's stimulus), rows grouped by stimulus in
    batch order and, within a stimulus, by (stimulus, neuron) pair;
``row_stim``, ``row_neuron``, ``row_repeat``
    ``(n_rows,)`` int64: the batch position ``b``, the position ``n`` on the
    neuron axis and the repeat index ``r`` of each row, so row ``i`` is
    ``dense[row_stim[i], row_neuron[i], row_repeat[i], :T_b]``;
``lengths``
    ``(B,)`` int64 response length of each stimulus;
``stims``, ``stim_meta``
    as in the dense batch (stims are small next to the responses; they stay
    zero-padded ``(B, ..., T_max)`` so a model runs on them unchanged).

:meth:`PackedBatch.to_dense` gives exactly the batch ``neural_collate``
makes. The losses and metrics of :mod:`deepstrf.metrics` take a packed batch
wherever they take ``responses`` (with ``mask=None``: validity is the NaN
test on the stored values, as in the dense batch); the prediction stays dense
``(B, N, 1, T_max)``, and only the pairs present are reduced.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.utils.data

__all__ = ["PackedBatch", "PackedView", "assemble_packed", "concat_packed", "packed_collate",
           "packed_loader"]

_NAN = float("nan")
_INDEX_FIELDS = ("row_stim", "row_neuron", "row_repeat", "lengths")


def _as_index(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    if value.dtype in (torch.bool,) or value.is_floating_point() or value.is_complex():
        raise TypeError(f"PackedBatch.{name} must hold integers; got dtype {value.dtype}.")
    if value.dim() != 1:
        raise ValueError(f"PackedBatch.{name} must be 1-D; got shape {tuple(value.shape)}.")
    return value.to(torch.int64)


class PackedBatch:
    """A batch of responses as its real rows only (see the module docstring).

    Build one with :func:`~deepstrf.utils.data.packed_collate` or
    :func:`~deepstrf.utils.data.packed_loader`; the constructor checks the
    layout.

    Parameters
    ----------
    stims : Tensor
        ``(B, ..., T_stim_max)``, zero-padded on the last axis.
    values : Tensor
        1-D float32, the rows' values concatenated.
    row_stim, row_neuron, row_repeat : Tensor
        ``(n_rows,)`` integer batch position, neuron-axis position and repeat
        index of each row.
    lengths : Tensor
        ``(B,)`` integer response length of each stimulus.
    n_neurons : int
        Size of the neuron axis (the selected neurons of the dataset).
    stim_meta : list of dict
        One entry per stimulus.
    extra : dict, optional
        Other per-item keys, each a list of B values (as ``neural_collate``
        passes them through).

    Raises
    ------
    ValueError, TypeError
        When the arrays do not describe a packed batch: rows not grouped by
        stimulus in batch order, a pair's rows not contiguous with repeats
        ``0, 1, ..., R - 1``, indices out of range, or ``values`` not holding
        exactly ``sum(lengths[row_stim])`` values.
    """

    def __init__(self, stims: torch.Tensor, values: torch.Tensor, row_stim: Any,
                 row_neuron: Any, row_repeat: Any, lengths: Any, n_neurons: int,
                 stim_meta: Sequence[Any], extra: dict[str, list] | None = None,
                 *, check: bool = True):
        self.stims = stims
        self.values = values
        self.row_stim = _as_index("row_stim", row_stim)
        self.row_neuron = _as_index("row_neuron", row_neuron)
        self.row_repeat = _as_index("row_repeat", row_repeat)
        self.lengths = _as_index("lengths", lengths)
        self.n_neurons = int(n_neurons)
        self.stim_meta = list(stim_meta)
        self.extra = dict(extra or {})
        self._valid: torch.Tensor | None = None
        if check:
            self._check()

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        values = self.values
        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            raise TypeError("PackedBatch.values must be a floating-point tensor; got "
                            f"{type(values).__name__}"
                            f"{'' if not isinstance(values, torch.Tensor) else ' ' + str(values.dtype)}.")
        if values.dim() != 1:
            raise ValueError(f"PackedBatch.values must be 1-D (the rows concatenated); got shape "
                             f"{tuple(values.shape)}.")
        n_rows = self.row_stim.numel()
        for name in ("row_neuron", "row_repeat"):
            if getattr(self, name).numel() != n_rows:
                raise ValueError(f"PackedBatch.{name} has {getattr(self, name).numel()} entries "
                                 f"but row_stim has {n_rows}; give one per row.")
        B = self.lengths.numel()
        if B == 0:
            raise ValueError("PackedBatch needs at least one stimulus; got lengths of size 0.")
        if B != len(self.stim_meta):
            raise ValueError(f"PackedBatch: {B} lengths but {len(self.stim_meta)} stim_meta "
                             "entries; give one per stimulus.")
        if isinstance(self.stims, torch.Tensor) and self.stims.dim() and \
                self.stims.shape[0] != B:
            raise ValueError(f"PackedBatch: stims has {self.stims.shape[0]} stimuli but there "
                             f"are {B} lengths.")
        if self.n_neurons < 1:
            raise ValueError(f"PackedBatch.n_neurons must be >= 1; got {self.n_neurons}.")
        if B and bool((self.lengths < 1).any()):
            raise ValueError(f"PackedBatch.lengths must be >= 1; got {self.lengths.tolist()}.")
        if n_rows:
            stim, nrn, rep = self.row_stim, self.row_neuron, self.row_repeat
            if int(stim.min()) < 0 or int(stim.max()) >= B:
                raise ValueError(f"PackedBatch.row_stim must lie in [0, {B - 1}].")
            if int(nrn.min()) < 0 or int(nrn.max()) >= self.n_neurons:
                raise ValueError(f"PackedBatch.row_neuron must lie in [0, {self.n_neurons - 1}].")
            if bool((stim[1:] < stim[:-1]).any()):
                raise ValueError("PackedBatch rows must be grouped by stimulus in batch order "
                                 "(row_stim non-decreasing).")
            same_pair = (stim[1:] == stim[:-1]) & (nrn[1:] == nrn[:-1])
            follows = torch.where(same_pair, rep[1:] == rep[:-1] + 1, rep[1:] == 0)
            if int(rep[0]) != 0 or not bool(follows.all()):
                raise ValueError("PackedBatch: the rows of each (stimulus, neuron) pair must be "
                                 "contiguous, with row_repeat 0, 1, ..., R - 1.")
            starts = self.pair_row_start
            key = self.row_stim[starts] * self.n_neurons + self.row_neuron[starts]
            if key.unique().numel() != key.numel():
                raise ValueError("PackedBatch: a (stimulus, neuron) pair appears in two "
                                 "separate runs of rows.")
        expected = int(self.lengths[self.row_stim].sum()) if n_rows else 0
        if values.numel() != expected:
            raise ValueError(f"PackedBatch.values holds {values.numel()} values but the rows "
                             f"need sum(lengths[row_stim]) = {expected}.")

    # ------------------------------------------------------------------ shape
    @property
    def B(self) -> int:
        """Number of stimuli."""
        return int(self.lengths.numel())

    @property
    def n_rows(self) -> int:
        return int(self.row_stim.numel())

    @functools.cached_property
    def R_max(self) -> int:
        """Largest repeat count of a pair (1 if the batch holds no row)."""
        return int(self.row_repeat.max()) + 1 if self.n_rows else 1

    @functools.cached_property
    def T_max(self) -> int:
        """Longest response length."""
        return int(self.lengths.max()) if self.B else 1

    @property
    def shape(self) -> torch.Size:
        """Shape of the dense ``responses`` this batch stands for, ``(B, N, R_max, T_max)``."""
        return torch.Size((self.B, self.n_neurons, self.R_max, self.T_max))

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def dim(self) -> int:
        """4, like the dense responses (so shape checks read the same)."""
        return 4

    @property
    def nbytes(self) -> int:
        """Bytes of the response values and row indices held."""
        return (self.values.numel() * self.values.element_size()
                + sum(getattr(self, f).numel() * 8 for f in _INDEX_FIELDS))

    def dense_nbytes(self) -> int:
        """Bytes of the dense responses and mask (float32 + bool) this batch replaces."""
        B, N, R, T = self.shape
        return B * N * R * T * (self.values.element_size() + 1)

    # ------------------------------------------------------------------ rows and pairs
    @functools.cached_property
    def row_offsets(self) -> torch.Tensor:
        """``(n_rows + 1,)`` start of each row in ``values`` (and the end)."""
        out = torch.zeros(self.n_rows + 1, dtype=torch.int64)
        if self.n_rows:
            torch.cumsum(self.lengths[self.row_stim], 0, out=out[1:])
        return out

    @functools.cached_property
    def stim_row_start(self) -> torch.Tensor:
        """``(B + 1,)`` first row of each stimulus (rows are grouped by stimulus)."""
        counts = torch.bincount(self.row_stim, minlength=self.B)
        out = torch.zeros(self.B + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=out[1:])
        return out

    @functools.cached_property
    def pair_row_start(self) -> torch.Tensor:
        """First row of each (stimulus, neuron) pair present, in row order."""
        return torch.nonzero(self.row_repeat == 0).reshape(-1)

    @property
    def pair_stim(self) -> torch.Tensor:
        return self.row_stim[self.pair_row_start]

    @property
    def pair_neuron(self) -> torch.Tensor:
        return self.row_neuron[self.pair_row_start]

    @functools.cached_property
    def pair_reps(self) -> torch.Tensor:
        """Repeat count of each pair present."""
        ends = torch.cat((self.pair_row_start[1:],
                          torch.tensor([self.n_rows], dtype=torch.int64)))
        return ends - self.pair_row_start

    @property
    def pair_index(self) -> torch.Tensor:
        """Each pair's flat position ``b * N + n`` in the dense ``(B, N)`` grid."""
        return self.pair_stim * self.n_neurons + self.pair_neuron

    def stim_rows(self, b: int) -> torch.Tensor:
        """The ``(rows_b, T_b)`` rows of stimulus ``b``: a view of ``values``."""
        a, e = int(self.stim_row_start[b]), int(self.stim_row_start[b + 1])
        T = int(self.lengths[b])
        start = int(self.row_offsets[a])
        return self.values[start:start + (e - a) * T].view(e - a, T)

    @property
    def valid_mask(self) -> torch.Tensor:
        """``(n_values,)`` bool, True where a stored value is not NaN (computed once)."""
        if self._valid is None:
            self._valid = ~torch.isnan(self.values)
        return self._valid

    def padded_rows(self, T: int | None = None, *, extra_nan_row: bool = False) -> torch.Tensor:
        """The rows as one ``(n_rows, T)`` tensor, NaN-padded in time (``T`` >= ``T_max``).

        ``extra_nan_row=True`` appends one all-NaN row (a gather target for padding).
        """
        T = self.T_max if T is None else int(T)
        if T < self.T_max:
            raise ValueError(f"T must be >= the longest response ({self.T_max}); got {T}.")
        out = torch.full((self.n_rows + int(extra_nan_row), T), _NAN, dtype=self.values.dtype,
                         device=self.values.device)
        start = self.stim_row_start
        for b in range(self.B):
            a, e = int(start[b]), int(start[b + 1])
            if e > a:
                out[a:e, :int(self.lengths[b])] = self.stim_rows(b)
        return out

    def repeat_groups(self, T: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pairs present, grouped by repeat count: ``(pair_index (K,), block (K, R, T))``.

        Each block holds the rows of K pairs that share the repeat count R,
        NaN-padded in time to ``T`` (default ``T_max``) and never in repeats;
        ``pair_index`` is their flat position ``b * N + n``. This is what the
        metrics reduce instead of the dense batch.
        """
        if not self.n_rows:
            return
        T = self.T_max if T is None else int(T)
        table = self.padded_rows(T)
        reps, starts, index = self.pair_reps, self.pair_row_start, self.pair_index
        for R in torch.unique(reps).tolist():
            k = torch.nonzero(reps == R).reshape(-1)
            rows = (starts[k].unsqueeze(1) + torch.arange(R)).reshape(-1)
            yield index[k], table.index_select(0, rows).view(len(k), R, T)

    # ------------------------------------------------------------------ conversions
    def to_dense(self) -> dict[str, Any]:
        """The dense batch, equal to what :func:`~deepstrf.utils.data.neural_collate` makes.

        Returns
        -------
        dict
            ``stims``, ``responses`` ``(B, N, R_max, T_max)`` NaN-padded,
            ``valid_mask`` (``~isnan``), ``stim_meta`` and the extra keys.
        """
        B, N, R, T = self.shape
        flat = torch.full((B * N * R, T), _NAN, dtype=self.values.dtype,
                          device=self.values.device)
        if self.n_rows:
            dst = (self.row_stim * N + self.row_neuron) * R + self.row_repeat
            flat.index_copy_(0, dst, self.padded_rows(T))
        responses = flat.view(B, N, R, T)
        out: dict[str, Any] = {"stims": self.stims, "responses": responses,
                               "valid_mask": ~torch.isnan(responses),
                               "stim_meta": list(self.stim_meta)}
        out.update({k: list(v) for k, v in self.extra.items()})
        return out

    def gather_pred(self, pred: torch.Tensor) -> torch.Tensor:
        """A dense prediction ``(B, N, 1, T)`` at each row's place: ``(n_values,)``.

        ``out[i]`` is ``pred[b, n, 0, t]`` for the value ``i`` of row ``(b, n,
        r)`` at time ``t``; differentiable with respect to ``pred``.
        """
        if pred.dim() != 4 or tuple(pred.shape[:2]) != (self.B, self.n_neurons) \
                or pred.shape[2] != 1 or pred.shape[3] < self.T_max:
            raise ValueError(f"pred must be (B={self.B}, N={self.n_neurons}, 1, T >= "
                             f"{self.T_max}); got shape {tuple(pred.shape)}.")
        parts = []
        for b in range(self.B):
            a, e = int(self.stim_row_start[b]), int(self.stim_row_start[b + 1])
            if e > a:
                nrn = self.row_neuron[a:e].to(pred.device)
                parts.append(pred[b, :, 0, :int(self.lengths[b])].index_select(0, nrn)
                             .reshape(-1))
        return torch.cat(parts) if parts else pred.new_zeros(0)

    def to(self, *args: Any, **kwargs: Any) -> PackedBatch:
        """A copy with ``stims`` and ``values`` moved/cast by ``Tensor.to`` (indices stay int64)."""
        out = self._with(values=self.values.to(*args, **kwargs),
                         stims=self.stims.to(*args, **kwargs)
                         if isinstance(self.stims, torch.Tensor) else self.stims)
        device = out.values.device
        for name in _INDEX_FIELDS:
            setattr(out, name, getattr(self, name).to(device))
        return out

    def pin_memory(self) -> PackedBatch:
        """Pinned copy (the ``DataLoader(pin_memory=True)`` hook)."""
        out = self._with(values=self.values.pin_memory(),
                         stims=self.stims.pin_memory()
                         if isinstance(self.stims, torch.Tensor) else self.stims)
        for name in _INDEX_FIELDS:
            setattr(out, name, getattr(self, name).pin_memory())
        return out

    def _with(self, **changes: Any) -> PackedBatch:
        fields = {"stims": self.stims, "values": self.values, "row_stim": self.row_stim,
                  "row_neuron": self.row_neuron, "row_repeat": self.row_repeat,
                  "lengths": self.lengths, "n_neurons": self.n_neurons,
                  "stim_meta": self.stim_meta, "extra": self.extra}
        fields.update(changes)
        return PackedBatch(**fields, check=False)

    # ------------------------------------------------------------------ mapping access
    def __getitem__(self, key: str) -> Any:
        """``batch['stims']`` and ``batch['stim_meta']`` as on a dense batch.

        ``'responses'`` returns the batch itself (which the losses and metrics
        take), so a training loop written for dense batches runs unchanged.
        """
        if key == "responses":
            return self
        if key == "valid_mask":
            return None
        if key in ("stims", "stim_meta"):
            return getattr(self, key)
        if key in self.extra:
            return self.extra[key]
        raise KeyError(f"a PackedBatch has 'stims', 'responses', 'valid_mask', 'stim_meta'"
                       f"{''.join(', ' + repr(k) for k in self.extra)}; got {key!r}.")

    def __repr__(self) -> str:
        B, N, R, T = self.shape
        dense = B * N * R * T
        return (f"PackedBatch(B={B}, N={N}, rows={self.n_rows}, pairs="
                f"{self.pair_row_start.numel()}, values={self.values.numel()}; dense "
                f"{tuple(self.shape)} = {dense} values)")


# ---------------------------------------------------------------------------- building
def assemble_packed(ds: Any, positions: Sequence[int]) -> PackedBatch:
    """The packed batch of items ``ds[p]`` for each position, straight from the storage.

    Nothing dense is made: each item's kept rows (the selected neurons that
    heard the stimulus, all their repeats) are copied once from its stored
    block into ``values``. ``assemble_packed(ds, ps).to_dense()`` equals
    ``neural_collate([ds[p] for p in ps])``.
    """
    from deepstrf.utils.data import _pad_stims

    neurons, sel_pos, iterable = ds._selection()
    store = ds.response_store
    plans = [store.cached_plan(int(iterable[p]), sel_pos) for p in positions]
    if not plans:
        raise ValueError("assemble_packed needs at least one position.")
    sizes = [p.n_rows * p.T for p in plans]
    values = torch.empty(sum(sizes), dtype=torch.float32)
    off = 0
    for p, size in zip(plans, sizes):
        if p.n_rows:
            rows = store.block(p.s)[2]
            dst = values[off:off + size].view(p.n_rows, p.T)
            if p.src_t is None:
                dst.copy_(rows)
            else:
                torch.index_select(rows, 0, p.src_t, out=dst)
            del rows
        off += size
    counts = torch.tensor([p.n_rows for p in plans], dtype=torch.int64)
    return PackedBatch(
        stims=_pad_stims([ds.stims[p.s] for p in plans]),
        values=values,
        row_stim=torch.repeat_interleave(torch.arange(len(plans)), counts),
        row_neuron=torch.from_numpy(_np_concat([p.n_idx for p in plans])),
        row_repeat=torch.from_numpy(_np_concat([p.r_idx for p in plans])),
        lengths=torch.tensor([p.T for p in plans], dtype=torch.int64),
        n_neurons=len(neurons),
        stim_meta=[ds.stim_meta[p.s] for p in plans],
        check=False,
    )


def _np_concat(arrays: list) -> Any:
    import numpy as np

    return np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays]) if arrays \
        else np.zeros(0, dtype=np.int64)


def _pack_items(items: Sequence[Any]) -> PackedBatch:
    """Pack dense items (``ds[i]`` dicts or deepSTRF tuples): the rows holding data."""
    from deepstrf.utils.data import _item_dicts, _pad_stims

    dicts = _item_dicts(items, "packed_collate", ("stims", "responses"))
    N = dicts[0]["responses"].shape[0]
    values, stims_, nrns, reps, lengths = [], [], [], [], []
    for b, it in enumerate(dicts):
        r = it["responses"]
        if r.dim() != 3 or r.shape[0] != N:
            raise ValueError(f"packed_collate: responses of item {b} have shape "
                             f"{tuple(r.shape)}; expected (N={N}, R, T) like item 0.")
        mask = it.get("valid_mask")
        valid = ~torch.isnan(r) if mask is None else mask.expand(r.shape)
        if mask is not None:  # the packed form's validity is the NaN test
            r = torch.where(valid, r, _NAN)
        rep_has = valid.any(dim=-1)  # (N, R)
        R_pair = torch.where(rep_has.any(dim=1),
                             rep_has.shape[1] - rep_has.flip(1).to(torch.int8).argmax(dim=1), 0)
        n_idx = torch.repeat_interleave(torch.arange(N), R_pair)
        r_idx = torch.cat([torch.arange(int(k)) for k in R_pair.tolist()]) if N else n_idx
        rows = r[n_idx, r_idx] if len(n_idx) else r.new_zeros((0, r.shape[2]))
        values.append(rows.to(torch.float32).reshape(-1))
        stims_.append(torch.full((len(n_idx),), b, dtype=torch.int64))
        nrns.append(n_idx)
        reps.append(r_idx.to(torch.int64))
        lengths.append(int(r.shape[2]))
    extra_keys = [k for k in dicts[0] if k not in ("stims", "responses", "valid_mask",
                                                  "stim_meta")]
    return PackedBatch(
        stims=_pad_stims([it["stims"] for it in dicts]), values=torch.cat(values),
        row_stim=torch.cat(stims_), row_neuron=torch.cat(nrns), row_repeat=torch.cat(reps),
        lengths=torch.tensor(lengths, dtype=torch.int64), n_neurons=N,
        stim_meta=[it.get("stim_meta") for it in dicts],
        extra={k: [it.get(k) for it in dicts] for k in extra_keys})


class _PackedItems(list):
    """What :meth:`PackedView.__getitems__` hands the collate function: one packed batch."""

    def __init__(self, packed: PackedBatch):
        super().__init__([packed])
        self.packed = packed


def concat_packed(batches: Sequence[PackedBatch]) -> PackedBatch:
    """Join packed batches of one neuron axis along the stimulus axis."""
    from deepstrf.utils.data import _pad_stims

    if len(batches) == 1:
        return batches[0]
    N = batches[0].n_neurons
    if any(b.n_neurons != N for b in batches):
        raise ValueError("packed batches to join must share the neuron axis; got n_neurons "
                         f"{[b.n_neurons for b in batches]}.")
    offsets = torch.cumsum(torch.tensor([0] + [b.B for b in batches[:-1]]), 0)
    stims = _pad_stims([x for b in batches for x in b.stims])
    return PackedBatch(
        stims=stims, values=torch.cat([b.values for b in batches]),
        row_stim=torch.cat([b.row_stim + int(o) for b, o in zip(batches, offsets)]),
        row_neuron=torch.cat([b.row_neuron for b in batches]),
        row_repeat=torch.cat([b.row_repeat for b in batches]),
        lengths=torch.cat([b.lengths for b in batches]), n_neurons=N,
        stim_meta=[m for b in batches for m in b.stim_meta],
        extra={k: [v for b in batches for v in b.extra.get(k, [None] * b.B)]
               for k in batches[0].extra}, check=False)


def packed_collate(batch: Sequence[Any]) -> PackedBatch:
    """Collate dataset items into a :class:`PackedBatch` (a ``DataLoader`` ``collate_fn``).

    The fast path is :func:`packed_loader` (or ``DataLoader(PackedView(ds),
    collate_fn=packed_collate)``), where the batch is packed straight from
    the dataset's storage. Given ordinary items (``ds[i]`` dicts, as a plain
    ``DataLoader(ds, collate_fn=packed_collate)`` passes them), the rows
    holding data are packed from them: the same batch, but the items were
    dense first. A repeat counts as a row up to the last repeat of the pair
    holding a valid value; an explicit ``valid_mask`` is applied by setting
    the values it marks invalid to NaN.
    """
    if isinstance(batch, _PackedItems):
        return batch.packed
    if isinstance(batch, PackedBatch):
        return batch
    if not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)) or len(batch) == 0:
        raise ValueError("packed_collate needs a non-empty list of dataset items; got "
                         f"{type(batch).__name__}.")
    if all(isinstance(b, PackedBatch) for b in batch):
        return concat_packed(list(batch))
    return _pack_items(batch)


class PackedView(torch.utils.data.Dataset):
    """A ``NeuralDataset`` whose batches come packed (for ``DataLoader``).

    Positions are those of the dataset (its selection applies, read at each
    batch); ``view[i]`` is a packed batch of one item and a ``DataLoader``
    with :func:`packed_collate` gets each batch packed in one step
    (``__getitems__``).
    """

    def __init__(self, dataset: Any):
        from deepstrf.datasets.neural_dataset import NeuralDataset

        if not isinstance(dataset, NeuralDataset):
            raise TypeError(f"PackedView wraps a NeuralDataset; got {type(dataset).__name__}.")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def _positions(self, indices: Sequence[int]) -> list[int]:
        from deepstrf._validation import normalize_index

        indices = normalize_index(list(indices))
        return [self.dataset._resolve(i) for i in indices]

    def __getitem__(self, i: int) -> PackedBatch:
        return assemble_packed(self.dataset, self._positions([i]))

    def __getitems__(self, indices: Sequence[int]) -> list:
        return _PackedItems(assemble_packed(self.dataset, self._positions(indices)))


def packed_loader(ds: Any, *, batch_size: int = 8, shuffle: bool = False,
                  **kwargs: Any) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` yielding :class:`PackedBatch` es of ``ds`` (built from its storage).

    Parameters
    ----------
    ds : NeuralDataset
    batch_size, shuffle, **kwargs
        Passed to ``torch.utils.data.DataLoader`` (``num_workers``,
        ``generator``, ``pin_memory``...); the ``collate_fn`` is
        :func:`packed_collate`.
    """
    import torch.utils.data

    if "collate_fn" in kwargs:
        raise TypeError("packed_loader always collates with packed_collate; use DataLoader "
                        "directly for another collate_fn.")
    return torch.utils.data.DataLoader(PackedView(ds), batch_size=batch_size, shuffle=shuffle,
                                       collate_fn=packed_collate, **kwargs)
