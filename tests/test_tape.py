"""`mg.tape`: the records behind some tensors, in execution order, printed as a Wengert list."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import minigrad as mg


def f32(shape: tuple, name: str | None = None) -> mg.Tensor:
    """A float32 leaf of ones that requires grad."""
    return mg.tensor(np.ones(shape, dtype=np.float32), requires_grad=True, name=name)


def build() -> tuple[mg.Tensor, dict[str, Any]]:
    """x * w + b, doubled, summed over axis 1; returns the root and the records."""
    x, w, b = f32((2, 3), "x"), f32((3,), "w"), f32((3,))
    h = x * w
    z = h + b
    d = z * 2.0
    y = d.sum(axis=1)
    recs = {"mul": h.grad_fn, "add": z.grad_fn, "mul2": d.grad_fn, "sum": y.grad_fn}
    return y, recs


def test_records_in_execution_order_with_increasing_seq() -> None:
    y, recs = build()
    tp = mg.tape(y)
    assert list(tp) == [recs["mul"], recs["add"], recs["mul2"], recs["sum"]]
    seqs = [r.seq for r in tp]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [r.name for r in tp] == ["mul", "add", "mul", "sum"]
    assert all(isinstance(r, mg.Function) for r in tp)
    assert isinstance(tp, mg.Tape)


def test_len_and_indexing() -> None:
    y, recs = build()
    tp = mg.tape(y)
    assert len(tp) == 4
    assert tp[0] is recs["mul"] and tp[-1] is recs["sum"]


def test_one_line_per_op_with_names_shapes_dtypes() -> None:
    y, recs = build()
    text = str(mg.tape(y))
    lines = text.splitlines()
    assert len(lines) == 4
    m, a, m2, s = 1, 2, 3, 4  # numbered from 1 in each printout, whatever ran before
    assert re.search(rf"#{m}\s+v{m} = mul\(x, w\)\s+# \(2, 3\) float32", lines[0])
    assert re.search(rf"#{a}\s+v{a} = add\(v{m}, x\d+\)\s+# \(2, 3\) float32", lines[1])
    assert re.search(rf"v{m2} = mul\(v{a}, 2\.0\)\s+# \(2, 3\) float32", lines[2])
    assert re.search(rf"v{s} = sum\(v{m2}, axis=1, keepdims=False\)\s+# \(2,\) float32",
                     lines[3])
    assert repr(mg.tape(y)).startswith("<Tape of 4 records>")


def test_unnamed_leaves_get_distinct_names() -> None:
    a, b = f32((2,)), f32((2,))
    y = a * b
    line = str(mg.tape(y))
    names = re.search(r"mul\((\w+), (\w+)\)", line).groups()
    assert names[0] != names[1]
    assert all(re.fullmatch(r"x\d+", n) for n in names)


def test_named_root_and_float64_scalar_output() -> None:
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True, name="x")
    loss = (x**2).mean()
    loss.name = "loss"
    lines = str(mg.tape(loss)).splitlines()
    assert re.search(r"pow\(x, c=2\)\s+# \(2,\) float64", lines[0])
    assert re.search(r"loss = mean\(v\d+", lines[1])
    assert lines[1].rstrip().endswith("# () float64")


def test_tape_of_several_roots_is_their_union_in_order() -> None:
    x = f32((3,), "x")
    shared = x.exp()
    a = shared.sum()
    b = (shared * x).sum()
    tp = mg.tape(a, b)
    names = [r.name for r in tp]
    assert names.count("exp") == 1
    assert sorted(names) == ["exp", "mul", "sum", "sum"]
    seqs = [r.seq for r in tp]
    assert seqs == sorted(seqs)


def test_tape_leaves_out_unrelated_records() -> None:
    x = f32((3,), "x")
    other = x.tanh()
    y = x.exp().sum()
    assert other.grad_fn not in list(mg.tape(y))
    assert len(mg.tape(y)) == 2


def test_multi_output_names() -> None:
    class Both(mg.Function):
        @staticmethod
        def forward(ctx: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return x * 2, x * 3

        @staticmethod
        def backward(ctx: Any, g1: Any, g2: Any) -> Any:
            return g1 * 2 + g2 * 3

    x = f32((2,), "x")
    p, q = Both.apply(x)
    y = p + q
    s = 1
    text = str(mg.tape(y))
    assert f"v{s}.0, v{s}.1 = both(x)" in text
    assert f"add(v{s}.0, v{s}.1)" in text


def test_freed_records_are_marked() -> None:
    y, _ = build()
    loss = y.sum()
    assert "(freed)" not in str(mg.tape(loss))
    loss.backward()
    lines = str(mg.tape(loss)).splitlines()
    assert len(lines) == 5
    assert all(line.endswith("(freed)") for line in lines)


def test_untracked_tensor_gives_empty_tape() -> None:
    t = mg.tensor([1.0, 2.0])
    tp = mg.tape(t * 2.0)
    assert len(tp) == 0
    assert list(tp) == []
    assert "empty tape" in str(tp)
    leaf = f32((2,), "x")
    assert len(mg.tape(leaf)) == 0
    assert "empty tape" in str(mg.tape(leaf))
    with mg.no_grad():
        assert "empty tape" in str(mg.tape(leaf * 2.0))


def test_tape_rejects_non_tensors() -> None:
    with pytest.raises(TypeError):
        mg.tape(np.ones(2))


def test_none_inputs_read_none_not_const():
    import minigrad.nn.functional as F

    x = mg.randn(4, 3, requires_grad=True, name="x")
    line = str(mg.tape(F.batch_norm(x, None, None, training=True)))
    assert "batch_norm(x, None, None, None, None" in line and "const" not in line


def test_numbering_starts_at_one_in_each_printout_and_seq_stays_global() -> None:
    for _ in range(2):  # the second tape is made after many more records
        y, recs = build()
        tp = mg.tape(y)
        assert str(tp).splitlines()[0].startswith("#1 ")
        assert [tp.number(r) for r in tp] == [1, 2, 3, 4]
        assert tp.var_name((recs["mul"], 0)) == "v1"
        assert recs["mul"].seq > 0 and recs["sum"].seq > recs["mul"].seq
