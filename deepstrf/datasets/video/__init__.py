"""Datasets whose stimuli are movies."""

from deepstrf.datasets.video.video_dataset import VideoNeuralDataset

__all__ = ["VideoNeuralDataset"]
