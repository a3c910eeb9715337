"""Checks that run inside ``mpiexec -n N python tests/mpi_checks.py CHECK...`` (one process
per rank); ``tests/test_distributed.py`` launches them. Each check compares what the ranks
compute together with what one process computes on the whole batch, asserts, and prints
``rank R ok CHECK``. Every rank builds the same full batch from the same seed and keeps
its own rows.
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import minigrad as mg  # noqa: E402
import minigrad.nn.functional as F  # noqa: E402
from minigrad import distributed as dist  # noqa: E402
from minigrad import nn  # noqa: E402

TOL = 1e-12


def close(name: str, got, want, tol: float = TOL) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = float(np.max(np.abs(got - want), initial=0.0))
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    assert err <= tol * scale, f"{name}: max error {err:.3e} (tolerance {tol * scale:.1e})"


def my_rows(splits: list[int]) -> slice:
    start = sum(splits[:dist.rank()])
    return slice(start, start + splits[dist.rank()])


def splits_for(n: int, pattern: str) -> list[int]:
    """How ``n`` rows are cut between the ranks: equal, unequal, or rank 1 empty."""
    w = dist.world_size()
    if pattern == "equal":
        base = [n // w] * w
        base[-1] += n - sum(base)
        return base
    if pattern == "unequal":
        cuts = [max(1, (n * (k + 1)) // (w * (w - k + 1))) for k in range(w - 1)]
        return [*cuts, n - sum(cuts)]
    cuts = [n // (w - 1)] * w  # "empty": rank 1 has no rows at all
    cuts[1] = 0
    cuts[-1 if w > 2 else 0] += n - sum(cuts)
    return cuts


# ---------------------------------------------------------------------- SyncBatchNorm
def check_syncbn() -> None:
    """Outputs, dx, dgamma, dbeta, running statistics and a second derivative of
    SyncBatchNorm on each rank's rows equal BatchNorm's on the whole batch."""
    cases = [((24, 5), "equal", 0.1, True), ((23, 4), "unequal", 0.1, True),
             ((17, 3), "empty", None, True), ((10, 3, 4, 5), "unequal", 0.3, True),
             ((9, 2, 3), "empty", 0.1, False)]
    for k, (shape, pattern, momentum, affine) in enumerate(cases):
        splits = splits_for(shape[0], pattern)
        rng = np.random.default_rng(100 + k)
        x_full = rng.normal(3.0, 2.0, size=shape)  # a large mean: no E[x^2]-E[x]^2 here
        w_full = rng.normal(size=shape)
        gamma, beta = rng.normal(size=shape[1]), rng.normal(size=shape[1])
        ref = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(
            shape[1], momentum=momentum, affine=affine, dtype=np.float64)
        sync = nn.SyncBatchNorm.convert_sync_batchnorm(
            (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(
                shape[1], momentum=momentum, affine=affine, dtype=np.float64))
        assert isinstance(sync, nn.SyncBatchNorm)
        if affine:
            for m in (ref, sync):
                m.weight.data[...] = gamma
                m.bias.data[...] = beta
        rows = my_rows(splits)
        for step in range(2):  # twice: the running statistics accumulate
            xs = x_full + step
            x_ref = mg.tensor(xs, requires_grad=True)
            y_ref = ref(x_ref)
            (y_ref * mg.tensor(w_full)).sum().backward()
            x = mg.tensor(xs[rows], requires_grad=True)
            y = sync(x)
            (y * mg.tensor(w_full[rows])).sum().backward()
            tag = f"syncbn {shape} {pattern} step {step}"
            close(f"{tag} y", y.numpy(), y_ref.numpy()[rows])
            close(f"{tag} dx", x.grad.numpy(), x_ref.grad.numpy()[rows])
            for name in ("running_mean", "running_var"):
                close(f"{tag} {name}", getattr(sync, name).numpy(), getattr(ref, name).numpy())
            assert int(sync.num_batches_tracked.item()) == step + 1
            if affine:  # each rank's share of the parameter gradients sums to the whole
                for name in ("weight", "bias"):
                    got = dist.all_reduce(getattr(sync, name).grad.numpy())
                    close(f"{tag} d{name}", got, getattr(ref, name).grad.numpy())
                    getattr(sync, name).grad = None
                    getattr(ref, name).grad = None
        check_second_derivative(sync, ref, x_full, w_full, rows, shape)
        check_forward_mode(sync, ref, x_full, w_full, rows, shape)
        sync.eval()
        ref.eval()
        close(f"eval {shape}", sync(mg.tensor(x_full[rows])).numpy(),
              ref(mg.tensor(x_full)).numpy()[rows])


def check_second_derivative(sync, ref, x_full, w_full, rows, shape) -> None:
    """d/dx of sum(dL/dx ** 2): the create_graph backward is differentiable across ranks."""
    def hess_term(module, x, w):
        g = mg.grad((module(x) * mg.tensor(w)).sum(), x, create_graph=True)[0]
        return mg.grad((g * g).sum(), x)[0]

    want = hess_term(ref, mg.tensor(x_full, requires_grad=True), w_full)
    got = hess_term(sync, mg.tensor(x_full[rows], requires_grad=True), w_full[rows])
    close(f"second derivative {shape}", got.numpy(), want.numpy()[rows], 1e-10)


def check_forward_mode(sync, ref, x_full, t_full, rows, shape) -> None:
    """mg.jvp through SyncBatchNorm: each rank's rows of the whole batch's tangent."""
    _, want = mg.jvp(ref, (mg.tensor(x_full),), (mg.tensor(t_full),))
    _, got = mg.jvp(sync, (mg.tensor(x_full[rows]),), (mg.tensor(t_full[rows]),))
    close(f"jvp {shape}", got.numpy(), want.numpy()[rows])


# ---------------------------------------------------------------------- collectives
def check_collectives() -> None:
    r, w = dist.rank(), dist.world_size()
    a = np.arange(6.0).reshape(2, 3) + r
    close("all_reduce sum", dist.all_reduce(a), sum(np.arange(6.0).reshape(2, 3) + k
                                                     for k in range(w)))
    close("all_reduce mean", dist.all_reduce(a, "mean"), np.arange(6.0).reshape(2, 3)
          + (w - 1) / 2)
    close("all_reduce max", dist.all_reduce(a, "max"), np.arange(6.0).reshape(2, 3) + w - 1)
    close("all_gather", dist.all_gather(np.array([r, 10 * r])),
          np.array([[k, 10 * k] for k in range(w)]))
    close("broadcast", dist.broadcast(np.full(3, float(r)), root=w - 1), np.full(3, w - 1.0))
    dist.barrier()
    # Tensors: differentiable sum / gather / broadcast
    t = mg.tensor(np.array([1.0, 2.0]) * (r + 1), requires_grad=True)
    s = dist.all_reduce(t)
    (s * s).sum().backward()  # d/dt_r of sum_ranks sum(s^2) = 2 s on every rank, summed: 2ws
    close("all_reduce grad", t.grad.numpy(), 2 * w * s.numpy())
    t.grad = None
    g = dist.all_gather(t)
    assert g.shape == (w, 2)
    (g * mg.tensor(np.arange(w * 2.0).reshape(w, 2))).sum().backward()
    close("all_gather grad", t.grad.numpy(), w * np.arange(w * 2.0).reshape(w, 2)[r])
    t.grad = None
    dist.broadcast(t, root=0).sum().backward()
    close("broadcast grad", t.grad.numpy(), np.full(2, float(w) if r == 0 else 0.0))
    # Ranks that disagree raise on every rank, and the world stays usable.
    for bad, what in ((np.zeros(2 + r), "shape"), (np.zeros(2, [np.float64, np.float32][r % 2]),
                                                   "float32")):
        try:
            dist.all_reduce(bad)
        except dist.DistributedError as exc:
            assert "disagree" in str(exc) and what in str(exc), str(exc)
        else:
            raise AssertionError(f"mismatched {what} did not raise")
    try:
        dist.init("local")
    except dist.DistributedError as exc:
        assert "already joined" in str(exc)
    else:
        raise AssertionError("init('local') after init('mpi') did not raise")
    close("after errors", dist.all_reduce(np.ones(1)), np.full(1, float(w)))


# ---------------------------------------------------------------------- data parallel
def check_data_parallel() -> None:
    """20 steps of the paper's MLP with SyncBatchNorm on two (or more) processes, fed by
    DistributedSampler, equal 20 steps of one process on the whole batches."""
    from models.nets import paper_mlp

    batch, steps, lr = 16 * dist.world_size(), 20, 0.5
    n = 5 * batch  # whole batches for every rank: both loaders cut epochs alike
    rng = np.random.default_rng(7)
    images = rng.random((n, 1, 28, 28))
    labels = rng.integers(0, 10, n)
    ds = mg.data.TensorDataset(images, labels)

    mg.manual_seed(0)
    ref = paper_mlp(bn=True).to(dtype=np.float64)
    mg.manual_seed(dist.rank())  # other ranks start elsewhere: DataParallel copies rank 0
    net = nn.SyncBatchNorm.convert_sync_batchnorm(paper_mlp(bn=True).to(dtype=np.float64))
    model = dist.DataParallel(net, bucket_cap_mb=0.1)  # several buckets
    assert len(model.buckets()) > 1
    opt = mg.optim.SGD(model.parameters(), lr=lr)
    ref_opt = mg.optim.SGD(ref.parameters(), lr=lr)

    sampler = mg.data.DistributedSampler(ds, shuffle=True, seed=3)
    loader = mg.data.DataLoader(ds, batch_size=batch // dist.world_size(), sampler=sampler)
    ref_loader = mg.data.DataLoader(ds, batch_size=batch, shuffle=True, seed=3)
    done = 0
    while done < steps:
        for (x, y), (xr, yr) in zip(loader, ref_loader):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            model.sync_gradients()
            opt.step()
            ref_loss = F.cross_entropy(ref(xr), yr)
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()
            close(f"loss at step {done}", dist.all_reduce(loss.numpy(), "mean"),
                  ref_loss.numpy(), 1e-10)
            done += 1
            if done == steps:
                break
    got, want = model.state_dict(), ref.state_dict()
    assert list(got) == list(want)
    for key in want:
        close(f"after {steps} steps: {key}", got[key].numpy(), want[key].numpy(), 1e-10)
    # the replicas are equal to the last bit
    for key, t in got.items():
        close(f"replicas agree on {key}", dist.broadcast(t.numpy()), t.numpy(), 0.0)


# ---------------------------------------------------------------------- failures
def check_rank_dies() -> None:
    """Rank 1 raises while rank 0 waits in a collective: the job must end, not hang."""
    if dist.rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    dist.all_reduce(np.ones(3))
    raise AssertionError("the collective returned although rank 1 died")


def check_rank_exits() -> None:
    """Rank 1 vanishes without a word (os._exit): the launcher must end the job."""
    if dist.rank() == 1:
        os._exit(3)
    dist.all_reduce(np.ones(3))
    raise AssertionError("the collective returned although rank 1 exited")


CHECKS = {"syncbn": check_syncbn, "collectives": check_collectives,
          "data_parallel": check_data_parallel, "rank_dies": check_rank_dies,
          "rank_exits": check_rank_exits}


def main(names: list[str]) -> None:
    dist.init()
    assert dist.world_size() > 1 and dist.communicator().backend == "mpi"
    for name in names:
        CHECKS[name]()
        print(f"rank {dist.rank()} ok {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
