"""Loss surfaces against the per-point loop they replace, on non-square grids, for every code path."""
import numpy as np
import pytest
import torch
from torch import nn

from loss_surface import PlaneModel, _evaluate_generic, evaluate_points, evaluate_surface, interpolate_line
from models import FlatModel, build_model
from projection import Plane, pca_plane, random_plane


class Tanh2(nn.Module):
    """A module the fast path does not know: evaluated through the generic vmap path."""

    def __init__(self, d):
        super().__init__()
        self.a, self.b = nn.Linear(d, 3), nn.Linear(3, 1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))).squeeze(-1)


def loop_oracle(fm, X, y, plane, alphas, betas):
    """The plain loop: one fm.loss / fm.accuracy per grid point."""
    loss = np.zeros((len(betas), len(alphas)))
    acc = np.zeros_like(loss)
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            theta = plane.center + float(a) * plane.u + float(b) * plane.v
            loss[i, j] = fm.loss(theta, X, y).item()
            acc[i, j] = fm.accuracy(theta, X, y).item()
    return loss, acc


def make_fm(kind, d):
    module = Tanh2(d) if kind == "custom" else build_model(kind, d, hidden_dim=6, seed=1)
    return FlatModel(module)


@pytest.mark.parametrize("kind", ["mlp", "logistic", "custom"])
def test_surface_equals_the_loop_on_a_non_square_grid(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=2)
    alphas, betas = np.linspace(-1.5, 1.0, 7), np.linspace(-0.8, 1.2, 5)
    surface = evaluate_surface(fm, X, y, plane, alphas, betas)
    loss, acc = loop_oracle(fm, X, y, plane, alphas, betas)
    assert surface.loss.shape == (5, 7)
    assert np.allclose(surface.loss, loss, rtol=1e-5, atol=1e-7)
    assert np.array_equal(surface.accuracy, acc.astype(np.float32))


def test_grid_centre_is_the_models_own_loss(tiny_run, tiny_mlp, tiny_data):
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout)
    alphas, betas = np.linspace(-1, 1, 9), np.linspace(-0.5, 0.5, 5)  # (0, 0) is on the grid
    surface = evaluate_surface(tiny_mlp, tiny_data.X, tiny_data.y, plane, alphas, betas)
    i, j = np.abs(betas).argmin(), np.abs(alphas).argmin()
    expected = tiny_mlp.loss(plane.center, tiny_data.X, tiny_data.y).item()
    assert surface.loss[i, j] == pytest.approx(expected, rel=1e-6)


def test_fast_path_equals_generic_path_with_and_without_switching_units(tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm("mlp", tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    wide = np.random.default_rng(0).uniform(-2, 2, size=(700, 2))  # several tiles
    one_point = np.array([[0.3, -0.2]] * 3)
    blocks = list(PlaneModel.of(fm, X, plane).blocks(wide))
    assert len(blocks) > 1 and sorted(np.concatenate([idx for idx, _ in blocks])) == list(range(700))
    assert sum(len(block.rows) for _, block in blocks) > 0  # some ReLUs switch: point-by-point part used
    (_, block), = PlaneModel.of(fm, X, plane).blocks(one_point)
    assert len(block.rows) == 0  # a degenerate rectangle: closed form only
    for coords in (wide, one_point):
        fast = evaluate_points(fm, X, y, plane, coords, chunk=7)
        generic = _evaluate_generic(fm, X, y, plane, coords, None)
        assert np.allclose(fast[0], generic[0], rtol=1e-5) and np.array_equal(fast[1], generic[1])


def test_interpolation_ends_are_the_end_losses(tiny_run, tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    loss, acc = interpolate_line(tiny_mlp, X, y, tiny_run.params[0], tiny_run.final, [0.0, 0.5, 1.0])
    assert loss[0] == pytest.approx(tiny_mlp.loss(tiny_run.params[0], X, y).item(), rel=1e-6)
    assert loss[2] == pytest.approx(tiny_mlp.loss(tiny_run.final, X, y).item(), rel=1e-6)
    assert acc[2] == pytest.approx(tiny_mlp.accuracy(tiny_run.final, X, y).item())


def test_bad_inputs_are_value_errors(tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    small = Plane(torch.zeros(3), torch.ones(3), torch.ones(3), "random")
    with pytest.raises(ValueError, match="weights"):
        evaluate_surface(tiny_mlp, X, y, small, [0.0, 1.0], [0.0, 1.0])
    plane = random_plane(tiny_mlp.theta0, tiny_mlp.layout, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_points(tiny_mlp, X, y, plane, [[0.0, np.inf]])
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_surface(tiny_mlp, X, y, plane, [], [0.0])
