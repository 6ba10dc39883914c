"""Trace, density and top eigenpairs side by side: against plain per-probe loops and the float64 Hessian."""
import copy

import numpy as np
import pytest
import torch

import eigensolver
import hessian
import spectrum
from models import FlatModel, build_model
from training import OptimizerSpec, train


def as_float64(fm):
    return FlatModel(copy.deepcopy(fm.module).double(), loss=fm.loss_kind)


@pytest.fixture
def ce_run(tiny_data):
    """A 3-class softmax MLP (D=43): no closed form, so every product goes through autodiff."""
    fm = FlatModel(build_model("mlp", tiny_data.n_features, hidden_dim=5, seed=1, n_classes=3, loss="ce"), loss="ce")
    y = tiny_data.y.long()
    theta = train(fm, tiny_data.X, y, OptimizerSpec("gd", "sgd", 0.5), 30).final
    return fm, tiny_data.X, y, theta


def dense_eigh(fm, X, y, theta):
    """Ascending eigenvalues and eigenvectors of the float64 Hessian (torch.func.hessian)."""
    H = torch.func.hessian(as_float64(fm).loss)(theta.double(), X.double(), y)
    return torch.linalg.eigh(H)


@pytest.mark.parametrize("block", [spectrum.PROBE_BLOCK, 3])
def test_batched_trace_equals_a_plain_loop_over_probes(ce_run, monkeypatch, block):
    fm, X, y, theta = ce_run
    monkeypatch.setattr(spectrum, "PROBE_BLOCK", block)
    estimate, error = spectrum.trace(fm, X, y, theta, n_probes=37, seed=4, exact=False)  # 37: a part block
    generator = torch.Generator().manual_seed(4)
    Z = 2 * torch.randint(0, 2, (37, fm.dim), generator=generator) - 1.0  # the same draw
    quad = np.array([float(z.double() @ hessian.hvp(fm, X, y, theta, z).double()) for z in Z])
    assert estimate == pytest.approx(quad.mean(), rel=1e-5)
    assert error == pytest.approx(quad.std(ddof=1) / np.sqrt(37), rel=1e-4)


def test_hutchinson_trace_within_its_error_of_the_exact_trace(ce_run):
    fm, X, y, theta = ce_run
    exact = float(dense_eigh(fm, X, y, theta)[0].sum())
    assert spectrum.trace(fm, X, y, theta) == (pytest.approx(exact, rel=1e-5), 0.0)  # D <= EXACT_MAX_DIM
    estimate, error = spectrum.trace(fm, X, y, theta, n_probes=300, seed=1, exact=False)
    assert 0 < error < 0.2 * abs(exact) and abs(estimate - exact) < 4 * error


def test_lockstep_lanczos_equals_per_probe_lanczos_runs_that_close_early():
    """A diagonal H with 6 distinct eigenvalues; probes that see 2, 4 and all 6 of them close at 2, 4 and 6 steps."""
    diagonal = torch.tensor([1.0, 1.0, 2.0, -3.0, 5.0, 5.0, 0.5, 7.0, 7.0, 2.0], dtype=torch.float64)
    V0 = torch.randn(4, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # (P, D)
    V0[0] *= torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=torch.float64)  # eigenvalues 1 and 5
    V0[1, 5:] = 0  # 1, 2, -3 and 5
    runs = spectrum.lanczos_lockstep(lambda V: V * diagonal, V0, 9)
    assert [len(alpha) for alpha, _ in runs] == [2, 4, 6, 6]
    for row, (alpha, beta) in zip(V0, runs):
        alpha_loop, beta_loop, _ = eigensolver.lanczos_run(lambda v: v * diagonal, row, 9)
        assert np.allclose(alpha, alpha_loop, atol=1e-12) and np.allclose(beta[:-1], beta_loop[:-1], atol=1e-12)


def test_lockstep_slq_equals_per_probe_lanczos_on_a_model(ce_run, monkeypatch):
    fm, X, y, theta = ce_run
    fm64, X64, theta64 = as_float64(fm), X.double(), theta.double()
    nodes, weights = spectrum.slq_nodes(fm64, X64, y, theta64, n_probes=5, n_steps=20, seed=2)
    matvec = hessian.hvp_function(fm64, X64, y, theta64)
    for p in range(5):
        v0 = eigensolver.start_vector(fm.dim, torch.float64, "cpu", seed=2 * 100003 + p)
        alpha, beta, _ = eigensolver.lanczos_run(matvec, v0, 20)
        values, S = eigensolver.eigh_tridiagonal(alpha, beta[:-1])
        assert np.allclose(nodes[p], values, atol=1e-10) and np.allclose(weights[p], S[0] ** 2, atol=1e-10)
    monkeypatch.setattr(spectrum, "SLQ_BASIS_BYTES", 3 * 8 * 20 * fm.dim)  # runs 3 then 2 side by side,
    monkeypatch.setattr(spectrum, "PROBE_BLOCK", 2)  # their products in calls of 2 and 1
    chunked = spectrum.slq_nodes(fm64, X64, y, theta64, n_probes=5, n_steps=20, seed=2)
    assert np.allclose(chunked[0], nodes, atol=1e-12) and np.allclose(chunked[1], weights, atol=1e-12)


def test_density_has_unit_mass_and_mean_trace_over_d(ce_run):
    """The density's mean is the probes' average Rayleigh quotient, within its error of tr(H) / D."""
    fm, X, y, theta = ce_run
    lam = dense_eigh(fm, X, y, theta)[0].numpy()
    n_probes = 12
    grid, density = spectrum.spectral_density(fm, X, y, theta, n_probes=n_probes, n_steps=15, seed=3)
    step = grid[1] - grid[0]
    assert grid.shape == density.shape == (spectrum.GRID_POINTS,) and (density >= 0).all()
    assert np.sum(density) * step == pytest.approx(1, abs=1e-3)
    # v^T H v for a uniform unit v has variance 2 var(lambda) / (D + 2)
    error = np.sqrt(2 * lam.var() / (fm.dim + 2) / n_probes)
    assert abs(np.sum(grid * density) * step - lam.mean()) < 4 * error


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_top_eigenpairs_against_float64_eigh(ce_run, method):
    fm, X, y, theta = ce_run
    values, vectors = spectrum.top_eigenpairs(fm, X, y, theta, k=2, method=method)
    ref_values, ref_vectors = dense_eigh(fm, X, y, theta)
    assert values.shape == (2,) and vectors.shape == (2, fm.dim)
    assert np.allclose(values.numpy(), ref_values.flip(0)[:2].numpy(), rtol=1e-4)
    overlap = (vectors.double() @ ref_vectors.flip(1)[:, :2]).abs().diagonal()
    assert (overlap > 1 - 1e-4).all()
    largest = vectors.gather(1, vectors.abs().argmax(1, keepdim=True))
    assert (largest > 0).all()  # the sign convention that makes them deterministic
