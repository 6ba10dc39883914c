"""Loss and accuracy over a 2-D grid of a plane, batched over grid points; 1-D interpolation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


def interpolate_line(fm, X, y, start: torch.Tensor, end: torch.Tensor, ts):
    """Loss and accuracy along start + t (end - start) for each t (Goodfellow et al. 2015)."""
    check_points(torch.stack([start, end]), fm.dim, "line ends")
    ts = torch.as_tensor(np.asarray(ts, dtype=float), dtype=start.dtype, device=start.device)
    thetas = start + ts[:, None] * (end - start)
    return fm.losses(thetas, X, y).cpu().numpy(), fm.accuracies(thetas, X, y).cpu().numpy()
