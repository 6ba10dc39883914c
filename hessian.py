"""Hessian eigenvalues of the loss: exact, Lanczos and power iteration, along paths and over planes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, jvp, vjp, vmap
from tqdm import tqdm

METHODS = ("auto", "exact", "lanczos", "power")
EXACT_MAX_DIM = 2000  # "auto" builds the full Hessian up to this many weights
HVP_CHUNK = 32  # identity columns per vmapped batch of HVPs: 32-64 measured fastest at D=385, n=1000
LANCZOS_TOL = 1e-5  # ARPACK's relative residual; float32 HVPs carry ~1e-7 relative noise
POWER_TOL = 1e-7  # power iteration stops when the Rayleigh quotient moves less than this, relative
SOLVER_THREADS = 1  # torch threads while solving (see _solver_threads); None keeps torch's own setting


@dataclass
class EigenResult:
    """Both ends of the Hessian spectrum at one point, and what they cost."""
    lam_min: float
    lam_max: float
    method: str  # the method that ran ("auto" resolved)
    hvps: int  # Hessian-vector products: one per power or Lanczos iteration, 0 for the closed form


@dataclass
class Curvature:
    """Extreme Hessian eigenvalues at some checkpoints of a path."""
    indices: np.ndarray  # (K,) checkpoint rows
    lam_max: np.ndarray  # (K,)
    lam_min: np.ndarray  # (K,)
    method: str


class NonFiniteHessian(ArithmeticError):
    """The loss has no finite curvature here (a run that blew up): reported as NaN, not raised."""


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


# ---------------------------------------------------------------- the full matrix

def hessian_matrix(fm, X, y, theta: torch.Tensor, chunk: int = HVP_CHUNK) -> torch.Tensor:
    """The full (D, D) Hessian: in closed form for the project's MLP, else from batches of HVPs."""
    check_theta(fm, theta)
    if has_closed_form(fm):
        return _mlp_hessian(fm, X, y, theta)
    return _hvp_hessian(fm, X, y, theta, chunk)


def has_closed_form(fm) -> bool:
    from models import MLP
    return type(fm.module) is MLP


def _hvp_hessian(fm, X, y, theta, chunk=HVP_CHUNK):
    """H against the identity, `chunk` columns per vmapped batch, symmetrised: works for any module.

    Faster than torch.func.hessian (jacfwd of jacrev, which redoes the forward pass per column).
    """
    product = hvp_function(fm, X, y, theta)
    eye = torch.eye(fm.dim, dtype=theta.dtype, device=theta.device)
    H = torch.cat([product(eye[i:i + chunk]) for i in range(0, fm.dim, chunk)])
    return (H + H.T) / 2


def _mlp_hessian(fm, X, y, theta):
    """Closed-form Hessian of mean BCE for Linear -> ReLU -> Linear (exact wherever no
    pre-activation is exactly 0, i.e. almost everywhere).

    H = (1/n) sum_i s_i J_i^T J_i + (1/n) sum_i r_i d2f_i, with f_i the logit, J_i its gradient,
    p_i = sigmoid(f_i), s_i = p_i (1 - p_i), r_i = p_i - y_i. ReLU is piecewise linear, so the
    only second derivatives of f_i couple an output weight w2_k with its unit's incoming
    weights and bias: d2f / dw2_k dW1_kj = m_ik x_ij and d2f / dw2_k db1_k = m_ik (m = ReLU mask).
    One (D, n) x (n, D) product replaces D Hessian-vector products: at the default size 9 ms, against
    150 ms for the vmapped HVPs and 350 ms for torch.func.hessian.
    """
    p = fm.unflatten(theta)
    W1, b1, w2 = p["fc1.weight"], p["fc1.bias"], p["fc2.weight"][0]  # (h, d), (h,), (h,)
    n, (h, d) = X.shape[0], W1.shape
    z = X @ W1.T + b1  # (n, h) pre-activations
    mask = (z > 0).to(X.dtype)
    prob = torch.sigmoid(torch.relu(z) @ w2 + p["fc2.bias"][0])  # (n,)
    s, r = prob * (1 - prob), prob - y
    wm = mask * w2  # (n, h): d f / d z
    J = torch.cat([(wm[:, :, None] * X[:, None, :]).reshape(n, h * d), wm, torch.relu(z),
                   torch.ones(n, 1, dtype=X.dtype, device=X.device)], dim=1)  # (n, D) in layout order
    H = (J.T * s) @ J / n
    off = {slot.name: slot.offset for slot in fm.layout}
    units = torch.arange(h, device=X.device)
    rows = off["fc2.weight"] + units
    cross_w = (r[:, None] * mask).T @ X / n  # (h, d): sum_i r_i m_ik x_ij / n
    cross_b = (r[:, None] * mask).sum(0) / n  # (h,)
    cols_w = off["fc1.weight"] + torch.arange(h * d, device=X.device).view(h, d)
    H[rows[:, None], cols_w] += cross_w
    H[cols_w, rows[:, None]] += cross_w
    H[rows, off["fc1.bias"] + units] += cross_b
    H[off["fc1.bias"] + units, rows] += cross_b
    return H


@contextlib.contextmanager
def _solver_threads():
    """torch on SOLVER_THREADS threads while eigenvalues are computed, then as it was.

    At the default size every op is small (HVPs on (1000, 32) tensors, a 385 x 385 eigvalsh), so
    extra threads gain little, and on a busy machine their spinning barriers cost a lot: on 2
    shared cores one thread made eigvalsh 35x, Lanczos 5x and power iteration 5-9x faster.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(SOLVER_THREADS or threads)
    try:
        yield
    finally:
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


# ---------------------------------------------------------------- iterative methods

def _finite(matvec):
    """matvec that raises NonFiniteHessian instead of feeding NaN to an iterative solver."""
    def checked(v):
        w = matvec(v)
        if not torch.isfinite(w).all():
            raise NonFiniteHessian
        return w
    return checked


def lanczos_extremes(matvec, dim: int, dtype=torch.float32, device="cpu", tol: float = LANCZOS_TOL,
                     seed: int = 0) -> tuple:
    """(lambda_min, lambda_max, products used) by ARPACK's implicitly restarted Lanczos (eigsh).

    Both ends in one run (which="BE", k=2) from a seeded start vector: 5-25% fewer products than
    one run per end at the default MLP. ARPACK needs dim >= 3.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh
    count = [0]

    def numpy_matvec(v):
        count[0] += 1
        w = matvec(torch.as_tensor(np.ravel(v), dtype=dtype, device=device))
        return w.detach().cpu().double().numpy()

    op = LinearOperator((dim, dim), matvec=numpy_matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(dim)
    ends = eigsh(op, k=2, which="BE", v0=v0, tol=tol, ncv=min(dim, 20), return_eigenvectors=False)
    return float(ends.min()), float(ends.max()), count[0]


def power_extremes(matvec, dim: int, dtype=torch.float32, device="cpu", tol: float = POWER_TOL,
                   seed: int = 0, max_iter: int = 1000) -> tuple:
    """(lambda_min, lambda_max, iterations) by power iteration: the seed's method.

    Power iteration converges to the eigenvalue of largest MAGNITUDE, which is the negative end
    whenever |lambda_min| > lambda_max (a strong saddle). Whichever end it finds, lambda_1, every
    eigenvalue of H - lambda_1 I has the same sign, so a second run on that shifted matrix
    converges to the opposite end minus lambda_1. Accurate to about 1e-3 relative: its stopping
    rule (the Rayleigh quotient moves less than tol) fires early when the two largest
    magnitudes are close. One Hessian-vector product per iteration.
    """
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(dim, generator=generator, dtype=dtype).to(device)
    first, n1 = _power_run(matvec, start, tol, max_iter)
    shifted, n2 = _power_run(lambda v: matvec(v) - first * v, start, tol, max_iter)
    other = shifted + first
    return min(first, other), max(first, other), n1 + n2


def _power_run(matvec, v, tol, max_iter):
    v, lam = v / v.norm(), 0.0
    for i in range(1, max_iter + 1):
        w = matvec(v)
        new = float(v @ w)  # Rayleigh quotient of the unit vector v
        norm = w.norm()
        if norm == 0:
            return 0.0, i
        v = w / norm
        if abs(new - lam) <= tol * max(abs(new), 1e-12):
            return new, i
        lam = new
    return lam, max_iter


# ---------------------------------------------------------------- public entry points

def resolve_method(method: str, dim: int) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown Hessian method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "auto":
        return "exact" if dim <= EXACT_MAX_DIM else "lanczos"
    if method == "lanczos" and dim < 4:  # ARPACK needs k=2 < dim - 1
        return "exact"
    return method


def extreme_eigenvalues(fm, X, y, theta: torch.Tensor, method: str = "auto", **kwargs) -> tuple:
    """(lambda_min, lambda_max) of the Hessian of the loss at theta, as floats (NaN if not finite).

    "exact": full Hessian and a symmetric eigen-solver (what "auto" picks while D <= 2000);
    "lanczos": ARPACK (scipy eigsh) on HVPs, for models too large for the full matrix;
    "power": power iteration, then power iteration shifted by the first eigenvalue.
    """
    result = eigen_result(fm, X, y, theta, method, **kwargs)
    return result.lam_min, result.lam_max


def eigen_result(fm, X, y, theta: torch.Tensor, method: str = "auto", tol: float | None = None,
                 seed: int = 0) -> EigenResult:
    """Both ends of the spectrum by the chosen method, with the number of HVPs it took."""
    check_theta(fm, theta)
    method = resolve_method(method, fm.dim)
    with _solver_threads():
        try:
            return _solve(fm, X, y, theta.detach(), method, tol, seed)
        except NonFiniteHessian:
            return EigenResult(float("nan"), float("nan"), method, 0)


def _solve(fm, X, y, theta, method, tol, seed) -> EigenResult:
    if method == "exact":
        eig = _symmetric_eigenvalues(hessian_matrix(fm, X, y, theta))
        return EigenResult(float(eig[0]), float(eig[-1]), method, 0 if has_closed_form(fm) else fm.dim)
    solve = lanczos_extremes if method == "lanczos" else power_extremes
    options = {"tol": tol} if tol is not None else {}
    lam_min, lam_max, count = solve(_finite(hvp_function(fm, X, y, theta)), fm.dim, theta.dtype,
                                    theta.device, seed=seed, **options)
    return EigenResult(lam_min, lam_max, method, count)


def checkpoint_indices(n_checkpoints: int, every: int) -> np.ndarray:
    """Every `every`-th row from 0, and the last row always."""
    return np.unique(np.r_[np.arange(0, n_checkpoints, max(1, every)), n_checkpoints - 1])


def curvature_along(fm, X, y, trajectory, every: int = 1, method: str = "auto",
                    progress: bool = True) -> Curvature:
    """lambda_max and lambda_min at every `every`-th checkpoint, the last one always.

    trajectory: a training.Trajectory or its params (T, D).
    """
    params = getattr(trajectory, "params", trajectory)
    if params.ndim != 2 or params.shape[0] == 0 or params.shape[1] != fm.dim:
        raise ValueError(f"params must be a non-empty (T, {fm.dim}) matrix, got shape {tuple(params.shape)}")
    indices = checkpoint_indices(len(params), every)
    ends = [extreme_eigenvalues(fm, X, y, params[i], method)
            for i in tqdm(indices, desc="curvature", unit="ckpt", leave=False, disable=not progress or None)]
    lam_min, lam_max = (np.array(v, dtype=float) for v in zip(*ends))
    return Curvature(indices, lam_max, lam_min, resolve_method(method, fm.dim))


def eigen_ratio_map(fm, X, y, plane, alphas, betas, method: str = "auto", progress: bool = True) -> np.ndarray:
    """|lambda_min / lambda_max| at center + alphas[j] u + betas[i] v -> (B, A), rows following betas.

    Near 0 the surface is locally convex; large values mean strong negative curvature
    (Li et al. 2018's convexity map). Where lambda_max is 0 the ratio is undefined (NaN).
    """
    aa, bb = np.meshgrid(np.asarray(alphas, float), np.asarray(betas, float))  # (B, A)
    points = plane.points(np.stack([aa.ravel(), bb.ravel()], axis=1))
    curvature = curvature_along(fm, X, y, points, 1, method, progress)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(curvature.lam_min / curvature.lam_max)
    return np.where(curvature.lam_max != 0, ratio, np.nan).reshape(aa.shape)
