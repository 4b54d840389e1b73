"""NaN-aware training losses for predictions ``(B, N, 1, T)`` against responses ``(B, N, R, T)``.

The prediction is compared with every valid repeat (broadcast over ``R``);
padding never contributes to the loss and receives exactly zero gradient.
``target='psth'`` compares it with the PSTH instead, and ``pool='neurons'``
averages each neuron's mean over the neurons: with both, the numbers are those
of deepSTRF 0.1.0 (see ``docs/porting-from-deepstrf.md``).

Both losses are sums over repeats of a per-element term, and each collapses
exactly to a term per time bin: with ``n`` valid repeats of mean ``ybar`` and
sum ``s`` at a bin, ``sum_r (p - y_r)^2 = n (p - ybar)^2 + sum_r (y_r - ybar)^2``
and ``sum_r [p - y_r log p] = n p - s log p``. So the repeat axis is reduced
once, without gradient (by the same block statistics as the metrics), and the
graph only holds ``(B, N, 1, T)`` tensors: cheaper, and exact. The prediction
is masked with :func:`torch.where` before any arithmetic, so a NaN or an
overflow at a padded bin cannot reach the gradient (multiplying by a 0/1 mask
would turn ``0 * NaN`` into NaN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from deepstrf._validation import check_choice, check_positive
from deepstrf.metrics._masking import (
    LOSS_REDUCTIONS,
    check_pred_responses,
    fill_doc,
    flat_pairs,
    pair_slices,
)
from deepstrf.metrics.quality import BlockStats, block_stats, collect_pairs
from deepstrf.utils.packed import PackedBatch

__all__ = ["mse_loss", "poisson_loss"]

#: What the prediction is compared with: every valid repeat, or their mean (the PSTH).
LOSS_TARGETS = ("repeats", "psth")
#: How ``'mean'`` / ``'sum'`` combine: over all valid elements, or over per-neuron means.
LOSS_POOLS = ("elements", "neurons")


class _Target(NamedTuple):
    pred: torch.Tensor  # (B, N, 1, T) prediction, 0 at invalid bins
    keep: torch.Tensor  # (B, N, 1, T) bool, the bin is valid
    repeats: torch.Tensor  # (B, N, 1, T) number of valid repeats at the bin (0 if invalid)
    total: torch.Tensor  # (B, N, 1, T) sum of the valid repeats at the bin
    mean: torch.Tensor  # (B, N, 1, T) their mean, the PSTH (0 at invalid bins)
    spread: torch.Tensor  # (B, N) sum over valid elements of (y - PSTH)^2


def _pair_spread(stats: BlockStats) -> torch.Tensor:
    """Sum over the valid elements of a pair of ``(y[r, t] - PSTH[t])^2``, ``(K,)``.

    With ``c`` the responses centred on their repeat means ``m_r``, it is
    ``sum c^2 - sum_t (sum_r c)^2 / R + T sum_r (m_r - mean(m))^2``, all read
    from the block statistics.
    """
    reps = stats.n_rep.to(torch.float64)
    bins = stats.n_bins.to(torch.float64)
    grand = stats.rep_mean.sum(dim=-1) / reps.clamp(min=1)
    between = torch.where(stats.rep_valid, stats.rep_mean - grand.unsqueeze(-1), 0.0)
    spread = stats.trace - stats.total / reps.clamp(min=1) + bins * between.square().sum(dim=-1)
    return torch.where((stats.n_rep > 0) & (stats.n_bins > 0), spread.clamp(min=0), 0.0)


def _collapse_repeats(
    pred: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor | None
) -> _Target:
    """Reduce ``responses`` over valid repeats, per bin, in the prediction's dtype."""
    pred, responses = check_pred_responses(pred, responses)
    if not pred.dtype.is_floating_point:
        raise TypeError(f"pred must be a floating-point tensor; got dtype {pred.dtype}.")
    n_stims, n_neurons, _, n_time = responses.shape
    with torch.no_grad():
        flat, flat_mask = flat_pairs(responses, mask)

        def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
            return {
                "psth": stats.psth,
                "keep": stats.time_valid,
                "n_rep": stats.n_rep.to(torch.float64),
                "spread": _pair_spread(stats),
            }

        table = collect_pairs(flat, flat_mask, per_chunk)
    shape = (n_stims, n_neurons, 1, n_time)
    keep = table["keep"].reshape(shape)
    count = torch.where(keep, table["n_rep"].reshape(n_stims, n_neurons, 1, 1), 0.0)
    mean = table["psth"].reshape(shape)
    dtype = pred.dtype
    return _Target(
        pred=torch.where(keep, pred, 0.0),
        keep=keep,
        repeats=count.to(dtype),
        total=(mean * count).to(dtype),
        mean=mean.to(dtype),
        spread=table["spread"].reshape(n_stims, n_neurons).to(dtype),
    )


def _collapse_packed(pred: torch.Tensor, packed: PackedBatch) -> tuple[torch.Tensor, _Target]:
    """:func:`_collapse_repeats` of a packed batch, on the pairs present only.

    Returns ``(pair_index, target)``: the flat positions ``b * N + n`` of the
    K pairs present and their :class:`_Target` with ``(K, 1, T)`` tensors
    (``spread`` ``(K,)``). The repeats are reduced without gradient, one
    stimulus and repeat count at a time, over the stimulus's own length
    (never padded in repeats or time), straight into tables in the
    prediction's dtype; the prediction is gathered once, so the graph holds
    K rows instead of ``B * N``.
    """
    if not pred.dtype.is_floating_point:
        raise TypeError(f"pred must be a floating-point tensor; got dtype {pred.dtype}.")
    B, N, _, T = packed.shape
    index = packed.pair_index
    K = int(index.numel())
    device, dtype = pred.device, pred.dtype
    with torch.no_grad():
        keep = torch.zeros((K, T), dtype=torch.bool, device=device)
        count = torch.zeros((K, T), dtype=dtype, device=device)
        mean = torch.zeros((K, T), dtype=dtype, device=device)
        total = torch.zeros((K, T), dtype=dtype, device=device)
        spread = torch.zeros(K, dtype=dtype, device=device)
        reps, starts, pair_stim = packed.pair_reps, packed.pair_row_start, packed.pair_stim
        # pairs are grouped by stimulus: [bounds[b], bounds[b + 1]) are stimulus b's
        bounds = torch.searchsorted(pair_stim, torch.arange(B + 1)).tolist()
        stim_start = packed.stim_row_start
        for b in range(B):
            pa, pe = bounds[b], bounds[b + 1]
            if pe == pa:
                continue
            rows = packed.stim_rows(b).to(device)
            T_b = rows.shape[1]
            first = int(stim_start[b])
            for R in torch.unique(reps[pa:pe]).tolist():
                k = pa + torch.nonzero(reps[pa:pe] == R).reshape(-1)
                src = ((starts[k] - first).unsqueeze(1) + torch.arange(R)).reshape(-1)
                block = rows.index_select(0, src.to(device)).view(len(k), R, T_b)
                for sl in pair_slices(len(k), R * T_b):
                    st = block_stats(block[sl])
                    dst = k[sl].to(device)
                    c = torch.where(st.time_valid, st.n_rep.to(torch.float64).unsqueeze(1), 0.0)
                    keep[dst, :T_b] = st.time_valid
                    count[dst, :T_b] = c.to(dtype)
                    mean[dst, :T_b] = st.psth.to(dtype)
                    total[dst, :T_b] = (st.psth * c).to(dtype)
                    spread[dst] = _pair_spread(st).to(dtype)
    p = pred.reshape(B * N, T).index_select(0, index.to(device))
    keep = keep.unsqueeze(1)
    return index, _Target(
        pred=torch.where(keep, p.unsqueeze(1), 0.0),
        keep=keep,
        repeats=count.unsqueeze(1),
        total=total.unsqueeze(1),
        mean=mean.unsqueeze(1),
        spread=spread,
    )


def _pair_loss_terms(
    pred: torch.Tensor,
    responses: torch.Tensor | PackedBatch,
    mask: torch.Tensor | None,
    terms: Callable[[_Target], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    check: Callable[[_Target, torch.Tensor | None], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair loss sums and valid-element counts, ``(B, N)`` each.

    ``terms(target)`` gives the per-bin losses, their counts of valid
    elements and an optional per-pair constant; ``check(target, index)``
    inspects each target first (``index``: the pairs' flat positions, None
    for the dense batch). A packed batch is reduced on its pairs present
    (:func:`_collapse_packed`) and the sums scattered into the ``(B, N)``
    grid, where absent pairs hold 0 as in the dense batch.
    """
    pred, responses = check_pred_responses(pred, responses)
    if not isinstance(responses, PackedBatch):
        t = _collapse_repeats(pred, responses, mask)
        if check is not None:
            check(t, None)
        elements, count, constant = terms(t)
        per_pair = elements.sum(dim=(2, 3))
        if constant is not None:
            per_pair = per_pair + constant
        return per_pair, count.sum(dim=(2, 3))
    flat_pairs(responses, mask)  # refuses an explicit mask
    B, N = responses.B, responses.n_neurons
    index, t = _collapse_packed(pred, responses)
    index = index.to(pred.device)
    if check is not None:
        check(t, index)
    elements, count, constant = terms(t)
    values = elements.sum(dim=(1, 2))
    if constant is not None:
        values = values + constant
    per_pair = pred.new_zeros(B * N).index_add(0, index, values)
    counts = pred.new_zeros(B * N).index_add(0, index, count.sum(dim=(1, 2)).detach())
    return per_pair.view(B, N), counts.view(B, N)


def _reduce_loss(
    per_pair: torch.Tensor,
    count: torch.Tensor,
    reduction: str,
    pool: str = "elements",
) -> torch.Tensor:
    """Reduce per-pair loss sums ``(B, N)``, each summing ``count`` ``(B, N)`` valid elements.

    ``pool='neurons'``: ``'mean'`` / ``'sum'`` of the per-neuron means over the
    neurons that have data (NaN / 0 when none has).
    """
    if pool == "elements" and reduction == "sum":
        return per_pair.sum()
    if pool == "elements" and reduction == "mean":
        n_valid = count.sum()
        return torch.where(n_valid > 0, per_pair.sum() / n_valid.clamp(min=1), float("nan"))
    n_valid = count.sum(dim=0)
    per_neuron = per_pair.sum(dim=0) / n_valid.clamp(min=1)
    if reduction == "none":
        return torch.where(n_valid > 0, per_neuron, float("nan"))
    kept = per_neuron[n_valid > 0]
    if reduction == "sum":
        return kept.sum()
    return kept.mean() if kept.numel() else per_neuron.new_full((), float("nan"))


def _check_options(reduction: str, target: str, pool: str) -> None:
    check_choice("reduction", reduction, LOSS_REDUCTIONS)
    check_choice("target", target, LOSS_TARGETS)
    check_choice("pool", pool, LOSS_POOLS)


@fill_doc
def mse_loss(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    *,
    target: str = "repeats",
    pool: str = "elements",
) -> torch.Tensor:
    """Mean squared error between the prediction and every valid repeat.

    ``(pred[b, n, 0, t] - responses[b, n, r, t])^2`` over the valid elements.
    Against ``R`` repeats this equals the squared error against the PSTH plus
    the (prediction-independent) trial-to-trial variance, so its minimiser is
    the PSTH. ``target='psth'`` gives ``(pred - PSTH)^2`` per valid bin
    instead (the same minimiser and gradient direction, but each bin counts
    once whatever its number of repeats).

    Parameters
    ----------
    %(pred)s
    %(responses)s
    %(mask)s
    %(loss_reduction)s
    %(loss_target)s
    %(loss_pool)s

    Returns
    -------
    Tensor
        A scalar, or ``(N,)`` for ``reduction='none'``, in the prediction's
        dtype; differentiable with respect to ``pred``.

    Notes
    -----
    %(validity)s
    """
    _check_options(reduction, target, pool)

    def terms(t: _Target) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if target == "psth":
            return (torch.where(t.keep, (t.pred - t.mean).square(), 0.0),
                    t.keep.to(t.pred.dtype), None)
        return torch.where(t.keep, t.repeats * (t.pred - t.mean).square(), 0.0), t.repeats, \
            t.spread

    per_pair, count = _pair_loss_terms(pred, responses, mask, terms)
    return _reduce_loss(per_pair, count, reduction, pool=pool)


@fill_doc
def poisson_loss(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    log_input: bool = False,
    validate_input: bool = False,
    eps: float = 1e-8,
    *,
    target: str = "repeats",
    pool: str = "elements",
) -> torch.Tensor:
    """Poisson negative log-likelihood of every valid repeat, without the ``log(y!)`` term.

    With ``log_input=False`` the prediction is the rate ``lambda`` and the
    element loss is ``lambda - y * log(max(lambda, 0) + eps)``; keep the
    prediction non-negative (softplus or exp output), since below 0 only the
    linear term remains. With ``log_input=True`` the prediction is the
    log-rate ``eta`` and the element loss is ``exp(eta) - y * eta``, valid
    for any real ``eta``. The dropped ``log(y!)`` term does not depend on the
    prediction. ``target='psth'`` uses the PSTH ``ybar`` as the count of
    each valid bin, ``lambda - ybar * log(...)``, each bin counting once.

    Parameters
    ----------
    %(pred)s
    %(responses)s
    %(mask)s
    %(loss_reduction)s
    log_input : bool, default False
        Whether ``pred`` is the log-rate rather than the rate.
    validate_input : bool, default False
        With ``log_input=False``, raise ``ValueError`` if the prediction is
        negative at a valid bin, instead of letting only the linear term act
        there. It reads the prediction back (a device synchronisation per
        call). Ignored with ``log_input=True``, where any real value is valid.
    eps : float, default 1e-8
        Added to the rate inside the logarithm (``log_input=False``) so a zero
        rate gives a finite loss.
    %(loss_target)s
    %(loss_pool)s

    Returns
    -------
    Tensor
        A scalar, or ``(N,)`` for ``reduction='none'``, in the prediction's
        dtype; differentiable with respect to ``pred``.

    Notes
    -----
    %(validity)s
    """
    _check_options(reduction, target, pool)
    for name, flag in (("log_input", log_input), ("validate_input", validate_input)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}.")
    eps = check_positive("eps", eps, allow_zero=True)

    def check(t: _Target, index: torch.Tensor | None) -> None:
        if not validate_input or log_input:
            return
        with torch.no_grad():
            negative = t.keep & (t.pred < 0)
            n_negative = int(negative.sum())
        if n_negative:
            where = negative.nonzero()[0]
            if index is None:
                b, n, _, k = (int(i) for i in where)
            else:
                n_neurons = pred.shape[1]
                flat, k = int(index[where[0]]), int(where[2])
                b, n = divmod(flat, n_neurons)
            raise ValueError(
                f"poisson_loss(log_input=False, validate_input=True): pred is negative at "
                f"{n_negative} valid bin(s), e.g. pred[{b}, {n}, 0, {k}] = "
                f"{float(pred[b, n, 0, k]):g}; a rate must be >= 0. Use a non-negative output "
                f"(softplus, exp), or pass log_input=True if pred is a log-rate.")

    def terms(t: _Target) -> tuple[torch.Tensor, torch.Tensor, None]:
        if target == "psth":
            count, total = t.keep.to(t.pred.dtype), t.mean
        else:
            count, total = t.repeats, t.total
        if log_input:
            elements = count * torch.exp(t.pred) - total * t.pred
        else:
            elements = count * t.pred - total * torch.log(t.pred.clamp(min=0) + eps)
        return torch.where(t.keep, elements, 0.0), count, None

    per_pair, count = _pair_loss_terms(pred, responses, mask, terms, check)
    return _reduce_loss(per_pair, count, reduction, pool=pool)
