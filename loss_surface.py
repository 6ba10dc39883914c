"""Loss and accuracy over a 2-D grid of a plane, batched over grid points; 1-D interpolation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import vmap

from model_graph import find_structure, point_graph, split_for
from models import finish_metric, summed_loss_and_metric
from plane_model import PlaneModel, SplitModel, keeps_head
from projection import Plane, check_points

# Weight floats of one block of the per-point path, K D: 4 MB. Measured on the 10-128-128-1 MLP
# (D = 18049, n = 1000): 64 points per block 1.07x faster than 16 (the loss sums run once per block).
POINT_BLOCK_ELEMENTS = 2 ** 20
POINT_BLOCK_MAX = 64


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


def evaluate_surface(fm, X, y, plane: Plane, alphas, betas, chunk: int | None = None, points=None) -> Surface:
    """Loss and accuracy at every grid point, batched in chunks (no Python loop per point).

    points(coords (N, 2)) -> (loss, accuracy) replaces evaluate_points, e.g. to split the grid across ranks.
    """
    alphas, betas = np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float)
    if alphas.ndim != 1 or betas.ndim != 1 or len(alphas) < 1 or len(betas) < 1:
        raise ValueError("alphas and betas must be non-empty 1-D arrays")
    aa, bb = np.meshgrid(alphas, betas)  # (B, A) each: row i is betas[i]
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)
    loss, acc = points(coords) if points is not None else evaluate_points(fm, X, y, plane, coords, chunk)
    shape = (len(betas), len(alphas))
    return Surface(alphas, betas, loss.reshape(shape), acc.reshape(shape), plane)


def evaluate_points(fm, X, y, plane: Plane, coords, chunk: int | None = None):
    """Loss and accuracy (numpy (N,) each) at plane coordinates (N, 2): the surface function there.

    A model whose first layer is Linear, alone or as Linear -> ReLU -> Linear (however spelled),
    takes a closed-form path (plane_model), as does the start of one that begins Linear -> ReLU ->
    Linear of at most model_graph.PREFIX_COLUMNS columns (the rest then runs per point); one whose
    input reaches the rest only through a Conv or a wide Linear (plane_model.keeps_head) computes that
    layer three times and the rest per point (plane_model.SplitModel); any other traceable one runs
    its traced graph once per point, chunk points' weights combined at a time; what make_fx cannot
    trace, or has buffers, goes through vmap in batches of full weight vectors. All sum
    models.summed_loss_and_metric over fm.sample_batches, so eval_batch_size gives the same numbers.
    """
    if plane.center.shape[0] != fm.dim:
        raise ValueError(f"the plane has {plane.center.shape[0]} weights, the model {fm.dim}")
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if not np.isfinite(coords).all():
        raise ValueError("coordinates contain non-finite values")
    if len(coords) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    X, y = X.to(fm.device), y.to(fm.device)
    plane = Plane(*(t.to(fm.device) for t in (plane.center, plane.u, plane.v)), plane.kind, plane.explained)
    with torch.no_grad():
        structure = find_structure(fm, X)
        loss_sum = torch.zeros(len(coords), dtype=torch.float64, device=fm.device)
        metric_sum_ = torch.zeros(len(coords), dtype=torch.float64, device=fm.device)
        for batch in _sample_batches(fm, len(X)):
            blocks = _plane_logits(fm, structure, X[batch], plane, coords, chunk)
            for index, logits in blocks:  # logits (K, n, C) at coords[index]
                logits = _shaped(logits, fm.loss_kind)
                index = torch.as_tensor(index, device=fm.device)
                loss_part, metric_part = summed_loss_and_metric(fm.loss_kind, logits, y[batch])
                loss_sum[index] += loss_part.double()
                metric_sum_[index] += metric_part.double()
        loss = (loss_sum / len(X)).to(X.dtype)
        metric = finish_metric(fm.loss_kind, metric_sum_, y.double()).float()
    return loss.cpu().numpy(), metric.cpu().numpy()


def _plane_logits(fm, structure, X, plane, coords, chunk):
    """(indices, logits (K, n, C)) blocks on one sample batch X from the fastest path that fits the model."""
    if structure is not None and structure.kind != "split":
        return PlaneModel(fm, structure, X, plane).logits(coords)
    split = split_for(fm, X) if structure is not None else None
    if split is not None and keeps_head(fm, split):
        return SplitModel(fm, split, X, plane, chunk).logits(coords)
    graph = point_graph(fm, X)
    if graph is None:
        return _generic_logits(fm, X, plane, coords, chunk)
    return _point_logits(fm, graph, X, plane, coords, chunk)


def _sample_batches(fm, n: int) -> list:
    """fm.sample_batches when the model has them (eval_batch_size), else the whole sample axis."""
    batches = getattr(fm, "sample_batches", None)
    return batches(n) if batches is not None else [slice(0, n)]


def _shaped(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """(K, n, C) -> (K, n, C) for ce, (K, n) for bce and mse (one output column).

    The closed form hands out a points-last view; the loss sums read it in place (ce by class slices:
    models.summed_loss_and_metric).
    """
    return logits if kind == "ce" else logits.reshape(logits.shape[0], -1)


def _generic_logits(fm, X, plane, coords, chunk):
    """Any module: yield (indices, logits (K, n, C)) from vmap of fm.logits over K full weight vectors."""
    chunk = chunk or generic_chunk(X.shape[0], X[0].numel())
    batched_logits = vmap(fm.logits, in_dims=(0, None))
    for start in range(0, len(coords), chunk):
        logits = batched_logits(plane.points(coords[start:start + chunk]), X)  # (K, n) or (K, n, C)
        yield np.arange(start, start + len(logits)), logits.reshape(len(logits), X.shape[0], -1)


def _point_logits(fm, graph, X, plane, coords, chunk):
    """A traceable module: yield (indices, logits (K, n, C)), its traced graph run once per point.

    Each forward keeps the model's own matrix products, at the size where they run fastest; vmap over
    points makes them products batched over K weight copies, measured slower than the plain loop
    (benchmarks/bench_surface.py). The weights of chunk points are combined in one product per block.
    """
    chunk = chunk or max(1, min(POINT_BLOCK_MAX, POINT_BLOCK_ELEMENTS // fm.dim))
    directions = torch.stack([plane.u, plane.v])
    for start in range(0, len(coords), chunk):
        ab = torch.as_tensor(coords[start:start + chunk], dtype=plane.center.dtype, device=plane.center.device)
        thetas = torch.addmm(plane.center, ab, directions)  # (K, D) in one pass, not plane.points' four
        logits = torch.stack([graph(*fm.unflatten(theta).values(), X) for theta in thetas])
        yield np.arange(start, start + len(logits)), logits.reshape(len(logits), X.shape[0], -1)


def generic_chunk(n_samples: int, width: int, cache_floats: int = 2 ** 18) -> int:
    """Grid points per vmap batch: K points' activations, about K n max(width, 128) floats, fill 1 MB.

    Measured on the 10-128-128-1 MLP, n = 1000 (benchmarks/bench_surface.py): K = 2 was fastest,
    K = 1 pays per-call overhead, K >= 8 leaves half of the 2 MB L2 cache and slows down.
    """
    return int(max(1, min(256, cache_floats // (n_samples * max(width, 128)))))


def interpolate_line(fm, X, y, start: torch.Tensor, end: torch.Tensor, ts):
    """Loss and accuracy along start + t (end - start) for each t (Goodfellow et al. 2015).

    The line is a plane with v = 0, so it takes the same paths as a surface.
    """
    check_points(torch.stack([start, end]), fm.dim, "line ends")
    line = Plane(start, end - start, torch.zeros_like(start), "line")
    ts = np.asarray(ts, dtype=float).reshape(-1)
    return evaluate_points(fm, X, y, line, np.stack([ts, np.zeros_like(ts)], axis=1))
