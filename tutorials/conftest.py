"""Notebooks run under pytest (``--nbmake``) in quick mode: training shrinks to seconds.

Each notebook reads ``MINIGRAD_QUICK``; the kernels nbmake starts inherit this process's
environment. Set ``MINIGRAD_QUICK=0`` to run the full versions under pytest.
"""

import os

os.environ.setdefault("MINIGRAD_QUICK", "1")
