"""Datasets and mini-batches: `Dataset`, `TensorDataset`, `DataLoader`, and `datasets`
(MNIST, Fashion-MNIST)."""

from . import datasets
from .dataset import Dataset, TensorDataset
from .loader import DataLoader, collate

__all__ = ["DataLoader", "Dataset", "TensorDataset", "collate", "datasets"]
