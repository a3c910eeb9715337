"""mg.distributed, SyncBatchNorm, DataParallel and DistributedSampler.

The multi-process checks run for real: ``mpiexec -n 2`` (and ``-n 3``, more processes
than this machine has cores) launches ``tests/mpi_checks.py``, which compares what the
ranks compute together with one process on the whole batch and asserts on every rank.
Each launch runs several checks and has a timeout, so a hang fails instead of blocking.
Without mpi4py or mpiexec those tests skip. The single-process tests check the
SyncBatchNorm op itself (a world of one) against finite differences and PyTorch.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import distributed as dist
from minigrad import nn
from minigrad.nn._sync_batchnorm import sync_batch_norm

ROOT = Path(__file__).resolve().parents[1]
CHECKS = Path(__file__).with_name("mpi_checks.py")


@functools.cache
def _mpiexec() -> str | None:
    """The mpiexec beside this Python (the mpich wheel's), or one on PATH."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = Path(sys.executable).with_name("mpiexec")
    return str(here) if here.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(_mpiexec() is None,
                               reason="mpi4py/mpiexec not installed (pip install minigrad[mpi])")


def _launch(n: int, args: list[str], timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # One BLAS thread per rank: the ranks already share the cores. The environment of
    # a test process under pytest-xdist carries no MPI variables, so this is a new job.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_", "HYDRA"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    env.pop("MINIGRAD_TRAIN_SELF_SIGNAL", None)
    env.update(extra_env or {})
    return subprocess.run([_mpiexec(), "-n", str(n), *args], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True, timeout=timeout)


def _run_checks(n: int, checks: list[str]) -> None:
    out = _launch(n, [sys.executable, str(CHECKS), *checks])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for r in range(n):
        for c in checks:
            assert f"rank {r} ok {c}" in out.stdout, out.stdout


@pytest.fixture
def local_world():
    """A world of one process for the test, and none afterwards."""
    dist.shutdown()
    comm = dist.init()
    yield comm
    dist.shutdown()


# ---------------------------------------------------------------------- under mpiexec
@needs_mpi
def test_two_processes_equal_one_process_on_the_whole_batch():
    """SyncBatchNorm (outputs, dx, dgamma, dbeta, running statistics, a second derivative;
    equal, unequal and empty slices; (N, C), (N, C, L), (N, C, H, W)), the collectives and
    their errors, and 20 data-parallel steps of the paper's MLP, all to 1e-12 / 1e-10."""
    _run_checks(2, ["collectives", "syncbn", "data_parallel"])


@needs_mpi
def test_three_processes_oversubscribed():
    _run_checks(3, ["collectives", "syncbn", "data_parallel"])


@needs_mpi
@pytest.mark.parametrize("check, says", [("rank_dies", "rank 1 fails on purpose"),
                                         ("rank_exits", "")])
def test_a_rank_that_dies_ends_the_job_instead_of_hanging(check, says):
    out = _launch(2, [sys.executable, str(CHECKS), check], timeout=60)
    assert out.returncode != 0
    assert "the collective returned" not in out.stdout + out.stderr
    assert says in out.stderr
    if says:  # the traceback, then the abort of the whole job
        assert "rank 1 of 2 failed; aborting the job" in out.stderr


@needs_mpi
def test_under_mpiexec_a_world_never_initialised_or_local_is_refused():
    code = textwrap.dedent("""
        import numpy as np
        import minigrad as mg
        for call in (lambda: mg.distributed.all_reduce(np.ones(2)),
                     lambda: mg.distributed.init("local")):
            try:
                call()
            except mg.distributed.DistributedError as e:
                print("refused:", e)
        """)
    out = _launch(2, [sys.executable, "-c", code], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("refused:") == 4
    assert out.stdout.count("call mg.distributed.init() first") == 2
    assert out.stdout.count("would train each rank alone") == 2


# ---------------------------------------------------------------------- one process
def test_using_the_world_before_init_is_a_clear_error():
    dist.shutdown()
    for call in (dist.rank, dist.world_size, dist.barrier, lambda: dist.all_reduce(np.ones(2)),
                 lambda: nn.SyncBatchNorm(3)(mg.randn(4, 3)),
                 lambda: dist.DataParallel(nn.Linear(2, 2)),
                 lambda: mg.data.DistributedSampler(range(4))):
        with pytest.raises(dist.DistributedError, match=r"call mg\.distributed\.init\(\) first"):
            call()
    assert isinstance(dist.DistributedError("x"), (mg.MinigradError, RuntimeError))


def test_init_picks_a_world_of_one_without_a_launcher(local_world, monkeypatch):
    assert local_world.backend == "local" and dist.is_initialized()
    assert (dist.rank(), dist.world_size()) == (0, 1)
    assert dist.init() is local_world  # a second init is the same world
    with pytest.raises(dist.DistributedError, match="already joined a 'local' world"):
        dist.init("mpi")
    with pytest.raises(dist.DistributedError, match="backend must be one of"):
        dist.init("gloo")
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "2")
    assert dist.launched_world() == (2, 4)


def test_init_local_refuses_a_launched_world(monkeypatch):
    dist.shutdown()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    with pytest.raises(dist.DistributedError, match="rank 1 of 2"):
        dist.init("local")
    assert not dist.is_initialized()


def test_nccl_without_a_gpu_says_so():
    if mg.cuda_available():
        pytest.skip("a GPU is present: see the cuda tests")
    dist.shutdown()
    with pytest.raises(dist.DistributedError, match="needs CuPy and a CUDA GPU"):
        dist.init("nccl")


def test_collectives_in_a_world_of_one(local_world):
    a = np.arange(6.0).reshape(2, 3)
    for op in dist.REDUCE_OPS:
        out = dist.all_reduce(a, op)
        np.testing.assert_array_equal(out, a)
        assert out is not a
    np.testing.assert_array_equal(dist.all_gather(a), a[None])
    np.testing.assert_array_equal(dist.broadcast(a, 0), a)
    t = mg.tensor(a, requires_grad=True)
    s = dist.all_reduce(t, "mean")
    assert isinstance(s, mg.Tensor)
    (s * s).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 2 * a)
    assert dist.all_gather(t).shape == (1, 2, 3)
    local_world.barrier()
    assert local_world.calls >= 4 and local_world.seconds >= 0


def test_collective_errors_name_the_problem(local_world):
    with pytest.raises(dist.DistributedError, match="op must be one of"):
        dist.all_reduce(np.ones(2), "avg")
    with pytest.raises(dist.DistributedError, match="floating-point"):
        dist.all_reduce(np.ones(2, np.int64), "mean")
    with pytest.raises(dist.DistributedError, match="expected a NumPy or CuPy array or a Tensor"):
        dist.all_reduce([1.0, 2.0])
    with pytest.raises(dist.DistributedError, match="root must be a rank in 0..0"):
        dist.broadcast(np.ones(2), root=1)
    with pytest.raises(dist.DistributedError, match="no gradient"):
        dist.all_reduce(mg.ones(2, requires_grad=True), "max")
    with mg.no_grad():
        assert dist.all_reduce(mg.ones(2, requires_grad=True), "max").shape == (2,)


# ---------------------------------------------------------------------- SyncBatchNorm
@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 5), (3, 2, 3, 2)])
def test_sync_batch_norm_gradcheck(shape, rng):
    comm = dist.LocalCommunicator()
    x = mg.tensor(rng.normal(2.0, 1.5, shape), requires_grad=True)
    g = mg.tensor(rng.normal(size=shape[1]), requires_grad=True)
    b = mg.tensor(rng.normal(size=shape[1]), requires_grad=True)

    def f(x, g, b):
        return sync_batch_norm(x, None, None, g, b, comm=comm)

    assert mg.gradcheck(f, (x, g, b))
    assert mg.gradgradcheck(f, (x, g, b))
    assert mg.gradcheck(lambda x: sync_batch_norm(x, None, None, comm=comm), (x,))


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(8, 3), (5, 4, 3, 2)])
def test_sync_batch_norm_matches_torch_batch_norm(shape, rng, torch):
    comm = dist.LocalCommunicator()
    x_np, w_np = rng.normal(1.0, 3.0, shape), rng.normal(size=shape)
    g_np, b_np = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    rm, rv = mg.zeros(shape[1], dtype=np.float64), mg.ones(shape[1], dtype=np.float64)
    x = mg.tensor(x_np, requires_grad=True)
    g, b = mg.tensor(g_np, requires_grad=True), mg.tensor(b_np, requires_grad=True)
    y = sync_batch_norm(x, rm, rv, g, b, momentum=0.2, comm=comm)
    (y * mg.tensor(w_np)).sum().backward()

    tx = torch.tensor(x_np, requires_grad=True)
    tg, tb = torch.tensor(g_np, requires_grad=True), torch.tensor(b_np, requires_grad=True)
    trm, trv = torch.zeros(shape[1], dtype=torch.float64), torch.ones(shape[1],
                                                                       dtype=torch.float64)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=0.2)
    (ty * torch.tensor(w_np)).sum().backward()
    for got, want in ((y, ty), (x.grad, tx.grad), (g.grad, tg.grad), (b.grad, tb.grad),
                      (rm, trm), (rv, trv)):
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-11, atol=1e-12)


def test_sync_batch_norm_combines_with_chans_rule_not_the_raw_second_moment():
    """Values near 1e8 with spread 1: E[x^2] - E[x]^2 would lose every digit in float64."""
    comm = dist.LocalCommunicator()
    x = np.random.default_rng(0).normal(1e8, 1.0, (50, 2))
    rv = mg.ones(2, dtype=np.float64)
    sync_batch_norm(mg.tensor(x), mg.zeros(2, dtype=np.float64), rv, momentum=1.0, comm=comm)
    np.testing.assert_allclose(rv.numpy(), x.var(axis=0, ddof=1), rtol=1e-7)


def test_size_one_world_equals_batch_norm_exactly(local_world, rng):
    x_np = rng.normal(size=(7, 4, 3, 3)).astype(np.float32)
    bn = nn.BatchNorm2d(4, momentum=None)
    sync = nn.SyncBatchNorm(4, momentum=None)
    for _ in range(2):
        xs = [mg.tensor(x_np, requires_grad=True) for _ in range(2)]
        ys = [bn(xs[0]), sync(xs[1])]
        for y in ys:
            (y * y).sum().backward()
        np.testing.assert_array_equal(ys[0].numpy(), ys[1].numpy())
        np.testing.assert_array_equal(xs[0].grad.numpy(), xs[1].grad.numpy())
    for (k, a), (_, b) in zip(bn.state_dict().items(), sync.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    np.testing.assert_array_equal(bn.weight.grad.numpy(), sync.weight.grad.numpy())


def test_sync_batch_norm_input_errors(local_world):
    sync = nn.SyncBatchNorm(3)
    with pytest.raises(mg.ShapeError, match=r"expected an input of shape \(N, 3\) or "):
        sync(mg.randn(4, 2))
    with pytest.raises(mg.ShapeError, match="1-D"):
        sync(mg.randn(4))
    with pytest.raises(mg.ShapeError, match="more than 1 value per channel"):
        sync_batch_norm(mg.randn(1, 3), None, None, comm=local_world)
    with pytest.raises(mg.DTypeError, match="floating-point"):
        sync_batch_norm(mg.tensor(np.ones((4, 3), np.int64)), None, None, comm=local_world)
    sync.eval()  # evaluation uses the running statistics: no world needed
    dist.shutdown()
    assert sync(mg.randn(1, 3)).shape == (1, 3)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_mode():
    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, momentum=0.3))
    model = nn.Sequential(inner, nn.Flatten(), nn.Linear(8, 4), nn.BatchNorm1d(4, eps=1e-3),
                          nn.ReLU())
    model[3].eval()
    before = {k: v for k, v in model.state_dict(keep_vars=True).items()}
    params = list(model.parameters())
    out = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model
    assert isinstance(inner[1], nn.SyncBatchNorm) and isinstance(model[3], nn.SyncBatchNorm)
    assert (inner[1].momentum, model[3].eps, model[3].training, inner[1].training) == (
        0.3, 1e-3, False, True)
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before)
    assert all(after[k] is before[k] for k in before)  # the same tensors, not copies
    assert list(model.parameters()) == params
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3, affine=False))
    assert isinstance(single, nn.SyncBatchNorm) and single.weight is None


# ---------------------------------------------------------------------- data parallel
def test_data_parallel_in_a_world_of_one(local_world):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Linear(2, 2))
    model = dist.DataParallel(net, bucket_cap_mb=40 / 2**20)  # 10 float32 per bucket
    # backward order, cut before 10 floats: [b4, w4, b3], [w3], [b1], [w1 (12 > 10 alone)]
    assert [len(b) for b in model.buckets()] == [3, 1, 1, 1]
    assert list(model.state_dict()) == list(net.state_dict())  # no "module." prefix
    mg.nn.functional.mse_loss(net[2](net[1](net[0](mg.randn(5, 3)))), mg.randn(5, 2)).backward()
    grads = {k: p.grad.numpy().copy() for k, p in net.named_parameters() if p.grad is not None}
    model.sync_gradients()
    for k, p in net.named_parameters():
        if k in grads:
            np.testing.assert_array_equal(p.grad.numpy(), grads[k])
        else:  # the unused layer: still no gradient
            assert p.grad is None
    assert "world_size=1" in repr(model)
    twin = copy.deepcopy(model)  # copies share the communicator, not the weights
    assert twin.comm is model.comm and twin.module[0].weight is not net[0].weight


# ---------------------------------------------------------------------- sampler
def test_distributed_sampler_splits_every_epoch_between_the_ranks():
    ds = list(range(10))
    for drop_last, per_rank in ((False, 4), (True, 3)):
        shares = [mg.data.DistributedSampler(ds, num_replicas=3, rank=r, seed=5,
                                             drop_last=drop_last) for r in range(3)]
        assert all(len(s) == per_rank for s in shares)
        seen = [i for s in shares for i in s]
        assert len(seen) == 3 * per_rank
        if drop_last:
            assert len(set(seen)) == 9
        else:
            assert set(seen) == set(ds)  # padded with repeats: every example visited
        first = [list(s) for s in shares]
        for s in shares:
            s.set_epoch(1)
        assert [list(s) for s in shares] != first
    unshuffled = mg.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    assert list(unshuffled) == [1, 3, 5, 7, 9]


def test_data_loader_with_a_sampler_follows_its_epochs():
    ds = mg.data.TensorDataset(np.arange(12.0))
    sampler = mg.data.DistributedSampler(ds, num_replicas=2, rank=0, seed=1)
    loader = mg.data.DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == 3
    for epoch in range(2):
        got = np.concatenate([b.numpy() for b in loader])
        sampler.set_epoch(epoch)
        np.testing.assert_array_equal(got, np.array(list(sampler), dtype=float))
    state = loader.state_dict()
    resumed = mg.data.DataLoader(ds, batch_size=2,
                                 sampler=mg.data.DistributedSampler(ds, 2, 0, seed=1))
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in loader]),
                                  np.concatenate([b.numpy() for b in resumed]))


def test_sampler_errors():
    with pytest.raises(mg.data.SamplerError, match="not both"):
        mg.data.DataLoader(range(4), shuffle=True,
                           sampler=mg.data.DistributedSampler(range(4), 1, 0))
    with pytest.raises(mg.data.SamplerError, match=r"rank must be in 0\.\.1"):
        mg.data.DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive int"):
        mg.data.DistributedSampler(range(4), num_replicas=0, rank=0)


# ---------------------------------------------------------------------- NCCL
@pytest.mark.cuda
def test_nccl_world_of_one_on_a_gpu(monkeypatch):
    if not mg.cuda_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    pytest.importorskip("cupyx.distributed")
    dist.shutdown()
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    comm = dist.init("nccl")
    try:
        cp = mg.backend.get_array_module("cuda")
        a = cp.arange(6.0).reshape(2, 3)
        cp.testing.assert_array_equal(dist.all_reduce(a), a)
        cp.testing.assert_array_equal(dist.all_gather(a), a[None])
        np.testing.assert_array_equal(dist.broadcast(np.ones(3)), np.ones(3))  # via the GPU
        x = mg.randn(6, 3, device="cuda", dtype=np.float64, requires_grad=True)
        y = sync_batch_norm(x, None, None, comm=comm)
        y.sum().backward()
        ref = mg.nn.functional.batch_norm(x.detach(), None, None)
        cp.testing.assert_allclose(y.data, ref.data, atol=1e-12)
        comm.barrier()
    finally:
        dist.shutdown()


# ---------------------------------------------------------------------- the training job
@functools.cache
def _have_fashion_mnist() -> bool:
    sys.path.insert(0, str(ROOT))
    from models.common import load_dataset
    try:
        load_dataset("fashion-mnist", train=False)
    except Exception:
        return False
    return True


TRAIN = ["-m", "models.train", "--model", "mlp-bn", "--train-subset", "600", "--test-subset",
         "200", "--epochs", "2", "--eval-every", "5", "--no-progress"]


def _metrics(out: Path) -> list[dict]:
    import json
    return json.loads((out / "metrics.json").read_text())["records"]


@needs_mpi
@pytest.mark.skipif(not _have_fashion_mnist(),
                    reason="Fashion-MNIST files not found (dataset-fashion-mnist)")
def test_distributed_training_job_follows_one_process_and_resumes(tmp_path):
    """``mpiexec -n 2 python -m models.train --distributed``: the same test metrics as one
    process (float32, so to rounding), rank 0 alone writes, and a run stopped by Ctrl-C
    resumes to the uninterrupted run's numbers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *TRAIN, "--out", str(tmp_path / "one")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert one.returncode == 0, one.stderr
    two = _launch(2, [sys.executable, *TRAIN, "--distributed", "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("done: step 20") == 1  # rank 0 reports, rank 1 is quiet
    for a, b in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"), strict=True):
        assert a["step"] == b["step"]
        np.testing.assert_allclose([b["train_loss"], b["test_loss"]],
                                   [a["train_loss"], a["test_loss"]], rtol=1e-5)

    stopped = tmp_path / "stopped"
    first = _launch(2, [sys.executable, *TRAIN, "--distributed", "--out", str(stopped)],
                    extra_env={"MINIGRAD_TRAIN_SELF_SIGNAL": "INT@7"})
    assert first.returncode == 130, first.stderr[-3000:]
    assert "interrupted at step 7" in first.stderr
    rest = _launch(2, [sys.executable, "-m", "models.train", "--distributed", "--resume",
                       "--no-progress", "--out", str(stopped)])
    assert rest.returncode == 0, rest.stderr[-3000:]
    for a, b in zip(_metrics(tmp_path / "two"), _metrics(stopped), strict=True):
        assert {k: v for k, v in a.items() if k != "elapsed_s"} == \
            {k: v for k, v in b.items() if k != "elapsed_s"}

    alone = subprocess.run([sys.executable, "-m", "models.train", "--resume", "--out",
                            str(stopped)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert alone.returncode == 2 and "made with 2 process(es), not 1" in alone.stderr


@needs_mpi
@pytest.mark.skipif(not _have_fashion_mnist(),
                    reason="Fashion-MNIST files not found (dataset-fashion-mnist)")
def test_distributed_training_job_error_ends_every_rank(tmp_path):
    out = _launch(2, [sys.executable, *TRAIN, "--distributed", "--batch-size", "61", "--out",
                      str(tmp_path / "odd")], timeout=60)
    assert out.returncode == 2
    assert "--batch-size 61 does not split evenly between 2 processes" in out.stderr
