"""Exceptions minigrad raises for bad input, each a subclass of a builtin one.

Every error minigrad raises on purpose derives from `MinigradError` and from the builtin a
user would catch: ``except ValueError`` still catches a `ShapeError`.
"""


class MinigradError(Exception):
    """Base class of minigrad's own errors."""


class ShapeError(MinigradError, ValueError):
    """An op got operands whose shapes it cannot combine, or a size it cannot make."""


class ArgumentError(MinigradError, ValueError):
    """An argument has a value the call cannot use: an unknown option, a probability outside
    [0, 1], a step of 0, an empty list where one item at least is needed."""


class DeviceError(MinigradError, RuntimeError):
    """A device is unavailable, or an op mixed tensors on different devices."""


class DistributedError(MinigradError, RuntimeError):
    """A collective cannot run: no ``init()`` yet, ranks disagree on shapes, a missing backend."""


class DTypeError(MinigradError, TypeError):
    """An op got a dtype it cannot work with (e.g. gradients of an integer tensor)."""


class ArgumentTypeError(MinigradError, TypeError):
    """A function got an argument of a type it cannot use (a float where an int is needed,
    an array where a Tensor is)."""


class IndexOutOfRangeError(MinigradError, IndexError):
    """An index, axis position or class label lies outside the valid range."""


class GraphError(MinigradError, RuntimeError):
    """Backward cannot run: a freed graph, a modified saved tensor, a bad seed gradient."""


class NotSupportedError(MinigradError, NotImplementedError):
    """The object does not provide this operation (e.g. calling a ``ModuleList``)."""


class GradcheckError(MinigradError, AssertionError):
    """Analytical and numerical gradients disagree."""


class MissingFileError(MinigradError, FileNotFoundError):
    """A file or folder that a call reads (or writes into) does not exist."""


class MissingAttributeError(MinigradError, AttributeError):
    """An object has no attribute of that name (or cannot take one yet)."""


class MissingKeyError(MinigradError, KeyError):
    """A name or key is missing or not allowed."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class HyperparameterError(ArgumentError):
    """An optimiser or schedule option is not a finite number in its range."""


class HyperparameterTypeError(HyperparameterError, TypeError):
    """An optimiser or schedule option has the wrong type (say, a string for ``lr``)."""


class CheckpointError(MinigradError, ValueError):
    """A file is not a readable minigrad checkpoint, or an object cannot be saved as one."""


class InvalidStateError(MinigradError, RuntimeError):
    """An object was used in a state that does not allow it (say, a superseded iterator)."""


class DataFileError(MinigradError, ValueError):
    """A dataset file is damaged, truncated, or not in the format its name says."""
