"""Hessian eigenvalues of the loss: exact, warm-started Lanczos and power iteration, along paths and over planes."""
from __future__ import annotations

import contextlib
import itertools
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch.func import grad, jvp, vjp, vmap
from tqdm import tqdm

METHODS = ("auto", "exact", "lanczos", "power")
EXACT_MAX_DIM = 100  # "auto" builds a general model's full Hessian (D products) only up to this: Lanczos needs ~50
CLOSED_MATRIX_MAX_DIM = 2000  # the closed-form Hessian (ReLU MLP) is a cheap matrix up to this many weights
CLOSED_EXACT_MAX_DIM = 128  # closed-form Lanczos vs eigvalsh: even at D=385, 4x faster at D=1025 (warm-startable)
HVP_CHUNK = 32  # identity columns per vmapped batch of HVPs: 32-64 measured fastest at D=385, n=1000
END_TOL = 1e-3  # each end of the spectrum to within END_TOL * ‖H‖ (a residual bound, not a step size)
# Why 1e-3 of ‖H‖: the λmax curve, the λmin panel and the |λmin/λmax| map are drawn at that scale, and it
# is PyHessian's tolerance. A Ritz value never passes the true end, so λmin is never made more negative
# than it is; at the MLP's checkpoints (λmin a dense cluster near -0.01 ‖H‖) the error seen was <= 3e-4 ‖H‖.
# findings.CONVEX_TOL (1e-4 λmax) is finer than this: pass tol=1e-4 where that line matters (1.6x the products).
FLOAT32_TOL = 1e-5  # from this tolerance up, the closed form multiplies in float32 (rounding ~1e-7 ‖H‖):
# 2x faster at D=3073, 1.4x at D=385 (blocks of 5, measured side by side)
EIGENVECTOR_TOL = 1e-8  # top_eigenpairs: residuals of the top vectors below sqrt(this) ‖H‖
LANCZOS_MIN_STEPS = 12  # a single-vector Krylov space this small can still miss the true end (misconvergence)
LANCZOS_MAX_STEPS = 600
UNIT_MIN_ROUNDS = 1  # rounds when the start holds _unit_directions (the STILL test adds one more)
MIN_ROUNDS = 5  # rounds of the random probe before the bounds are trusted: with 3, warm starts missed λmin by 1.2 tol
STILL = 0.25  # an end is converged only once its Ritz value moved less than STILL * tol ‖H‖ in a round
MAX_BASIS = 600  # block_ends stops growing its basis here
WARM_LOW = 4  # lowest Ritz vectors carried to the next checkpoint: eigenvalues cross at the low end
WARM_HIGH = 1  # highest ones carried
UNIT_STARTS = 8  # closed-form MLP: directions of the most negative cross terms added to every start block
START_RANDOM = 1  # seeded random vectors added to a warm start, so no direction is missing from it
POWER_TOL = 1e-7  # power iteration stops when the Rayleigh quotient moves less than this, relative
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


# ---------------------------------------------------------------- iterative methods

def _finite(matvec):
    """matvec that raises NonFiniteHessian instead of feeding NaN to an iterative solver."""
    def checked(v):
        w = matvec(v)
        if not torch.isfinite(w).all():
            raise NonFiniteHessian
        return w
    return checked


def lanczos_run(matvec, v0: torch.Tensor, max_steps: int, done=None, check: int = 4):
    """Lanczos with full reorthogonalisation from v0: (alpha (k,), beta (k,), basis (k, D) torch).

    beta[-1] is the norm of the residual after the last step. done(alpha, beta) is asked every
    `check` steps whether to stop; the run also stops when the Krylov space is invariant, and
    raises NonFiniteHessian on a non-finite product. The basis is kept in v0's dtype (float64 for
    accurate ends); matvec gets torch vectors in that dtype. On the CPU the loop runs in numpy on
    the same memory (a third of torch's per-call overhead, as in _relu_mlp_operator).
    """
    cpu = v0.device.type == "cpu"
    V = np.zeros((min(max_steps, v0.numel()), v0.numel())) if cpu else v0.new_zeros(min(max_steps, v0.numel()), v0.numel())
    V[0] = (v0 / v0.norm()).numpy() if cpu else v0 / v0.norm()  # V: (k, D)
    alpha, beta = np.zeros(len(V)), np.zeros(len(V))
    for k in range(len(V)):
        w = matvec(torch.from_numpy(V[k])).numpy() if cpu else matvec(V[k]).to(V.dtype)
        alpha[k] = float(V[k] @ w)
        for _ in range(2):  # twice is enough (Kahan): the basis stays orthonormal to rounding
            w = w - V[:k + 1].T @ (V[:k + 1] @ w)
        beta[k] = float(w @ w) ** 0.5
        if not (np.isfinite(alpha[k]) and np.isfinite(beta[k])):
            raise NonFiniteHessian
        invariant = beta[k] <= 1e-12 * max(np.abs(alpha[:k + 1]).max(), 1e-300)
        if k + 1 == len(V) or invariant or (done and (k + 1) % check == 0 and done(alpha[:k + 1], beta[:k + 1])):
            return alpha[:k + 1], beta[:k + 1], torch.from_numpy(V[:k + 1]) if cpu else V[:k + 1]
        V[k + 1] = w / beta[k]


def ritz(alpha, beta, V, columns) -> tuple:
    """Ritz values (len(columns),) and unit vectors (len(columns), D) of a Lanczos run, ascending order."""
    theta, S = eigh_tridiagonal(alpha, beta[:-1])
    S = torch.as_tensor(S[:, columns], dtype=V.dtype, device=V.device)
    return theta[columns], S.T @ V


def start_vector(dim: int, dtype, device, seed: int = 0) -> torch.Tensor:
    """A seeded Gaussian unit vector."""
    return start_block(1, dim, dtype, device, seed)[0]


def start_block(k: int, dim: int, dtype, device, seed: int = 0) -> torch.Tensor:
    """k seeded Gaussian unit vectors (k, D), the first one start_vector's."""
    V = torch.randn(k, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (V / V.norm(dim=1, keepdim=True)).to(device=device, dtype=dtype)


def _new_directions(W: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """An orthonormal basis (j, D) of the part of W's rows (k, D) outside span Q's rows (m, D).

    Projected out twice (Kahan), then an SVD keeps only directions that are not rounding: a row
    already in span Q, or a copy of another, adds nothing (j < k), and none means span Q is invariant.
    """
    scale = np.linalg.norm(W, axis=1).max()
    for _ in range(2):
        W = W - (W @ Q.T) @ Q
    basis, R = np.linalg.qr(W.T)  # (D, k), (k, k): the SVD of the small R then costs nothing
    U, sigma, _ = np.linalg.svd(R)
    return (basis @ U[:, sigma > 1e-10 * scale]).T


def block_ends(matvec, start: np.ndarray, tol: float = END_TOL, max_dim: int = MAX_BASIS,
               low: int = WARM_LOW, high: int = WARM_HIGH, min_rounds: int = MIN_ROUNDS) -> tuple:
    """(lambda_min, lambda_max, products, Ritz vectors (low + high, D)) by block Krylov Rayleigh-Ritz.

    Rayleigh-Ritz on a growing basis Q: each round multiplies, in ONE batched call, the residuals
    of the `low` lowest and `high` highest Ritz vectors of every end not yet converged, and the next
    vector of a plain Lanczos chain from start's first row (a seeded random "probe"). The probe
    is what finds an eigenvalue that no warm vector contains: Ritz residuals alone never leave the
    span of the warm vectors when those are exact eigenvectors (seen: λmin -0.0097 for -0.02).
    An end stops when its error bound is below tol ‖H‖ AND its Ritz value moved less than a
    quarter of that over the last round, after at least min_rounds rounds. matvec maps numpy
    (k, D) to (k, D); products are counted per vector. In numpy float64.
    """
    probe = start[:1] / np.linalg.norm(start[0])
    Q = np.concatenate([probe, _new_directions(start[1:], probe)])
    HQ = matvec(Q)
    T = Q @ HQ.T  # (m, m) H on span Q, grown by a border each round
    if not np.isfinite(T).all():
        raise NonFiniteHessian
    p, previous = 0, None  # p: the probe's row in Q
    for round_ in itertools.count():
        theta, X, R = _rayleigh_ritz(Q, HQ, (T + T.T) / 2, low, high)
        scale = max(abs(theta[0]), abs(theta[-1]), 1e-300)  # ‖H‖ from its ends
        ends = np.array([theta[0], theta[-1]])
        moved = np.abs(ends - previous) > STILL * tol * scale if previous is not None else np.ones(2, bool)
        pending = _unconverged_ends(theta, np.linalg.norm(R, axis=1), low, tol, moved) | (round_ < min_rounds)
        previous = ends
        if not pending.any() or len(Q) >= max_dim:
            return float(theta[0]), float(theta[-1]), len(Q), X
        chain = _new_directions(HQ[p:p + 1], Q)  # the probe's next Lanczos vector
        new = np.concatenate([chain, _new_directions(R[pending], np.concatenate([Q, chain]))])
        if len(new) == 0:  # span Q is invariant: its Ritz values are eigenvalues
            return float(theta[0]), float(theta[-1]), len(Q), X
        p = len(Q) if len(chain) else p
        Hnew = matvec(new)
        cross = Q @ Hnew.T  # (m, j)
        T = np.block([[T, cross], [cross.T, new @ Hnew.T]])
        if not np.isfinite(T[-1]).all():  # a non-finite product reaches its row of T: one check per round
            raise NonFiniteHessian
        Q, HQ = np.concatenate([Q, new]), np.concatenate([HQ, Hnew])


def _rayleigh_ritz(Q, HQ, T, low, high) -> tuple:
    """Ritz values (m,) ascending of T = Q H Q^T, and the wanted ends' vectors and residuals (w, D) each."""
    theta, S = np.linalg.eigh(T)
    m = len(theta)
    columns = sorted(set(range(min(low, m))) | set(range(max(m - high, 0), m)))
    S = S[:, columns]
    X = S.T @ Q
    return theta, X, S.T @ HQ - theta[columns, None] * X


def _unconverged_ends(theta, residuals, low, tol, moved) -> np.ndarray:
    """Mask over the wanted Ritz vectors (low ones first): those of an end whose value may be off by
    more than tol ‖H‖ (see _end_error), or that moved last round (moved: (2,) low end, high end)."""
    w, n_low = len(residuals), min(low, len(theta))
    scale = max(abs(theta[0]), abs(theta[-1]), 1e-300)  # ‖H‖ from its ends
    low_bad = _end_error(theta, residuals[:n_low]) > tol * scale or moved[0]
    high_bad = _end_error(-theta[::-1], residuals[n_low:][::-1] if w > n_low else residuals[-1:]) > tol * scale or moved[1]
    pending = np.zeros(w, dtype=bool)
    pending[:n_low], pending[n_low:] = low_bad, high_bad
    pending[-1] |= high_bad  # the top vector, even when every column counts as low
    return pending


def _end_error(theta, residuals) -> float:
    """A bound on how far the lowest Ritz value theta[0] lies above the lowest eigenvalue.

    Its residual r bounds it, and so does ‖R_j‖² / gap_j for the block of the j lowest Ritz pairs
    (R_j their residuals, gap_j the distance from theta[j-1] to the rest of the spectrum; Kato-Temple
    for a cluster). gap_j is taken as theta[j] - r_j - theta[j-1]: theta[j] itself only bounds the
    next eigenvalue from above, and would overstate the gap. The block bound stays small in a
    cluster of close eigenvalues, where r² / (theta[1] - theta[0]) would need a tiny r.
    """
    best = residuals[0]
    for j in range(1, len(residuals)):
        gap = theta[j] - residuals[j] - theta[j - 1]
        if gap > 0:
            best = min(best, (residuals[:j] ** 2).sum() / gap)
    return best


def lanczos_extremes(matvec, dim: int, dtype=torch.float32, device="cpu", tol: float = END_TOL,
                     seed: int = 0, warm: torch.Tensor | None = None) -> tuple:
    """(lambda_min, lambda_max, products used) by block Lanczos: see lanczos_ends."""
    return lanczos_ends(matvec, dim, dtype, device, tol, seed, warm)[:3]


def lanczos_ends(matvec, dim: int, dtype=torch.float32, device="cpu", tol: float = END_TOL,
                 seed: int = 0, warm: torch.Tensor | None = None, extra: np.ndarray | None = None) -> tuple:
    """(lambda_min, lambda_max, products used, Ritz vectors for a warm start (k, D)) by block_ends.

    matvec takes a batch (k, D) in `dtype`. Cold, the start block is WARM_LOW + WARM_HIGH +
    START_RANDOM seeded random vectors; warm, it is the previous point's Ritz vectors and START_RANDOM
    random ones, so a direction the previous point lacked (an eigenvalue rising out of the bulk) is not missed.
    """
    k = START_RANDOM + (0 if warm is not None else WARM_LOW + WARM_HIGH)
    start = start_block(k, dim, torch.float64, "cpu", seed).numpy()
    if warm is not None:
        start = np.concatenate([start, warm.cpu().double().numpy()])  # the probe first
    if extra is not None:  # (j, D) directions known to matter (_unit_directions)
        start = np.concatenate([start, extra])

    def products(V):  # numpy (k, D) float64 -> numpy (k, D) float64, through matvec's device and dtype
        return matvec(torch.from_numpy(V).to(device=device, dtype=dtype)).cpu().double().numpy()
    lo, hi, count, vectors = block_ends(products, start, tol,
                                        min_rounds=MIN_ROUNDS if extra is None else UNIT_MIN_ROUNDS)
    return lo, hi, count, torch.from_numpy(vectors)


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
        ends = power_extremes(_finite(matvec), fm.dim, dtype, theta.device, seed=seed, **options)
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
