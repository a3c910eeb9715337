"""Records and the values they save are released when nothing needs them any more.

Uses weak references to records, saved arrays and intermediate Tensors, and
counts of live records, never timing.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

import minigrad as mg


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run a block with the cycle collector off: what dies there dies by refcount alone."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def live_records() -> int:
    """How many records (Function instances) are alive after a full collection."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), mg.Function))


def leaf(values: object) -> mg.Tensor:
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def test_backward_releases_saved_values() -> None:
    with gc_paused():
        x = leaf([0.5, 1.0, 1.5])
        h = x * 2.0
        e = h.exp()
        loss = (e * e).sum()
        rec_exp = e.grad_fn
        saved_ref = weakref.ref(rec_exp.saved[0])  # exp keeps its output
        del e
        assert saved_ref() is not None  # still needed for backward
        loss.backward()
        assert rec_exp.saved is None
        assert saved_ref() is None
        for rec in mg.tape(loss):
            assert rec.saved is None


def test_retain_graph_keeps_saved_values() -> None:
    x = leaf([0.5, 1.0])
    y = x.exp()
    loss = y.sum()
    loss.backward(retain_graph=True)
    assert y.grad_fn.saved is not None
    loss.backward()
    assert y.grad_fn.saved is None


def test_intermediate_tensors_die_after_backward() -> None:
    """Once backward has used a record, it no longer keeps its inputs alive."""
    with gc_paused():
        x = leaf([0.5, 1.0])
        h = x.tanh()
        u = h * 3.0  # mul saves h
        y = (u * u).sum()  # mul saves u
        refs = [weakref.ref(h), weakref.ref(u)]
        square = y.grad_fn.edges[0][0]  # the record of u * u
        arrays = [weakref.ref(u.grad_fn.saved[0]), weakref.ref(square.saved[0])]
        np.testing.assert_array_equal(arrays[0](), h.numpy())
        del square
        del h, u
        y.backward()
        t = np.tanh([0.5, 1.0])
        np.testing.assert_allclose(x.grad.numpy(), 18 * t * (1 - t**2))
        assert all(r() is None for r in refs)
        assert all(r() is None for r in arrays)
        assert y.grad_fn is not None  # the output itself is still alive


def test_unsaved_intermediate_dies_before_backward() -> None:
    """A value no record saved is freed as soon as the user drops it."""
    with gc_paused():
        x = leaf([0.5, 1.0])
        h = x + 1.0  # add saves nothing
        y = (h - 2.0).sum()
        ref = weakref.ref(h)
        del h
        assert ref() is None
        y.backward()
        np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_dropping_the_output_frees_the_records() -> None:
    with gc_paused():
        x = leaf([0.5, 1.0])
        y = ((x * 2.0).exp() @ x).tanh()
        recs = [weakref.ref(r) for r in mg.tape(y)]
        assert len(recs) == 4 and all(r() is not None for r in recs)
        del y
        assert all(r() is None for r in recs)
        assert x.grad is None


def test_dropping_the_output_after_backward_frees_the_records() -> None:
    with gc_paused():
        x = leaf([0.5, 1.0])
        y = (x.sigmoid() * x).sum()
        recs = [weakref.ref(r) for r in mg.tape(y)]
        y.backward()
        del y
        assert all(r() is None for r in recs)
        assert x.grad is not None  # the leaf and its gradient stay


def test_create_graph_gradients_free_their_records() -> None:
    with gc_paused():
        x = leaf([0.5, 1.0])
        y = (x**3).sum()
        (g,) = mg.grad(y, x, create_graph=True)
        recs = [weakref.ref(r) for r in mg.tape(g)] + [weakref.ref(y.grad_fn)]
        (g2,) = mg.grad(g.sum(), x)
        np.testing.assert_allclose(g2.numpy(), [3.0, 6.0])
        del y, g
        assert all(r() is None for r in recs)


def test_many_iterations_do_not_grow_live_records(rng: np.random.Generator) -> None:
    w = mg.tensor(rng.standard_normal((4, 4)), requires_grad=True)
    b = mg.tensor(rng.standard_normal(4), requires_grad=True)
    data = rng.standard_normal((8, 4))

    def step() -> None:
        h = (mg.tensor(data) @ w + b).relu()
        loss = (h - h.mean(axis=0)).var() + (h.max(axis=1) ** 2).sum()
        loss.backward()
        with mg.no_grad():
            w.data[...] -= 0.01 * w.grad.data
            w.grad = None
            b.grad = None

    for _ in range(3):
        step()
    before = live_records()
    refs = []
    for _ in range(200):
        step()
    for _ in range(5):  # keep the last records alive only through weak references
        h = w * 2.0
        refs.append(weakref.ref(h.grad_fn))
        del h
    after = live_records()
    assert after <= before
    assert all(r() is None for r in refs)


def test_many_create_graph_iterations_do_not_grow_live_records() -> None:
    x = leaf([0.3, -0.4])

    def step() -> None:
        (g,) = mg.grad((x.tanh() ** 2).sum(), x, create_graph=True)
        (g2,) = mg.grad((g * g).sum(), x)
        assert g2.shape == (2,)

    step()
    before = live_records()
    for _ in range(100):
        step()
    assert live_records() <= before


def test_tape_keeps_nothing_alive() -> None:
    with gc_paused():
        x = leaf([1.0, 2.0])
        y = (x.exp() * x).sum()
        tp = mg.tape(y)
        text = str(tp)
        assert "exp" in text
        assert len(list(tp)) == 3
        recs = [weakref.ref(r) for r in tp]
        tape_ref = weakref.ref(tp)
        del tp
        assert tape_ref() is None
        del y
        assert all(r() is None for r in recs)


def test_no_grad_forward_records_nothing() -> None:
    x = leaf(np.ones(3))
    before = live_records()
    with mg.no_grad():
        ys = [(x * float(i)).exp() for i in range(50)]
    assert all(y.grad_fn is None for y in ys)
    assert live_records() <= before


def test_constant_operand_not_kept_alive_by_record() -> None:
    """A large constant input is remembered weakly (for printing), not kept alive."""
    with gc_paused():
        x = leaf(np.ones(4))
        c = mg.tensor(np.arange(4.0))
        y = x + c  # add saves nothing, so nothing should hold on to c
        ref = weakref.ref(c)
        del c
        assert ref() is None
        y.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), np.ones(4))
