"""Pure functions on movie and response tensors, for people who hold their own arrays.

A movie is a float tensor ``(..., C, H, W, T)``: colour channels (1 or 3),
height, width, frames on the last axis (the layout of
:class:`~deepstrf.datasets.video.video_dataset.VideoNeuralDataset` stims, with
any leading batch axes). Responses are ``(..., T)`` with NaN for missing
values. Nothing here changes its input; every function returns a new tensor.
The dataset methods of ``VideoNeuralDataset`` apply the same functions to
each stimulus of the ragged storage in place.

=================================  ==============================================
:func:`rgb_to_grayscale`           ITU-R BT.601 luma, ``(3, ...) -> (1, ...)``
:func:`resize_movie`               bilinear resize of every frame, antialiased
:func:`time_factor`                ``('down' | 'up' | 'same', k)`` between two bin widths
:func:`downsample_time`            block means (frames) or block sums (counts)
:func:`upsample_time`              repetition (frames) or even spreading (counts)
:func:`normalize_movie`            ``(x - mean) / std``, scalar or per channel
:func:`split_into_clips`           fixed-length clips, the last one padded
:func:`gaussian_kernel`            symmetric unit-sum Gaussian taps
:func:`smooth_gaussian`            Gaussian smoothing along time, NaN kept
:func:`add_noise`                  seeded additive Gaussian noise
:func:`responses_signal_power`     per (neuron, stimulus) signal power
:func:`zscore_time`                each row z-scored over time, NaN-aware
=================================  ==============================================
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from deepstrf.preprocessing._color import BT601_WEIGHTS

__all__ = ["BT601_WEIGHTS", "add_noise", "downsample_time", "gaussian_kernel",
           "normalize_movie", "resize_movie", "responses_signal_power", "rgb_to_grayscale",
           "smooth_gaussian", "split_into_clips", "time_factor", "upsample_time", "zscore_time"]

_WHOLE_TOL = 1e-6


def _movie(name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (..., C, H, W, T); got "
                        f"{type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {x.dtype}. Convert it "
                        "with .float() (and scale 8-bit frames to [0, 1] with / 255).")
    if x.dim() < 4:
        raise ValueError(f"{name} must have at least 4 axes (C, H, W, T); got shape "
                         f"{tuple(x.shape)}. A single grayscale frame sequence (H, W, T) is "
                         "x[None].")
    return x


def _whole(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def rgb_to_grayscale(movie: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of an RGB movie.

    Parameters
    ----------
    movie : Tensor
        ``(..., 3, H, W, T)``.

    Returns
    -------
    Tensor
        ``(..., 1, H, W, T)``, same dtype. The weights sum to 1, so a gray
        pixel (R = G = B) keeps its value.
    """
    movie = _movie("movie", movie)
    C = movie.shape[-4]
    if C != 3:
        raise ValueError(f"rgb_to_grayscale needs an RGB movie (C=3 on axis -4); got C={C} "
                         f"(shape {tuple(movie.shape)}). " + (
                             "It is already grayscale." if C == 1 else ""))
    r, g, b = movie.unbind(dim=-4)
    wr, wg, wb = BT601_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(-4)


def _size(size: Any) -> tuple[int, int]:
    from deepstrf.datasets.video._stimuli import frame_size

    return frame_size(size)


def resize_movie(movie: torch.Tensor, size: Any, *, antialias: bool = True) -> torch.Tensor:
    """Resize every frame to ``size`` (bilinear; antialiased when shrinking).

    Parameters
    ----------
    movie : Tensor
        ``(..., C, H, W, T)``.
    size : (int, int) or int
        New ``(H, W)``; an int gives square frames.
    antialias : bool, default True
        Low-pass before shrinking (PyTorch's antialiased bilinear filter), so
        fine patterns average out instead of aliasing into coarse ones.

    Returns
    -------
    Tensor
        ``(..., C, h, w, T)``; the input itself when the size is unchanged.
    """
    movie = _movie("movie", movie)
    h, w = _size(size)
    *lead, C, H, W, T = movie.shape
    if (H, W) == (h, w):
        return movie
    # (n, H, W, T) seen as (n, T, H, W) is a channels-last image batch with the frames as
    # channels: resized without moving any data, and the result comes back as (n, h, w, T)
    frames = movie.reshape(-1, H, W, T).permute(0, 3, 1, 2)
    out = torch.nn.functional.interpolate(frames, size=(h, w), mode="bilinear",
                                          align_corners=False, antialias=antialias)
    return out.permute(0, 2, 3, 1).contiguous().reshape(*lead, C, h, w, T)


def time_factor(from_ms: float, to_ms: float, what: str = "the bins") -> tuple[str, int]:
    """How to go from bins of ``from_ms`` to bins of ``to_ms``: ``(direction, k)``.

    ``('down', k)``: ``to_ms = k * from_ms`` (k >= 2, pool blocks of k);
    ``('up', k)``: ``from_ms = k * to_ms`` (split each bin in k);
    ``('same', 1)``. Any other ratio raises ``ValueError`` naming the widths
    that work, since a fractional ratio would need interpolation that mixes
    neighbouring bins.
    """
    for name, value in (("from_ms", from_ms), ("to_ms", to_ms)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
                or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive bin width in ms; got {value!r}.")
    if math.isclose(from_ms, to_ms, rel_tol=1e-9):
        return "same", 1
    ratio = to_ms / from_ms
    if ratio > 1 and abs(ratio - round(ratio)) <= _WHOLE_TOL * ratio:
        return "down", int(round(ratio))
    inverse = from_ms / to_ms
    if inverse > 1 and abs(inverse - round(inverse)) <= _WHOLE_TOL * inverse:
        return "up", int(round(inverse))
    raise ValueError(f"cannot change {what} from {from_ms:g} ms to {to_ms:g} ms: the ratio "
                     f"{ratio:g} is not a whole number either way. Choose a multiple "
                     f"({2 * from_ms:g}, {3 * from_ms:g}, ... ms) or a divisor "
                     f"({from_ms / 2:g}, {from_ms / 3:g}, ... ms) of {from_ms:g} ms.")


def downsample_time(x: torch.Tensor, factor: int, *, reduce: str = "mean") -> torch.Tensor:
    """Pool blocks of ``factor`` bins along the last axis.

    ``reduce='mean'`` for frames (intensities stay intensities),
    ``'sum'`` for counts (spikes per new bin). A trailing partial block is
    dropped (its pooled value would cover less time than the others); a block
    holding a NaN is NaN.
    """
    factor = _whole("factor", factor)
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum'; got {reduce!r}.")
    T = x.shape[-1]
    n = T // factor
    blocks = x[..., :n * factor].reshape(*x.shape[:-1], n, factor)
    return blocks.mean(-1) if reduce == "mean" else blocks.sum(-1)


def upsample_time(x: torch.Tensor, factor: int, *, spread: bool = False) -> torch.Tensor:
    """Split every bin into ``factor`` bins along the last axis.

    Frames are repeated (``spread=False``). Counts are spread evenly
    (``spread=True``: each new bin gets ``count / factor``), so the total
    over the stimulus is unchanged and a block sum recovers the original
    exactly; plain repetition would multiply the number of spikes by
    ``factor``.
    """
    factor = _whole("factor", factor)
    out = torch.repeat_interleave(x, factor, dim=-1)
    return out / factor if spread else out


def normalize_movie(movie: torch.Tensor, *, mean: Any = None, std: Any = None,
                    per_channel: bool = False, eps: float = 1e-8
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(movie - mean) / std``, with the movie's own statistics unless given.

    Statistics are over all pixels and frames (one scalar pair), or per
    colour channel (``per_channel=True``, shape ``(..., C, 1, 1, 1)``). A
    per-pixel normalisation over time (deepSTRF's ``normalize_videos``) is
    not offered: it gives every pixel unit variance, erasing the spatial
    contrast structure that receptive fields are fitted to, and blows up
    pixels that barely change.

    Returns
    -------
    (normalised, mean, std)
        ``std`` is floored at ``eps``.
    """
    movie = _movie("movie", movie)
    dims = (-3, -2, -1) if per_channel else (-4, -3, -2, -1)
    if mean is None or std is None:
        x = movie.to(torch.float64)
        m64 = x.mean(dim=dims, keepdim=True)
        if mean is None:
            mean = m64
        if std is None:
            n = movie.numel() // max(1, m64.numel())
            std = ((x - m64) ** 2).sum(dim=dims, keepdim=True).div(max(n - 1, 1)).sqrt()
        del x
    mean = torch.as_tensor(mean).to(movie.dtype)
    std = torch.as_tensor(std).to(movie.dtype).clamp(min=eps)
    return (movie - mean) / std, mean, std


def split_into_clips(x: torch.Tensor, clip_length: int, *, pad_value: float = 0.0
                     ) -> list[tuple[torch.Tensor, int, int]]:
    """Cut the last axis into clips of ``clip_length``: ``[(clip, onset, n_valid), ...]``.

    The last clip is padded with ``pad_value`` (0 for movies; NaN for
    responses, so the padding is masked out rather than read as zero spikes)
    and ``n_valid`` says how many of its bins are real.
    """
    clip_length = _whole("clip_length", clip_length)
    T = x.shape[-1]
    out = []
    for onset in range(0, T, clip_length):
        part = x[..., onset:onset + clip_length]
        n = part.shape[-1]
        if n < clip_length:
            pad = torch.full((*x.shape[:-1], clip_length - n), pad_value, dtype=x.dtype)
            part = torch.cat([part, pad], dim=-1)
        out.append((part.contiguous(), onset, n))
    return out


def gaussian_kernel(sigma_bins: float, kernel_size: int | None = None) -> np.ndarray:
    """Symmetric Gaussian taps of unit sum, centred on the middle tap.

    ``kernel_size`` (odd) defaults to ``2 * ceil(3 * sigma) + 1``. deepSTRF
    placed its taps at ``linspace(-(K // 2) - 1, K // 2, K)`` (for K = 11:
    -6 ... 5, spaced 1.1 bins), an off-centre kernel that shifts every
    smoothed response by about half a bin; these taps are at
    ``-(K // 2) ... K // 2``.
    """
    if isinstance(sigma_bins, bool) or not isinstance(sigma_bins, numbers.Real) \
            or not sigma_bins > 0:
        raise ValueError(f"sigma must be a positive number of bins; got {sigma_bins!r}.")
    if kernel_size is None:
        kernel_size = 2 * int(math.ceil(3 * sigma_bins)) + 1
    kernel_size = _whole("kernel_size", kernel_size)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd (a centre tap, so nothing shifts); got "
                         f"{kernel_size}.")
    k = np.arange(kernel_size) - kernel_size // 2
    taps = np.exp(-0.5 * (k / float(sigma_bins)) ** 2)
    return taps / taps.sum()


def smooth_gaussian(x: torch.Tensor, sigma_bins: float, kernel_size: int | None = None
                    ) -> torch.Tensor:
    """Gaussian smoothing along the last axis ("same" length, zero-padded ends).

    NaN values count as 0 for their neighbours and stay NaN (the package's
    one smoothing convolution, :func:`~deepstrf.preprocessing.spikes.smooth_rows`).
    """
    from deepstrf.preprocessing.spikes import smooth_rows

    kernel = gaussian_kernel(sigma_bins, kernel_size)
    rows = x.reshape(-1, x.shape[-1])
    return smooth_rows(rows, kernel).reshape(x.shape)


def add_noise(movie: torch.Tensor, noise_level: float, *, seed: int | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``movie + noise_level * N(0, 1)``, reproducible from ``seed`` (or ``generator``)."""
    movie = _movie("movie", movie)
    if isinstance(noise_level, bool) or not isinstance(noise_level, numbers.Real) \
            or not noise_level >= 0:
        raise ValueError(f"noise_level must be a standard deviation >= 0; got {noise_level!r}.")
    if generator is None:
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else int(seed))
    noise = torch.randn(movie.shape, generator=generator, dtype=torch.float32)
    return movie + (float(noise_level) * noise).to(movie.dtype)


def zscore_time(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each row z-scored over its last (time) axis, NaN-aware (deepSTRF's ``normalize_responses``).

    ``(x - mean_t) / (std_t + eps)`` over the valid values of each row; NaN
    stays NaN. It removes every repeat's own mean and scale, so prefer the
    dataset's per-neuron ``normalize_responses`` for fitting encoding models.
    """
    valid = ~torch.isnan(x)
    n = valid.sum(-1, keepdim=True).clamp(min=1)
    x0 = torch.where(valid, x, torch.zeros((), dtype=x.dtype))
    mean = x0.sum(-1, keepdim=True) / n
    var = torch.where(valid, (x - mean) ** 2, torch.zeros((), dtype=x.dtype)).sum(
        -1, keepdim=True) / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + eps)


def responses_signal_power(responses: torch.Tensor) -> torch.Tensor:
    """Signal power of each (neuron, stimulus) pair of a dense ``(N, S, R, T)`` tensor.

    The layout of deepSTRF's ``get_responses_signal_power``, NaN-padded
    repeats and bins allowed. Each entry is
    :func:`deepstrf.metrics.signal_power` (Sahani & Linden 2003) of that
    stimulus alone, so it is NaN when the pair has fewer than two valid
    repeats. Returns ``(N, S)`` float.
    """
    from deepstrf.metrics import signal_power

    if not isinstance(responses, torch.Tensor) or responses.dim() != 4:
        raise ValueError(f"responses must be a (N, S, R, T) tensor; got "
                         f"{getattr(responses, 'shape', type(responses).__name__)}.")
    per_stim = [signal_power(responses[:, s].unsqueeze(0), reduction="none")
                for s in range(responses.shape[1])]
    return torch.stack(per_stim, dim=1)
