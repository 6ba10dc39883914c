"""Loss and accuracy over a 2-D grid of a plane, batched over grid points; 1-D interpolation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from projection import Plane, check_points


@dataclass
class Surface:
    """loss[i, j] = L(center + alphas[j] u + betas[i] v): rows follow betas (y), columns alphas (x)."""
    alphas: np.ndarray  # (A,)
    betas: np.ndarray  # (B,)
    loss: np.ndarray  # (B, A)
    accuracy: np.ndarray  # (B, A)
    plane: Plane


def grid_for(coords, resolution, margin: float = 0.25):
    """Axes (alphas, betas) that cover every point of coords (N, 2) with a margin on each side.

    Both axes get the same range (the larger extent of the points plus margin times it on each
    side) so that distances read alike along both. resolution is points per axis, or a pair
    (n_alphas, n_betas). The plane's centre (0, 0) is always inside.
    """
    pts = np.vstack([np.asarray(c, dtype=float).reshape(-1, 2) for c in _as_list(coords)] + [np.zeros((1, 2))])
    n_a, n_b = (resolution, resolution) if np.isscalar(resolution) else resolution
    if min(n_a, n_b) < 2:
        raise ValueError(f"grid resolution must be at least 2 points per axis, got {resolution}")
    if not np.isfinite(pts).all():
        raise ValueError("coordinates contain non-finite values")
    low, high = pts.min(axis=0), pts.max(axis=0)
    # One half-width for both axes: a path that moves mostly along PC1 would otherwise get a
    # thin strip of a grid, and a round bowl would be drawn as a trough.
    half = (0.5 + margin) * max(float((high - low).max()), 1e-12)
    mid = (low + high) / 2
    return np.linspace(mid[0] - half, mid[0] + half, int(n_a)), np.linspace(mid[1] - half, mid[1] + half, int(n_b))


def _as_list(coords):
    return coords if isinstance(coords, (list, tuple)) else [coords]


def evaluate_surface(fm, X, y, plane: Plane, alphas, betas, chunk: int | None = None) -> Surface:
    """Loss and accuracy at every grid point, batched in chunks (no Python loop per point)."""
    alphas, betas = np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float)
    if alphas.ndim != 1 or betas.ndim != 1 or len(alphas) < 1 or len(betas) < 1:
        raise ValueError("alphas and betas must be non-empty 1-D arrays")
    if plane.center.shape[0] != fm.dim:
        raise ValueError(f"the plane has {plane.center.shape[0]} weights, the model {fm.dim}")
    aa, bb = np.meshgrid(alphas, betas)  # (B, A) each: row i is betas[i]
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)
    loss, acc = evaluate_points(fm, X, y, plane, coords, chunk)
    shape = (len(betas), len(alphas))
    return Surface(alphas, betas, loss.reshape(shape), acc.reshape(shape), plane)


def evaluate_points(fm, X, y, plane: Plane, coords, chunk: int | None = None):
    """Loss and accuracy at plane coordinates (N, 2): the surface function at exactly those points."""
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if not np.isfinite(coords).all():
        raise ValueError("coordinates contain non-finite values")
    model = PlaneModel.of(fm, X, plane)
    if model is None:
        return _evaluate_generic(fm, X, y, plane, coords, chunk)
    losses, accs = np.empty(len(coords), np.float32), np.empty(len(coords), np.float32)
    for idx, block in model.blocks(coords):  # tiles of nearby points, each with its own closed form
        ab = torch.as_tensor(coords[idx], dtype=X.dtype, device=X.device)
        step = chunk or block.chunk
        for start in range(0, len(idx), step):
            logits = block(ab[start:start + step])  # (K, n)
            part = idx[start:start + step]
            losses[part] = (F.softplus(logits) - y * logits).mean(dim=1).cpu().numpy()  # BCE with logits
            accs[part] = ((logits > 0).to(y.dtype) == y).to(torch.float32).mean(dim=1).cpu().numpy()
    return losses, accs


def _evaluate_generic(fm, X, y, plane, coords, chunk):
    """Any module: batches of full weight vectors through FlatModel.losses (vmap)."""
    chunk = chunk or _chunk_size(X.shape[0], fm.dim)
    losses, accs = [], []
    for start in range(0, len(coords), chunk):
        thetas = plane.points(coords[start:start + chunk])
        losses.append(fm.losses(thetas, X, y, chunk=chunk))
        accs.append(fm.accuracies(thetas, X, y, chunk=chunk))
    return torch.cat(losses).cpu().numpy(), torch.cat(accs).cpu().numpy()


def _chunk_size(n_samples: int, dim: int, budget: float = 64e6) -> int:
    """Grid points per batch; n_samples * dim bounds a point's activations, so memory stays bounded."""
    return int(max(1, min(4096, budget // (n_samples * dim))))


class PlaneModel:
    """The project's models (MLP, logistic regression) as functions of plane coordinates (a, b).

    On a plane every first-layer pre-activation is affine in (a, b): z_ik = c_ik + a u_ik + b v_ik,
    from three matrix products done once here. See LogitBlock for what is done per tile of points.
    """

    def __init__(self, fm, X, plane):
        parts = [fm.unflatten(t) for t in (plane.center, plane.u, plane.v)]
        self.linear = None
        if "linear.weight" in parts[0]:  # logistic regression: logits are affine in (a, b)
            self.linear = torch.stack([X @ p["linear.weight"][0] + p["linear.bias"][0] for p in parts])  # (3, n)
            return
        self.pre = [X @ p["fc1.weight"].T + p["fc1.bias"] for p in parts]  # 3 x (n, h)
        self.out = [p["fc2.weight"][0] for p in parts]  # 3 x (h,)
        self.bias = torch.stack([p["fc2.bias"][0] for p in parts])  # (3,)

    @staticmethod
    def of(fm, X, plane):
        """A PlaneModel for the project's own modules; None for any other (the generic path)."""
        from models import MLP, LogisticRegression
        if type(fm.module) not in (MLP, LogisticRegression):
            return None
        with torch.no_grad():
            return PlaneModel(fm, X, plane)

    def blocks(self, coords: np.ndarray, points_per_tile: int = 160):
        """(indices, LogitBlock) for square tiles of the points' bounding box.

        Small tiles hold few ReLU switches, so most of each tile's work is in closed form.
        """
        if self.linear is not None:
            yield np.arange(len(coords)), self._linear_block
            return
        tiles = max(1, int(np.sqrt(len(coords) / points_per_tile)))
        low, high = coords.min(axis=0), coords.max(axis=0)
        cell = np.floor((coords - low) / np.where(high > low, high - low, 1.0) * tiles).clip(0, tiles - 1)
        tile_of = cell[:, 0] * tiles + cell[:, 1]
        for tile in np.unique(tile_of):
            idx = np.flatnonzero(tile_of == tile)
            yield idx, LogitBlock(self, coords[idx].min(axis=0), coords[idx].max(axis=0))

    def _linear_block(self, ab):
        return torch.cat([torch.ones_like(ab[:, :1]), ab], dim=1) @ self.linear
    _linear_block.chunk = 4096


class LogitBlock:
    """MLP logits (K, n) at coordinates inside one rectangle, with only the needed work.

    A unit whose pre-activation keeps one sign at all four corners of the rectangle is linear
    (or zero) inside it, so its share of the logit is a quadratic in (a, b), summed over units
    in closed form: one (K, 6) x (6, n) product. Only the (sample, unit) pairs whose ReLU
    switches inside the rectangle are evaluated point by point. Exact up to rounding.
    """

    def __init__(self, model: PlaneModel, low, high):
        (c, cu, cv), (w, wu, wv) = model.pre, model.out
        (a0, b0), (ha, hb) = (low + high) / 2, (high - low) / 2
        middle = c + float(a0) * cu + float(b0) * cv  # (n, h): pre-activations at the centre
        spread = cu.abs() * float(ha) + cv.abs() * float(hb)  # how far they move inside the rectangle
        on = middle > spread  # positive on the whole rectangle: ReLU is the identity there
        rows, units = ((middle + spread > 0) & ~on).nonzero(as_tuple=True)  # ReLU switches inside
        # The "on" units' share: sum_k (w + a wu + b wv)_k (c + a cu + b cv)_ik, by powers of (a, b)
        masked = torch.stack([c, cu, cv]) * on  # (3, n, h)
        p = masked @ torch.stack([w, wu, wv], dim=1)  # (3, n, 3): p[i, :, j] = masked_i @ weight_j
        self.quadratic = torch.stack([p[0, :, 0], p[1, :, 0] + p[0, :, 1], p[2, :, 0] + p[0, :, 2],
                                      p[1, :, 1], p[2, :, 2], p[2, :, 1] + p[1, :, 2]])  # (6, n): 1 a b a² b² ab
        self.quadratic[:3] += model.bias[:, None]
        self.rows = rows
        self.mixed = [t[rows, units] for t in (c, cu, cv)]  # 3 x (m,)
        self.mixed_w = [t[units] for t in (w, wu, wv)]  # 3 x (m,)
        # (K, m) blocks of ~256k floats stay in cache: the element-wise work is not memory bound
        self.chunk = int(max(1, min(4096, 2 ** 18 // max(1, len(rows)))))

    def __call__(self, ab: torch.Tensor) -> torch.Tensor:
        a, b = ab[:, :1], ab[:, 1:]
        powers = torch.cat([torch.ones_like(a), a, b, a * a, b * b, a * b], dim=1)  # (K, 6)
        logits = powers @ self.quadratic  # (K, n)
        if len(self.rows):
            (c, cu, cv), (w, wu, wv) = self.mixed, self.mixed_w
            share = (a * cu).add_(c).addcmul_(b, cv).relu_()  # (K, m) ReLU outputs
            share.mul_((a * wu).add_(w).addcmul_(b, wv))  # times their output weights
            logits.index_add_(1, self.rows, share)
        return logits


def interpolate_line(fm, X, y, start: torch.Tensor, end: torch.Tensor, ts):
    """Loss and accuracy along start + t (end - start) for each t (Goodfellow et al. 2015)."""
    check_points(torch.stack([start, end]), fm.dim, "line ends")
    ts = torch.as_tensor(np.asarray(ts, dtype=float), dtype=start.dtype, device=start.device)
    thetas = start + ts[:, None] * (end - start)
    return fm.losses(thetas, X, y).cpu().numpy(), fm.accuracies(thetas, X, y).cpu().numpy()
