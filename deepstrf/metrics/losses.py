"""NaN-aware training losses for predictions ``(B, N, 1, T)`` against responses ``(B, N, R, T)``.

The prediction is compared with every valid repeat (broadcast over ``R``);
padding never contributes to the loss and receives exactly zero gradient.

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
) -> torch.Tensor:
    """Reduce per-bin losses ``(B, N, 1, T)``, each summing ``count`` valid elements.

    ``constant`` ``(B, N)`` holds prediction-independent terms added per pair.
    """
    per_pair = elements.sum(dim=(2, 3))
    if constant is not None:
        per_pair = per_pair + constant
    if reduction == "sum":
        return per_pair.sum()
    if reduction == "mean":
        n_valid = count.sum()
        return torch.where(n_valid > 0, per_pair.sum() / n_valid.clamp(min=1), float("nan"))
    n_valid = count.sum(dim=(0, 2, 3))
    per_neuron = per_pair.sum(dim=0) / n_valid.clamp(min=1)
    return torch.where(n_valid > 0, per_neuron, float("nan"))


@fill_doc
def mse_loss(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean squared error between the prediction and every valid repeat.

    ``(pred[b, n, 0, t] - responses[b, n, r, t])^2`` over the valid elements.
    Against ``R`` repeats this equals the squared error against the PSTH plus
    the (prediction-independent) trial-to-trial variance, so its minimiser is
    the PSTH.

    Parameters
    ----------
    %(pred)s
    %(responses)s
    %(mask)s
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'``: mean over all valid elements (NaN if there is none);
        ``'sum'``: their sum; ``'none'``: ``(N,)``, each neuron's mean over its
        valid elements (NaN for a neuron without any).

    Returns
    -------
    Tensor
        A scalar, or ``(N,)`` for ``reduction='none'``, in the prediction's
        dtype; differentiable with respect to ``pred``.

    Notes
    -----
    %(validity)s
    """
    check_choice("reduction", reduction, LOSS_REDUCTIONS)
    t = _collapse_repeats(pred, responses, mask)
    elements = torch.where(t.keep, t.repeats * (t.pred - t.mean).square(), 0.0)
    return _reduce_loss(elements, t.repeats, reduction, constant=t.spread)


@fill_doc
def poisson_loss(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    log_input: bool = False,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Poisson negative log-likelihood of every valid repeat, without the ``log(y!)`` term.

    With ``log_input=False`` the prediction is the rate ``lambda`` and the
    element loss is ``lambda - y * log(max(lambda, 0) + eps)``; keep the
    prediction non-negative (softplus or exp output), since below 0 only the
    linear term remains. With ``log_input=True`` the prediction is the
    log-rate ``eta`` and the element loss is ``exp(eta) - y * eta``, valid
    for any real ``eta``. The dropped ``log(y!)`` term does not depend on the
    prediction.

    Parameters
    ----------
    %(pred)s
    %(responses)s
    %(mask)s
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'``: mean over all valid elements (NaN if there is none);
        ``'sum'``: their sum; ``'none'``: ``(N,)``, each neuron's mean over its
        valid elements (NaN for a neuron without any).
    log_input : bool, default False
        Whether ``pred`` is the log-rate rather than the rate.
    eps : float, default 1e-8
        Added to the rate inside the logarithm (``log_input=False``) so a zero
        rate gives a finite loss.

    Returns
    -------
    Tensor
        A scalar, or ``(N,)`` for ``reduction='none'``, in the prediction's
        dtype; differentiable with respect to ``pred``.

    Notes
    -----
    %(validity)s
    """
    check_choice("reduction", reduction, LOSS_REDUCTIONS)
    if not isinstance(log_input, bool):
        raise TypeError(f"log_input must be True or False; got {log_input!r}.")
    eps = check_positive("eps", eps, allow_zero=True)
    t = _collapse_repeats(pred, responses, mask)
    if log_input:
        elements = t.repeats * torch.exp(t.pred) - t.total * t.pred
    else:
        elements = t.repeats * t.pred - t.total * torch.log(t.pred.clamp(min=0) + eps)
    elements = torch.where(t.keep, elements, 0.0)
    return _reduce_loss(elements, t.repeats, reduction)
