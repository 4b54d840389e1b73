"""Datasets: the ``NeuralDataset`` base classes and one subclass per public dataset."""

from deepstrf.datasets.neural_dataset import NeuralDataset

__all__ = ["NeuralDataset"]
