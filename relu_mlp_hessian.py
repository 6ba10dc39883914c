"""The Hessian of a one-hidden-layer ReLU MLP's loss in closed form: recognised by structure, products without autodiff."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

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


def relu_mlp_parts(mlp: ReluMLP, kind: str, X, y, dtype=torch.float64):
    """([X, 1] (n, d+1), d f / d z (..., n, h), relu(z) (..., n, h), l'' / n (..., n), cross term C (..., h, d+1)).

    H = J^T diag(l''/n) J + (1/n) sum_i l'_i d²f_i. ReLU is piecewise linear, so the only second
    derivatives of f couple w2_k with its unit's incoming weights: d²f / dw2_k dW_kj = m_k x_j.
    Computed in dtype: float32 parts took a third of float64's time at D=3073 (0.7 vs 2.2 ms).
    """
    Xt = torch.cat([X.to(dtype), torch.ones(len(X), 1, dtype=dtype, device=X.device)], dim=1)
    W, w2, b2 = mlp.W.to(dtype), mlp.w2.to(dtype), mlp.b2.to(dtype)
    z = Xt @ W.transpose(-1, -2)  # (..., n, h) pre-activations
    mask, act = (z > 0).to(dtype), torch.relu(z)
    f = (act @ w2[..., None]).squeeze(-1) + b2[..., None]  # (..., n)
    first, second = LOSS_DERIVATIVES[kind](f, y.to(dtype))
    n = len(X)
    C = (first[..., None] * mask).transpose(-1, -2) @ Xt / n
    return Xt, mask * w2[..., None, :], act, second / n, C


def relu_mlp_operator(mlp: ReluMLP, kind: str, X, y, dtype=torch.float64, parts=None):
    """v (D,) or a block (k, D) -> H v in float64 without forming H. Exact to rounding.

    On the CPU the products run in numpy on the same memory: its per-call overhead is a third of
    torch's, which made a product 3x faster at D=385 and 2.5x at D=1025 (measured side by side).
    parts: relu_mlp_parts already computed in dtype.
    """
    parts = relu_mlp_parts(mlp, kind, X, y, dtype) if parts is None else parts
    if parts[0].device.type != "cpu":
        return relu_mlp_product(parts, torch.cat)
    product = relu_mlp_product(tuple(p.numpy() for p in parts), np.concatenate)
    return lambda v: torch.from_numpy(product(v.numpy()))


def relu_mlp_product(parts, cat):
    """The product of relu_mlp_operator on torch tensors or numpy arrays alike (cat joins them).

    A block of k vectors costs two (n, h) x (h, k (d+1)) matrix products rather than 2k thin ones:
    at D=3073 a block of 6 took ~2.3x one vector's time instead of 6x.
    """
    Xt, wm, act, s, C = parts
    (n, h), d = wm.shape, Xt.shape[1] - 1
    einsum = np.einsum if isinstance(Xt, np.ndarray) else torch.einsum  # 4x a multiply-then-sum here

    def matvec(v):
        block = v.reshape(-1, v.shape[-1])  # (k, D)
        k = len(block)
        V = cat([block[:, :h * d].reshape(k, h, d), block[:, h * d:h * d + h, None]], -1)  # (k, h, d+1)
        u2 = block[:, h * d + h:h * d + 2 * h]  # (k, h)
        # sum_j wm_ij (V x_i)_j = x_i . (wm_i V): the elementwise work is (n, d+1) per vector, not (n, h)
        WV = (wm @ V.swapaxes(0, 1).reshape(h, k * (d + 1))).reshape(n, k, d + 1)
        g = s[:, None] * (einsum("nkd,nd->nk", WV, Xt) + act @ u2.T + block[:, -1])  # (n, k) l'' J v
        G = (g[:, :, None] * Xt[:, None]).reshape(n, k * (d + 1))
        O = (wm.T @ G).reshape(h, k, d + 1).swapaxes(0, 1) + C * u2[:, :, None]  # (k, h, d+1)
        out_w2 = (act.T @ g).T + einsum("hd,khd->kh", C, V)  # (k, h)
        out = cat([O[..., :d].reshape(k, h * d), O[..., d], out_w2, g.sum(0)[:, None]], -1)
        return out.reshape(v.shape)
    return matvec


def unit_directions(C: torch.Tensor, count: int) -> np.ndarray:
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


def relu_mlp_matrix(mlp: ReluMLP, kind: str, X, y) -> torch.Tensor:
    """The full (D, D) Hessian in float64: one (D, n) x (n, D) product instead of D HVPs."""
    Xt, wm, act, s, C = relu_mlp_parts(mlp, kind, X, y)
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
