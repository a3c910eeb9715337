"""Reference models for minigrad and their training entry points.

* ``models.nets``: the Batch Normalization paper's MNIST MLP and a small CNN, with or without BN;
* ``python -m models.train``: train any of them (progress bar, metrics, plots, checkpoints, resume);
* ``python -m models.paper_bn``: the paper's MNIST experiment and its other claims, reproduced;
* ``python -m models.paper_study``: why BN's sigmoid inputs still move (learning rate x initial
  scale, learned gamma and beta), BN's batch-size sensitivity and its regularisation claim.

Everything here uses minigrad's public API only.
"""
