"""Worker-side pieces of the visual build pipeline (no torch import).

:func:`movie_task` runs in joblib worker processes, which import this module to
unpickle their work; it and what it receives (the movie sources of
:mod:`~deepstrf.datasets.video._stimuli`, :class:`VideoFrontEnd`, the response
sources of :mod:`~deepstrf.datasets._responses`) need only numpy, scipy and
the raw readers, so a worker starts without loading torch (a resize, when
asked, imports it).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.datasets._responses import render_responses, response_bins

__all__ = ["DEFAULT_SMOOTH_MS", "VideoFrontEnd", "make_video_front_end", "movie_task"]

#: Window of the PSTH smoothing when ``smooth=True`` (the audio datasets' default).
DEFAULT_SMOOTH_MS = 21.0


@dataclass(frozen=True)
class VideoFrontEnd:
    """How movies and responses reach the grid (its :meth:`to_dict` enters the cache key)."""

    dt_ms: float
    frames_per_bin: int = 1
    channels: str = "keep"            #: 'keep', 'gray' (BT.601) or 'rgb'
    size: tuple[int, int] | None = None
    smooth_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        from deepstrf.preprocessing.spikes import SMOOTHING_ARITHMETIC

        out = {"dt_ms": self.dt_ms, "frames_per_bin": self.frames_per_bin,
               "channels": self.channels,
               "size": None if self.size is None else list(self.size),
               "smooth_ms": self.smooth_ms}
        if self.smooth_ms:  # the smoothing's own version, so its values key the cache
            out["smoothing"] = SMOOTHING_ARITHMETIC
        return out


def make_video_front_end(*, dt_ms: Any, frames_per_bin: Any = 1, channels: Any = "keep",
                         size: Any = None, smooth: Any = False) -> VideoFrontEnd:
    """Check the movie arguments shared by visual datasets (before any I/O)."""
    from deepstrf.datasets.video._stimuli import frame_size

    dt_ms = check_positive("dt_ms", dt_ms)
    fpb = check_int("frames_per_bin", frames_per_bin, minimum=1)
    channels = check_choice("channels", channels, ("keep", "gray", "rgb"))
    if isinstance(smooth, bool):
        smooth_ms = DEFAULT_SMOOTH_MS if smooth else None
    elif isinstance(smooth, numbers.Real):
        smooth_ms = check_positive("smooth (window in ms)", smooth)
    else:
        raise TypeError(f"smooth must be True, False or a window in ms; got {smooth!r}.")
    return VideoFrontEnd(dt_ms=dt_ms, frames_per_bin=fpb, channels=channels,
                         size=None if size is None else frame_size(size), smooth_ms=smooth_ms)


def movie_task(task: tuple) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One stimulus: its movie on the grid, and every neuron's repeats on the same bins."""
    source, front, responses = task
    n_bins = source.n_bins
    if n_bins == "response":
        n_bins = response_bins(responses, front.dt_ms, str(source.meta.get("name", "")))
    movie, facts = source.render(front, n_bins)
    rows = render_responses(responses, front.dt_ms, int(facts["n_bins"]), onset_ms=0.0,
                            smooth_ms=front.smooth_ms)
    return movie, rows, facts
