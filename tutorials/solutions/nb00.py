"""Solutions to notebook 00 (build your own engine): the engine the notebook builds
(``Value``, ``Array``), and the three exercises."""

from __future__ import annotations

import math

import numpy as np


# ----------------------------------------------------------------- the notebook's engine
class Value:
    """A scalar that remembers how it was computed."""

    def __init__(self, data, parents=(), vjp=None, op=""):
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents  # the Values this one was computed from
        self.vjp = vjp          # g -> one gradient contribution per parent
        self.op = op

    def __repr__(self):
        return f"Value({self.data:.4g}, grad={self.grad:.4g})"

    # --- operations: the value now, and how to send a gradient back later
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), lambda g: (g, g), "add")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other),
                     lambda g: (g * other.data, g * self.data), "mul")

    def __pow__(self, k):  # k a plain number
        return Value(self.data ** k, (self,), lambda g: (g * k * self.data ** (k - 1),), "pow")

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), lambda g: (g * (1 - t * t),), "tanh")

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), lambda g: (g * e,), "exp")

    # --- everything else is made of the ops above
    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return self * other ** -1

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return Value(other) - self

    def __rtruediv__(self, other):
        return Value(other) / self

    # --- reverse mode
    def backward(self):
        order = topological_order(self)
        for node in order:
            node.grad = 0.0
        self.grad = 1.0                        # the seed: d self / d self
        for node in reversed(order):           # every node after all nodes that use it
            if node.vjp is not None:
                for parent, g in zip(node.parents, node.vjp(node.grad)):
                    parent.grad += g           # += : a value used twice gets two shares


def topological_order(root):
    """Every node reachable from root, each after all of its parents."""
    order, seen = [], set()

    def visit(node):
        if id(node) not in seen:
            seen.add(id(node))
            for parent in node.parents:
                visit(parent)
            order.append(node)

    visit(root)
    return order


def unbroadcast(g, shape):
    """Sum a gradient g back to `shape`, undoing NumPy's broadcasting."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))                  # prepended axes
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True).reshape(shape)         # stretched axes


class Array(Value):
    """Value, for NumPy arrays: the same graph and backward, array-valued VJPs."""

    def __init__(self, data, parents=(), vjp=None, op=""):
        self.data = np.asarray(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)
        self.parents, self.vjp, self.op = parents, vjp, op

    def __repr__(self):
        return f"Array(shape={self.data.shape})"

    def __add__(self, other):
        other = other if isinstance(other, Array) else Array(other)
        a, b = self.data.shape, other.data.shape
        return Array(self.data + other.data, (self, other),
                     lambda g: (unbroadcast(g, a), unbroadcast(g, b)), "add")

    def __mul__(self, other):
        other = other if isinstance(other, Array) else Array(other)
        x, y = self.data, other.data
        return Array(x * y, (self, other),
                     lambda g: (unbroadcast(g * y, x.shape), unbroadcast(g * x, y.shape)), "mul")

    def __matmul__(self, other):  # 2-D @ 2-D
        x, w = self.data, other.data
        return Array(x @ w, (self, other), lambda g: (g @ w.T, x.T @ g), "matmul")

    def tanh(self):
        t = np.tanh(self.data)
        return Array(t, (self,), lambda g: (g * (1 - t * t),), "tanh")

    def sum(self):
        shape = self.data.shape
        return Array(self.data.sum(), (self,), lambda g: (np.broadcast_to(g, shape).copy(),),
                     "sum")

    def backward(self):
        order = topological_order(self)
        for node in order:
            node.grad = np.zeros_like(node.data)
        self.grad = np.ones_like(self.data)
        for node in reversed(order):
            if node.vjp is not None:
                for parent, g in zip(node.parents, node.vjp(node.grad)):
                    parent.grad = parent.grad + g


# ----------------------------------------------------------------- the exercises
def sigmoid(self):
    """Exercise 1: ``Value.sigmoid``; its VJP uses the output: g * y * (1 - y)."""
    y = 1.0 / (1.0 + math.exp(-self.data))
    return type(self)(y, (self,), lambda g: (g * y * (1.0 - y),), "sigmoid")


def topological_order_iterative(root) -> list:
    """Exercise 2: every node reachable from ``root``, parents before children, with an
    explicit stack instead of recursion (so a chain of any length works)."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node.parents if id(p) not in seen)
    return order


def mean(self, axis=None):
    """Exercise 3: ``Array.mean``: a sum divided by the count; the VJP spreads g / n back."""
    n = self.data.size if axis is None else self.data.shape[axis]
    out = self.data.mean(axis=axis)

    def vjp(g):
        g = np.asarray(g) / n
        if axis is not None:
            g = np.expand_dims(g, axis)
        return (np.broadcast_to(g, self.data.shape).copy(),)

    return type(self)(out, (self,), vjp, "mean")
