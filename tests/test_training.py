"""Training with buffers (BatchNorm) and dropout against a plain torch loop, checks before training, gradient norms."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data import make_dataset
from models import FlatModel, build_model
from training import OptimizerSpec, full_batch_grad_norm, train


def _bn_mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(dropout), nn.Linear(6, 1), nn.Flatten(0)]
    return nn.Sequential(*layers)


def _plain_loop(module, X, y, epochs, batch_size, seed, lr):
    """The textbook loop: module.train(), torch.optim on its parameters, the same batch order."""
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(X.shape[0], generator=generator)
        for start in range(0, X.shape[0], batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(module(X[idx]), y[idx]).backward()
            optimizer.step()
    return module


def test_batchnorm_mlp_trains_like_a_plain_loop_and_evaluates_with_its_buffers(tiny_data):
    X, y = tiny_data.X, tiny_data.y
    module = _bn_mlp()
    fm = FlatModel(module)
    start_buffers = {k: b.clone() for k, b in module.named_buffers()}
    run = train(fm, X, y, OptimizerSpec("m", "sgd", 0.1, 0.9), 4, batch_size=16, seed=3)
    reference = _plain_loop(module, X, y, 4, 16, seed=3, lr=0.1)
    flat = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    assert torch.allclose(run.final, flat, atol=1e-6)
    final = run.buffers[-1]
    for name, b in reference.named_buffers():
        assert torch.allclose(final[name], b, atol=1e-6) if b.is_floating_point() else torch.equal(final[name], b)
    assert int(final["1.num_batches_tracked"]) == 4 * 4 and len(run.buffers) == len(run)
    # eval mode with the final buffers: the module's own eval-mode loss
    expected = F.binary_cross_entropy_with_logits(reference.eval()(X), y)
    assert torch.allclose(fm.with_buffers(final).loss(run.final, X, y), expected, rtol=1e-5)
    assert torch.allclose(run.losses[-1], expected, rtol=1e-5)
    # the module behind fm, and fm's own buffers, were never touched
    assert all(torch.equal(b, start_buffers[k]) for k, b in fm.module.named_buffers())
    assert all(torch.equal(b, start_buffers[k]) for k, b in fm.buffers.items())
    assert not fm.module.training
    assert not torch.equal(run.buffers[0]["1.running_mean"], final["1.running_mean"])


def test_with_buffers_shares_the_layout_and_rejects_other_names(tiny_data):
    fm = FlatModel(_bn_mlp())
    other = fm.with_buffers({k: b + 1 for k, b in fm.buffers.items()})
    assert other.layout is fm.layout and other.module is fm.module and other.dim == fm.dim
    assert not torch.equal(other.loss(fm.theta0, tiny_data.X, tiny_data.y), fm.loss(fm.theta0, tiny_data.X, tiny_data.y))
    with pytest.raises(ValueError, match="do not match"):
        fm.with_buffers({"running_mean": torch.zeros(6)})


def test_dropout_runs_repeat_bit_identically_and_leave_global_rng_alone(tiny_data):
    models = [FlatModel(_bn_mlp(seed=1, dropout=0.5)) for _ in range(2)]
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    a, b = (train(fm, tiny_data.X, tiny_data.y, OptimizerSpec("d", "adam", 0.01), 3, batch_size=16, seed=5)
            for fm in models)
    assert torch.equal(torch.rand(1), expected)
    assert torch.equal(a.params, b.params) and torch.equal(a.losses, b.losses)
    assert all(torch.equal(p["1.running_var"], q["1.running_var"]) for p, q in zip(a.buffers, b.buffers))


def test_models_without_buffers_record_none(tiny_mlp, tiny_data):
    assert train(tiny_mlp, tiny_data.X, tiny_data.y, OptimizerSpec("gd", "sgd", 0.1), 2).buffers is None


def test_eval_batches_do_not_change_training(tiny_data):
    """Full-batch steps summed over eval batches of 10 follow the one-batch run to float rounding."""
    X, y = tiny_data.X.double(), tiny_data.y.double()
    module = build_model("mlp", 4, 5, seed=0).double()
    spec = OptimizerSpec("gd", "sgd", 0.3)
    whole = train(FlatModel(module), X, y, spec, 5)
    batched = train(FlatModel(module, eval_batch_size=10), X, y, spec, 5)
    assert torch.allclose(batched.params, whole.params, rtol=1e-12, atol=1e-14)
    assert torch.allclose(batched.losses, whole.losses, rtol=1e-12)


def test_train_checks_outputs_before_any_step(tiny_data):
    fm = FlatModel(build_model("mlp", 4, 5, seed=0, n_classes=3, loss="ce"), loss="ce")
    with pytest.raises(ValueError, match=r"expected logits \(n, 2\) for 2 classes"):
        train(fm, tiny_data.X, tiny_data.y.long(), OptimizerSpec("gd"), 1, n_classes=2)


def test_full_batch_grad_norm_equals_the_float64_gradient(tiny_run, tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm64 = FlatModel(tiny_mlp.module.double())
    for theta in (tiny_run.params[0], tiny_run.final):
        expected = torch.func.grad(fm64.loss)(theta.double(), X.double(), y.double()).norm()
        assert full_batch_grad_norm(tiny_mlp, X, y, theta) == pytest.approx(float(expected), rel=1e-5)
    batched = FlatModel(tiny_mlp.module, eval_batch_size=7)
    assert full_batch_grad_norm(batched, X, y, tiny_run.final) == \
        pytest.approx(full_batch_grad_norm(tiny_mlp, X, y, tiny_run.final), rel=1e-5)
    assert full_batch_grad_norm(tiny_mlp, X, y, tiny_run.final) < full_batch_grad_norm(tiny_mlp, X, y, tiny_run.params[0])


def test_cnn_learns_digits_in_a_few_epochs():
    digits = make_dataset("digits")
    X, y = digits.X[:300], digits.y[:300]
    fm = FlatModel(build_model("cnn", 64, n_classes=10, image_shape=digits.image_shape, loss="ce", seed=0), loss="ce")
    run = train(fm, X, y, OptimizerSpec("a", "adam", 0.01), 5, batch_size=32, seed=0, n_classes=10)
    assert run.losses[-1] < 0.5 * run.losses[0] and run.accuracies[-1] > 0.7
