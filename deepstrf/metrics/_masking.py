"""Shared helpers of :mod:`deepstrf.metrics`: input checks, validity masks, reductions.

Conventions (see ``docs/metrics.md``):

- predictions are ``(B, N, 1, T)`` and responses ``(B, N, R, T)``, as
  :func:`deepstrf.utils.data.neural_collate` makes them;
- NaN marks missing data unless a boolean ``mask`` (True = valid) is given,
  which then replaces the NaN test entirely;
- a repeat of a (stim, neuron) pair is valid if it has any valid bin, and a
  time bin is valid if it is valid in every valid repeat of that pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from deepstrf._validation import check_choice
from deepstrf.utils.packed import PackedBatch

__all__ = [
    "METRIC_REDUCTIONS",
    "LOSS_REDUCTIONS",
    "check_tensor",
    "check_rank",
    "check_pred_responses",
    "check_responses",
    "resolve_valid",
    "flat_pairs",
    "valid_structure",
    "reduce_over_neurons",
    "output_dtype",
    "zero_variance",
    "pair_slices",
    "fill_doc",
]

#: Reductions over neurons accepted by the metrics.
METRIC_REDUCTIONS = ("none", "mean", "sum", "median")
#: Reductions accepted by the losses.
LOSS_REDUCTIONS = ("none", "mean", "sum")

# A centred sum of squares below this fraction of the raw sum of squares is
# rounding noise (the spread is < 1e-10 of the signal's RMS), so the variance
# is treated as exactly zero; without it a constant input gives a random
# correlation instead of NaN.
_ZERO_VAR_RTOL = 1e-20

# Elements per chunk when looping over (stim, neuron) pairs: bounds the
# float64 temporaries to about 8 MB whatever the batch size, which also keeps
# them cache-friendly and reusable by the allocator (bigger chunks measured
# 2x slower on CPU).
_CHUNK_ELEMENTS = 1 << 20


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a real-valued tensor, else raise ``TypeError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor; got {type(value).__name__}. "
            f"Convert it with torch.as_tensor(...)."
        )
    if value.is_complex():
        raise TypeError(f"{name} must be real-valued; got dtype {value.dtype}.")
    return value


def check_rank(name: str, value: torch.Tensor, layout: str) -> None:
    """Check ``value`` has one axis per letter of ``layout`` (e.g. ``'BNRT'``)."""
    if value.dim() != len(layout):
        axes = ", ".join(layout)
        raise ValueError(
            f"{name} must be a {len(layout)}-D tensor ({axes}); got shape "
            f"{tuple(value.shape)} ({value.dim()}-D)."
        )


def check_responses(responses: object) -> torch.Tensor | PackedBatch:
    """Check batch responses: a ``(B, N, R, T)`` tensor or a :class:`PackedBatch`."""
    if isinstance(responses, PackedBatch):
        return responses
    responses = check_tensor("responses", responses)
    check_rank("responses", responses, "BNRT")
    return responses


def check_pred_responses(pred: object, responses: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a prediction ``(B, N, 1, T)`` against responses ``(B, N, R, T)`` (or packed)."""
    pred = check_tensor("pred", pred)
    responses = check_responses(responses)
    check_rank("pred", pred, "BN1T")
    if pred.shape[2] != 1:
        raise ValueError(
            f"pred must have a single repeat, shape (B, N, 1, T); got shape "
            f"{tuple(pred.shape)}. Predict the trial-averaged rate, or take "
            f"pred.mean(dim=2, keepdim=True)."
        )
    if pred.device != responses.device:
        raise ValueError(
            f"pred and responses must be on the same device; got {pred.device} and "
            f"{responses.device}. Move one with .to(...)."
        )
    for axis, label in ((0, "B"), (1, "N"), (3, "T")):
        if pred.shape[axis] != responses.shape[axis]:
            raise ValueError(
                f"pred and responses must agree on {label} (axis {axis}); got pred "
                f"{tuple(pred.shape)} and responses {tuple(responses.shape)}."
            )
    return pred, responses


def resolve_valid(responses: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Return the boolean validity of every element of ``responses``.

    Without ``mask`` an element is valid when it is not NaN. A ``mask`` (bool,
    same shape as ``responses`` or broadcastable to it) replaces that test: an
    element it marks valid is used as is, so a NaN there makes the result NaN.
    """
    if mask is None:
        return ~torch.isnan(responses)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a bool torch.Tensor or None; got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must have dtype torch.bool (True = valid); got {mask.dtype}. "
            f"Use mask.bool() or a comparison such as mask > 0."
        )
    try:
        expanded = mask.to(responses.device).expand(responses.shape)
    except RuntimeError as err:
        raise ValueError(
            f"mask must have the shape of responses {tuple(responses.shape)} or be "
            f"broadcastable to it; got shape {tuple(mask.shape)}."
        ) from err
    return expanded


def flat_pairs(
    responses: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flatten ``(B, N, R, T)`` responses (and an explicit mask) to ``(B*N, R, T)`` pairs.

    A :class:`PackedBatch` is returned as is (``collect_pairs`` reduces its
    pairs directly); it carries its validity, the NaN test on its values, so
    it takes no ``mask``.
    """
    if isinstance(responses, PackedBatch):
        if mask is not None:
            raise ValueError("a PackedBatch holds only real rows and its validity is the NaN "
                             "test on them; pass mask=None (batch['valid_mask'] of a packed "
                             "batch is None).")
        return responses, None
    n_stims, n_neurons, n_rep, n_time = responses.shape
    flat = responses.reshape(n_stims * n_neurons, n_rep, n_time)
    if mask is None:
        return flat, None
    valid = resolve_valid(responses, mask)
    return flat, valid.reshape(n_stims * n_neurons, n_rep, n_time)


def valid_structure(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce an element mask ``(..., R, T)`` to repeat and time validity.

    Returns ``rep_valid (..., R)`` (the repeat has a valid bin) and
    ``time_valid (..., T)`` (the bin is valid in every valid repeat, and
    there is at least one). The elements a metric uses are their outer
    product; an invalid repeat has no valid element, so zero-filling the
    invalid elements and then masking the invalid bins selects exactly those.
    """
    # uint8 reductions: several times faster than bool any/all on CPU.
    as_bytes = valid.view(torch.uint8)
    rep_valid = as_bytes.amax(dim=-1).bool() if valid.shape[-1] else valid.any(dim=-1)
    n_rep = rep_valid.sum(dim=-1, keepdim=True)
    counts = as_bytes.sum(dim=-2, dtype=torch.int32)
    time_valid = (counts == n_rep) & (n_rep > 0)
    return rep_valid, time_valid


def output_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Floating dtype of a metric's result: that of the inputs, or the default float."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def zero_variance(m2: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """True where a centred sum of squares ``m2`` is rounding noise.

    ``raw`` is the uncentred sum of squares of the same values
    (``m2 + count * mean**2``).
    """
    return m2 <= _ZERO_VAR_RTOL * raw


def reduce_over_neurons(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a per-neuron tensor ``(N,)`` with ``'none' | 'mean' | 'sum' | 'median'``.

    NaN entries (neurons without enough data) are ignored; a reduction over no
    non-NaN value gives NaN. Infinite values take part (an SNR of ``+inf``
    makes the mean ``+inf``). The median of an even count averages the two
    middle values, like :func:`numpy.nanmedian`.
    """
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    if reduction == "none":
        return values
    kept = values[~torch.isnan(values)]
    if kept.numel() == 0:
        return values.new_full((), float("nan"))
    if reduction == "mean":
        return kept.mean()
    if reduction == "sum":
        return kept.sum()
    ordered = kept.sort().values
    mid = ordered.numel() // 2
    if ordered.numel() % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def pair_slices(n_pairs: int, elements_per_pair: int) -> Iterator[slice]:
    """Slices of the pair axis, each covering at most a few million elements."""
    step = max(1, _CHUNK_ELEMENTS // max(1, elements_per_pair))
    for start in range(0, n_pairs, step):
        yield slice(start, min(start + step, n_pairs))


# Parameter descriptions shared by the public functions, written once and
# inserted with ``%(name)s`` by :func:`fill_doc`.
_DOC_PARAMS = {
    "pred": """pred : Tensor
        Prediction ``(B, N, 1, T)``: one time course per stimulus and neuron.
        Values at invalid bins are ignored.""",
    "responses": """responses : Tensor or PackedBatch
        Responses ``(B, N, R, T)`` as :func:`~deepstrf.utils.data.neural_collate`
        makes them: repeats and time bins NaN-padded, an all-NaN ``(b, n)`` pair
        for a stimulus the neuron never heard. Or the same batch packed
        (:class:`~deepstrf.utils.packed.PackedBatch`, from
        :func:`~deepstrf.utils.data.packed_collate`): the result is the dense
        one's, computed on the real rows only (``mask`` must then be None).""",
    "mask": """mask : Tensor or None, default None
        Boolean validity (True = valid) with the shape of ``responses`` or
        broadcastable to it. It replaces the NaN test: an element it marks
        valid is used even if NaN, and then makes the result NaN.""",
    "reduction": """reduction : {'mean', 'none', 'sum', 'median'}, default 'mean'
        How to combine the per-neuron values: ``'none'`` returns them ``(N,)``;
        the others ignore NaN neurons and give NaN when none is left.""",
    "loss_reduction": """reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'``: mean over all valid elements (NaN if there is none);
        ``'sum'``: their sum; ``'none'``: ``(N,)``, each neuron's mean over its
        valid elements (NaN for a neuron without any). ``pool`` changes what
        ``'mean'`` and ``'sum'`` combine.""",
    "loss_target": """target : {'repeats', 'psth'}, default 'repeats'
        Compare the prediction with every valid repeat (each valid element
        counts), or with the PSTH, the mean of the valid repeats (each valid
        bin counts once), as deepSTRF 0.1.0 does.""",
    "loss_pool": """pool : {'elements', 'neurons'}, default 'elements'
        ``'elements'``: ``'mean'`` and ``'sum'`` run over all valid elements
        (bins with ``target='psth'``) together, so a neuron weighs by its
        amount of data. ``'neurons'``: each neuron's mean is taken first, then
        their mean or sum over the neurons that have data (``'mean'`` of none
        is NaN, ``'sum'`` of none 0), as deepSTRF 0.1.0 does. ``target='psth',
        pool='neurons'`` gives deepSTRF's numbers.""",
    "validity": """A repeat of a (stimulus, neuron) pair is valid if it has a valid bin; a
    time bin is valid if it is valid in every valid repeat of the pair.""",
    "dtype": """The result has the floating dtype of the inputs (computations run in
    float64) and lives on their device.""",
}

_F = TypeVar("_F", bound=Callable[..., object])


def fill_doc(func: _F) -> _F:
    """Insert the shared parameter descriptions into ``func.__doc__``."""
    if func.__doc__:
        func.__doc__ = func.__doc__ % _DOC_PARAMS
    return func
