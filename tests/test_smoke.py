"""A first end-to-end check: record, print the tape, backward, compare by hand."""

import numpy as np

import minigrad as mg


def test_chain_rule_by_hand() -> None:
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    w = mg.tensor([0.5, -1.0, 2.0], requires_grad=True, name="w")
    loss = ((x * w).tanh() + x**2).sum()
    loss.backward()
    xn, wn = x.numpy(), w.numpy()
    t = np.tanh(xn * wn)
    np.testing.assert_allclose(x.grad.numpy(), wn * (1 - t**2) + 2 * xn, rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), xn * (1 - t**2), rtol=1e-6)
    assert "tanh(v" in str(mg.tape(loss))
