"""Datasets whose stimuli are sounds."""

from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset

__all__ = ["AudioNeuralDataset"]
