"""Solutions to notebook 05 (an MLP on Fashion-MNIST)."""

from __future__ import annotations

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader


def deeper_mlp(train, max_steps: int | None = None) -> nn.Sequential:
    """Exercise 1: 784-256-128-10 with a ReLU after each hidden layer, trained by the
    notebook's ``train`` (same optimizer and steps as the one-hidden-layer MLP)."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                          nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    train(model, max_steps=max_steps)
    return model


def adam_run(train_set, max_steps: int | None) -> tuple[mg.optim.Adam, list[float]]:
    """Exercise 2: the MLP trained with Adam (lr 1e-3) for one epoch (or max_steps)."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = mg.optim.Adam(model.parameters(), lr=1e-3)
    losses: list[float] = []
    for x, y in DataLoader(train_set, batch_size=64, shuffle=True, seed=0):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if max_steps is not None and len(losses) == max_steps:
            break
    return opt, losses


def confusion_matrix(model, dataset) -> np.ndarray:
    """Exercise 3: row = true class, column = predicted class."""
    with mg.no_grad():
        predicted = np.concatenate([model(x).argmax(axis=1).numpy()
                                    for x, _ in DataLoader(dataset, batch_size=2000)])
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (np.asarray(dataset.labels), predicted), 1)
    return confusion


def most_confused(confusion: np.ndarray) -> tuple[int, int]:
    """The pair of classes mixed up most often, counting both directions."""
    off = confusion + confusion.T
    np.fill_diagonal(off, 0)
    a, b = np.unravel_index(off.argmax(), off.shape)
    return int(a), int(b)
