"""Models whose first layer is Linear or Conv as functions of plane coordinates.

The structure is recognised in model_graph.py. On a plane the first layer's pre-activations are
affine in (a, b), z = zc + a zu + b zv, so they are computed three times per sample batch instead
of once per point.
Linear alone and Linear -> ReLU -> Linear get closed forms; a model that begins Linear -> ReLU ->
narrow Linear gets that closed form for the second Linear's output and runs the rest of its traced
graph per point ("prefix"); any other model whose input reaches the rest of the network only through
its first Conv, or a Linear wide enough to be worth keeping (keeps_head), is split there ("split": the
rest runs per point on z, vmapped over points). Other models run their traced graph per point (loss_surface).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import vmap

from model_graph import Split, Structure, split_for, split_head
from relu_kernel import add_relu_shares

# Most floats in one block of the affine path: 16 MB, bounded memory whatever the grid.
BLOCK_ELEMENTS = 2 ** 22
# Tiles of the Linear -> ReLU -> Linear path: small rectangles of the plane hold few ReLU switches.
# Measured (one thread, the default MLP, 51x51, compiled switching pairs): 100 points per tile 27 / 24 ms
# on a random / PCA plane, 150: 25 / 19 ms, 200: 27 / 18 ms.
POINTS_PER_TILE = 150
# Floats of the first layer's output, n h per tile, per batch of tiles built together (and of the
# pairs' coefficients, 6 C h per sample, per batch of samples): 4 MB.
BUILD_ELEMENTS = 2 ** 20
# Most floats in one tile's per-point block, (n C, K) logits, (h C, K) weights or (m C, K) shares: 4 MB.
TILE_ELEMENTS = 2 ** 20
# Floats of the cut's output per vmap batch of the split path, K n F: 1 MB, half the 2 MB L2 cache,
# but at least 2 points. Measured (one thread, evaluate_points): the digits CNN (n F = 230k) 1.5x
# slower at K = 1 than at K = 2..16; the 10-128-128-1 MLP at n = 1000 (n F = 128k) 1.1x faster at
# K = 2 than at K = 4, 2x slower at K = 8.
SPLIT_ELEMENTS = 2 ** 18
# The split path keeps its head's output precomputed (three slabs combined per point) where recomputing it
# per point costs more. Measured (one thread, n = 1000, 51x51 random plane, against the plain loop): the
# digits CNN 1.8x split, 1.2x per point; F-128-128-1 MLPs with F = 10 inputs 0.86x split, 1.22x per point;
# F = 30: 0.85x, 1.13x; F = 100: 1.24x, 1.16x. So a Conv head always, a Linear one from 64 inputs on.
HEAD_FAN_IN = 64
# Most logit floats in one block the split path hands to the loss sums: 1 MB.
LOGIT_ELEMENTS = 2 ** 18


class PlaneModel:
    """A recognised model on one sample batch: logits at plane points without a forward per point."""

    def __init__(self, fm, structure: Structure, X: torch.Tensor, plane):
        parts = [fm.unflatten(t) for t in (plane.center, plane.u, plane.v)]  # centre, u, v
        # "prefix": the tiles give the second Linear's output, the rest of the traced graph runs per point
        self.rest = Rest(split_for(fm, X, depth=2), parts, X.shape[0]) if structure.kind == "prefix" else None
        weights = [torch.stack([p[w] for p in parts]) for w, _ in structure.linears]  # (3, out, in) each
        biases = [torch.stack([p[b] if b else torch.zeros_like(p[w][:, 0]) for p in parts])
                  for w, b in structure.linears]  # (3, out) each
        self.kind, self.n = structure.kind, X.shape[0]
        # First-layer pre-activations along centre, u and v, biases included: (3, n, h)
        self.z = torch.baddbmm(biases[0][:, None, :], X.expand(3, *X.shape), weights[0].transpose(1, 2))
        if self.kind != "affine":
            self.w = weights[1].transpose(1, 2).contiguous()  # (3, h, C)
            self.bias = biases[1]  # (3, C)
            self.abs_z = self.z.abs()  # (3, n, h): |zc|, |zu|, |zv|

    def logits(self, coords: np.ndarray):
        """Yield (indices into coords, logits (K, n, C)) block by block, covering every point once."""
        if self.kind == "affine":
            yield from self._affine(coords)
        else:
            yield from self._sweep(coords)

    def _affine(self, coords):
        flat = self.z.reshape(3, -1)  # (3, n C)
        step = max(1, BLOCK_ELEMENTS // flat.shape[1])
        for start in range(0, len(coords), step):
            ab = torch.as_tensor(coords[start:start + step], dtype=flat.dtype, device=flat.device)
            powers = torch.cat([torch.ones_like(ab[:, :1]), ab], dim=1)  # (K, 3): 1 a b
            yield np.arange(start, start + len(ab)), (powers @ flat).view(len(ab), self.n, -1)

    def _sweep(self, coords):
        """Tiles of nearby points (squares of the points' bounding box, about POINTS_PER_TILE each)."""
        groups = _tile_groups(coords)
        per_batch = max(1, BUILD_ELEMENTS // self.z[0].numel())
        for first in range(0, len(groups), per_batch):
            batch = groups[first:first + per_batch]
            bounds = np.stack([[coords[g].min(axis=0), coords[g].max(axis=0)] for g in batch])  # (T, 2, 2)
            for group, tile in zip(batch, build_tiles(self, bounds[:, 0], bounds[:, 1])):
                chunk = tile.chunk if self.rest is None else min(tile.chunk, self.rest.chunk)
                for start in range(0, len(group), chunk):
                    part = group[start:start + chunk]
                    ab = torch.as_tensor(coords[part], dtype=self.z.dtype, device=self.z.device)
                    yield part, tile(ab) if self.rest is None else self.rest(ab, tile(ab).contiguous())


def _tile_groups(coords: np.ndarray) -> list:
    """Indices into coords (N, 2), one array per square cell of their bounding box, about POINTS_PER_TILE each."""
    per_axis = max(1, int(np.sqrt(len(coords) / POINTS_PER_TILE)))
    low, high = coords.min(axis=0), coords.max(axis=0)
    cell = np.floor((coords - low) / np.where(high > low, high - low, 1.0) * per_axis).clip(0, per_axis - 1)
    tile_of = cell[:, 0] * per_axis + cell[:, 1]
    order = np.argsort(tile_of, kind="stable")
    starts = np.flatnonzero(np.diff(tile_of[order], prepend=-1))
    return np.split(order, starts[1:])


def build_tiles(model: PlaneModel, lows: np.ndarray, highs: np.ndarray) -> list:
    """One Tile per rectangle [lows[t], highs[t]] (T, 2), built together: a few large ops instead of many small.

    A (sample, unit) pair whose pre-activation surely keeps one sign at all four corners of a
    rectangle (rounding counted) is linear or zero inside it; the others may switch there.
    """
    z, w = model.z, model.w  # (3, n, h), (3, h, C)
    n, h, C, T = z.shape[1], z.shape[2], w.shape[2], len(lows)
    centres = z.new_tensor(np.c_[np.ones(T), (lows + highs) / 2])  # (T, 3): 1 a0 b0
    # How far pre-activations move inside a rectangle, plus what rounding may hide: middle cancels
    # terms as large as |zc| + |a0 zu| + |b0 zv|
    reach = z.new_tensor(np.c_[np.zeros(T), (highs - lows) / 2]) + 4 * torch.finfo(z.dtype).eps * centres.abs()
    middle = centres @ z.view(3, -1)  # (T, n h): pre-activations at the centres
    bound = reach @ model.abs_z.view(3, -1)
    on = torch.gt(middle, bound, out=torch.empty_like(middle)).view(T, n, h)  # 1 where surely positive
    quadratic = _quadratic(model, on).permute(3, 0, 2, 1).reshape(T, n * C, 6)  # (T, n C, 6)
    counts, rows, units = _switching_pairs(middle.abs() <= bound, h)
    switching_z = model.z.view(3, -1).index_select(1, rows * h + units).T.contiguous()  # (M, 3): along centre, u, v
    return [Tile(q, r, u, sz, w) for q, r, u, sz in
            zip(quadratic, rows.split(counts), units.split(counts), switching_z.split(counts))]


def _switching_pairs(mask: torch.Tensor, h: int) -> tuple:
    """(counts per tile, rows, units) of the pairs that may switch, mask (T, n h), by tile, then sample, then unit.

    On numpy: its flatnonzero and its division by a constant run several times faster than torch's.
    """
    T, per_tile = mask.shape
    flat = np.flatnonzero(mask.cpu().numpy())
    counts = np.diff(np.searchsorted(flat, np.arange(T + 1) * per_tile))
    pairs = flat - np.repeat(np.arange(T) * per_tile, counts)  # sample * h + unit
    rows = pairs // h
    return counts.tolist(), *(torch.from_numpy(i).to(mask.device) for i in (rows, pairs - rows * h))


def _quadratic(model: PlaneModel, on: torch.Tensor) -> torch.Tensor:
    """(n, 6, C, T): the logits' coefficients of 1 a b a² b² ab from the pairs that are on in each tile (T, n, h).

    A pair that is on adds (wc + a wu + b wv)(zc + a zu + b zv) to its sample's logits: per sample,
    its 6 C coefficients (6 C, h) times the tiles' on-masks (h, T), one small product per sample.
    """
    z, w = model.z, model.w  # (3, n, h), (3, h, C)
    n, h, C, T = z.shape[1], z.shape[2], w.shape[2], on.shape[0]
    on = on.permute(1, 2, 0).contiguous()  # (n, h, T)
    wc, wu, wv = (part.T[None] for part in w)  # (1, C, h) each
    out = torch.empty(n, 6 * C, T, dtype=z.dtype, device=z.device)
    per_batch = max(1, BUILD_ELEMENTS // (6 * C * h))
    for start in range(0, n, per_batch):
        rows = slice(start, start + per_batch)
        zc, zu, zv = (part[rows, None, :] for part in z)  # (s, 1, h) each
        pairs = torch.stack([zc * wc, zc * wu + zu * wc, zc * wv + zv * wc, zu * wu, zv * wv, zu * wv + zv * wu], 1)
        torch.bmm(pairs.view(-1, 6 * C, h), on[rows], out=out[rows])
    out = out.view(n, 6, C, T)
    out[:, :3] += model.bias[:, :, None]  # the output bias is affine in (a, b) too
    return out


class Tile:
    """Linear -> ReLU -> Linear logits at coordinates inside one rectangle, with only the needed work.

    The pairs that keep one sign in the rectangle are linear or zero inside it, so their shares of the
    logits add up to one quadratic in (a, b) per sample and output: 6 numbers per point and output.
    Only the pairs whose ReLU may switch inside the rectangle are evaluated point by point: in one
    compiled loop on CPU (relu_kernel), as a few torch ops elsewhere. Exact up to rounding.
    """

    def __init__(self, quadratic: torch.Tensor, rows: torch.Tensor, units: torch.Tensor, switching_z: torch.Tensor,
                 w: torch.Tensor):
        self.quadratic = quadratic  # (n C, 6): coefficients of 1 a b a² b² ab per sample and output
        self.rows, self.units = rows, units  # (m,) each: the (sample, unit) pairs that may switch
        self.switching_z = switching_z  # (m, 3): their pre-activations along centre, u, v
        self.w = w  # (3, h, C): all outgoing weights along centre, u, v
        self.C = w.shape[2]
        self.n = quadratic.shape[0] // self.C
        # numba compiles float32 and float64 loops for the CPU; other devices and dtypes take torch ops
        self.compiled = quadratic.device.type == "cpu" and quadratic.dtype in (torch.float32, torch.float64)
        # Points per call: the loop holds the (n C, K) logits and (h C, K) weights, the torch ops (m C, K) shares
        held = max(self.n, w.shape[1]) if self.compiled else max(len(rows), self.n)
        self.chunk = max(1, TILE_ELEMENTS // (held * self.C))

    def __call__(self, ab: torch.Tensor) -> torch.Tensor:
        """Logits (K, n, C) at coordinates ab (K, 2): a view of an (n, C, K) tensor, points last.

        Points stay the fast axis throughout: each product below is (rows, 1) + (rows, 2 or 5) @ (2 or 5, K),
        a shape BLAS runs several times faster than (rows, 3) @ (3, K), and no copy turns the result around.
        """
        a, b = ab.T
        powers = torch.stack([a, b, a * a, b * b, a * b])  # (5, K): the constant term is the bias column
        logits = torch.addmm(self.quadratic[:, :1], self.quadratic[:, 1:], powers)  # (n C, K)
        if len(self.rows):
            add = self._add_compiled if self.compiled else self._add_as_torch_ops
            add(powers[:2], logits.view(self.n, self.C, -1))
        return logits.view(self.n, self.C, -1).permute(2, 0, 1)  # (K, n, C): samples, then classes

    def _add_compiled(self, ab: torch.Tensor, logits: torch.Tensor):
        """The switching pairs' shares added to logits (n, C, K) in place by relu_kernel's loop (weights (h, C, K))."""
        weights = torch.addmm(self.w[0].view(-1, 1), self.w[1:].view(2, -1).T, ab).view(-1, self.C, ab.shape[1])
        a, b = ab  # contiguous rows of powers
        add_relu_shares(*(t.numpy() for t in (self.rows, self.units, self.switching_z, weights, a, b, logits)))

    def _add_as_torch_ops(self, ab: torch.Tensor, logits: torch.Tensor):
        """The same with torch ops (any device): a few passes over (m, K) blocks."""
        m, K = len(self.rows), ab.shape[1]
        w = self.w.index_select(1, self.units).permute(1, 2, 0).reshape(-1, 3)  # (m C, 3): along centre, u, v
        relu = torch.addmm(self.switching_z[:, :1], self.switching_z[:, 1:], ab).relu_()  # (m, K)
        share = torch.addmm(w[:, :1], w[:, 1:], ab).view(m, self.C, K).mul_(relu[:, None])  # weights times ReLU
        logits.index_add_(0, self.rows, share)  # whole (C, K) blocks per pair


class Rest:
    """The layers after a cut as a function of (a, b): their weights combined per point, the traced rest vmapped."""

    def __init__(self, split: Split, parts: list, n: int):
        self.weights = [torch.stack([p[name].reshape(-1) for p in parts]) for name in split.rest_names]  # (3, numel)
        self.shapes = [parts[0][name].shape for name in split.rest_names]
        self.rest = vmap(lambda cut, *weights: split.rest(cut, *weights)[0])
        self.n = n
        self.chunk = max(2, min(256, SPLIT_ELEMENTS // split.cut_numel))  # points per vmap batch

    def __call__(self, ab: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
        """Logits (K, n, C) at coordinates ab (K, 2) from the cut's output there (K, ...)."""
        powers = torch.cat([torch.ones_like(ab[:, :1]), ab], dim=1)  # (K, 3): 1 a b
        weights = [(powers @ w).view(len(ab), *shape) for w, shape in zip(self.weights, self.shapes)]
        return self.rest(cut, *weights).reshape(len(ab), self.n, -1)


def keeps_head(fm, split: Split) -> bool:
    """Whether split's first layer is worth computing once for the whole plane: a Conv, or a wide Linear."""
    weights = fm.unflatten(fm.theta0)
    weight = next(weights[name] for name in split.first_names if weights[name].ndim >= 2)
    return weight.ndim > 2 or weight[0].numel() >= HEAD_FAN_IN


class SplitModel:
    """A split model on one sample batch: the first layer three times, then the rest per point, vmapped."""

    def __init__(self, fm, split: Split, X: torch.Tensor, plane, chunk: int | None = None):
        parts = [fm.unflatten(t) for t in (plane.center, plane.u, plane.v)]  # centre, u, v
        # First layer along centre, u and v (u's and v's biases included): (3, n, ...)
        self.z = split_head(split, parts, X)
        self.rest = Rest(split, parts, X.shape[0])
        self.n, self.out_numel = X.shape[0], split.out_numel
        self.chunk = chunk or self.rest.chunk

    def logits(self, coords: np.ndarray):
        """Yield (indices into coords, logits (K, n, C)), covering every point once.

        The rest runs chunk points at a time; blocks of several chunks go out together so that the
        caller's loss sums (a few small ops per block) are paid once per LOGIT_ELEMENTS floats.
        """
        per_block = self.chunk * max(1, LOGIT_ELEMENTS // (self.chunk * self.n * self._width()))
        for start in range(0, len(coords), per_block):
            block = coords[start:start + per_block]
            parts = [self._rest_at(block[i:i + self.chunk]) for i in range(0, len(block), self.chunk)]
            yield np.arange(start, start + len(block)), torch.cat(parts)

    def _rest_at(self, coords: np.ndarray) -> torch.Tensor:
        """Logits (K, n, C) at K coordinates: the first layer combined, then the rest vmapped."""
        flat = self.z.reshape(3, -1)  # (3, n F)
        ab = torch.as_tensor(coords, dtype=flat.dtype, device=flat.device)
        powers = torch.cat([torch.ones_like(ab[:, :1]), ab], dim=1)  # (K, 3): 1 a b
        return self.rest(ab, (powers @ flat).view(len(ab), *self.z.shape[1:]))  # the first layer at each point

    def _width(self) -> int:
        """C: logit columns per sample, from the traced output."""
        return max(1, self.out_numel // self.n)
