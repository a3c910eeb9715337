"""Solutions to notebook 10 (CNNs)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minigrad import nn


def im2col_general(x, kh, kw, stride=1, padding=0):
    """Exercise 1: zero-pad, then step the window by ``stride``: (N, C*kh*kw, Ho*Wo)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, c, h, w = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = np.empty((n, c * kh * kw, ho * wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            cols[:, :, i * wo + j] = patch.reshape(n, -1)
    return cols, ho, wo


def filter_grad(x, w, g):
    """Exercise 2: dL/dw_rows = sum over images of g[n] @ cols[n].T."""
    f, _, kh, kw = w.shape
    cols, _, _ = im2col_general(x, kh, kw)
    g3 = g.reshape(g.shape[0], f, -1)
    return sum(g3[n] @ cols[n].T for n in range(x.shape[0])).reshape(w.shape)


def make_cnn(bn: bool, channels=(8, 16)) -> nn.Sequential:
    """Exercise 3: the notebook's CNN, or the same without BatchNorm2d (bias in the convs)."""
    def block(c_in, c_out):
        if bn:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    c1, c2 = channels
    return nn.Sequential(OrderedDict(block1=block(1, c1), block2=block(c1, c2),
                                     flatten=nn.Flatten(), head=nn.Linear(c2 * 7 * 7, 10)))
