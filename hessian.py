"""Hessian eigenvalues of the loss: products (autodiff, or the closed form of a ReLU MLP), both ends along paths and over planes."""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import grad, jvp, vjp, vmap
from tqdm import tqdm

from eigensolver import END_TOL, NonFiniteHessian, finite_products, lanczos_ends, power_extremes

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
        return _relu_mlp_operator(weights, fm.loss_kind, X, y, closed_dtype), closed_dtype
    return hvp_function(fm, X, y, theta), theta.dtype


# ---------------------------------------------------------------- closed form of a ReLU MLP

# (d loss / d f, d² loss / d f²) per sample of a scalar output f: the losses the closed form covers
LOSS_DERIVATIVES = {
    "bce": lambda f, y: (torch.sigmoid(f) - y, torch.sigmoid(f) * torch.sigmoid(-f)),
    "mse": lambda f, y: (2 * (f - y), torch.full_like(f, 2.0)),
}
_RECOGNISED = weakref.WeakKeyDictionary()  # FlatModel -> whether it computes a ReLU MLP


@dataclass
class ReluMLP:
    """Weights of f(x) = relu(W [x, 1]) . w2 + b2, in float64: Linear -> ReLU -> Linear(1).

    Leading axes (...) hold several weight sets at once (checkpoints solved side by side).
    """
    W: torch.Tensor  # (..., h, d + 1) first layer, bias as the last column
    w2: torch.Tensor  # (..., h)
    b2: torch.Tensor  # (...)

    @classmethod
    def from_theta(cls, theta: torch.Tensor, h: int, d: int) -> "ReluMLP":
        t = theta.double()  # (..., D)
        W = torch.cat([t[..., :h * d].unflatten(-1, (h, d)), t[..., h * d:h * d + h, None]], dim=-1)
        return cls(W, t[..., h * d + h:h * d + 2 * h], t[..., -1])

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return torch.relu(X @ self.W[:, :-1].T + self.W[:, -1]) @ self.w2 + self.b2


def relu_mlp_weights(fm, X, theta) -> ReluMLP | None:
    """theta as a ReluMLP when fm computes one with a loss of LOSS_DERIVATIVES, else None.

    Recognised by structure, not by class or parameter names: four tensors shaped (h, d), (h,),
    (1, h), (1,) in that order, whose logits equal the formula at seeded probe weights large enough
    that a clipped (ReLU6) or leaky unit, a missing bias or a squeezed axis would show.
    """
    shapes = [slot.shape for slot in fm.layout]
    if fm.loss_kind not in LOSS_DERIVATIVES or X.ndim != 2 or len(shapes) != 4 or len(shapes[0]) != 2:
        return None
    h, d = shapes[0]
    if shapes != [(h, d), (h,), (1, h), (1,)] or d != X.shape[1]:
        return None
    if fm not in _RECOGNISED:
        _RECOGNISED[fm] = _computes_relu_mlp(fm, h, d, theta)
    return ReluMLP.from_theta(theta, h, d) if _RECOGNISED[fm] else None


def _computes_relu_mlp(fm, h, d, like) -> bool:
    generator = torch.Generator().manual_seed(0)
    probe = 2 * torch.randn(fm.dim, generator=generator, dtype=torch.float64).to(like)
    Xp = torch.randn(16, d, generator=generator, dtype=torch.float64).to(like)
    with torch.no_grad():
        got = fm.logits(probe, Xp)
    expected = ReluMLP.from_theta(probe, h, d).logits(Xp.double())
    return got.shape == expected.shape and torch.allclose(got.double(), expected, rtol=1e-4, atol=1e-4)


def _relu_mlp_parts(mlp: ReluMLP, kind: str, X, y, dtype=torch.float64):
    """([X, 1] (n, d+1), d f / d z (..., n, h), relu(z) (..., n, h), l'' / n (..., n), cross term C (..., h, d+1)).

    H = J^T diag(l''/n) J + (1/n) sum_i l'_i d²f_i. ReLU is piecewise linear, so the only second
    derivatives of f couple w2_k with its unit's incoming weights: d²f / dw2_k dW_kj = m_k x_j.
    Computed in dtype: float32 parts took a third of float64's time at D=3073 (0.7 vs 2.2 ms).
    """
    Xt = torch.cat([X.to(dtype), torch.ones(len(X), 1, dtype=dtype, device=X.device)], dim=1)
    W, w2, b2 = mlp.W.to(dtype), mlp.w2.to(dtype), mlp.b2.to(dtype)
    z = Xt @ W.transpose(-1, -2)  # (..., n, h) pre-activations
    mask = (z > 0).to(dtype)
    f = (torch.relu(z) @ w2[..., None]).squeeze(-1) + b2[..., None]  # (..., n)
    first, second = LOSS_DERIVATIVES[kind](f, y.to(dtype))
    n = len(X)
    C = (first[..., None] * mask).transpose(-1, -2) @ Xt / n
    return Xt, mask * w2[..., None, :], torch.relu(z), second / n, C


def _relu_mlp_operator(mlp: ReluMLP, kind: str, X, y, dtype=torch.float64, parts=None):
    """v (D,) or a block (k, D) -> H v in float64 without forming H. Exact to rounding.

    On the CPU the products run in numpy on the same memory: its per-call overhead is a third of
    torch's, which made a product 3x faster at D=385 and 2.5x at D=1025 (measured side by side).
    parts: _relu_mlp_parts already computed in dtype.
    """
    parts = _relu_mlp_parts(mlp, kind, X, y, dtype) if parts is None else parts
    if parts[0].device.type != "cpu":
        return _relu_mlp_product(parts, torch.cat)
    product = _relu_mlp_product(tuple(p.numpy() for p in parts), np.concatenate)
    return lambda v: torch.from_numpy(product(v.numpy()))


def _relu_mlp_product(parts, cat):
    """The product of _relu_mlp_operator on torch tensors or numpy arrays alike (cat joins them).

    A block of k vectors costs two (n, h) x (h, k (d+1)) matrix products rather than 2k thin ones:
    at D=3073 a block of 6 took ~2.3x one vector's time instead of 6x.
    """
    Xt, wm, act, s, C = parts
    (n, h), d = wm.shape, Xt.shape[1] - 1

    def matvec(v):
        block = v.reshape(-1, v.shape[-1])  # (k, D)
        k = len(block)
        V = cat([block[:, :h * d].reshape(k, h, d), block[:, h * d:h * d + h, None]], -1)  # (k, h, d+1)
        u2 = block[:, h * d + h:h * d + 2 * h]  # (k, h)
        # sum_j wm_ij (V x_i)_j = x_i . (wm_i V): the elementwise work is (n, d+1) per vector, not (n, h)
        WV = (wm @ V.swapaxes(0, 1).reshape(h, k * (d + 1))).reshape(n, k, d + 1)
        g = s[:, None] * ((WV * Xt[:, None]).sum(-1) + act @ u2.T + block[:, -1])  # (n, k) l'' J v
        G = (g[:, :, None] * Xt[:, None]).reshape(n, k * (d + 1))
        O = (wm.T @ G).reshape(h, k, d + 1).swapaxes(0, 1) + C * u2[:, :, None]  # (k, h, d+1)
        out = cat([O[..., :d].reshape(k, h * d), O[..., d], (act.T @ g).T + (C * V).sum(-1), g.sum(0)[:, None]], -1)
        return out.reshape(v.shape)
    return matvec


def _unit_directions(C: torch.Tensor, count: int) -> np.ndarray:
    """(count, D) unit vectors along which the cross term C (h, d+1) of the `count` units with the
    largest ‖C_k‖ is most negative: unit k's incoming weights along C_k paired with -w2_k.

    Those terms are the only indefinite part of H (the rest is J^T diag(l'') J, PSD), so the lowest
    eigenvector lies mostly in their span (98.8-99.9 % at the MLP's checkpoints): a start block
    holding them cannot miss the negative end the way random and warm vectors can.
    """
    C = C.double().cpu().numpy()
    h, d = C.shape[0], C.shape[1] - 1
    norms = np.linalg.norm(C, axis=1)
    units = np.argsort(norms)[::-1][:count]
    V = np.zeros((len(units), h * (d + 2) + 1))
    for row, k in enumerate(units):
        c = C[k] / max(norms[k], 1e-300)
        V[row, k * d:(k + 1) * d], V[row, h * d + k], V[row, h * d + h + k] = c[:d], c[d], -1.0
    return V / np.sqrt(2)


def _relu_mlp_matrix(mlp: ReluMLP, kind: str, X, y) -> torch.Tensor:
    """The full (D, D) Hessian in float64: one (D, n) x (n, D) product instead of D HVPs."""
    Xt, wm, act, s, C = _relu_mlp_parts(mlp, kind, X, y)
    n, (h, d) = len(X), (wm.shape[1], Xt.shape[1] - 1)
    J = torch.cat([(wm[:, :, None] * Xt[:, None, :d]).reshape(n, h * d), wm, act,
                   torch.ones(n, 1, dtype=Xt.dtype, device=Xt.device)], dim=1)  # (n, D) in layout order
    H = (J.T * s) @ J
    units = torch.arange(h, device=X.device)
    rows = h * d + h + units  # w2_k
    cols = torch.cat([units[:, None] * d + torch.arange(d, device=X.device), (h * d + units)[:, None]], 1)
    H[rows[:, None], cols] += C
    H[cols, rows[:, None]] += C
    return H


# ---------------------------------------------------------------- the full matrix

def hessian_matrix(fm, X, y, theta: torch.Tensor, chunk: int = HVP_CHUNK) -> torch.Tensor:
    """The full (D, D) Hessian: in closed form for a scalar-output ReLU MLP, else from batches of HVPs."""
    check_theta(fm, theta)
    weights = relu_mlp_weights(fm, X, theta)
    if weights is not None:
        return _relu_mlp_matrix(weights, fm.loss_kind, X, y).to(theta.dtype)
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
    "lanczos": Lanczos on Hessian-vector products (float64 closed form for a ReLU MLP), both ends;
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
    method = resolve_method(method, fm.dim, has_closed_form(fm, X, theta))
    with _solver_threads():
        try:
            return _solve(fm, X, y, theta.detach(), method, tol, seed, warm)
        except NonFiniteHessian:
            return EigenResult(float("nan"), float("nan"), method, 0)


def _solve(fm, X, y, theta, method, tol, seed, warm) -> EigenResult:
    if method == "exact":
        eig = _symmetric_eigenvalues(hessian_matrix(fm, X, y, theta))
        return EigenResult(float(eig[0]), float(eig[-1]), method, 0 if has_closed_form(fm, X, theta) else fm.dim)
    fast = (tol or END_TOL) >= FLOAT32_TOL  # float32 rounding is far below the tolerance: 2x faster products
    dtype, weights, extra = torch.float32 if fast else torch.float64, relu_mlp_weights(fm, X, theta), None
    if weights is not None and method == "lanczos":
        parts = _relu_mlp_parts(weights, fm.loss_kind, X, y, dtype)
        matvec, extra = _relu_mlp_operator(weights, fm.loss_kind, X, y, dtype, parts), _unit_directions(parts[4], UNIT_STARTS)
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
