"""Checks for the tutorials' exercises: call one after your answer, it says what is wrong.

Every check either prints one line starting with "ok" or raises `CheckFailed` (an
AssertionError) whose message says what it expected and what it got. Checks compare your
answer with minigrad itself (the engine, `mg.gradcheck`, `F.*`) on inputs of their own, so
that an answer that only fits the notebook's numbers does not pass.

The notebooks import it with ``import checks`` (they run in this folder); the reference
solutions in ``solutions/`` pass every check, and ``tests/test_tutorial_checks.py`` shows
that each check fails on a wrong answer.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader


class CheckFailed(AssertionError):
    """An exercise's answer is not right yet; the message says why."""


def _fail(exercise: str, message: str) -> None:
    raise CheckFailed(f"{exercise}: {message}")


def _ok(exercise: str, message: str = "") -> None:
    print(f"ok - {exercise}" + (f": {message}" if message else ""))


def _close(exercise: str, what: str, got: Any, want: Any, atol: float = 1e-5,
           rtol: float = 1e-4) -> None:
    """Fail unless ``got`` has ``want``'s shape and values (to the tolerances)."""
    if isinstance(got, mg.Tensor):
        got = got.numpy()
    try:
        got_a = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(exercise, f"{what} should be numbers (an array or a float), got {type(got).__name__}")
    want_a = np.asarray(want, dtype=np.float64)
    if got_a.shape != want_a.shape:
        _fail(exercise, f"{what} has shape {got_a.shape}, expected {want_a.shape}")
    if not np.all(np.isfinite(got_a)):
        _fail(exercise, f"{what} contains NaN or inf: {got_a}")
    if not np.allclose(got_a, want_a, atol=atol, rtol=rtol):
        k = np.unravel_index(np.argmax(np.abs(got_a - want_a)), got_a.shape) if got_a.ndim else ()
        _fail(exercise, f"{what} is wrong: at index {tuple(int(i) for i in k)} got "
              f"{got_a[k]:.6g}, expected {want_a[k]:.6g} (largest |difference| "
              f"{np.abs(got_a - want_a).max():.3g})")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _call(exercise: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the learner's function; an exception becomes a failure naming the call."""
    if not callable(fn):
        _fail(exercise, f"{what} should be a function (or class), got {type(fn).__name__}")
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in the answer is reported as such
        raise CheckFailed(f"{exercise}: calling {what} raised {type(exc).__name__}: {exc}") from exc


def _gradcheck_passes(fn: Callable[..., Any], inputs: Sequence[mg.Tensor], second: bool) -> bool:
    try:
        return bool((mg.gradgradcheck if second else mg.gradcheck)(fn, list(inputs)))
    except mg.GradcheckError:
        return False


# ============================================================================ 00: your engine
def _scalar_expression(V: Any, a: Any, b: Any) -> Any:
    # Uses +, -, *, /, ** and tanh, exp; a and b are each used several times.
    c = a * b + b
    d = (c.tanh() * a - b / a) ** 2
    return d + (a - 1.5).exp() + 2 * c - a / 4


def engine_scalar(Value: Any) -> None:
    """Your scalar ``Value``: gradients of an expression with every op agree with minigrad's."""
    ex = "your scalar engine"
    for a0, b0 in ((0.7, -1.3), (-0.4, 2.1), (1.9, 0.25)):
        a, b = _call(ex, "Value(0.7)", Value, a0), Value(b0)
        out = _call(ex, "your expression", _scalar_expression, Value, a, b)
        _call(ex, "out.backward()", out.backward)
        ta = mg.tensor(a0, dtype=mg.float64, requires_grad=True)
        tb = mg.tensor(b0, dtype=mg.float64, requires_grad=True)
        ref = _scalar_expression(None, ta, tb)
        ref.backward()
        _close(ex, f"the value of the expression at a={a0}, b={b0}", out.data, ref.item(), 1e-9)
        _close(ex, f"a.grad at a={a0}, b={b0}", a.grad, ta.grad.item(), 1e-9)
        _close(ex, f"b.grad at a={a0}, b={b0}", b.grad, tb.grad.item(), 1e-9)
    # A second backward from a fresh expression must not see old gradients.
    a = Value(0.5)
    (a * a).backward()
    (a * 3.0).backward()
    if not math.isclose(a.grad, 3.0, abs_tol=1e-12):
        _fail(ex, f"after (a*a).backward() then (a*3).backward(), a.grad is {a.grad}, expected "
              "3.0: backward should start every node it visits from grad 0")
    _ok(ex, "values and gradients agree with minigrad (float64) on three inputs")


def ex00_sigmoid(Value: Any) -> None:
    """Exercise 00.1: ``Value.sigmoid`` with the VJP ``g * y * (1 - y)``."""
    ex = "exercise 1 (sigmoid)"
    for x0 in (-3.0, -0.2, 0.0, 1.7):
        x = Value(x0)
        y = _call(ex, "x.sigmoid()", getattr(x, "sigmoid", None))
        z = y * y + y * x
        z.backward()
        t = mg.tensor(x0, dtype=mg.float64, requires_grad=True)
        s = t.sigmoid()
        (s * s + s * t).backward()
        _close(ex, f"sigmoid({x0})", y.data, s.item(), 1e-9)
        _close(ex, f"the gradient through sigmoid at x={x0}", x.grad, t.grad.item(), 1e-9)
    _ok(ex)


def ex00_long_chain(Value: Any, length: int = 5000) -> None:
    """Exercise 00.2: backward through a chain of ``length`` additions (no recursion limit)."""
    ex = "exercise 2 (a long chain)"
    x = Value(1.0)
    y = x
    for _ in range(length):
        y = y + x * 0.5
    try:
        y.backward()
    except RecursionError:
        _fail(ex, f"backward through {length} nodes hit Python's recursion limit "
              f"({sys.getrecursionlimit()}): build the topological order with an explicit stack")
    _close(ex, "x.grad", x.grad, 1.0 + 0.5 * length, 1e-9)
    _ok(ex, f"{length} nodes")


def _array_cases() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((3, 4), ()), ((4,), (3, 4))]


def unbroadcast_fn(unbroadcast: Callable[[np.ndarray, tuple], np.ndarray],
                   exercise: str = "unbroadcast") -> None:
    """``unbroadcast(g, shape)`` sums a broadcast gradient back to ``shape`` (as minigrad does)."""
    rng = _rng(1)
    for shape_a, shape_c in _array_cases() + [((2, 3, 4), (2, 1, 1)), ((2, 3, 4), (1, 4))]:
        a = mg.tensor(rng.standard_normal(shape_a), dtype=mg.float64, requires_grad=True)
        c = mg.tensor(rng.standard_normal(shape_c), dtype=mg.float64, requires_grad=True)
        out = a * c
        G = rng.standard_normal(out.shape)
        (gc,) = mg.grad(out, c, grad_outputs=mg.tensor(G, dtype=mg.float64))
        mine = _call(exercise, f"unbroadcast(g of shape {out.shape}, {shape_c})", unbroadcast,
                     G * a.numpy() if out.shape == a.shape else G * np.broadcast_to(
                         a.numpy(), out.shape), shape_c)
        _close(exercise, f"unbroadcast(g, {shape_c}) for a {shape_a} x {shape_c} product", mine,
               gc.numpy(), 1e-9)
    _ok(exercise, "agrees with the engine for seven pairs of shapes")


def _array_expression(a: Any, c: Any, w: Any) -> Any:
    return ((a * c + c).tanh() @ w).sum()


def engine_array(Array: Any) -> None:
    """Your array engine: ``+``, ``*``, ``@``, ``tanh`` and ``sum`` with broadcasting."""
    ex = "your array engine"
    rng = _rng(2)
    for shape_a, shape_c in [((3, 4), (4,)), ((3, 4), (3, 1)), ((3, 4), ()), ((3, 4), (1, 4))]:
        va, vc, vw = (rng.standard_normal(shape_a), rng.standard_normal(shape_c),
                      rng.standard_normal((4, 2)))
        a, c, w = (_call(ex, "Array(ndarray)", Array, va), Array(vc), Array(vw))
        out = _call(ex, "the expression ((a * c + c).tanh() @ w).sum()", _array_expression,
                    a, c, w)
        _call(ex, "out.backward()", out.backward)
        ta, tc, tw = (mg.tensor(v, dtype=mg.float64, requires_grad=True) for v in (va, vc, vw))
        _array_expression(ta, tc, tw).backward()
        for name, mine, ref in (("a", a, ta), ("c", c, tc), ("w", w, tw)):
            _close(ex, f"{name}.grad for a of shape {shape_a} and c of shape {shape_c}",
                   mine.grad, ref.grad.numpy(), 1e-9)
    _ok(ex, "gradients agree with minigrad for four broadcasting patterns")


def ex00_mean(Array: Any) -> None:
    """Exercise 00.3: ``Array.mean(axis=None)`` with the right VJP, checked against minigrad."""
    ex = "exercise 3 (mean)"
    rng = _rng(3)
    for axis in (None, 0, 1):
        va = rng.standard_normal((3, 4))
        a = Array(va)
        out = _call(ex, f"a.mean(axis={axis})", getattr(a, "mean", None), axis=axis)
        loss = (out * out).sum()
        loss.backward()
        ta = mg.tensor(va, dtype=mg.float64, requires_grad=True)
        (ta.mean(axis=axis) ** 2).sum().backward()
        _close(ex, f"a.mean(axis={axis})", out.data, ta.mean(axis=axis).numpy(), 1e-9)
        _close(ex, f"a.grad through mean(axis={axis})", a.grad, ta.grad.numpy(), 1e-9)
    _ok(ex)


# ============================================================================ 01
def ex01_predict_tape(predicted_ops: Sequence[str], dz_da: Callable, dz_db: Callable) -> None:
    """Exercise 01.1: the op names of ``(a * b + b).exp().sum()``, and its gradient formulas."""
    ex = "exercise 1 (predict the tape)"
    a = mg.tensor([0.5, -1.0], requires_grad=True)
    b = mg.tensor([2.0, 3.0], requires_grad=True)
    z = (a * b + b).exp().sum()
    ops = [r.name for r in mg.tape(z)]
    if list(predicted_ops) != ops:
        _fail(ex, f"predicted_ops is {list(predicted_ops)}, but the tape records {ops}")
    rng = _rng(4)
    for _ in range(3):
        an, bn = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        ta = mg.tensor(an, dtype=mg.float64, requires_grad=True)
        tb = mg.tensor(bn, dtype=mg.float64, requires_grad=True)
        (ta * tb + tb).exp().sum().backward()
        _close(ex, f"dz_da(a={np.round(an, 3)}, b={np.round(bn, 3)})",
               _call(ex, "dz_da(a, b)", dz_da, an, bn), ta.grad.numpy(), 1e-8)
        _close(ex, f"dz_db(a={np.round(an, 3)}, b={np.round(bn, 3)})",
               _call(ex, "dz_db(a, b)", dz_db, an, bn), tb.grad.numpy(), 1e-8)
    _ok(ex, "the tape and both gradient formulas are right")


def ex01_accumulation(grad_after_three: Any, fresh_gradient: Callable) -> None:
    """Exercise 01.2: ``c.grad`` after three backwards, and getting one clean gradient."""
    ex = "exercise 2 (accumulation)"
    c = mg.tensor([1.0, 2.0], requires_grad=True)
    s = (c * c).sum()
    for _ in range(3):
        s.backward(retain_graph=True)
    _close(ex, "grad_after_three (your prediction of c.grad)", grad_after_three, c.grad.numpy())
    c2 = mg.tensor([3.0, -1.0, 0.5], requires_grad=True)
    s2 = (c2 * c2).sum()
    s2.backward(retain_graph=True)  # a stale gradient that fresh_gradient must not keep
    got = _call(ex, "fresh_gradient(c, s)", fresh_gradient, c2, s2)
    _close(ex, "fresh_gradient(c, s) for c = [3, -1, 0.5] that already holds a gradient",
           got, 2 * c2.numpy())
    _ok(ex)


def ex01_no_grad(records_no_grad: int, edges_no_grad: int, value_saved: dict) -> None:
    """Exercise 01.3: what the no_grad tape and picture hold; which values a record keeps."""
    ex = "exercise 3 (no_grad)"
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    with mg.no_grad():
        e2 = (x * 2).sum()
    if records_no_grad != len(mg.tape(e2)):
        _fail(ex, f"records_no_grad is {records_no_grad}, but the tape under no_grad has "
              f"{len(mg.tape(e2))} records")
    edges = mg.viz.draw_graph(e2).source.count("->")
    if edges_no_grad != edges:
        _fail(ex, f"edges_no_grad is {edges_no_grad}, but its picture has {edges} edges")
    e1 = (x * 2).sum()
    mul, total = mg.tape(e1)

    def saved_inputs(rec: Any) -> list:  # the edges of the inputs a record saved
        return [rec.edges[i] for i in rec.saved_from if i is not None and i >= 0]

    truth = {"x": any(e.leaf is x for e in saved_inputs(mul)),
             "x * 2": any(e.record is mul for e in saved_inputs(total))
             or -1 in mul.saved_from,
             "e": -1 in total.saved_from}
    if set(value_saved) != set(truth):
        _fail(ex, f"value_saved should have the keys {sorted(truth)}, got {sorted(value_saved)}")
    for k, v in truth.items():
        if bool(value_saved[k]) != v:
            _fail(ex, f"value_saved[{k!r}] is {value_saved[k]}, but the tape "
                  f"{'keeps' if v else 'does not keep'} that value for backward")
    _ok(ex)


# ============================================================================ 02
def ex02_walk(walk: Callable) -> None:
    """Exercise 02.2: your NumPy walk of ``(k * u).sigmoid().sum() + k * k``."""
    ex = "exercise 1 (another walk)"
    rng = _rng(5)
    for _ in range(3):
        un, kn = rng.uniform(-2, 2, 3), float(rng.uniform(-2, 2))
        u = mg.tensor(un, dtype=mg.float64, requires_grad=True)
        k = mg.tensor(kn, dtype=mg.float64, requires_grad=True)
        ((k * u).sigmoid().sum() + k * k).backward()
        got = _call(ex, "walk(u, k)", walk, un, kn)
        if not (isinstance(got, tuple) and len(got) == 2):
            _fail(ex, "walk(u, k) should return the pair (dL/du, dL/dk)")
        _close(ex, f"dL/du for u={np.round(un, 3)}, k={kn:.3f}", got[0], u.grad.numpy(), 1e-8)
        _close(ex, f"dL/dk for u={np.round(un, 3)}, k={kn:.3f}", got[1], k.grad.item(), 1e-8)
    _ok(ex, "your walk matches the engine on three random inputs")


def ex02_swish(Swish: Any) -> None:
    """Exercise 02.2: ``Swish.apply``: values, and gradcheck + gradgradcheck."""
    ex = "exercise 2 (Swish)"
    x = mg.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], dtype=mg.float64, requires_grad=True)
    y = _call(ex, "Swish.apply(x)", getattr(Swish, "apply", None), x)
    xn = x.numpy()
    _close(ex, "Swish.apply(x)", y, xn / (1 + np.exp(-xn)), 1e-9)
    if not _gradcheck_passes(Swish.apply, [x], second=False):
        _fail(ex, "mg.gradcheck fails: the backward is not x -> gy * sigma(x) * (1 + x (1 - "
              "sigma(x))) (did you multiply by gy?)")
    if not _gradcheck_passes(Swish.apply, [x], second=True):
        _fail(ex, "mg.gradgradcheck fails: write backward with tensor ops (mg.sigmoid, *, +) "
              "on the saved input, not NumPy, so that it can be differentiated again")
    _ok(ex, "values, gradcheck and gradgradcheck")


def ex02_softmax_jacobian(softmax_jacobian: Callable, closed_form: Callable) -> None:
    """Exercise 02.3: the Jacobian of softmax by backward passes, and its closed form."""
    ex = "exercise 3 (softmax Jacobian)"
    rng = _rng(6)
    for _ in range(2):
        zn = rng.standard_normal(4)
        p = np.exp(zn - zn.max())
        p /= p.sum()
        want = np.diag(p) - np.outer(p, p)
        z = mg.tensor(zn, dtype=mg.float64, requires_grad=True)
        _close(ex, "softmax_jacobian(z)", _call(ex, "softmax_jacobian(z)", softmax_jacobian, z),
               want, 1e-8)
        _close(ex, "closed_form(p)", _call(ex, "closed_form(p)", closed_form, p), want, 1e-10)
    _ok(ex)


# ============================================================================ 03
def ex03_unbroadcast(unbroadcast: Callable) -> None:
    """Exercise 03.1 (the same check as notebook 00's)."""
    unbroadcast_fn(unbroadcast, "exercise 1 (unbroadcast)")


def ex03_lse(lse: Callable) -> None:
    """Exercise 03.2: the stable log-sum-exp: value, gradient = softmax, with and without detach."""
    ex = "exercise 2 (the max trick)"
    zn = _rng(7).standard_normal((3, 5)) * 4
    ref = np.log(np.exp(zn).sum(axis=1, keepdims=True))
    p = np.exp(zn - ref)
    for detach in (False, True):
        z = mg.tensor(zn, dtype=mg.float64, requires_grad=True)
        out = _call(ex, f"lse(z, detach={detach})", lse, z, detach)
        _close(ex, f"lse(z, detach={detach})", out, ref, 1e-9)
        (g,) = mg.grad(out.sum(), z)
        _close(ex, f"the gradient of lse(z, detach={detach}).sum()", g, p, 1e-9)
    _ok(ex, "both versions give the softmax as gradient")


def ex03_bag_of_words(bag_grad: Callable, zero_rows: Sequence[int], busiest_row: int) -> None:
    """Exercise 03.3: dL/dE for ``(E[idx].sum(axis=1) * w).sum()`` with ``np.add.at``."""
    ex = "exercise 3 (bag of words)"
    rng = _rng(8)
    idx = np.array([[0, 2, 2], [5, 2, 1]])
    if sorted(zero_rows) != [3, 4]:
        _fail(ex, f"zero_rows is {sorted(zero_rows)}: which rows of E are never looked up?")
    if busiest_row != 2:
        _fail(ex, f"busiest_row is {busiest_row}: which row is used three times?")
    for idx_n in (idx, rng.integers(0, 6, (3, 4))):
        E = mg.tensor(rng.standard_normal((6, 3)), dtype=mg.float64, requires_grad=True)
        wn = rng.standard_normal((idx_n.shape[0], 3))
        L = (E[mg.tensor(idx_n)].sum(axis=1) * mg.tensor(wn, dtype=mg.float64)).sum()
        (gE,) = mg.grad(L, E)
        got = _call(ex, "bag_grad(idx, w, rows)", bag_grad, idx_n, wn, 6)
        _close(ex, f"bag_grad for idx={idx_n.tolist()}", got, gE.numpy(), 1e-9)
    _ok(ex)


# ============================================================================ 04
def ex04_third_derivative(third: Callable, closed_form: Callable) -> None:
    """Exercise 04.1: tanh''' by three nested mg.grad calls, and its closed form."""
    ex = "exercise 1 (third derivative)"
    for x0 in (-1.2, 0.0, 0.5, 2.0):
        t = np.tanh(x0)
        want = -2 * (1 - t ** 2) * (1 - 3 * t ** 2)
        _close(ex, f"closed_form({x0})", _call(ex, "closed_form(x)", closed_form, x0), want, 1e-9)
        _close(ex, f"third({x0}) (by mg.grad)", _call(ex, "third(x)", third, x0), want, 1e-7)
    _ok(ex)


def ex04_saved_values(saved_values: set) -> None:
    """Exercise 04.2: which forward values the backward pass of ``sigmoid(v * a).sum()`` reads."""
    ex = "exercise 2 (where the memory goes)"
    a = mg.tensor([0.5, -1.0, 2.0], requires_grad=True, name="a")
    v = mg.tensor(1.5, requires_grad=True, name="v")
    s = F.sigmoid(v * a)
    s.name = "s"
    L = s.sum()
    src = mg.viz.draw_derivation(L, [a, v]).source
    # each value backward reads is drawn once, as a "saved <name>" note
    truth = {line.split('label="saved ')[1].split('"')[0] for line in src.splitlines()
             if "class=saved" in line and "->" not in line}
    if set(saved_values) != truth:
        _fail(ex, f"saved_values is {sorted(saved_values)}, but the picture has "
              f"{len(truth)} saved notes (missing {sorted(truth - set(saved_values))}, extra "
              f"{sorted(set(saved_values) - truth)})")
    _ok(ex, f"backward reads {sorted(truth)}")


def ex04_folded(deep_model: Callable, folded_boxes: dict) -> None:
    """Exercise 04.3: three Linear+Tanh pairs and a Linear; boxes drawn by each collapse."""
    ex = "exercise 3 (a deeper model, folded)"
    model = _call(ex, "deep_model()", deep_model)
    kinds = [type(m).__name__ for m in model]
    if kinds != ["Linear", "Tanh"] * 3 + ["Linear"]:
        _fail(ex, f"deep_model() has layers {kinds}, expected three Linear, Tanh pairs and a "
              "final Linear")
    first = model[0]
    loss = F.cross_entropy(model(mg.randn(4, first.in_features)),
                           mg.tensor(np.array([0, 1, 0, 1]) % model[-1].out_features))
    for spec in ({"Linear"}, 1):
        src = mg.viz.draw_graph(loss, collapse=spec).source
        boxes = sum(1 for line in src.splitlines() if "class=module" in line)
        key = "Linear" if spec != 1 else 1
        if folded_boxes.get(key) != boxes:
            _fail(ex, f"folded_boxes[{key!r}] is {folded_boxes.get(key)}, but collapse={spec} "
                  f"draws {boxes} folded boxes")
    _ok(ex)


# ============================================================================ 04b: layers
def _tiny_regression(seed: int = 0) -> tuple[nn.Sequential, mg.Tensor, mg.Tensor]:
    mg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x = mg.randn(16, 5)
    y = mg.tensor(np.arange(16) % 3)
    return model, x, y


def _run_optimizer(model: nn.Module, opt: Any, x: mg.Tensor, y: mg.Tensor,
                   steps: int, ex: str) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        _call(ex, "opt.zero_grad()", opt.zero_grad)
        loss.backward()
        _call(ex, "opt.step()", opt.step)
        losses.append(loss.item())
    return losses


def ex04b_optimizer(MySGD: Any, exercise: str, **options: float) -> None:
    """Your SGD class against ``mg.optim.SGD`` with the same options, 5 steps on a tiny net."""
    ref_model, x, y = _tiny_regression()
    mine = copy.deepcopy(ref_model)
    ref_losses = _run_optimizer(ref_model, mg.optim.SGD(ref_model.parameters(), lr=0.3,
                                                        **options), x, y, 5, exercise)
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    opt = _call(exercise, f"MySGD(params, lr=0.3, {shown})", MySGD, list(mine.parameters()),
                lr=0.3, **options)
    my_losses = _run_optimizer(mine, opt, x, y, 5, exercise)
    _close(exercise, "the losses of 5 steps", my_losses, ref_losses, 1e-5)
    for (name, p), q in zip(ref_model.named_parameters(), mine.parameters()):
        _close(exercise, f"parameter {name} after 5 steps", q.numpy(), p.numpy(), 1e-5)
    _ok(exercise, "the same parameters as mg.optim.SGD after 5 steps")


def ex04b_momentum(MomentumSGD: Any) -> None:
    """Exercise 04b.1: SGD with momentum, as ``mg.optim.SGD(..., momentum=0.9)``."""
    ex04b_optimizer(MomentumSGD, "exercise 1 (momentum)", momentum=0.9)


def ex04b_weight_decay(DecaySGD: Any) -> None:
    """Exercise 04b.2: SGD with weight decay, as ``mg.optim.SGD(..., weight_decay=0.1)``."""
    ex04b_optimizer(DecaySGD, "exercise 2 (weight decay)", weight_decay=0.1)


def ex04b_cross_entropy(cross_entropy: Callable) -> None:
    """Exercise 04b.3: cross-entropy from tensor ops: value and gradient as F.cross_entropy."""
    ex = "exercise 3 (cross-entropy)"
    rng = _rng(9)
    for scale in (1.0, 50.0):  # large logits: a naive exp overflows in float32
        zn = (rng.standard_normal((6, 4)) * scale).astype(np.float32)
        labels = mg.tensor(rng.integers(0, 4, 6))
        z1, z2 = (mg.tensor(zn, requires_grad=True) for _ in range(2))
        mine = _call(ex, "cross_entropy(logits, labels)", cross_entropy, z1, labels)
        ref = F.cross_entropy(z2, labels)
        _close(ex, f"the loss for logits of scale {scale:g}", mine, ref.item(), 1e-4)
        mine.backward()
        ref.backward()
        _close(ex, f"the gradient for logits of scale {scale:g}", z1.grad, z2.grad.numpy(), 1e-5)
    _ok(ex)


# ============================================================================ 05
def _linear_dims(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def _accuracy(model: nn.Module, dataset: Any, n: int = 2000) -> float:
    x, y = next(iter(DataLoader(dataset, batch_size=min(n, len(dataset)))))
    model.eval()
    with mg.no_grad():
        acc = float((model(x).argmax(axis=1).numpy() == y.numpy()).mean())
    model.train()
    return acc


def ex05_deeper(deeper: nn.Module, test_set: Any, at_least: float = 0.6) -> None:
    """Exercise 05.1: 784-256-128-10 with ReLUs, trained."""
    ex = "exercise 1 (deeper)"
    dims = _linear_dims(deeper)
    if dims != [(784, 256), (256, 128), (128, 10)]:
        _fail(ex, f"the Linear layers are {dims}, expected 784->256, 256->128, 128->10")
    relus = sum(isinstance(m, nn.ReLU) for m in deeper.modules())
    if relus != 2:
        _fail(ex, f"the model has {relus} ReLU layers, expected one after each hidden layer")
    acc = _accuracy(deeper, test_set)
    if acc < at_least:
        _fail(ex, f"test accuracy {acc:.3f} on 2000 test images: below {at_least}, was it "
              "trained?")
    _ok(ex, f"test accuracy {acc:.3f} on 2000 test images")


def ex05_adam(opt: Any, losses: Sequence[float]) -> None:
    """Exercise 05.2: an Adam run whose loss went down."""
    ex = "exercise 2 (Adam)"
    if not isinstance(opt, mg.optim.Adam):
        _fail(ex, f"opt is a {type(opt).__name__}, expected mg.optim.Adam")
    losses = np.asarray(losses, dtype=float)
    if losses.size < 50 or not np.all(np.isfinite(losses)):
        _fail(ex, f"expected at least 50 finite losses, one per step; got {losses.size}")
    if not losses[-20:].mean() < 0.7 * losses[:5].mean():
        _fail(ex, f"the loss did not go down: first steps {losses[:5].mean():.3f}, last "
              f"{losses[-20:].mean():.3f}")
    _ok(ex, f"loss {losses[:5].mean():.2f} -> {losses[-20:].mean():.2f}")


def ex05_confusion(confusion_matrix: Callable, most_confused: tuple, model: nn.Module,
                   test_set: Any) -> None:
    """Exercise 05.3: the confusion matrix (row: true, column: predicted) and its worst pair."""
    ex = "exercise 3 (confusion matrix)"
    got = np.asarray(_call(ex, "confusion_matrix(model, test_set)", confusion_matrix, model,
                           test_set))
    x, y = next(iter(DataLoader(test_set, batch_size=len(test_set))))
    with mg.no_grad():
        pred = model(x).argmax(axis=1).numpy()
    want = np.zeros((10, 10), dtype=int)
    np.add.at(want, (y.numpy(), pred), 1)
    if got.shape != (10, 10):
        _fail(ex, f"the matrix has shape {got.shape}, expected (10, 10)")
    if np.array_equal(got, want.T) and not np.array_equal(got, want):
        _fail(ex, "rows and columns are swapped: row = true class, column = predicted class")
    _close(ex, "confusion_matrix", got, want, 0)
    off = want + want.T
    np.fill_diagonal(off, 0)
    pair = set(np.unravel_index(off.argmax(), off.shape))
    if set(most_confused) != {int(i) for i in pair}:
        _fail(ex, f"most_confused is {tuple(most_confused)}, but the pair confused most often "
              f"(both directions) is {tuple(sorted(int(i) for i in pair))}")
    _ok(ex)


# ============================================================================ 06
def ex06_bigger_weights(saturation_at_start: Callable) -> None:
    """Exercise 06.1: saturated fraction per hidden layer before training, scales 1 and 4."""
    ex = "exercise 1 (bigger initial weights)"
    small = np.asarray(_call(ex, "saturation_at_start(1.0)", saturation_at_start, 1.0), float)
    big = np.asarray(_call(ex, "saturation_at_start(4.0)", saturation_at_start, 4.0), float)
    for name, v in (("1.0", small), ("4.0", big)):
        if v.shape != (3,) or v.min() < 0 or v.max() > 1:
            _fail(ex, f"saturation_at_start({name}) should be 3 fractions in [0, 1], got {v}")
    if small.max() > 0.01:
        _fail(ex, f"with weight_scale 1.0 no unit should start saturated, got {small}")
    if not np.all(big > small) or big.min() < 0.02:
        _fail(ex, f"with weight_scale 4.0 every layer should start with saturated units: {big}")
    _ok(ex, f"saturated at scale 4: {np.round(100 * big, 1)} %")


def ex06_whose_fault(z_mixed: Any, initial: nn.Sequential, trained: nn.Sequential,
                     probe: mg.Tensor) -> None:
    """Exercise 06.2: the trained third Linear applied to the initial first two layers."""
    ex = "exercise 2 (whose fault is the drift?)"
    if np.allclose(initial[1].weight.numpy(), trained[1].weight.numpy()):
        _fail(ex, "`initial` has the trained first-layer weights: rebuild it after "
              "mg.manual_seed(0), before training")
    with mg.no_grad():
        want = trained[5](initial[:5](probe)).numpy()
    _close(ex, "z_mixed", z_mixed, want, 1e-4)
    _ok(ex)


def ex06_add_bn(make_bn_mlp: Callable, bn_saturated: Any) -> None:
    """Exercise 06.3: BatchNorm1d between every hidden Linear and its Sigmoid."""
    ex = "exercise 3 (add BatchNorm)"
    model = _call(ex, "sigmoid_mlp_bn()", make_bn_mlp)
    kinds = [type(m).__name__ for m in model]
    want = ["Flatten"] + ["Linear", "BatchNorm1d", "Sigmoid"] * 3 + ["Linear"]
    if kinds != want:
        _fail(ex, f"the layers are {kinds}, expected {want}")
    sat = np.asarray(bn_saturated, float)
    if sat.ndim != 2 or sat.shape[1] != 3 or sat.min() < 0 or sat.max() > 1:
        _fail(ex, f"bn_saturated should be (records, 3) fractions, got shape {sat.shape}")
    _ok(ex, f"at the end {np.round(100 * sat[-1], 1)} % saturated with BN")


# ============================================================================ 07
def ex07_cannot_move(dx: Any, x: mg.Tensor) -> None:
    """Exercise 07.1: the gradient of ``batch_norm(x).sum()`` with respect to x."""
    ex = "exercise 1 (a loss that cannot move x)"
    dxn = dx.numpy() if isinstance(dx, mg.Tensor) else np.asarray(dx)
    if dxn.shape != tuple(x.shape):
        _fail(ex, f"dx has shape {dxn.shape}, expected x's shape {tuple(x.shape)}")
    if np.abs(dxn).max() > 1e-4:
        _fail(ex, f"dx should be zero up to rounding, largest |dx| is {np.abs(dxn).max():.3g}")
    _ok(ex, f"largest |dx| {np.abs(dxn).max():.1e}")


def ex07_eval(batch_norm_eval: Callable) -> None:
    """Exercise 07.2: BN with fixed statistics from primitive ops: values and 4 records."""
    ex = "exercise 2 (evaluation mode)"
    rng = _rng(10)
    x = mg.tensor(rng.standard_normal((8, 3)) * 3 + 1, requires_grad=True)
    gamma = mg.tensor([1.5, 0.5, -2.0], requires_grad=True)
    beta = mg.tensor([0.1, 0.0, 3.0], requires_grad=True)
    rm, rv = mg.tensor([2.0, -10.0, 0.5]), mg.tensor([1.0, 25.0, 0.01])
    y = _call(ex, "batch_norm_eval(x, running_mean, running_var, gamma, beta)", batch_norm_eval,
              x, rm, rv, gamma, beta)
    ref = F.batch_norm(x, rm, rv, gamma, beta, training=False, impl="fused")
    _close(ex, "batch_norm_eval(...)", y, ref.numpy(), 1e-4)
    n = len(mg.tape(y))
    if n != 4:
        _fail(ex, f"the output's tape has {n} records, expected 4 (the statistics are constants: "
              "compute nothing from them that needs recording)")
    _ok(ex)


def ex07_images(bn_nd: Callable) -> None:
    """Exercise 07.3: per-channel BN for (N, C, H, W) and (N, C) inputs, and gradcheck."""
    ex = "exercise 3 (images)"
    rng = _rng(11)
    gamma = mg.tensor([1.5, 0.5, -2.0], dtype=mg.float64, requires_grad=True)
    beta = mg.tensor([0.1, 0.0, 3.0], dtype=mg.float64, requires_grad=True)
    for shape in ((4, 3, 5, 5), (8, 3), (2, 3, 4)):
        x = mg.tensor(rng.standard_normal(shape) * 2 + 1, dtype=mg.float64, requires_grad=True)
        y = _call(ex, f"batch_norm_composed_nd(x of shape {shape}, gamma, beta)", bn_nd, x,
                  gamma, beta)
        ref = F.batch_norm(x, None, None, gamma, beta, training=True, impl="fused")
        _close(ex, f"the output for x of shape {shape}", y, ref.numpy(), 1e-8)
    small = mg.tensor(rng.standard_normal((2, 3, 2, 2)), dtype=mg.float64, requires_grad=True)
    if not _gradcheck_passes(bn_nd, [small, gamma, beta], second=False):
        _fail(ex, "mg.gradcheck fails on a (2, 3, 2, 2) input")
    _ok(ex)


# ============================================================================ 08
def ex08_eval_function(bn_eval: Callable) -> None:
    """Exercise 08.1: ``bn_eval(x, gamma, beta, running_mean, running_var)`` as an mg.Function."""
    ex = "exercise 1 (evaluation mode)"
    rng = _rng(12)
    x = mg.tensor(rng.standard_normal((6, 4)), dtype=mg.float64, requires_grad=True)
    gamma = mg.tensor(rng.uniform(0.5, 2, 4), dtype=mg.float64, requires_grad=True)
    beta = mg.tensor(rng.standard_normal(4), dtype=mg.float64, requires_grad=True)
    rm = mg.tensor(rng.standard_normal(4), dtype=mg.float64)
    rv = mg.tensor(rng.uniform(0.5, 2, 4), dtype=mg.float64)
    y = _call(ex, "bn_eval(x, gamma, beta, running_mean, running_var)", bn_eval, x, gamma, beta,
              rm, rv)
    ref = F.batch_norm(x, rm, rv, gamma, beta, training=False, impl="fused")
    _close(ex, "the output", y, ref.numpy(), 1e-9)
    if len(mg.tape(y)) != 1:
        _fail(ex, f"the output's tape has {len(mg.tape(y))} records: expected one, your "
              "mg.Function")

    def fn(x: mg.Tensor, gamma: mg.Tensor, beta: mg.Tensor) -> mg.Tensor:
        return bn_eval(x, gamma, beta, rm, rv)

    for second in (False, True):
        if not _gradcheck_passes(fn, [x, gamma, beta], second):
            _fail(ex, f"mg.{'gradgradcheck' if second else 'gradcheck'} fails")
    _ok(ex, "one record; gradcheck and gradgradcheck pass")


def ex08_small_batches(times: dict, impls: dict) -> None:
    """Exercise 08.2: a median time (seconds) for each of the notebook's implementations."""
    ex = "exercise 2 (small batches)"
    if set(times) != set(impls):
        _fail(ex, f"times should have one entry per implementation {sorted(impls)}, got "
              f"{sorted(times)}")
    for name, t in times.items():
        if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 < t < 1):
            _fail(ex, f"times[{name!r}] = {t!r}: expected seconds per forward+backward, a "
                  "positive number well under a second at this size")
    _ok(ex, ", ".join(f"{k} {1e6 * v:.0f} us" for k, v in times.items()))


def ex08_spot_the_bug(bn_buggy: Callable, gradcheck_passes: bool,
                      gradgradcheck_passes: bool) -> None:
    """Exercise 08.3: your predictions for the NumPy-``inv_std`` backward, run for real."""
    ex = "exercise 3 (spot the bug)"
    rng = _rng(13)
    x = mg.tensor(rng.standard_normal((5, 3)), dtype=mg.float64, requires_grad=True)
    gamma = mg.tensor(rng.uniform(0.5, 2, 3), dtype=mg.float64, requires_grad=True)
    beta = mg.tensor(rng.standard_normal(3), dtype=mg.float64, requires_grad=True)
    first = _gradcheck_passes(bn_buggy, [x, gamma, beta], second=False)
    second = _gradcheck_passes(bn_buggy, [x, gamma, beta], second=True)
    if (first, second) == (True, True):
        _fail(ex, "both checks pass on your bn_buggy: it does not contain the bug yet (compute "
              "inv_std from x.numpy() inside backward)")
    if gradcheck_passes != first:
        _fail(ex, f"you predicted gradcheck {'passes' if gradcheck_passes else 'fails'}; it "
              f"{'passes' if first else 'fails'}")
    if gradgradcheck_passes != second:
        _fail(ex, f"you predicted gradgradcheck {'passes' if gradgradcheck_passes else 'fails'}; "
              f"it {'passes' if second else 'fails'}")
    _ok(ex, f"gradcheck {'passes' if first else 'fails'}, gradgradcheck "
        f"{'passes' if second else 'fails'}")


# ============================================================================ 09
def ex09_redundant_bias(largest_bias_grad: float, no_bias_model: nn.Sequential,
                        acc_with: float, acc_without: float) -> None:
    """Exercise 09.1: a bias before BN gets no gradient; without it, the same accuracy."""
    ex = "exercise 1 (the redundant bias)"
    if not (math.isfinite(largest_bias_grad) and largest_bias_grad < 1e-4):
        _fail(ex, f"largest_bias_grad is {largest_bias_grad!r}: the hidden biases before BN "
              "should get a gradient of (almost) 0 at every step")
    hidden = [m for m in no_bias_model.modules() if isinstance(m, nn.Linear)][:-1]
    if not hidden or any(m.bias is not None for m in hidden):
        _fail(ex, "no_bias_model's hidden Linear layers should have bias=False")
    if abs(acc_with - acc_without) > 0.01:
        _fail(ex, f"accuracies {acc_with:.4f} (bias) and {acc_without:.4f} (no bias) differ by "
              "more than a point: same seed, same batches?")
    _ok(ex, f"{acc_with:.4f} and {acc_without:.4f}")


def ex09_cumulative(model: nn.Module, acc_running: float, acc_population: float) -> None:
    """Exercise 09.2: BN layers with ``momentum=None``; accuracies before/after recompute."""
    ex = "exercise 2 (momentum=None)"
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    if not bns or any(m.momentum is not None for m in bns):
        _fail(ex, "every BatchNorm1d of the model should have momentum=None")
    for name, a in (("acc_running", acc_running), ("acc_population", acc_population)):
        if not 0.0 <= a <= 1.0:
            _fail(ex, f"{name} = {a!r} is not an accuracy")
    if acc_running == acc_population:
        _fail(ex, "acc_running and acc_population are equal: did recompute_bn_stats run "
              "between the two evaluations?")
    _ok(ex, f"{acc_running:.4f} with the cumulative statistics, {acc_population:.4f} with "
        "population statistics")


def ex09_scale_and_lr(net_a: nn.Sequential, net_b: nn.Sequential, probe: mg.Tensor) -> None:
    """Exercise 09.3: 10x weights with 100x the learning rate stay 10x the weights (eps=0)."""
    ex = "exercise 3 (scale and learning rate)"
    wa, wb = net_a[1].weight.numpy(), net_b[1].weight.numpy()
    err = np.abs(wb / 10 - wa).max() / np.abs(wa).max()
    if err > 1e-3:
        _fail(ex, f"W_b / 10 differs from W_a by {100 * err:.2f}% of the largest weight: "
              "expected equal up to rounding (eps=0, learning rate 100 for W_b only)")
    with mg.no_grad():  # copies: a forward pass in training mode updates running statistics
        out_a = copy.deepcopy(net_a).train()(probe).numpy()
        out_b = copy.deepcopy(net_b).train()(probe).numpy()
    _close(ex, "net_b's logits (batch statistics) compared with net_a's", out_b, out_a, 1e-3,
           1e-3)
    _ok(ex, f"W_b / 10 = W_a to {err:.1e} of the largest weight")


# ============================================================================ 10
def ex10_im2col(im2col_general: Callable) -> None:
    """Exercise 10.1: im2col with stride and padding, checked through F.conv2d."""
    ex = "exercise 1 (stride and padding)"
    rng = _rng(14)
    x = rng.standard_normal((2, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    for stride, padding in ((1, 0), (2, 1), (2, 0), (1, 2), (3, 1)):
        got = _call(ex, f"im2col_general(x, 3, 3, stride={stride}, padding={padding})",
                    im2col_general, x, 3, 3, stride=stride, padding=padding)
        if not (isinstance(got, tuple) and len(got) == 3):
            _fail(ex, "im2col_general should return (cols, Ho, Wo)")
        cols, ho, wo = got
        ref = F.conv2d(mg.tensor(x), mg.tensor(w), stride=stride, padding=padding).numpy()
        if (ho, wo) != ref.shape[2:]:
            _fail(ex, f"stride {stride}, padding {padding}: Ho, Wo = {ho}, {wo}, expected "
                  f"{ref.shape[2:]}")
        _close(ex, f"w_rows @ cols for stride {stride}, padding {padding}",
               (w.reshape(3, -1) @ np.asarray(cols)).reshape(ref.shape), ref, 1e-4)
    _ok(ex, "five (stride, padding) pairs")


def ex10_filter_grad(filter_grad: Callable) -> None:
    """Exercise 10.2: dL/dw of ``(conv2d(x, w) * g).sum()`` from im2col, in NumPy."""
    ex = "exercise 2 (the filter gradient)"
    rng = _rng(15)
    xn = rng.standard_normal((3, 2, 5, 6))
    wn = rng.standard_normal((4, 2, 3, 3))
    w = mg.tensor(wn, dtype=mg.float64, requires_grad=True)
    y = F.conv2d(mg.tensor(xn, dtype=mg.float64), w)
    gn = rng.standard_normal(y.shape)
    (y * mg.tensor(gn, dtype=mg.float64)).sum().backward()
    got = _call(ex, "filter_grad(x, w, g)", filter_grad, xn, wn, gn)
    _close(ex, "filter_grad(x, w, g)", got, w.grad.numpy(), 1e-8)
    _ok(ex)


def ex10_without_bn(make_cnn: Callable) -> None:
    """Exercise 10.3: ``make_cnn(bn)``: BatchNorm2d and bias-free convs, or neither."""
    ex = "exercise 3 (without BatchNorm)"
    for bn in (True, False):
        model = _call(ex, f"make_cnn(bn={bn})", make_cnn, bn)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not convs:
            _fail(ex, f"make_cnn(bn={bn}) has no Conv2d")
        if bn and (len(norms) != len(convs) or any(c.bias is not None for c in convs)):
            _fail(ex, "make_cnn(bn=True): expected one BatchNorm2d per conv and convs without bias")
        if not bn and (norms or any(c.bias is None for c in convs)):
            _fail(ex, "make_cnn(bn=False): expected no BatchNorm2d and convs with bias=True")
        with mg.no_grad():
            out = model.eval()(mg.zeros((2, 1, 28, 28)))
        if tuple(out.shape) != (2, 10):
            _fail(ex, f"make_cnn(bn={bn}) maps (2, 1, 28, 28) to {tuple(out.shape)}, not (2, 10)")
    _ok(ex)


# ============================================================================ 11
def ex11_time_parts(parts: Sequence[float]) -> None:
    """Exercise 11.1: seconds per step moving the batch, in forward + loss, in backward + step."""
    ex = "exercise 1 (where the time goes)"
    if len(parts) != 3:
        _fail(ex, f"expected three numbers (move, forward, backward), got {len(parts)}")
    move, fwd, bwd = (float(p) for p in parts)
    if not all(math.isfinite(p) and p >= 0 for p in (move, fwd, bwd)):
        _fail(ex, f"times must be finite and >= 0, got {parts}")
    if fwd <= 0 or bwd <= 0:
        _fail(ex, "forward and backward cannot take zero time: synchronise before each clock read")
    _ok(ex, f"move {1e3 * move:.3f} ms, forward {1e3 * fwd:.1f} ms, backward {1e3 * bwd:.1f} ms")


def ex11_throughput(images_per_second: dict) -> None:
    """Exercise 11.2: images per second at batch sizes 16, 64, 256, 1024."""
    ex = "exercise 2 (throughput)"
    if sorted(images_per_second) != [16, 64, 256, 1024]:
        _fail(ex, "expected batch sizes 16, 64, 256, 1024 as keys, got "
              f"{sorted(images_per_second)}")
    bad = {k: v for k, v in images_per_second.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        _fail(ex, f"throughputs must be positive numbers: {bad}")
    _ok(ex, ", ".join(f"{k}: {v:.0f}/s" for k, v in sorted(images_per_second.items())))


def ex11_watch(train_watching: Callable) -> None:
    """Exercise 11.3: a loop that looks at the loss every ``every`` steps only."""
    ex = "exercise 3 (a sync point you did not see)"
    mg.manual_seed(0)
    rng = _rng(16)
    xs = rng.standard_normal((40, 8, 4)).astype(np.float32)
    ys = rng.integers(0, 3, (40, 8))
    batches = [(mg.tensor(x), mg.tensor(y)) for x, y in zip(xs, ys)]
    for lr, diverges in ((0.1, False), (1e4, True)):
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = mg.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        got = _call(ex, "train_watching(model, opt, batches, every=5)", train_watching,
                    model, opt, batches, every=5)
        if not (isinstance(got, tuple) and len(got) == 2):
            _fail(ex, "train_watching should return (steps_run, diverged)")
        steps, diverged = got
        if bool(diverged) != diverges:
            _fail(ex, f"learning rate {lr:g}: diverged is {diverged}, expected {diverges}")
        if steps % 5 != 0:
            _fail(ex, f"learning rate {lr:g}: stopped after {steps} steps, not at a multiple "
                  "of every=5: look at the loss only every `every` steps")
        if not diverges and steps != 40:
            _fail(ex, f"a healthy run should use all 40 batches, it stopped after {steps}")
    _ok(ex)


# ============================================================================ 13
def ex13_hypot(Hypot: Any) -> None:
    """Exercise 13.1: ``Hypot`` (sqrt(a² + b²)) with a VJP and a JVP, the JVP with one tangent."""
    ex = "exercise 1 (a JVP rule with two inputs)"
    rng = _rng(13)
    a = mg.tensor(rng.standard_normal((3, 4)) + 0.5)
    b = mg.tensor(rng.standard_normal((3, 4)) - 0.5)
    ta, tb = mg.tensor(rng.standard_normal((3, 4))), mg.tensor(rng.standard_normal((3, 4)))
    an, bn, z = a.numpy(), b.numpy(), np.hypot(a.numpy(), b.numpy())
    apply = getattr(Hypot, "apply", None)
    out = _call(ex, "Hypot.apply(a, b)", apply, a, b)
    _close(ex, "Hypot.apply(a, b)", out, z, 1e-12)
    leaves = [mg.tensor(an, requires_grad=True), mg.tensor(bn, requires_grad=True)]
    try:
        mg.gradcheck(apply, leaves)
    except mg.GradcheckError as exc:
        _fail(ex, f"the backward (VJP) disagrees with finite differences: {exc}")
    for tangents, want, what in (((ta, tb), (an * ta.numpy() + bn * tb.numpy()) / z,
                                  "both inputs carry tangents"),
                                 ((ta, None), an * ta.numpy() / z, "only a carries a tangent"),
                                 ((None, tb), bn * tb.numpy() / z, "only b carries a tangent")):
        try:
            _, tangent = mg.jvp(apply, (a, b), tangents)
        except Exception as exc:  # noqa: BLE001 - any error in the answer is reported as such
            raise CheckFailed(f"{ex}: mg.jvp(Hypot.apply, ...) when {what} raised "
                              f"{type(exc).__name__}: {exc} (jvp gets one tangent per input, "
                              "maybe ZERO, and must return one tangent: Hypot has one "
                              "output)") from exc
        if isinstance(tangent, tuple):
            _fail(ex, f"the JVP returned {len(tangent)} tangents; Hypot has one output, so "
                  "jvp must return one tangent (the inputs' tangents summed into it)")
        _close(ex, f"the output tangent when {what}", tangent, want, 1e-12)
    _ok(ex, "value, VJP (gradcheck) and JVP with two, one and the other tangent")


def _tall_function(x: mg.Tensor) -> mg.Tensor:
    A = mg.tensor(np.arange(15.0).reshape(5, 3) / 7 - 1)
    return (A @ x).tanh() * x.sum()


def ex13_jacobian_by_jvp(jacobian_by_jvp: Callable) -> None:
    """Exercise 13.2: the Jacobian from one JVP per input element, without ``mg.jacobian``."""
    ex = "exercise 2 (a Jacobian, column by column)"
    x = mg.tensor(_rng(14).standard_normal(3))
    want = mg.jacobian(_tall_function, x).numpy()
    original = mg.jacobian

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailed(f"{ex}: jacobian_by_jvp called mg.jacobian; build it from mg.jvp")

    mg.jacobian = forbidden
    try:
        got = _call(ex, "jacobian_by_jvp(fn, x)", jacobian_by_jvp, _tall_function, x)
    finally:
        mg.jacobian = original
    got_a = np.asarray(got.numpy() if isinstance(got, mg.Tensor) else got)
    if got_a.shape == want.T.shape and got_a.shape != want.shape:
        _fail(ex, f"the Jacobian has shape {got_a.shape}, expected {want.shape} (outputs x "
              "inputs): one JVP gives a column J[:, j], not a row")
    _close(ex, "jacobian_by_jvp(fn, x) for fn: R^3 -> R^5", got_a, want, 1e-10)
    _ok(ex, "a 5 x 3 Jacobian, column by column")


def _convex_test_function(x: mg.Tensor) -> mg.Tensor:
    Q = mg.tensor(np.diag(np.arange(1.0, 7.0)) + 0.3)
    return 0.5 * (x * (Q @ x)).sum() + (x * x * x * x).sum() / 12 + x[0] - 2 * x[5]


def ex13_newton_direction(newton_direction: Callable) -> None:
    """Exercise 13.3: d = -H⁻¹ grad f by conjugate gradient on ``mg.hvp`` alone."""
    ex = "exercise 3 (Newton-CG's inner solve)"
    x = mg.tensor(_rng(15).standard_normal(6))
    H = mg.hessian(_convex_test_function, x).numpy()
    xr = mg.tensor(x.numpy(), requires_grad=True)
    (g,) = mg.grad(_convex_test_function(xr), xr)
    want = np.linalg.solve(H, -g.numpy())
    saved = mg.hessian, mg.jacobian

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailed(f"{ex}: newton_direction formed the Hessian (mg.hessian or "
                          "mg.jacobian); use mg.hvp inside conjugate gradient instead")

    mg.hessian = mg.jacobian = forbidden
    try:
        got = _call(ex, "newton_direction(f, x)", newton_direction, _convex_test_function, x)
    finally:
        mg.hessian, mg.jacobian = saved
    got_a = np.asarray(got.numpy() if isinstance(got, mg.Tensor) else got, dtype=np.float64)
    if got_a.shape == want.shape and np.allclose(got_a, -want, rtol=1e-4, atol=1e-6):
        _fail(ex, "newton_direction returned +H^-1 grad f: the Newton step goes downhill, "
              "d = -H^-1 grad f")
    if got_a.shape == want.shape and np.allclose(got_a, -g.numpy(), rtol=1e-4, atol=1e-6):
        _fail(ex, "newton_direction returned -grad f, the gradient step; solve H d = -grad f")
    _close(ex, "newton_direction(f, x) on a convex quartic in 6 variables", got_a, want,
           1e-6, 1e-5)
    _ok(ex, "the Newton step to 1e-6, without forming the Hessian")


# ============================================================================ 14
def ex14_clip_hook(clip_norm_hook: Callable) -> None:
    """Exercise 14.1: a hook that rescales a too-large gradient to norm ``max_norm``."""
    ex = "exercise 1 (a clipping hook)"
    rng = _rng(16)
    x0, w0 = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    for max_norm in (0.5, 1e3):
        x = mg.tensor(x0, requires_grad=True)
        w = mg.tensor(w0, requires_grad=True)
        h = x @ w
        hook = _call(ex, f"clip_norm_hook({max_norm})", clip_norm_hook, max_norm)
        h.register_hook(hook)
        _call(ex, "backward through a hooked tensor", ((h * h).sum() * 3.0).backward)
        g = 6.0 * (x0 @ w0)                       # dL/dh of 3 * sum(h^2)
        g_clipped = g * min(1.0, max_norm / np.linalg.norm(g))
        what = f"x.grad with the hook clipping dL/dh to norm {max_norm}"
        if max_norm < 1 and np.allclose(x.grad.numpy(), np.clip(g, -max_norm, max_norm) @ w0.T):
            _fail(ex, f"{what}: the hook clipped each element; it should rescale the whole "
                  "gradient (grad * max_norm / |grad|), which keeps its direction")
        _close(ex, what, x.grad, g_clipped @ w0.T, 1e-9)
        _close(ex, what.replace("x.grad", "w.grad"), w.grad, x0.T @ g_clipped, 1e-9)
    _ok(ex, "rescales a large gradient to the limit and leaves a small one alone")


def _sigmoid_stack(seed: int) -> nn.Sequential:
    mg.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(10, 8), nn.Sigmoid(), nn.Linear(8, 8),
                         nn.Sigmoid(), nn.Linear(8, 6), nn.Sigmoid(), nn.Linear(6, 4))


def ex14_grad_norms(sigmoid_output_grad_norms: Callable) -> None:
    """Exercise 14.2: |dL/d(sigmoid output)| per layer, first layer first, from hooks."""
    ex = "exercise 2 (gradients per layer, from hooks)"
    model = _sigmoid_stack(17)
    rng = _rng(17)
    x = mg.tensor(rng.standard_normal((9, 10)).astype(np.float32))
    y = mg.tensor(np.arange(9) % 4)
    # the truth, from running the layers one by one and keeping each sigmoid's output
    outputs, h = [], x
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Sigmoid):
            h.retain_grad()
            outputs.append(h)
    F.cross_entropy(h, y).backward()
    want = [float(np.linalg.norm(o.grad.numpy())) for o in outputs]
    model.zero_grad()
    got = _call(ex, "sigmoid_output_grad_norms(model, x, y)", sigmoid_output_grad_norms,
                model, x, y)
    got = [float(v) for v in got]
    if len(got) != len(want):
        _fail(ex, f"got {len(got)} norms for a model with {len(want)} Sigmoid layers")
    if np.allclose(got, want[::-1], rtol=1e-4) and not np.allclose(got, want, rtol=1e-4):
        _fail(ex, "the norms are in reverse order: backward reaches the last layer first, so "
              "hooks that append record the last layer first; put each in its layer's place")
    _close(ex, "the gradient norms, first Sigmoid first", got, want, 1e-6)
    _ok(ex, f"{len(want)} layers: " + ", ".join(f"{v:.3g}" for v in want))


def ex14_segments(run_in_segments: Callable) -> None:
    """Exercise 14.3: a Sequential in ``segments`` checkpointed pieces, same gradients."""
    ex = "exercise 3 (checkpointed segments)"
    mg.manual_seed(18)
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(7, 7), nn.Tanh()]
    model = nn.Sequential(*layers)
    x0 = _rng(18).standard_normal((5, 7)).astype(np.float32)
    x = mg.tensor(x0, requires_grad=True)
    (model(x) ** 2).sum().backward()
    want = [x.grad.numpy()] + [p.grad.numpy().copy() for p in model.parameters()]
    for segments in (1, 3, 5):  # 5 does not divide the 12 layers
        model.zero_grad()
        x = mg.tensor(x0, requires_grad=True)
        out = _call(ex, f"run_in_segments(model, x, {segments})", run_in_segments, model, x,
                    segments)
        names = [record.name for record in mg.tape(out)]
        if names.count("checkpoint") != segments or len(names) != segments:
            _fail(ex, f"with segments={segments} the tape of the output has records {names}; "
                  f"expected {segments} 'checkpoint' records and nothing else (every layer "
                  "inside one mg.checkpoint call)")
        _close(ex, f"the output with segments={segments}", out, model(mg.tensor(x0)), 1e-6)
        _call(ex, "backward through the segments", (out ** 2).sum().backward)
        got = [x.grad] + [p.grad for p in model.parameters()]
        for k, (g, w) in enumerate(zip(got, want)):
            what = "x.grad" if k == 0 else f"the gradient of parameter {k - 1}"
            if g is None:
                _fail(ex, f"{what} is None with segments={segments}")
            _close(ex, f"{what} with segments={segments}", g, w, 1e-6)
    _ok(ex, "1, 3 and 5 segments of 12 layers: the same output and gradients")
