"""Solutions to notebook 04b (layers from scratch)."""

from __future__ import annotations

import minigrad as mg


class MomentumSGD:
    """Exercise 1: v <- momentum * v + g (the first step: v = g), p <- p - lr * v."""

    def __init__(self, params, lr: float, momentum: float = 0.9) -> None:
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.buffers = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        with mg.no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                g = p.grad.numpy()
                v = g if self.buffers[i] is None else self.momentum * self.buffers[i] + g
                self.buffers[i] = v
                p -= mg.tensor(self.lr * v)


class DecaySGD:
    """Exercise 2: weight decay adds weight_decay * p to the gradient (an L2 penalty)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0) -> None:
        self.params, self.lr, self.weight_decay = list(params), lr, weight_decay

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        with mg.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p -= self.lr * (p.grad + self.weight_decay * p)


def cross_entropy(logits: mg.Tensor, labels: mg.Tensor) -> mg.Tensor:
    """Exercise 3: mean over the batch of log-sum-exp(z) - z[label], with the max trick."""
    m = logits.max(axis=1, keepdims=True).detach()
    lse = m + (logits - m).exp().sum(axis=1, keepdims=True).log()
    log_p = logits - lse
    n = logits.shape[0]
    picked = log_p[mg.arange(n), labels]
    return -picked.mean()
