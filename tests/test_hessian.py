"""Hessian eigenvalues against float64 references, closed forms and finite differences."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import eigensolver
import hessian
import relu_mlp_hessian
import spectrum
from models import FlatModel, build_model
from projection import pca_plane
from training import OptimizerSpec, train


def as_float64(fm):
    """The same model in float64: the reference every float32 method is held against."""
    return FlatModel(copy.deepcopy(fm.module).double(), loss=fm.loss_kind)


def reference_eigh(fm, X, y, theta):
    """Ascending eigenvalues and eigenvectors of the float64 autodiff Hessian (torch.func.hessian)."""
    H = torch.func.hessian(as_float64(fm).loss)(theta.double(), X.double(), y.double())
    return torch.linalg.eigh(H)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and on shared cores their barriers cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trained_mlp(tiny_data):
    fm = FlatModel(build_model("mlp", tiny_data.n_features, hidden_dim=6, seed=3))
    run = train(fm, tiny_data.X, tiny_data.y, OptimizerSpec("gd", "sgd", 0.5), 30)
    return fm, run


def test_hvp_equals_hessian_times_v_and_finite_differences(trained_mlp, tiny_data):
    fm, run = trained_mlp
    fm64, X, y = as_float64(fm), tiny_data.X.double(), tiny_data.y.double()
    theta = run.final.double()
    V = torch.randn(3, fm.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # (3, D)
    H = torch.func.hessian(fm64.loss)(theta, X, y)
    Hv = hessian.hvp(fm64, X, y, theta, V[0])
    assert torch.allclose(Hv, H @ V[0], atol=1e-10)
    g = torch.func.grad(fm64.loss)
    h = 1e-6
    fd = (g(theta + h * V[0], X, y) - g(theta - h * V[0], X, y)) / (2 * h)
    assert torch.allclose(Hv, fd, atol=1e-7)
    product = hessian.hvp_function(fm64, X, y, theta)  # linearised once, then single and batched
    assert torch.allclose(product(V[0]), Hv, atol=1e-12)
    assert torch.allclose(product(V), V @ H, atol=1e-12)


def test_closed_form_mlp_hessian_equals_autodiff(trained_mlp, tiny_data):
    fm, run = trained_mlp
    fm64, X, y = as_float64(fm), tiny_data.X.double(), tiny_data.y.double()
    for theta in (run.params[0].double(), run.final.double()):
        reference = torch.func.hessian(fm64.loss)(theta, X, y)
        assert torch.allclose(hessian.hessian_matrix(fm64, X, y, theta), reference, atol=1e-12)
        assert torch.allclose(hessian._hvp_hessian(fm64, X, y, theta, chunk=7), reference, atol=1e-12)


@pytest.mark.parametrize("method, rtol", [("exact", 1e-4), ("lanczos", 1e-4), ("power", 1e-3)])
def test_every_method_agrees_with_the_float64_reference(trained_mlp, tiny_data, method, rtol):
    fm, run = trained_mlp
    theta = run.final
    reference = torch.linalg.eigvalsh(torch.func.hessian(as_float64(fm).loss)(
        theta.double(), tiny_data.X.double(), tiny_data.y.double()))
    ref_min, ref_max = float(reference[0]), float(reference[-1])
    lam_min, lam_max = hessian.extreme_eigenvalues(fm, tiny_data.X, tiny_data.y, theta, method)
    assert lam_max == pytest.approx(ref_max, rel=rtol)
    assert lam_min == pytest.approx(ref_min, abs=rtol * abs(ref_max) * 10)


@pytest.mark.parametrize("diagonal", [[0.5, -0.2, 1.0, 0.1, 0.3], [0.5, -3.0, 1.0, 0.1, -0.2]])
def test_iterative_solvers_find_both_ends_of_a_known_spectrum(diagonal):
    """Second case: the largest magnitude is the negative end, which power iteration finds first."""
    d = torch.tensor(diagonal * 4)  # (20,) each eigenvalue four times
    calls = []

    def matvec(v):
        calls.append(v)
        return d * v
    for solve, rtol in ((eigensolver.power_extremes, 1e-3), (eigensolver.lanczos_extremes, 1e-6)):
        calls.clear()
        lam_min, lam_max, count = solve(matvec, len(d))
        assert (lam_min, lam_max) == pytest.approx((min(diagonal), max(diagonal)), rel=rtol)
        assert count == sum(len(v) if v.ndim == 2 else 1 for v in calls) > 0  # block Lanczos: per vector


def test_power_iteration_finds_a_dominant_negative_end():
    """A saddle whose negative end is the largest in magnitude, through the whole FlatModel path."""
    class Saddle(nn.Module):  # logit x0 * (w0^2 - 3 w1^2 + 0.5 w2^2): at w = 0, with y = 0,
        def __init__(self):  # the BCE Hessian is sigmoid'(0) * diag(2, -6, 1) = diag(1, -3, 0.5)
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return x[:, 0] * (self.w[0] ** 2 - 3 * self.w[1] ** 2 + 0.5 * self.w[2] ** 2)
    fm = FlatModel(Saddle())
    X, y, theta = torch.ones(4, 3), torch.zeros(4), torch.zeros(3)
    exact = hessian.extreme_eigenvalues(fm, X, y, theta, "exact")
    power = hessian.eigen_result(fm, X, y, theta, "power")
    assert exact == pytest.approx((-3.0, 1.0), rel=1e-6)
    assert np.allclose((power.lam_min, power.lam_max), exact, rtol=1e-3) and power.hvps > 0
    small = hessian.eigen_result(fm, X, y, theta, "lanczos")  # ARPACK needs D >= 4: solved exactly
    assert small.method == "exact" and (small.lam_min, small.lam_max) == pytest.approx(exact)


class Cusp(nn.Module):
    """logit x0 * sum |w|^1.5: finite loss at w = 0, infinite curvature there."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(5))

    def forward(self, x):
        return x[:, 0] * (self.w.abs() ** 1.5).sum()


def test_a_non_finite_hessian_is_nan_in_every_method():
    fm = FlatModel(Cusp())
    X, y, theta = torch.ones(4, 5), torch.zeros(4), torch.zeros(5)
    torch.set_num_threads(2)
    for method in ("exact", "lanczos", "power"):
        result = hessian.eigen_result(fm, X, y, theta, method)
        assert np.isnan(result.lam_min) and np.isnan(result.lam_max) and result.method == method
        assert torch.get_num_threads() == 2  # the solvers' one-thread setting is undone, even on NaN


def test_logistic_hessian_is_the_closed_form_and_convex_along_its_path(tiny_data):
    X, y = tiny_data.X, tiny_data.y
    fm = FlatModel(build_model("logistic", tiny_data.n_features, seed=0))
    run = train(fm, X, y, OptimizerSpec("gd", "sgd", 0.5), 20)
    Xb = torch.cat([X, torch.ones(len(X), 1)], dim=1).double()  # weights first, then the bias
    p = torch.sigmoid(Xb @ run.final.double())
    closed = Xb.T @ (Xb * (p * (1 - p))[:, None]) / len(X)
    assert torch.allclose(hessian.hessian_matrix(fm, X, y, run.final).double(), closed, atol=1e-6)
    curvature = hessian.curvature_along(fm, X, y, run.params, progress=False)
    assert curvature.lam_min.min() >= -1e-6


def test_a_trained_mlp_has_negative_curvature_somewhere(trained_mlp, tiny_data):
    fm, run = trained_mlp
    curvature = hessian.curvature_along(fm, tiny_data.X, tiny_data.y, run.params, progress=False)
    assert curvature.lam_min.min() < 0 < curvature.lam_max.min()


def test_curvature_along_equals_a_loop_and_keeps_the_last_checkpoint(trained_mlp, tiny_data):
    fm, run = trained_mlp
    curvature = hessian.curvature_along(fm, tiny_data.X, tiny_data.y, run.params, every=7, progress=False)
    assert list(curvature.indices) == [0, 7, 14, 21, 28, 30]
    for k, i in enumerate(curvature.indices):
        lam_min, lam_max = hessian.extreme_eigenvalues(fm, tiny_data.X, tiny_data.y, run.params[i], "exact")
        assert (curvature.lam_min[k], curvature.lam_max[k]) == pytest.approx((lam_min, lam_max))


def test_eigen_ratio_map_equals_the_loop_on_a_non_square_grid(trained_mlp, tiny_data):
    fm, run = trained_mlp
    plane = pca_plane(run.params, run.final, fm.layout)
    alphas, betas = np.linspace(-1, 0.5, 4), np.linspace(-0.3, 0.3, 3)
    ratio = hessian.eigen_ratio_map(fm, tiny_data.X, tiny_data.y, plane, alphas, betas, progress=False)
    assert ratio.shape == (3, 4) and (ratio >= 0).all() and np.isfinite(ratio).all()
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            lam_min, lam_max = hessian.extreme_eigenvalues(fm, tiny_data.X, tiny_data.y, plane.points([[a, b]])[0])
            assert ratio[i, j] == pytest.approx(abs(lam_min / lam_max), rel=1e-6)


def test_bad_theta_is_a_value_error(tiny_mlp, tiny_data):
    with pytest.raises(ValueError, match="flat vector"):
        hessian.extreme_eigenvalues(tiny_mlp, tiny_data.X, tiny_data.y, torch.zeros(tiny_mlp.dim + 1))
    bad = tiny_mlp.theta0.clone()
    bad[0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        hessian.extreme_eigenvalues(tiny_mlp, tiny_data.X, tiny_data.y, bad)
    with pytest.raises(ValueError, match="params must be"):
        hessian.curvature_along(tiny_mlp, tiny_data.X, tiny_data.y, torch.zeros(3, tiny_mlp.dim - 1))
    with pytest.raises(ValueError, match="unknown Hessian method"):
        hessian.extreme_eigenvalues(tiny_mlp, tiny_data.X, tiny_data.y, tiny_mlp.theta0, "qr")


def test_curvature_along_a_subset_of_indices_equals_the_full_warm_started_run(tiny_data):
    """One rank's share of the checkpoints: same values as the full run, whose warm starts it lacks."""
    X, y = tiny_data.X, tiny_data.y
    fm = FlatModel(build_model("mlp", tiny_data.n_features, hidden_dim=40, seed=1))  # D = 241: Lanczos
    run = train(fm, X, y, OptimizerSpec("gd", "sgd", 0.5), 12)
    full = hessian.curvature_along(fm, X, y, run.params, progress=False)
    cold = hessian.curvature_along(fm, X, y, run.params, progress=False, warm_start=False)
    part = hessian.curvature_along(fm, X, y, run.params, progress=False, indices=[3, 7, 12])
    assert full.method == "lanczos" and list(part.indices) == [3, 7, 12]
    scale = eigensolver.END_TOL * np.abs(full.lam_max).max()  # each end within END_TOL ‖H‖, warm or cold
    assert np.abs(part.lam_min - full.lam_min[[3, 7, 12]]).max() <= scale
    assert np.abs(part.lam_max - full.lam_max[[3, 7, 12]]).max() <= scale
    assert np.abs(cold.lam_min - full.lam_min).max() <= scale and cold.hvps.sum() > full.hvps.sum()
    for k in (0, 6, 12):
        values, _ = reference_eigh(fm, X, y, run.params[k])
        scale = float(values.abs().max())
        bound, rounding = eigensolver.END_TOL * scale, 1e-6 * scale  # float32 products round at ~1e-7 ‖H‖
        assert float(values[0]) - rounding <= full.lam_min[k] <= float(values[0]) + bound  # a Ritz value never passes the end
        assert float(values[-1]) - bound <= full.lam_max[k] <= float(values[-1]) + rounding
    with pytest.raises(ValueError, match="indices must be rows"):
        hessian.curvature_along(fm, X, y, run.params, indices=[13])


def test_closed_form_is_found_by_structure_and_only_there(tiny_data):
    """A user's nn.Sequential spelling of the MLP takes the closed form; a ReLU6 or leaky one does not."""
    X, y = tiny_data.X, tiny_data.y
    torch.manual_seed(0)
    d, h = tiny_data.n_features, 5
    for act, closed in ((nn.ReLU(), True), (nn.ReLU6(), False), (nn.LeakyReLU(0.1), False)):
        module = nn.Sequential(nn.Linear(d, h), act, nn.Linear(h, 1), nn.Flatten(0))
        for loss in ("bce", "mse"):
            fm = FlatModel(module, loss=loss)
            theta = 3 * fm.theta0  # pre-activations past 6: a ReLU6 differs from a ReLU here
            assert hessian.has_closed_form(fm, X, theta) == closed
            values, _ = reference_eigh(fm, X, y, theta)
            assert torch.allclose(hessian.hessian_matrix(fm, X, y, theta).double(),
                                  torch.func.hessian(as_float64(fm).loss)(theta.double(), X.double(), y.double()),
                                  atol=1e-5)
            lam_min, lam_max = hessian.extreme_eigenvalues(fm, X, y, theta, "lanczos")
            assert (lam_min, lam_max) == pytest.approx((float(values[0]), float(values[-1])), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("method", ["exact", "lanczos", "power"])
def test_multiclass_cross_entropy_extremes_against_the_float64_hessian(method):
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(40, 4, generator=generator)
    y = torch.randint(0, 3, (40,), generator=generator)
    fm = FlatModel(build_model("mlp", 4, hidden_dim=4, seed=0, n_classes=3, loss="ce"), loss="ce")
    run = train(fm, X, y, OptimizerSpec("gd", "sgd", 0.5), 10)
    assert not hessian.has_closed_form(fm, X, run.final)
    values, _ = reference_eigh(fm, X, y, run.final)
    lam_min, lam_max = hessian.extreme_eigenvalues(fm, X, y, run.final, method)
    rtol = 1e-3 if method == "power" else 1e-4
    assert lam_max == pytest.approx(float(values[-1]), rel=rtol)
    assert lam_min == pytest.approx(float(values[0]), abs=rtol * float(values[-1]) * 10)


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_top_eigenpairs_are_the_float64_top_eigenvectors(trained_mlp, tiny_data, method):
    fm, run = trained_mlp
    X, y = tiny_data.X, tiny_data.y
    values, vectors = hessian.top_eigenpairs(fm, X, y, run.final, k=3, method=method)  # via spectrum
    ref_values, ref_vectors = reference_eigh(fm, X, y, run.final)
    assert values.shape == (3,) and vectors.shape == (3, fm.dim) and vectors.dtype == run.final.dtype
    assert np.allclose(values.numpy(), ref_values.flip(0)[:3].numpy(), rtol=1e-5)
    overlap = (vectors.double() @ ref_vectors.flip(1)[:, :3]).abs().diagonal()
    assert (overlap > 1 - 1e-5).all()
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-6)


def test_trace_exact_and_hutchinson_against_the_float64_hessian(trained_mlp, tiny_data):
    fm, run = trained_mlp
    X, y = tiny_data.X, tiny_data.y
    values, _ = reference_eigh(fm, X, y, run.final)
    exact, error = spectrum.trace(fm, X, y, run.final)
    assert error == 0 and exact == pytest.approx(float(values.sum()), rel=1e-5)
    estimate, error = spectrum.trace(fm, X, y, run.final, n_probes=400, seed=1, exact=False)
    assert 0 < error < 0.2 * abs(exact) and abs(estimate - exact) < 4 * error
    assert spectrum.trace(fm, X, y, run.final, n_probes=400, seed=1, exact=False) == (estimate, error)
    assert hessian.trace(fm, X, y, run.final, n_probes=400, seed=1, exact=False) == (estimate, error)


def test_spectral_density_matches_the_broadened_exact_spectrum(trained_mlp, tiny_data):
    """With n_steps >= D each probe's quadrature is exact; averaged weights approach 1/D per eigenvalue."""
    fm, run = trained_mlp
    X, y = tiny_data.X, tiny_data.y
    values, _ = reference_eigh(fm, X, y, run.final)
    lam = values.numpy()
    sigma = 0.05 * (lam[-1] - lam[0])
    grid = np.linspace(lam[0] - 6 * sigma, lam[-1] + 6 * sigma, 2001)
    grid_out, density = spectrum.spectral_density(fm, X, y, run.final, n_probes=100, n_steps=fm.dim,
                                                  grid=grid, sigma=sigma)
    reference = np.exp(-0.5 * ((grid[:, None] - lam) / sigma) ** 2).sum(1) / (fm.dim * sigma * np.sqrt(2 * np.pi))
    step = grid[1] - grid[0]
    assert np.array_equal(grid_out, grid) and np.sum(density) * step == pytest.approx(1, abs=1e-3)
    assert np.abs(density - reference).sum() * step < 0.05  # L1 distance between two unit-mass densities
    assert np.sum(grid * density) * step == pytest.approx(lam.mean(), abs=0.02 * np.abs(lam).max())
    short_grid, short = spectrum.spectral_density(fm, X, y, run.final, n_probes=20, n_steps=10)
    assert np.sum(short) * (short_grid[1] - short_grid[0]) == pytest.approx(1, abs=1e-2)


def test_spectrum_estimators_are_nan_on_a_non_finite_hessian():
    fm = FlatModel(Cusp())
    X, y, theta = torch.ones(4, 5), torch.zeros(4), torch.zeros(5)
    assert np.isnan(spectrum.trace(fm, X, y, theta, exact=False)[0])
    assert np.isnan(spectrum.spectral_density(fm, X, y, theta, n_probes=2, n_steps=3)[1]).all()
    for method in ("exact", "lanczos"):
        values, vectors = spectrum.top_eigenpairs(fm, X, y, theta, k=2, method=method)
        assert values.isnan().all() and vectors.shape == (2, 5) and vectors.isnan().all()


def test_closed_form_products_in_torch_and_numpy_for_a_block_of_vectors(trained_mlp, tiny_data):
    """The CPU path multiplies in numpy, a GPU one in torch: both equal the float64 Hessian, one vector or a block."""
    fm, run = trained_mlp
    X, y = tiny_data.X, tiny_data.y
    (h, d), theta = fm.layout[0].shape, run.params[15]
    V = torch.randn(3, fm.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # (3, D)
    expected = V @ torch.func.hessian(as_float64(fm).loss)(theta.double(), X.double(), y.double())
    parts = relu_mlp_hessian.relu_mlp_parts(relu_mlp_hessian.ReluMLP.from_theta(theta, h, d), fm.loss_kind, X, y)
    assert torch.allclose(relu_mlp_hessian.relu_mlp_product(parts, torch.cat)(V), expected, atol=1e-12)
    numpy_product = relu_mlp_hessian.relu_mlp_product(tuple(p.numpy() for p in parts), np.concatenate)
    assert np.allclose(numpy_product(V.numpy()), expected.numpy(), atol=1e-12)
    single = hessian.operator(fm, X, y, theta)[0]
    assert torch.allclose(single(V[1]), expected[1], atol=1e-12)
    fast, dtype = hessian.operator(fm, X, y, theta, torch.float32)  # what the solvers use at END_TOL
    assert dtype == torch.float32 and torch.allclose(fast(V.float()).double(), expected, atol=1e-5)


def symmetric_with_spectrum(values, seed=0) -> tuple:
    """(H, eigenvectors as columns): a float64 symmetric matrix with the given eigenvalues, seeded basis."""
    D = len(values)
    basis, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return basis @ torch.diag(torch.as_tensor(values, dtype=torch.float64)) @ basis.T, basis


def mlp_like_spectrum(D=120, seed=0) -> np.ndarray:
    """A few large values on top, a bulk near 0 and a dense negative cluster near -0.01 (spacing 3e-4), as at the MLP."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[1.0, 0.5, 0.3], rng.uniform(-1e-3, 0.05, D - 23), -0.01 + 3e-4 * np.arange(20)])


def assert_ends_within_tol(lo, hi, values):
    bound = eigensolver.END_TOL * np.abs(values).max()
    assert values.min() - 1e-9 <= lo <= values.min() + bound and values.max() - bound <= hi <= values.max() + 1e-9


def test_block_ends_find_a_dominant_negative_end_of_a_saddle():
    """Against dense eigvalsh: the negative end is the largest in magnitude."""
    values = mlp_like_spectrum()
    values[:3] = [-1.0, 0.4, 0.2]
    H, _ = symmetric_with_spectrum(values)
    lo, hi, count = eigensolver.lanczos_extremes(lambda V: V @ H, len(values), torch.float64)
    assert_ends_within_tol(lo, hi, torch.linalg.eigvalsh(H).numpy())
    assert lo == pytest.approx(-1.0, abs=1e-6) and count < len(values)


def test_warm_started_sequence_whose_low_eigenvectors_rotate():
    """Each step turns the lowest eigenvectors by 0.6 rad into the bulk and moves the cluster: warm starts stay within tol."""
    values = mlp_like_spectrum()
    _, basis = symmetric_with_spectrum(values)
    low, bulk = np.argsort(values)[:6], np.argsort(values)[40:46]
    warm, counts = None, []
    for step in range(8):
        angle = 0.6 * step
        B = basis.clone()
        B[:, low] = np.cos(angle) * basis[:, low] + np.sin(angle) * basis[:, bulk]
        B[:, bulk] = -np.sin(angle) * basis[:, low] + np.cos(angle) * basis[:, bulk]
        shifted = values + 2e-3 * np.sin(step) * (np.arange(len(values)) % 3)  # eigenvalues cross in the cluster
        H = B @ torch.diag(torch.as_tensor(shifted)) @ B.T
        lo, hi, count, warm = eigensolver.lanczos_ends(lambda V: V @ H, len(values), torch.float64, warm=warm)
        assert_ends_within_tol(lo, hi, torch.linalg.eigvalsh(H).numpy())
        counts.append(count)
    assert warm.shape == (eigensolver.WARM_LOW + eigensolver.WARM_HIGH, len(values))


def test_warm_vectors_that_miss_the_lowest_eigenvector():
    """Warm vectors spanning the 2nd..5th lowest eigenvectors and the top one, none of the lowest: still found."""
    values = mlp_like_spectrum()
    values[np.argmin(values)] = -0.02  # an eigenvalue that fell out of the cluster since the warm point
    H, basis = symmetric_with_spectrum(values)
    order = np.argsort(values)
    warm = basis[:, np.r_[order[1:5], order[-1]]].T  # (5, D), orthogonal to the lowest eigenvector
    lo, hi, _, _ = eigensolver.lanczos_ends(lambda V: V @ H, len(values), torch.float64, warm=warm)
    assert_ends_within_tol(lo, hi, torch.linalg.eigvalsh(H).numpy())
    assert lo == pytest.approx(-0.02, abs=eigensolver.END_TOL)


def test_unit_directions_bound_the_negative_end_of_the_closed_form(trained_mlp, tiny_data):
    """H = PSD Gauss-Newton + cross terms of norm ‖C_k‖: λmin >= -max ‖C_k‖, and each unit direction's
    Rayleigh quotient lies in [-‖C_k‖, λmax]; the directions are orthonormal. Against the float64 oracle."""
    fm, run = trained_mlp
    X, y = tiny_data.X, tiny_data.y
    theta = run.params[len(run.params) // 2]
    mlp = relu_mlp_hessian.relu_mlp_weights(fm, X, theta)
    C = relu_mlp_hessian.relu_mlp_parts(mlp, fm.loss_kind, X, y)[4]
    V = relu_mlp_hessian.unit_directions(C, 4)  # (4, D)
    values, _ = reference_eigh(fm, X, y, theta)
    H = hessian.hessian_matrix(as_float64(fm), X.double(), y.double(), theta.double()).numpy()
    norms = np.sort(C.norm(dim=1).numpy())[::-1][:4]
    np.testing.assert_allclose(V @ V.T, np.eye(4), atol=1e-12)
    assert values[0].item() >= -norms[0] - 1e-9
    quotients = np.einsum("kd,de,ke->k", V, H, V)
    assert (quotients >= -norms - 1e-9).all() and (quotients >= values[0].item() - 1e-9).all()
