"""mg.as_tensor: wrap an array without a copy, convert anything else."""

import numpy as np

import minigrad as mg


def test_as_tensor_shares_memory_of_a_matching_array():
    a = np.arange(3.0)
    t = mg.as_tensor(a)
    a[0] = 7.0
    assert t.numpy()[0] == 7.0
    assert t.is_leaf and not t.requires_grad


def test_as_tensor_copies_when_dtype_differs_or_input_is_a_list():
    a = np.arange(3.0)
    t = mg.as_tensor(a, dtype=np.float32)
    a[0] = 7.0
    assert t.dtype == np.float32 and t.numpy()[0] == 0.0
    assert mg.as_tensor([1.0, 2.0]).dtype == np.float32


def test_as_tensor_can_require_grad_and_refuses_integers():
    t = mg.as_tensor(np.ones(2), requires_grad=True, name="w")
    (t * 2).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [2.0, 2.0])
    assert t.name == "w"
    try:
        mg.as_tensor(np.ones(2, np.int64), requires_grad=True)
    except mg.DTypeError:
        pass
    else:
        raise AssertionError("an integer tensor must not require grad")
