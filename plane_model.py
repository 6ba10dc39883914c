"""Models whose first layer is Linear (alone, or Linear -> ReLU -> Linear) as functions of plane coordinates.

Recognised by structure, not by class or parameter names: the module is traced once with make_fx
(real shapes, so shape-dependent Python such as `squeeze(-1) if C == 1` is fine) and its aten graph
is matched. On a plane the first layer's pre-activations are affine in (a, b),
z = zc + a zu + b zv, so they are computed three times per sample batch instead of once per point.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import make_fx

aten = torch.ops.aten
RESHAPES = {aten.squeeze.dim, aten.squeeze.default, aten.squeeze.dims, aten.view.default,
            aten._unsafe_view.default, aten.reshape.default, aten.flatten.using_ints}
RELUS = {aten.relu.default, aten.relu_.default}
# Most floats in one block of per-row work: 16 MB, bounded memory whatever the grid.
BLOCK_ELEMENTS = 2 ** 22
_structures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Structure:
    """A traced module: out = reshape(linear(X)) ("affine") or reshape(linear(relu(linear(X)))) ("relu_linear")."""
    kind: str
    linears: tuple  # ((weight name, bias name or None), ...) in order, first layer first
    n_outputs: int  # C: columns of the last linear layer


def find_structure(fm, X: torch.Tensor) -> Structure | None:
    """The structure of fm's module on inputs shaped like X, or None (any other model: the generic path)."""
    if X.ndim != 2 or fm.buffers:
        return None  # buffers (BatchNorm) or other input shapes: leave it to the generic path
    key = (tuple(X.shape[1:]), X.dtype, X.device)
    cached = _structures.setdefault(fm.module, {})
    if key not in cached:
        cached[key] = _trace(fm, X[:2])
    return cached[key]


def _trace(fm, probe: torch.Tensor) -> Structure | None:
    def forward(params, x):
        return functional_call(fm.module, (params, fm.buffers), (x,))
    try:
        with torch.no_grad():
            graph = make_fx(forward)(fm.unflatten(fm.theta0), probe).graph
    except Exception:  # untraceable modules (data-dependent control flow, custom ops) are fine elsewhere
        return None
    nodes = [n for n in graph.nodes if n.op == "placeholder"]
    names = {node: slot.name for node, slot in zip(nodes, fm.layout)}
    node, linears, reshaped = nodes[-1], [], False  # the input X is the last placeholder
    while True:
        users = list(node.users)
        if len(users) != 1:
            return None
        prev, node = node, users[0]
        if node.op == "output":
            break
        linear = None if reshaped else _linear_of(node, prev, names)
        if linear is not None:
            linears.append(linear)
        elif node.target in RELUS and not reshaped:
            linears.append("relu")
        elif node.target in RESHAPES and linears:
            reshaped = True  # only after the last layer: the logits' shape, not the layers'
        else:
            return None
    if len(node.args[0]) != 1:
        return None
    out = node.args[0][0].meta.get("val")
    linears = tuple(linears)
    kinds = {1: "affine", 3: "relu_linear"}
    if len(linears) not in kinds or linears[1:2] not in ((), ("relu",)) or "relu" in linears[::2]:
        return None
    n_outputs = fm.unflatten(fm.theta0)[linears[-1][0]].shape[0]
    if out is None or out.shape[:1] != probe.shape[:1] or out.numel() != probe.shape[0] * n_outputs:
        return None
    return Structure(kinds[len(linears)], linears[::2], n_outputs)


def _linear_of(node, prev, names):
    """(weight name, bias name or None) if node is prev W^T + b on parameters (aten addmm / mm), else None."""
    if node.target == aten.addmm.default and len(node.args) == 3 and node.args[1] is prev and not node.kwargs:
        bias, weight = node.args[0], node.args[2]
    elif node.target == aten.mm.default and len(node.args) == 2 and node.args[0] is prev:
        bias, weight = None, node.args[1]
    else:
        return None
    if getattr(weight, "target", None) != aten.t.default or weight.args[0] not in names:
        return None
    if bias is not None and bias not in names:
        return None
    return names[weight.args[0]], (names[bias] if bias is not None else None)


class PlaneModel:
    """A recognised model on one sample batch: logits at plane points without a forward per point."""

    def __init__(self, fm, structure: Structure, X: torch.Tensor, plane):
        parts = [fm.unflatten(t) for t in (plane.center, plane.u, plane.v)]  # centre, u, v
        weights = [torch.stack([p[w] for p in parts]) for w, _ in structure.linears]  # (3, out, in) each
        biases = [torch.stack([p[b] if b else torch.zeros_like(p[w][:, 0]) for p in parts])
                  for w, b in structure.linears]  # (3, out) each
        self.kind, self.n = structure.kind, X.shape[0]
        # First-layer pre-activations along centre, u and v, biases included: (3, n, h)
        self.z = torch.baddbmm(biases[0][:, None, :], X.expand(3, *X.shape), weights[0].transpose(1, 2))
        if self.kind == "relu_linear":
            self.w = weights[1].transpose(1, 2).contiguous()  # (3, h, C)
            self.bias = biases[1]  # (3, C)

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
        rows = Rows(coords)
        h, c = self.z.shape[2], self.w.shape[2]
        per_row = self.n * (8 * h + 3 * c * (h + 2 * rows.width))  # floats of one row's work
        step = max(1, BLOCK_ELEMENTS // per_row)
        for first in range(0, rows.count, step):
            index, b, alphas, uniform = rows.block(first, first + step, self.z)
            logits = self._rows(b, alphas, uniform)  # (R, A, n, C)
            real = index >= 0
            if real.all():
                yield index.reshape(-1), logits.flatten(0, 1)
            else:
                yield index[real], logits[torch.as_tensor(real, device=logits.device)]

    def _rows(self, b, alphas, uniform):
        """Logits (R, A, n, C) at (alphas[r, j], b[r]): closed form between each pair's ReLU switch.

        Along a row (fixed b) a pair (sample i, unit k) has pre-activation c + a u, affine in a,
        so it switches at most once, at t = -c/u. While it is on, its share of the logit is
        (c + a u)(wc + a wu): a quadratic in a. The shares of the pairs on at the row's first point
        come from matrix products; a pair that switches adds or removes its quadratic from the
        first point past t on: a histogram over the row's points, carried on by a cumulative sum.
        Exact up to rounding: a switch that rounding moves past a point sits at z = 0 there.
        """
        R, A = alphas.shape
        c = torch.addcmul(self.z[0], b[:, None, None], self.z[2])  # (R, n, h) pre-activation at a = 0
        u = self.z[1]  # (n, h) its slope along a
        wc = torch.addcmul(self.w[0], b[:, None, None], self.w[2])  # (R, h, C)
        wu = self.w[1]  # (h, C)
        first = torch.addcmul(c, alphas[:, :1, None], u)  # (R, n, h) at the row's first point
        on = (first > 0).to(c.dtype)
        # +1: off at the first point, on at the last; -1: the reverse; 0: one state all along the row
        switches = (torch.addcmul(c, alphas[:, -1:, None], u) > 0).to(c.dtype).sub_(on)
        hist = _histogram(c * switches, u * switches, wc, wu, _switch_bins(c, u, first, alphas, uniform), A)
        cs, us = c.mul_(on), on.mul_(u)  # (R, n, h): the pairs on at the first point
        # Bin 0 holds those pairs and the output bias; the cumulative sum carries them on
        hist[:, :, 0, 0] += torch.baddbmm(torch.addcmul(self.bias[0], b[:, None], self.bias[2])[:, None], cs, wc)
        hist[:, :, 0, 1] += (cs @ wu).add_(us @ wc).add_(self.bias[1])
        hist[:, :, 0, 2] += us @ wu
        hist = hist.cumsum_(dim=2)[:, :, :A]  # (R, n, A, 3, C)
        a = alphas[:, None, :, None]  # (R, 1, A, 1)
        linear = torch.addcmul(hist[:, :, :, 1], a, hist[:, :, :, 2]).transpose(1, 2)  # (R, A, n, C) views
        out = c.new_empty(R, A, self.n, wc.shape[2])
        return torch.addcmul(hist[:, :, :, 0].transpose(1, 2), a.transpose(1, 2), linear, out=out)


def _histogram(cm, um, wc, wu, bins, A: int):
    """Shares (cm wc, cm wu + um wc, um wu) of every pair summed by (row, sample, bin): (R, n, A + 1, 3, C).

    cm, um (R, n, h) are c, u times +-1 for the pairs that switch inside the row, 0 for the rest.
    """
    R, n, h = cm.shape
    C = wc.shape[2]
    cm, um, wcr = cm[..., None], um[..., None], wc[:, None]  # (R, n, h, 1), (R, n, h, 1), (R, 1, h, C)
    shares = torch.stack([cm * wcr, torch.addcmul(cm * wu, um, wcr), um * wu], dim=3)  # (R, n, h, 3, C)
    # One scatter along the last axis, all 3C columns at once (faster than one scatter per column)
    slot = bins.mul_(3 * C)[..., None] + torch.arange(3 * C, device=cm.device)  # (R, n, h, 3C)
    hist = cm.new_zeros(R, n, (A + 1) * 3 * C)  # bin A: switches past the row's last point, dropped
    hist.scatter_add_(2, slot.view(R, n, -1), shares.view(R, n, -1))
    return hist.view(R, n, -1, 3, C)


def _switch_bins(c, u, first, alphas, uniform):
    """Per pair, the index of the first alpha past its switch t = -c/u, in [0, A] (A: past the row).

    Only pairs that switch inside the row use it; others get any index in range.
    """
    R, A = alphas.shape
    if uniform:  # an arithmetic progression per row: the bin by arithmetic, not a search
        step = (alphas[:, 1] - alphas[:, 0]) if A > 1 else torch.ones_like(alphas[:, 0])
        pos = first.div(u * -step[:, None, None])  # (t - alphas[:, 0]) / step
    else:
        pos = (-c).div_(u)
    pos = pos.nan_to_num_(nan=0.0, posinf=A, neginf=0.0)
    if uniform:
        bins = pos.floor_().add_(1).clamp_(0, A)
    else:
        bins = torch.searchsorted(alphas, pos.view(R, -1), right=True).view_as(pos)
    return bins.long()


class Rows:
    """Points grouped into rows of equal b, sorted by a, padded to one width; rows of similar length together."""

    def __init__(self, coords: np.ndarray):
        self.coords = coords
        _, row_of = np.unique(coords[:, 1], return_inverse=True)
        order = np.lexsort((coords[:, 0], row_of))  # by row, then by a
        starts = np.flatnonzero(np.diff(row_of[order], prepend=-1))
        groups = np.split(order, starts[1:])
        self.groups = sorted(groups, key=len)  # similar lengths share a block: little padding
        self.count = len(groups)
        self.width = max(len(g) for g in groups)

    def block(self, first: int, last: int, like: torch.Tensor):
        """(index (R, A) into coords, -1 in padding; b (R,); alphas (R, A); uniform) for rows first:last."""
        groups = self.groups[first:last]
        A = max(len(g) for g in groups)
        index = np.full((len(groups), A), -1)
        alphas = np.empty((len(groups), A))
        uniform = True
        for r, g in enumerate(groups):
            index[r, :len(g)] = g
            a = self.coords[g, 0]
            gaps = np.diff(a)
            scale = 64 * np.finfo(float).eps * max(np.abs(a).max(), 1e-300)
            regular = len(a) < 2 or (gaps[0] > 0 and np.abs(gaps - gaps[0]).max() <= scale)
            step = gaps[0] if len(a) > 1 else 1.0
            # Padding continues the progression (arithmetic bins stay valid) or repeats the last a
            alphas[r] = a[0] + step * np.arange(A) if regular else np.r_[a, np.full(A - len(a), a[-1])]
            alphas[r, :len(a)] = a
            uniform &= bool(regular)
        b = self.coords[index[:, 0], 1]
        as_tensor = lambda v: torch.as_tensor(v, dtype=like.dtype, device=like.device)  # noqa: E731
        return index, as_tensor(b), as_tensor(alphas), uniform
