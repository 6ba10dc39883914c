"""Loss and accuracy over a 2-D grid of a plane, batched over grid points; 1-D interpolation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import vmap

from models import MLP, LogisticRegression
from projection import Plane, check_points

# Most elements in one block of per-point work, (n, K) logits or (m, K) ReLU shares: 4 MB of
# float32, big enough to amortise each op's overhead, small enough to stay in the last-level cache.
BLOCK_ELEMENTS = 2 ** 20


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
    aa, bb = np.meshgrid(alphas, betas)  # (B, A) each: row i is betas[i]
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)
    loss, acc = evaluate_points(fm, X, y, plane, coords, chunk)
    shape = (len(betas), len(alphas))
    return Surface(alphas, betas, loss.reshape(shape), acc.reshape(shape), plane)


def evaluate_points(fm, X, y, plane: Plane, coords, chunk: int | None = None):
    """Loss and accuracy (numpy (N,) each) at plane coordinates (N, 2): the surface function there.

    The project's own models take a fast path (PlaneModel); any other module is evaluated in
    batches of full weight vectors. chunk caps the grid points per batch (default: by memory).
    """
    if plane.center.shape[0] != fm.dim:
        raise ValueError(f"the plane has {plane.center.shape[0]} weights, the model {fm.dim}")
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if not np.isfinite(coords).all():
        raise ValueError("coordinates contain non-finite values")
    if len(coords) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    with torch.no_grad():
        model = PlaneModel.of(fm, X, plane)
        if model is None:
            loss, acc = _evaluate_generic(fm, X, y, plane, coords, chunk)
        else:
            loss, acc = model.evaluate(coords, y, chunk)
    return loss.cpu().numpy(), acc.cpu().numpy()


def bce_and_accuracy(logits: torch.Tensor, y: torch.Tensor):
    """Mean BCE with logits and accuracy of each column of logits (n, K) against y (n,) -> (K,), (K,).

    The same meaning as F.binary_cross_entropy_with_logits and FlatModel.accuracy: softplus(z) - y z
    is the stable form of the cross-entropy; a sample counts as right when (z > 0) equals its label.
    """
    loss = F.softplus(logits).sub_(logits * y[:, None]).mean(dim=0)
    # right = [y = 0] + ([y = 1] - [y = 0]) [z > 0]: a count, so exact in float32, as a mat-vec
    sign = (y == 1).to(logits.dtype) - (y == 0).to(logits.dtype)  # (n,)
    positive = torch.gt(logits, 0, out=torch.empty_like(logits))  # [z > 0] as 0/1 floats in one pass
    right = (y == 0).sum().to(logits.dtype) + sign @ positive  # (K,)
    return loss, right / len(y)


def _evaluate_generic(fm, X, y, plane, coords, chunk):
    """Any module: the logits of batches of full weight vectors through FlatModel.logits (vmap)."""
    chunk = chunk or _chunk_size(X.shape[0], fm.dim)
    batched_logits = vmap(fm.logits, in_dims=(0, None))
    losses, accs = [], []
    for start in range(0, len(coords), chunk):
        logits = batched_logits(plane.points(coords[start:start + chunk]), X)  # (K, n)
        loss, acc = bce_and_accuracy(logits.T, y)
        losses.append(loss)
        accs.append(acc)
    return torch.cat(losses), torch.cat(accs)


def _chunk_size(n_samples: int, dim: int, budget: float = 64e6) -> int:
    """Grid points per batch; n_samples * dim bounds a point's activations, so memory stays bounded."""
    return int(max(1, min(4096, budget // (n_samples * dim))))


class PlaneModel:
    """The project's models (MLP, logistic regression) as functions of plane coordinates (a, b).

    On a plane every first-layer pre-activation is affine in (a, b): z = c + a cu + b cv, from three
    matrix products done once here instead of one per grid point. The grid is then cut into tiles
    of nearby points; see LogitTile for what is done per tile.
    """

    def __init__(self, fm, X, plane, points_per_tile: int = 160):
        parts = [fm.unflatten(t) for t in (plane.center, plane.u, plane.v)]
        self.points_per_tile = points_per_tile
        self.dtype, self.device, self.linear = X.dtype, X.device, None
        if "linear.weight" in parts[0]:  # logistic regression: the logits are affine in (a, b)
            self.linear = torch.stack([X @ p["linear.weight"][0] + p["linear.bias"][0] for p in parts], dim=1)  # (n, 3)
            return
        self.pre = torch.stack([X @ p["fc1.weight"].T + p["fc1.bias"] for p in parts])  # (3, n, h)
        self.out = torch.stack([p["fc2.weight"][0] for p in parts], dim=1)  # (h, 3)
        self.bias = torch.stack([p["fc2.bias"][0] for p in parts])  # (3,)
        self.pre_flat = self.pre.view(3, -1)  # (3, n h)
        self.abs_pre = self.pre_flat.abs()  # (3, n h): |c|, |cu|, |cv|
        self.pre_by_pair = self.pre_flat.T.contiguous()  # (n h, 3): gathers by pair

    @staticmethod
    def of(fm, X, plane):
        """A PlaneModel for the project's own modules; None for any other (the generic path)."""
        if type(fm.module) not in (MLP, LogisticRegression):
            return None
        return PlaneModel(fm, X, plane)

    def evaluate(self, coords: np.ndarray, y: torch.Tensor, chunk: int | None = None):
        """Loss and accuracy (N,) at coords (N, 2), tile by tile, in blocks that stay in cache."""
        order, bounds, tiles = self.tiles(coords)
        ab = torch.as_tensor(coords[order], dtype=self.dtype, device=self.device)  # (N, 2), tile by tile
        a, b = ab.T
        powers = torch.stack([torch.ones_like(a), a, b, a * a, b * b, a * b])  # (6, N): 1 a b a² b² ab
        loss = torch.empty(len(coords), dtype=self.dtype, device=self.device)
        acc = torch.empty(len(coords), dtype=torch.float32, device=self.device)
        for (start, stop), tile in zip(bounds, tiles):
            step = chunk or tile.chunk
            for first in range(start, stop, step):
                last = min(first + step, stop)
                loss[first:last], acc[first:last] = bce_and_accuracy(tile(powers[:, first:last]), y)
        back = torch.as_tensor(np.argsort(order), device=self.device)  # undo the tile order
        return loss[back], acc[back]

    def tiles(self, coords: np.ndarray):
        """Points sorted tile by tile: (order (N,), [(start, stop)] per tile, [tile]).

        Tiles are squares of the points' bounding box holding about points_per_tile points each:
        small tiles hold few ReLU switches, so most of each tile's work is in closed form.
        """
        if self.linear is not None:
            return np.arange(len(coords)), [(0, len(coords))], [LinearTile(self.linear)]
        per_axis = max(1, int(np.sqrt(len(coords) / self.points_per_tile)))
        low, high = coords.min(axis=0), coords.max(axis=0)
        cell = np.floor((coords - low) / np.where(high > low, high - low, 1.0) * per_axis).clip(0, per_axis - 1)
        tile_of = cell[:, 0] * per_axis + cell[:, 1]
        order = np.argsort(tile_of, kind="stable")
        starts = np.flatnonzero(np.diff(tile_of[order], prepend=-1))
        bounds = list(zip(starts, list(starts[1:]) + [len(coords)]))
        tiles = [LogitTile(self, coords[order[s:e]].min(axis=0), coords[order[s:e]].max(axis=0)) for s, e in bounds]
        return order, bounds, tiles


class LinearTile:
    """Logistic-regression logits (n, K): one (n, 3) x (3, K) product."""

    def __init__(self, linear: torch.Tensor):
        self.linear = linear  # (n, 3): logits at the centre, along u, along v
        self.chunk = max(1, BLOCK_ELEMENTS // len(linear))

    def __call__(self, powers: torch.Tensor) -> torch.Tensor:
        return self.linear @ powers[:3]


class LogitTile:
    """MLP logits (n, K) at coordinates inside one rectangle, with only the needed work.

    A unit whose pre-activation surely keeps one sign at all four corners of the rectangle
    (rounding counted) is linear or zero inside it, so its share of the logit is a quadratic in
    (a, b), summed over units in closed form: one (n, 6) x (6, K) product. Only the (sample, unit)
    pairs whose ReLU may switch inside the rectangle are evaluated point by point. Exact up to
    rounding.
    """

    def __init__(self, model: PlaneModel, low, high):
        pre, out = model.pre, model.out  # (3, n, h), (h, 3)
        (a0, b0), (ha, hb) = (low + high) / 2, (high - low) / 2
        centre, half = pre.new_tensor([1.0, a0, b0]), pre.new_tensor([ha, hb])
        middle = (centre @ model.pre_flat).view(pre.shape[1:])  # (n, h): pre-activations at the centre
        spread = (half @ model.abs_pre[1:]).view(pre.shape[1:])  # how far they move inside the rectangle
        # Plus what rounding may hide: middle cancels terms as large as |c| + |a0 cu| + |b0 cv|
        rounding = 4 * torch.finfo(pre.dtype).eps * (centre.abs() @ model.abs_pre).view(pre.shape[1:])
        bound = spread.add_(rounding)  # (n, h): |pre-activation - middle| <= bound on the whole rectangle
        on = torch.gt(middle, bound, out=torch.empty_like(middle))  # 1.0 where surely positive: ReLU = identity
        self.pairs = (middle.abs() <= bound).view(-1).nonzero().squeeze(1)  # (m,) sample * h + unit
        self.rows, units = self.pairs // pre.shape[2], self.pairs % pre.shape[2]  # where the sign may change
        # The "on" units' share, sum_k (c + a cu + b cv)_ik (w + a wu + b wv)_k, by powers of (a, b):
        # q[j, i] = out_j . (pre_i * on), as (3, h) x (h, 3n): the long side last, where BLAS is fast
        q = (out.T @ (pre * on).reshape(-1, pre.shape[2]).T).view(3, 3, -1)  # (3, 3, n)
        self.quadratic = torch.stack([q[0, 0], q[0, 1] + q[1, 0], q[0, 2] + q[2, 0],
                                      q[1, 1], q[2, 2], q[1, 2] + q[2, 1]])  # (6, n): 1 a b a² b² ab
        self.quadratic[:3] += model.bias[:, None]  # the output bias is affine in (a, b) too
        self.switching_pre = model.pre_by_pair.index_select(0, self.pairs)  # (m, 3)
        self.switching_out = out.index_select(0, units)  # (m, 3)
        self.chunk = max(1, BLOCK_ELEMENTS // max(len(self.rows), pre.shape[1]))

    def __call__(self, powers: torch.Tensor) -> torch.Tensor:
        logits = self.quadratic.T @ powers  # (n, K)
        if len(self.rows):
            linear = powers[:3]  # (3, K): 1, a, b
            share = (self.switching_pre @ linear).relu_().mul_(self.switching_out @ linear)  # (m, K)
            logits.index_add_(0, self.rows, share)  # whole rows of K: a vectorised add per pair
        return logits


def interpolate_line(fm, X, y, start: torch.Tensor, end: torch.Tensor, ts):
    """Loss and accuracy along start + t (end - start) for each t (Goodfellow et al. 2015).

    The line is a plane with v = 0, so it takes the same paths as a surface.
    """
    check_points(torch.stack([start, end]), fm.dim, "line ends")
    line = Plane(start, end - start, torch.zeros_like(start), "line")
    ts = np.asarray(ts, dtype=float).reshape(-1)
    return evaluate_points(fm, X, y, line, np.stack([ts, np.zeros_like(ts)], axis=1))
