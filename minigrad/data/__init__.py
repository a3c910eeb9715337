"""Datasets and mini-batches: `Dataset`, `TensorDataset`, `DataLoader`, and `datasets`
(MNIST, Fashion-MNIST), and `DistributedSampler` for data-parallel runs."""

from . import datasets
from .dataset import Dataset, TensorDataset
from .loader import DataLoader, collate
from .sampler import DistributedSampler, SamplerError

__all__ = ["DataLoader", "Dataset", "DistributedSampler", "SamplerError", "TensorDataset",
           "collate", "datasets"]
