"""Loss surfaces against the per-point loop they replace, on non-square grids, for every code path."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from loss_surface import (LogitTile, PlaneModel, _evaluate_generic, bce_and_accuracy, evaluate_points,
                          evaluate_surface, grid_for, interpolate_line)
from models import FlatModel, build_model
from projection import Plane, pca_plane, random_plane


class Tanh2(nn.Module):
    """A module the fast path does not know: evaluated through the generic vmap path."""

    def __init__(self, d):
        super().__init__()
        self.a, self.b = nn.Linear(d, 3), nn.Linear(3, 1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))).squeeze(-1)


def loop_oracle(fm, X, y, plane, coords):
    """The plain loop: one fm.loss / fm.accuracy per point of coords (N, 2)."""
    thetas = [plane.center + float(a) * plane.u + float(b) * plane.v for a, b in coords]
    return (np.array([fm.loss(t, X, y).item() for t in thetas]),
            np.array([fm.accuracy(t, X, y).item() for t in thetas], dtype=np.float32))


def make_fm(kind, d, dtype=torch.float32):
    module = Tanh2(d) if kind == "custom" else build_model(kind, d, hidden_dim=6, seed=1)
    return FlatModel(module.to(dtype))


@pytest.mark.parametrize("kind", ["mlp", "logistic", "custom"])
def test_surface_equals_the_loop_on_a_non_square_grid(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=2)
    alphas, betas = np.linspace(-1.5, 1.0, 7), np.linspace(-0.8, 1.2, 5)
    surface = evaluate_surface(fm, X, y, plane, alphas, betas)
    aa, bb = np.meshgrid(alphas, betas)
    loss, acc = loop_oracle(fm, X, y, plane, np.stack([aa.ravel(), bb.ravel()], axis=1))
    assert surface.loss.shape == surface.accuracy.shape == (5, 7)
    assert np.allclose(surface.loss, loss.reshape(5, 7), rtol=1e-5, atol=0)
    assert np.array_equal(surface.accuracy, acc.reshape(5, 7))
    assert surface.loss[2, 6] == pytest.approx(fm.loss(plane.points([[1.0, 0.2]])[0], X, y).item(), rel=1e-5)


def test_grid_centre_is_the_models_own_loss(tiny_run, tiny_mlp, tiny_data):
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout)
    alphas, betas = np.linspace(-1, 1, 9), np.linspace(-0.5, 0.5, 5)  # (0, 0) is on the grid
    surface = evaluate_surface(tiny_mlp, tiny_data.X, tiny_data.y, plane, alphas, betas)
    i, j = np.abs(betas).argmin(), np.abs(alphas).argmin()
    expected = tiny_mlp.loss(plane.center, tiny_data.X, tiny_data.y).item()
    assert surface.loss[i, j] == pytest.approx(expected, rel=1e-6)
    assert surface.accuracy[i, j] == tiny_mlp.accuracy(plane.center, tiny_data.X, tiny_data.y).item()


def wide_and_degenerate_coords():
    """Many scattered points (several tiles, ReLUs switching inside them) and one repeated point."""
    return np.random.default_rng(0).uniform(-2, 2, size=(700, 2)), np.array([[0.3, -0.2]] * 3)


def test_tiles_cover_every_point_once_and_switch_only_where_needed(tiny_data):
    fm = make_fm("mlp", tiny_data.n_features)
    model = PlaneModel(fm, tiny_data.X, random_plane(fm.theta0, fm.layout, seed=0))
    wide, one_point = wide_and_degenerate_coords()
    order, bounds, tiles = model.tiles(wide)
    assert len(tiles) > 1 and sorted(order) == list(range(700))
    assert [start for start, _ in bounds[1:]] == [stop for _, stop in bounds[:-1]] and bounds[-1][1] == 700
    assert sum(len(tile.rows) for tile in tiles) > 0  # some ReLUs switch: the point-by-point part is used
    _, _, (tile,) = model.tiles(one_point)
    assert len(tile.rows) == 0  # a degenerate rectangle: closed form only


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_fast_path_equals_generic_path(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    for coords in wide_and_degenerate_coords():
        for chunk in (None, 7):  # 7: chunks that end inside tiles
            fast = evaluate_points(fm, X, y, plane, coords, chunk=chunk)
            generic = _evaluate_generic(fm, X, y, plane, coords, None)
            assert np.allclose(fast[0], generic[0].numpy(), rtol=1e-5, atol=0)
            assert np.array_equal(fast[1], generic[1].numpy())


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_fast_path_is_exact_in_float64(kind, tiny_data):
    """In float64 the closed form and the loop differ by rounding alone, far below float32's."""
    X, y = tiny_data.X.double(), tiny_data.y.double()
    fm = make_fm(kind, tiny_data.n_features, torch.float64)
    plane = random_plane(fm.theta0, fm.layout, seed=3)
    coords = np.random.default_rng(1).uniform(-3, 3, size=(400, 2))
    loss, acc = evaluate_points(fm, X, y, plane, coords)
    sample = np.arange(0, 400, 13)  # the loop at every 13th point keeps the test fast
    expected_loss, expected_acc = loop_oracle(fm, X, y, plane, coords[sample])
    assert np.allclose(loss[sample], expected_loss, rtol=1e-12, atol=0)
    assert np.array_equal(acc[sample], expected_acc)


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_near_and_far_points_together_agree_with_the_loop(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    coords = [[1e12, 0.0], [0.0, 0.0], [1e6, -1e6], [1e3, 1e3], [-3.0, 2.0]]  # one tile from 0 to 1e12
    loss, acc = evaluate_points(fm, X, y, plane, coords)
    expected_loss, expected_acc = loop_oracle(fm, X, y, plane, coords)
    assert np.allclose(loss, expected_loss, rtol=1e-5, atol=0)
    assert np.array_equal(acc, expected_acc)


def test_pairs_left_to_the_closed_form_keep_one_sign_on_their_tile(tiny_data):
    """Tiny tiles on a ReLU's zero line, far out, where float32 rounding hides the pre-activation."""
    fm = make_fm("mlp", tiny_data.n_features)
    model = PlaneModel(fm, tiny_data.X, random_plane(fm.theta0, fm.layout, seed=0))
    pre = model.pre.double()  # (3, n, h)
    rng = np.random.default_rng(5)
    for _ in range(100):
        r, k = rng.integers(pre.shape[1]), rng.integers(pre.shape[2])
        a = rng.choice([1e3, 1e5, 1e7]) * rng.choice([-1, 1])
        on_line = np.array([a, -float(pre[0, r, k] + a * pre[1, r, k]) / float(pre[2, r, k])])
        half = rng.uniform(0, 1e-3, size=2)
        tile = LogitTile(model, on_line - half, on_line + half)
        corners = [(on_line[0] + sa * half[0], on_line[1] + sb * half[1]) for sa in (-1, 1) for sb in (-1, 1)]
        z = torch.stack([pre[0] + ca * pre[1] + cb * pre[2] for ca, cb in corners])  # (4, n, h) in float64
        one_sign = ((z > 0).all(dim=0) | (z <= 0).all(dim=0)).view(-1)
        closed_form = torch.ones_like(one_sign)
        closed_form[tile.pairs] = False
        assert one_sign[closed_form].all()


def test_evaluate_points_equals_the_loop_in_the_callers_order(tiny_run, tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout)
    coords = np.random.default_rng(2).normal(size=(400, 2))
    coords[17] = coords[300]  # a repeated point
    loss, acc = evaluate_points(tiny_mlp, X, y, plane, coords)
    sample = np.r_[0:10, 17, 300, 390:400]
    expected_loss, expected_acc = loop_oracle(tiny_mlp, X, y, plane, coords[sample])
    assert np.allclose(loss[sample], expected_loss, rtol=1e-5, atol=0)
    assert np.array_equal(acc[sample], expected_acc)
    assert loss[17] == loss[300]


def test_bce_and_accuracy_mean_what_torch_means():
    logits = torch.tensor([[0.0, 3.0], [-2.0, 40.0], [0.5, -40.0], [-1e-3, 0.0]])  # (n=4, K=2), with z = 0
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss, acc = bce_and_accuracy(logits, y)
    for k in range(2):
        z = logits[:, k]
        assert loss[k].item() == pytest.approx(F.binary_cross_entropy_with_logits(z, y).item(), rel=1e-6)
        assert acc[k].item() == ((z > 0).float() == y).float().mean().item()


@pytest.mark.parametrize("kind", ["mlp", "custom"])
def test_interpolation_equals_the_loop_and_its_ends_are_the_end_losses(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    start, end = fm.theta0, fm.theta0 + 0.3 * torch.randn(fm.dim, generator=torch.Generator().manual_seed(0))
    ts = [0.0, 1.0, -0.25, 0.5, 1.25]
    loss, acc = interpolate_line(fm, X, y, start, end, ts)
    expected = [start + t * (end - start) for t in ts]
    assert np.allclose(loss, [fm.loss(theta, X, y).item() for theta in expected], rtol=1e-5, atol=0)
    assert np.array_equal(acc, np.array([fm.accuracy(theta, X, y).item() for theta in expected], np.float32))
    assert loss[0] == pytest.approx(fm.loss(start, X, y).item(), rel=1e-6)
    assert loss[1] == pytest.approx(fm.loss(end, X, y).item(), rel=1e-6)


def test_grid_covers_every_point_with_its_margin():
    rng = np.random.default_rng(4)
    for _ in range(5):
        runs = [rng.normal(rng.normal(size=2), rng.uniform(0.1, 3), size=(rng.integers(1, 20), 2)) for _ in range(2)]
        alphas, betas = grid_for(runs, (11, 4), margin=0.1)
        pts = np.vstack(runs + [np.zeros((1, 2))])
        room = 0.1 * (pts.max(axis=0) - pts.min(axis=0)).max()
        assert len(alphas) == 11 and len(betas) == 4
        assert alphas[0] <= pts[:, 0].min() - room + 1e-12 and alphas[-1] >= pts[:, 0].max() + room - 1e-12
        assert betas[0] <= pts[:, 1].min() - room + 1e-12 and betas[-1] >= pts[:, 1].max() + room - 1e-12
    with pytest.raises(ValueError, match="at least 2"):
        grid_for(np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match="at least 2"):
        grid_for(np.zeros((3, 2)), (5, 1))
    with pytest.raises(ValueError, match="non-finite"):
        grid_for([np.zeros((2, 2)), np.array([[0.0, np.inf]])], 5)


def test_bad_inputs_are_value_errors(tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    small = Plane(torch.zeros(3), torch.ones(3), torch.ones(3), "random")
    with pytest.raises(ValueError, match="weights"):
        evaluate_surface(tiny_mlp, X, y, small, [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        evaluate_points(tiny_mlp, X, y, small, [[0.0, 1.0]])
    plane = random_plane(tiny_mlp.theta0, tiny_mlp.layout, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_points(tiny_mlp, X, y, plane, [[0.0, np.inf]])
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_surface(tiny_mlp, X, y, plane, [], [0.0])
    loss, acc = evaluate_points(tiny_mlp, X, y, plane, np.zeros((0, 2)))
    assert loss.shape == acc.shape == (0,)
