"""The build pipeline of the visual datasets.

A visual dataset module's parse hook returns a :class:`MovieRecording`: one
movie source per stimulus (:mod:`deepstrf.datasets.video._stimuli`), the
neurons' metadata, and a response source per recorded (stimulus, neuron)
pair (:mod:`deepstrf.datasets._responses`: spike trains in ms from the
movie's onset, pre-binned rows, continuous traces). :func:`build_movie_recording`
renders it, one task per stimulus through the package's one joblib call
site: the movie on the grid at the front end's frame rate (native frames
pooled, colour converted, frames resized as asked), every neuron's repeats on
the same bins, counts smoothed if asked. Stimuli nobody heard and neurons
with no data are left out (logged), as for audio.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from deepstrf.datasets._source import SourceDataset
from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.video._tasks import (
    DEFAULT_SMOOTH_MS,
    VideoFrontEnd,
    make_video_front_end,
    movie_task,
)
from deepstrf.datasets.video.video_dataset import VideoNeuralDataset
from deepstrf.io.cache import BuiltData

__all__ = ["DEFAULT_SMOOTH_MS", "MovieRecording", "VideoFrontEnd", "VideoSourceDataset",
           "build_movie_recording", "make_video_front_end", "movie_task"]

logger = logging.getLogger(__name__)

@dataclass
class MovieRecording:
    """What a visual dataset's parse hook returns (see the module docstring)."""

    stims: list[Any]
    neurons: list[dict[str, Any]]
    trials: dict[tuple[int, int], Any]
    sources: list[dict[str, Any]] = field(default_factory=list)
    #: tolerated data quirks, kind -> count (each also reported as a DataQuirkWarning)
    quirks: dict[str, int] = field(default_factory=dict)


def build_movie_recording(recording: MovieRecording, front: VideoFrontEnd, *,
                          n_jobs: int | None = 1, progress: bool | None = None,
                          owner: str = "") -> BuiltData:
    """Turn a parsed movie recording into a dataset's tensors."""
    from deepstrf.preprocessing.parallel import parallel_map

    by_stim: dict[int, list[tuple[int, Any]]] = {}
    for (s, n), source in sorted(recording.trials.items()):
        if source.n_trials:
            by_stim.setdefault(s, []).append((n, source))
    heard_by = {n for pairs in by_stim.values() for n, _ in pairs}
    keep_neurons = [n for n in range(len(recording.neurons)) if n in heard_by]
    new_index = {n: i for i, n in enumerate(keep_neurons)}
    if len(keep_neurons) < len(recording.neurons):
        logger.info("%s: %d neuron(s) have no response to any selected stimulus and are left "
                    "out", owner, len(recording.neurons) - len(keep_neurons))
    keep_stims = sorted(by_stim)
    if len(keep_stims) < len(recording.stims):
        logger.info("%s: %d stimulus/stimuli heard by no selected neuron are left out", owner,
                    len(recording.stims) - len(keep_stims))
    tasks = [(recording.stims[s], front, [t for _, t in by_stim[s]]) for s in keep_stims]
    results = parallel_map(movie_task, tasks, n_jobs=n_jobs, progress=progress,
                           desc=f"{owner}: movies" if owner else "movies")
    stims, blocks, stim_meta = [], [], []
    for s, (movie, rows, facts) in zip(keep_stims, results):
        pairs = by_stim[s]
        stims.append(torch.from_numpy(movie))
        blocks.append(([new_index[n] for n, _ in pairs], [t.n_trials for _, t in pairs],
                       torch.from_numpy(rows)))
        meta = dict(recording.stims[s].meta)
        for key, value in facts.items():
            meta.setdefault(key, value)
        stim_meta.append(meta)
    shapes = {tuple(x.shape[:3]) for x in stims}
    if len(shapes) > 1:
        from deepstrf.errors import RawDataError

        raise RawDataError(f"{owner}: the movies have different channel counts or frame sizes "
                           f"{sorted(shapes)}; pass size=(H, W) (and channels='gray') so they "
                           "share one.")
    C, H, W = shapes.pop()
    store = ResponseStore.from_blocks(len(keep_neurons), blocks, owned=True)  # built here
    rate = front.frames_per_bin * 1000.0 / front.dt_ms
    attributes = {"C": int(C), "H": int(H), "W": int(W),
                  "frame_rate_hz": int(rate) if math.isclose(rate, round(rate)) else rate}
    return BuiltData(stims=stims, store=store, stim_meta=stim_meta,
                     nrn_meta=[recording.neurons[n] for n in keep_neurons],
                     attributes=attributes, sources=recording.sources or None,
                     quirks=dict(recording.quirks))


class VideoSourceDataset(SourceDataset, VideoNeuralDataset):
    """Base of visual datasets built from a release on disk.

    Subclasses declare the release's facts and implement
    :meth:`~deepstrf.datasets._source.SourceDataset._parse` returning a
    :class:`MovieRecording`; their constructor checks its arguments, makes a
    front end with :func:`make_video_front_end` and calls ``_init_source``.
    Downloading, caching and validation are shared with the audio datasets.
    """

    def _render(self, recording: MovieRecording, front: Any, n_jobs: int | None,
                progress: bool | None) -> BuiltData:
        return build_movie_recording(recording, front, n_jobs=n_jobs, progress=progress,
                                     owner=type(self).__name__)
