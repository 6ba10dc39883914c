"""Loss surfaces against the per-point loop they replace, on non-square grids, for every code path."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from loss_surface import _generic_logits, evaluate_points, evaluate_surface, grid_for, interpolate_line
from models import FlatModel, build_model
from model_graph import find_structure, point_graph, split_for
from plane_model import PlaneModel, build_tiles, keeps_head
from projection import Plane, pca_plane, random_plane


class Tanh2(nn.Module):
    """A module without a closed form: evaluated through the split path (tanh after the first layer)."""

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


def grid(alphas, betas) -> np.ndarray:
    """Every (a, b) of the grid alphas x betas as rows (A B, 2), betas outer like Surface.loss."""
    return np.stack([g.ravel() for g in np.meshgrid(alphas, betas)], axis=1)


def assert_equals_loop(fm, X, y, plane, coords, rtol=1e-5, sample=slice(None)) -> tuple:
    """evaluate_points against loop_oracle at coords[sample]: loss to rtol, accuracy exactly; returns (loss, acc)."""
    coords = np.asarray(coords, dtype=float)
    loss, acc = evaluate_points(fm, X, y, plane, coords)
    expected_loss, expected_acc = loop_oracle(fm, X, y, plane, coords[sample])
    assert np.allclose(loss[sample], expected_loss, rtol=rtol, atol=0)
    assert np.array_equal(acc[sample], expected_acc)
    return loss, acc


def make_fm(kind, d, dtype=torch.float32, loss="bce", **kwargs):
    module = Tanh2(d) if kind == "custom" else build_model(kind, d, hidden_dim=6, seed=1, n_classes=3, loss=loss)
    return FlatModel(module.to(dtype), loss=loss, **kwargs)


def generic(fm, X, y, plane, coords):
    """The generic path alone (as for an unrecognised module), summed like evaluate_points."""
    from models import finish_metric, loss_terms, metric_sum
    logits = torch.cat([block for _, block in _generic_logits(fm, X, plane, coords, None)])
    logits = logits if fm.loss_kind == "ce" else logits.flatten(1)
    return (loss_terms(fm.loss_kind, logits, y).mean(dim=-1).numpy(),
            finish_metric(fm.loss_kind, metric_sum(fm.loss_kind, logits, y), y).numpy())


@pytest.mark.parametrize("kind", ["mlp", "logistic", "custom"])
def test_surface_equals_the_loop_on_a_non_square_grid(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=2)
    alphas, betas = np.linspace(-1.5, 1.0, 7), np.linspace(-0.8, 1.2, 5)
    surface = evaluate_surface(fm, X, y, plane, alphas, betas)
    loss, acc = loop_oracle(fm, X, y, plane, grid(alphas, betas))
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
    """Many scattered points (rows of one point each, ReLUs switching) and one repeated point."""
    return np.random.default_rng(0).uniform(-2, 2, size=(700, 2)), np.array([[0.3, -0.2]] * 3)


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_fast_path_equals_generic_path(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    for coords in wide_and_degenerate_coords():
        fast = evaluate_points(fm, X, y, plane, coords)
        slow = generic(fm, X, y, plane, coords)
        assert np.allclose(fast[0], slow[0], rtol=1e-5, atol=0)
        assert np.array_equal(fast[1], slow[1])


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_fast_path_is_exact_in_float64(kind, tiny_data):
    """In float64 the closed form and the loop differ by rounding alone, far below float32's."""
    X, y = tiny_data.X.double(), tiny_data.y.double()
    fm = make_fm(kind, tiny_data.n_features, torch.float64)
    plane = random_plane(fm.theta0, fm.layout, seed=3)
    coords = np.random.default_rng(1).uniform(-3, 3, size=(400, 2))
    sample = np.arange(0, 400, 13)  # the loop at every 13th point keeps the test fast
    assert_equals_loop(fm, X, y, plane, coords, rtol=1e-12, sample=sample)


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_near_and_far_points_together_agree_with_the_loop(kind, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    coords = [[1e12, 0.0], [0.0, 0.0], [1e6, -1e6], [1e3, 1e3], [-3.0, 2.0]]  # one tile from 0 to 1e12
    assert_equals_loop(fm, X, y, plane, coords)


def test_evaluate_points_equals_the_loop_in_the_callers_order(tiny_run, tiny_mlp, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout)
    coords = np.random.default_rng(2).normal(size=(400, 2))
    coords[17] = coords[300]  # a repeated point
    loss, _ = assert_equals_loop(tiny_mlp, X, y, plane, coords, sample=np.r_[0:10, 17, 300, 390:400])
    assert loss[17] == loss[300]


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


class UserMLP(nn.Module):
    """The user's own spelling of Linear -> ReLU -> Linear: other names, F.relu, a flatten."""

    def __init__(self, d, h, c):
        super().__init__()
        self.hidden, self.head = nn.Linear(d, h), nn.Linear(h, c)

    def forward(self, x):
        return torch.flatten(self.head(F.relu(self.hidden(x))))


def test_structure_is_recognised_by_structure_not_by_name(tiny_data):
    X, d = tiny_data.X, tiny_data.n_features
    spellings = {"mlp": build_model("mlp", d, 6), "sequential": nn.Sequential(nn.Linear(d, 6), nn.ReLU(), nn.Linear(6, 1)),
                 "user": UserMLP(d, 6, 1), "logistic": build_model("logistic", d)}
    kinds = {name: find_structure(FlatModel(m), X) for name, m in spellings.items()}
    assert {name: k.kind for name, k in kinds.items()} == {"mlp": "relu_linear", "sequential": "relu_linear",
                                                         "user": "relu_linear", "logistic": "affine"}
    others = [Tanh2(d), nn.Sequential(nn.Linear(d, 6), nn.Tanh(), nn.Linear(6, 1)),
              nn.Sequential(nn.Linear(d, 6), nn.ReLU(), nn.Linear(6, 2), nn.ReLU(), nn.Linear(2, 1)),
              nn.Sequential(nn.Linear(d, 6), nn.ReLU(), nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1)),
              nn.Sequential(nn.Linear(d, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1)),
              nn.Sequential(nn.Linear(d, 6), nn.LeakyReLU(), nn.Linear(6, 1))]
    found = [find_structure(FlatModel(m), X) for m in others]  # a narrow second Linear: prefix; else split
    assert [s.kind if s else None for s in found] == ["split", "split", "prefix", "split", None, "split"]  # BN: generic


@pytest.mark.parametrize("spelling", ["sequential", "user"])
def test_users_spelling_of_the_mlp_equals_the_loop_and_the_projects_mlp(spelling, tiny_data):
    X, y = tiny_data.X, tiny_data.y
    mlp = make_fm("mlp", tiny_data.n_features)
    d, h = tiny_data.n_features, 6
    module = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1), nn.Flatten(0)) if spelling == "sequential" \
        else UserMLP(d, h, 1)
    torch.nn.utils.vector_to_parameters(mlp.theta0, module.parameters())
    fm = FlatModel(module)
    plane = random_plane(fm.theta0, fm.layout, seed=4)
    coords = grid(np.linspace(-2, 2, 6), np.linspace(-1, 3, 4))
    loss, _ = assert_equals_loop(fm, X, y, plane, coords)
    assert np.array_equal(loss, evaluate_points(mlp, X, y, plane, coords)[0])


@pytest.mark.parametrize("kind, loss", [("mlp", "ce"), ("logistic", "ce"), ("mlp", "mse"), ("logistic", "mse"),
                                        ("custom", "mse")])
def test_multi_class_and_squared_error_surfaces_equal_the_loop(kind, loss, tiny_data):
    X = tiny_data.X
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long() if loss == "ce" else X[:, 0] - 2 * X[:, 1] ** 2  # 3 classes
    fm = make_fm(kind, tiny_data.n_features, loss=loss)
    plane = random_plane(fm.theta0, fm.layout, seed=2)
    coords = grid(np.linspace(-1.5, 1.0, 7), np.linspace(-0.8, 1.2, 5))
    loss_values, metric = evaluate_points(fm, X, y, plane, coords)
    expected_loss, expected_metric = loop_oracle(fm, X, y, plane, coords)
    assert np.allclose(loss_values, expected_loss, rtol=1e-5, atol=0)
    if loss == "ce":
        assert np.array_equal(metric, expected_metric)
    else:  # R²: 1 - SSE/SST summed in float64 here, in float32 by the loop
        assert np.allclose(metric, expected_metric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, loss", [("mlp", "bce"), ("mlp", "ce"), ("custom", "mse"), ("logistic", "bce")])
def test_eval_batches_sum_to_the_one_batch_result(kind, loss, tiny_data):
    X = tiny_data.X
    y = (X[:, 0] > 0).long() * 2 if loss == "ce" else (tiny_data.y if loss == "bce" else X[:, 1])
    whole = make_fm(kind, tiny_data.n_features, loss=loss)
    batched = make_fm(kind, tiny_data.n_features, loss=loss, eval_batch_size=9)  # 64 = 7 x 9 + 1
    plane = random_plane(whole.theta0, whole.layout, seed=1)
    coords = np.random.default_rng(3).uniform(-2, 2, size=(40, 2))
    one, many = evaluate_points(whole, X, y, plane, coords), evaluate_points(batched, X, y, plane, coords)
    assert np.allclose(many[0], one[0], rtol=1e-6, atol=0)
    assert np.allclose(many[1], one[1], rtol=1e-6, atol=1e-6)


def test_batchnorm_model_uses_its_buffers_and_equals_the_loop(tiny_data):
    X, y, d = tiny_data.X, tiny_data.y, tiny_data.n_features
    module = nn.Sequential(nn.Linear(d, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 1), nn.Flatten(0))
    with torch.no_grad():  # running statistics far from (0, 1): ignoring them would show
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.2, 3.0)
    fm = FlatModel(module)
    assert find_structure(fm, X) is None
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    assert_equals_loop(fm, X, y, plane, [[0.0, 0.0], [0.5, -1.0], [-1.2, 0.3]])


@pytest.mark.parametrize("kind", ["mlp", "logistic", "custom"])
def test_any_subset_of_a_grid_gives_the_grids_values(kind, tiny_data):
    """What a rank evaluating some rows, or scattered points, of the grid gets: the same numbers."""
    X, y = tiny_data.X, tiny_data.y
    fm = make_fm(kind, tiny_data.n_features)
    plane = random_plane(fm.theta0, fm.layout, seed=5)
    coords = grid(np.linspace(-2, 2, 9), np.linspace(-1, 2, 6))
    whole = evaluate_points(fm, X, y, plane, coords)
    rng = np.random.default_rng(0)
    for subset in (np.arange(18, 36), rng.choice(len(coords), 17, replace=False), np.arange(0, len(coords), 2)):
        part = evaluate_points(fm, X, y, plane, coords[subset])
        assert np.allclose(part[0], whole[0][subset], rtol=1e-6, atol=1e-6)
        assert np.array_equal(part[1], whole[1][subset])


def test_pairs_left_to_the_closed_form_keep_one_sign_on_their_tile(tiny_data):
    """Tiny tiles on a ReLU's zero line, far out, where float32 rounding hides the pre-activation."""
    fm = make_fm("mlp", tiny_data.n_features)
    model = PlaneModel(fm, find_structure(fm, tiny_data.X), tiny_data.X, random_plane(fm.theta0, fm.layout, seed=0))
    z = model.z.double()  # (3, n, h)
    rng = np.random.default_rng(5)
    for _ in range(100):
        r, k = rng.integers(z.shape[1]), rng.integers(z.shape[2])
        a = rng.choice([1e3, 1e5, 1e7]) * rng.choice([-1, 1])
        on_line = np.array([a, -float(z[0, r, k] + a * z[1, r, k]) / float(z[2, r, k])])
        half = rng.uniform(0, 1e-3, size=2)
        tile = build_tiles(model, (on_line - half)[None], (on_line + half)[None])[0]
        corners = [(on_line[0] + sa * half[0], on_line[1] + sb * half[1]) for sa in (-1, 1) for sb in (-1, 1)]
        values = torch.stack([z[0] + ca * z[1] + cb * z[2] for ca, cb in corners])  # (4, n, h) in float64
        one_sign = ((values > 0).all(dim=0) | (values <= 0).all(dim=0)).view(-1)
        closed_form = torch.ones_like(one_sign)
        closed_form[tile.rows * z.shape[2] + tile.units] = False
        assert one_sign[closed_form].all()


def test_a_point_tile_is_closed_form_and_wide_tiles_switch(tiny_data):
    fm = make_fm("mlp", tiny_data.n_features)
    model = PlaneModel(fm, find_structure(fm, tiny_data.X), tiny_data.X, random_plane(fm.theta0, fm.layout, seed=0))
    point, wide = build_tiles(model, np.array([[0.3, -0.2], [-2.0, -2.0]]), np.array([[0.3, -0.2], [2.0, 2.0]]))
    assert len(point.rows) == 0  # a degenerate rectangle
    assert len(wide.rows) > 0  # ReLUs switch inside


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_tiles_built_in_small_batches_equal_the_loop(loss, tiny_data, monkeypatch):
    """Tiles built a few at a time, their pairs' coefficients a few samples at a time: the loop's numbers."""
    import plane_model
    X = tiny_data.X
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long() if loss == "ce" else tiny_data.y
    fm = make_fm("mlp", tiny_data.n_features, loss=loss)
    monkeypatch.setattr(plane_model, "BUILD_ELEMENTS", 6 * 3 * 6 * 5)  # 5 samples of coefficients, < 1 tile
    monkeypatch.setattr(plane_model, "POINTS_PER_TILE", 4)
    assert_equals_loop(fm, X, y, random_plane(fm.theta0, fm.layout, seed=3),
                       grid(np.linspace(-2, 1.5, 8), np.linspace(-1, 2, 6)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_switching_pairs_equal_a_float64_sum_over_pairs(dtype):
    """relu_kernel's loop against numpy in float64: pairs sharing a sample add up, off pairs add nothing."""
    from relu_kernel import add_relu_shares
    rng = np.random.default_rng(0)
    n, h, C, K, m = 5, 4, 3, 7, 40
    rows, units = rng.integers(n, size=m), rng.integers(h, size=m)  # repeats: several pairs per sample
    z, weights = rng.normal(size=(m, 3)), rng.normal(size=(h, C, K))
    a, b, logits = rng.normal(size=K), rng.normal(size=K), rng.normal(size=(n, C, K))
    expected = logits.copy()
    pre = z[:, :1] + z[:, 1:2] * a + z[:, 2:] * b  # (m, K)
    np.add.at(expected, rows, np.maximum(pre, 0)[:, None, :] * weights[units])
    got = logits.astype(dtype)
    add_relu_shares(rows, units, *(t.astype(dtype) for t in (z, weights, a, b)), got)
    assert (pre < 0).any() and (pre > 0).any()
    assert np.allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_switching_pairs_as_torch_ops_equal_the_loop(loss, tiny_data, monkeypatch):
    """Off the CPU the tiles add their switching pairs with torch ops: forced here, the loop's numbers too."""
    import plane_model
    X = tiny_data.X
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long() if loss == "ce" else tiny_data.y
    fm = make_fm("mlp", tiny_data.n_features, loss=loss)
    monkeypatch.setattr(plane_model.Tile, "_add_compiled", plane_model.Tile._add_as_torch_ops)
    monkeypatch.setattr(plane_model, "POINTS_PER_TILE", 4)
    assert_equals_loop(fm, X, y, random_plane(fm.theta0, fm.layout, seed=3),
                       grid(np.linspace(-2, 1.5, 8), np.linspace(-1, 2, 6)))


def test_the_loop_compiles_without_a_writable_cache(monkeypatch):
    """numba refuses cache=True where no cache folder is writable: the kernel then compiles uncached."""
    import importlib
    import numba
    import relu_kernel
    njit = numba.njit

    def refusing(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'add_relu_shares': no locator available")
        return njit(*args, **kwargs)
    monkeypatch.setattr(numba, "njit", refusing)
    uncached = importlib.reload(relu_kernel)
    monkeypatch.undo()
    importlib.reload(relu_kernel)
    logits = np.zeros((1, 1, 2))
    uncached.add_relu_shares(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([[1.0, 2.0, 0.0]]),
                             np.full((1, 1, 2), 3.0), np.array([-1.0, 1.0]), np.zeros(2), logits)
    assert logits.ravel().tolist() == [0.0, 9.0]  # relu(1 - 2) * 3, relu(1 + 2) * 3


def test_a_float16_model_takes_the_torch_ops(tiny_data):
    """numba has no float16: a half-precision model's tiles add their pairs with torch ops, near the loop."""
    fm = make_fm("mlp", tiny_data.n_features, dtype=torch.float16)
    X, y = tiny_data.X.half(), tiny_data.y.half()
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    coords = grid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 4))
    loss, _ = evaluate_points(fm, X, y, plane, coords)
    assert np.allclose(loss, loop_oracle(fm, X, y, plane, coords)[0], rtol=1e-2)


def test_tiles_of_a_wide_hidden_layer_bound_their_weights_block(tiny_data, monkeypatch):
    """The compiled loop holds (h C, K) weights per call: with h > n, the chunk of points follows h."""
    import plane_model
    monkeypatch.setattr(plane_model, "TILE_ELEMENTS", 3000)
    module = nn.Sequential(nn.Linear(tiny_data.n_features, 300), nn.ReLU(), nn.Linear(300, 2))
    fm = FlatModel(seeded(module), loss="ce")
    X, y = tiny_data.X[:5], tiny_data.y[:5].long()
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    model = PlaneModel(fm, find_structure(fm, X), X, plane)
    tile = build_tiles(model, np.array([[-1.0, -1.0]]), np.array([[1.0, 1.0]]))[0]
    assert len(tile.rows) > 0 and tile.chunk * 300 * 2 <= 3000
    assert_equals_loop(fm, X, y, plane, np.random.default_rng(1).uniform(-1, 1, size=(40, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_surface_on_cuda_equals_the_cpu(tiny_data):
    fm_cpu = make_fm("mlp", tiny_data.n_features)
    fm_gpu = FlatModel(fm_cpu.module, device="cuda")
    plane = random_plane(fm_cpu.theta0, fm_cpu.layout, seed=0)
    coords = np.random.default_rng(0).uniform(-2, 2, size=(50, 2))
    cpu = evaluate_points(fm_cpu, tiny_data.X, tiny_data.y, plane, coords)
    gpu = evaluate_points(fm_gpu, tiny_data.X, tiny_data.y, plane, coords)
    assert np.allclose(gpu[0], cpu[0], rtol=1e-5) and np.array_equal(gpu[1], cpu[1])


class ConvConv(nn.Module):
    """Conv -> ReLU -> Conv -> Linear on flat 8x8 rows: split after the first Conv, the rest vmapped."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Conv2d(3, 2, 3), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x.view(-1, 1, 8, 8))))).flatten(1))


class Skip(nn.Module):
    """The first layer's output used twice: relu(h) + h feeds the head."""

    def __init__(self, d):
        super().__init__()
        self.first, self.head = nn.Linear(d, 5), nn.Linear(5, 1)

    def forward(self, x):
        h = self.first(x)
        return self.head(torch.relu(h) + h).squeeze(-1)


class InputTwice(nn.Module):
    """The input reaches the output beside the first layer too: no split, the generic path."""

    def __init__(self, d):
        super().__init__()
        self.first, self.head = nn.Linear(d, 5), nn.Linear(5, 1)

    def forward(self, x):
        return self.head(torch.relu(self.first(x))).squeeze(-1) + x.sum(dim=1)


def digits_like(n=40, seed=0):
    """n random 8x8 images as flat rows (n, 64) with intensities 0..16, and 10-class labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, (n, 64), generator=g).float(), torch.randint(0, 10, (n,), generator=g)


def seeded(module, seed=0):
    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return module


def split_cases(d):
    """name -> (module, loss, image inputs?): every model the split path is tested on."""
    return {"cnn": (build_model("cnn", 64, seed=0, n_classes=10, image_shape=(1, 8, 8), loss="ce"), "ce", True),
            "conv_conv": (seeded(ConvConv()), "ce", True),
            "mlp3": (seeded(nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(),
                                          nn.Linear(32, 1), nn.Flatten(0))), "bce", False),
            "skip": (seeded(Skip(d)), "bce", False)}


@pytest.mark.parametrize("name", ["cnn", "conv_conv", "mlp3", "skip"])
def test_split_models_equal_the_loop(name, tiny_data):
    module, loss, images = split_cases(10)[name]
    X, y = digits_like() if images else (torch.randn(40, 10, generator=torch.Generator().manual_seed(1)),
                                         (torch.arange(40) % 2).float())
    y = y % 3 if name == "conv_conv" else y  # three classes
    fm = FlatModel(module, loss=loss)
    structure, split = find_structure(fm, X), split_for(fm, X)
    assert structure.kind == "split" and split is not None
    assert split.first_names == tuple(fm.layout[i].name for i in (0, 1))  # the first layer's weight and bias
    plane = random_plane(fm.theta0, fm.layout, seed=3)
    assert_equals_loop(fm, X, y, plane, np.random.default_rng(2).uniform(-1.5, 1.5, size=(30, 2)))


@pytest.mark.parametrize("name", ["cnn", "conv_conv"])
def test_split_models_in_eval_batches_sum_to_the_one_batch_result(name):
    module, loss, _ = split_cases(10)[name]
    X, y = digits_like(23)
    y = y % 3 if name == "conv_conv" else y
    whole, batched = FlatModel(module, loss=loss), FlatModel(module, loss=loss, eval_batch_size=10)  # 10, 10, 3
    plane = random_plane(whole.theta0, whole.layout, seed=1)
    coords = np.random.default_rng(3).uniform(-2, 2, size=(12, 2))
    one, many = evaluate_points(whole, X, y, plane, coords), evaluate_points(batched, X, y, plane, coords)
    assert np.allclose(many[0], one[0], rtol=1e-6, atol=0)
    assert np.array_equal(many[1], one[1])


def test_cnn_split_in_float64_is_exact_near_and_far():
    X, y = digits_like(30, seed=4)
    fm = FlatModel(build_model("cnn", 64, seed=2, image_shape=(1, 8, 8)).double())  # bce: one output column
    X, y = X.double(), (y % 2).double()
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    coords = np.vstack([np.random.default_rng(5).uniform(-3, 3, size=(300, 2)), [[1e6, -1e5], [0.0, 0.0]]])
    assert_equals_loop(fm, X, y, plane, coords, rtol=1e-12, sample=np.r_[0:300:23, 300, 301])


def test_models_the_split_cannot_cut_take_the_generic_path_and_equal_the_loop(tiny_data):
    X, y, d = tiny_data.X, tiny_data.y, tiny_data.n_features
    fm = FlatModel(seeded(InputTwice(d)))
    assert find_structure(fm, X) is None and split_for(fm, X) is None
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    assert_equals_loop(fm, X, y, plane, np.random.default_rng(6).uniform(-1, 1, size=(8, 2)))


def test_a_weight_used_by_both_linears_is_one_weight_on_the_plane(tiny_data):
    """The second Linear reads the first one's weight: a prefix whose layers look it up by name, the loop's numbers."""
    X, y, d = tiny_data.X, tiny_data.y, tiny_data.n_features
    fm = FlatModel(seeded(TiedTwice(d)))
    structure = find_structure(fm, X)
    assert structure.kind == "prefix" and [w for w, _ in structure.linears] == ["first.weight", "first.weight"]
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    assert_equals_loop(fm, X, y, plane, np.random.default_rng(6).uniform(-2, 2, size=(30, 2)))


class TiedTwice(nn.Module):
    """The first layer's weight used again after it: no split there (the rest would need that weight)."""

    def __init__(self, d):
        super().__init__()
        self.first, self.head = nn.Linear(d, d), nn.Linear(d, 1)

    def forward(self, x):
        return self.head(F.linear(torch.relu(self.first(x)), self.first.weight)).squeeze(-1)


class TanhTail(nn.Module):
    """Linear -> ReLU -> Linear, then a tail the closed form does not cover: tanh and a third Linear."""

    def __init__(self, d, h, width, classes, bias=True):
        super().__init__()
        self.first, self.second = nn.Linear(d, h, bias=bias), nn.Linear(h, width, bias=bias)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        out = self.head(torch.tanh(self.second(torch.relu(self.first(x)))))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def prefix_cases(d):
    """name -> (module, loss): models that begin Linear -> ReLU -> narrow Linear and go on."""
    return {"mlp3": (seeded(nn.Sequential(nn.Linear(d, 12), nn.ReLU(), nn.Linear(12, 2), nn.ReLU(), nn.Linear(2, 1),
                                          nn.Flatten(0))), "bce"),
            "tanh_tail_ce": (seeded(TanhTail(d, 12, 2, 3)), "ce"),
            "bias_free": (seeded(TanhTail(d, 12, 1, 1, bias=False)), "mse"),
            "eight_wide": (seeded(TanhTail(d, 12, 8, 1)), "bce")}  # model_graph.PREFIX_COLUMNS columns


@pytest.mark.parametrize("name", ["mlp3", "tanh_tail_ce", "bias_free", "eight_wide"])
def test_prefix_models_equal_the_loop_in_float64(name):
    """The second Linear's output from the tiles, the rest per point: the loop's numbers where many ReLUs switch."""
    module, loss = prefix_cases(10)[name]
    g = torch.Generator().manual_seed(7)
    X = torch.randn(50, 10, generator=g, dtype=torch.float64)
    y = {"bce": (X[:, 0] > 0).double(), "ce": torch.randint(0, 3, (50,), generator=g), "mse": X[:, 1]}[loss]
    fm = FlatModel(module.double(), loss=loss)
    assert find_structure(fm, X).kind == "prefix" and split_for(fm, X, depth=2) is not None
    plane = random_plane(fm.theta0, fm.layout, seed=2)
    coords = np.random.default_rng(4).uniform(-3, 3, size=(300, 2))
    model = PlaneModel(fm, find_structure(fm, X), X, plane)
    tiles = build_tiles(model, np.array([[-3.0, -3.0]]), np.array([[3.0, 3.0]]))
    assert len(tiles[0].rows) > 0.3 * model.z[0].numel()  # most ReLUs switch somewhere on this plane
    loss_values, metric = evaluate_points(fm, X, y, plane, coords)
    sample = np.arange(0, 300, 7)
    expected_loss, expected_metric = loop_oracle(fm, X, y, plane, coords[sample])
    assert np.allclose(loss_values[sample], expected_loss, rtol=1e-10, atol=0)
    assert np.allclose(metric[sample], expected_metric, rtol=1e-10, atol=1e-12)


def test_prefix_path_in_float32_and_eval_batches_equals_the_loop(tiny_data):
    X = tiny_data.X
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()  # three classes
    module, _ = prefix_cases(tiny_data.n_features)["tanh_tail_ce"]
    whole, batched = FlatModel(module, loss="ce"), FlatModel(module, loss="ce", eval_batch_size=9)
    plane = random_plane(whole.theta0, whole.layout, seed=5)
    coords = grid(np.linspace(-2, 2, 9), np.linspace(-1, 2, 6))
    loss, acc = assert_equals_loop(whole, X, y, plane, coords)
    many = evaluate_points(batched, X, y, plane, coords)
    assert np.allclose(many[0], loss, rtol=1e-6, atol=0) and np.array_equal(many[1], acc)


def test_a_prefix_whose_rest_reuses_a_cut_off_weight_is_split_instead(tiny_data):
    """The rest reads the first layer's weight again: not a function of the cut alone, so no prefix."""
    X, d = tiny_data.X, tiny_data.n_features
    fm = FlatModel(seeded(TiedTail(d)))
    assert find_structure(fm, X).kind == "split" and split_for(fm, X, depth=2) is None
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    assert_equals_loop(fm, X, tiny_data.y, plane, np.random.default_rng(6).uniform(-1, 1, size=(8, 2)))


class TiedTail(nn.Module):
    """Linear -> ReLU -> Linear, then the second layer's weight again."""

    def __init__(self, d):
        super().__init__()
        self.first, self.second = nn.Linear(d, 4), nn.Linear(4, 4)

    def forward(self, x):
        return (torch.relu(self.second(torch.relu(self.first(x)))) @ self.second.weight).sum(dim=1)


class ReluAndRaw(nn.Module):
    """A pre-activation read twice, by its ReLU and by the sum after it: that ReLU must not run in place."""

    def __init__(self, d):
        super().__init__()
        self.first, self.second, self.head = nn.Linear(d, 8), nn.Linear(8, 8), nn.Linear(8, 1)

    def forward(self, x):
        z = self.second(torch.relu(self.first(x)))
        return self.head(torch.relu(z) + z).squeeze(-1)


def test_per_point_graph_runs_only_unshared_relus_in_place_and_equals_the_loop(tiny_data):
    X, y, d = tiny_data.X, tiny_data.y, tiny_data.n_features
    fm = FlatModel(seeded(ReluAndRaw(d)))
    graph = point_graph(fm, X)
    relus = [node.target for node in graph.graph.nodes if node.target in (torch.ops.aten.relu.default,
                                                                           torch.ops.aten.relu_.default)]
    assert relus == [torch.ops.aten.relu_.default, torch.ops.aten.relu.default]  # the first has one reader
    plane = random_plane(fm.theta0, fm.layout, seed=1)
    assert_equals_loop(fm, X, y, plane, np.random.default_rng(8).uniform(-2, 2, size=(70, 2)))  # several blocks
    assert torch.equal(fm.unflatten(plane.center)["first.weight"], fm.module.first.weight.detach())  # untouched


@pytest.mark.parametrize("inputs, keeps", [(10, False), (100, True)])
def test_a_split_keeps_a_wide_linear_head_and_recomputes_a_narrow_one(inputs, keeps):
    """Both routes give the loop's numbers; which one runs follows the head's fan-in (plane_model.HEAD_FAN_IN)."""
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(30, inputs, generator=g), (torch.arange(30) % 2).float()
    fm = FlatModel(seeded(nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                                        nn.Linear(16, 1), nn.Flatten(0))))
    assert find_structure(fm, X).kind == "split" and keeps_head(fm, split_for(fm, X)) is keeps
    plane = random_plane(fm.theta0, fm.layout, seed=2)
    assert_equals_loop(fm, X, y, plane, np.random.default_rng(9).uniform(-2, 2, size=(20, 2)))


def test_a_conv_head_is_always_kept():
    X, _ = digits_like()
    fm = FlatModel(build_model("cnn", 64, seed=0, image_shape=(1, 8, 8)))
    assert keeps_head(fm, split_for(fm, X))


class LinearPair(nn.Module):
    """Linear(d, 16) then Linear(16, 1): the layers of the value-dependent models below."""

    def __init__(self, d):
        super().__init__()
        self.a, self.c = nn.Linear(d, 16), nn.Linear(16, 1)


class MaskedMean(LinearPair):
    """Boolean-mask indexing: how many activations pass depends on the weights, point by point."""

    def forward(self, x):
        h = torch.relu(self.a(x))
        kept = h[h > 0.5]
        return self.c(h).squeeze(-1) + kept.sum() / max(kept.numel(), 1)


class NonzeroShare(LinearPair):
    """A count read from the values (nonzero(...).shape[0]) becomes a Python number in any trace."""

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(h).squeeze(-1) * (torch.nonzero(h).shape[0] / h.numel())


@pytest.mark.parametrize("module", [MaskedMean, NonzeroShare])
def test_a_model_with_value_dependent_sizes_never_gets_a_frozen_trace(module, tiny_data):
    """Traced at θ0, such a model would reuse θ0's counts at every point: no per-point graph; the surface
    either equals the loop or fails loudly, never silently wrong."""
    X, y = tiny_data.X, tiny_data.y
    fm = FlatModel(seeded(module(tiny_data.n_features)))
    assert point_graph(fm, X) is None
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    coords = np.random.default_rng(1).uniform(-2, 2, size=(6, 2))
    try:
        loss, _ = evaluate_points(fm, X, y, plane, coords)
    except RuntimeError:
        return
    assert np.allclose(loss, loop_oracle(fm, X, y, plane, coords)[0], rtol=1e-5, atol=0)
