"""Beyond the two ends of the Hessian: its top eigenpairs, its trace (Hutchinson) and its density (SLQ)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from eigensolver import LANCZOS_MAX_STEPS, LANCZOS_MIN_STEPS, NonFiniteHessian, lanczos_run, ritz, start_vector
from hessian import (CLOSED_MATRIX_MAX_DIM, EIGENVECTOR_TOL, EXACT_MAX_DIM, _solver_threads, check_theta,
                     has_closed_form, hessian_matrix, operator, resolve_method)

GRID_POINTS = 1000  # default grid of spectral_density
PROBE_BLOCK = 8  # vectors per batched Hessian product at most: on the digits CNN (1 thread) 30 probes took
# 0.31 s one at a time, 0.11 s in blocks of 8, 0.13-0.14 s in blocks of 4, 10 or 16, 0.17 s in one block of 30
SLQ_BASIS_BYTES = 32 * 2 ** 20  # Lanczos runs side by side keep their float64 bases (P, steps, D) within this


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
    standard error 0. Probes come from a torch.Generator seeded by `seed`, and are multiplied in
    blocks (block_product). NaN where H is not finite.
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
        quad = (Z.double() * block_product(matvec, Z).double()).sum(1).cpu().numpy()  # (n_probes,) z^T H z
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

    Probes are Gaussian, probe p from a generator seeded by seed * 100003 + p, one per Lanczos run of
    n_steps (fewer when the Krylov space closes: then the quadrature is exact). The runs go side by
    side (lanczos_lockstep), as many at once as keep their bases within SLQ_BASIS_BYTES.
    """
    check_theta(fm, theta)
    if n_probes < 1 or n_steps < 1:
        raise ValueError(f"n_probes and n_steps must be >= 1, got {n_probes} and {n_steps}")
    theta = theta.detach()
    nodes, weights = np.zeros((n_probes, n_steps)), np.zeros((n_probes, n_steps))
    side_by_side = max(1, SLQ_BASIS_BYTES // (8 * min(n_steps, fm.dim) * fm.dim))
    with _solver_threads():
        try:
            matvec, dtype = operator(fm, X, y, theta)
            for first in range(0, n_probes, side_by_side):
                probes = range(first, min(first + side_by_side, n_probes))
                V0 = torch.stack([start_vector(fm.dim, torch.float64, theta.device, seed=seed * 100003 + p)
                                  for p in probes])  # (P, D)
                runs = lanczos_lockstep(lambda V: block_product(matvec, V.to(dtype)), V0, n_steps)
                for p, (alpha, beta) in zip(probes, runs):
                    values, S = eigh_tridiagonal(alpha, beta[:-1])
                    nodes[p, :len(values)], weights[p, :len(values)] = values, S[0] ** 2
                    nodes[p, len(values):] = values[0]  # padding: weight 0 at an existing node
        except NonFiniteHessian:
            nodes[:] = np.nan
    return nodes, weights


def lanczos_lockstep(matvec, V0: torch.Tensor, n_steps: int) -> list:
    """[(alpha (k,), beta (k,)) per row of V0 (P, D)]: hessian.lanczos_run from each row, all in lockstep.

    Each step multiplies every live run's newest vector in ONE block product matvec((L, D)) and
    reorthogonalises all of them against their own bases with batched matmuls. A run whose Krylov space closes (beta ~ 0) stops there and leaves the block, as
    lanczos_run would stop. Raises NonFiniteHessian on a non-finite product.
    """
    P, D = V0.shape
    S = min(n_steps, D)
    V = V0.new_zeros(P, S, D)  # (L, S, D) bases of the live runs
    V[:, 0] = V0 / V0.norm(dim=1, keepdim=True)
    alpha, beta = np.zeros((P, S)), np.zeros((P, S))
    live, length = np.arange(P), np.full(P, S)  # rows of the live runs in V0; steps each run took
    for k in range(S):
        W = matvec(V[:, k]).to(V.dtype)  # (L, D)
        alpha[live, k] = (V[:, k] * W).sum(1).cpu().numpy()
        W = orthogonalise(W, V[:, :k + 1])
        beta[live, k] = W.norm(dim=1).cpu().numpy()
        if not (np.isfinite(alpha[live, k]).all() and np.isfinite(beta[live, k]).all()):
            raise NonFiniteHessian
        closed = beta[live, k] <= 1e-12 * np.maximum(np.abs(alpha[live, :k + 1]).max(1), 1e-300)
        length[live[closed]] = k + 1
        if closed.any():
            keep = torch.as_tensor(~closed, device=V.device)
            live, V, W = live[~closed], V[keep], W[keep]
        if k + 1 == S or len(live) == 0:
            break
        V[:, k + 1] = W / torch.as_tensor(beta[live, k], dtype=W.dtype, device=W.device)[:, None]
    return [(alpha[p, :length[p]], beta[p, :length[p]]) for p in range(P)]


def orthogonalise(W: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Each row of W (L, D) less its projection on its own orthonormal basis, a row of bases (L, k, D).

    Twice (Kahan), as lanczos_run: then each basis stays orthonormal to rounding. On the CPU in numpy
    on the same memory: its batched float64 matmul took a fifth of torch's bmm (L=10, k=40, D=385 and 1370).
    """
    cpu = W.device.type == "cpu"
    W, bases = (W.numpy(), bases.numpy()) if cpu else (W, bases)
    for _ in range(2):
        W = W - ((bases @ W[:, :, None]).swapaxes(1, 2) @ bases)[:, 0]  # (L, 1, k) @ (L, k, D)
    return torch.from_numpy(W) if cpu else W


def block_product(matvec, V: torch.Tensor) -> torch.Tensor:
    """matvec of every row of V (L, D) -> (L, D), in near-equal batched calls of at most PROBE_BLOCK rows.

    A batched autodiff product gains per vector up to a block that still fits in cache, then loses.
    """
    return torch.cat([matvec(part) for part in V.tensor_split(-(-len(V) // PROBE_BLOCK))])
