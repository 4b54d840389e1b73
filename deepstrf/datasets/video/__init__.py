"""Datasets whose stimuli are movies (exports load on first use)."""

from __future__ import annotations

from deepstrf._lazy import lazy_exports

_LAZY = {
    "VideoNeuralDataset": "deepstrf.datasets.video.video_dataset",
    "VideoSourceDataset": "deepstrf.datasets.video._build",
    "VideoFrontEnd": "deepstrf.datasets.video._tasks",
    "MovieRecording": "deepstrf.datasets.video._build",
    "build_movie_recording": "deepstrf.datasets.video._build",
    "make_video_front_end": "deepstrf.datasets.video._tasks",
    "MovieFileStim": "deepstrf.datasets.video._stimuli",
    "ImageSequenceStim": "deepstrf.datasets.video._stimuli",
    "MovieArrayStim": "deepstrf.datasets.video._stimuli",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
