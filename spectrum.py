"""Beyond the two ends of the Hessian: its top eigenpairs, its trace (Hutchinson) and its density (SLQ)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from hessian import (CLOSED_MATRIX_MAX_DIM, EXACT_MAX_DIM, LANCZOS_MAX_STEPS, LANCZOS_MIN_STEPS, EIGENVECTOR_TOL, NonFiniteHessian,
                     _solver_threads, check_theta, has_closed_form, hessian_matrix, lanczos_run,
                     operator, resolve_method, ritz, start_vector)

GRID_POINTS = 1000  # default grid of spectral_density


def top_eigenpairs(fm, X, y, theta: torch.Tensor, k: int = 2, method: str = "auto",
                   tol: float = EIGENVECTOR_TOL, seed: int = 0) -> tuple:
    """The k largest (algebraic) eigenvalues (k,) descending and unit eigenvectors (k, D), in theta's dtype.

    Each vector's largest-magnitude entry is positive, so the result is deterministic. "exact" uses
    the full matrix; "lanczos" runs until the top k Ritz vectors' residuals meet sqrt(tol) ‖H‖.
    Plane(center=theta, u=vectors[0], v=vectors[1]) is the landscape along the sharpest directions.
    """
    check_theta(fm, theta)
    if not 1 <= k <= fm.dim:
        raise ValueError(f"k must be in [1, {fm.dim}], got {k}")
    method = resolve_method(method, fm.dim, has_closed_form(fm, X, theta))
    with _solver_threads():
        try:
            values, vectors = (_top_exact if method == "exact" or k >= fm.dim - 1 else _top_lanczos)(
                fm, X, y, theta.detach(), k, tol, seed)
        except NonFiniteHessian:
            return theta.new_full((k,), float("nan")), theta.new_full((k, fm.dim), float("nan"))
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))  # (k, 1)
    return (torch.as_tensor(values.copy(), dtype=theta.dtype, device=theta.device),
            (vectors * signs).to(theta.dtype))


def _top_exact(fm, X, y, theta, k, tol, seed):
    H = hessian_matrix(fm, X, y, theta).double()
    if not torch.isfinite(H).all():
        raise NonFiniteHessian
    values, vectors = torch.linalg.eigh(H)
    return values.flip(0)[:k].cpu().numpy(), vectors.flip(1)[:, :k].T


def _top_lanczos(fm, X, y, theta, k, tol, seed):
    matvec, dtype = operator(fm, X, y, theta)

    def converged(alpha, beta):
        if len(alpha) < max(LANCZOS_MIN_STEPS, k + 1):
            return False
        values, S = eigh_tridiagonal(alpha, beta[:-1])
        residual = beta[-1] * np.abs(S[-1, -k:])
        return bool((residual <= tol ** 0.5 * np.abs(values).max()).all())
    v0 = start_vector(fm.dim, torch.float64, theta.device, seed)
    alpha, beta, V = lanczos_run(lambda v: matvec(v.to(dtype)), v0, LANCZOS_MAX_STEPS, converged)
    return ritz(alpha, beta, V, list(range(len(alpha) - 1, len(alpha) - 1 - k, -1)))


def trace(fm, X, y, theta: torch.Tensor, n_probes: int = 100, seed: int = 0, exact: bool | None = None) -> tuple:
    """(estimate, standard error) of tr H: Hutchinson's mean of z^T H z over Rademacher probes z.

    exact (default: while the full Hessian is cheap: D <= EXACT_MAX_DIM, or a closed form up to
    CLOSED_MATRIX_MAX_DIM) sums the diagonal of the full Hessian instead, with
    standard error 0. Probes come from a torch.Generator seeded by `seed`. NaN where H is not finite.
    """
    check_theta(fm, theta)
    theta = theta.detach()
    with _solver_threads():
        cheap = fm.dim <= EXACT_MAX_DIM or (fm.dim <= CLOSED_MATRIX_MAX_DIM and has_closed_form(fm, X, theta))
        if cheap if exact is None else exact:
            return float(torch.diagonal(hessian_matrix(fm, X, y, theta)).double().sum()), 0.0
        if n_probes < 2:
            raise ValueError(f"n_probes must be >= 2 for a standard error, got {n_probes}")
        matvec, dtype = operator(fm, X, y, theta)
        generator = torch.Generator().manual_seed(seed)
        Z = (2 * torch.randint(0, 2, (n_probes, fm.dim), generator=generator) - 1).to(theta.device, dtype)
        quad = torch.stack([z.double() @ matvec(z).double() for z in Z]).cpu().numpy()  # (n_probes,)
    if not np.isfinite(quad).all():
        return float("nan"), float("nan")
    return float(quad.mean()), float(quad.std(ddof=1) / np.sqrt(n_probes))


def spectral_density(fm, X, y, theta: torch.Tensor, n_probes: int = 10, n_steps: int = 80, grid=None,
                     sigma: float | None = None, seed: int = 0) -> tuple:
    """(grid (G,), density (G,)) of the Hessian's eigenvalues by stochastic Lanczos quadrature.

    Ghorbani et al. 2019: each Gaussian probe's Lanczos run gives nodes (Ritz values) and weights
    (squared first components of their vectors), a quadrature of v^T f(H) v / ‖v‖²; the average over
    probes, each node broadened by a Gaussian of width sigma, estimates the density, which
    integrates to ~1 over a grid that covers the spectrum (the default: its range plus 5 sigma each
    side; sigma defaults to 1 % of that range). Its mean is tr(H) / D in expectation.
    """
    nodes, weights = slq_nodes(fm, X, y, theta, n_probes, n_steps, seed)  # (P, S) each
    if not np.isfinite(nodes).all():
        grid = np.linspace(-1, 1, GRID_POINTS) if grid is None else np.asarray(grid, float)
        return grid, np.full(grid.shape, np.nan)
    low, high = nodes.min(), nodes.max()
    if sigma is None:
        sigma = 0.01 * (high - low) or 1e-3 * max(abs(high), 1.0)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    grid = np.linspace(low - 5 * sigma, high + 5 * sigma, GRID_POINTS) if grid is None else np.asarray(grid, float)
    gauss = np.exp(-0.5 * ((grid[:, None] - nodes.ravel()[None, :]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return grid, gauss @ weights.ravel() / n_probes  # (G, P*S) @ (P*S,)


def slq_nodes(fm, X, y, theta: torch.Tensor, n_probes: int = 10, n_steps: int = 80, seed: int = 0) -> tuple:
    """Lanczos quadrature nodes and weights per probe, (n_probes, S) each (S <= n_steps; padded with weight 0).

    Probes are Gaussian from a generator seeded by `seed`, one per Lanczos run of n_steps (fewer
    when the Krylov space closes: then the quadrature is exact).
    """
    check_theta(fm, theta)
    if n_probes < 1 or n_steps < 1:
        raise ValueError(f"n_probes and n_steps must be >= 1, got {n_probes} and {n_steps}")
    theta = theta.detach()
    nodes, weights = np.zeros((n_probes, n_steps)), np.zeros((n_probes, n_steps))
    with _solver_threads():
        try:
            matvec, dtype = operator(fm, X, y, theta)
            for p in range(n_probes):
                v0 = start_vector(fm.dim, torch.float64, theta.device, seed=seed * 100003 + p)
                alpha, beta, _ = lanczos_run(lambda v: matvec(v.to(dtype)), v0, n_steps)
                values, S = eigh_tridiagonal(alpha, beta[:-1])
                nodes[p, :len(values)], weights[p, :len(values)] = values, S[0] ** 2
                nodes[p, len(values):] = values[0]  # padding: weight 0 at an existing node
        except NonFiniteHessian:
            nodes[:] = np.nan
    return nodes, weights
