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
        per_row = self.n * (rows.width + 1) * max(h, 3 * c)
        step = max(1, BLOCK_ELEMENTS // per_row)
        for first in range(0, rows.count, step):
            index, b, alphas, uniform = rows.block(first, first + step, self.z)
            logits = self._rows(b, alphas, uniform)  # (R, A, n, C)
            real = index >= 0
            yield index[real], logits[torch.as_tensor(real, device=logits.device)]

    def _rows(self, b, alphas, uniform):
        """Logits (R, A, n, C) at (alphas[r, j], b[r]): closed form between each pair's ReLU switch.

        Along a row (fixed b) a pair (sample i, unit k) has pre-activation c + a u, affine in a,
        so it switches at most once, at t = -c/u. While it is on, its share of the logit is
        (c + a u)(wc + a wu): a quadratic in a. The shares of the pairs on at the row's first point
        come from three matrix products; each later switch adds or removes one quadratic, placed
        in the bin of the first point past the switch (a histogram) and carried on by a cumulative
        sum. Exact up to rounding: a pair misplaced by rounding sits at z = 0 within rounding.
        """
        R, A = alphas.shape
        c = torch.addcmul(self.z[0], b[:, None, None], self.z[2])  # (R, n, h) pre-activation at a = 0
        u = self.z[1].expand_as(c)  # (R, n, h) its slope along a
        wc = torch.addcmul(self.w[0], b[:, None, None], self.w[2])  # (R, h, C)
        wu = self.w[1].expand_as(wc)
        switch, rising = _switch_bins(c, u, alphas, uniform)  # (R, n, h) bin of the switch, slope >= 0
        on_first = torch.where(rising, switch == 0, switch > 0).to(c.dtype)  # on at alphas[:, 0]
        moves = (switch > 0) & (switch < A)  # switches strictly inside the row
        cs, us = c * on_first, u * on_first
        base = torch.stack([cs @ wc, cs @ wu + us @ wc, us @ wu], dim=2)  # (R, n, 3, C)
        hist = self._histogram(c, u, wc, wu, switch, rising, moves, A)  # (R, n, A, 3, C)
        hist = hist.cumsum_(dim=2).add_(base[:, :, None])
        bias = torch.addcmul(self.bias[0], b[:, None], self.bias[2])  # (R, C)
        hist[:, :, :, 0] += bias[:, None, None]
        hist[:, :, :, 1] += self.bias[1]
        a = alphas[:, None, :, None]  # (R, 1, A, 1)
        logits = hist[:, :, :, 0] + a * (hist[:, :, :, 1] + a * hist[:, :, :, 2])  # (R, n, A, C)
        return logits.transpose(1, 2)  # (R, A, n, C)

    def _histogram(self, c, u, wc, wu, switch, rising, moves, A):
        """Sum of +-(c wc, c wu + u wc, u wu) of the switching pairs, by (row, sample, bin): (R, n, A, 3, C)."""
        R, n, h = c.shape
        r, i, k = moves.nonzero(as_tuple=True)  # (m,) each
        sign = torch.where(rising[r, i, k], 1.0, -1.0).to(c.dtype)
        cm, um = (sign * c[r, i, k])[:, None], (sign * u[r, i, k])[:, None]  # (m, 1)
        wcm, wum = wc[r, k], wu[r, k]  # (m, C)
        shares = torch.stack([cm * wcm, cm * wum + um * wcm, um * wum], dim=1).flatten(1)  # (m, 3C)
        slot = (r * n + i) * A + switch[r, i, k]  # (m,) flat (row, sample, bin)
        size = R * n * A
        columns = [torch.bincount(slot, shares[:, j], minlength=size) for j in range(shares.shape[1])]
        return torch.stack(columns, dim=1).to(c.dtype).view(R, n, A, 3, -1)


def _switch_bins(c, u, alphas, uniform):
    """Per pair: the first bin (grid index) where its ReLU state differs from the state before it.

    rising pairs (u >= 0) are on from the first alpha > t = -c/u; falling ones are on up to the
    last alpha < t. u == 0 is rising with t = -inf (always on) or +inf (never on).
    """
    R, A = alphas.shape
    rising = u >= 0
    t = torch.where(u != 0, -c / u, torch.where(c > 0, -torch.inf, torch.inf)).nan_to_num_(nan=torch.inf)
    if uniform:  # arithmetic progression per row: the bin by arithmetic, not a search
        step = (alphas[:, 1] - alphas[:, 0]) if A > 1 else torch.ones_like(alphas[:, 0])
        pos = (t - alphas[:, :1, None]) / step[:, None, None]
        bins = torch.where(rising, pos.floor() + 1, pos.ceil()).clamp_(0, A)
    else:
        flat = t.view(R, -1)
        bins = torch.where(rising.view(R, -1), torch.searchsorted(alphas, flat, right=True),
                           torch.searchsorted(alphas, flat, right=False)).view_as(t)
    return bins.long(), rising


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
