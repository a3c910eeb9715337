"""Names given to tensors show up in the tape, the pictures and error messages."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


def test_intermediate_name_shows_in_the_tape():
    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    z = x * 2
    z.name = "z"
    y = z.exp().sum()
    lines = str(mg.tape(y)).splitlines()
    assert lines[0].split("=")[0].split()[-1] == "z"
    assert "exp(z)" in lines[1]
    assert 'label="z' in mg.viz.draw_graph(y).source


def test_renaming_an_output_replaces_its_name_only():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    a, b = x * 2, x * 3
    a.name = "a"
    a.name = "first"
    lines = str(mg.tape(a + b)).splitlines()
    outs = [line.split("=")[0].split()[-1] for line in lines]
    assert outs[0] == "first" and outs[1].startswith("v") and "a" not in outs


@pytest.mark.parametrize("make", [
    lambda: mg.zeros(3, name="n"), lambda: mg.ones(2, 2, name="n"),
    lambda: mg.full((2,), 1.5, name="n"), lambda: mg.arange(4, name="n"),
    lambda: mg.rand(3, name="n"), lambda: mg.randn(3, name="n"),
    lambda: mg.zeros_like(mg.ones(2), name="n"), lambda: mg.ones_like(mg.ones(2), name="n"),
])
def test_factories_take_a_name(make):
    assert make().name == "n"


def test_parameters_are_named_after_their_attribute():
    lin = nn.Linear(3, 2)
    assert (lin.weight.name, lin.bias.name) == ("weight", "bias")
    p = nn.Parameter(np.ones(2, np.float32))
    p.name = "mine"
    lin.extra = p
    assert lin.extra.name == "mine"  # a name the user gave is kept
    y = lin(mg.ones(1, 3)).sum()
    assert "weight" in str(mg.tape(y)) and "bias" in str(mg.tape(y))


def test_gradcheck_message_shows_plain_numbers():
    class Wrong(mg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 3

    x = mg.tensor(np.ones(2), requires_grad=True, name="x")
    with pytest.raises(mg.GradcheckError) as e:
        mg.gradcheck(Wrong.apply, [x])
    msg = str(e.value)
    assert "np.float64" not in msg and "analytical 3.0 vs numerical 1.9999" in msg


def test_buffers_are_named_after_their_attribute():
    bn = nn.BatchNorm1d(3)
    assert (bn.running_mean.name, bn.running_var.name) == ("running_mean", "running_var")
    text = str(mg.tape(bn(mg.randn(4, 3, requires_grad=True))))
    assert "running_mean, running_var" in text


def test_synchronize_is_a_no_op_on_the_cpu():
    assert mg.synchronize("cpu") is None
    assert mg.synchronize() is None  # without CuPy there is no GPU work to wait for
    with pytest.raises(mg.DeviceError, match="unknown device"):
        mg.synchronize("tpu")
