"""Hessian eigenvalues of the loss: exact, Lanczos and power iteration, along paths and over planes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, jvp, vmap
from tqdm import tqdm

METHODS = ("auto", "exact", "lanczos", "power")
EXACT_MAX_DIM = 2000  # "auto" builds the full Hessian up to this many weights


@dataclass
class Curvature:
    """Extreme Hessian eigenvalues at some checkpoints of a path."""
    indices: np.ndarray  # (K,) checkpoint rows
    lam_max: np.ndarray  # (K,)
    lam_min: np.ndarray  # (K,)
    method: str


def check_theta(fm, theta: torch.Tensor) -> torch.Tensor:
    if theta.ndim != 1 or theta.shape[0] != fm.dim:
        raise ValueError(f"theta must be a flat vector of {fm.dim} weights, got shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("theta contains non-finite values: no Hessian there")
    return theta


def hvp(fm, X, y, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hessian-vector product H(theta) v by forward-over-reverse differentiation (jvp of grad)."""
    out = jvp(lambda t: grad(fm.loss)(t, X, y), (theta,), (v,))[1]
    return out.to(v.dtype)  # torch's jvp rule for pow can promote to float64


def hessian_matrix(fm, X, y, theta: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """The full (D, D) Hessian: in closed form for the project's MLP, else from batches of HVPs."""
    check_theta(fm, theta)
    if has_closed_form(fm):
        return _mlp_hessian(fm, X, y, theta)
    return _hvp_hessian(fm, X, y, theta, chunk)


def has_closed_form(fm) -> bool:
    from models import MLP
    return type(fm.module) is MLP


def _hvp_hessian(fm, X, y, theta, chunk):
    """HVPs against the identity in batches of `chunk`, symmetrised: works for any module."""
    batched = vmap(lambda v: hvp(fm, X, y, theta, v))
    eye = torch.eye(fm.dim, dtype=theta.dtype, device=theta.device)
    H = torch.cat([batched(eye[i:i + chunk]) for i in range(0, fm.dim, chunk)])
    return (H + H.T) / 2


def _mlp_hessian(fm, X, y, theta):
    """Closed-form Hessian of mean BCE for Linear -> ReLU -> Linear (exact wherever no
    pre-activation is exactly 0, i.e. almost everywhere).

    H = (1/n) sum_i s_i J_i^T J_i + (1/n) sum_i r_i d2f_i, with f_i the logit, J_i its gradient,
    p_i = sigmoid(f_i), s_i = p_i (1 - p_i), r_i = p_i - y_i. ReLU is piecewise linear, so the
    only second derivatives of f_i couple an output weight w2_k with its unit's incoming
    weights and bias: d2f / dw2_k dW1_kj = m_ik x_ij and d2f / dw2_k db1_k = m_ik (m = ReLU mask).
    Two (n, D) products replace D Hessian-vector products: ~20x faster at the default size.
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
    rows = off["fc2.weight"] + torch.arange(h, device=X.device)
    cross_w = ((r[:, None] * mask).T @ X / n)  # (h, d): sum_i r_i m_ik x_ij / n
    cross_b = (r[:, None] * mask).sum(0) / n  # (h,)
    cols_w = off["fc1.weight"] + torch.arange(h * d, device=X.device).view(h, d)
    H[rows[:, None], cols_w] += cross_w
    H[cols_w, rows[:, None]] += cross_w
    H[rows, off["fc1.bias"] + torch.arange(h, device=X.device)] += cross_b
    H[off["fc1.bias"] + torch.arange(h, device=X.device), rows] += cross_b
    return H


def extreme_eigenvalues(fm, X, y, theta: torch.Tensor, method: str = "auto", **kwargs) -> tuple:
    """(lambda_min, lambda_max) of the Hessian of the loss at theta.

    "exact": full Hessian and a symmetric eigen-solver (what "auto" picks while D <= 2000);
    "lanczos": ARPACK (scipy eigsh) on HVPs, for models too large for the full matrix;
    "power": power iteration, then power iteration shifted by the first eigenvalue.
    """
    return eigen_extremes(fm, X, y, theta, method, **kwargs)[:2]


def eigen_extremes(fm, X, y, theta, method: str = "auto", tol: float | None = None, seed: int = 0):
    """(lambda_min, lambda_max, HVPs used: 0 for the closed form) by the chosen method."""
    check_theta(fm, theta)
    method = resolve_method(method, fm.dim)
    theta = theta.detach()
    if method == "exact":
        eig = _symmetric_eigenvalues(hessian_matrix(fm, X, y, theta))
        return float(eig[0]), float(eig[-1]), 0 if has_closed_form(fm) else fm.dim
    if method == "lanczos":
        return _lanczos(fm, X, y, theta, tol if tol is not None else 1e-6, seed)
    return _power(fm, X, y, theta, tol if tol is not None else 1e-7, seed)


def _symmetric_eigenvalues(H: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues; NaN where the Hessian itself is not finite (a run that blew up).

    float32 eigh can fail on the near-singular Hessians of saturated networks; float64 does not.
    """
    if not torch.isfinite(H).all():
        return torch.full((2,), float("nan"))
    try:
        return torch.linalg.eigvalsh(H)
    except torch.linalg.LinAlgError:
        return torch.linalg.eigvalsh(H.double().cpu())


def resolve_method(method: str, dim: int) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown Hessian method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "auto":
        return "exact" if dim <= EXACT_MAX_DIM else "lanczos"
    return method


def _lanczos(fm, X, y, theta, tol, seed):
    """Both ends of the spectrum with ARPACK's implicitly restarted Lanczos on float32 HVPs."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    count = [0]

    def matvec(v):
        count[0] += 1
        vt = torch.as_tensor(np.ravel(v), dtype=theta.dtype, device=theta.device)
        return hvp(fm, X, y, theta, vt).detach().cpu().double().numpy()

    op = LinearOperator((fm.dim, fm.dim), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(fm.dim)
    ends = [float(eigsh(op, k=1, which=which, v0=v0, tol=tol, ncv=min(fm.dim, 20),
                        return_eigenvectors=False)[0]) for which in ("SA", "LA")]
    return ends[0], ends[1], count[0]


def _power(fm, X, y, theta, tol, seed, max_iter: int = 1000):
    """Power iteration finds the eigenvalue of largest MAGNITUDE, which may be the negative end.

    A second run on H - lambda_1 I then finds the opposite end of the spectrum. Converged when
    the Rayleigh quotient changes by less than tol relative; slow when the spectrum's two
    largest magnitudes are close, so its results are accurate to about 1e-3 relative.
    """
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(fm.dim, generator=generator, dtype=theta.dtype).to(theta.device)
    first, n1 = _power_run(lambda v: hvp(fm, X, y, theta, v), start, tol, max_iter)
    second, n2 = _power_run(lambda v: hvp(fm, X, y, theta, v) - first * v, start, tol, max_iter)
    other = second + first
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


def curvature_along(fm, X, y, trajectory, every: int = 1, method: str = "auto",
                    progress: bool = True) -> Curvature:
    """lambda_max and lambda_min at every `every`-th checkpoint, the last one always.

    trajectory: a training.Trajectory or its params (T, D).
    """
    params = getattr(trajectory, "params", trajectory)
    if params.ndim != 2 or params.shape[0] == 0:
        raise ValueError(f"params must be a non-empty (T, D) matrix, got shape {tuple(params.shape)}")
    indices = np.unique(np.r_[np.arange(0, len(params), max(1, every)), len(params) - 1])
    ends = [extreme_eigenvalues(fm, X, y, params[i], method)
            for i in tqdm(indices, desc="curvature", unit="ckpt", leave=False, disable=not progress or None)]
    lam_min, lam_max = (np.array(v) for v in zip(*ends))
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
