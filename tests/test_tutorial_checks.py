"""The tutorials' exercise checks (tutorials/checks.py) must fail on wrong answers.

Each test feeds a check a typical mistake and asserts that it raises `CheckFailed` with a
message that says what is wrong; where the reference solution is cheap to run, the same
check must pass on it. (The notebooks run every reference solution against its check.)
"""

from __future__ import annotations

import copy
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import TensorDataset

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
sys.path.insert(0, str(TUTORIALS))
checks = importlib.import_module("checks")
sol = {name: importlib.import_module(f"solutions.{name}")
       for name in ("nb00", "nb01", "nb02", "nb03", "nb04", "nb04b", "nb05", "nb06", "nb07",
                    "nb08", "nb09", "nb10", "nb11", "nb13", "nb14")}
CheckFailed = checks.CheckFailed


def fails(match: str):
    return pytest.raises(CheckFailed, match=match)


# ----------------------------------------------------------------------------- 00
# The reference engine's ops build new nodes with the module's own classes, so a mistake is
# introduced by patching a method of those classes for the duration of one test.


def test_engine_scalar_catches_a_wrong_vjp_and_stale_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    V = sol["nb00"].Value
    checks.engine_scalar(V)

    def bad_mul(self, other):  # forgets the other factor in the VJP
        other = other if isinstance(other, V) else V(other)
        return V(self.data * other.data, (self, other), lambda g: (g, g), "mul")

    with monkeypatch.context() as m:
        m.setattr(V, "__mul__", bad_mul)
        with fails("grad"):
            checks.engine_scalar(V)

    def no_reset(self):  # never zeroes the gradients: a second backward accumulates
        order = sol["nb00"].topological_order(self)
        self.grad = 1.0
        for node in reversed(order):
            if node.vjp is not None:
                for parent, g in zip(node.parents, node.vjp(node.grad)):
                    parent.grad += g

    with monkeypatch.context() as m:
        m.setattr(V, "backward", no_reset)
        with fails("start every node"):
            checks.engine_scalar(V)


def test_engine_exercises_fail_without_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    V = sol["nb00"].Value
    with fails("should be a function"):
        checks.ex00_sigmoid(V)  # no sigmoid method yet

    def wrong_sigmoid(self):  # the derivative of tanh instead
        y = 1 / (1 + np.exp(-self.data))
        return V(y, (self,), lambda g: (g * (1 - y * y),), "sigmoid")

    with monkeypatch.context() as m:
        m.setattr(V, "sigmoid", wrong_sigmoid, raising=False)
        with fails("gradient through sigmoid"):
            checks.ex00_sigmoid(V)
        m.setattr(V, "sigmoid", sol["nb00"].sigmoid, raising=False)
        checks.ex00_sigmoid(V)
    with fails("recursion limit"):
        checks.ex00_long_chain(V)  # the notebook's recursive order
    with monkeypatch.context() as m:
        m.setattr(sol["nb00"], "topological_order", sol["nb00"].topological_order_iterative)
        checks.ex00_long_chain(V)
    A = sol["nb00"].Array
    with fails("should be a function"):
        checks.ex00_mean(A)
    with monkeypatch.context() as m:
        m.setattr(A, "mean", sol["nb00"].mean, raising=False)
        checks.ex00_mean(A)

    def mean_with_sum_vjp(self, axis=None):  # forgets to divide the gradient by n
        out = sol["nb00"].mean(self, axis)
        shape = self.data.shape
        out.vjp = lambda g: (np.broadcast_to(np.expand_dims(g, axis) if axis is not None else g,
                                             shape).copy(),)
        return out

    with monkeypatch.context() as m:
        m.setattr(A, "mean", mean_with_sum_vjp, raising=False)
        with fails("a.grad through mean"):
            checks.ex00_mean(A)


def test_array_engine_and_unbroadcast_catch_missing_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    A = sol["nb00"].Array
    checks.engine_array(A)
    checks.unbroadcast_fn(sol["nb00"].unbroadcast)
    with fails("has shape"):
        checks.unbroadcast_fn(lambda g, shape: g)

    def add_without_unbroadcast(self, other):
        other = other if isinstance(other, A) else A(other)
        return A(self.data + other.data, (self, other), lambda g: (g, g), "add")

    with monkeypatch.context() as m:
        m.setattr(A, "__add__", add_without_unbroadcast)
        with fails("shape"):
            checks.engine_array(A)


# ----------------------------------------------------------------------------- 01-04
def test_ex01_checks() -> None:
    s = sol["nb01"]
    checks.ex01_predict_tape(s.predicted_ops, s.dz_da, s.dz_db)
    with fails("tape records"):
        checks.ex01_predict_tape(["mul", "exp", "add", "sum"], s.dz_da, s.dz_db)
    with fails("dz_db"):
        checks.ex01_predict_tape(s.predicted_ops, s.dz_da, lambda a, b: np.exp(a * b + b) * a)
    checks.ex01_accumulation(s.grad_after_three, s.fresh_gradient)
    with fails("grad_after_three"):
        checks.ex01_accumulation(np.array([2.0, 4.0]), s.fresh_gradient)

    def keeps_old(c, sc):
        sc.backward(retain_graph=True)
        return c.grad.numpy()

    with fails("already holds a gradient"):
        checks.ex01_accumulation(s.grad_after_three, keeps_old)
    checks.ex01_no_grad(s.records_no_grad, s.edges_no_grad, s.value_saved)
    with fails("records_no_grad"):
        checks.ex01_no_grad(2, 0, s.value_saved)
    with fails("x \\* 2"):
        checks.ex01_no_grad(0, 0, {"x": True, "x * 2": True, "e": False})


def test_ex02_checks() -> None:
    s = sol["nb02"]
    checks.ex02_walk(s.walk)

    def walk_without_the_square(u, k):  # forgets k's share from k * k
        g_u, g_k = s.walk(u, k)
        return g_u, g_k - 2 * k

    with fails("dL/dk"):
        checks.ex02_walk(walk_without_the_square)
    checks.ex02_swish(s.Swish)

    class ForgotGy(mg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x / (1 + np.exp(-x))

        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_tensors
            sg = mg.sigmoid(x)
            return sg * (1 + x * (1 - sg))

    with fails("gradcheck fails"):
        checks.ex02_swish(ForgotGy)

    class NumpyBackward(s.Swish):
        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_tensors
            sg = 1 / (1 + np.exp(-x.numpy()))
            return gy * mg.tensor(sg * (1 + x.numpy() * (1 - sg)), dtype=x.dtype)

    with fails("gradgradcheck fails"):
        checks.ex02_swish(NumpyBackward)
    checks.ex02_softmax_jacobian(s.softmax_jacobian, s.closed_form)
    with fails("closed_form"):
        checks.ex02_softmax_jacobian(s.softmax_jacobian, lambda p: np.diag(p) - np.outer(p, p).T
                                     - np.eye(len(p)) * 0.1)
    with fails("softmax_jacobian"):
        checks.ex02_softmax_jacobian(lambda z: s.softmax_jacobian(z).T * 2, s.closed_form)


def test_ex03_checks() -> None:
    s = sol["nb03"]
    checks.ex03_unbroadcast(s.unbroadcast)
    with fails("unbroadcast"):  # sums the prepended axes only
        checks.ex03_unbroadcast(lambda g, shape: g.sum(axis=tuple(range(g.ndim - len(shape)))))
    checks.ex03_lse(s.lse)
    with fails("lse"):
        checks.ex03_lse(lambda z, detach: z.max(axis=1, keepdims=True))
    checks.ex03_bag_of_words(s.bag_grad, s.zero_rows, s.busiest_row)
    with fails("zero_rows"):
        checks.ex03_bag_of_words(s.bag_grad, [3], s.busiest_row)

    def assigns(idx, w, rows):  # g[idx] = ... keeps only the last occurrence
        g = np.zeros((rows, w.shape[1]))
        g[idx] = np.repeat(w[:, None, :], idx.shape[1], axis=1)
        return g

    with fails("bag_grad"):
        checks.ex03_bag_of_words(assigns, s.zero_rows, s.busiest_row)


def test_ex04_checks() -> None:
    s = sol["nb04"]
    checks.ex04_third_derivative(s.third, s.closed_form)
    with fails("closed_form"):
        checks.ex04_third_derivative(s.third, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2))
    checks.ex04_saved_values(s.saved_values)
    with fails("missing"):
        checks.ex04_saved_values({"a", "v"})
    checks.ex04_folded(s.deep_model, s.folded_boxes)
    with fails("folded_boxes"):
        checks.ex04_folded(s.deep_model, {"Linear": 7, 1: 7})
    with fails("layers"):
        checks.ex04_folded(lambda: nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)),
                           s.folded_boxes)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning",
                            "ignore:divide by zero encountered:RuntimeWarning")
def test_ex04b_checks() -> None:
    s = sol["nb04b"]
    checks.ex04b_momentum(s.MomentumSGD)
    checks.ex04b_weight_decay(s.DecaySGD)
    checks.ex04b_cross_entropy(s.cross_entropy)

    class AveragingMomentum(s.MomentumSGD):  # a running average, not a weighted sum
        def step(self):
            with mg.no_grad():
                for i, p in enumerate(self.params):
                    g = p.grad.numpy()
                    v = g if self.buffers[i] is None else (self.momentum * self.buffers[i]
                                                           + (1 - self.momentum) * g)
                    self.buffers[i] = v
                    p -= mg.tensor(self.lr * v)

    with fails("losses|parameter"):
        checks.ex04b_momentum(AveragingMomentum)

    class DecayAfterStep(s.DecaySGD):  # decays the weights but forgets the learning rate
        def step(self):
            with mg.no_grad():
                for p in self.params:
                    p -= self.lr * p.grad + self.weight_decay * p

    with fails("losses|parameter"):
        checks.ex04b_weight_decay(DecayAfterStep)

    def naive(logits, labels):  # no max trick: overflows for large logits
        p = logits.exp() / logits.exp().sum(axis=1, keepdims=True)
        return -(p[mg.arange(logits.shape[0]), labels].log()).mean()

    with fails("scale 50|NaN"):
        checks.ex04b_cross_entropy(naive)


# ----------------------------------------------------------------------------- 05-06
def _tiny_classification(n: int = 60):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    y = np.arange(n) % 10
    return TensorDataset(x, y)


def test_ex05_checks() -> None:
    data = _tiny_classification()
    mg.manual_seed(0)
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    with fails("Linear layers"):
        checks.ex05_deeper(wrong, data)
    mg.manual_seed(0)
    right_shape = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                                nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    with fails("was it trained"):
        checks.ex05_deeper(right_shape, data, at_least=0.9)
    sgd = mg.optim.SGD(wrong.parameters(), lr=0.1)
    with fails("expected mg.optim.Adam"):
        checks.ex05_adam(sgd, [1.0] * 60)
    adam = mg.optim.Adam(wrong.parameters())
    with fails("did not go down"):
        checks.ex05_adam(adam, [2.3] * 60)
    s = sol["nb05"]
    data.labels = data.tensors[1] if hasattr(data, "tensors") else np.arange(60) % 10
    conf = s.confusion_matrix(wrong, data)
    checks.ex05_confusion(s.confusion_matrix, s.most_confused(conf), wrong, data)
    if not np.array_equal(conf, conf.T):
        with fails("swapped"):
            checks.ex05_confusion(lambda m, d: s.confusion_matrix(m, d).T, s.most_confused(conf),
                                  wrong, data)
    pair = s.most_confused(conf)
    other = next((a, b) for a in range(10) for b in range(a + 1, 10)
                 if {a, b} != set(pair))
    with fails("most_confused"):
        checks.ex05_confusion(s.confusion_matrix, other, wrong, data)


def _sigmoid_net(scale: float = 1.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 12
    for _ in range(3):
        lin = nn.Linear(fan_in, 6)
        nn.init.normal_(lin.weight, 0.0, scale / fan_in ** 0.5)
        layers += [lin, nn.Sigmoid()]
        fan_in = 6
    return nn.Sequential(*layers, nn.Linear(6, 3))


def test_ex06_checks() -> None:
    with fails("3 fractions"):
        checks.ex06_bigger_weights(lambda scale: [0.0, 0.0])
    with fails("weight_scale 4.0"):
        checks.ex06_bigger_weights(lambda scale: [0.0, 0.0, 0.0])
    checks.ex06_bigger_weights(lambda scale: [0.0, 0.0, 0.0] if scale == 1 else [0.1, 0.2, 0.3])
    mg.manual_seed(0)
    initial = _sigmoid_net()
    trained = copy.deepcopy(initial)
    with mg.no_grad():
        for p in trained.parameters():
            p += 0.5
    probe = mg.randn(5, 12)
    with mg.no_grad():
        right = trained[5](initial[:5](probe)).numpy()
        wrong = trained[:6](probe).numpy()
    checks.ex06_whose_fault(right, initial, trained, probe)
    with fails("z_mixed"):
        checks.ex06_whose_fault(wrong, initial, trained, probe)
    with fails("trained first-layer weights"):
        checks.ex06_whose_fault(right, trained, trained, probe)
    with fails("the layers are"):
        checks.ex06_add_bn(_sigmoid_net, np.zeros((3, 3)))
    checks.ex06_add_bn(sol["nb06"].sigmoid_mlp_bn, np.zeros((3, 3)))
    with fails("records, 3"):
        checks.ex06_add_bn(sol["nb06"].sigmoid_mlp_bn, np.zeros(3))


# ----------------------------------------------------------------------------- 07-08
def test_ex07_checks() -> None:
    s = sol["nb07"]
    x = mg.randn(8, 3, requires_grad=True)
    checks.ex07_cannot_move(mg.zeros((8, 3)), x)
    with fails("zero up to rounding"):
        checks.ex07_cannot_move(mg.ones((8, 3)), x)
    checks.ex07_eval(s.batch_norm_eval)

    def recorded_stats(x, rm, rv, gamma, beta, eps=1e-5):  # statistics from the batch
        mu = x.mean(axis=0)
        return (x - mu) / ((x - mu) ** 2).mean(axis=0).sqrt() * gamma + beta

    with fails("batch_norm_eval"):
        checks.ex07_eval(recorded_stats)
    checks.ex07_images(s.batch_norm_composed_nd)

    def over_batch_only(x, gamma, beta, eps=1e-5):  # forgets the pixels
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        mu = x.mean(axis=0, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=0, keepdims=True)
        return (x - mu) / (var + eps).sqrt() * gamma.reshape(shape) + beta.reshape(shape)

    with fails("shape \\(4, 3, 5, 5\\)"):
        checks.ex07_images(over_batch_only)


def test_ex08_checks() -> None:
    s = sol["nb08"]
    checks.ex08_eval_function(s.bn_eval)
    with fails("records"):
        checks.ex08_eval_function(lambda x, g, b, rm, rv: (x - rm) / (rv + 1e-5).sqrt() * g + b)
    impls = {"a": None, "b": None}
    checks.ex08_small_batches({"a": 1e-4, "b": 2e-4}, impls)
    with fails("one entry per implementation"):
        checks.ex08_small_batches({"a": 1e-4}, impls)
    with fails("positive number"):
        checks.ex08_small_batches({"a": 1e-4, "b": -1.0}, impls)

    class Fused(mg.Function):  # the notebook's BatchNormFused
        @staticmethod
        def forward(ctx, x, gamma, beta, eps=1e-5):
            ctx.eps = eps
            ctx.save_for_backward(x, gamma)
            mu = x.mean(axis=0)
            inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
            return (x - mu) * (inv_std * gamma) + beta

        @staticmethod
        def backward(ctx, dy):
            x, gamma = ctx.saved_tensors
            m = x.shape[0]
            mu = x.mean(axis=0)
            inv_std = 1 / (((x - mu) ** 2).mean(axis=0) + ctx.eps).sqrt()
            x_hat = (x - mu) * inv_std
            dbeta = dy.sum(axis=0)
            dgamma = (dy * x_hat).sum(axis=0)
            return (gamma * inv_std) * (dy - dbeta / m - x_hat * (dgamma / m)), dgamma, dbeta

    buggy = s.buggy(Fused)
    checks.ex08_spot_the_bug(buggy, s.gradcheck_passes, s.gradgradcheck_passes)
    with fails("you predicted gradgradcheck passes"):
        checks.ex08_spot_the_bug(buggy, True, True)
    with fails("does not contain the bug"):
        checks.ex08_spot_the_bug(Fused.apply, True, False)


# ----------------------------------------------------------------------------- 09-11
def _bn_net(bias: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6, bias=bias), nn.BatchNorm1d(6),
                         nn.Sigmoid(), nn.Linear(6, 3))


def test_ex09_checks() -> None:
    checks.ex09_redundant_bias(1e-7, _bn_net(bias=False), 0.8, 0.8)
    with fails("almost\\) 0"):
        checks.ex09_redundant_bias(0.3, _bn_net(bias=False), 0.8, 0.8)
    with fails("bias=False"):
        checks.ex09_redundant_bias(1e-7, _bn_net(bias=True), 0.8, 0.8)
    with fails("more than a point"):
        checks.ex09_redundant_bias(1e-7, _bn_net(bias=False), 0.8, 0.7)
    net = _bn_net()
    with fails("momentum=None"):
        checks.ex09_cumulative(net, 0.7, 0.8)
    net[2].momentum = None
    checks.ex09_cumulative(net, 0.7, 0.8)
    with fails("recompute_bn_stats"):
        checks.ex09_cumulative(net, 0.7, 0.7)
    mg.manual_seed(0)
    net_a = _bn_net()
    net_b = copy.deepcopy(net_a)
    with mg.no_grad():
        net_b[1].weight *= 10
    probe = mg.randn(8, 12)
    for n in (net_a, net_b):
        n[2].eps = 0.0
    checks.ex09_scale_and_lr(net_a, net_b, probe)
    with mg.no_grad():
        net_b[1].weight += 0.5  # as if W_b had taken a step 100 times too large
    with fails("W_b / 10 differs"):
        checks.ex09_scale_and_lr(net_a, net_b, probe)


def test_ex10_checks() -> None:
    s = sol["nb10"]
    checks.ex10_im2col(s.im2col_general)
    with fails("stride 2, padding 1"):
        checks.ex10_im2col(lambda x, kh, kw, stride=1, padding=0: s.im2col_general(x, kh, kw))
    checks.ex10_filter_grad(s.filter_grad)
    with fails("filter_grad"):
        checks.ex10_filter_grad(lambda x, w, g: s.filter_grad(x, w, g)[:, :, ::-1, ::-1])
    checks.ex10_without_bn(s.make_cnn)
    with fails("bias=True"):
        checks.ex10_without_bn(lambda bn: s.make_cnn(True))


def test_ex11_checks() -> None:
    checks.ex11_time_parts((1e-5, 0.01, 0.02))
    with fails("three numbers"):
        checks.ex11_time_parts((0.01, 0.02))
    with fails("zero time"):
        checks.ex11_time_parts((0.0, 0.0, 0.01))
    checks.ex11_throughput({16: 100.0, 64: 200.0, 256: 300.0, 1024: 300.0})
    with fails("batch sizes"):
        checks.ex11_throughput({16: 100.0, 64: 200.0})
    checks.ex11_watch(sol["nb11"].train_watching)

    def every_step(model, opt, batches, every=100):  # reads the loss at every step
        step = 0
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if not np.isfinite(loss.item()) or loss.item() > 10:
                return step, True
        return step, False

    with fails("multiple of every"):
        checks.ex11_watch(every_step)
    with fails("diverged is False"):
        checks.ex11_watch(lambda model, opt, batches, every=100: (40, False))


# ----------------------------------------------------------------------------- 13
def test_ex13_checks() -> None:
    s = sol["nb13"]
    checks.ex13_hypot(s.Hypot)

    class HypotTwoTangents(s.Hypot):  # returns one tangent per input, as a VJP would
        @staticmethod
        def jvp(ctx, ta, tb):
            a, b = ctx.primals
            return ta * a / ctx.outputs, tb * b / ctx.outputs

    with fails("one tangent"):
        checks.ex13_hypot(HypotTwoTangents)

    class HypotDropsB(s.Hypot):  # forgets b's contribution to the output's tangent
        @staticmethod
        def jvp(ctx, ta, tb):
            a, _ = ctx.primals
            return a * ta / ctx.outputs

    with fails("both inputs carry tangents"):
        checks.ex13_hypot(HypotDropsB)

    class HypotBadVJP(s.Hypot):  # the VJP forgets the division by z
        @staticmethod
        def backward(ctx, g):
            a, b, _ = ctx.saved_tensors
            return g * a, g * b

    with fails("VJP"):
        checks.ex13_hypot(HypotBadVJP)

    checks.ex13_jacobian_by_jvp(s.jacobian_by_jvp)
    with fails("one JVP gives a column"):
        checks.ex13_jacobian_by_jvp(lambda fn, x: s.jacobian_by_jvp(fn, x).T)
    with fails("called mg.jacobian"):
        checks.ex13_jacobian_by_jvp(lambda fn, x: mg.jacobian(fn, x).numpy())

    checks.ex13_newton_direction(s.newton_direction)
    with fails("downhill"):
        checks.ex13_newton_direction(lambda f, x: -s.newton_direction(f, x))

    def gradient_step(f, x):
        xr = mg.tensor(x.numpy(), requires_grad=True)
        (g,) = mg.grad(f(xr), xr)
        return -g.numpy()

    with fails("gradient step"):
        checks.ex13_newton_direction(gradient_step)

    def exact(f, x):
        xr = mg.tensor(x.numpy(), requires_grad=True)
        (g,) = mg.grad(f(xr), xr)
        return np.linalg.solve(mg.hessian(f, x).numpy(), -g.numpy())

    with fails("formed the Hessian"):
        checks.ex13_newton_direction(exact)

    def few_cg_steps(f, x):  # stops CG after two products: not yet the Newton step
        x = mg.tensor(x.numpy())
        (g,) = s.mg.vjp(f, x)[1](mg.tensor(1.0, dtype=mg.float64))
        return s.conjugate_gradient(
            lambda v: mg.hvp(f, (x,), (mg.tensor(v),))[1][0].numpy(), -g.numpy(), max_iter=2)

    with fails("newton_direction"):
        checks.ex13_newton_direction(few_cg_steps)


# ----------------------------------------------------------------------------- 14
def test_ex14_checks() -> None:
    s = sol["nb14"]
    checks.ex14_clip_hook(s.clip_norm_hook)

    def elementwise(max_norm):  # clips each element: changes the gradient's direction
        return lambda g: g.clip(-max_norm, max_norm)

    with fails("each element"):
        checks.ex14_clip_hook(elementwise)

    def always_rescale(max_norm):  # also scales small gradients up to max_norm
        return lambda g: g * (max_norm / float(np.linalg.norm(g.numpy())))

    with fails("norm 1000"):
        checks.ex14_clip_hook(always_rescale)

    checks.ex14_grad_norms(s.sigmoid_output_grad_norms)

    def appending(model, x, y):  # appends in the order backward calls the hooks
        norms = []

        def forward_hook(module, inputs, output):
            output.register_hook(lambda g: norms.append(float(np.linalg.norm(g.numpy()))))

        handles = [m.register_forward_hook(forward_hook) for m in model.modules()
                   if isinstance(m, nn.Sigmoid)]
        F.cross_entropy(model(x), y).backward()
        for h in handles:
            h.remove()
        return norms

    with fails("reverse order"):
        checks.ex14_grad_norms(appending)

    def inputs_not_outputs(model, x, y):  # the gradient of each Sigmoid's input instead
        norms = []

        def forward_pre_hook(module, inputs):
            i = len(norms)
            norms.append(0.0)

            def store(g):
                norms[i] = float(np.linalg.norm(g.numpy()))
            inputs[0].register_hook(store)

        handles = [m.register_forward_pre_hook(forward_pre_hook) for m in model.modules()
                   if isinstance(m, nn.Sigmoid)]
        F.cross_entropy(model(x), y).backward()
        for h in handles:
            h.remove()
        return norms

    with fails("gradient norms"):
        checks.ex14_grad_norms(inputs_not_outputs)

    checks.ex14_segments(s.run_in_segments)
    with fails("'checkpoint' records"):
        checks.ex14_segments(lambda model, x, segments: model(x))

    def floor_division(model, x, segments):  # drops the last layers when segments does not divide
        size = len(model) // segments
        for k in range(segments):
            x = mg.checkpoint(model[k * size:(k + 1) * size], x)
        return x

    with fails("the output with segments=5"):
        checks.ex14_segments(floor_division)
