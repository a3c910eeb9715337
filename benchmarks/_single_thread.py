"""Imported first by every benchmark: one thread for BLAS/OpenMP and for PyTorch.

The benchmarks compare frameworks on one core, so the thread counts must be set before
NumPy (or PyTorch) loads its BLAS. ``torch`` is the module, or None where PyTorch is not
installed (the comparison with it is optional).
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    torch = None
