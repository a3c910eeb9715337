"""minigrad.nn modules: registration, state dicts, modes, scopes on the tape, initialisation,
and whole models against PyTorch."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn


class Net(nn.Module):
    """A model with named children, a nested Sequential and a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.layers = nn.Sequential(nn.Tanh(), nn.Linear(6, 5), nn.ReLU())
        self.fc2 = nn.Linear(5, 3, bias=False)
        self.register_buffer("steps", mg.zeros(1))
        self.register_buffer("scratch", mg.zeros(2), persistent=False)

    def forward(self, x: mg.Tensor) -> mg.Tensor:
        return self.fc2(self.layers(self.fc1(x)))


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Tanh(), nn.AvgPool2d(2, stride=1),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5))


def torch_cnn(torch):
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(4, 6, 3, stride=2, padding=1), tnn.Tanh(), tnn.AvgPool2d(2, stride=1),
        tnn.Flatten(), tnn.Linear(6 * 2 * 2, 5))


def copy_to_torch(torch, model, tmodel):
    with torch.no_grad():
        for (k, v), (tk, tv) in zip(model.state_dict().items(), tmodel.state_dict().items()):
            assert k == tk
            tv.copy_(torch.from_numpy(v.numpy()))


# ----------------------------------------------------------------- registration
def test_attributes_register_parameters_buffers_and_children():
    net = Net()
    assert [k for k, _ in net.named_parameters()] == [
        "fc1.weight", "fc1.bias", "layers.1.weight", "layers.1.bias", "fc2.weight"]
    assert [k for k, _ in net.named_buffers()] == ["steps", "scratch"]
    assert [type(m).__name__ for m in net.children()] == ["Linear", "Sequential", "Linear"]
    assert [k for k, _ in net.named_modules()] == [
        "", "fc1", "layers", "layers.0", "layers.1", "layers.2", "fc2"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.fc2.bias is None
    net.extra = mg.zeros(3)  # a plain tensor attribute is not registered
    assert len(list(net.parameters())) == 5
    net.fc1 = nn.Linear(4, 6, bias=False)  # replacing a child
    assert len(list(net.parameters())) == 4
    del net.fc1
    assert "fc1" not in dict(net.named_children())
    with pytest.raises(AttributeError):
        net.fc1


def test_shared_parameters_are_listed_once():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias"]


def test_registration_errors():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign Tensor as parameter 'weight' of Linear"):
        lin.weight = mg.zeros(2, 2)
    with pytest.raises(TypeError, match=r"register_buffer: 'b' must be a Tensor"):
        lin.register_buffer("b", np.zeros(2))
    with pytest.raises(KeyError, match=r"without '\.'"):
        lin.register_buffer("a.b", mg.zeros(1))

    class Forgot(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Forgot()


def test_parameter_shares_data_and_prints():
    t = mg.randn(2, 3)
    p = nn.Parameter(t)
    assert p.requires_grad and p.is_leaf
    p.data[0, 0] = 5.0
    assert t.numpy()[0, 0] == 5.0
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert not nn.Parameter(mg.zeros(2), requires_grad=False).requires_grad
    with pytest.raises(mg.DTypeError):
        nn.Parameter(mg.tensor([1, 2]))


def test_sequential_and_module_list_containers():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq) == layers
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    seq.append(nn.Sigmoid())
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    named = nn.Sequential(OrderedDict([("enc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["enc.weight", "enc.bias"]
    with pytest.raises(IndexError, match=r"index 5 is out of range for 4 modules"):
        seq[5]
    with pytest.raises(TypeError, match=r"argument 1 is a function, not a Module"):
        nn.Sequential(nn.ReLU(), F.relu)
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and len(list(ml.parameters())) == 6
    assert list(ml.state_dict())[-1] == "2.bias"


# ----------------------------------------------------------------- state_dict
def test_state_dict_keys_match_torch(torch):
    tnn = torch.nn

    class TNet(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = tnn.Linear(4, 6)
            self.layers = tnn.Sequential(tnn.Tanh(), tnn.Linear(6, 5), tnn.ReLU())
            self.fc2 = tnn.Linear(5, 3, bias=False)
            self.register_buffer("steps", torch.zeros(1))
            self.register_buffer("scratch", torch.zeros(2), persistent=False)

    assert list(Net().state_dict()) == list(TNet().state_dict())
    assert list(cnn().state_dict()) == list(torch_cnn(torch).state_dict())
    shapes = [tuple(v.shape) for v in cnn().state_dict().values()]
    assert shapes == [tuple(v.shape) for v in torch_cnn(torch).state_dict().values()]


def test_state_dict_round_trip_is_in_place():
    src, dst = Net(), Net()
    dst_params = list(dst.parameters())
    src.steps.data[...] = 7
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert [p for p in dst.parameters()] == dst_params  # the same objects: optimisers keep them
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    assert dst.steps.item() == 7
    # state_dict tensors share memory with the module but are cut from the graph
    sd = src.state_dict()
    assert sd["fc1.weight"].grad_fn is None and not sd["fc1.weight"].requires_grad
    src.fc1.weight.data[0, 0] = 123.0
    assert sd["fc1.weight"].numpy()[0, 0] == 123.0


def test_load_state_dict_accepts_arrays_and_casts():
    lin = nn.Linear(3, 2)
    state = {"weight": np.arange(6.0).reshape(2, 3), "bias": [1.0, 2.0]}
    lin.load_state_dict(state)
    assert lin.weight.dtype == np.float32
    np.testing.assert_array_equal(lin.weight.numpy(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(lin.bias.numpy(), [1.0, 2.0])


def test_load_state_dict_errors_list_every_problem():
    net = Net()
    state = net.state_dict()
    del state["fc1.bias"]
    state["fc3.weight"] = mg.zeros(2)
    state["fc2.weight"] = mg.zeros(3, 4)
    before = net.fc1.weight.numpy()
    with pytest.raises(nn.StateDictError) as info:
        net.load_state_dict(state)
    msg = str(info.value)
    assert "for Net" in msg
    assert 'missing key(s) in state_dict: "fc1.bias"' in msg
    assert 'unexpected key(s) in state_dict: "fc3.weight"' in msg
    assert "size mismatch for fc2.weight: copying a tensor of shape (3, 4)" in msg
    assert "current model is (3, 5)" in msg
    assert isinstance(info.value, RuntimeError)
    np.testing.assert_array_equal(net.fc1.weight.numpy(), before)  # nothing was copied

    del state["fc2.weight"]
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["fc1.bias", "fc2.weight"]
    assert result.unexpected_keys == ["fc3.weight"]
    state["fc2.weight"] = mg.zeros(1)
    with pytest.raises(nn.StateDictError, match="size mismatch for fc2.weight"):
        net.load_state_dict(state, strict=False)  # shapes are checked even when not strict


# ----------------------------------------------------------------- modes, grads, dtypes
def test_train_eval_propagate_and_switch_dropout():
    model = nn.Sequential(nn.Linear(10, 10), nn.Sequential(nn.Dropout(0.5)))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    x = mg.randn(4, 10)
    np.testing.assert_array_equal(model(x).numpy(), model[0](x).numpy())
    model.train()
    assert all(m.training for m in model.modules())
    assert (model(x).numpy() == 0).mean() > 0.3


def test_zero_grad_sets_grads_to_none():
    model = Net()
    model(mg.randn(2, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model(mg.randn(2, 4)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in model.parameters())


def test_to_dtype_keeps_parameter_objects_and_gradchecks():
    model = Net()
    params = list(model.parameters())
    assert model.double() is model
    assert list(model.parameters()) == params
    assert all(p.dtype == np.float64 for p in params)
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 4)), requires_grad=True)
    assert mg.gradcheck(model, [x])
    model.to("cpu")
    with pytest.raises(mg.DeviceError, match="unknown device"):
        model.to("tpu")


def test_repr_matches_torch(torch):
    tnn = torch.nn
    ours = nn.Sequential(nn.Linear(784, 100), nn.Sigmoid(), nn.Linear(100, 10, bias=False),
                         nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, (3, 5), stride=2),
                         nn.ReLU(), nn.Tanh(), nn.Flatten(), nn.Identity())
    theirs = tnn.Sequential(tnn.Linear(784, 100), tnn.Sigmoid(), tnn.Linear(100, 10, bias=False),
                            tnn.Conv2d(1, 8, 3, padding=1), tnn.Conv2d(8, 8, (3, 5), stride=2),
                            tnn.ReLU(), tnn.Tanh(), tnn.Flatten(), tnn.Identity())
    assert repr(ours) == repr(theirs)
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"
    assert repr(Net()).startswith("Net(\n  (fc1): Linear(in_features=4, out_features=6, "
                                  "bias=True)\n  (layers): Sequential(\n    (0): Tanh()")


# ----------------------------------------------------------------- scopes on the tape
def test_records_know_their_module_scope():
    net = Net()
    out = net(mg.randn(2, 4))
    scopes = [(r.name, r.module.path, r.module.kind) for r in mg.tape(out)]
    assert scopes == [("linear", "fc1", "Linear"), ("tanh", "layers.0", "Tanh"),
                      ("linear", "layers.1", "Linear"), ("relu", "layers.2", "ReLU"),
                      ("linear", "fc2", "Linear")]
    loss = out.sum()  # outside any module
    assert mg.tape(loss)[-1].module is None

    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    recs = list(mg.tape(seq(mg.randn(1, 3))))
    assert [(r.module.path, r.module.kind) for r in recs] == [("0", "Linear"), ("1", "ReLU")]
    # called on its own, a child is the outermost module: its path is ""
    assert mg.tape(seq[0](mg.randn(1, 3)))[0].module == ("", "Linear")


def test_scope_of_modules_called_by_a_non_owner():
    helper = nn.Tanh()

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(2, 2))
            self.body = nn.Linear(2, 2)

        def forward(self, x):
            x = self.block[0](x)  # a grandchild, called directly
            x = helper(x)  # not owned by this model at all
            return self.body(x)

    recs = list(mg.tape(Outer()(mg.randn(1, 2))))
    assert [r.module.path for r in recs] == ["block.0", "tanh", "body"]
    assert [r.module.kind for r in recs] == ["Linear", "Tanh", "Linear"]
    assert str(recs[0].module) == "block.0: Linear"


def test_scope_is_popped_when_forward_raises():
    from minigrad.nn.module import current_scope

    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(mg.ShapeError):
        model(mg.randn(2, 5))
    assert current_scope() is None
    assert mg.autograd.observers.active() == ()


# ----------------------------------------------------------------- layer errors
def test_layer_errors_name_the_layer_and_shapes():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(mg.ShapeError, match=r"Linear '2' \(in_features=4, out_features=2, "
                                            r"bias=True\): expected input of shape \(\.\.\., 4\), "
                                            r"got \(5, 3\)"):
        model(mg.randn(5, 4))
    with pytest.raises(mg.ShapeError, match=r"^Linear \(in_features=4.*got \(5, 7\)"):
        nn.Linear(4, 3)(mg.randn(5, 7))
    conv = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(mg.ShapeError, match=r"Conv2d '0' \(3, 8, kernel_size=\(3, 3\).*"
                                            r"expected input of shape \(N, 3, H, W\), got "
                                            r"\(2, 1, 28, 28\)"):
        conv(mg.randn(2, 1, 28, 28))
    with pytest.raises(mg.ShapeError, match=r"MaxPool2d: expected input of shape \(N, C, H, W\)"):
        nn.MaxPool2d(2)(mg.randn(4, 4))
    with pytest.raises(mg.ShapeError, match=r"Flatten \(start_dim=1, end_dim=-1\)"):
        nn.Flatten()(mg.randn(3))
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability"):
        nn.Dropout(2.0)


# ----------------------------------------------------------------- initialisation
def test_default_init_follows_pytorch_bounds():
    mg.manual_seed(3)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w = lin.weight.numpy()
    assert w.dtype == np.float32 and w.shape == (300, 400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.02)  # U(-b, b) has var b^2/3
    assert np.abs(lin.bias.numpy()).max() <= bound
    conv = nn.Conv2d(8, 16, 3)
    cb = 1 / math.sqrt(8 * 9)
    assert np.abs(conv.weight.numpy()).max() <= cb and np.abs(conv.bias.numpy()).max() <= cb
    mg.manual_seed(3)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.numpy(), w)  # reproducible


def test_init_functions_fill_in_place_without_recording(torch):
    w = nn.Parameter(mg.zeros(200, 300))
    data_id = id(w._data)
    assert nn.init.xavier_uniform_(w, gain=2.0) is w
    a = 2.0 * math.sqrt(6 / 500)
    assert np.abs(w.numpy()).max() <= a and w.grad_fn is None and id(w._data) == data_id
    nn.init.xavier_normal_(w)
    np.testing.assert_allclose(w.numpy().std(), math.sqrt(2 / 500), rtol=0.03)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    np.testing.assert_allclose(w.numpy().std(), math.sqrt(2 / 200), rtol=0.03)
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / 300)
    nn.init.normal_(w, 1.0, 0.5)
    np.testing.assert_allclose([w.numpy().mean(), w.numpy().std()], [1.0, 0.5], rtol=0.03)
    nn.init.uniform_(w, -3, -2)
    assert w.numpy().min() >= -3 and w.numpy().max() < -2
    nn.init.constant_(w, 0.5)
    assert np.all(w.numpy() == 0.5)
    nn.init.zeros_(w)
    assert not w.numpy().any()
    nn.init.ones_(w)
    assert np.all(w.numpy() == 1)
    for name, param in [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None),
                        ("conv2d", None)]:
        assert nn.init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param))
    with pytest.raises(mg.ShapeError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(mg.zeros(5))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        nn.init.calculate_gain("swish")


# ----------------------------------------------------------------- whole models vs PyTorch
def test_mlp_matches_torch(torch, rng):
    model = nn.Sequential(nn.Linear(20, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 4))
    tmodel = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.Sigmoid(),
                                 torch.nn.Linear(16, 16), torch.nn.Tanh(),
                                 torch.nn.Linear(16, 4))
    copy_to_torch(torch, model, tmodel)
    x = rng.standard_normal((8, 20)).astype(np.float32)
    y = rng.integers(0, 4, size=8)
    loss = F.cross_entropy(model(mg.tensor(x)), y)
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    for (k, p), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=k)


def test_cnn_matches_torch(torch, rng):
    model, tmodel = cnn(), torch_cnn(torch)
    copy_to_torch(torch, model, tmodel)
    x = rng.standard_normal((3, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 5, size=3)
    xm = mg.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    out, tout = model(xm), tmodel(xt)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    F.cross_entropy(out, y).backward()
    torch.nn.functional.cross_entropy(tout, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    for (k, p), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=k)


def test_cnn_gradcheck_in_float64(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8, 3)).double()
    x = mg.tensor(rng.standard_normal((2, 1, 4, 4)), requires_grad=True)
    y = np.array([0, 2])
    assert mg.gradcheck(lambda x: F.cross_entropy(model(x), y), [x])


def test_a_small_model_learns():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)  # XOR-like: needs the hidden layer
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    params = list(model.parameters())
    first = None
    for _ in range(300):
        model.zero_grad()
        loss = F.cross_entropy(model(mg.tensor(x)), y)
        loss.backward()
        with mg.no_grad():
            for p in params:
                p.data -= 0.5 * p.grad.numpy()
        first = loss.item() if first is None else first
    assert loss.item() < 0.25 * first
    acc = (model(mg.tensor(x)).numpy().argmax(1) == y).mean()
    assert acc > 0.9


def test_small_layers_match_torch(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    for ours, theirs in [(nn.Flatten(), torch.nn.Flatten()),
                         (nn.Flatten(0, 2), torch.nn.Flatten(0, 2)),
                         (nn.Flatten(2), torch.nn.Flatten(2)),
                         (nn.MaxPool2d(2, 1, 1), torch.nn.MaxPool2d(2, 1, 1)),
                         (nn.AvgPool2d((2, 3), (1, 2)), torch.nn.AvgPool2d((2, 3), (1, 2))),
                         (nn.Identity(), torch.nn.Identity())]:
        np.testing.assert_allclose(ours(mg.tensor(x)).numpy(),
                                   theirs(torch.from_numpy(x)).numpy(), rtol=1e-12,
                                   err_msg=repr(ours))
    assert repr(nn.MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), " \
                                          "padding=(1, 1))"


def test_apply_requires_grad_and_buffers():
    net = Net()
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Linear", "Tanh", "Linear", "ReLU", "Sequential", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    assert [tuple(b.shape) for b in net.buffers()] == [(1,), (2,)]
    net.double()
    assert all(b.dtype == np.float64 for b in net.buffers())
    sd = net.state_dict(keep_vars=True)
    assert sd["fc1.weight"] is net.fc1.weight


def test_forward_receives_keyword_arguments():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    np.testing.assert_array_equal(Scale()(mg.ones(2), factor=3.0).numpy(), [3.0, 3.0])
    with pytest.raises(NotImplementedError, match="must define forward"):
        nn.Module()(mg.ones(1))


def test_deepcopy_makes_an_independent_model():
    import copy

    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    model(mg.randn(1, 2))
    clone = copy.deepcopy(model)
    clone[0].weight.data[...] = 0
    assert model[0].weight.numpy().any()
    assert isinstance(clone[0].weight, nn.Parameter) and clone[0].weight.requires_grad
    assert [r.module.path for r in mg.tape(clone(mg.randn(1, 2)))] == ["0", "1"]
    assert mg.tape(copy.deepcopy(model[0])(mg.randn(1, 2)))[0].module.path == ""
