"""The reverse-mode engine: accumulation, retain_graph, mg.grad, grad mode, deep graphs.

Gradients are compared with derivatives worked out by hand in NumPy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import minigrad as mg


def leaf(values: Any, name: str | None = None) -> mg.Tensor:
    """A float64 leaf that requires grad."""
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=True, name=name)


def dtanh(x: np.ndarray) -> np.ndarray:
    return 1 - np.tanh(x) ** 2


def d2tanh(x: np.ndarray) -> np.ndarray:
    return -2 * np.tanh(x) * dtanh(x)


# --------------------------------------------------------------- accumulation
def test_grad_accumulates_over_two_backward_calls() -> None:
    a = np.array([0.5, -1.0, 2.0])
    x = leaf(a)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a)
    x.tanh().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a + dtanh(a))
    assert x.grad.dtype == np.float64
    assert not x.grad.requires_grad


def test_retain_graph_allows_a_second_backward() -> None:
    a = np.array([0.3, 1.2])
    x = leaf(a)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(first, np.exp(a) * (1 + a))
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_second_backward_on_freed_graph_names_retain_graph() -> None:
    x = leaf([0.3, 1.2])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(mg.GraphError, match="retain_graph"):
        y.backward()


def test_freed_graph_error_also_for_mg_grad() -> None:
    x = leaf([0.3, 1.2])
    y = x.tanh().sum()
    mg.grad(y, x)
    with pytest.raises(mg.GraphError, match="retain_graph"):
        mg.grad(y, x)


def test_backward_with_create_graph_retains_by_default() -> None:
    a = np.array([0.4, -0.7])
    x = leaf(a)
    y = (x**3).sum()
    y.backward(create_graph=True)
    assert x.grad.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), 3 * a**2)
    g = x.grad
    x.grad = None
    g.sum().backward()  # differentiate the gradient: d/dx sum(3x^2) = 6x
    np.testing.assert_allclose(x.grad.numpy(), 6 * a)
    x.grad = None
    y.backward()  # the forward graph was retained
    np.testing.assert_allclose(x.grad.numpy(), 3 * a**2)


# --------------------------------------------------------------------- mg.grad
def test_grad_twice_of_tanh() -> None:
    a = np.array([-1.3, 0.0, 0.4, 2.0])
    x = leaf(a)
    (g,) = mg.grad(x.tanh().sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), dtanh(a))
    assert g.requires_grad
    (g2,) = mg.grad(g.sum(), x)
    np.testing.assert_allclose(g2.numpy(), d2tanh(a), rtol=1e-12)
    assert x.grad is None


def test_third_derivative_of_cube() -> None:
    a = np.array([0.5, -2.0, 3.0])
    x = leaf(a)
    (g1,) = mg.grad((x**3).sum(), x, create_graph=True)
    (g2,) = mg.grad(g1.sum(), x, create_graph=True)
    (g3,) = mg.grad(g2.sum(), x)
    np.testing.assert_allclose(g1.numpy(), 3 * a**2)
    np.testing.assert_allclose(g2.numpy(), 6 * a)
    np.testing.assert_allclose(g3.numpy(), np.full(3, 6.0))


def test_mixed_second_derivative() -> None:
    """d/dy (d/dx sum(x^2 * y)) = 2x, and d/dx of the same = 2y."""
    a, b = np.array([1.0, -2.0]), np.array([3.0, 0.5])
    x, y = leaf(a), leaf(b)
    (gx,) = mg.grad((x * x * y).sum(), x, create_graph=True)
    np.testing.assert_allclose(gx.numpy(), 2 * a * b)
    gxx, gxy = mg.grad(gx.sum(), [x, y])
    np.testing.assert_allclose(gxx.numpy(), 2 * b)
    np.testing.assert_allclose(gxy.numpy(), 2 * a)


def test_grad_does_not_touch_dot_grad() -> None:
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    x.grad = mg.tensor(np.array([10.0, 10.0]))
    gx, gw = mg.grad((x * w).sum(), [x, w])
    np.testing.assert_allclose(gx.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(gw.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), [10.0, 10.0])
    assert w.grad is None


def test_grad_of_non_leaf_inputs() -> None:
    a = np.array([0.2, -0.5, 1.0])
    x = leaf(a)
    h = x * 2.0
    u = h.tanh()
    y = (u * u).sum()
    gh, gu, gx = mg.grad(y, [h, u, x])
    t = np.tanh(2 * a)
    np.testing.assert_allclose(gu.numpy(), 2 * t)
    np.testing.assert_allclose(gh.numpy(), 2 * t * (1 - t**2))
    np.testing.assert_allclose(gx.numpy(), 4 * t * (1 - t**2))
    assert x.grad is None


def test_grad_of_output_with_respect_to_itself() -> None:
    x = leaf([1.0, 2.0])
    y = x * 3.0
    (g,) = mg.grad(y, y, grad_outputs=mg.tensor(np.array([0.5, -1.0])))
    np.testing.assert_allclose(g.numpy(), [0.5, -1.0])


def test_grad_with_grad_outputs_and_several_outputs() -> None:
    a = np.array([1.0, 2.0, 3.0])
    x = leaf(a)
    y1, y2 = x * x, x.exp()
    v1, v2 = np.array([1.0, 0.0, -1.0]), np.array([0.5, 0.5, 2.0])
    (g,) = mg.grad([y1, y2], x, grad_outputs=[mg.tensor(v1), mg.tensor(v2)])
    np.testing.assert_allclose(g.numpy(), 2 * a * v1 + np.exp(a) * v2)


def test_grad_allow_unused() -> None:
    x, z = leaf([1.0, 2.0]), leaf([5.0])
    y = (x * 2.0).sum()
    with pytest.raises(mg.GraphError, match="allow_unused"):
        mg.grad(y, [x, z], retain_graph=True)
    gx, gz = mg.grad(y, [x, z], allow_unused=True)
    np.testing.assert_allclose(gx.numpy(), [2.0, 2.0])
    assert gz is None


def test_grad_input_without_requires_grad_raises() -> None:
    x = leaf([1.0])
    c = mg.tensor(np.array([2.0]))
    with pytest.raises(mg.GraphError):
        mg.grad((x * c).sum(), [c])


def test_grad_outputs_count_mismatch_raises() -> None:
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError):
        mg.grad([x * 2.0, x * 3.0], x, grad_outputs=[mg.ones(2, dtype=np.float64)])


# ------------------------------------------------------------------- grad mode
def test_no_grad_context_manager() -> None:
    x = leaf([1.0, 2.0])
    assert mg.is_grad_enabled()
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = x * 2.0
    assert mg.is_grad_enabled()
    assert not y.requires_grad
    assert y.grad_fn is None
    np.testing.assert_allclose(y.numpy(), [2.0, 4.0])


def test_no_grad_and_enable_grad_as_decorators() -> None:
    x = leaf([1.0, 2.0])

    @mg.no_grad()
    def plain(t: mg.Tensor) -> mg.Tensor:
        assert not mg.is_grad_enabled()
        return t * 2.0

    @mg.enable_grad()
    def recorded(t: mg.Tensor) -> mg.Tensor:
        assert mg.is_grad_enabled()
        return t * 2.0

    assert not plain(x).requires_grad
    assert plain.__name__ == "plain"
    with mg.no_grad():
        y = recorded(x)
        assert not mg.is_grad_enabled()
    assert y.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    assert mg.is_grad_enabled()


def test_grad_mode_restored_after_exception() -> None:
    with pytest.raises(RuntimeError), mg.no_grad():
        raise RuntimeError("boom")
    assert mg.is_grad_enabled()
    with mg.no_grad():
        with pytest.raises(RuntimeError), mg.enable_grad():
            raise RuntimeError("boom")
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()


def test_set_grad_enabled() -> None:
    x = leaf([1.0])
    with mg.set_grad_enabled(False):
        assert not (x * 2.0).requires_grad
    with mg.set_grad_enabled(True):
        assert (x * 2.0).requires_grad


# ----------------------------------------------------------------------- detach
def test_detach_cuts_the_graph_and_shares_data() -> None:
    a = np.array([1.0, 2.0])
    x = leaf(a)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    y = (x * d).sum()  # d is a constant here: dy/dx = d
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), a)
    with mg.no_grad():
        d[0] = 7.0
    assert x.numpy()[0] == 7.0  # same memory


def test_detached_intermediate_blocks_gradient() -> None:
    a = np.array([0.5, 1.5])
    x = leaf(a)
    h = x.exp()
    y = (h.detach() * x + h).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp(a) + np.exp(a))


# ------------------------------------------------------------------ deep graphs
def test_long_chain_backward_without_recursion_error() -> None:
    n = 100_000
    x = leaf([1.0])
    start = time.perf_counter()
    y = x
    for _ in range(n):
        y = y * 1.00001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.00001**n], rtol=1e-9)
    del y  # tearing the chain down must not recurse either
    assert time.perf_counter() - start < 30.0


def test_long_chain_create_graph() -> None:
    n = 2000
    a = np.array([0.1])
    x = leaf(a)
    y = x
    for _ in range(n):
        y = y + x * 0.001
    (g,) = mg.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), [1 + n * 0.001])
    (g2,) = mg.grad((g * x).sum(), x)
    np.testing.assert_allclose(g2.numpy(), [1 + n * 0.001])


# ---------------------------------------------------------------------- diamonds
def test_diamond_graph_value_used_twice() -> None:
    a = np.array([0.3, -0.8])
    x = leaf(a)
    h = x.tanh()
    y = (h * 2.0 + h.exp() * h).sum()
    y.backward()
    t = np.tanh(a)
    np.testing.assert_allclose(x.grad.numpy(), (2 + np.exp(t) * (1 + t)) * (1 - t**2))


def test_leaf_used_many_times() -> None:
    a = np.array([1.5, -0.5])
    x = leaf(a)
    y = (x * x * x + x - x / x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * a**2 + 1)


def test_same_tensor_as_both_operands() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = leaf(a)
    (x @ x).sum().backward()
    ones = np.ones((2, 2))
    np.testing.assert_allclose(x.grad.numpy(), ones @ a.T + a.T @ ones)


def test_branch_that_does_not_reach_output_is_ignored() -> None:
    x = leaf([1.0, 2.0])
    unused = x.exp()
    y = (x * 3.0).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])
    assert unused.grad_fn.saved is not None  # nothing ran through it


# --------------------------------------------------------------- multi-output
class SplitHalves(mg.Function):
    """Two outputs: the first half times two and the square of the second half."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0] // 2
        ctx.save_for_backward(x)
        return x[:n] * 2, x[n:] ** 2

    @staticmethod
    def backward(ctx: Any, g1: mg.Tensor, g2: mg.Tensor) -> mg.Tensor:
        (x,) = ctx.saved_tensors
        n = x.shape[0] // 2
        return mg.concatenate([g1 * 2.0, g2 * x[n:] * 2.0])


def test_multi_output_function() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    x = leaf(a)
    p, q = SplitHalves.apply(x)
    np.testing.assert_allclose(p.numpy(), [2.0, 4.0])
    np.testing.assert_allclose(q.numpy(), [9.0, 16.0])
    assert p.grad_fn is q.grad_fn
    (p.sum() + (q * q).sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 4 * 27.0, 4 * 64.0])


def test_multi_output_only_one_used_gets_zeros_for_the_other() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    x = leaf(a)
    _, q = SplitHalves.apply(x)
    q.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 6.0, 8.0])
    x2 = leaf(a)
    p, _ = SplitHalves.apply(x2)
    (p * p).sum().backward()
    np.testing.assert_allclose(x2.grad.numpy(), [8.0, 16.0, 0.0, 0.0])


def test_multi_output_gradcheck_and_gradgradcheck() -> None:
    x = leaf([0.5, -1.0, 2.0, 1.5])
    assert mg.gradcheck(SplitHalves.apply, [x])
    assert mg.gradgradcheck(SplitHalves.apply, [x])


# ------------------------------------------------------------ seed gradients
def test_backward_on_non_scalar_without_grad_raises() -> None:
    x = leaf([1.0, 2.0])
    with pytest.raises(mg.GraphError, match=r"shape \(2,\)") as info:
        (x * 2.0).backward()
    assert "grad" in str(info.value)


def test_backward_with_explicit_grad() -> None:
    a = np.array([[1.0, 2.0], [3.0, -1.0]])
    x = leaf(a)
    v = np.array([[0.5, -1.0], [2.0, 0.0]])
    (x**2).backward(mg.tensor(v))
    np.testing.assert_allclose(x.grad.numpy(), 2 * a * v)
    x.grad = None
    (x**2).backward(v)  # a plain array works too
    np.testing.assert_allclose(x.grad.numpy(), 2 * a * v)


def test_backward_with_python_number_grad_on_scalar() -> None:
    x = leaf([1.0, 2.0])
    (x * x).sum().backward(3.0)
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 12.0])


def test_grad_of_wrong_shape_raises() -> None:
    x = leaf([1.0, 2.0, 3.0])
    y = x * 2.0
    with pytest.raises(mg.ShapeError, match=r"\(2,\).*\(3,\)"):
        y.backward(mg.tensor(np.ones(2)))
    with pytest.raises(mg.ShapeError):
        mg.grad(y, x, grad_outputs=mg.tensor(np.ones((3, 1))))


def test_failed_backward_leaves_graph_usable() -> None:
    x = leaf([1.0, 2.0])
    y = x * x
    with pytest.raises(mg.ShapeError):
        y.backward(mg.tensor(np.ones(5)))
    y.backward(mg.tensor(np.ones(2)))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_backward_on_tensor_without_history_raises() -> None:
    c = mg.tensor(np.array(1.0))
    with pytest.raises(mg.GraphError, match="does not require grad"):
        c.backward()
    x = leaf([1.0])
    with mg.no_grad():
        y = (x * 2.0).sum()
    with pytest.raises(mg.GraphError):
        y.backward()


def test_backward_on_leaf_itself() -> None:
    x = leaf(2.0)
    x.backward()
    assert x.grad.item() == 1.0


def test_gradient_does_not_alias_explicit_grad() -> None:
    """Later changes to the seed gradient do not reach ``.grad``."""
    x = leaf([1.0, 2.0])
    seed = np.array([5.0, 6.0])
    x.clone().backward(seed)
    seed[0] = 100.0
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 6.0])


def test_two_leaves_never_share_a_grad_buffer() -> None:
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x + y).backward(mg.tensor(np.array([1.0, 1.0])))
    with mg.no_grad():
        x.grad += 1.0
    np.testing.assert_allclose(y.grad.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_requires_grad_propagation_and_leaves() -> None:
    x = leaf([1.0])
    c = mg.tensor(np.array([2.0]))
    assert x.is_leaf and x.grad_fn is None
    y = x * c
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    z = c * 3.0
    assert not z.requires_grad and z.is_leaf
    with pytest.raises(mg.GraphError):
        y.requires_grad = False
