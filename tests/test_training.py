"""End to end: a small MLP trained through DataLoader on the real Fashion-MNIST files.

Debian's ``dataset-fashion-mnist`` package (installed by the test set-up where it
can be) provides the files; without them this test skips with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader, TensorDataset
from minigrad.data.datasets import FashionMNIST


@pytest.fixture(scope="module")
def fashion() -> tuple[FashionMNIST, FashionMNIST]:
    try:
        return FashionMNIST(train=True, download=False), FashionMNIST(train=False, download=False)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        pytest.skip(f"Fashion-MNIST files not found: {exc}")


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    with mg.no_grad():
        logits = model(mg.tensor(images.reshape(len(images), -1)))
    model.train()
    return float((logits.numpy().argmax(axis=1) == labels).mean())


def test_mlp_learns_fashion_mnist_subset(fashion: tuple) -> None:
    train, test = fashion
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train), 6000, replace=False)
    x_train, y_train = train.get_batch(pick)
    x_test, y_test = test.get_batch(np.arange(2000))
    assert x_train.dtype == np.float32 and x_train.shape == (6000, 1, 28, 28)
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0

    mg.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True, seed=0)
    before = accuracy(model, x_test, y_test)
    losses = []
    for _ in range(3):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    after = accuracy(model, x_test, y_test)
    assert before < 0.3  # an untrained net is near chance (10 classes)
    assert after > 0.75, f"test accuracy {after:.3f} after 3 epochs on 6000 images"
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
