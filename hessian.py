"""Hessian eigenvalues of the loss: products (autodiff, or the closed form of a ReLU MLP), both ends along paths and over planes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import grad, jvp, vjp, vmap
from tqdm import tqdm

from eigensolver import END_TOL, NonFiniteHessian, finite_products, lanczos_ends, power_extremes
from relu_mlp_hessian import relu_mlp_matrix, relu_mlp_operator, relu_mlp_parts, relu_mlp_weights, unit_directions

METHODS = ("auto", "exact", "lanczos", "power")
EXACT_MAX_DIM = 100  # "auto" builds a general model's full Hessian (D products) only up to this: Lanczos needs ~50
CLOSED_MATRIX_MAX_DIM = 2000  # the closed-form Hessian (ReLU MLP) is a cheap matrix up to this many weights
CLOSED_EXACT_MAX_DIM = 128  # closed-form Lanczos vs eigvalsh: even at D=385, 4x faster at D=1025 (warm-startable)
HVP_CHUNK = 32  # identity columns per vmapped batch of HVPs: 32-64 measured fastest at D=385, n=1000
FLOAT32_TOL = 1e-5  # from this tolerance up, the closed form multiplies in float32 (rounding ~1e-7 ‖H‖):
# 2x faster at D=3073, 1.4x at D=385 (blocks of 5, measured side by side)
EIGENVECTOR_TOL = 1e-8  # top_eigenpairs: residuals of the top vectors below sqrt(this) ‖H‖
UNIT_STARTS = 8  # closed-form MLP: directions of the most negative cross terms added to every start block
SOLVER_THREADS = 1  # torch threads while solving (see _solver_threads); None keeps torch's own setting


@dataclass
class EigenResult:
    """Both ends of the Hessian spectrum at one point, and what they cost."""
    lam_min: float
    lam_max: float
    method: str  # the method that ran ("auto" resolved)
    hvps: int  # Hessian-vector products: one per power or Lanczos iteration, 0 for the closed form
    vectors: torch.Tensor | None = field(default=None, repr=False)  # (k, D) Ritz vectors: a warm start


@dataclass
class Curvature:
    """Extreme Hessian eigenvalues at some checkpoints of a path."""
    indices: np.ndarray  # (K,) checkpoint rows
    lam_max: np.ndarray  # (K,)
    lam_min: np.ndarray  # (K,)
    method: str
    hvps: np.ndarray | None = None  # (K,) Hessian-vector products per checkpoint


def check_theta(fm, theta: torch.Tensor) -> torch.Tensor:
    if theta.ndim != 1 or theta.shape[0] != fm.dim:
        raise ValueError(f"theta must be a flat vector of {fm.dim} weights, got shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("theta contains non-finite values: no Hessian there")
    return theta


# ---------------------------------------------------------------- Hessian-vector products

def hvp(fm, X, y, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One Hessian-vector product H(theta) v by forward-over-reverse differentiation (jvp of grad)."""
    out = jvp(lambda t: grad(fm.loss)(t, X, y), (theta,), (v,))[1]
    return out.to(v.dtype)  # torch's jvp rule for pow can promote to float64


def hvp_function(fm, X, y, theta: torch.Tensor):
    """v -> H(theta) v for many v at one theta, batched ones (K, D) too.

    Reverse over reverse (the vjp of grad): H is symmetric, so v^T H = (H v)^T. The forward and
    backward pass of grad are taken once here and every product only replays the backward of
    that backward: 6x faster than `hvp` per product at the default MLP.
    """
    _, pullback = vjp(lambda t: grad(fm.loss)(t, X, y), theta.detach())
    batched = vmap(pullback)

    def product(v: torch.Tensor) -> torch.Tensor:
        return (pullback(v) if v.ndim == 1 else batched(v))[0]
    return product


def operator(fm, X, y, theta: torch.Tensor, closed_dtype=torch.float64):
    """(matvec, dtype) of H(theta): the closed form (in closed_dtype) where the model has one, else autodiff HVPs."""
    weights = relu_mlp_weights(fm, X, theta)
    if weights is not None:
        return relu_mlp_operator(weights, fm.loss_kind, X, y, closed_dtype), closed_dtype
    return hvp_function(fm, X, y, theta), theta.dtype


# ---------------------------------------------------------------- the full matrix

def hessian_matrix(fm, X, y, theta: torch.Tensor, chunk: int = HVP_CHUNK) -> torch.Tensor:
    """The full (D, D) Hessian: in closed form for a scalar-output ReLU MLP, else from batches of HVPs."""
    check_theta(fm, theta)
    weights = relu_mlp_weights(fm, X, theta)
    if weights is not None:
        return relu_mlp_matrix(weights, fm.loss_kind, X, y).to(theta.dtype)
    return _hvp_hessian(fm, X, y, theta, chunk)


def has_closed_form(fm, X, theta) -> bool:
    return relu_mlp_weights(fm, X, theta) is not None


def _hvp_hessian(fm, X, y, theta, chunk=HVP_CHUNK):
    """H against the identity, `chunk` columns per vmapped batch, symmetrised: works for any module.

    Faster than torch.func.hessian (jacfwd of jacrev, which redoes the forward pass per column).
    """
    product = hvp_function(fm, X, y, theta)
    eye = torch.eye(fm.dim, dtype=theta.dtype, device=theta.device)
    H = torch.cat([product(eye[i:i + chunk]) for i in range(0, fm.dim, chunk)])
    return (H + H.T) / 2


_SOLVING = [False]  # inside _solver_threads already: nested calls (one per checkpoint) cost nothing


@contextlib.contextmanager
def _solver_threads():
    """torch on SOLVER_THREADS threads while eigenvalues are computed, then as it was.

    At the default size every op is small (HVPs on (1000, 32) tensors, a 385 x 385 eigvalsh), so
    extra threads gain little, and on a busy machine their spinning barriers cost a lot: on 2
    shared cores one thread made eigvalsh 35x, Lanczos 5x and power iteration 5-9x faster.
    Reentrant, because entering costs ~1 ms (threadpoolctl scans the loaded libraries): a
    curvature_along enters once, not once per checkpoint.
    """
    if _SOLVING[0]:
        yield
        return
    from threadpoolctl import threadpool_limits  # numpy's BLAS too (installed with scikit-learn)
    threads = torch.get_num_threads()
    torch.set_num_threads(SOLVER_THREADS or threads)
    _SOLVING[0] = True
    try:
        with threadpool_limits(SOLVER_THREADS, user_api="blas"):
            yield
    finally:
        _SOLVING[0] = False
        torch.set_num_threads(threads)


def _symmetric_eigenvalues(H: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of a symmetric H.

    float32 eigh can fail on the near-singular Hessians of saturated networks; float64 does not.
    """
    if not torch.isfinite(H).all():
        raise NonFiniteHessian
    try:
        return torch.linalg.eigvalsh(H)
    except torch.linalg.LinAlgError:
        return torch.linalg.eigvalsh(H.double().cpu())


# ---------------------------------------------------------------- public entry points

def resolve_method(method: str, dim: int, closed: bool = False) -> str:
    """"auto" -> "exact" while the full matrix is cheaper than Lanczos, else "lanczos"."""
    if method not in METHODS:
        raise ValueError(f"unknown Hessian method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "auto":
        return "exact" if dim <= (CLOSED_EXACT_MAX_DIM if closed else EXACT_MAX_DIM) else "lanczos"
    if method == "lanczos" and dim < 4:  # too small to be worth a Krylov space
        return "exact"
    return method


def extreme_eigenvalues(fm, X, y, theta: torch.Tensor, method: str = "auto", **kwargs) -> tuple:
    """(lambda_min, lambda_max) of the Hessian of the loss at theta, as floats (NaN if not finite).

    "exact": full Hessian and a symmetric eigen-solver (what "auto" picks for small D);
    "lanczos": block Krylov on Hessian-vector products (eigensolver.lanczos_ends; the closed form for a
    ReLU MLP), both ends to within tol ‖H‖ (END_TOL by default);
    "power": power iteration, then power iteration shifted by the first eigenvalue.
    """
    result = eigen_result(fm, X, y, theta, method, **kwargs)
    return result.lam_min, result.lam_max


def eigen_result(fm, X, y, theta: torch.Tensor, method: str = "auto", tol: float | None = None,
                 seed: int = 0, warm: torch.Tensor | None = None) -> EigenResult:
    """Both ends of the spectrum by the chosen method, with the number of HVPs it took.

    warm: Ritz vectors (k, D) of a nearby point (a previous EigenResult.vectors) to start Lanczos from.
    """
    check_theta(fm, theta)
    weights = relu_mlp_weights(fm, X, theta.detach())  # the closed form's weights, None without one
    method = resolve_method(method, fm.dim, weights is not None)
    with _solver_threads():
        try:
            return _solve(fm, X, y, theta.detach(), method, tol, seed, warm, weights)
        except NonFiniteHessian:
            return EigenResult(float("nan"), float("nan"), method, 0)


def _solve(fm, X, y, theta, method, tol, seed, warm, weights) -> EigenResult:
    if method == "exact":
        eig = _symmetric_eigenvalues(hessian_matrix(fm, X, y, theta))
        return EigenResult(float(eig[0]), float(eig[-1]), method, 0 if weights is not None else fm.dim)
    fast = (tol or END_TOL) >= FLOAT32_TOL  # float32 rounding is far below the tolerance: 2x faster products
    dtype, extra = torch.float32 if fast else torch.float64, None
    if weights is not None and method == "lanczos":
        parts = relu_mlp_parts(weights, fm.loss_kind, X, y, dtype)
        matvec, extra = relu_mlp_operator(weights, fm.loss_kind, X, y, dtype, parts), unit_directions(parts[4], UNIT_STARTS)
    else:
        matvec, dtype = operator(fm, X, y, theta, dtype)
    options = {"tol": tol} if tol is not None else {}
    if method == "power":
        ends = power_extremes(finite_products(matvec), fm.dim, dtype, theta.device, seed=seed, **options)
        return EigenResult(ends[0], ends[1], method, ends[2])
    lo, hi, count, vectors = lanczos_ends(matvec, fm.dim, dtype, theta.device, seed=seed, warm=warm,
                                          extra=extra, **options)
    return EigenResult(lo, hi, method, count, vectors)


def checkpoint_indices(n_checkpoints: int, every: int) -> np.ndarray:
    """Every `every`-th row from 0, and the last row always."""
    return np.unique(np.r_[np.arange(0, n_checkpoints, max(1, every)), n_checkpoints - 1])


def curvature_along(fm, X, y, trajectory, every: int = 1, method: str = "auto", progress: bool = True,
                    indices=None, warm_start: bool = True, tol: float | None = None) -> Curvature:
    """lambda_max and lambda_min at every `every`-th checkpoint (the last one always), or at `indices`.

    trajectory: a training.Trajectory or its params (T, D). Lanczos at each checkpoint starts
    from the previous one's Ritz vectors (warm_start); it converges far enough that any subset of
    indices (one rank's share) gives the full run's values to ~1e-8 relative.
    """
    params = getattr(trajectory, "params", trajectory)
    if params.ndim != 2 or params.shape[0] == 0 or params.shape[1] != fm.dim:
        raise ValueError(f"params must be a non-empty (T, {fm.dim}) matrix, got shape {tuple(params.shape)}")
    indices = checkpoint_indices(len(params), every) if indices is None else np.asarray(indices, dtype=int)
    if indices.ndim != 1 or ((indices < 0) | (indices >= len(params))).any():
        raise ValueError(f"indices must be rows of the {len(params)} checkpoints, got {indices.tolist()}")
    results, warm = [], None
    with _solver_threads():
        for i in tqdm(indices, desc="curvature", unit="ckpt", leave=False, disable=not progress or None):
            result = eigen_result(fm, X, y, params[i], method, tol=tol, warm=warm)
            warm = result.vectors if warm_start else None
            results.append(result)
    lam_min, lam_max, hvps = (np.array([getattr(r, a) for r in results], dtype=float)
                              for a in ("lam_min", "lam_max", "hvps"))
    method = results[0].method if results else resolve_method(method, fm.dim)
    return Curvature(indices, lam_max, lam_min, method, hvps)


def eigen_ratio_map(fm, X, y, plane, alphas, betas, method: str = "auto", progress: bool = True) -> np.ndarray:
    """|lambda_min / lambda_max| at center + alphas[j] u + betas[i] v -> (B, A), rows following betas.

    Near 0 the surface is locally convex; large values mean strong negative curvature
    (Li et al. 2018's convexity map). Where lambda_max is 0 the ratio is undefined (NaN).
    The grid is walked row by row in a snake, so each point warm-starts from a neighbour.
    """
    aa, bb = np.meshgrid(np.asarray(alphas, float), np.asarray(betas, float))  # (B, A)
    snake = np.arange(aa.size).reshape(aa.shape)
    snake[1::2] = snake[1::2, ::-1]
    order = snake.ravel()
    points = plane.points(np.stack([aa.ravel()[order], bb.ravel()[order]], axis=1))
    curvature = curvature_along(fm, X, y, points, 1, method, progress)
    lam_min, lam_max = np.empty(aa.size), np.empty(aa.size)
    lam_min[order], lam_max[order] = curvature.lam_min, curvature.lam_max
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(lam_min / lam_max)
    return np.where(lam_max != 0, ratio, np.nan).reshape(aa.shape)



# ---------------------------------------------------------------- estimators that live in spectrum.py

def trace(fm, X, y, theta: torch.Tensor, n_probes: int = 100, seed: int = 0, exact: bool | None = None) -> tuple:
    """(estimate, standard error) of tr H by Hutchinson, exact for small D: spectrum.trace."""
    import spectrum  # spectrum builds on this module
    return spectrum.trace(fm, X, y, theta, n_probes, seed, exact)


def top_eigenpairs(fm, X, y, theta: torch.Tensor, k: int = 2, method: str = "auto", tol: float = EIGENVECTOR_TOL,
                   seed: int = 0) -> tuple:
    """The k largest eigenvalues (k,) and unit eigenvectors (k, D): spectrum.top_eigenpairs."""
    import spectrum
    return spectrum.top_eigenpairs(fm, X, y, theta, k, method, tol, seed)


def spectral_density(fm, X, y, theta: torch.Tensor, n_probes: int = 10, n_steps: int = 80, grid=None,
                     sigma: float | None = None, seed: int = 0) -> tuple:
    """(grid, density) by stochastic Lanczos quadrature: spectrum.spectral_density."""
    import spectrum
    return spectrum.spectral_density(fm, X, y, theta, n_probes, n_steps, grid, sigma, seed)
