"""Pictures of the tape: ``mg.viz.draw_graph``, ``draw_derivation`` and ``save``.

    import minigrad as mg
    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    y = (x * x).sum()
    mg.viz.draw_graph(y)                 # the forward graph; shows inline in Jupyter
    mg.viz.draw_derivation(y, x)         # forward and backward side by side
    mg.viz.draw_backward(y)              # what y.backward() runs: one box per VJP call
    mg.viz.step_backward(y)              # a player, one frame per VJP call
    mg.trace_backward(y)                 # the same steps as text
    mg.viz.save(mg.viz.draw_graph(y), "y.svg")

Every picture is a ``graphviz.Digraph``: ``.source`` is its DOT text, which needs
only Python; rendering it (SVG, PNG, PDF, Jupyter) needs Graphviz's ``dot`` program.
Drawing never changes the computation: no ``.grad`` is touched, nothing is freed,
and a picture holds only strings. Pictures past ``MAX_NODES`` nodes fold modules or
are refused, and ``dot`` runs under a timeout, so a notebook never hangs on one.
"""

from .derivation import draw_derivation
from .draw import MAX_NODES, GraphTooLargeError, draw_graph
from .output import (RENDER_TIMEOUT, DrawingTypeError, DrawingValueError, Graph,
                     GraphvizNotFoundError, RenderError, RenderTimeoutError, save)
from .stepper import (BackwardStepper, StepIndexError, draw_backward, step_backward,
                      trace_backward)

__all__ = ["MAX_NODES", "RENDER_TIMEOUT", "BackwardStepper", "DrawingTypeError",
           "DrawingValueError", "Graph", "GraphTooLargeError", "GraphvizNotFoundError",
           "RenderError", "RenderTimeoutError", "StepIndexError", "draw_backward",
           "draw_derivation", "draw_graph", "save", "step_backward", "trace_backward"]
