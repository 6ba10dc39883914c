"""Config, data, FlatModel and training: against the module's own forward pass and plain loops."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import config
from data import make_dataset
from models import FlatModel, build_model
from training import OptimizerSpec, train, train_optimizers, train_seeds


# ---------------------------------------------------------------- config

def test_defaults_are_the_owners():
    cfg = config.Config()
    assert (cfg.n_samples, cfg.n_features, cfg.hidden_dim, cfg.epochs, cfg.lr, cfg.vis_resolution) == \
        (1000, 10, 32, 200, 0.5, 50)
    assert cfg.seed_list == tuple(range(10))
    assert cfg.lr_list == (0.1, 0.5, 1.0, 2.0)
    config.validate(cfg)


def test_overrides_are_typed():
    cfg = config.apply_overrides(config.Config(), ["--epochs=7", "--lr=0.5", "--seed_list=3,4",
                                                   "--batch_size=32", "--ignore_bias=true", "--dataset=moons"])
    assert (cfg.epochs, cfg.lr, cfg.seed_list, cfg.batch_size, cfg.ignore_bias, cfg.dataset) == \
        (7, 0.5, (3, 4), 32, True, "moons")
    assert config.apply_overrides(cfg, ["--batch_size=none"]).batch_size is None


@pytest.mark.parametrize("arg, field", [("--epochs=-3", "epochs"), ("--dataset=nope", "dataset"),
                                        ("--lr=abc", "lr"), ("--bogus=1", "bogus"),
                                        ("--vis_resolution=1", "vis_resolution"), ("--momentum=1.5", "momentum"),
                                        ("--lr=inf", "lr"), ("--skip=nothing", "skip")])
def test_bad_values_name_the_field(arg, field):
    with pytest.raises(config.ConfigError, match=field):
        config.apply_overrides(config.Config(), [arg])


def test_help_lists_every_field_with_default_and_comment():
    text = config.help_text()
    for f in dataclasses.fields(config.Config):
        line = next(l for l in text.splitlines() if l.strip().startswith(f"--{f.name}="))
        assert len(line.split(maxsplit=1)) == 2, f"{f.name} has no comment"


# ---------------------------------------------------------------- data

@pytest.mark.parametrize("name, n_features", [("classification", 6), ("moons", 2), ("circles", 2),
                                              ("breast_cancer", 30)])
def test_datasets_are_standardised_binary_and_deterministic(name, n_features):
    a = make_dataset(name, n_samples=120, n_features=6, noise=0.1, seed=3)
    b = make_dataset(name, n_samples=120, n_features=6, noise=0.1, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert a.X.shape[1] == n_features and a.X.dtype == torch.float32
    assert set(a.y.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(a.X.mean(0), torch.zeros(n_features), atol=1e-5)
    assert torch.allclose(a.X.std(0, unbiased=False), torch.ones(n_features), atol=1e-4)


def test_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("nope")


# ---------------------------------------------------------------- FlatModel

@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_flat_loss_equals_the_modules_own_loss(kind, tiny_data):
    module = build_model(kind, tiny_data.n_features, hidden_dim=5, seed=1)
    fm = FlatModel(module)
    expected = F.binary_cross_entropy_with_logits(module(tiny_data.X), tiny_data.y)
    assert torch.allclose(fm.loss(fm.theta0, tiny_data.X, tiny_data.y), expected, rtol=1e-6)
    assert fm.dim == sum(p.numel() for p in module.parameters())


def test_batched_losses_equal_a_loop_and_leave_the_module_alone(tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    before = [p.detach().clone() for p in tiny_mlp.module.parameters()]
    thetas = tiny_mlp.theta0 + 0.3 * torch.randn(9, tiny_mlp.dim, generator=torch.Generator().manual_seed(0))
    loop = torch.stack([tiny_mlp.loss(t, X, y) for t in thetas])
    assert torch.allclose(tiny_mlp.losses(thetas, X, y, chunk=4), loop, rtol=1e-6, atol=1e-7)
    acc_loop = torch.stack([tiny_mlp.accuracy(t, X, y) for t in thetas])
    assert torch.equal(tiny_mlp.accuracies(thetas, X, y, chunk=4), acc_loop)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_mlp.module.parameters()))


def test_seeded_models_do_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_model("mlp", 4, 3, seed=5), build_model("mlp", 4, 3, seed=5)
    assert torch.equal(torch.rand(1), expected)
    assert torch.equal(FlatModel(a).theta0, FlatModel(b).theta0)


# ---------------------------------------------------------------- training

def test_same_config_gives_bit_identical_trajectories(tiny_data):
    def run():
        fm = FlatModel(build_model("mlp", tiny_data.n_features, 5, seed=2))
        return train(fm, tiny_data.X, tiny_data.y, OptimizerSpec("a", "adam", 0.05), 6, batch_size=16, seed=2)
    a, b = run(), run()
    assert torch.equal(a.params, b.params) and torch.equal(a.losses, b.losses)


def test_trajectory_records_full_batch_loss_at_every_epoch(tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    run = train(tiny_mlp, X, y, OptimizerSpec("m", "sgd", 0.2, 0.9), 5, batch_size=20, seed=0)
    assert run.params.shape == (6, tiny_mlp.dim) and torch.equal(run.steps, torch.arange(6))
    assert torch.equal(run.params[0], tiny_mlp.theta0)
    recomputed = torch.stack([tiny_mlp.loss(p, X, y) for p in run.params])
    assert torch.allclose(run.losses, recomputed)


def test_full_batch_sgd_is_plain_gradient_descent(tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    run = train(tiny_mlp, X, y, OptimizerSpec("gd", "sgd", 0.3), 3)
    theta = tiny_mlp.theta0.clone()
    for _ in range(3):
        theta = theta - 0.3 * torch.func.grad(tiny_mlp.loss)(theta, X, y)
    assert torch.allclose(run.final, theta, atol=1e-6)


def test_diverging_run_stops_at_last_finite_point(tiny_data):
    fm = FlatModel(build_model("mlp", tiny_data.n_features, 5, seed=0))
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = train(fm, tiny_data.X, tiny_data.y, OptimizerSpec("big", "sgd", 1e6), 50)
    assert run.diverged and len(run) < 51
    assert torch.isfinite(run.losses).all() and torch.isfinite(run.params).all()


def test_a_finite_blow_up_is_divergence_too(tiny_data):
    """GD on least squares with lr = 3 / λmax: the error along the top eigenvector doubles every step,
    the loss grows 4x per epoch and stays finite for hundreds: stopped where it passes
    DIVERGED_FACTOR x the initial loss, with every kept checkpoint under that line."""
    from training import DIVERGED_FACTOR
    X = tiny_data.X
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0])
    fm = FlatModel(build_model("logistic", tiny_data.n_features, seed=0), loss="mse")
    A = torch.cat([X, torch.ones(len(X), 1)], dim=1)
    lam_max = float(torch.linalg.eigvalsh(2 * A.T @ A / len(X))[-1])  # the Hessian of the mean squared error
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = train(fm, X, y, OptimizerSpec("big", "sgd", 3 / lam_max), 200)
    assert run.diverged and len(run) < 20  # 4^5 > 1000: a few epochs, not 200
    assert torch.isfinite(run.losses).all()
    assert run.losses.max() <= DIVERGED_FACTOR * run.losses[0]
    assert run.losses[-1] > 100 * run.losses[0]  # it was on its way


def test_seeds_give_different_inits_and_optimisers_share_one(tiny_data):
    X, y = tiny_data.X, tiny_data.y
    runs = train_seeds(lambda s: FlatModel(build_model("mlp", 4, 5, seed=s)), X, y,
                       OptimizerSpec("gd", "sgd", 0.1), 2, seeds=[0, 1])
    assert not torch.equal(runs[0].params[0], runs[1].params[0])
    fm = FlatModel(build_model("mlp", 4, 5, seed=0))
    specs = [OptimizerSpec("sgd"), OptimizerSpec("adam", "adam", 0.01)]
    opt_runs = train_optimizers(fm, X, y, specs, 2)
    assert torch.equal(opt_runs[0].params[0], opt_runs[1].params[0])
    assert not torch.equal(opt_runs[0].final, opt_runs[1].final)


def test_default_training_improves_and_mlp_beats_logistic_on_moons():
    """Acceptance of the foundation: at the defaults, logistic improves for every seed; on moons the MLP wins."""
    cfg = config.Config()
    data = make_dataset("classification", cfg.n_samples, cfg.n_features, cfg.noise, seed=0)
    spec = OptimizerSpec("gd", "sgd", cfg.lr)
    for seed in cfg.seed_list:
        run = train(FlatModel(build_model("logistic", data.n_features, seed=seed)), data.X, data.y, spec, cfg.epochs)
        assert run.losses[-1] < run.losses[0]
    moons = make_dataset("moons", cfg.n_samples, cfg.n_features, cfg.noise, seed=0)
    final = {kind: train(FlatModel(build_model(kind, moons.n_features, cfg.hidden_dim, seed=0)),
                         moons.X, moons.y, spec, cfg.epochs).losses[-1] for kind in ("logistic", "mlp")}
    assert final["mlp"] < final["logistic"]


def test_path_statistics_on_a_hand_made_path():
    from training import Trajectory, path_statistics
    params = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]])  # legs 3 and 4, straight line 5
    run = Trajectory(params, torch.tensor([2.0, 1.0, 0.5]), torch.zeros(3), torch.arange(3), "hand")
    stats = path_statistics(run)
    assert stats["path_length"] == pytest.approx(7.0) and stats["straight_distance"] == pytest.approx(5.0)
    assert stats["efficiency"] == pytest.approx(5 / 7) and stats["improvement_pct"] == pytest.approx(75.0)


def test_readme_documents_every_config_field():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for f in dataclasses.fields(config.Config):
        assert f"| `{f.name}` | `{config._show(f.default)}` |" in readme, f.name



def test_readme_lists_every_output_group():
    import re
    from pathlib import Path
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    listed = re.search(r"`--skip=` take output groups: ([a-z_, ]+)\.", readme).group(1)
    assert tuple(g.strip() for g in listed.split(",")) == config.OUTPUT_GROUPS
