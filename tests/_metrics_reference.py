"""Plain float64 numpy references for the metrics tests: loops over stims and neurons.

Written independently of deepstrf.metrics (no shared code) so the tests check
the vectorised implementation against the textbook definitions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def ragged_batch(
    seed: int,
    n_stims: int = 5,
    n_neurons: int = 4,
    max_rep: int = 6,
    max_bins: int = 40,
    *,
    min_rep: int = 0,
    short_stim: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A collated-like batch: (pred (B,N,1,T), responses (B,N,R,T), true rate (B,N,1,T)).

    Stims have different lengths (shared by all neurons, NaN-padded at the
    end); each (stim, neuron) pair has its own repeat count in
    ``[min_rep, max_rep]``, 0 giving the all-NaN sentinel; one stim may be a
    single bin long.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max_bins // 2, max_bins + 1, size=n_stims)
    lengths[0] = max_bins
    if short_stim and n_stims > 2:
        lengths[-1] = 1
    rate = np.full((n_stims, n_neurons, 1, max_bins), np.nan)
    resp = np.full((n_stims, n_neurons, max_rep, max_bins), np.nan)
    for b in range(n_stims):
        t = lengths[b]
        for n in range(n_neurons):
            r = rng.integers(min_rep, max_rep + 1)
            base = rng.uniform(0.5, 4.0)
            lam = base * (1 + 0.8 * np.sin(np.linspace(0, 6 * rng.uniform(0.5, 2), t) + n)) + 0.05
            rate[b, n, 0, :t] = lam
            if r:
                resp[b, n, :r, :t] = rng.poisson(lam, size=(r, t))
    pred = rate + rng.normal(0, 0.3, size=rate.shape)
    pred = np.where(np.isnan(pred), rng.normal(size=pred.shape), pred)  # garbage at padding
    return torch.from_numpy(pred), torch.from_numpy(resp), torch.from_numpy(rate)


def _pair(resp_bn: np.ndarray) -> np.ndarray:
    """Valid sub-matrix (R_v, T_v) of one (stim, neuron) pair, by the module's rule."""
    ok = ~np.isnan(resp_bn)
    rows = ok.any(axis=1)
    if not rows.any():
        return np.zeros((0, 0))
    cols = ok[rows].all(axis=0)
    return resp_bn[rows][:, cols]


def _valid_bins(resp_bn: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(resp_bn)
    rows = ok.any(axis=1)
    if not rows.any():
        return np.zeros(resp_bn.shape[1], dtype=bool)
    return ok[rows].all(axis=0)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt((xc @ xc) * (yc @ yc))
    return float("nan") if den == 0 else float(xc @ yc) / den


# ----------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------


def ref_corr_fve(pred: np.ndarray, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_stims, n_neurons = resp.shape[:2]
    cc = np.full(n_neurons, np.nan)
    fv = np.full(n_neurons, np.nan)
    for n in range(n_neurons):
        ps, ys = [], []
        for b in range(n_stims):
            sub = _pair(resp[b, n])
            if sub.size == 0:
                continue
            bins = _valid_bins(resp[b, n])
            ys.append(sub.mean(axis=0))
            ps.append(pred[b, n, 0][bins])
        if not ys:
            continue
        p, y = np.concatenate(ps), np.concatenate(ys)
        if p.size < 2:
            continue
        if np.var(p) > 0 and np.var(y) > 0:
            cc[n] = np.corrcoef(p, y)[0, 1]
        if np.var(y) > 0:
            fv[n] = 1 - np.sum((p - y) ** 2) / np.sum((y - y.mean()) ** 2)
    return cc, fv


def ref_sp_np_pair(sub: np.ndarray) -> tuple[float, float]:
    r, t = sub.shape
    psth = sub.mean(axis=0)
    tp = sub.var(axis=1, ddof=1).mean()
    sp = (r * psth.var(ddof=1) - tp) / (r - 1)
    return sp, tp - sp


def ref_quality(resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Length-weighted (SP, NP, SNR) per neuron."""
    n_stims, n_neurons = resp.shape[:2]
    sp = np.full(n_neurons, np.nan)
    np_ = np.full(n_neurons, np.nan)
    for n in range(n_neurons):
        acc_s = acc_n = acc_w = 0.0
        for b in range(n_stims):
            sub = _pair(resp[b, n])
            if sub.shape[0] < 2 or sub.shape[1] < 2:
                continue
            s, q = ref_sp_np_pair(sub)
            w = sub.shape[1]
            acc_s += w * s
            acc_n += w * q
            acc_w += w
        if acc_w:
            sp[n], np_[n] = acc_s / acc_w, acc_n / acc_w
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(np_ > 0, sp / np_, np.where(sp > 0, np.inf, np.nan))
    return sp, np_, snr


def all_splits(n_items: int) -> list[tuple[int, ...]]:
    """Every split of range(n_items) into halves, as the half holding item 0."""
    half = n_items // 2
    return [(0, *c) for c in itertools.combinations(range(1, n_items), half - 1)]


def ref_ccmax_moments_pair(
    sub: np.ndarray, splits: list[tuple[int, ...]] | None = None
) -> tuple[float, float]:
    """Split-averaged (signal, noise) of one valid (R, T) sub-matrix, R >= 2, T >= 2.

    signal = Cov(A, B); noise = ((Var A + Var B) / 2 - Cov(A, B)) * h / R, for
    half-PSTHs A, B of h = R // 2 repeats among the first 2h.
    """
    r = sub.shape[0]
    half = r // 2
    used = sub[: 2 * half]
    splits = all_splits(2 * half) if splits is None else splits
    signal = noise = 0.0
    for first in splits:
        second = [i for i in range(2 * half) if i not in first]
        c = np.cov(used[list(first)].mean(axis=0), used[second].mean(axis=0), ddof=1)
        signal += c[0, 1]
        noise += ((c[0, 0] + c[1, 1]) / 2 - c[0, 1]) * half / r
    signal, noise = signal / len(splits), noise / len(splits)
    # Documented convention: below 1e-12 of the mean repeat variance is rounding noise.
    tiny = 1e-12 * sub.var(axis=1, ddof=1).mean()
    return (0.0 if abs(signal) <= tiny else signal), (0.0 if noise <= tiny else noise)


def ref_ccmax_from_moments(signal: float, noise: float) -> float:
    return math.sqrt(signal / (signal + noise)) if signal > 0 else float("nan")


def ref_ccmax_pair(sub: np.ndarray, splits: list[tuple[int, ...]] | None = None) -> float:
    if sub.shape[0] < 2 or sub.shape[1] < 2:
        return float("nan")
    return ref_ccmax_from_moments(*ref_ccmax_moments_pair(sub, splits))


def ref_ccmax(resp: np.ndarray, split_lookup=None) -> np.ndarray:
    """Per-neuron CCmax from moments pooled over stims with weights T.

    split_lookup(n_items) gives the splits to use (default: all of them).
    """
    n_stims, n_neurons = resp.shape[:2]
    out = np.full(n_neurons, np.nan)
    for n in range(n_neurons):
        signal = noise = 0.0
        for b in range(n_stims):
            sub = _pair(resp[b, n])
            if sub.shape[0] < 2 or sub.shape[1] < 2:
                continue
            splits = None if split_lookup is None else split_lookup(2 * (sub.shape[0] // 2))
            s, q = ref_ccmax_moments_pair(sub, splits)
            signal += sub.shape[1] * s
            noise += sub.shape[1] * q
        out[n] = ref_ccmax_from_moments(signal, noise)
    return out


def ref_ccnorm(pred: np.ndarray, resp: np.ndarray, method: str) -> np.ndarray:
    n_stims, n_neurons = resp.shape[:2]
    out = np.full(n_neurons, np.nan)
    ccmax = ref_ccmax(resp)
    for n in range(n_neurons):
        cov = vp = vy = sp = w_acc = 0.0
        for b in range(n_stims):
            sub = _pair(resp[b, n])
            if sub.shape[0] < 2 or sub.shape[1] < 2:
                continue
            bins = _valid_bins(resp[b, n])
            p = pred[b, n, 0][bins]
            y = sub.mean(axis=0)
            w = sub.shape[1]
            cov += w * np.cov(p, y, ddof=1)[0, 1]
            vp += w * p.var(ddof=1)
            vy += w * y.var(ddof=1)
            sp += w * ref_sp_np_pair(sub)[0]
            w_acc += w
        if not w_acc:
            continue
        cov, vp, vy, sp = cov / w_acc, vp / w_acc, vy / w_acc, sp / w_acc
        if method == "schoppe":
            if sp > 0 and vp > 0:
                out[n] = cov / math.sqrt(vp * sp)
        elif vp > 0 and vy > 0:
            out[n] = (cov / math.sqrt(vp * vy)) / ccmax[n]
    return out


def ref_ttrc(resp3: np.ndarray) -> np.ndarray:
    out = np.full(resp3.shape[0], np.nan)
    for b in range(resp3.shape[0]):
        sub = _pair(resp3[b])
        if sub.shape[0] < 2 or sub.shape[1] < 2:
            continue
        cs = [_pearson(sub[i], sub[j]) for i in range(len(sub)) for j in range(i + 1, len(sub))]
        cs = [c for c in cs if not math.isnan(c)]
        if cs:
            out[b] = np.mean(cs)
    return out


def ref_losses(pred: np.ndarray, resp: np.ndarray, eps: float = 1e-8) -> dict[str, np.ndarray]:
    """Per-neuron sums and counts of the element losses over valid elements."""
    n_stims, n_neurons = resp.shape[:2]
    out = {k: np.zeros(n_neurons) for k in ("mse", "poisson", "poisson_log", "count")}
    for n in range(n_neurons):
        for b in range(n_stims):
            ok = ~np.isnan(resp[b, n])
            rows = ok.any(axis=1)
            if not rows.any():
                continue
            cols = ok[rows].all(axis=0)
            for r in np.flatnonzero(rows):
                for t in np.flatnonzero(cols):
                    p, y = pred[b, n, 0, t], resp[b, n, r, t]
                    out["mse"][n] += (p - y) ** 2
                    out["poisson"][n] += p - y * math.log(max(p, 0.0) + eps)
                    out["poisson_log"][n] += math.exp(p) - y * p
                    out["count"][n] += 1
    return out
