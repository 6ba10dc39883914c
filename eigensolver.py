"""Both ends of the spectrum of a symmetric operator known only by its products: block Krylov, Lanczos, power iteration."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

END_TOL = 1e-3  # each end of the spectrum to within END_TOL * ‖H‖ (a residual bound, not a step size)
# Why 1e-3 of ‖H‖: the λmax curve, the λmin panel and the |λmin/λmax| map are drawn at that scale, and it
# is PyHessian's tolerance. A Ritz value never passes the true end, so λmin is never made more negative
# than it is; at the MLP's checkpoints (λmin a dense cluster near -0.01 ‖H‖) the error seen was <= 3e-4 ‖H‖.
# findings.CONVEX_TOL calls a λmin within this of 0 convex (tol=1e-4 costs 1.6x the products).
LANCZOS_MIN_STEPS = 12  # a single-vector Krylov space this small can still miss the true end (misconvergence)
LANCZOS_MAX_STEPS = 600
UNIT_MIN_ROUNDS = 1  # rounds when the start holds unit_directions (the STILL test adds one more)
MIN_ROUNDS = 5  # rounds of the random probe before the bounds are trusted: with 3, warm starts missed λmin by 1.2 tol
STILL = 0.25  # an end is converged only once its Ritz value moved less than STILL * tol ‖H‖ in a round
MAX_BASIS = 600  # block_ends stops growing its basis here
NEW_DIRECTION_FLOOR = 1e-7  # shorter new directions are rounding: the Gram matrix squares them to ~1e-14
WARM_LOW = 4  # lowest Ritz vectors carried to the next checkpoint: eigenvalues cross at the low end
WARM_HIGH = 1  # highest ones carried
START_RANDOM = 1  # seeded random vectors added to a warm start, so no direction is missing from it
POWER_TOL = 1e-7  # power iteration stops when the Rayleigh quotient moves less than this, relative


class NonFiniteHessian(ArithmeticError):
    """The operator is not finite here (a Hessian where a run blew up): reported as NaN, not raised."""


def finite_products(matvec):
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
    the same memory (a third of torch's per-call overhead, as in relu_mlp_operator).
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

    Projected out twice (Kahan), then orthonormalised from the small Gram matrix W W^T, a second
    time when that was ill-conditioned (as CholQR2: it restores orthonormality), keeping only
    directions longer than NEW_DIRECTION_FLOOR of the longest row: a row already in span Q, or a
    copy of another, adds nothing (j < k), and none means span Q is invariant. A (k, k) eigh costs
    a fraction of a QR and an SVD of the (D, k) block.
    """
    if len(W) == 0:
        return W
    floor = NEW_DIRECTION_FLOOR * np.linalg.norm(W, axis=1).max()
    for _ in range(2):
        W = W - (W @ Q.T) @ Q
    if len(W) == 1:  # one row (the probe's chain): its length is all there is to check
        norm = np.linalg.norm(W)
        return W / norm if norm > floor else W[:0]
    for _ in range(2):
        lam, U = np.linalg.eigh(W @ W.T)
        keep = lam > floor ** 2
        W = (U[:, keep].T @ W) / np.sqrt(lam[keep])[:, None]
        if not keep.any() or lam[keep][0] > 1e-8 * lam[-1]:  # orthonormal to eps·cond², below 1e-8: done
            return W
        floor = NEW_DIRECTION_FLOOR  # the rows are unit length now
    return W


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
    if extra is not None:  # (j, D) directions known to matter (unit_directions)
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
