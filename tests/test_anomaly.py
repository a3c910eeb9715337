"""`mg.detect_anomaly()`: the first NaN/Inf names its op, its record and the user's line."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import function as fn_mod

# NumPy warns about the invalid values these tests make on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _line_of(marker: str) -> str:
    """``file:line`` of the line of this file that contains ``marker``."""
    with open(__file__) as f:
        for k, line in enumerate(f, 1):
            if marker in line and "_line_of" not in line:
                return f"{__file__}:{k}"
    raise AssertionError(marker)


def test_log_of_a_negative_in_the_forward_names_the_op_and_the_line() -> None:
    x = mg.tensor(np.array([1.0, -1.0]), requires_grad=True)
    y = x * 2
    with mg.detect_anomaly(), pytest.raises(mg.GraphError) as info:
        y.log()  # MARK-log
    msg = str(info.value)
    assert "log (record #" in msg and _line_of("MARK-log") in msg
    assert "output 0 from finite inputs" in msg


def test_sqrt_at_zero_in_the_backward_names_the_forward_line() -> None:
    x = mg.tensor(np.array([0.0, 4.0]), requires_grad=True)
    with mg.detect_anomaly():
        y = (x * 1).sqrt()  # MARK-sqrt
        seq = y.grad_fn.seq
        loss = y.sum()
        with pytest.raises(mg.GraphError) as info:
            loss.backward()
    msg = str(info.value)
    assert f"backward of sqrt (record #{seq}" in msg
    assert _line_of("MARK-sqrt") in msg and "input 0" in msg


def test_nan_that_came_in_is_not_blamed_on_the_next_op() -> None:
    x = mg.tensor(np.array([np.nan, 1.0]))
    with mg.detect_anomaly():
        y = mg.exp(x) * 2  # nan went in: neither op made it
    assert np.isnan(y.numpy()[0])


def test_without_anomaly_mode_nans_pass_silently_and_nothing_is_captured() -> None:
    x = mg.tensor(np.array([0.0]), requires_grad=True)
    y = x.sqrt()
    y.sum().backward()
    assert np.isinf(x.grad.numpy()[0])
    assert y.grad_fn.source is None
    assert fn_mod._special[0] == 0


def test_anomaly_mode_is_per_thread() -> None:
    seen = []

    def other() -> None:
        seen.append(mg.autograd.is_anomaly_enabled())
        mg.log(mg.tensor([-1.0]))  # no error in this thread

    with mg.detect_anomaly():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert mg.autograd.is_anomaly_enabled()
    assert seen == [False]
    assert not mg.autograd.is_anomaly_enabled()


def test_anomaly_in_a_module_points_at_the_user_line_not_inside_minigrad() -> None:
    lin = mg.nn.Linear(2, 2, dtype=mg.float64)
    with mg.detect_anomaly():
        out = lin(mg.tensor(np.array([[1.0, 2.0]])))
        with pytest.raises(mg.GraphError) as info:
            mg.nn.functional.log_softmax(out * 1e308 * 10)  # MARK-module
    assert "mul (" in str(info.value) and _line_of("MARK-module") in str(info.value)
    with mg.detect_anomaly():
        y = out * np.inf  # an infinite constant went in: mul did not make it
    assert np.isinf(y.numpy()).all()
