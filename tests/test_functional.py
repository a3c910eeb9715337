"""Function transforms against PyTorch: vjp, jacobian (both modes), hessian, hvp."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F

RNG = np.random.default_rng(5)
A = RNG.standard_normal((4, 3))
B = RNG.standard_normal((3,))


def f_mg(x: mg.Tensor) -> mg.Tensor:
    return (mg.tensor(A) @ x).tanh() * x.sum()


def f_torch(torch: Any, x: Any) -> Any:
    return (torch.tensor(A) @ x).tanh() * x.sum()


def two_mg(x: mg.Tensor, y: mg.Tensor) -> tuple:
    return (x * y[:, None]).sum(axis=0), mg.exp(x[0]) * y.sum()


def two_torch(torch: Any, x: Any, y: Any) -> tuple:
    return (x * y[:, None]).sum(0), x[0].exp() * y.sum()


def scalar_mg(x: mg.Tensor, y: mg.Tensor) -> mg.Tensor:
    return (x.tanh() ** 2).sum() * (y * y).sum() + (x[:2, 0] * y).sum()


def scalar_torch(torch: Any, x: Any, y: Any) -> Any:
    return (x.tanh() ** 2).sum() * (y * y).sum() + (x[:2, 0] * y).sum()


def assert_nested(got: Any, want: Any) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_nested(g, w)
        return
    assert isinstance(got, mg.Tensor)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_one_input_one_output(torch: Any, mode: str) -> None:
    got = mg.jacobian(f_mg, mg.tensor(B), mode=mode)
    want = torch.autograd.functional.jacobian(lambda x: f_torch(torch, x), torch.tensor(B))
    assert_nested(got, want)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_several_inputs_and_outputs_nests_like_torch(torch: Any, mode: str) -> None:
    x, y = RNG.standard_normal((2, 3)), RNG.standard_normal(2)
    got = mg.jacobian(two_mg, (mg.tensor(x), mg.tensor(y)), mode=mode)
    want = torch.autograd.functional.jacobian(lambda a, b: two_torch(torch, a, b),
                                              (torch.tensor(x), torch.tensor(y)))
    assert_nested(got, want)
    # one input given as a tuple: a tuple per output, as in PyTorch
    got = mg.jacobian(lambda a: two_mg(a, mg.tensor(y)), (mg.tensor(x),), mode=mode)
    want = torch.autograd.functional.jacobian(lambda a: two_torch(torch, a, torch.tensor(y)),
                                              (torch.tensor(x),))
    assert_nested(got, want)


def test_jacobian_modes_agree_and_a_constant_output_gives_zeros() -> None:
    x = mg.tensor(RNG.standard_normal((2, 2)))
    fn = (lambda x: (x @ x).exp().sum(axis=1))
    np.testing.assert_allclose(mg.jacobian(fn, x, mode="forward").numpy(),
                               mg.jacobian(fn, x).numpy(), rtol=1e-12)
    for mode in ("reverse", "forward"):
        j = mg.jacobian(lambda x: mg.tensor(np.ones(3)), x, mode=mode)
        assert j.shape == (3, 2, 2) and not j.numpy().any()
    with pytest.raises(mg.ArgumentError, match="mode must be"):
        mg.jacobian(fn, x, mode="sideways")


def test_hessian_matches_torch(torch: Any) -> None:
    x, y = RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    got = mg.hessian(scalar_mg, (mg.tensor(x), mg.tensor(y)))
    want = torch.autograd.functional.hessian(lambda a, b: scalar_torch(torch, a, b),
                                             (torch.tensor(x), torch.tensor(y)))
    assert_nested(got, want)
    got = mg.hessian(lambda a: scalar_mg(a, mg.tensor(y)), mg.tensor(x))
    want = torch.autograd.functional.hessian(lambda a: scalar_torch(torch, a, torch.tensor(y)),
                                             torch.tensor(x))
    assert_nested(got, want)


def test_hessian_of_a_network_loss_matches_torch(torch: Any) -> None:
    x, w = RNG.standard_normal((5, 3)), RNG.standard_normal((2, 3))
    target = np.array([0, 1, 1, 0, 1])
    got = mg.hessian(lambda w: F.cross_entropy(F.linear(mg.tensor(x), w).tanh(), target),
                     mg.tensor(w))
    tf = torch.nn.functional
    want = torch.autograd.functional.hessian(
        lambda w: tf.cross_entropy(tf.linear(torch.tensor(x), w).tanh(),
                                   torch.from_numpy(target)), torch.tensor(w))
    assert_nested(got, want)


def test_hvp_matches_torch(torch: Any) -> None:
    x, y = RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    vx, vy = RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    out, hv = mg.hvp(scalar_mg, (mg.tensor(x), mg.tensor(y)), (mg.tensor(vx), mg.tensor(vy)))
    t_out, t_hv = torch.autograd.functional.hvp(
        lambda a, b: scalar_torch(torch, a, b), (torch.tensor(x), torch.tensor(y)),
        (torch.tensor(vx), torch.tensor(vy)))
    assert out.item() == pytest.approx(t_out.item(), rel=1e-12)
    assert_nested(hv, t_hv)
    # single input: a Tensor, and H v equals the Hessian times v
    _, hv1 = mg.hvp(lambda a: scalar_mg(a, mg.tensor(y)), mg.tensor(x), mg.tensor(vx))
    h = mg.hessian(lambda a: scalar_mg(a, mg.tensor(y)), mg.tensor(x)).numpy()
    np.testing.assert_allclose(hv1.numpy(), np.tensordot(h, vx, axes=2), rtol=1e-10)


def test_hvp_and_hessian_need_a_scalar() -> None:
    with pytest.raises(mg.ShapeError, match="single-valued"):
        mg.hvp(lambda x: x * 2, mg.tensor(B), mg.tensor(B))
    with pytest.raises(mg.ShapeError, match="v\\[0\\] has shape"):
        mg.hvp(lambda x: x.sum(), mg.tensor(B), mg.tensor(A))


def test_vjp_matches_torch_and_can_be_called_again(torch: Any) -> None:
    x, y = RNG.standard_normal((2, 3)), RNG.standard_normal(2)
    (o1, o2), vjp_fn = mg.vjp(two_mg, mg.tensor(x), mg.tensor(y))
    u1, u2 = RNG.standard_normal(3), RNG.standard_normal(3)
    got = vjp_fn(mg.tensor(u1), mg.tensor(u2))
    _, want = torch.autograd.functional.vjp(lambda a, b: two_torch(torch, a, b),
                                            (torch.tensor(x), torch.tensor(y)),
                                            (torch.tensor(u1), torch.tensor(u2)))
    assert_nested(got, want)
    assert_nested(vjp_fn(mg.tensor(u1), mg.tensor(u2)), want)  # the graph is kept
    assert o1.grad_fn is None and o2.grad_fn is None
    with pytest.raises(mg.ShapeError, match="2 output"):
        vjp_fn(mg.tensor(u1))


def test_vjp_of_an_input_the_output_ignores_is_zero() -> None:
    _, vjp_fn = mg.vjp(lambda a, b: a * 2, mg.tensor(B), mg.tensor(A))
    ga, gb = vjp_fn(mg.tensor(np.ones(3)))
    np.testing.assert_array_equal(ga.numpy(), 2 * np.ones(3))
    assert gb.shape == A.shape and not gb.numpy().any()


def test_jacobian_with_create_graph_can_be_differentiated(torch: Any) -> None:
    x = RNG.standard_normal(3)
    xt = mg.tensor(x, requires_grad=True)
    j = mg.jacobian(f_mg, xt, create_graph=True)
    (g,) = mg.grad((j * j).sum(), xt)
    tx = torch.tensor(x, requires_grad=True)
    tj = torch.autograd.functional.jacobian(lambda v: f_torch(torch, v), tx, create_graph=True)
    (tg,) = torch.autograd.grad((tj * tj).sum(), tx)
    np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(mg.GraphError, match="create_graph needs mode='reverse'"):
        mg.jacobian(f_mg, xt, mode="forward", create_graph=True)
