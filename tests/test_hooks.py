"""Gradient hooks, retain_grad and module forward hooks, against PyTorch's semantics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn

X0 = np.array([1.0, -2.0, 0.5])


def scenario(lib: Any, make: Any, grad_fn: Any, log: list) -> dict:
    """The same hooks in either library: a leaf hook that doubles, two hooks on an
    intermediate (one adds 1, one only looks), retain_grad registered first; then a
    gradient call and two backward calls."""
    x = make(X0)
    x.register_hook(lambda g: log.append(("x", g.tolist())) or g * 2)
    y = x * 3
    y.retain_grad()
    y.register_hook(lambda g: log.append(("y1", g.tolist())) or g + 1)
    h2 = y.register_hook(lambda g: log.append(("y2", g.tolist())))
    z = (y * y).sum()
    out = {"grad": grad_fn(z, x).tolist(), "y.grad after grad": y.grad.tolist()}
    z.backward(retain_graph=True)
    out["x.grad"], out["y.grad"] = x.grad.tolist(), y.grad.tolist()
    h2.remove()
    z.backward()
    out["x.grad 2"], out["y.grad 2"] = x.grad.tolist(), y.grad.tolist()
    return out


def test_hooks_order_replacement_accumulation_and_removal_match_torch(torch: Any) -> None:
    got_log: list = []
    got = scenario(mg, lambda a: mg.tensor(a, requires_grad=True),
                   lambda z, x: mg.grad(z, x, retain_graph=True)[0], got_log)
    want_log: list = []
    want = scenario(torch, lambda a: torch.tensor(a, requires_grad=True),
                    lambda z, x: torch.autograd.grad(z, x, retain_graph=True)[0], want_log)
    assert got == want
    assert got_log == want_log


def test_a_hook_sees_the_complete_gradient_of_a_value_used_twice() -> None:
    x = mg.tensor(X0, requires_grad=True)
    y = x * 2
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy()))
    (y * y + y).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * (2 * X0) + 1)


def test_hooks_under_create_graph_get_and_may_return_graph_tensors() -> None:
    x = mg.tensor(X0, requires_grad=True)
    y = x * x
    y.register_hook(lambda g: g * x)  # the replacement depends on x: second order sees it
    (g,) = mg.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), 2 * X0 * X0)
    (gg,) = mg.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), 4 * X0)  # d(2 x^2)/dx, as PyTorch


def test_a_hook_with_a_wrong_shape_and_bad_registrations_are_errors() -> None:
    x = mg.tensor(X0, requires_grad=True)
    x.register_hook(lambda g: g.sum())
    with pytest.raises(mg.ShapeError, match="must keep the shape"):
        (x * 2).sum().backward()
    with pytest.raises(mg.GraphError, match="does not require grad"):
        mg.tensor(X0).register_hook(print)
    with pytest.raises(TypeError, match="expected a function"):
        x.register_hook(3)


def test_retain_grad_on_a_leaf_changes_nothing_and_handles_work_as_context_managers() -> None:
    x = mg.tensor(X0, requires_grad=True)
    x.retain_grad()
    with x.register_hook(lambda g: g * 0):
        (x * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0 * X0)
    x.grad = None
    (x * 1).sum().backward()  # the hook is gone
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))


# ----------------------------------------------------------------- module hooks
def module_scenario(lib: Any, make_linear: Any, x: Any) -> list:
    lin = make_linear()
    log: list = []
    pre = lin.register_forward_pre_hook(lambda m, inp: log.append("pre") or (inp[0] * 2,))
    post = lin.register_forward_hook(lambda m, inp, out: log.append("post") or out + 1)
    look = lin.register_forward_hook(lambda m, inp, out: log.append(("look", out.tolist())))
    y1 = lin(x).tolist()
    pre.remove()
    post.remove()
    y2 = lin(x).tolist()
    look.remove()
    y3 = lin(x).tolist()
    return [log, y1, y2, y3]


def test_module_forward_hooks_match_torch(torch: Any) -> None:
    w, b = np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([0.25, -0.5])
    x = np.array([[1.0, 3.0]])

    def mg_linear() -> nn.Linear:
        lin = nn.Linear(2, 2, dtype=mg.float64)
        lin.weight.data[...] = w
        lin.bias.data[...] = b
        return lin

    def torch_linear() -> Any:
        lin = torch.nn.Linear(2, 2, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
        return lin

    got = module_scenario(mg, mg_linear, mg.tensor(x))
    want = module_scenario(torch, torch_linear, torch.tensor(x))
    assert got == want


def test_a_pre_hook_may_return_a_single_value_and_hooks_see_the_module() -> None:
    lin = nn.Linear(2, 1)
    seen = []
    lin.register_forward_pre_hook(lambda m, inp: inp[0] * 0)  # not a tuple: wrapped in one
    lin.register_forward_hook(lambda m, inp, out: seen.append((m, inp[0].numpy().tolist())))
    y = lin(mg.tensor([[1.0, 2.0]]))
    np.testing.assert_allclose(y.numpy(), lin.bias.numpy()[None])
    assert seen == [(lin, [[0.0, 0.0]])]
