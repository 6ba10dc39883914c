"""The three losses against torch's own functions, batched evaluation against one batch, check_outputs, the CNN and user models."""
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import config
from data import make_dataset
from filter_norm import normalize_direction
from models import FlatModel, build_model, check_outputs, load_user_model


def _data(n=40, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return X, torch.randint(0, classes, (n,), generator=g), torch.randn(n, generator=g)


# ---------------------------------------------------------------- losses against torch

@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_ce_and_accuracy_equal_torch_on_the_module_itself(kind):
    X, labels, _ = _data()
    module = build_model(kind, 5, hidden_dim=6, seed=1, n_classes=3, loss="ce")
    fm = FlatModel(module, loss="ce")
    logits = module(X)  # (n, 3)
    assert logits.shape == (40, 3)
    assert torch.allclose(fm.loss(fm.theta0, X, labels), F.cross_entropy(logits, labels), rtol=1e-6)
    expected = (logits.argmax(1) == labels).float().mean()
    assert fm.accuracy(fm.theta0, X, labels) == expected


def test_mse_and_r2_equal_torch_and_the_closed_form():
    X, _, target = _data()
    module = build_model("mlp", 5, hidden_dim=6, seed=2, loss="mse")
    fm = FlatModel(module, loss="mse")
    out = module(X)  # (n,)
    assert torch.allclose(fm.loss(fm.theta0, X, target), F.mse_loss(out, target), rtol=1e-6)
    r2 = 1 - ((out - target) ** 2).sum() / ((target - target.mean()) ** 2).sum()
    assert torch.allclose(fm.accuracy(fm.theta0, X, target), r2, rtol=1e-5)


# ---------------------------------------------------------------- batched evaluation

@pytest.mark.parametrize("loss", ["bce", "ce", "mse"])
def test_batched_evaluation_equals_one_batch_with_its_gradient(loss):
    X, labels, target = _data(n=53)
    X, labels, target = X.double(), labels, target.double()
    y = {"bce": (labels > 0).double(), "ce": labels, "mse": target}[loss]
    module = build_model("mlp", 5, hidden_dim=7, seed=3, n_classes=3, loss=loss).double()
    whole, batched = FlatModel(module, loss=loss), FlatModel(module, loss=loss, eval_batch_size=10)
    theta = whole.theta0 + 0.1
    assert len(batched.sample_batches(53)) == 6  # 5 full batches and a last one of 3
    assert torch.allclose(batched.loss(theta, X, y), whole.loss(theta, X, y), rtol=1e-12)
    assert torch.allclose(batched.accuracy(theta, X, y), whole.accuracy(theta, X, y), rtol=1e-12)
    reference = torch.func.grad(whole.loss)(theta, X, y)
    assert torch.allclose(torch.func.grad(batched.loss)(theta, X, y), reference, rtol=1e-10)
    assert torch.allclose(batched.grad(theta, X, y), reference, rtol=1e-10)
    t = theta.clone().requires_grad_(True)
    batched.loss(t, X, y).backward()  # plain autograd: the checkpointed path
    assert torch.allclose(t.grad, reference, rtol=1e-10)
    v = torch.randn(whole.dim, generator=torch.Generator().manual_seed(1), dtype=X.dtype)
    hvp = torch.func.jvp(lambda p: torch.func.grad(whole.loss)(p, X, y), (theta,), (v,))[1]
    g, = torch.autograd.grad(batched.loss(t, X, y), t, create_graph=True)  # double backward through it
    assert torch.allclose(torch.autograd.grad(g @ v, t)[0], hvp, rtol=1e-9, atol=1e-12)
    assert torch.allclose(torch.func.jvp(lambda p: torch.func.grad(batched.loss)(p, X, y), (theta,), (v,))[1], hvp,
                          rtol=1e-9, atol=1e-12)
    thetas = theta + 0.05 * torch.randn(4, whole.dim, generator=torch.Generator().manual_seed(0), dtype=X.dtype)
    assert torch.allclose(batched.losses(thetas, X, y, chunk=3), whole.losses(thetas, X, y), rtol=1e-12)
    assert torch.allclose(batched.accuracies(thetas, X, y), whole.accuracies(thetas, X, y), rtol=1e-12)


# ---------------------------------------------------------------- check_outputs

class _Wrap(nn.Module):
    """A user's module that returns whatever `fn` makes of a linear layer's output (n, k)."""
    def __init__(self, k, fn):
        super().__init__()
        self.linear, self.fn = nn.Linear(4, k), fn

    def forward(self, x):
        return self.fn(self.linear(x))


@pytest.mark.parametrize("loss, k, fn, labels, message", [
    ("bce", 1, lambda z: z, "binary", r"shape \(n, 1\): squeeze the last dimension"),
    ("mse", 1, lambda z: z, "float", r"shape \(n, 1\): squeeze the last dimension"),
    ("bce", 3, lambda z: z, "binary", r"expected outputs \(n,\) for loss bce, got \(n, 3\): use loss ce"),
    ("ce", 2, lambda z: z, "three", r"expected logits \(n, 3\) for 3 classes \(loss ce\), got \(n, 2\)"),
    ("ce", 3, lambda z: z, "four", r"labels must be integers in \[0, 3\)"),
    ("bce", 1, lambda z: z.squeeze(-1), "three", r"labels must be integers in \[0, 2\)"),
    ("ce", 3, lambda z: z, "halves", r"labels must be integers in \[0, 3\)"),
    ("mse", 1, lambda z: z.squeeze(-1), "three", "loss mse needs float targets"),
    ("bce", 1, lambda z: z.squeeze(-1) / 0.0, "binary", "not finite"),
    ("bce", 1, lambda z: z.squeeze(-1) @ torch.ones(3), "binary", r"fails on input of shape \(16, 4\): RuntimeError"),
])
def test_check_outputs_names_the_expected_and_received_shapes(loss, k, fn, labels, message):
    X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    y = {"binary": (torch.arange(30) % 2).float(), "float": torch.randn(30), "three": torch.arange(30) % 3,
         "four": torch.arange(30) % 4, "halves": (torch.arange(30) % 3) / 2}[labels]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fm = FlatModel(_Wrap(k, fn), loss=loss)
    n_classes = 3 if labels == "three" and loss == "ce" else None
    with pytest.raises(ValueError, match=message):
        check_outputs(fm, X, y, n_classes=n_classes)


def test_check_outputs_accepts_every_built_in_model_and_catches_a_label_count_mismatch():
    digits = make_dataset("digits")
    for kind in ("logistic", "mlp", "cnn"):
        fm = FlatModel(build_model(kind, 64, 8, n_classes=10, image_shape=(1, 8, 8), loss="ce"), loss="ce")
        check_outputs(fm, digits.X, digits.y, n_classes=10)
        with pytest.raises(ValueError, match=r"expected logits \(n, 12\) for 12 classes"):
            check_outputs(fm, digits.X, digits.y, n_classes=12)


# ---------------------------------------------------------------- CNN

def test_cnn_on_digits_is_small_and_its_filters_are_the_output_channels():
    fm = FlatModel(build_model("cnn", 64, n_classes=10, image_shape=(1, 8, 8), loss="ce", seed=0), loss="ce")
    assert 1000 < fm.dim < 5000
    assert fm.logits(fm.theta0, torch.zeros(3, 64)).shape == (3, 10)
    binary = build_model("cnn", 64, image_shape=(1, 8, 8))
    assert binary(torch.zeros(3, 64)).shape == (3,)
    # filter normalisation: each output channel's kernel (dim 0 of a 4-D weight) gets theta's norm
    d = torch.randn(fm.dim, generator=torch.Generator().manual_seed(1))
    out = normalize_direction(d, fm.theta0, fm.layout, "filter")
    conv = next(s for s in fm.layout if len(s.shape) == 4)
    piece = slice(conv.offset, conv.offset + conv.numel)
    per_channel = lambda v: v[piece].view(conv.shape[0], -1).norm(dim=1)  # noqa: E731
    assert torch.allclose(per_channel(out), per_channel(fm.theta0), rtol=1e-5)
    assert not torch.allclose(per_channel(d), per_channel(fm.theta0), rtol=1e-2)


def test_cnn_needs_image_data():
    with pytest.raises(config.ConfigError, match="needs image data"):
        build_model("cnn", 10)


# ---------------------------------------------------------------- user models

def test_the_example_user_model_loads_seeded_and_fits_every_loss():
    a = load_user_model("examples/my_model.py:build", 5, 3, seed=4)
    b = load_user_model("examples/my_model.py:build", 5, 3, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    X, labels, target = _data()
    check_outputs(FlatModel(a, loss="ce"), X, labels, n_classes=3)
    check_outputs(FlatModel(load_user_model("examples/my_model.py:build", 5, 2, 0), loss="bce"), X,
                  (labels > 0).float())
    check_outputs(FlatModel(load_user_model("examples/my_model.py:build", 5, 0, 0), loss="mse"), X, target)


@pytest.mark.parametrize("source, spec, message", [
    (None, "{dir}/absent.py:build", "does not exist"),
    ("def other(a, b, c):\n    pass", "{file}:build", "has no function 'build'"),
    ("import torch\nraise KeyError('oops')", "{file}:build", "failed to import: KeyError: 'oops'"),
    ("def build(a, b, c):\n    raise RuntimeError('no GPU')", "{file}:build", "raised RuntimeError: no GPU"),
    ("def build(a, b, c):\n    return 3", "{file}:build", "returned a int, not a torch.nn.Module"),
    ("from torch import nn\ndef build(a, b, c):\n    return nn.ReLU()", "{file}:build", "no parameters"),
    ("x = 1", "{file}", "not of the form path/to/file.py:function"),
    ("def build(a, b, c)\n    pass", "{file}:build", "failed to import: SyntaxError"),
    ("import sys\nsys.exit(3)", "{file}:build", "failed to import: SystemExit: 3"),
    ("def build(a, b, c):\n    raise ValueError('two\\nlines')", "{file}:build", "raised ValueError: two lines"),
])
def test_user_model_problems_are_one_config_error_naming_the_file(tmp_path, source, spec, message):
    file = tmp_path / "models.py"  # the project's own module name: must not clash with it
    if source is not None:
        file.write_text(textwrap.dedent(source))
    with pytest.raises(config.ConfigError, match=message) as info:
        load_user_model(spec.format(dir=tmp_path, file=file), 4, 2, 0)
    assert "\n" not in str(info.value)
    import models
    assert hasattr(models, "FlatModel")  # the project's models module was not replaced


@pytest.mark.parametrize("kind, shape", [("bce", (7, 50)), ("ce", (7, 50, 4)), ("mse", (7, 50))])
def test_summed_loss_and_metric_equal_the_per_sample_definitions(kind, shape):
    from models import loss_terms, metric_sum, summed_loss_and_metric
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    y = {"bce": torch.randint(0, 2, (50,), generator=g).double(), "ce": torch.randint(0, 4, (50,), generator=g),
         "mse": torch.randn(50, generator=g, dtype=torch.float64)}[kind]
    loss, metric = summed_loss_and_metric(kind, logits, y)
    assert torch.allclose(loss, loss_terms(kind, logits, y).sum(dim=-1), rtol=1e-12)
    assert torch.allclose(metric, metric_sum(kind, logits, y).double(), rtol=1e-12)


@pytest.mark.parametrize("eval_batch_size", [None, 7])
def test_loss_and_accuracy_in_one_pass_equal_the_separate_ones(eval_batch_size):
    from data import make_dataset
    data = make_dataset("classification", n_samples=40, n_features=4, noise=0.05, seed=0, n_classes=3)
    fm = FlatModel(build_model("mlp", 4, 6, seed=1, n_classes=3, loss="ce"), loss="ce",
                   eval_batch_size=eval_batch_size)
    theta = fm.theta0 + 0.3
    loss, accuracy = fm.loss_and_accuracy(theta, data.X, data.y)
    assert torch.equal(loss, fm.loss(theta, data.X, data.y))
    assert torch.equal(accuracy, fm.accuracy(theta, data.X, data.y))


@pytest.mark.parametrize("C", [2, 3, 10])
@pytest.mark.parametrize("nan", [False, True])
def test_ce_sums_on_points_last_storage_equal_the_contiguous_ones(C, nan):
    """The tiles' (n, C, K) storage seen as (K, n, C) goes by class slices: the same loss sums and
    correct counts as the reductions on a contiguous copy, with ties (the first class wins), ±inf and NaN."""
    from models import summed_loss_and_metric
    g = torch.Generator().manual_seed(C)
    K, n = 9, 40
    storage = 3 * torch.randn(n, C, K, generator=g, dtype=torch.float64)
    storage[:10] = storage[:10].round()  # many ties among classes
    storage[:2] = 1.0  # every class ties: argmax says class 0, the label of both
    storage[10, 1, 0], storage[11, :, 1] = float("inf"), -float("inf")
    if nan:
        storage[12, 0, 2] = storage[13, 1, 3] = storage[13, C - 1, 3] = float("nan")  # argmax: the first NaN
    y = torch.randint(0, C, (n,), generator=g)
    y[:2] = 0
    view = storage.permute(2, 0, 1)  # (K, n, C), class axis strided
    assert view.stride(-1) != 1
    loss, right = summed_loss_and_metric("ce", view, y)
    expected_loss, expected_right = summed_loss_and_metric("ce", view.contiguous(), y)
    assert torch.allclose(loss, expected_loss, rtol=1e-12, equal_nan=True)
    assert torch.equal(right, expected_right)
    bad = 4 if nan else 2  # the rows k holding ±inf (and NaN)
    assert not loss[:bad].isfinite().any() and loss[bad:].isfinite().all()
