"""Models whose first layer is Linear or Conv as functions of plane coordinates.

Recognised by structure, not by class or parameter names: the module is traced with make_fx
(real shapes, so shape-dependent Python such as `squeeze(-1) if C == 1` is fine) and its aten graph
is matched. On a plane the first layer's pre-activations are affine in (a, b),
z = zc + a zu + b zv, so they are computed three times per sample batch instead of once per point.
Linear alone and Linear -> ReLU -> Linear get closed forms; a model that begins Linear -> ReLU ->
narrow Linear gets that closed form for the second Linear's output and runs the rest of its traced
graph per point ("prefix"); any other model whose input reaches the rest of the network only through
its first Linear or Conv is split there ("split": the rest runs per point on z, vmapped over points).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx
from torch.func import functional_call, vmap
from torch.fx.experimental.proxy_tensor import make_fx

aten = torch.ops.aten
RESHAPES = {aten.squeeze.dim, aten.squeeze.default, aten.squeeze.dims, aten.view.default,
            aten._unsafe_view.default, aten.reshape.default, aten.flatten.using_ints}
RELUS = {aten.relu.default, aten.relu_.default}
# First layers that are linear in the input and jointly linear in their weight and bias.
FIRST_LAYERS = {aten.addmm.default: 1, aten.mm.default: 0, aten.convolution.default: 0, aten.linear.default: 0}
WEIGHT_VIEWS = {aten.t.default, aten.transpose.int, aten.permute.default}
# Most floats in one block of the affine path: 16 MB, bounded memory whatever the grid.
BLOCK_ELEMENTS = 2 ** 22
# Tiles of the Linear -> ReLU -> Linear path: small rectangles of the plane hold few ReLU switches.
POINTS_PER_TILE = 100
# Widest second Linear the "prefix" path takes. Its tiles do elementwise work per output column on
# every switching pair, the split path one matrix product: measured (one thread, n = 1000, 51x51
# random plane, 10-h-C-1 MLPs) the tiles win 1.7-2x at C = 1 and 1.3x at C = 2, lose at C = 4 with
# h = 128, and cost 3-12 ms per point against 0.33 ms for the dense layer at h = C = 128.
PREFIX_COLUMNS = 2
# Floats of the first layer's output, 3 n h, per batch of tiles built together: 4 MB.
BUILD_ELEMENTS = 2 ** 20
# Most floats in one tile's per-point block, (n C, K) logits or (m C, K) shares: 4 MB, in cache.
TILE_ELEMENTS = 2 ** 20
# Floats of the cut's output per vmap batch of the split path, K n F: 1 MB, half the 2 MB L2 cache,
# but at least 2 points. Measured (one thread, evaluate_points): the digits CNN (n F = 230k) 1.5x
# slower at K = 1 than at K = 2..16; the 10-128-128-1 MLP at n = 1000 (n F = 128k) 1.1x faster at
# K = 2 than at K = 4, 2x slower at K = 8.
SPLIT_ELEMENTS = 2 ** 18
# Most logit floats in one block the split path hands to the loss sums: 1 MB.
LOGIT_ELEMENTS = 2 ** 18
_structures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Structure:
    """A traced module: out = reshape(linear(X)) ("affine"), reshape(linear(relu(linear(X)))) ("relu_linear"),
    rest(linear(relu(linear(X)))) ("prefix") or rest(first layer(X)) ("split")."""
    kind: str  # "affine", "relu_linear", "prefix" or "split" (rests traced per sample batch shape: see split_for)
    linears: tuple  # ((weight name, bias name or None), ...) in order, first layer first; () for "split"
    n_outputs: int  # C: columns of the last linear layer (of the second for "prefix"); 0 for "split"


def find_structure(fm, X: torch.Tensor) -> Structure | None:
    """The structure of fm's module on inputs shaped like X, or None (any other model: the generic path)."""
    if X.ndim != 2 or fm.buffers:
        return None  # buffers (BatchNorm) or other input shapes: leave it to the generic path
    key = (tuple(X.shape[1:]), X.dtype, X.device)
    cached = _structures.setdefault(fm.module, {})
    if key not in cached:
        found = _trace(fm, X[:2])
        if found is None and split_for(fm, X[:2]) is not None:
            found = Structure("split", (), 0)
        cached[key] = found
    return cached[key]


def _traced(fm, probe: torch.Tensor) -> fx.GraphModule | None:
    """The aten graph of fm's module on probe's shape, or None where make_fx cannot trace it."""
    def forward(params, x):
        return functional_call(fm.module, (params, fm.buffers), (x,))
    try:
        with torch.no_grad():
            return make_fx(forward)(fm.unflatten(fm.theta0), probe)
    except Exception:  # untraceable modules (data-dependent control flow, custom ops) are fine elsewhere
        return None


def _trace(fm, probe: torch.Tensor) -> Structure | None:
    """Linear ("affine") or Linear -> ReLU -> Linear ("relu_linear") followed by reshapes only, or
    Linear -> ReLU -> Linear followed by any rest the graph can be cut from ("prefix"); else None."""
    traced = _traced(fm, probe)
    if traced is None:
        return None
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    names = {node: slot.name for node, slot in zip(placeholders, fm.layout)}
    node, layers = placeholders[-1], []  # the input X is the last placeholder
    while len(layers) < 3:  # as much of Linear -> ReLU -> Linear as the graph begins with
        users = list(node.users)
        if len(users) != 1:
            return None
        if len(layers) == 1:
            layer = "relu" if users[0].target in RELUS else None
        else:
            layer = _linear_of(users[0], node, names)
        if layer is None:
            break
        layers.append(layer)
        node = users[0]
    linears = tuple(layers[::2])
    n_outputs = fm.unflatten(fm.theta0)[linears[-1][0]].shape[0] if linears else 0
    out = _output_after_reshapes(node)
    if out is None:  # something other than reshapes follows: cut the graph after the second Linear
        prefix = len(layers) == 3 and n_outputs <= PREFIX_COLUMNS and split_for(fm, probe, depth=2) is not None
        return Structure("prefix", linears, n_outputs) if prefix else None
    if len(layers) not in (1, 3) or out.shape[:1] != probe.shape[:1] or out.numel() != probe.shape[0] * n_outputs:
        return None
    return Structure("affine" if len(layers) == 1 else "relu_linear", linears, n_outputs)


def _output_after_reshapes(node):
    """The traced value of the graph's single output if only reshapes lie between node and it, else None."""
    while node.op != "output":
        users = list(node.users)
        if len(users) != 1 or (users[0].op != "output" and users[0].target not in RESHAPES):
            return None
        prev, node = node, users[0]
    return prev.meta.get("val") if len(node.args[0]) == 1 and node.args[0][0] is prev else None


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
            self.w_rows = self.w.permute(0, 2, 1).reshape(-1, self.w.shape[1])  # (3 C, h): w_y's columns as rows
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
        per_batch = max(1, BUILD_ELEMENTS // self.z.numel())
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
    on = torch.gt(middle, bound, out=torch.empty_like(middle)).view(T, 1, n, h)  # 1 where surely positive
    # P[y, :, t, x] = ((z_x * on_t) @ w_y)^T for x, y in (centre, u, v): one (3C, h) x (h, 3 T n) product
    P = (model.w_rows @ (z * on).view(-1, h).T).view(3, C, T, 3, n)
    quadratic = torch.stack([P[0, :, :, 0], P[1, :, :, 0] + P[0, :, :, 1], P[2, :, :, 0] + P[0, :, :, 2],
                             P[1, :, :, 1], P[2, :, :, 2], P[2, :, :, 1] + P[1, :, :, 2]])  # (6, C, T, n): 1 a b a² b² ab
    quadratic[:3] += model.bias[:, :, None, None]  # the output bias is affine in (a, b) too
    quadratic = quadratic.permute(2, 3, 1, 0).reshape(T, n * C, 6)  # (T, n C, 6)
    switching = _flat_nonzero(middle.abs() <= bound)  # (M,): tile * n h + sample * h + unit, by tile
    tile_of = switching // (n * h)
    pairs = switching - tile_of * (n * h)  # sample * h + unit
    rows = pairs // h
    units = pairs - rows * h
    counts = torch.bincount(tile_of, minlength=T).tolist()
    switching_z = model.z.view(3, -1).index_select(1, pairs).T  # (M, 3): along centre, u, v
    switching_w = w.index_select(1, units).permute(1, 2, 0).reshape(-1, C * 3)  # (M, C 3): outgoing weights, same
    return [Tile(q, r, u, sz, sw.reshape(-1, 3), C) for q, r, u, sz, sw in
            zip(quadratic, rows.split(counts), units.split(counts), switching_z.split(counts), switching_w.split(counts))]


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Positions of mask's True entries, flattened, in order; numpy's on the CPU, about 5x faster there."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.view(-1).nonzero().squeeze(1)


class Tile:
    """Linear -> ReLU -> Linear logits at coordinates inside one rectangle, with only the needed work.

    The pairs that keep one sign in the rectangle are linear or zero inside it, so their shares of the
    logits add up to one quadratic in (a, b) per sample and output: 6 numbers per point and output.
    Only the pairs whose ReLU may switch inside the rectangle are evaluated point by point.
    Exact up to rounding.
    """

    def __init__(self, quadratic: torch.Tensor, rows: torch.Tensor, units: torch.Tensor, switching_z: torch.Tensor,
                 switching_w: torch.Tensor, C: int):
        self.quadratic = quadratic  # (n C, 6): coefficients of 1 a b a² b² ab per sample and output
        self.rows, self.units = rows, units  # (m,) each: the (sample, unit) pairs that may switch
        self.switching_z = switching_z  # (m, 3): their pre-activations along centre, u, v
        self.switching_w = switching_w  # (m C, 3): their outgoing weights along centre, u, v
        self.n, self.C = quadratic.shape[0] // C, C
        self.chunk = max(1, TILE_ELEMENTS // (max(len(rows), self.n) * C))

    def __call__(self, ab: torch.Tensor) -> torch.Tensor:
        """Logits (K, n, C) at coordinates ab (K, 2): a view of an (n, C, K) tensor, points last.

        Points stay the fast axis throughout: each product below is (rows, 1) + (rows, 2 or 5) @ (2 or 5, K),
        a shape BLAS runs several times faster than (rows, 3) @ (3, K), and no copy turns the result around.
        """
        a, b = ab.T
        powers = torch.stack([a, b, a * a, b * b, a * b])  # (5, K): the constant term is the bias column
        logits = torch.addmm(self.quadratic[:, :1], self.quadratic[:, 1:], powers)  # (n C, K)
        if len(self.rows):
            m, K = len(self.rows), ab.shape[0]
            relu = torch.addmm(self.switching_z[:, :1], self.switching_z[:, 1:], powers[:2]).relu_()  # (m, K)
            share = torch.addmm(self.switching_w[:, :1], self.switching_w[:, 1:], powers[:2])  # (m C, K)
            share = share.view(m, self.C, K).mul_(relu[:, None])  # outgoing weights times the ReLU
            logits.view(self.n, self.C, K).index_add_(0, self.rows, share)  # whole (C, K) blocks per pair
        return logits.view(self.n, self.C, -1).permute(2, 0, 1)  # (K, n, C): samples, then classes


@dataclass(frozen=True)
class Split:
    """A traced module cut after its first layer (or its second Linear): out = rest(head(head weights, X), rest weights)."""
    head: fx.GraphModule  # (*head weights, X) -> the cut's output (n, ...)
    rest: fx.GraphModule  # (the cut's output, *rest weights) -> [out]
    first_names: tuple  # parameter names the head takes, in order
    rest_names: tuple  # parameter names the rest takes, in order
    out_numel: int  # floats of the traced output: n C
    cut_numel: int  # floats of the cut's output: n F


def split_for(fm, X: torch.Tensor, depth: int = 1) -> Split | None:
    """fm's module cut after its first Linear or Conv (depth 1), or after Linear -> ReLU -> Linear (depth 2),
    traced on X's exact shape (views hold n); None where the rest would see the input or those weights again."""
    if X.ndim != 2 or fm.buffers:
        return None
    key = ("split", depth, tuple(X.shape), X.dtype, X.device)
    cached = _structures.setdefault(fm.module, {})
    if key not in cached:
        traced = _traced(fm, X)
        cached[key] = None if traced is None else _split(traced, [s.name for s in fm.layout], depth)
    return cached[key]


def _split(traced: fx.GraphModule, names: list, depth: int) -> Split | None:
    """Cut the graph at the first layer that consumes the (reshaped) input, or at the Linear after its ReLU
    (depth 2), if the rest sees the input and the cut-off weights only through the cut."""
    graph = traced.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    params, node = dict(zip(placeholders, names)), placeholders[-1]  # the input X is the last placeholder
    while node.target not in FIRST_LAYERS:  # X, then only reshapes, until the first layer
        users = list(node.users)
        if len(users) != 1 or (node.op != "placeholder" and node.target not in RESHAPES):
            return None
        prev, node = node, users[0]
    output = next(n for n in graph.nodes if n.op == "output")
    if _first_layer_weights(node, prev, params) is None or len(output.args[0]) != 1 or any(
            n.op not in ("placeholder", "output", "call_function", "get_attr") for n in graph.nodes):
        return None
    if depth == 2:
        node = _second_linear(node, params)
        if node is None:
            return None
    head_nodes = _ancestors(node)
    for other in graph.nodes:  # the rest may use the cut's output, its own weights and constants only
        if other not in head_nodes and any(a in head_nodes and a is not node and a.op != "get_attr"
                                           for a in other.all_input_nodes):
            return None
    head_inputs = [p for p in placeholders if p in head_nodes]  # the first layer's weights, then X
    head = _subgraph(head_inputs, [n for n in graph.nodes if n in head_nodes and n.op != "placeholder"], node)
    rest_inputs = [p for p in placeholders if p not in head_nodes and p.users]
    rest_body = [n for n in graph.nodes if n.op in ("call_function", "get_attr") and (n not in head_nodes
                                                                                       or n.op == "get_attr")]
    rest = _subgraph([node] + rest_inputs, rest_body, output.args[0][0])
    return Split(fx.GraphModule(traced, head), fx.GraphModule(traced, rest), tuple(params[p] for p in head_inputs[:-1]),
                 tuple(params[p] for p in rest_inputs), output.args[0][0].meta["val"].numel(),
                 node.meta["val"].numel())


def split_head(split: Split, parts: list, X: torch.Tensor) -> torch.Tensor:
    """The split's first layer on X along each of parts (dicts of weights): (len(parts), n, ...)."""
    return torch.stack([split.head(*[p[name] for name in split.first_names], X)[0] for p in parts])


def _second_linear(first, params):
    """The Linear that alone reads the ReLU that alone reads first, or None."""
    relu = list(first.users)
    if len(relu) != 1 or relu[0].target not in RELUS or len(relu[0].users) != 1:
        return None
    second = next(iter(relu[0].users))
    return second if _linear_of(second, relu[0], params) is not None else None


def _first_layer_weights(node, data, params) -> list | None:
    """Names of node's weight and bias if node is linear in data and jointly linear in them, else None."""
    if node.kwargs or len(node.args) <= FIRST_LAYERS[node.target] or node.args[FIRST_LAYERS[node.target]] is not data:
        return None
    found = []
    for arg in node.args:
        if isinstance(arg, fx.Node) and arg is not data:
            weight = arg.args[0] if arg.target in WEIGHT_VIEWS else arg  # W^T as traced from Linear
            if weight not in params or (weight is not arg and len(arg.users) != 1):
                return None
            found.append(params[weight])
    if not found or len(set(found)) != len(found) or node.target == aten.mm.default and len(found) != 1:
        return None
    return found


def _ancestors(node) -> set:
    seen, todo = {node}, [node]
    while todo:
        for a in todo.pop().all_input_nodes:
            if a not in seen:
                seen.add(a)
                todo.append(a)
    return seen


def _subgraph(inputs: list, body: list, result) -> fx.Graph:
    """A graph whose placeholders stand for inputs, computing body's nodes in order and returning [result]."""
    graph, env = fx.Graph(), {}
    for i, node in enumerate(inputs):
        env[node] = graph.placeholder(f"input_{i}")
    for node in body:
        env[node] = graph.node_copy(node, env.__getitem__)
    graph.output([env[result]])
    return graph


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
