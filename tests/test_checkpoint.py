"""`mg.checkpoint`: the same values and gradients as the plain run, bit for bit, with
the intermediates recomputed in backward instead of kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


def mlp(depth: int = 4, dropout: float = 0.3) -> list:
    mg.manual_seed(11)
    return [nn.Sequential(nn.Linear(8, 8, dtype=mg.float64), nn.Tanh(), nn.Dropout(dropout),
                          nn.BatchNorm1d(8, dtype=mg.float64))
            for _ in range(depth)]


def run(blocks: list, x: mg.Tensor, use_checkpoint: bool) -> mg.Tensor:
    h = x
    for b in blocks:
        h = mg.checkpoint(b, h) if use_checkpoint else b(h)
    return (h * h).mean()


def grads_of(use_checkpoint: bool, create_graph: bool = False) -> tuple:
    blocks = mlp()
    x = mg.tensor(np.random.default_rng(0).standard_normal((6, 8)), requires_grad=True)
    mg.manual_seed(5)  # the dropout masks
    loss = run(blocks, x, use_checkpoint)
    params = [p for b in blocks for p in b.parameters()]
    gs = mg.grad(loss, [x, *params], create_graph=create_graph)
    running = [b[3].running_mean.numpy() for b in blocks]
    return loss, gs, running, x, params


def test_gradients_are_bit_identical_to_the_plain_run_with_dropout() -> None:
    loss0, g0, run0, _, _ = grads_of(False)
    loss1, g1, run1, _, _ = grads_of(True)
    assert loss0.item() == loss1.item()
    for a, b in zip(g0, g1):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the recomputation ran BatchNorm again, but its statistics were folded in once
    for a, b in zip(run0, run1):
        np.testing.assert_array_equal(a, b)


def test_backward_fills_the_parameters_grad_like_the_plain_run() -> None:
    out = []
    for use in (False, True):
        blocks = mlp(depth=2, dropout=0.0)
        x = mg.tensor(np.ones((3, 8)))
        run(blocks, x, use).backward()
        out.append([p.grad.numpy() for b in blocks for p in b.parameters()])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_second_derivatives_through_a_checkpoint() -> None:
    _, g0, _, x0, _ = grads_of(False, create_graph=True)
    _, g1, _, x1, _ = grads_of(True, create_graph=True)
    (h0,) = mg.grad((g0[0] ** 2).sum(), x0)
    (h1,) = mg.grad((g1[0] ** 2).sum(), x1)
    np.testing.assert_allclose(h1.numpy(), h0.numpy(), rtol=1e-12, atol=1e-14)


def test_the_tape_keeps_one_record_and_no_intermediates() -> None:
    w = mg.tensor(np.ones((3, 3)), requires_grad=True)

    def block(h: mg.Tensor) -> mg.Tensor:
        return ((h @ w).tanh() @ w).exp()

    x = mg.tensor(np.ones((2, 3)), requires_grad=True)
    y = mg.checkpoint(block, x)
    records = list(mg.tape(y))
    assert [r.name for r in records] == ["checkpoint"]
    assert len(records[0].edges) == 2  # x, and w found in the closure
    y.sum().backward()
    assert w.grad is not None and x.grad is not None


def test_closure_of_a_closure_and_several_outputs() -> None:
    w = mg.tensor(np.array([2.0, 3.0]), requires_grad=True)

    def split(h: mg.Tensor) -> tuple:
        return h * w, (h + w).sum()

    x = mg.tensor(np.array([1.0, -1.0]), requires_grad=True)
    a, s = mg.checkpoint(split, x)
    (a.sum() * s).backward()
    # L = sum(x * w) * sum(x + w): dL/dx = w * s + sum(a)
    np.testing.assert_allclose(x.grad.numpy(), w.numpy() * s.item() + a.sum().item())


W_GLOBAL = mg.tensor(np.ones(2), requires_grad=True)


def uses_global(h: mg.Tensor) -> mg.Tensor:
    return h * W_GLOBAL


def test_a_tensor_it_cannot_see_is_an_error_not_a_lost_gradient() -> None:
    y = mg.checkpoint(uses_global, mg.tensor(np.ones(2), requires_grad=True))
    with pytest.raises(mg.GraphError, match="neither an argument nor found"):
        y.sum().backward()
    h = mg.tensor(np.ones(2), requires_grad=True) * 2  # a non-leaf held by the closure
    with pytest.raises(mg.GraphError, match="tensor with history"):
        mg.checkpoint(lambda x: x * h, mg.tensor(np.ones(2), requires_grad=True))


def test_an_input_changed_in_place_before_backward_is_caught() -> None:
    x = mg.tensor(np.ones(2), requires_grad=True)
    h = x * 1
    y = mg.checkpoint(lambda t: t.exp(), h)
    with mg.no_grad():
        h.data[0] = 5.0
    with pytest.raises(mg.GraphError, match="modified in place"):
        y.sum().backward()


def test_without_grad_mode_it_is_a_plain_call() -> None:
    calls: list[Any] = []
    with mg.no_grad():
        y = mg.checkpoint(lambda t: calls.append(1) or t * 2, mg.tensor([1.0]))
    assert y.item() == 2.0 and calls == [1] and y.grad_fn is None


def test_inside_jvp_a_checkpoint_is_a_plain_call() -> None:
    def block(h: mg.Tensor) -> mg.Tensor:
        return (h * h).tanh()

    x, v = mg.tensor(np.array([0.5, -1.0])), mg.tensor(np.array([1.0, 2.0]))
    y0, t0 = mg.jvp(block, (x,), (v,))
    y1, t1 = mg.jvp(lambda h: mg.checkpoint(block, h), (x,), (v,))
    np.testing.assert_array_equal(y1.numpy(), y0.numpy())
    np.testing.assert_array_equal(t1.numpy(), t0.numpy())
