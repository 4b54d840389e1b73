"""Per-neuron response quality from repeated trials: SP, NP, SNR, CCmax, TTRC.

This module holds the one implementation of the repeat-based statistics. It
works on *blocks*: ``K`` (stimulus, neuron) pairs with their repeats,
``(K, R, T)``, repeats NaN-padded. :func:`block_stats` reduces a block to a
few small per-pair tensors (the repeat means, the PSTH, centred sums of
squares and, when CCmax or TTRC need it, the covariance of every pair of
repeats); the statistics are computed from those. The batch metrics of
:mod:`deepstrf.metrics.performance` flatten their ``(B, N, R, T)`` input to
pairs and call the same functions, and :class:`NeuronQualityAccumulator`
feeds one stimulus at a time, so the two agree exactly.

Aggregation over stimuli is length-weighted: a pair's contribution is
weighted by its number of valid time bins ``T_bn``. SP and NP are weighted
averages of per-stimulus values; CCmax is not an average of per-stimulus
ceilings but is computed from the weighted sums of its half-split signal
and noise moments, the way the noise-corrected correlation pools its
covariances. See ``docs/metrics.md`` for the formulas, their sources and the
degenerate cases.

References
----------
Sahani M, Linden JF (2003). How linear are auditory cortical responses?
NIPS 15, 109-116.

Hsu A, Borst A, Theunissen FE (2004). Quantifying variability in neural
responses and its application for the validation of model predictions.
Network: Comput Neural Syst 15:91-109. doi:10.1088/0954-898X_15_2_002
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from deepstrf._validation import check_int
from deepstrf.metrics._masking import (
    check_rank,
    check_tensor,
    pair_slices,
    valid_structure,
    zero_variance,
)
from deepstrf.utils.packed import PackedBatch

__all__ = [
    "BlockStats",
    "NeuronQualityAccumulator",
    "block_stats",
    "collect_pairs",
    "signal_noise_from_stats",
    "ccmax_moments_from_stats",
    "ccmax_from_moments",
    "ttrc_from_stats",
    "half_splits",
    "weighted_mean",
    "weighted_terms",
    "snr_from_powers",
]

# Noise power below this fraction of the total power is rounding noise from
# identical repeats; it is set to exactly 0 so that SNR is +inf, not ~1e16.
_NOISE_RTOL = 1e-12


class BlockStats(NamedTuple):
    """Per-pair summaries of a block of responses ``(K, R, T)``, float64 or bool.

    Attributes
    ----------
    rep_valid : Tensor
        ``(K, R)`` bool, the repeat has a valid bin.
    time_valid : Tensor
        ``(K, T)`` bool, the bin is valid in every valid repeat.
    n_rep, n_bins : Tensor
        ``(K,)`` int64, number of valid repeats and of valid bins.
    rep_mean : Tensor
        ``(K, R)`` mean of each repeat over the valid bins (0 for invalid repeats).
    psth : Tensor
        ``(K, T)`` mean over valid repeats, 0 at invalid bins.
    trace : Tensor
        ``(K,)`` sum over valid repeats and bins of the squared centred
        responses (each repeat about its own mean).
    total : Tensor
        ``(K,)`` sum over valid bins of the squared sum over repeats of the
        centred responses.
    gram : Tensor or None
        ``(K, R, R)`` sums over valid bins of the products of the centred
        repeats (``gram / (n_bins - 1)`` is the repeat covariance matrix; rows
        of invalid repeats are 0), when asked for. ``trace`` and ``total`` are
        its trace and the sum of its entries.
    """

    rep_valid: torch.Tensor
    time_valid: torch.Tensor
    n_rep: torch.Tensor
    n_bins: torch.Tensor
    rep_mean: torch.Tensor
    psth: torch.Tensor
    trace: torch.Tensor
    total: torch.Tensor
    gram: torch.Tensor | None


def block_stats(
    block: torch.Tensor, mask: torch.Tensor | None = None, *, gram: bool = False
) -> BlockStats:
    """Summarise a block of responses ``(K, R, T)``.

    ``mask`` is None (NaN = missing) or a bool tensor of the block's shape
    (True = valid), which replaces the NaN test. ``gram=True`` also computes
    the repeat-by-repeat matrix needed by CCmax and TTRC.
    """
    # In-place on a private float64 copy: this is the hot loop of every metric.
    x = block.to(torch.float64, copy=True)
    if mask is None:
        valid = ~torch.isnan(x)
        x.nan_to_num_(nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    else:
        valid = mask
        x.masked_fill_(~mask, 0.0)
    rep_valid, time_valid = valid_structure(valid)
    n_rep = rep_valid.sum(dim=-1)
    n_bins = time_valid.sum(dim=-1)
    # Invalid repeats are all zero now; zeroing the invalid bins leaves
    # exactly the elements in a valid repeat and a valid bin.
    keep = time_valid.to(torch.float64).unsqueeze(1)
    x.mul_(keep)
    psth = x.sum(dim=1) / n_rep.clamp(min=1).unsqueeze(-1)
    rep_mean = x.sum(dim=-1) / n_bins.clamp(min=1).unsqueeze(-1)
    centred = x.sub_(rep_mean.unsqueeze(-1)).mul_(keep)
    if gram:
        cov = centred @ centred.transpose(1, 2)
        trace = cov.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
        total = cov.sum(dim=(-2, -1))
    else:
        cov = None
        trace = torch.linalg.vector_norm(centred, dim=(1, 2)).square()
        total = centred.sum(dim=1).square().sum(dim=-1)
    return BlockStats(rep_valid, time_valid, n_rep, n_bins, rep_mean, psth, trace, total, cov)


def collect_pairs(
    responses: torch.Tensor,
    mask: torch.Tensor | None,
    per_chunk: Callable[[BlockStats, slice], dict[str, torch.Tensor]],
    *,
    gram: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``per_chunk`` on the stats of successive chunks of pairs and concatenate.

    ``responses`` is ``(K, R, T)``; ``mask`` is None (NaN = missing) or a bool
    tensor of the same shape. ``per_chunk(stats, sl)`` gets the
    :class:`BlockStats` of pairs ``sl`` (with ``gram`` if asked) and returns a
    dict of tensors with ``len(sl)`` rows; the result holds each key's
    concatenation over all ``K`` pairs. Chunking keeps the float64
    temporaries small.

    ``responses`` may also be a :class:`~deepstrf.utils.packed.PackedBatch`
    (with ``mask=None``): the result is then that of its dense ``(B*N, R,
    T)`` pairs, computed on the pairs present only (see
    :func:`_collect_packed`).
    """
    if isinstance(responses, PackedBatch):
        return _collect_packed(responses, per_chunk, gram=gram)
    n_pairs, n_rep, n_time = responses.shape
    parts: dict[str, list[torch.Tensor]] = {}
    # An empty input still goes through once so every key is present.
    slices = list(pair_slices(n_pairs, n_rep * n_time)) or [slice(0, 0)]
    for sl in slices:
        chunk_mask = None if mask is None else mask[sl]
        stats = block_stats(responses[sl], chunk_mask, gram=gram)
        for key, value in per_chunk(stats, sl).items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}


def _collect_packed(
    packed: PackedBatch,
    per_chunk: Callable[[BlockStats, torch.Tensor], dict[str, torch.Tensor]],
    *,
    gram: bool,
) -> dict[str, torch.Tensor]:
    """:func:`collect_pairs` of a packed batch's dense pairs, from the real rows only.

    The pairs present are reduced in groups of equal repeat count (padded in
    time to ``T_max`` as the dense batch is, never in repeats: an invalid
    repeat slot adds nothing to any statistic), and ``per_chunk`` gets their
    flat positions ``b * N + n`` instead of a slice, so it indexes a dense
    prediction the same way. Every absent pair of the dense batch is all NaN,
    so they all share one result, computed once on an all-NaN pair: the
    per-chunk functions of the metrics mask the prediction by validity
    before using it, so a pair without data never depends on it.
    """
    B, N, _, T = packed.shape
    n_total = B * N
    covered = torch.zeros(n_total, dtype=torch.bool)
    parts: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
    for index, block in packed.repeat_groups(T):
        n_pairs, n_rep, _ = block.shape
        for sl in pair_slices(n_pairs, n_rep * T):
            idx = index[sl]
            parts.append((idx, per_chunk(block_stats(block[sl], None, gram=gram), idx)))
        covered[index] = True
    missing = torch.nonzero(~covered).reshape(-1)
    template = None
    if len(missing) or not parts:
        empty = torch.full((1, 1, T), float("nan"), dtype=packed.dtype, device=packed.device)
        template = per_chunk(block_stats(empty, None, gram=gram), missing[:1])
    first = parts[0][1] if parts else template
    out: dict[str, torch.Tensor] = {}
    for key, value in first.items():
        table = value.new_empty((n_total, *value.shape[1:]))
        if template is not None:
            table[missing] = template[key]
        for idx, values in parts:
            table[idx.to(table.device)] = values[key]
        out[key] = table
    return out


def _constant_pairs(stats: BlockStats) -> torch.Tensor:
    """``(K,)`` bool: the valid repeats of the pair are constant over its valid bins.

    Their centred values are then rounding noise, so every power derived from
    them is set to exactly 0.
    """
    bins = stats.n_bins.to(torch.float64)
    raw = stats.trace + bins * stats.rep_mean.square().sum(dim=-1)
    return zero_variance(stats.trace, raw)


def signal_noise_from_stats(stats: BlockStats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sahani & Linden (2003) signal and noise power of each pair, with its weight.

    For a pair with ``R >= 2`` valid repeats and ``T >= 2`` valid bins::

        SP = (R Var(PSTH) - mean_r Var(r_r)) / (R - 1)
        NP = mean_r Var(r_r) - SP

    with unbiased variances over the valid bins. Written with the repeat
    covariance matrix ``C``, ``SP`` is the mean of its off-diagonal entries and
    ``mean_r Var(r_r)`` the mean of its diagonal. Returns ``(sp, np, weight)``,
    each ``(K,)``: NaN and weight 0 for pairs that do not qualify, weight
    ``T`` otherwise.
    """
    return _powers(stats.n_rep, stats.n_bins, stats.trace, stats.total, _constant_pairs(stats))


def _powers(n_rep: torch.Tensor, n_bins: torch.Tensor, trace: torch.Tensor, total: torch.Tensor,
            flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sp, np, weight)`` of :func:`signal_noise_from_stats` from each pair's sums.

    ``trace`` and ``total`` are those of :class:`BlockStats`; ``flat`` marks
    pairs whose valid repeats are constant (every power is then 0).
    """
    reps = n_rep.to(torch.float64)
    bins = n_bins.to(torch.float64)
    ok = (n_rep >= 2) & (n_bins >= 2)
    dof = (bins - 1).clamp(min=1)
    # Constant repeats: every power is 0, so SP = NP = 0 and SNR is NaN.
    trace = torch.where(flat, 0.0, trace)
    total = torch.where(flat, 0.0, total)
    total_power = trace / dof / reps.clamp(min=1)
    sp = (total - trace) / dof / (reps * (reps - 1)).clamp(min=1)
    np_ = total_power - sp
    np_ = torch.where(np_.abs() <= _NOISE_RTOL * total_power.abs(), 0.0, np_)
    nan = torch.full_like(sp, float("nan"))
    weight = torch.where(ok, bins, 0.0)
    return torch.where(ok, sp, nan), torch.where(ok, np_, nan), weight


def _require_gram(stats: BlockStats) -> torch.Tensor:
    if stats.gram is None:
        raise ValueError("these statistics need the repeat matrix; build them with "
                         "block_stats(..., gram=True).")
    return stats.gram


def _split_seed(seed: int, n_items: int) -> int:
    # One stream per (seed, repeat count): the splits of a given repeat count
    # do not depend on which stimuli or blocks came before.
    return (seed * 1_000_003 + n_items) % (1 << 63)


@functools.lru_cache(maxsize=64)
def _half_splits_cached(n_items: int, max_iters: int, seed: int) -> torch.Tensor:
    half = n_items // 2
    n_distinct = math.comb(n_items, half) // 2
    # Canonical form of a split: the half that holds item 0, so a split and its
    # mirror image are the same split.
    if n_distinct <= 4 * max_iters:
        rows = [(0, *rest) for rest in itertools.combinations(range(1, n_items), half - 1)]
        if n_distinct > max_iters:
            gen = torch.Generator().manual_seed(_split_seed(seed, n_items))
            pick = torch.randperm(n_distinct, generator=gen)[:max_iters].sort().values
            rows = [rows[i] for i in pick.tolist()]
    else:
        gen = torch.Generator().manual_seed(_split_seed(seed, n_items))
        seen: set[tuple[int, ...]] = set()
        rows = []
        while len(rows) < max_iters:
            perms = torch.rand((max_iters, n_items), generator=gen).argsort(dim=1)
            for perm in perms.tolist():
                first = perm[:half] if 0 in perm[:half] else perm[half:]
                key = tuple(sorted(first))
                if key not in seen:
                    seen.add(key)
                    rows.append(key)
                    if len(rows) == max_iters:
                        break
    members = torch.zeros((len(rows), n_items), dtype=torch.float64)
    for i, row in enumerate(rows):
        members[i, list(row)] = 1.0
    return members


def half_splits(n_items: int, max_iters: int, seed: int = 0) -> torch.Tensor:
    """Distinct splits of ``n_items`` (even) repeats into two equal halves.

    Returns a float64 ``(S, n_items)`` 0/1 matrix, row ``s`` marking the first
    half of split ``s`` (the half that holds repeat 0; the complement is the
    second half). When the number of distinct splits ``C(n, n/2) / 2`` is at
    most ``max_iters`` all of them are listed (``n = 10`` gives exactly 126);
    otherwise ``max_iters`` distinct splits are drawn from a
    :class:`torch.Generator` seeded from ``(seed, n_items)``, so the draw is
    reproducible and the same wherever that repeat count occurs.
    """
    n_items = check_int("n_items", n_items, minimum=2)
    if n_items % 2:
        raise ValueError(f"n_items must be even; got {n_items}. Drop one repeat first.")
    max_iters = check_int("max_iters", max_iters, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    return _half_splits_cached(n_items, max_iters, seed).clone()


def _split_weights(n_items: int, max_iters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split-averaged weight matrices ``(n_items, n_items)`` of the half-split moments.

    With ``f``, ``g`` the 0/1 indicators of the two halves of a split and ``G``
    a symmetric repeat matrix, ``f' G g = <G, (f g' + g f') / 2>`` and
    ``(f - g)' G (f - g) = <G, (f - g)(f - g)'>``. Both are linear in the
    split's outer products, so their average over the splits of
    :func:`half_splits` is a single inner product with the averaged matrices
    returned here, ``(cross, diff)``.
    """
    first = half_splits(n_items, max_iters, seed)
    second = 1.0 - first
    n_splits = first.shape[0]
    cross = (first.T @ second + second.T @ first) / (2 * n_splits)
    diff = first - second
    return cross, diff.T @ diff / n_splits


def _symmetric_split_weights_uncached(n_items: int, max_iters: int, seed: int
                                     ) -> tuple[float, float, float, float] | None:
    cross, diff = _split_weights(n_items, max_iters, seed)
    off = ~torch.eye(n_items, dtype=torch.bool)
    values = []
    for w in (cross, diff):
        diag, rest = w.diagonal(), w[off]
        if not (bool((diag == diag[0]).all()) and bool((rest == rest[0]).all())):
            return None
        values += [float(diag[0]), float(rest[0])]
    return values[0], values[1], values[2], values[3]


#: ``(cross_diag, cross_off, diff_diag, diff_off)`` of the split-averaged weights
#: when each matrix is ``a I + b (J - I)`` (every split listed: the average is then
#: the same for every repeat and every pair of repeats), else None.
_symmetric_split_weights = functools.lru_cache(maxsize=64)(_symmetric_split_weights_uncached)


def _symmetric_products(weights: tuple[Any, Any, Any, Any], trace: torch.Tensor,
                        total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``<G, cross>`` and ``<G, diff>`` for weights ``a I + b (J - I)``, from ``G``'s sums.

    ``trace`` is the sum of ``G``'s diagonal and ``total`` the sum of all its
    entries, so the off-diagonal entries sum to ``total - trace``. ``weights``
    holds floats, or tensors with one value per pair.
    """
    cross_d, cross_o, diff_d, diff_o = weights
    off = total - trace
    return cross_d * trace + cross_o * off, diff_d * trace + diff_o * off


def _split_moments(cross: torch.Tensor, diff: torch.Tensor, half: Any, n_valid: Any,
                   dof: torch.Tensor, total_power: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split-averaged ``(signal, noise)`` from ``<G, cross>`` and ``<G, diff>`` of the used repeats.

    ``half`` and ``n_valid`` are ints, or float64 tensors with one value per pair.
    """
    scale = half * half * dof
    tiny = _NOISE_RTOL * total_power
    # Moments below 1e-12 of the total power are rounding noise: a zero
    # covariance (no signal, so NaN) or identical repeats (no noise).
    sig = cross / scale
    half_noise = diff / (2 * scale)
    return (torch.where(sig.abs() <= tiny, 0.0, sig),
            torch.where(half_noise <= tiny, 0.0, half_noise) * (half / n_valid))


def ccmax_moments_from_stats(
    stats: BlockStats, max_iters: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half-split signal and noise moments of each pair (Hsu et al., 2004), with its weight.

    For a pair with ``R >= 2`` valid repeats and ``T >= 2`` valid bins, the
    first ``2h`` valid repeats (``h = R // 2``; the last one is dropped when
    ``R`` is odd) are split into two halves of ``h`` repeats (see
    :func:`half_splits`). For each split, with half-PSTHs ``A`` and ``B`` and
    unbiased covariances over the valid bins (each half about its own mean)::

        signal_i = Cov(A, B)
        noise_i  = (h / R) * Var(A - B) / 2  =  (h / R) * ((Var(A) + Var(B)) / 2 - Cov(A, B))

    Under the model "each trial = rate + independent noise", with ``SP`` the
    rate's variance within the stimulus and ``NP`` the per-trial noise
    variance, ``E[Cov(A, B)] = SP`` and ``E[Var(A)] = E[Var(B)] = SP + NP / h``,
    so ``signal_i`` estimates ``SP`` and ``noise_i`` estimates ``NP / R``, the
    noise variance of the PSTH of all ``R`` repeats. Both are averaged over the
    splits. ``noise >= 0`` always; ``signal`` is not clipped. Either is set to
    exactly 0 when its magnitude is below ``1e-12`` of the pair's total power
    (rounding noise).

    Returns ``(signal, noise, weight)``, each ``(K,)``: NaN and weight 0 for
    pairs that do not qualify, weight ``T`` otherwise (the weight of
    :func:`signal_noise_from_stats`). Pool them over stimuli as
    ``sum_b T_b signal_b`` and ``sum_b T_b noise_b`` and pass the sums to
    :func:`ccmax_from_moments`. Constant repeats give exactly 0 for both.

    Every moment is linear in the pair's repeat covariance matrix, so the
    average over splits is one inner product with a split-averaged weight
    matrix: ``O(R**2)`` per pair whatever the number of splits, vectorised
    over the pairs sharing a repeat count.
    """
    cov_all = _require_gram(stats)
    n_pairs, n_slots = stats.rep_valid.shape
    signal = torch.full((n_pairs,), float("nan"), dtype=torch.float64, device=cov_all.device)
    noise = signal.clone()
    eligible = (stats.n_rep >= 2) & (stats.n_bins >= 2)
    bins = stats.n_bins.to(torch.float64)
    weight = torch.where(eligible, bins, 0.0)
    if not bool(eligible.any()):
        return signal, noise, weight
    dof = (bins - 1).clamp(min=1)
    total_power = stats.trace / dof / stats.n_rep.clamp(min=1).to(torch.float64)
    # Move the valid repeats to the front so the first 2h slots are valid.
    order = torch.argsort((~stats.rep_valid).to(torch.int8), dim=1, stable=True)
    gram = cov_all.gather(1, order.unsqueeze(-1).expand(-1, -1, n_slots))
    gram = gram.gather(2, order.unsqueeze(1).expand(-1, n_slots, -1))
    for n_valid in torch.unique(stats.n_rep[eligible]).tolist():
        rows = torch.nonzero(eligible & (stats.n_rep == n_valid)).squeeze(1)
        half = n_valid // 2
        used = 2 * half
        cov = gram[rows][:, :used, :used]
        symmetric = _symmetric_split_weights(used, max_iters, seed)
        if symmetric is not None:
            used_trace = cov.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
            cross, diff = _symmetric_products(symmetric, used_trace, cov.sum(dim=(-2, -1)))
        else:
            cross_w, diff_w = (w.to(cov_all.device) for w in _split_weights(used, max_iters, seed))
            cross = (cov * cross_w).sum(dim=(-2, -1))
            diff = (cov * diff_w).sum(dim=(-2, -1))
        signal[rows], noise[rows] = _split_moments(cross, diff, half, n_valid, dof[rows],
                                                   total_power[rows])
    flat = _constant_pairs(stats) & eligible
    return torch.where(flat, 0.0, signal), torch.where(flat, 0.0, noise), weight


def ccmax_from_moments(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise ceiling ``CCmax = sqrt(signal / (signal + noise))``, NaN where ``signal <= 0``.

    ``signal`` and ``noise`` are the moments of
    :func:`ccmax_moments_from_stats` for one stimulus, or their
    length-weighted sums over the stimuli of a neuron (any common scale
    cancels). The result estimates the correlation between the PSTH and the
    true rate; it lies in ``(0, 1]`` because ``noise >= 0``. ``signal <= 0``
    (no measurable signal) or NaN gives NaN.
    """
    ok = signal > 0
    ratio = signal / torch.where(ok, signal + noise, 1.0)
    return torch.where(ok, ratio.sqrt(), float("nan"))


def ttrc_from_stats(stats: BlockStats) -> torch.Tensor:
    """Trial-to-trial response correlation of each pair, ``(K,)``.

    The mean Pearson correlation, over the valid bins, of every pair of
    distinct valid repeats. Pairs of repeats where one repeat is constant are
    skipped; NaN when no pair of repeats is left (``R < 2``, ``T < 2``, or
    every repeat constant).
    """
    bins = stats.n_bins.to(torch.float64).unsqueeze(1)
    gram = _require_gram(stats)
    var = gram.diagonal(dim1=-2, dim2=-1)
    usable = stats.rep_valid & ~zero_variance(var, var + bins * stats.rep_mean.square())
    usable &= (stats.n_bins >= 2).unsqueeze(1)
    pair_ok = usable.unsqueeze(2) & usable.unsqueeze(1)
    n_slots = stats.rep_valid.shape[1]
    pair_ok &= torch.ones((n_slots, n_slots), dtype=torch.bool, device=pair_ok.device).triu(1)
    scale = (var.unsqueeze(2) * var.unsqueeze(1)).clamp(min=0).sqrt()
    corr = torch.where(pair_ok, gram / torch.where(pair_ok, scale, 1.0), 0.0)
    count = pair_ok.sum(dim=(1, 2))
    total = corr.clamp(-1.0, 1.0).sum(dim=(1, 2))
    return torch.where(count > 0, total / count.clamp(min=1), float("nan"))


def weighted_mean(weighted_sum: torch.Tensor, weight_sum: torch.Tensor) -> torch.Tensor:
    """``weighted_sum / weight_sum``, NaN where the total weight is 0."""
    positive = weight_sum > 0
    ratio = weighted_sum / torch.where(positive, weight_sum, 1.0)
    return torch.where(positive, ratio, float("nan"))


def snr_from_powers(sp: torch.Tensor, np_: torch.Tensor) -> torch.Tensor:
    """``SP / NP``; ``+inf`` when ``NP == 0 < SP``, NaN when both are ``<= 0`` or NaN."""
    ratio = sp / torch.where(np_ > 0, np_, 1.0)
    return torch.where(np_ > 0, ratio, torch.where(sp > 0, float("inf"), float("nan")))


def weighted_terms(value: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``value * weight``, 0 where the weight is 0 (so NaN values there drop out)."""
    return torch.where(weight > 0, value * weight, 0.0)


# Per-neuron running sums kept by NeuronQualityAccumulator, all weighted by T.
_ACCUMULATED = ("sp", "np", "weight", "signal", "noise")


class NeuronQualityAccumulator:
    """Streaming per-neuron SNR, CCmax, signal and noise power.

    Feed the responses one stimulus at a time with :meth:`add_block`; no
    ``(S, N, R, T)`` tensor is ever built. :meth:`result` returns the same
    values as :func:`~deepstrf.metrics.snr`, :func:`~deepstrf.metrics.signal_power`,
    :func:`~deepstrf.metrics.noise_power` and the per-neuron CCmax of
    :func:`~deepstrf.metrics.normalized_corrcoef` (``method='hsu'``) computed
    on the whole collated data, because both use the functions of this module.

    Each neuron keeps five running sums over the stimuli it heard, all
    weighted by the stimulus's valid bins ``T``: of ``SP``, of ``NP``, of the
    weights, and of the half-split signal and noise moments of
    :func:`ccmax_moments_from_stats`. CCmax is computed from the last two
    only at the end (:func:`ccmax_from_moments`), so it is pooled over
    stimuli, not averaged.

    Parameters
    ----------
    n_neurons : int
        Number of neurons ``N``; blocks index into ``range(N)``.
    max_ccmax_iters : int, default 126
        Number of half-splits per pair for CCmax: all of them when there are
        at most this many, otherwise this many random distinct ones.
    seed : int, default 0
        Seed of the random half-splits. The splits depend only on the seed and
        the repeat count, so results do not depend on the order of the blocks.

    Examples
    --------
    >>> acc = NeuronQualityAccumulator(n_neurons=3)
    >>> acc.add_block(torch.tensor([0, 2]), torch.rand(2, 4, 50))
    >>> snr, ccmax, sp, np_ = acc.result()
    >>> snr.shape
    torch.Size([3])
    """

    def __init__(self, n_neurons: int, max_ccmax_iters: int = 126, seed: int = 0) -> None:
        self.n_neurons = check_int("n_neurons", n_neurons, minimum=1)
        self.max_ccmax_iters = check_int("max_ccmax_iters", max_ccmax_iters, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self._sums: torch.Tensor | None = None

    def add_block(self, neuron_idx: torch.Tensor, block: torch.Tensor) -> None:
        """Add the responses of ``K`` neurons to one stimulus.

        Parameters
        ----------
        neuron_idx : Tensor
            ``(K,)`` integer indices of the neurons, in ``[0, n_neurons)``.
        block : Tensor
            ``(K, R, T)`` responses; a neuron with fewer repeats has trailing
            all-NaN rows, and NaN bins are missing. All repeats share ``T``.
        """
        block = check_tensor("block", block)
        check_rank("block", block, "KRT")
        neuron_idx = torch.as_tensor(neuron_idx, device=block.device)
        integer = not (neuron_idx.dtype.is_floating_point or neuron_idx.dtype == torch.bool)
        if neuron_idx.dim() != 1 or not integer:
            raise TypeError(
                f"neuron_idx must be a 1-D integer tensor; got dtype {neuron_idx.dtype} "
                f"and shape {tuple(neuron_idx.shape)}."
            )
        if neuron_idx.numel() != block.shape[0]:
            raise ValueError(
                f"neuron_idx must have one entry per row of block; got {neuron_idx.numel()} "
                f"indices for a block of shape {tuple(block.shape)}."
            )
        if neuron_idx.numel() == 0:
            return
        self._check_range(int(neuron_idx.min()), int(neuron_idx.max()))

        def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
            sp, np_, weight = signal_noise_from_stats(stats)
            signal, noise, _ = ccmax_moments_from_stats(stats, self.max_ccmax_iters, self.seed)
            return {
                "sp": weighted_terms(sp, weight),
                "np": weighted_terms(np_, weight),
                "weight": weight,
                "signal": weighted_terms(signal, weight),
                "noise": weighted_terms(noise, weight),
            }

        pairs = collect_pairs(block, None, per_chunk, gram=True)
        self._add_terms(neuron_idx, torch.stack([pairs[k] for k in _ACCUMULATED], dim=1))

    def add_rows(self, neuron_idx: Any, repeats: Any, rows: Any) -> None:
        """Add one stimulus's responses in packed form: the repeats of ``K`` neurons stacked.

        The values are those :meth:`add_block` gives for the same pairs (to
        about ``1e-13`` relative), at a fraction of the cost: nothing is
        padded or copied to a ``(K, R, T)`` block, and a pair's statistics
        come from its row sums, row sums of squares and the sum of its
        repeats, taken in one streaming pass (see "Streaming neuron quality" in
        the metrics guide).
        Pairs whose statistics need more go through :meth:`add_block`: those
        with a NaN or infinite value, those whose repeat count has random
        half-splits (the split weights then differ between repeats), and
        those whose mean is large against their spread, where the one-pass
        sums would lose precision.

        Parameters
        ----------
        neuron_idx : array-like
            ``(K,)`` integer indices of the neurons, in ``[0, n_neurons)``.
        repeats : array-like
            ``(K,)`` repeat counts, each ``>= 1``.
        rows : Tensor or numpy.ndarray
            ``(sum(repeats), T)`` float responses: neuron ``k``'s repeats are
            rows ``sum(repeats[:k])`` to ``sum(repeats[:k + 1])``.
        """
        idx_t, reps_t = torch.as_tensor(neuron_idx).cpu(), torch.as_tensor(repeats).cpu()
        for name, t in (("neuron_idx", idx_t), ("repeats", reps_t)):
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"{name} must hold integers; got dtype {t.dtype}.")
        neurons = idx_t.numpy().astype(np.int64).reshape(-1)
        reps = reps_t.numpy().astype(np.int64).reshape(-1)
        if isinstance(rows, torch.Tensor):
            if rows.device.type != "cpu" or rows.requires_grad:
                rows = rows.detach().cpu()
            rows = rows.numpy()
        data = np.asarray(rows)
        if data.ndim != 2 or not np.issubdtype(data.dtype, np.floating):
            raise ValueError(f"rows must be a 2-D float array (sum(repeats), T); got dtype "
                             f"{data.dtype} and shape {tuple(data.shape)}.")
        if len(neurons) != len(reps):
            raise ValueError(f"neuron_idx has {len(neurons)} entries but repeats has "
                             f"{len(reps)}; give one repeat count per neuron.")
        if len(reps) and int(reps.min()) < 1:
            raise ValueError(f"every repeat count must be >= 1; got {reps.tolist()}.")
        if int(reps.sum()) != data.shape[0]:
            raise ValueError(f"repeats sum to {int(reps.sum())} but rows has {data.shape[0]} "
                             "rows; rows must stack every neuron's repeats.")
        if len(neurons) == 0:
            return
        self._check_range(int(neurons.min()), int(neurons.max()))
        starts = np.zeros(len(reps), dtype=np.int64)
        np.cumsum(reps[:-1], out=starts[1:])
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        sums = _packed_pair_sums(data, reps, starts)
        T = data.shape[1]
        dense = ~sums.finite
        fast = np.zeros(len(reps), dtype=bool)
        for R in np.unique(reps[(reps >= 2) & ~dense]).tolist():
            group = (reps == R) & ~dense
            if _symmetric_split_weights(2 * (R // 2), self.max_ccmax_iters, self.seed) is None:
                dense |= group
            else:
                fast |= group
        # One-pass sums lose about 1e-16 * raw / trace of the pair's power: past
        # 1e3 (a mean over ~30 standard deviations, or constant repeats) the
        # pair is reduced the exact way instead.
        fast &= T >= 2
        ill = fast & (sums.raw > _ONE_PASS_CONDITION * sums.trace)
        fast &= ~ill
        dense |= ill
        if fast.any():
            self._add_terms(neurons[fast], _packed_terms(sums, reps, T, fast, self.max_ccmax_iters,
                                                         self.seed))
        dense &= reps >= 2  # a single repeat adds nothing to any sum
        for R in np.unique(reps[dense]).tolist():
            k = np.flatnonzero(dense & (reps == R))
            index = (starts[k][:, None] + np.arange(R)).reshape(-1)
            block = torch.from_numpy(np.ascontiguousarray(data[index])).view(len(k), R, T)
            self.add_block(torch.from_numpy(neurons[k]), block)

    def _check_range(self, low: int, high: int) -> None:
        if low < 0 or high >= self.n_neurons:
            bad = low if low < 0 else high
            raise IndexError(f"neuron index {bad} is out of range; the valid range is "
                             f"[0, {self.n_neurons - 1}].")

    def _add_terms(self, neurons: Any, terms: torch.Tensor) -> None:
        """Add ``terms`` (``(K, 5)``, ``_ACCUMULATED`` order) to the sums of ``neurons``."""
        if self._sums is None:
            self._sums = torch.zeros((self.n_neurons, len(_ACCUMULATED)), dtype=torch.float64,
                                     device=terms.device)
        index = torch.as_tensor(neurons).to(self._sums.device, torch.int64)
        self._sums.index_add_(0, index, terms.to(self._sums.device))

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(snr, ccmax, sp, np)``, each a float64 ``(n_neurons,)`` tensor.

        Neurons with no stimulus having at least two repeats and two valid
        bins get NaN; so does the CCmax of a neuron whose pooled half-split
        signal is ``<= 0``. See :func:`~deepstrf.metrics.snr` for the ``+inf``
        case.
        """
        sums = self._sums
        if sums is None:
            sums = torch.zeros((self.n_neurons, len(_ACCUMULATED)), dtype=torch.float64)
        sp, np_, weight, signal, noise = sums.unbind(dim=1)
        sp = weighted_mean(sp, weight)
        np_ = weighted_mean(np_, weight)
        return snr_from_powers(sp, np_), ccmax_from_moments(signal, noise), sp, np_


#: Above this ratio of a pair's raw to centred sum of squares, :meth:`NeuronQualityAccumulator.add_rows`
#: computes the pair the exact (centred) way rather than from one-pass sums.
_ONE_PASS_CONDITION = 1e3

#: Values per chunk of the packed pass: 1 MiB of float64 scratch stays in a core's L2 cache.
_PACKED_CHUNK_VALUES = 1 << 17


class _PackedSums(NamedTuple):
    """Per-pair sums of packed rows (float64 ``(K,)`` numpy arrays; see :func:`_packed_pair_sums`)."""

    finite: np.ndarray       # bool: every value of the pair is finite
    raw: np.ndarray          # sum of squares of all values
    trace: np.ndarray        # sum over repeats of the squares about the repeat's own mean
    total: np.ndarray        # sum over bins of the squared sum over repeats of the centred values
    used_trace: np.ndarray   # trace over the first 2 * (R // 2) repeats
    used_total: np.ndarray   # total over the first 2 * (R // 2) repeats


def _packed_pair_sums(data: np.ndarray, reps: np.ndarray, starts: np.ndarray) -> _PackedSums:
    """Sums of :class:`_PackedSums` for the pairs of packed float32 rows, in one pass.

    Chunks of whole pairs (about 1 MiB of float64) are copied to a scratch
    array that stays in cache, where the row sums ``s_r``, the row sums of
    squares ``q_r`` and each pair's sum of repeats ``P_t = sum_r x_rt`` are
    taken. Float32 values and their products are exact in float64, so::

        trace = sum_r (q_r - s_r^2 / T)
        total = |P|^2 - (sum_r s_r)^2 / T

    are float64 sums of exact terms, accurate to about ``1e-16 * raw`` (hence
    the conditioning test of the caller). For odd ``R`` the last repeat is
    taken out of both for the half-splits. All sums are numpy's, in an order
    fixed by the data: the result does not depend on the thread count.
    """
    K = len(reps)
    n_rows, T = data.shape
    out = {name: np.empty(K) for name in _PackedSums._fields if name != "finite"}
    finite = np.empty(K, dtype=bool)
    ends = starts + reps
    pair_of_row = torch.from_numpy(np.repeat(np.arange(K, dtype=np.int64), reps))
    per_pair = max(1, _PACKED_CHUNK_VALUES // max(1, T))
    most = max(per_pair, int(reps.max()))
    scratch = torch.empty(most * T, dtype=torch.float64)
    sums = torch.empty(min(K, most) * T, dtype=torch.float64)
    p0 = 0
    while p0 < K:
        # pairs [p0, p1) whose rows fit the scratch (at least one pair)
        p1 = int(np.searchsorted(ends, starts[p0] + per_pair, side="right"))
        p1 = min(K, max(p1, p0 + 1))
        r0, r1 = int(starts[p0]), int(ends[p1 - 1])
        k = p1 - p0
        y_t = scratch[:(r1 - r0) * T].view(r1 - r0, T)
        y = y_t.numpy()
        y[...] = data[r0:r1]
        s = np.add.reduce(y, axis=1)
        q = np.einsum("ij,ij->i", y, y)
        local = starts[p0:p1] - r0
        owner = pair_of_row[r0:r1] - p0
        # each pair's sum of repeats, added row after row (index_add_ on the CPU
        # runs serially over the index, so the order is fixed by the data)
        pair_sum_t = sums[:k * T].view(k, T).zero_().index_add_(0, owner, y_t)
        pair_sum = pair_sum_t.numpy()
        c = q - s * s / T
        owner_np = owner.numpy()
        sl = slice(p0, p1)
        raw = out["raw"][sl] = np.bincount(owner_np, weights=q, minlength=k)
        finite[sl] = np.isfinite(raw)
        trace = out["trace"][sl] = np.bincount(owner_np, weights=c, minlength=k)
        S = np.bincount(owner_np, weights=s, minlength=k)
        total = out["total"][sl] = np.einsum("ij,ij->i", pair_sum, pair_sum) - S * S / T
        out["used_trace"][sl] = trace
        out["used_total"][sl] = total
        odd = np.flatnonzero(reps[sl] % 2 == 1)
        if len(odd):
            last = local[odd] + reps[sl][odd] - 1
            used = pair_sum[odd] - y[last]
            S_used = S[odd] - s[last]
            out["used_trace"][p0 + odd] = trace[odd] - c[last]
            out["used_total"][p0 + odd] = np.einsum("ij,ij->i", used, used) - S_used * S_used / T
        p0 = p1
    return _PackedSums(finite=finite, **out)


def _packed_terms(sums: _PackedSums, reps: np.ndarray, T: int, keep: np.ndarray,
                  max_iters: int, seed: int) -> torch.Tensor:
    """The accumulated terms (``_ACCUMULATED`` order) of the pairs ``keep``, ``(K', 5)``.

    The same arithmetic as :meth:`NeuronQualityAccumulator.add_block`
    (:func:`_powers`, :func:`_symmetric_products`, :func:`_split_moments`)
    on the one-pass sums; every kept pair has ``R >= 2``, ``T >= 2``, finite
    values and symmetric split weights.
    """
    def take(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[keep]))

    n_rep = torch.from_numpy(reps[keep])
    n_bins = torch.full_like(n_rep, int(T))
    trace, total, raw = take(sums.trace), take(sums.total), take(sums.raw)
    flat = zero_variance(trace, raw)
    sp, np_, weight = _powers(n_rep, n_bins, trace, total, flat)
    bins = n_bins.to(torch.float64)
    dof = (bins - 1).clamp(min=1)
    total_power = trace / dof / n_rep.to(torch.float64)
    # the split weights of each pair's repeat count, looked up from a small table
    table = torch.zeros((int(n_rep.max()) + 1, 4), dtype=torch.float64)
    for R in torch.unique(n_rep).tolist():
        table[R] = torch.tensor(_symmetric_split_weights(2 * (R // 2), max_iters, seed),
                                dtype=torch.float64)
    cross, diff = _symmetric_products(tuple(table[n_rep].unbind(1)),
                                      take(sums.used_trace), take(sums.used_total))
    reps64 = n_rep.to(torch.float64)
    signal, noise = _split_moments(cross, diff, (n_rep // 2).to(torch.float64), reps64, dof,
                                   total_power)
    signal = torch.where(flat, 0.0, signal)
    noise = torch.where(flat, 0.0, noise)
    return torch.stack([weighted_terms(sp, weight), weighted_terms(np_, weight), weight,
                        weighted_terms(signal, weight), weighted_terms(noise, weight)], dim=1)
