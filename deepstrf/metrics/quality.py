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
from typing import NamedTuple

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
    reps = stats.n_rep.to(torch.float64)
    bins = stats.n_bins.to(torch.float64)
    ok = (stats.n_rep >= 2) & (stats.n_bins >= 2)
    dof = (bins - 1).clamp(min=1)
    # Constant repeats: every power is 0, so SP = NP = 0 and SNR is NaN.
    flat = _constant_pairs(stats)
    trace = torch.where(flat, 0.0, stats.trace)
    total = torch.where(flat, 0.0, stats.total)
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
        cross_w, diff_w = (w.to(cov_all.device) for w in _split_weights(used, max_iters, seed))
        cov = gram[rows][:, :used, :used]
        scale = half * half * dof[rows]
        tiny = _NOISE_RTOL * total_power[rows]
        # Moments below 1e-12 of the total power are rounding noise: a zero
        # covariance (no signal, so NaN) or identical repeats (no noise).
        sig = (cov * cross_w).sum(dim=(-2, -1)) / scale
        signal[rows] = torch.where(sig.abs() <= tiny, 0.0, sig)
        half_noise = (cov * diff_w).sum(dim=(-2, -1)) / (2 * scale)
        noise[rows] = torch.where(half_noise <= tiny, 0.0, half_noise) * (half / n_valid)
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
        low, high = int(neuron_idx.min()), int(neuron_idx.max())
        if low < 0 or high >= self.n_neurons:
            bad = low if low < 0 else high
            raise IndexError(
                f"neuron index {bad} is out of range; the valid range is "
                f"[0, {self.n_neurons - 1}]."
            )

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
        terms = torch.stack([pairs[k] for k in _ACCUMULATED], dim=1)
        if self._sums is None:
            self._sums = torch.zeros((self.n_neurons, len(_ACCUMULATED)), dtype=torch.float64,
                                     device=block.device)
        self._sums.index_add_(0, neuron_idx.to(self._sums.device, torch.int64),
                              terms.to(self._sums.device))

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
