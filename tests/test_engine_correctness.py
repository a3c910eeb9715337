"""Engine correctness beyond plain accumulation: partial mg.grad, aliased saved values,
in-place changes to anything backward reads, axis ranges, per-thread state.

Each expected value comes from PyTorch CPU (the ``torch`` fixture) or from a
derivative worked out by hand.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F


def leaf(values) -> mg.Tensor:
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


# ------------------------------------------------- a partial mg.grad leaves no trace
def test_partial_grad_does_not_leak_into_a_later_backward() -> None:
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    loss = (x * (w * 1.0)).sum()
    mg.grad(loss, [x], retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])


def test_partial_grads_in_turn_are_not_doubled() -> None:
    x0, x1 = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    loss = (x0 * (x1 * 2.0)).sum()
    (g0,) = mg.grad(loss, [x0], retain_graph=True, allow_unused=True)
    (g1,) = mg.grad(loss, [x1], retain_graph=True)
    np.testing.assert_array_equal(g0.numpy(), [6.0, 8.0])
    np.testing.assert_array_equal(g1.numpy(), [2.0, 4.0])
    (g1_again,) = mg.grad(loss, [x1])
    np.testing.assert_array_equal(g1_again.numpy(), [2.0, 4.0])


def test_partial_create_graph_grad_then_plain_backward_has_plain_arrays() -> None:
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    loss = (x * (w * 1.0)).tanh().sum()
    mg.grad(loss, [x], create_graph=True)
    loss.backward()
    assert isinstance(w.grad.data, np.ndarray)
    assert not isinstance(w.grad.data.view(np.ndarray), mg.Tensor)
    expected = x.numpy() * (1 - np.tanh(x.numpy() * w.numpy()) ** 2)
    np.testing.assert_allclose(w.grad.numpy(), expected)


def test_tensor_data_can_never_be_a_tensor() -> None:
    t = mg.tensor([1.0, 2.0])
    t.data = mg.tensor([3.0, 4.0])
    assert isinstance(t.data, np.ndarray)
    assert mg.as_tensor(np.ones(2)).data.dtype == np.float64


def test_composed_batch_norm_mixed_second_derivative_matches_torch(torch) -> None:
    rng = np.random.default_rng(0)
    xv, wv, bv = rng.normal(size=(6, 3)), rng.normal(size=3) + 1.5, rng.normal(size=3)
    cv = rng.normal(size=(6, 3))
    results = {}
    for impl in ("composed", "fused"):
        x, w, b = leaf(xv), leaf(wv), leaf(bv)
        y = F.batch_norm(x, None, None, w, b, training=True, impl=impl)
        (gx,) = mg.grad((y * mg.tensor(cv)).sum(), [x], create_graph=True)
        (gw,) = mg.grad((gx * gx).sum(), [w])
        assert isinstance(gw.data, np.ndarray)
        results[impl] = gw.numpy()
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (xv, wv, bv))
    ty = torch.nn.functional.batch_norm(tx, None, None, tw, tb, training=True)
    (tgx,) = torch.autograd.grad((ty * torch.tensor(cv)).sum(), [tx], create_graph=True)
    (tgw,) = torch.autograd.grad((tgx * tgx).sum(), [tw])
    for impl, got in results.items():
        np.testing.assert_allclose(got, tgw.numpy(), rtol=1e-6, atol=1e-9, err_msg=impl)


# ------------------------------------- a tensor and its .detach() share an array
def test_times_detached_self_has_no_second_derivative(torch) -> None:
    xv = np.array([0.7, -1.3])
    x = leaf(xv)
    loss = (x * x.detach() * 0.63).sum()
    (g,) = mg.grad(loss, [x], create_graph=True)
    tx = torch.tensor(xv, requires_grad=True)
    (tg,) = torch.autograd.grad((tx * tx.detach() * 0.63).sum(), [tx], create_graph=True)
    assert g.requires_grad == tg.requires_grad is False
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy())


def test_detached_over_self_keeps_its_second_derivative(torch) -> None:
    xv = np.array([0.7, -1.3])
    x = leaf(xv)
    y = -x
    (g,) = mg.grad((y.detach() / y).sum(), [x], create_graph=True)
    assert g.requires_grad
    (hvp,) = mg.grad(g.sum(), [x])
    tx = torch.tensor(xv, requires_grad=True)
    ty = -tx
    (tg,) = torch.autograd.grad((ty.detach() / ty).sum(), [tx], create_graph=True)
    (thvp,) = torch.autograd.grad(tg.sum(), [tx])
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy())
    np.testing.assert_allclose(hvp.numpy(), thvp.numpy())
    np.testing.assert_allclose(hvp.numpy(), [4.08, 1.18], atol=0.01)


# --------------------------------------- in-place changes to what backward reads
def test_changing_a_where_condition_after_forward_raises() -> None:
    a = leaf([1.0, 2.0, 3.0])
    c = mg.tensor(np.array([True, False, True]))
    y = mg.where(c, a, a * 3)
    c.fill_(False)
    with pytest.raises(mg.GraphError, match="modified in place"):
        y.sum().backward()


def test_changing_a_raw_numpy_operand_after_forward_does_not_change_the_gradient() -> None:
    x = leaf([1.0, 2.0])
    c = np.array([5.0, 7.0])
    y = (x * c).sum()
    c[:] = 0
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 7.0])


def test_changing_a_raw_where_condition_does_not_change_the_gradient() -> None:
    a = leaf([1.0, 2.0, 3.0])
    c = np.array([True, False, True])
    y = mg.where(c, a, a * 3)
    c[:] = False
    y.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 3.0, 1.0])


def test_changing_an_index_after_forward_does_not_change_the_gradient() -> None:
    x = leaf([1.0, 2.0, 3.0])
    idx = mg.tensor(np.array([0, 0, 2]))
    raw = np.array([1, 1])
    y = x[idx].sum() + x[raw].sum()
    idx.fill_(1)
    raw[:] = 2
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 1.0])


def test_changing_a_cross_entropy_target_after_forward_does_not_change_the_gradient(
        torch) -> None:
    zv = np.random.default_rng(1).normal(size=(3, 4))
    z = leaf(zv)
    target = mg.tensor(np.array([0, 3, 1]))
    loss = F.cross_entropy(z, target)
    target.fill_(2)
    loss.backward()
    tz = torch.tensor(zv, requires_grad=True)
    torch.nn.functional.cross_entropy(tz, torch.tensor([0, 3, 1])).backward()
    np.testing.assert_allclose(z.grad.numpy(), tz.grad.numpy(), rtol=1e-12)


# ------------------------------------------------------------- small op defects
@pytest.mark.parametrize("axis", [0, -1, (0,), (-1,)])
def test_reductions_over_the_only_axis_of_a_0d_tensor(axis) -> None:
    x = leaf(2.5)
    for op in (mg.sum, mg.mean, mg.max):
        y = op(x, axis=axis)
        assert y.shape == ()
        assert float(y) == 2.5


@pytest.mark.parametrize("axis", [1, -2])
def test_reductions_refuse_other_axes_of_a_0d_tensor(axis) -> None:
    with pytest.raises(mg.ShapeError, match="out of range"):
        mg.sum(leaf(2.5), axis=axis)


def test_pow_with_constant_exponent_takes_no_log_of_the_base() -> None:
    x = leaf([-2.0, 3.0])
    e = mg.tensor(np.array([2.0, 3.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x ** e).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * -2.0, 3 * 9.0])


# ------------------------------------------------------------- per-thread state
def _train(seed: int, steps: int, barrier: threading.Barrier | None = None) -> list:
    rng = np.random.default_rng(seed)
    xs, ys = rng.normal(size=(16, 4)), rng.normal(size=(16, 1))
    w1, w2 = leaf(rng.normal(size=(4, 8)) * 0.5), leaf(rng.normal(size=(8, 1)) * 0.5)
    losses = []
    for _ in range(steps):
        if barrier is not None:
            barrier.wait()
        loss = (((mg.tensor(xs) @ w1).tanh() @ w2 - mg.tensor(ys)) ** 2).mean()
        loss.backward()
        with mg.no_grad():
            for w in (w1, w2):
                w -= w.grad * 0.1
                w.grad = None
        losses.append(float(loss))
    return losses + [w1.numpy(), w2.numpy()]


def test_two_threads_train_two_models_at_once_exactly_as_alone() -> None:
    alone = [_train(1, 20), _train(2, 20)]
    together: list = [None, None]
    barrier = threading.Barrier(2)

    def run(k: int) -> None:
        together[k] = _train(k + 1, 20, barrier)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_no_grad_in_one_thread_does_not_switch_off_recording_in_another() -> None:
    entered, done = threading.Event(), threading.Event()
    seen = {}

    def quiet() -> None:
        with mg.no_grad():
            seen["inside"] = mg.is_grad_enabled()
            entered.set()
            done.wait(5)

    t = threading.Thread(target=quiet)
    t.start()
    entered.wait(5)
    try:
        x = leaf([1.0])
        y = x * 2
        assert mg.is_grad_enabled()
        assert y.requires_grad and y.grad_fn is not None
    finally:
        done.set()
        t.join()
    assert seen["inside"] is False


def test_module_scope_is_per_thread() -> None:
    entered, done = threading.Event(), threading.Event()

    class Slow(mg.nn.Module):
        def forward(self, x):
            entered.set()
            done.wait(5)
            return x * 2

    t = threading.Thread(target=lambda: Slow()(leaf([1.0])))
    t.start()
    entered.wait(5)
    try:
        y = leaf([1.0]) * 3
        assert mg.tape(y)[-1].module is None
    finally:
        done.set()
        t.join()


# ------------------------------------------------------------------- observers
def test_observers_see_each_record_of_their_thread_only_while_observing() -> None:
    seen = []
    x = leaf([1.0, 2.0])
    with mg.autograd.observers.observing(seen.append):
        y = (x * 2).tanh()
        other = threading.Thread(target=lambda: leaf([1.0]) * 3)
        other.start()
        other.join()
    z = y.sum()
    assert [r.name for r in seen] == ["mul", "tanh"]
    assert seen == list(mg.tape(y))
    assert z.grad_fn not in seen
    assert mg.autograd.observers.active() == ()


def test_an_observer_can_annotate_records() -> None:
    def note(record) -> None:
        assert record.out_meta == (((1,), np.float64),)  # the record is complete
        record.module = "my block"

    x = leaf([1.0])
    with mg.autograd.observers.observing(note):
        y = x * 2
    assert mg.tape(y)[0].module == "my block"
    assert mg.tape(y * 3)[-1].module is None


# ------------------------------------------- broadcasting undone by the engine
def test_a_one_input_array_backward_function_may_return_a_broadcast_gradient() -> None:
    class Twice(mg.Function):
        """x * 2, whose backward hands back its gradient repeated along a new first axis."""

        array_backward = True

        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return (g * 2.0)[None, :].repeat(3, axis=0)

    x = leaf([1.0, 2.0])
    Twice.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_a_gradient_that_cannot_be_summed_to_its_input_names_the_op() -> None:
    class Wrong(mg.Function):
        array_backward = True

        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            return np.ones(3)

    with pytest.raises(mg.ShapeError, match=r"wrong.backward returned a gradient of shape "
                                            r"\(3,\) for input 0, whose shape is \(2,\)"):
        Wrong.apply(leaf([1.0, 2.0])).sum().backward()
