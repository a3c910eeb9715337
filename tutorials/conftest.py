"""Notebooks run under pytest (``--nbmake``) in quick mode: training shrinks to seconds.

Each notebook reads ``MINIGRAD_QUICK``; the kernels nbmake starts inherit this process's
environment. Set ``MINIGRAD_QUICK=0`` to run the full versions under pytest.
"""

import os

os.environ.setdefault("MINIGRAD_QUICK", "1")

# A kernel gets 60 s to start by default. On a busy two-core machine (the other pytest
# worker running MPI jobs, no bytecode cache in a fresh environment) a start can take
# longer, and the notebook would fail without having run a cell: allow five minutes.
import functools  # noqa: E402

import nbclient  # noqa: E402
from nbmake import nb_run  # noqa: E402

nb_run.NotebookClient = functools.partial(nbclient.NotebookClient, startup_timeout=300)
