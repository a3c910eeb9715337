"""Exceptions minigrad raises for bad input, each a subclass of a builtin one."""


class MinigradError(Exception):
    """Base class of minigrad's own errors."""


class ShapeError(MinigradError, ValueError):
    """An op got operands whose shapes it cannot combine."""


class DeviceError(MinigradError, RuntimeError):
    """A device is unavailable, or an op mixed tensors on different devices."""


class DTypeError(MinigradError, TypeError):
    """An op got a dtype it cannot work with (e.g. gradients of an integer tensor)."""


class GraphError(MinigradError, RuntimeError):
    """Backward cannot run: a freed graph, a modified saved tensor, a bad seed gradient."""


class GradcheckError(MinigradError, AssertionError):
    """Analytical and numerical gradients disagree."""


class ArgumentError(MinigradError, ValueError):
    """An argument has a value the function does not accept (an unknown mode, say)."""
