"""Optimisers and learning-rate schedules, checked step by step against torch.optim."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.optim import SGD, Adam, CosineAnnealingLR, StepLR

TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.5),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=0.1),
    dict(lr=0.02, momentum=0.7, nesterov=True, weight_decay=0.05),
]
ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01),
    dict(lr=0.05, betas=(0.5, 0.9)),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.003, betas=(0.95, 0.99), eps=1e-4, weight_decay=0.01),
]


def _problem(dtype, n_steps=6, seed=0):
    """Initial values of two parameters and a fixed sequence of gradients for each."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (5,)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(n_steps)]
    return init, grads


def _run_minigrad(cls, kwargs, init, grads, device="cpu"):
    params = [mg.tensor(a, device=device, requires_grad=True) for a in init]
    opt = cls(params, **kwargs)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = mg.tensor(g, device=device)
        opt.step()
    return [p.numpy() for p in params], opt


def _run_torch(torch, name, kwargs, init, grads):
    params = [torch.tensor(a, requires_grad=True) for a in init]
    opt = getattr(torch.optim, name)(params, **kwargs)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params], opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch(torch, kwargs, dtype):
    init, grads = _problem(dtype)
    ours, _ = _run_minigrad(SGD, kwargs, init, grads)
    ref, _ = _run_torch(torch, "SGD", kwargs, init, grads)
    for a, b, a0 in zip(ours, ref, init):
        assert a.dtype == dtype
        assert not np.allclose(a, a0)  # the parameters did move
        np.testing.assert_allclose(a, b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", ADAM_CONFIGS, ids=str)
def test_adam_matches_torch(torch, kwargs, dtype):
    init, grads = _problem(dtype, n_steps=8)
    ours, _ = _run_minigrad(Adam, kwargs, init, grads)
    ref, _ = _run_torch(torch, "Adam", kwargs, init, grads)
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **TOL[dtype])


def test_adam_first_step_by_hand():
    """Bias correction: the first step moves every entry by lr * sign(g) (up to eps)."""
    p = mg.tensor([1.0, -2.0, 3.0], dtype=mg.float64, requires_grad=True)
    p.grad = mg.tensor([0.5, -4.0, 1e-3], dtype=mg.float64)
    Adam([p], lr=0.1, eps=0.0).step()
    np.testing.assert_allclose(p.numpy(), [0.9, -1.9, 2.9], rtol=1e-14)


def test_sgd_momentum_by_hand():
    p = mg.tensor([1.0], dtype=mg.float64, requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.5)
    expected, buf = 1.0, None
    for g in (1.0, 2.0, -1.0):
        p.grad = mg.tensor([g], dtype=mg.float64)
        opt.step()
        buf = g if buf is None else 0.5 * buf + g
        expected -= 0.1 * buf
        assert p.item() == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_param_groups_and_missing_grads_match_torch(torch, name):
    init, grads = _problem(np.float64, n_steps=5)
    common = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    special = dict(lr=0.1, weight_decay=0.2)

    ps = [mg.tensor(a, requires_grad=True) for a in init]
    opt = getattr(mg.optim, name)([{"params": [ps[0]]}, {"params": [ps[1]], **special}],
                                  **common)
    ts = [torch.tensor(a, requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)([{"params": [ts[0]]}, {"params": [ts[1]], **special}],
                                      **common)
    for k, step in enumerate(grads):
        opt.zero_grad()
        topt.zero_grad()
        for i, (p, t, g) in enumerate(zip(ps, ts, step)):
            if (k + i) % 3 == 2:  # sometimes a parameter gets no gradient at all
                continue
            p.grad = mg.tensor(g)
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == 0.1


def test_step_is_in_place_unrecorded_and_bumps_version():
    p = mg.tensor([1.0, 2.0], requires_grad=True)
    before = p._data
    y = (p * p).sum()  # saves p for backward
    p.grad = mg.tensor([1.0, 1.0])
    SGD([p], lr=0.5).step()
    assert p._data is before  # updated in place: views of the parameter see the change
    assert p.is_leaf and p.grad_fn is None
    np.testing.assert_allclose(p.numpy(), [0.5, 1.5])
    with pytest.raises(mg.GraphError, match="modified in place"):
        y.backward()


def test_step_works_inside_training_loop():
    rng = np.random.default_rng(3)
    x = mg.tensor(rng.standard_normal((64, 3)))
    true_w = np.array([[1.5], [-2.0], [0.5]], dtype=np.float32)
    y = x @ mg.tensor(true_w)
    w = mg.zeros(3, 1, requires_grad=True)
    opt = Adam([w], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(w.numpy(), true_w, atol=1e-2)


def test_zero_grad():
    p = mg.tensor([1.0, 2.0], requires_grad=True)
    opt = SGD([p], lr=0.1)
    p.grad = mg.tensor([3.0, 4.0])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing moves
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])


def test_closure_is_called_and_its_loss_returned():
    p = mg.tensor([2.0], requires_grad=True)
    opt = SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with mg.no_grad():  # the closure records even so
        loss = opt.step(closure)
    assert loss.item() == 4.0
    assert p.item() == pytest.approx(1.0)  # 2 - 0.25 * 4


def test_grad_dtype_is_cast_to_the_parameter_dtype():
    p = mg.tensor([1.0, 2.0], requires_grad=True)
    p.grad = mg.tensor(np.array([1.0, 1.0]))  # float64 gradient of a float32 parameter
    Adam([p], lr=0.1).step()
    assert p.dtype == np.float32


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_layout_matches_torch(torch, name):
    init, grads = _problem(np.float32, n_steps=2)
    kwargs = dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=0.1)
    _, opt = _run_minigrad(getattr(mg.optim, name), kwargs, init, grads)
    _, topt = _run_torch(torch, name, kwargs, init, grads)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    assert set(sd["state"]) == set(tsd["state"]) == {0, 1}
    for i in sd["state"]:
        assert set(sd["state"][i]) == set(tsd["state"][i])
        for key, value in sd["state"][i].items():
            if key != "step":
                np.testing.assert_allclose(value.numpy(), tsd["state"][i][key].numpy(),
                                           rtol=1e-6, atol=1e-6)
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        for key, value in g.items():
            assert value == tg[key], key


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_round_trip_through_a_file(tmp_path, name):
    init, grads = _problem(np.float32, n_steps=8)
    kwargs = dict(lr=0.05, momentum=0.9, nesterov=True) if name == "SGD" else dict(lr=0.05)
    cls = getattr(mg.optim, name)
    full, _ = _run_minigrad(cls, kwargs, init, grads)

    mid, opt = _run_minigrad(cls, kwargs, init, grads[:4])
    snapshot = opt.state_dict()
    mg.save({"optim": snapshot, "params": [mg.tensor(a) for a in mid]}, tmp_path / "ck.npz")
    key = "momentum_buffer" if name == "SGD" else "exp_avg"
    before = snapshot["state"][0][key].numpy()
    opt.step()  # the snapshot is a copy: later steps do not change it
    np.testing.assert_array_equal(snapshot["state"][0][key].numpy(), before)

    ck = mg.load(tmp_path / "ck.npz")
    params = [mg.tensor(t.numpy(), requires_grad=True) for t in ck["params"]]
    resumed = cls(params, lr=123.0)  # the options come back from the state dict
    resumed.load_state_dict(ck["optim"])
    assert resumed.param_groups[0]["lr"] == kwargs["lr"]
    for step in grads[4:]:
        for p, g in zip(params, step):
            p.grad = mg.tensor(g)
        resumed.step()
    for a, b in zip(params, full):
        np.testing.assert_array_equal(a.numpy(), b)


def test_adam_resumes_from_a_torch_state_dict(torch):
    """PyTorch's layout: a torch Adam state (as NumPy) continues identically here."""
    init, grads = _problem(np.float64, n_steps=6)
    params = [torch.tensor(a, requires_grad=True) for a in init]
    topt = torch.optim.Adam(params, lr=0.02, weight_decay=0.01)
    for k, step in enumerate(grads):
        if k == 3:
            tsd = topt.state_dict()
            state = {i: {k2: v.numpy().copy() for k2, v in s.items()}
                     for i, s in tsd["state"].items()}
            groups = tsd["param_groups"]  # with torch's extra options, all off
            ours = [mg.tensor(p.detach().numpy(), requires_grad=True) for p in params]
            opt = Adam(ours)
            opt.load_state_dict({"state": state, "param_groups": groups})
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        topt.step()
        if k >= 3:
            for p, g in zip(ours, step):
                p.grad = mg.tensor(g)
            opt.step()
    for a, b in zip(ours, params):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_load_state_dict_rejects_mismatches():
    a = mg.zeros(3, requires_grad=True)
    b = mg.zeros(2, requires_grad=True)
    opt = SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = mg.ones(3), mg.ones(2)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameter.*but 1 here"):
        SGD([mg.zeros(3, requires_grad=True)], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        SGD([mg.zeros(2, requires_grad=True), mg.zeros(3, requires_grad=True)],
            lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="param_groups"):
        opt.load_state_dict({"weights": 1})


def test_constructor_errors():
    good = mg.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr=-0.1"):
        SGD([good], lr=-0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])
    with pytest.raises(ValueError, match="does not require grad"):
        SGD([mg.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="dtype int64"):
        SGD([mg.tensor([1, 2])], lr=0.1)
    with pytest.raises(TypeError, match="ndarray"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        SGD(good, lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([good], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([good], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than once"):
        SGD([good, good], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([{"params": [good]}, {"params": [good]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown option"):
        SGD([{"params": [good], "momentom": 0.9}], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        Adam([good], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay"):
        Adam([good], weight_decay=-1.0)
    with pytest.raises(ValueError, match="not a leaf"):
        SGD([good * 2], lr=0.1)


def test_optimiser_runs_on_the_test_device(device):
    init, grads = _problem(np.float32, n_steps=4)
    for cls, kw in ((SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)), (Adam, dict(lr=0.1))):
        ours, opt = _run_minigrad(cls, kw, init, grads, device=device)
        ref, _ = _run_minigrad(cls, kw, init, grads, device="cpu")
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for state in opt.state.values():
            for v in state.values():
                if hasattr(v, "shape"):
                    assert mg.backend.device_of(v) == device


# ------------------------------------------------------------------ schedulers
def _schedules(torch, make_ours, make_theirs, epochs):
    p = mg.zeros(2, requires_grad=True)
    q = mg.zeros(2, requires_grad=True)
    opt = SGD([{"params": [p]}, {"params": [q], "lr": 0.03}], lr=0.5)
    tp, tq = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [tp]}, {"params": [tq], "lr": 0.03}], lr=0.5)
    ours, theirs = make_ours(opt), make_theirs(topt)
    got, want = [], []
    for _ in range(epochs):
        got.append(ours.get_last_lr())
        want.append(theirs.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == got[-1]
        opt.step()
        topt.step()
        ours.step()
        theirs.step()
    return np.array(got), np.array(want), ours, opt


def test_step_lr_matches_torch(torch):
    got, want, _, _ = _schedules(torch, lambda o: StepLR(o, step_size=3, gamma=0.5),
                                 lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 20)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0, 0] == 0.5 and got[3, 0] == 0.25 and got[6, 1] == pytest.approx(0.0075)


def test_cosine_lr_matches_torch(torch):
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR
    got, want, _, _ = _schedules(torch, lambda o: CosineAnnealingLR(o, T_max=7, eta_min=0.01),
                                 lambda o: tsched(o, T_max=7, eta_min=0.01), 30)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got[7, 0] == pytest.approx(0.01)  # the bottom, reached at T_max


def test_scheduler_state_dict_resumes(tmp_path):
    p = mg.zeros(2, requires_grad=True)
    opt = SGD([p], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        sched.step()
    mg.save({"sched": sched.state_dict(), "optim": opt.state_dict()}, tmp_path / "s.npz")
    ck = mg.load(tmp_path / "s.npz")
    expected = [sched.get_last_lr()]
    for _ in range(3):
        sched.step()
        expected.append(sched.get_last_lr())

    opt2 = SGD([mg.zeros(2, requires_grad=True)], lr=1.0)
    opt2.load_state_dict(ck["optim"])
    sched2 = CosineAnnealingLR(opt2, T_max=99)
    sched2.load_state_dict(ck["sched"])
    got = [sched2.get_last_lr()]
    for _ in range(3):
        sched2.step()
        got.append(sched2.get_last_lr())
    assert got == expected
    assert opt2.param_groups[0]["lr"] == expected[-1][0]


def test_scheduler_errors():
    opt = SGD([mg.zeros(2, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(TypeError, match="Optimizer"):
        StepLR("not an optimizer", step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(opt, step_size=2, last_epoch=5)


# ---------------------------------------------------------------- hyperparameter checks
BAD_OPTIONS = [
    (SGD, dict(lr=0.1, momentum=float("nan")), "momentum=nan", mg.HyperparameterError),
    (SGD, dict(lr=0.1, weight_decay=float("nan")), "weight_decay=nan", mg.HyperparameterError),
    (SGD, dict(lr=float("inf")), "lr=inf", mg.HyperparameterError),
    (SGD, dict(lr=0.1, momentum="x"), "momentum='x' is a str", mg.HyperparameterTypeError),
    (SGD, dict(lr=0.1, dampening=1.5),
     r"dampening=1.5; expected a finite number in \[0, 1\]", mg.HyperparameterError),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov="yes"), "nesterov='yes'",
     mg.HyperparameterTypeError),
    (SGD, dict(lr=None), "lr=None is a NoneType", mg.HyperparameterTypeError),
    (Adam, dict(lr=-1e-3), "lr=-0.001", mg.HyperparameterError),
    (Adam, dict(betas=(float("nan"), 0.9)), r"betas\[0\]=nan", mg.HyperparameterError),
    (Adam, dict(betas=0.9), "betas=0.9 is a float", mg.HyperparameterTypeError),
    (Adam, dict(eps=float("inf")), "eps=inf", mg.HyperparameterError),
    (Adam, dict(weight_decay=True), "weight_decay=True is a bool", mg.HyperparameterTypeError),
]


@pytest.mark.parametrize("cls, kwargs, message, error", BAD_OPTIONS, ids=str)
def test_bad_hyperparameters_are_refused_at_construction(cls, kwargs, message, error):
    p = mg.zeros(3, requires_grad=True)
    with pytest.raises(error, match=rf"^{cls.__name__}: .*{message}") as info:
        cls([p], **kwargs)
    assert "; expected " in str(info.value)  # says what would have been accepted
    assert isinstance(info.value, (ValueError, TypeError))
    # the same option in a group added later is refused too, leaving the optimiser as it was
    opt = cls([p], lr=0.1) if cls is SGD else cls([p])
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(error, match=message):
        opt.add_param_group({"params": [mg.zeros(2, requires_grad=True)], **kwargs})
    assert opt.param_groups == before


def test_finite_hyperparameters_keep_weights_finite_after_a_step():
    # before validation, momentum=nan was accepted and the first step made every weight NaN
    p = mg.ones(3, requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.5, weight_decay=0.01)
    p.grad = mg.ones(3)
    opt.step()
    assert np.isfinite(p.numpy()).all()
    assert isinstance(opt.param_groups[0]["lr"], float)


def _trained_sgd():
    p = mg.ones(3, requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = mg.ones(3)
    opt.step()
    return p, opt


@pytest.mark.parametrize("change, message, error", [
    (lambda sd: sd["param_groups"][0].update(lr="abc"), "group 0: lr='abc' is a str",
     mg.HyperparameterTypeError),
    (lambda sd: sd["param_groups"][0].update(momentum=float("nan")), "momentum=nan",
     mg.HyperparameterError),
    (lambda sd: sd["param_groups"][0].pop("params"), "saved group 0 has keys",
     mg.ArgumentError),
    (lambda sd: sd["param_groups"][0].update(params=["a"]), "expected parameter indices",
     mg.ArgumentError),
    (lambda sd: sd["param_groups"][0].update(amsgrad=True), r"unknown option\(s\) \['amsgrad'\]",
     mg.ArgumentError),
    (lambda sd: sd["state"][0].update(momentum_buffer=np.array(["a", "b", "c"])),
     "holds <U1 values", mg.ArgumentError),
    (lambda sd: sd.update(param_groups={"lr": 1}), "'param_groups' is a dict",
     mg.ArgumentError),
])
def test_optimizer_load_state_dict_checks_everything_before_changing_anything(
        change, message, error):
    p, opt = _trained_sgd()
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.5  # a valid change listed before the bad one
    sd["state"][0]["momentum_buffer"] = mg.full((3,), 7.0)
    change(sd)
    buffer = opt.state[p]["momentum_buffer"].copy()
    with pytest.raises(error, match=rf"^SGD.load_state_dict: .*{message}"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], buffer)
    assert "amsgrad" not in opt.param_groups[0]


@pytest.mark.parametrize("make, message, error", [
    (lambda o: StepLR(o, step_size=2, gamma=float("nan")), "StepLR: invalid gamma=nan",
     mg.HyperparameterError),
    (lambda o: StepLR(o, step_size=2.0), "step_size=2.0 is a float", mg.HyperparameterTypeError),
    (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=float("inf")), "eta_min=inf",
     mg.HyperparameterError),
    (lambda o: CosineAnnealingLR(o, T_max=10, last_epoch=-2), "last_epoch=-2",
     mg.HyperparameterError),
    (lambda o: StepLR("not an optimizer", step_size=2), "expected a minigrad Optimizer",
     mg.ArgumentTypeError),
    (lambda o: StepLR(o, step_size=2, last_epoch=5), "initial_lr", mg.MissingKeyError),
])
def test_scheduler_arguments_are_checked(make, message, error):
    opt = SGD([mg.zeros(2, requires_grad=True)], lr=1.0)
    with pytest.raises(error, match=message):
        make(opt)


def test_scheduler_load_state_dict_is_all_or_nothing():
    opt = SGD([mg.zeros(2, requires_grad=True)], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=10)
    sched.step()
    sd = sched.state_dict()
    for key, bad, message in [("last_epoch", "x", "last_epoch='x' is a str"),
                              ("T_max", 0, "T_max=0"),
                              ("base_lrs", [float("nan")], r"base_lrs\[0\]=nan"),
                              ("base_lrs", [1.0, 2.0], "one per parameter group")]:
        with pytest.raises(mg.HyperparameterError if key != "base_lrs" or "nan" in message
                           else mg.ArgumentError, match=message):
            sched.load_state_dict({**sd, "last_epoch": 5, key: bad})
        assert sched.last_epoch == 1 and sched.T_max == 10 and sched.base_lrs == [1.0]
        assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]
    with pytest.raises(mg.ArgumentError, match="expected a dict"):
        sched.load_state_dict([1, 2])
