"""minigrad.nn.functional: gradients by finite differences, values and gradients against
PyTorch, and the errors users see for bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F


def t64(rng: np.random.Generator, *shape: int, grad: bool = True) -> mg.Tensor:
    return mg.tensor(rng.standard_normal(shape), dtype=mg.float64, requires_grad=grad)


# ----------------------------------------------------------------- gradcheck (float64)
@pytest.mark.parametrize("xshape", [(3, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(rng, xshape, bias):
    x, w = t64(rng, *xshape), t64(rng, 5, 4)
    b = t64(rng, 5) if bias else None
    inputs = [x, w] + ([b] if bias else [])
    assert mg.gradcheck(lambda *a: F.linear(*a) if bias else F.linear(a[0], a[1]), inputs)
    assert mg.gradgradcheck(lambda *a: F.linear(*a) if bias else F.linear(a[0], a[1]), inputs)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((2, 1), (0, 2)), (3, 1)])
def test_conv2d_gradcheck(rng, stride, padding):
    x, w, b = t64(rng, 2, 2, 5, 6), t64(rng, 3, 2, 3, 2), t64(rng, 3)

    def f(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=padding)

    assert mg.gradcheck(f, [x, w, b])


def test_conv2d_double_backward(rng):
    x, w, b = t64(rng, 1, 2, 4, 4), t64(rng, 2, 2, 3, 3), t64(rng, 2)
    assert mg.gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [x, w, b])
    assert mg.gradgradcheck(F.conv2d, [x, w])


POOLS = [  # kernel, stride, padding, input H x W
    (2, None, 0, (4, 6)),        # windows tile the image: the separable path
    (2, None, 0, (5, 5)),        # a row and a column left over
    (3, 2, 1, (5, 6)),           # overlapping, padded
    (2, 1, 0, (4, 4)),           # stride != kernel, overlapping
    ((3, 2), (1, 2), (1, 0), (5, 4)),
    (3, None, 0, (6, 6)),        # 9 candidates per window (index, not a flag)
    ((1, 2), None, 0, (3, 4)),
]


@pytest.mark.parametrize("kernel,stride,padding,hw", POOLS)
@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pool_gradcheck(rng, pool, kernel, stride, padding, hw):
    x = t64(rng, 2, 2, *hw)
    assert mg.gradcheck(lambda x: pool(x, kernel, stride, padding), [x])
    assert mg.gradgradcheck(lambda x: pool(x, kernel, stride, padding), [x])


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("axis", [0, -1, 1])
def test_softmax_gradcheck(rng, fn, axis):
    x = t64(rng, 3, 4, 2)
    assert mg.gradcheck(lambda x: fn(x, axis), [x])
    assert mg.gradgradcheck(lambda x: fn(x, axis), [x])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(rng, reduction):
    z = t64(rng, 4, 5)
    y = np.array([0, 4, 2, 2])
    assert mg.gradcheck(lambda z: F.cross_entropy(z, y, reduction), [z])
    assert mg.gradgradcheck(lambda z: F.cross_entropy(z, y, reduction), [z])


def test_elementwise_and_mse_gradcheck(rng):
    x, y = t64(rng, 3, 4), t64(rng, 3, 4)
    x.data[np.abs(x.data) < 0.1] += 0.5  # keep away from relu's kink
    for fn in (F.relu, F.sigmoid, F.tanh):
        assert mg.gradcheck(fn, [x])
    for red in ("mean", "sum", "none"):
        assert mg.gradcheck(lambda a, b, red=red: F.mse_loss(a, b, red), [x, y])


def test_dropout_gradcheck(rng):
    x = t64(rng, 4, 5)

    def f(x):
        mg.manual_seed(7)  # the same mask on every evaluation
        return F.dropout(x, 0.4)

    assert mg.gradcheck(f, [x])
    assert mg.gradgradcheck(f, [x])


def test_nll_of_log_softmax_matches_cross_entropy(rng):
    z = t64(rng, 5, 3)
    y = np.array([2, 0, 1, 1, 0])
    a = F.nll_loss(F.log_softmax(z, axis=1), y)
    b = F.cross_entropy(z, y)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)
    ga, = mg.grad(a, z)
    gb, = mg.grad(b, z)
    np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-10)


# ----------------------------------------------------------------- PyTorch oracle
def _compare(torch, mg_fn, t_fn, arrays, rtol=1e-5, atol=1e-6, grads=True):
    """Run both frameworks on the same data; compare outputs and input gradients."""
    mins = [mg.tensor(a, requires_grad=grads) for a in arrays]
    tins = [torch.tensor(a, requires_grad=grads) for a in arrays]
    out, tout = mg_fn(*mins), t_fn(*tins)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=rtol, atol=atol)
    if grads:
        seed = np.random.default_rng(5).standard_normal(out.shape).astype(arrays[0].dtype)
        out.backward(mg.tensor(seed))
        tout.backward(torch.tensor(seed))
        for m, t in zip(mins, tins):
            np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), ((2, 3), (1, 0)), (2, 0)])
def test_conv2d_matches_torch(torch, rng, dtype, stride, padding):
    tf = torch.nn.functional
    x = rng.standard_normal((3, 4, 9, 8)).astype(dtype)
    w = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    _compare(torch, lambda x, w, b: F.conv2d(x, w, b, stride, padding),
             lambda x, w, b: tf.conv2d(x, w, b, stride, padding), [x, w, b], rtol=1e-4,
             atol=1e-4)
    _compare(torch, lambda x, w: F.conv2d(x, w, stride=stride, padding=padding),
             lambda x, w: tf.conv2d(x, w, stride=stride, padding=padding), [x, w], rtol=1e-4,
             atol=1e-4)


def test_conv2d_1x1_and_full_kernel_match_torch(torch, rng):
    tf = torch.nn.functional
    x = rng.standard_normal((2, 3, 5, 5))
    for k in (1, 5):
        w = rng.standard_normal((4, 3, k, k))
        _compare(torch, F.conv2d, tf.conv2d, [x, w], rtol=1e-10)


@pytest.mark.parametrize("kernel,stride,padding,hw", POOLS + [(2, 2, 1, (7, 7))])
def test_pools_match_torch(torch, rng, kernel, stride, padding, hw):
    tf = torch.nn.functional
    x = rng.standard_normal((2, 3, *hw)).astype(np.float32)
    _compare(torch, lambda x: F.max_pool2d(x, kernel, stride, padding),
             lambda x: tf.max_pool2d(x, kernel, stride, padding), [x])
    _compare(torch, lambda x: F.avg_pool2d(x, kernel, stride, padding),
             lambda x: tf.avg_pool2d(x, kernel, stride, padding), [x])


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 1), (2, 1), (3, None)])
def test_max_pool_ties_go_to_the_first_element_like_torch(torch, rng, kernel, stride):
    # Few distinct values: most windows hold their maximum more than once.
    x = rng.integers(0, 3, size=(2, 2, 6, 6)).astype(np.float64)
    _compare(torch, lambda x: F.max_pool2d(x, kernel, stride),
             lambda x: torch.nn.functional.max_pool2d(x, kernel, stride), [x], rtol=1e-12,
             atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_family_matches_torch(torch, rng, axis):
    tf = torch.nn.functional
    x = (rng.standard_normal((4, 5, 3)) * 30).astype(np.float32)  # large: needs stability
    _compare(torch, lambda x: F.softmax(x, axis), lambda x: tf.softmax(x, axis), [x])
    _compare(torch, lambda x: F.log_softmax(x, axis), lambda x: tf.log_softmax(x, axis), [x],
             rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch(torch, rng, reduction):
    tf = torch.nn.functional
    z = (rng.standard_normal((6, 4)) * 50).astype(np.float32)  # exp would overflow naively
    y = rng.integers(0, 4, size=6)
    _compare(torch, lambda z: F.cross_entropy(z, y, reduction),
             lambda z: tf.cross_entropy(z, torch.tensor(y), reduction=reduction), [z],
             rtol=1e-5, atol=1e-5)
    a, b = rng.standard_normal((2, 3, 4))
    _compare(torch, lambda a, b: F.mse_loss(a, b, reduction),
             lambda a, b: tf.mse_loss(a, b, reduction=reduction), [a, b], rtol=1e-12)
    logp = np.log(rng.dirichlet(np.ones(4), size=6))
    _compare(torch, lambda p: F.nll_loss(p, y, reduction),
             lambda p: tf.nll_loss(p, torch.tensor(y), reduction=reduction), [logp], rtol=1e-12)


def test_linear_and_activations_match_torch(torch, rng):
    tf = torch.nn.functional
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    _compare(torch, F.linear, tf.linear, [x, w, b], rtol=1e-12)
    _compare(torch, F.linear, tf.linear, [x, w], rtol=1e-12)
    for ours, theirs in ((F.relu, tf.relu), (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh)):
        _compare(torch, ours, theirs, [x * 10], rtol=1e-12, atol=1e-12)


def test_cross_entropy_is_finite_for_huge_logits():
    z = mg.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(z, np.array([1, 2]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), 1e4, rtol=1e-6)
    assert np.all(np.isfinite(z.grad.numpy()))


# ----------------------------------------------------------------- dropout
def test_dropout_is_reproducible_and_scaled():
    x = mg.ones(200, 100)
    mg.manual_seed(42)
    a = F.dropout(x, 0.25).numpy()
    mg.manual_seed(42)
    b = F.dropout(x, 0.25).numpy()
    np.testing.assert_array_equal(a, b)
    c = F.dropout(x, 0.25).numpy()
    assert not np.array_equal(a, c)  # the generator moved on
    kept = a != 0
    np.testing.assert_allclose(a[kept], 1 / 0.75, rtol=1e-6)  # scaled by 1/(1-p)
    assert abs(kept.mean() - 0.75) < 0.02
    assert abs(a.mean() - 1.0) < 0.03  # the expectation is unchanged


def test_dropout_gradient_uses_the_same_mask():
    x = mg.randn(50, 40, requires_grad=True)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (y.numpy() != 0) * 2.0)


def test_dropout_edge_cases():
    x = mg.randn(4, 5, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((4, 5)))
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"dropout: p must be a probability"):
            F.dropout(x, p)


# ----------------------------------------------------------------- tape and second order
def test_ops_appear_on_the_tape_under_their_names(rng):
    x = mg.tensor(rng.standard_normal((2, 1, 6, 6)), requires_grad=True)
    w = mg.tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    h = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    loss = F.cross_entropy(h.reshape(2, -1), np.array([0, 5]))
    names = [r.name for r in mg.tape(loss)]
    assert names == ["conv2d", "relu", "max_pool2d", "reshape", "cross_entropy"]
    gx, = mg.grad(loss, x, create_graph=True)
    back = {r.name for r in mg.tape(gx)}
    assert {"conv2d_input_grad", "max_unpool2d", "softmax"} <= back


def test_second_derivative_of_conv_matches_torch(torch, rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    mx, mw = mg.tensor(x, requires_grad=True), mg.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    gx, = mg.grad(F.conv2d(mx, mw, stride=2, padding=1).tanh().sum(), mx, create_graph=True)
    tgx, = torch.autograd.grad(torch.nn.functional.conv2d(tx, tw, stride=2, padding=1)
                               .tanh().sum(), tx, create_graph=True)
    (gx * gx).sum().backward()
    (tgx * tgx).sum().backward()
    np.testing.assert_allclose(mw.grad.numpy(), tw.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------- errors
def test_conv2d_errors_name_the_shapes(rng):
    x = mg.randn(2, 3, 8, 8)
    with pytest.raises(mg.ShapeError, match=r"conv2d: input has 3 channels.*\(2, 3, 8, 8\).*"
                                            r"\(4, 1, 3, 3\) expects 1"):
        F.conv2d(x, mg.randn(4, 1, 3, 3))
    with pytest.raises(mg.ShapeError, match=r"conv2d: expected a 4-D input \(N, C, H, W\), got "
                                            r"shape \(3, 8, 8\)"):
        F.conv2d(mg.randn(3, 8, 8), mg.randn(4, 3, 3, 3))
    with pytest.raises(mg.ShapeError, match=r"kernel 9x9 is larger than the padded input 8x8"):
        F.conv2d(x, mg.randn(4, 3, 9, 9))
    with pytest.raises(mg.ShapeError, match=r"bias must have shape \(4,\)"):
        F.conv2d(x, mg.randn(4, 3, 3, 3), mg.randn(3))
    with pytest.raises(ValueError, match=r"conv2d: stride must be .* >= 1, got 0"):
        F.conv2d(x, mg.randn(4, 3, 3, 3), stride=0)
    with pytest.raises(mg.DTypeError, match=r"conv2d: operands must share one dtype.*float64"):
        F.conv2d(x, mg.randn(4, 3, 3, 3, dtype=mg.float64))


def test_linear_errors_name_the_shapes():
    with pytest.raises(mg.ShapeError, match=r"linear: input of shape \(2, 5\) does not fit "
                                            r"weight of shape \(3, 4\).*last dimension to be 4"):
        F.linear(mg.randn(2, 5), mg.randn(3, 4))
    with pytest.raises(mg.ShapeError, match=r"bias must have shape \(3,\)"):
        F.linear(mg.randn(2, 4), mg.randn(3, 4), mg.randn(4))
    with pytest.raises(mg.DTypeError, match=r"input must be floating point, got dtype int64"):
        F.linear(mg.tensor([[1, 2, 3, 4]]), mg.randn(3, 4))


def test_loss_and_pool_errors():
    z = mg.randn(3, 4)
    # the label, its position and the number of classes; an IndexError as in PyTorch
    with pytest.raises(mg.IndexOutOfRangeError, match=r"cross_entropy: target\[1\] = 4 is out "
                       r"of range: the scores \(shape \(3, 4\)\) have 4 classes, 0 to 3"):
        F.cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match=r"target\[1\] = -1 is out of range"):
        F.cross_entropy(z, [0, -1, 1])
    with pytest.raises(IndexError, match=r"nll_loss: target\[2\] = 7"):
        F.nll_loss(z, mg.tensor([0, 1, 7]))
    with pytest.raises(mg.DTypeError, match=r"integer class indices, got dtype float64; if it "
                       r"holds whole numbers, convert it: target.astype\(mg.int64\)"):
        F.cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    onehot = mg.tensor(np.eye(4, dtype=np.float32)[[0, 3, 1]])
    with pytest.raises(mg.DTypeError, match=r"dtype float32 and shape \(3, 4\), like one-hot "
                       r"rows; pass the class of each row instead: target.argmax\(axis=1\)"
                       r"$") as info:
        F.cross_entropy(z, onehot)
    assert "astype" not in str(info.value)
    assert F.cross_entropy(z, onehot.argmax(axis=1)).shape == ()  # and the hint works
    with pytest.raises(mg.ShapeError, match=r"target must have shape \(3,\).*got \(2,\)"):
        F.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(mg.ShapeError, match=r"expected scores of shape \(N, C\), got shape "
                                            r"\(3, 4, 1\)"):
        F.cross_entropy(mg.randn(3, 4, 1), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        F.cross_entropy(z, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(mg.ShapeError, match=r"mse_loss: input has shape \(3, 1\) but target has "
                                            r"shape \(3,\)"):
        F.mse_loss(mg.randn(3, 1), mg.randn(3))
    with pytest.raises(mg.ShapeError, match=r"max_pool2d: expected a 4-D input"):
        F.max_pool2d(mg.randn(2, 4, 4), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding \(2, 2\) must be at most half"):
        F.avg_pool2d(mg.randn(1, 1, 8, 8), 3, padding=2)
    with pytest.raises(mg.ShapeError, match=r"kernel 5x5 is larger than the padded input 4x4"):
        F.max_pool2d(mg.randn(1, 1, 4, 4), 5)
    with pytest.raises(mg.ShapeError, match=r"softmax: axis 2 is out of range"):
        F.softmax(mg.randn(2, 3), axis=2)
