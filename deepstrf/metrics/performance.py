"""NaN-aware performance metrics of encoding models, reduced over neurons.

All metrics take a prediction ``(B, N, 1, T)`` and/or responses
``(B, N, R, T)`` laid out as :func:`deepstrf.utils.data.neural_collate` makes
them, ignore NaN padding (or follow an explicit ``mask``), and return one value
per neuron (``reduction='none'``) or a NaN-aware reduction of those. They run
under :func:`torch.no_grad`, vectorised over stimuli and neurons, in float64
internally; the result has the inputs' floating dtype and device.

Two ways of pooling stimuli are used, each where it estimates the right thing:

- :func:`corrcoef`, :func:`fve` and :func:`coherence` pool the valid bins of
  all stimuli of a neuron (the concatenated time axis), so each stimulus
  weighs by its number of valid bins;
- :func:`signal_power`, :func:`noise_power`, :func:`snr` and
  :func:`normalized_corrcoef` compute their moments *within* each stimulus and
  average them over stimuli with weights ``T_bn`` (valid bins).

Formulas, sources, degenerate cases and the differences from the published
deepSTRF 0.1.0 are in ``docs/metrics.md``.
"""

from __future__ import annotations

import torch

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.metrics._masking import (
    METRIC_REDUCTIONS,
    check_pred_responses,
    check_rank,
    check_responses,
    check_tensor,
    fill_doc,
    flat_pairs,
    output_dtype,
    reduce_over_neurons,
    resolve_valid,
    zero_variance,
)
from deepstrf.metrics.quality import (
    BlockStats,
    ccmax_from_moments,
    ccmax_moments_from_stats,
    collect_pairs,
    signal_noise_from_stats,
    snr_from_powers,
    ttrc_from_stats,
    weighted_mean,
    weighted_terms,
)

__all__ = [
    "corrcoef",
    "fve",
    "normalized_corrcoef",
    "coherence",
    "signal_power",
    "noise_power",
    "snr",
    "compute_CCmax",
    "compute_TTRC",
]

_NAN = float("nan")


# ----------------------------------------------------------------------------
# Pair-level plumbing: (B, N, ...) inputs flattened to B*N (stim, neuron) pairs
# ----------------------------------------------------------------------------


def _per_stim_neuron(values: torch.Tensor, n_stims: int, n_neurons: int) -> torch.Tensor:
    return values.reshape(n_stims, n_neurons, *values.shape[1:])


def _pred_moments(stats: BlockStats, pred: torch.Tensor) -> dict[str, torch.Tensor]:
    """Within-pair moments of a prediction ``(K, T)`` and the PSTH over the valid bins.

    Returns ``(K,)`` tensors: ``bins``, the means ``mean_p`` / ``mean_y``, the
    centred sums of squares ``m2_p`` / ``m2_y`` (exactly 0 for a constant
    series), the centred cross-product ``cross`` and the squared error ``sse``.
    """
    valid = stats.time_valid
    bins = stats.n_bins.to(torch.float64)
    count = bins.clamp(min=1)
    p = torch.where(valid, pred.to(torch.float64), 0.0)
    y = stats.psth
    mean_p = p.sum(dim=-1) / count
    mean_y = y.sum(dim=-1) / count
    pc = torch.where(valid, p - mean_p.unsqueeze(-1), 0.0)
    yc = torch.where(valid, y - mean_y.unsqueeze(-1), 0.0)
    m2_p = (pc * pc).sum(dim=-1)
    m2_y = (yc * yc).sum(dim=-1)
    return {
        "bins": bins,
        "mean_p": mean_p,
        "mean_y": mean_y,
        "m2_p": torch.where(zero_variance(m2_p, m2_p + bins * mean_p.square()), 0.0, m2_p),
        "m2_y": torch.where(zero_variance(m2_y, m2_y + bins * mean_y.square()), 0.0, m2_y),
        "cross": (pc * yc).sum(dim=-1),
        "sse": torch.where(valid, p - y, 0.0).square().sum(dim=-1),
    }


def _pair_table(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    power: bool = False,
    ccmax_iters: int | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per-pair moments of ``pred`` vs the PSTH (and SP / CCmax if asked), as ``(B, N)``."""
    n_stims, n_neurons = responses.shape[:2]
    flat, flat_mask = flat_pairs(responses, mask)
    flat_pred = pred.reshape(n_stims * n_neurons, pred.shape[-1])

    def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
        out = _pred_moments(stats, flat_pred[sl])
        if power:
            out["sp"], _, out["w_power"] = signal_noise_from_stats(stats)
        if ccmax_iters is not None:
            out["signal"], out["noise"], _ = ccmax_moments_from_stats(stats, ccmax_iters, seed)
        return out

    table = collect_pairs(flat, flat_mask, per_chunk, gram=ccmax_iters is not None)
    return {k: _per_stim_neuron(v, n_stims, n_neurons) for k, v in table.items()}


def _pooled_moments(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Moments of the concatenated valid bins of each neuron, ``(N,)``.

    Per-stimulus centred sums are combined with the exact pooling formula
    ``M2 = sum_b [M2_b + T_b (mean_b - mean)^2]`` (Chan et al., 1979), which
    avoids the cancellation of raw sums of squares.
    """
    bins = t["bins"]
    has = bins > 0
    total = bins.sum(dim=0)
    safe_total = total.clamp(min=1)
    mean_p = torch.where(has, bins * t["mean_p"], 0.0).sum(dim=0) / safe_total
    mean_y = torch.where(has, bins * t["mean_y"], 0.0).sum(dim=0) / safe_total
    dp = torch.where(has, t["mean_p"] - mean_p, 0.0)
    dy = torch.where(has, t["mean_y"] - mean_y, 0.0)
    m2_p = torch.where(has, t["m2_p"] + bins * dp * dp, 0.0).sum(dim=0)
    m2_y = torch.where(has, t["m2_y"] + bins * dy * dy, 0.0).sum(dim=0)
    cross = torch.where(has, t["cross"] + bins * dp * dy, 0.0).sum(dim=0)
    sse = torch.where(has, t["sse"], 0.0).sum(dim=0)
    return {
        "bins": total,
        "flat_p": zero_variance(m2_p, m2_p + total * mean_p.square()),
        "flat_y": zero_variance(m2_y, m2_y + total * mean_y.square()),
        "m2_p": m2_p,
        "m2_y": m2_y,
        "cross": cross,
        "sse": sse,
    }


def _within_moments(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Length-weighted within-stimulus covariance and variances, ``(N,)``.

    Only pairs that qualify for the signal power (``R >= 2``, ``T >= 2``)
    take part, so numerator and denominator of CCnorm see the same stimuli.
    With the half-split moments in the table, also the pooled ``ccmax``
    (same weights, same stimuli).
    """
    weight = t["w_power"]
    dof = (t["bins"] - 1).clamp(min=1)
    total = weight.sum(dim=0)

    def pooled(per_pair: torch.Tensor) -> torch.Tensor:
        return weighted_terms(per_pair, weight).sum(dim=0)

    out = {
        "cov": weighted_mean(pooled(t["cross"] / dof), total),
        "var_p": weighted_mean(pooled(t["m2_p"] / dof), total),
        "var_y": weighted_mean(pooled(t["m2_y"] / dof), total),
        "sp": weighted_mean(pooled(t["sp"]), total),
    }
    if "signal" in t:
        out["ccmax"] = ccmax_from_moments(pooled(t["signal"]), pooled(t["noise"]))
    return out


def _neuron_quality(
    responses: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Length-weighted signal and noise power of each neuron, ``(N,)`` each."""
    n_stims, n_neurons = responses.shape[:2]
    flat, flat_mask = flat_pairs(responses, mask)

    def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
        sp, np_, weight = signal_noise_from_stats(stats)
        return {"sp": weighted_terms(sp, weight), "np": weighted_terms(np_, weight), "w": weight}

    table = collect_pairs(flat, flat_mask, per_chunk)
    sums = {k: _per_stim_neuron(v, n_stims, n_neurons).sum(dim=0) for k, v in table.items()}
    return weighted_mean(sums["sp"], sums["w"]), weighted_mean(sums["np"], sums["w"])


def _check_responses(responses: object) -> torch.Tensor:
    return check_responses(responses)


def _finish(values: torch.Tensor, reduction: str, dtype: torch.dtype) -> torch.Tensor:
    return reduce_over_neurons(values, reduction).to(dtype)


# ----------------------------------------------------------------------------
# Prediction vs PSTH on the concatenated valid time axis
# ----------------------------------------------------------------------------


@fill_doc
@torch.no_grad()
def corrcoef(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pearson correlation between prediction and PSTH per neuron (CCraw).

    Responses are averaged over valid repeats into the PSTH, then all valid
    ``(b, t)`` bins of a neuron are pooled (the concatenated time axis) and
    the correlation is computed on them, so each stimulus weighs by its
    number of valid bins.

    Parameters
    ----------
    %(pred)s
    %(responses)s
    %(mask)s
    %(reduction)s

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar. NaN for a neuron with
        fewer than 2 valid bins or a constant prediction or PSTH.

    Notes
    -----
    %(validity)s

    %(dtype)s
    """
    pred, responses = check_pred_responses(pred, responses)
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    pooled = _pooled_moments(_pair_table(pred, responses, mask))
    ok = (pooled["bins"] >= 2) & ~pooled["flat_p"] & ~pooled["flat_y"]
    denom = torch.where(ok, pooled["m2_p"] * pooled["m2_y"], 1.0).sqrt()
    cc = torch.where(ok, (pooled["cross"] / denom).clamp(-1.0, 1.0), _NAN)
    return _finish(cc, reduction, output_dtype(pred, responses))


@fill_doc
@torch.no_grad()
def fve(
    pred: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Fraction of the PSTH variance explained by the prediction, per neuron.

    ``FVE = 1 - SS_res / SS_tot`` over the concatenated valid bins, with
    ``SS_res = sum (pred - PSTH)^2`` and ``SS_tot`` the sum of squares of the
    PSTH about its mean. It is negative when the prediction is worse than the
    PSTH's mean, and it is not corrected for trial-to-trial noise.

    Parameters
    ----------
    %(pred)s
    %(responses)s
    %(mask)s
    %(reduction)s

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar. NaN for a neuron with
        fewer than 2 valid bins or a constant PSTH.

    Notes
    -----
    %(validity)s

    %(dtype)s
    """
    pred, responses = check_pred_responses(pred, responses)
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    pooled = _pooled_moments(_pair_table(pred, responses, mask))
    ok = (pooled["bins"] >= 2) & ~pooled["flat_y"]
    ratio = pooled["sse"] / torch.where(ok, pooled["m2_y"], 1.0)
    value = torch.where(ok, 1.0 - ratio, _NAN)
    return _finish(value, reduction, output_dtype(pred, responses))


# ----------------------------------------------------------------------------
# Repeat-based quality of the responses (Sahani & Linden 2003)
# ----------------------------------------------------------------------------


@fill_doc
@torch.no_grad()
def signal_power(
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Signal power per neuron (Sahani & Linden, 2003).

    For each stimulus with ``R >= 2`` valid repeats and ``T >= 2`` valid
    bins, ``SP_b = (R Var(PSTH) - mean_r Var(r_r)) / (R - 1)`` with unbiased
    variances over the stimulus's valid bins (each repeat about its own mean);
    then ``SP = sum_b T_b SP_b / sum_b T_b``. ``SP`` is an unbiased estimate,
    so it can be negative for a neuron that does not follow the stimulus; it
    is not clipped.

    Parameters
    ----------
    %(responses)s
    %(mask)s
    %(reduction)s

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar. NaN for a neuron with
        no stimulus having 2 valid repeats and 2 valid bins.

    Notes
    -----
    %(validity)s

    %(dtype)s

    References
    ----------
    Sahani M, Linden JF (2003). How linear are auditory cortical responses?
    Advances in Neural Information Processing Systems 15, 109-116.
    """
    responses = _check_responses(responses)
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    sp, _ = _neuron_quality(responses, mask)
    return _finish(sp, reduction, output_dtype(responses))


@fill_doc
@torch.no_grad()
def noise_power(
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Noise power per neuron (Sahani & Linden, 2003).

    ``NP_b = mean_r Var(r_r) - SP_b`` per stimulus (see :func:`signal_power`),
    length-weighted over stimuli like ``SP``. It is 0 for identical repeats.

    Parameters
    ----------
    %(responses)s
    %(mask)s
    %(reduction)s

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar; NaN where
        :func:`signal_power` is NaN.

    Notes
    -----
    %(validity)s

    %(dtype)s
    """
    responses = _check_responses(responses)
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    _, np_ = _neuron_quality(responses, mask)
    return _finish(np_, reduction, output_dtype(responses))


@fill_doc
@torch.no_grad()
def snr(
    responses: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Signal-to-noise ratio ``SP / NP`` per neuron (Sahani & Linden, 2003).

    ``SP`` and ``NP`` are the length-weighted powers of :func:`signal_power`
    and :func:`noise_power`. When ``NP`` is 0 (identical repeats) the SNR is
    ``+inf`` if ``SP > 0`` and NaN otherwise. It is negative when ``SP`` is.

    Parameters
    ----------
    %(responses)s
    %(mask)s
    %(reduction)s

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar (``+inf`` values take
        part in the reduction).

    Notes
    -----
    %(validity)s

    %(dtype)s
    """
    responses = _check_responses(responses)
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    sp, np_ = _neuron_quality(responses, mask)
    return _finish(snr_from_powers(sp, np_), reduction, output_dtype(responses))


# ----------------------------------------------------------------------------
# Noise-corrected correlation (Schoppe et al. 2016, Hsu et al. 2004)
# ----------------------------------------------------------------------------


@fill_doc
@torch.no_grad()
def normalized_corrcoef(
    pred: torch.Tensor,
    responses: torch.Tensor,
    method: str = "schoppe",
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    ccmax_iters: int = 126,
    seed: int = 0,
    *,
    single_repeat: str = "nan",
) -> torch.Tensor:
    """Noise-corrected correlation between prediction and PSTH (CCnorm), per neuron.

    All moments are computed *within* each stimulus (about that stimulus's
    own means, unbiased) and averaged over the stimuli having ``R >= 2`` valid
    repeats and ``T >= 2`` valid bins with weights ``T_bn``:
    ``Cov = sum_b T_b Cov_b(pred, PSTH) / sum_b T_b``, likewise ``Var(pred)``,
    ``Var(PSTH)`` and the signal power ``SP``.

    - ``method='schoppe'`` (Schoppe et al., 2016):
      ``CCnorm = Cov / sqrt(Var(pred) * SP)``.
    - ``method='hsu'`` (Hsu et al., 2004):
      ``CCnorm = CC_within / CCmax`` with
      ``CC_within = Cov / sqrt(Var(pred) * Var(PSTH))`` and
      ``CCmax = sqrt(S / (S + N))`` the half-split ceiling, its signal ``S``
      and noise ``N`` pooled with the same weights ``T_bn`` over the same
      stimuli (see :func:`compute_CCmax` for one stimulus and
      :func:`deepstrf.metrics.quality.ccmax_moments_from_stats`).

    For a single stimulus both reduce to the textbook formulas. Both estimate
    the correlation of the prediction with the neuron's true rate, so a
    perfect model scores about 1 whatever the noise, also when stimuli differ
    in SNR and in repeat count: CCmax is pooled like ``CC_within`` rather
    than averaged over stimuli. When every used stimulus has an even repeat
    count and all its half-splits are enumerated (``R <= 10`` by default),
    ``'hsu'`` equals ``'schoppe'`` up to rounding.

    Parameters
    ----------
    %(pred)s
    %(responses)s
    method : {'schoppe', 'hsu'}, default 'schoppe'
        Normalisation by the signal power, or by the half-split CCmax.
    %(mask)s
    %(reduction)s
    ccmax_iters : int, default 126
        ``method='hsu'`` only: half-splits per stimulus. All distinct splits
        are used when there are at most this many (``R = 10`` has exactly 126),
        otherwise this many random distinct ones.
    seed : int, default 0
        ``method='hsu'`` only: seed of the random half-splits (the splits
        depend only on the seed and the repeat count).
    single_repeat : {'nan', 'raw'}, default 'nan'
        What to return when ``responses`` has a single repeat (``R = 1``),
        where the noise correction is undefined: NaN, or (``'raw'``, as
        deepSTRF 0.1.0 does) the uncorrected :func:`corrcoef`. The choice is
        made on the shape of ``responses``, for all neurons alike, so one
        result never mixes corrected and uncorrected values.

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar. NaN for a neuron with
        no stimulus having 2 valid repeats and 2 valid bins (in particular
        ``R = 1`` everywhere, unless ``single_repeat='raw'``), a constant
        prediction, ``SP <= 0`` (schoppe), or a constant PSTH or pooled
        half-split signal ``S <= 0`` (hsu).

    Notes
    -----
    %(validity)s

    %(dtype)s

    Unlike deepSTRF 0.1.0, the covariance and prediction variance are not
    pooled over the concatenated stimuli: pooled moments include the
    differences in mean rate between stimuli, which the within-stimulus
    ``SP`` leaves out, and gave values above 1 for good models.

    References
    ----------
    Schoppe O, Harper NS, Willmore BDB, King AJ, Schnupp JWH (2016). Measuring
    the performance of neural models. Front Comput Neurosci 10:10.
    doi:10.3389/fncom.2016.00010

    Hsu A, Borst A, Theunissen FE (2004). Quantifying variability in neural
    responses and its application for the validation of model predictions.
    Network: Comput Neural Syst 15:91-109. doi:10.1088/0954-898X_15_2_002
    """
    pred, responses = check_pred_responses(pred, responses)
    check_choice("method", method, ("schoppe", "hsu"))
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    ccmax_iters = check_int("ccmax_iters", ccmax_iters, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    check_choice("single_repeat", single_repeat, ("nan", "raw"))
    if single_repeat == "raw" and responses.shape[2] == 1:
        return corrcoef(pred, responses, mask=mask, reduction=reduction)
    table = _pair_table(
        pred, responses, mask, power=True,
        ccmax_iters=ccmax_iters if method == "hsu" else None, seed=seed,
    )
    within = _within_moments(table)
    cov, var_p = within["cov"], within["var_p"]
    if method == "schoppe":
        ok = (within["sp"] > 0) & (var_p > 0)
        denom = torch.where(ok, var_p * within["sp"], 1.0).sqrt()
        value = torch.where(ok, cov / denom, _NAN)
    else:
        ok = (var_p > 0) & (within["var_y"] > 0)
        denom = torch.where(ok, var_p * within["var_y"], 1.0).sqrt()
        cc_within = torch.where(ok, (cov / denom).clamp(-1.0, 1.0), _NAN)
        value = cc_within / within["ccmax"]
    # A NaN prediction at a valid bin makes cov NaN; the comparisons above
    # would turn it into a silent "not ok", so propagate it explicitly.
    value = torch.where(torch.isnan(cov), _NAN, value)
    return _finish(value, reduction, output_dtype(pred, responses))


# ----------------------------------------------------------------------------
# Coherence (Welch estimate pooled over stimuli)
# ----------------------------------------------------------------------------


@fill_doc
@torch.no_grad()
def coherence(
    pred: torch.Tensor,
    responses: torch.Tensor,
    dt_ms: float,
    reduction: str = "mean",
    mask: torch.Tensor | None = None,
    nperseg: int = 256,
    max_freq_hz: float | None = None,
) -> torch.Tensor:
    """Magnitude-squared coherence between prediction and PSTH, averaged over frequency.

    Welch's estimate with the defaults of :func:`scipy.signal.coherence`:
    periodic Hann window of ``nperseg`` bins, 50 percent overlap, each segment
    detrended by its mean. Only segments whose bins are all valid are used,
    so NaN padding never enters a segment. The cross- and auto-spectra of a
    neuron are summed over all its valid segments of all stimuli, then
    ``C(f) = |Pxy(f)|^2 / (Pxx(f) Pyy(f))`` is averaged over the frequency
    bins from 0 to ``max_freq_hz`` (all bins up to Nyquist by default).

    Parameters
    ----------
    %(pred)s
    %(responses)s
    dt_ms : float
        Bin width in milliseconds; sets the frequency axis for ``max_freq_hz``.
    %(reduction)s
    %(mask)s
    nperseg : int, default 256
        Segment length in bins. Stimuli with fewer valid bins contribute no
        segment.
    max_freq_hz : float or None, default None
        Highest frequency included in the average; None keeps all bins.

    Returns
    -------
    Tensor
        ``(N,)`` for ``reduction='none'``, else a scalar. NaN for a neuron with
        fewer than 2 valid segments (one segment gives a coherence of exactly
        1 at every frequency, which carries no information). Frequency bins
        where the prediction or the PSTH has no power are skipped.

    Notes
    -----
    %(validity)s

    %(dtype)s
    """
    pred, responses = check_pred_responses(pred, responses)
    dt_ms = check_positive("dt_ms", dt_ms)
    check_choice("reduction", reduction, METRIC_REDUCTIONS)
    nperseg = check_int("nperseg", nperseg, minimum=2)
    if max_freq_hz is not None:
        max_freq_hz = check_positive("max_freq_hz", max_freq_hz)
    n_stims, n_neurons = responses.shape[:2]
    n_time = responses.shape[-1]
    flat, flat_mask = flat_pairs(responses, mask)
    flat_pred = pred.reshape(n_stims * n_neurons, n_time)
    step = nperseg - nperseg // 2
    n_freq = nperseg // 2 + 1
    window = torch.hann_window(nperseg, periodic=True, dtype=torch.float64, device=pred.device)

    def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
        n_pairs = stats.n_bins.shape[0]
        if n_time < nperseg:
            zeros = torch.zeros((n_pairs, n_freq), dtype=torch.float64, device=pred.device)
            return {"re": zeros, "im": zeros, "pxx": zeros, "pyy": zeros,
                    "raw_x": zeros[:, 0], "raw_y": zeros[:, 0], "segments": zeros[:, 0]}
        valid = stats.time_valid
        seg_ok = valid.unfold(-1, nperseg, step).all(dim=-1)
        spectra = []
        raws = []
        for series in (torch.where(valid, flat_pred[sl].to(torch.float64), 0.0), stats.psth):
            segs = series.unfold(-1, nperseg, step)
            raw = torch.where(seg_ok, (segs * window).square().sum(dim=-1), 0.0).sum(dim=-1)
            detrended = (segs - segs.mean(dim=-1, keepdim=True)) * window
            spec = torch.fft.rfft(detrended, dim=-1)
            spectra.append(torch.where(seg_ok.unsqueeze(-1), spec, 0.0))
            raws.append(raw)
        x, y = spectra
        cross = (x.conj() * y).sum(dim=1)
        return {
            "re": cross.real,
            "im": cross.imag,
            "pxx": torch.view_as_real(x).square().sum(dim=(1, -1)),
            "pyy": torch.view_as_real(y).square().sum(dim=(1, -1)),
            "raw_x": raws[0],
            "raw_y": raws[1],
            "segments": seg_ok.sum(dim=-1).to(torch.float64),
        }

    table = collect_pairs(flat, flat_mask, per_chunk)
    s = {k: _per_stim_neuron(v, n_stims, n_neurons).sum(dim=0) for k, v in table.items()}
    # A spectrum bin below 1e-20 of the segments' energy is rounding noise
    # (e.g. a constant prediction after detrending).
    quiet_x = s["pxx"] <= 1e-20 * nperseg * s["raw_x"].unsqueeze(-1)
    quiet_y = s["pyy"] <= 1e-20 * nperseg * s["raw_y"].unsqueeze(-1)
    usable = ~(quiet_x | quiet_y)
    power = torch.where(usable, s["pxx"] * s["pyy"], 1.0)
    coh = torch.where(usable, (s["re"].square() + s["im"].square()) / power, _NAN)
    freqs = torch.fft.rfftfreq(nperseg, d=dt_ms / 1000.0).to(pred.device)
    if max_freq_hz is not None:
        coh = coh[:, freqs <= max_freq_hz]
    per_neuron = torch.nanmean(coh.clamp(max=1.0), dim=-1)
    per_neuron = torch.where(s["segments"] >= 2, per_neuron, _NAN)
    return _finish(per_neuron, reduction, output_dtype(pred, responses))


# ----------------------------------------------------------------------------
# Per-stimulus helpers kept from deepSTRF (input (B, R, T), output (B,))
# ----------------------------------------------------------------------------


def _per_stim_input(
    responses: object, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    responses = check_tensor("responses", responses)
    check_rank("responses", responses, "BRT")
    if mask is None:
        return responses, None
    return responses, resolve_valid(responses, mask).contiguous()


@torch.no_grad()
def compute_CCmax(
    responses: torch.Tensor,
    max_iters: int = 126,
    seed: int = 0,
    mask: torch.Tensor | None = None,
    *,
    single_repeat: str = "nan",
) -> torch.Tensor:
    """Half-split noise ceiling CCmax of each stimulus (Hsu et al., 2004).

    The first ``2h`` valid repeats (``h = R // 2``; the last valid repeat is
    dropped when ``R`` is odd) are split into two halves of ``h``, and the
    half-PSTHs ``A`` and ``B`` give, averaged over the splits, the signal
    ``S = mean Cov(A, B)`` and the noise of the full PSTH
    ``N = (h / R) mean Var(A - B) / 2`` (unbiased variances over the valid
    bins). Then ``CCmax = sqrt(S / (S + N))``, which is
    ``1 / sqrt(1 + (h / R)(1 / rho - 1))`` with ``rho = S / V`` and
    ``V = mean (Var(A) + Var(B)) / 2``; for even ``R``,
    ``sqrt(2 rho / (1 + rho))`` (Spearman-Brown, then a square root). For a
    neuron with a single stimulus it equals the per-neuron CCmax of
    :func:`normalized_corrcoef` and
    :class:`~deepstrf.metrics.NeuronQualityAccumulator`; with several, those
    pool ``S`` and ``N`` over stimuli (weights ``T``) before taking the ratio,
    and are not an average of the per-stimulus values. The derivation is in
    ``docs/metrics.md``.

    Parameters
    ----------
    responses : Tensor
        ``(B, R, T)``: the repeats of one neuron to ``B`` stimuli (or of any
        ``B`` response sets), NaN-padded.
    max_iters : int, default 126
        Half-splits per stimulus: all distinct ones when there are at most
        this many, otherwise this many random distinct ones.
    seed : int, default 0
        Seed of the random half-splits.
    mask : Tensor or None, default None
        Boolean validity with the shape of ``responses`` or broadcastable to
        it; replaces the NaN test.
    single_repeat : {'nan', 'one'}, default 'nan'
        The value for a stimulus with exactly one valid repeat, where the
        ceiling cannot be estimated: NaN, or 1.0 as deepSTRF 0.1.0 returns
        (which treats a single trial as noiseless).

    Returns
    -------
    Tensor
        ``(B,)``: the estimated correlation between the PSTH of all valid
        repeats and the true rate, in ``(0, 1]``. NaN when fewer than 2 valid
        repeats or bins, or ``S <= 0`` (no measurable signal, e.g. constant
        repeats); see ``single_repeat``. The dtype is that of ``responses``.

    References
    ----------
    Hsu A, Borst A, Theunissen FE (2004). Quantifying variability in neural
    responses and its application for the validation of model predictions.
    Network: Comput Neural Syst 15:91-109. doi:10.1088/0954-898X_15_2_002
    """
    responses, valid = _per_stim_input(responses, mask)
    max_iters = check_int("max_iters", max_iters, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    check_choice("single_repeat", single_repeat, ("nan", "one"))

    def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
        signal, noise, _ = ccmax_moments_from_stats(stats, max_iters, seed)
        return {"cc": ccmax_from_moments(signal, noise), "n_rep": stats.n_rep}

    table = collect_pairs(responses, valid, per_chunk, gram=True)
    return _single_repeat_value(table["cc"], table["n_rep"], single_repeat, responses)


def _single_repeat_value(values: torch.Tensor, n_rep: torch.Tensor, single_repeat: str,
                         responses: torch.Tensor) -> torch.Tensor:
    """``values`` in the output dtype, 1.0 where a single repeat is valid if ``'one'``."""
    if single_repeat == "one":
        values = torch.where(n_rep == 1, 1.0, values)
    return values.to(output_dtype(responses))


@torch.no_grad()
def compute_TTRC(responses: torch.Tensor, mask: torch.Tensor | None = None, *,
                 single_repeat: str = "nan") -> torch.Tensor:
    """Trial-to-trial response correlation of each stimulus.

    The mean Pearson correlation over the valid bins of every pair of
    distinct valid repeats.

    Parameters
    ----------
    responses : Tensor
        ``(B, R, T)``: the repeats of one neuron to ``B`` stimuli, NaN-padded.
    mask : Tensor or None, default None
        Boolean validity with the shape of ``responses`` or broadcastable to
        it; replaces the NaN test.
    single_repeat : {'nan', 'one'}, default 'nan'
        The value for a stimulus with exactly one valid repeat, which has no
        pair of trials to correlate: NaN, or 1.0 as deepSTRF 0.1.0 returns.

    Returns
    -------
    Tensor
        ``(B,)``. Pairs involving a constant repeat are skipped; NaN when no
        pair is left (fewer than 2 valid repeats or bins); see
        ``single_repeat``. The dtype is that of ``responses``.
    """
    responses, valid = _per_stim_input(responses, mask)
    check_choice("single_repeat", single_repeat, ("nan", "one"))

    def per_chunk(stats: BlockStats, sl: slice) -> dict[str, torch.Tensor]:
        return {"ttrc": ttrc_from_stats(stats), "n_rep": stats.n_rep}

    table = collect_pairs(responses, valid, per_chunk, gram=True)
    return _single_repeat_value(table["ttrc"], table["n_rep"], single_repeat, responses)
