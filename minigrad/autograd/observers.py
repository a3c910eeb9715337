"""Observers: how other layers attach what they know to records, without the engine
knowing about them.

An observer is a function called with every record the current thread makes,
right after the op ran and before its outputs are handed back. ``nn.Module`` uses
one to write the module scope an op ran in into ``record.module``; a drawing
could use one to remember which records a ``create_graph`` backward made. When
nobody observes (the list is empty) recording pays for one empty-list test.

Observers are per thread, like grad mode: a model running in one thread does not
annotate the records of another.

    def note(record):
        record.module = "my layer"

    with mg.autograd.observers.observing(note):
        y = x * 2            # mg.tape(y)[-1].module == "my layer"

Backward observers are called by the engine once per VJP call, in the order it runs
them, with ``(record, grads_in, grads_out)``: the gradient of each output the VJP
received and what it returned per input (before the engine sums a broadcast gradient
back to the input's shape; None for inputs that get none). ``mg.viz.step_backward``
uses one to show backward step by step. When nobody listens the engine pays one test
of a counter per record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .function import _local, _observed

Observer = Callable[[Any], None]
BackwardObserver = Callable[[Any, tuple, tuple], None]


class _Listeners(threading.local):
    def __init__(self) -> None:
        self.on_backward: list = []


_backward = _Listeners()
_backward_watched = [0]  # how many backward observers, all threads together


# Guards the count of observers across threads (``+=`` on it is not atomic).
_count_lock = threading.Lock()


def _listen(hooks: list, count: list, observer: Any) -> None:
    hooks.append(observer)
    with _count_lock:
        count[0] += 1


def _unlisten(hooks: list, count: list, observer: Any) -> None:
    """Drop the most recent entry of ``observer`` from ``hooks`` (if any)."""
    for k in range(len(hooks) - 1, -1, -1):
        if hooks[k] is observer:
            del hooks[k]
            with _count_lock:
                count[0] -= 1
            return


def add(observer: Observer) -> None:
    """Call ``observer(record)`` for every record this thread makes from now on."""
    _listen(_local.on_record, _observed, observer)


def remove(observer: Observer) -> None:
    """Stop calling ``observer`` (the most recently added entry of it goes)."""
    _unlisten(_local.on_record, _observed, observer)


def active() -> tuple:
    """The observers of this thread, oldest first."""
    return tuple(_local.on_record)


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Observe the records made inside the ``with`` block."""
    add(observer)
    try:
        yield
    finally:
        remove(observer)


def add_backward(observer: BackwardObserver) -> None:
    """Call ``observer(record, grads_in, grads_out)`` for every VJP this thread's
    backward passes run from now on."""
    _listen(_backward.on_backward, _backward_watched, observer)


def remove_backward(observer: BackwardObserver) -> None:
    """Stop calling ``observer`` (the most recently added entry of it goes)."""
    _unlisten(_backward.on_backward, _backward_watched, observer)


@contextmanager
def observing_backward(observer: BackwardObserver) -> Iterator[None]:
    """Observe the VJP calls of the backward passes run inside the ``with`` block."""
    add_backward(observer)
    try:
        yield
    finally:
        remove_backward(observer)


def notify_backward(record: Any, grads_in: Any, grads_out: Any) -> None:
    """Called by the engine after each VJP while some thread observes backward."""
    for observe in _backward.on_backward:
        observe(record, tuple(grads_in), tuple(grads_out))
