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

from typing import NamedTuple

import torch

from deepstrf._validation import check_choice, check_positive
from deepstrf.metrics._masking import (
    LOSS_REDUCTIONS,
    check_pred_responses,
    fill_doc,
    flat_pairs,
)
from deepstrf.metrics.quality import BlockStats, collect_pairs

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


def _reduce_loss(
    elements: torch.Tensor,
    count: torch.Tensor,
    reduction: str,
    constant: torch.Tensor | None = None,
    pool: str = "elements",
) -> torch.Tensor:
    """Reduce per-bin losses ``(B, N, 1, T)``, each summing ``count`` valid elements.

    ``constant`` ``(B, N)`` holds prediction-independent terms added per pair.
    ``pool='neurons'``: ``'mean'`` / ``'sum'`` of the per-neuron means over the
    neurons that have data (NaN / 0 when none has).
    """
    per_pair = elements.sum(dim=(2, 3))
    if constant is not None:
        per_pair = per_pair + constant
    if pool == "elements" and reduction == "sum":
        return per_pair.sum()
    if pool == "elements" and reduction == "mean":
        n_valid = count.sum()
        return torch.where(n_valid > 0, per_pair.sum() / n_valid.clamp(min=1), float("nan"))
    n_valid = count.sum(dim=(0, 2, 3))
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
    t = _collapse_repeats(pred, responses, mask)
    if target == "psth":
        count = t.keep.to(t.pred.dtype)
        elements = torch.where(t.keep, (t.pred - t.mean).square(), 0.0)
        return _reduce_loss(elements, count, reduction, pool=pool)
    elements = torch.where(t.keep, t.repeats * (t.pred - t.mean).square(), 0.0)
    return _reduce_loss(elements, t.repeats, reduction, constant=t.spread, pool=pool)


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
    t = _collapse_repeats(pred, responses, mask)
    if validate_input and not log_input:
        with torch.no_grad():
            negative = t.keep & (t.pred < 0)
            n_negative = int(negative.sum())
        if n_negative:
            b, n, _, k = (int(i) for i in negative.nonzero()[0])
            raise ValueError(
                f"poisson_loss(log_input=False, validate_input=True): pred is negative at "
                f"{n_negative} valid bin(s), e.g. pred[{b}, {n}, 0, {k}] = "
                f"{float(pred[b, n, 0, k]):g}; a rate must be >= 0. Use a non-negative output "
                f"(softplus, exp), or pass log_input=True if pred is a log-rate.")
    if target == "psth":
        count, total = t.keep.to(t.pred.dtype), t.mean
    else:
        count, total = t.repeats, t.total
    if log_input:
        elements = count * torch.exp(t.pred) - total * t.pred
    else:
        elements = count * t.pred - total * torch.log(t.pred.clamp(min=0) + eps)
    elements = torch.where(t.keep, elements, 0.0)
    return _reduce_loss(elements, count, reduction, pool=pool)
