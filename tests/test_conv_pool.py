"""Convolution and pooling: every kernel/stride/padding combination by finite differences,
each input-gradient algorithm against the plain col2im, and whole CNN training
trajectories against PyTorch in float64."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.nn import _conv_arrays as ca


def t64(rng: np.random.Generator, *shape: int) -> mg.Tensor:
    return mg.tensor(rng.standard_normal(shape), dtype=mg.float64, requires_grad=True)


# (kernel, stride, padding, in_channels, out_channels): 1x1, 3x3, 5x5 and a non-square
# kernel; stride 1 and 2; no, "same" and more padding; more output than input channels
# and fewer, so that both input-gradient algorithms are taken.
CONVS = [
    (1, 1, 0, 3, 2), (1, 2, 0, 2, 3), (1, 1, 1, 2, 2),
    (3, 1, 0, 2, 3), (3, 1, 1, 3, 3), (3, 1, 1, 2, 4), (3, 2, 1, 2, 3), (3, 2, 0, 3, 2),
    (3, 1, 2, 2, 2), (3, 3, 1, 2, 2),
    (5, 1, 0, 2, 3), (5, 1, 2, 3, 2), (5, 2, 2, 2, 2), (5, 1, 0, 1, 2),
    ((3, 2), (1, 2), (1, 0), 2, 3), ((2, 5), 1, (0, 2), 3, 2),
]


@pytest.mark.parametrize("kernel,stride,padding,cin,cout", CONVS)
def test_conv2d_gradcheck_every_geometry(rng, kernel, stride, padding, cin, cout):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w, b = t64(rng, 2, cin, 7, 6), t64(rng, cout, cin, kh, kw), t64(rng, cout)
    assert mg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b])


@pytest.mark.parametrize("kernel,stride,padding,cin,cout", CONVS[::3])
def test_conv2d_gradgradcheck(rng, kernel, stride, padding, cin, cout):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w = t64(rng, 1, cin, 6, 5), t64(rng, cout, cin, kh, kw)
    assert mg.gradgradcheck(lambda x, w: F.conv2d(x, w, stride=stride, padding=padding),
                            [x, w])


@pytest.mark.parametrize("kernel,padding,cin,cout,hw", [
    (3, 0, 2, 3, (7, 6)), (3, 1, 3, 3, (6, 6)), (5, 2, 2, 4, (8, 7)), (5, 0, 6, 16, (12, 12)),
    (1, 0, 3, 2, (4, 5)), (1, 1, 2, 2, (3, 3)), ((3, 5), (2, 1), 2, 2, (5, 9)),
    (3, 2, 2, 2, (5, 5)), (5, 0, 1, 6, (9, 9))])
def test_shifted_rows_equal_columns(rng, kernel, padding, cin, cout, hw):
    """With stride 1 each pass has a shifted-rows algorithm; each must give the plain
    im2col/col2im answer, whichever one the size heuristics would pick."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    pad = (padding, padding) if isinstance(padding, int) else padding
    x = rng.standard_normal((3, cin) + hw)
    w = rng.standard_normal((cout, cin, kh, kw))
    y = ca._forward_columns(x, w, (1, 1), pad)
    np.testing.assert_allclose(ca._forward_rows(x, w, pad), y, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gw = ca._weight_grad_columns(x, g, (kh, kw), (1, 1), pad)
    np.testing.assert_allclose(ca._weight_grad_rows(x, g, (kh, kw), pad), gw, rtol=1e-12,
                               atol=1e-12)
    gx = ca.col2im(w.reshape(cout, -1).T @ g.reshape(3, cout, -1), x.shape, (kh, kw), (1, 1),
                   pad)
    np.testing.assert_allclose(ca._input_grad_rows(g, w, x.shape, pad), gx, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(ca.input_grad(g, w, x.shape, (1, 1), pad), gx, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,cin,cout", CONVS[::2])
def test_conv2d_matches_torch_every_geometry(torch, rng, dtype, kernel, stride, padding, cin,
                                             cout):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((3, cin, 9, 8)).astype(dtype)
    w = rng.standard_normal((cout, cin, kh, kw)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    mx, mw, mb = (mg.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(mx, mw, mb, stride, padding)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=tol, atol=tol)
    seed = rng.standard_normal(y.shape).astype(dtype)
    y.backward(mg.tensor(seed))
    ty.backward(torch.tensor(seed))
    for m, t in ((mx, tx), (mw, tw), (mb, tb)):
        assert m.grad.dtype == dtype
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("images_per_slice", [1, 2])
@pytest.mark.parametrize("kernel,stride,padding,cin,cout", [
    (3, 1, 1, 3, 3), (5, 1, 0, 2, 4), (3, 2, 1, 2, 3), (1, 1, 0, 3, 2), (3, 1, 0, 2, 2)])
def test_conv2d_in_batch_slices_matches_torch(torch, rng, monkeypatch, kernel, stride, padding,
                                              cin, cout, images_per_slice):
    """The CPU path builds columns or shifted rows a few images at a time: with slices of 1 or 2
    images over a batch of 5 (the last slice shorter), values and gradients are unchanged."""
    x = rng.standard_normal((5, cin, 7, 6))
    w = rng.standard_normal((cout, cin, kernel, kernel))
    monkeypatch.setattr(ca, "_slice_size", lambda xp, n, nbytes: min(n, images_per_slice))
    mx, mw = mg.tensor(x, requires_grad=True), mg.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = F.conv2d(mx, mw, stride=stride, padding=padding)
    ty = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=padding)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-11, atol=1e-11)
    seed = rng.standard_normal(y.shape)
    y.backward(mg.tensor(seed))
    ty.backward(torch.tensor(seed))
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(mw.grad.numpy(), tw.grad.numpy(), rtol=1e-11, atol=1e-11)


POOLS = [  # kernel, stride, padding, H x W
    (1, None, 0, (3, 4)), (2, None, 0, (6, 4)), (2, 2, 1, (5, 5)), (2, 1, 1, (4, 5)),
    (3, None, 0, (6, 9)), (3, 1, 1, (5, 5)), (3, 2, 0, (7, 6)), (3, 3, 1, (7, 7)),
    (5, 1, 2, (6, 5)), (5, None, 0, (5, 10)), ((2, 3), (2, 1), (1, 1), (5, 6)),
]


@pytest.mark.parametrize("kernel,stride,padding,hw", POOLS)
@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pool_gradcheck_every_geometry(rng, pool, kernel, stride, padding, hw):
    x = t64(rng, 2, 2, *hw)
    assert mg.gradcheck(lambda x: pool(x, kernel, stride, padding), [x])


@pytest.mark.parametrize("kernel,stride,padding,hw", POOLS)
def test_pools_match_torch_every_geometry(torch, rng, kernel, stride, padding, hw):
    x = rng.standard_normal((2, 3, *hw))
    seed = None
    for mg_pool, t_pool in ((F.max_pool2d, torch.nn.functional.max_pool2d),
                            (F.avg_pool2d, torch.nn.functional.avg_pool2d)):
        mx, tx = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y = mg_pool(mx, kernel, stride, padding)
        ty = t_pool(tx, kernel, stride, padding)
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        seed = rng.standard_normal(y.shape) if seed is None or seed.shape != y.shape else seed
        y.backward(mg.tensor(seed))
        ty.backward(torch.tensor(seed))
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- whole networks
class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: mg.Tensor) -> mg.Tensor:
        return (self.bn2(self.conv2(self.bn1(self.conv1(x)).relu())) + x).relu()


def _networks(torch: object, name: str) -> tuple:
    """The minigrad and PyTorch versions of a network, in float64, the same weights."""
    tnn = torch.nn

    class TResidual(tnn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(c)
            self.conv2 = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c)

        def forward(self, x: object) -> object:
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)

    def lenet(m: object, res: type) -> list:  # d2l's LeNet with BatchNorm
        return [m.Conv2d(1, 6, 5), m.BatchNorm2d(6), m.Sigmoid(), m.AvgPool2d(2),
                m.Conv2d(6, 16, 5), m.BatchNorm2d(16), m.Sigmoid(), m.AvgPool2d(2),
                m.Flatten(), m.Linear(256, 120), m.BatchNorm1d(120), m.Sigmoid(),
                m.Linear(120, 84), m.BatchNorm1d(84), m.Sigmoid(), m.Linear(84, 10)]

    def resnet(m: object, res: type) -> list:
        return [m.Conv2d(1, 8, 3, padding=1, bias=False), m.BatchNorm2d(8), m.ReLU(),
                m.MaxPool2d(2), res(8), res(8), m.AvgPool2d(14), m.Flatten(), m.Linear(8, 10)]

    build = lenet if name == "lenet" else resnet
    net = nn.Sequential(*build(nn, Residual)).to(dtype=mg.float64)
    tnet = tnn.Sequential(*build(tnn, TResidual)).double()
    params, tparams = list(net.parameters()), list(tnet.parameters())
    assert [tuple(p.shape) for p in params] == [tuple(p.shape) for p in tparams]
    with torch.no_grad():
        for p, tp in zip(params, tparams):
            tp.copy_(torch.from_numpy(p.numpy()))
    return net, tnet


@pytest.mark.parametrize("name", ["lenet", "resnet"])
def test_cnn_training_trajectory_matches_torch_in_float64(torch, rng, name):
    """A few SGD steps of BN LeNet and a small ResNet from the same weights: the losses,
    the weights and the running statistics agree with PyTorch to 1e-10."""
    net, tnet = _networks(torch, name)
    opt = mg.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    for _ in range(4):
        x = rng.standard_normal((6, 1, 28, 28))
        y = rng.integers(0, 10, size=6)
        opt.zero_grad()
        loss = F.cross_entropy(net(mg.tensor(x)), y)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x)),
                                                  torch.from_numpy(y))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10, atol=1e-12)
    for (name_, p), tp in zip(net.named_parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name_)
    stats = [b for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var"))]
    tstats = [b for n, b in tnet.named_buffers()
              if n.endswith(("running_mean", "running_var"))]
    assert len(stats) == len(tstats) > 0
    for s, ts in zip(stats, tstats):
        np.testing.assert_allclose(s.numpy(), ts.numpy(), rtol=1e-10, atol=1e-12)


def test_conv_and_pool_errors_are_minigrad_errors():
    x = mg.randn(1, 1, 8, 8)
    with pytest.raises(mg.ShapeError, match=r"avg_pool2d: padding \(2, 2\) must be at most "
                                            r"half the kernel size \(3, 3\)"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(mg.ShapeError, match=r"max_pool2d: padding"):
        F.max_pool2d(x, (2, 4), padding=(1, 3))


def test_keep_freed_memory_reports_whether_it_applied():
    import platform

    applied = mg.backend.keep_freed_memory()
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert applied is glibc
    assert mg.backend.keep_freed_memory() is glibc  # calling again is harmless

