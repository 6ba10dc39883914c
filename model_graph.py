"""A model's structure, recognised from its traced aten graph: what the plane paths may assume.

Recognised by structure, not by class or parameter names: the module is traced with make_fx
(real shapes, so shape-dependent Python such as `squeeze(-1) if C == 1` is fine) and its aten graph
is matched: Linear alone ("affine"), Linear -> ReLU -> Linear ("relu_linear"), Linear -> ReLU ->
narrow Linear then any rest ("prefix"), or any model whose input reaches the rest of the network
only through its first Linear or Conv ("split", cut there into a head and a rest).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import fx
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import make_fx

aten = torch.ops.aten
RESHAPES = {aten.squeeze.dim, aten.squeeze.default, aten.squeeze.dims, aten.view.default,
            aten._unsafe_view.default, aten.reshape.default, aten.flatten.using_ints}
RELUS = {aten.relu.default, aten.relu_.default}
# First layers that are linear in the input and jointly linear in their weight and bias.
FIRST_LAYERS = {aten.addmm.default: 1, aten.mm.default: 0, aten.convolution.default: 0, aten.linear.default: 0}
WEIGHT_VIEWS = {aten.t.default, aten.transpose.int, aten.permute.default}
FRESH = {aten.addmm.default, aten.mm.default, aten.convolution.default}  # ops whose output is a new tensor
# Ops whose output size, or a Python number read from them, depends on the values: make_fx records what
# they gave at θ0, so a per-point graph would reuse that count at every point (a wrong surface, silently).
DATA_DEPENDENT = {aten.nonzero.default, aten.masked_select.default, aten._local_scalar_dense.default,
                  aten.argwhere.default, aten.unique_dim.default, aten._unique2.default, aten.unique_consecutive.default}
# Widest second Linear the "prefix" path takes. Its tiles add every switching pair's share to each
# output column; the split path runs the whole rest per point. Measured (one thread, n = 1000, 51x51
# random plane, 10-h-C-tanh-1 MLPs, switching pairs compiled), prefix against split: h = 128: C = 2
# 117 vs 359 ms, C = 4 194 vs 421, C = 8 286 vs 562, C = 16 537 vs 541; h = 32: C = 16 324 vs 362,
# C = 32 786 vs 514. With torch ops instead of the compiled loop the tiles lost from C = 4 (h = 128);
# a GPU, where tiles take torch ops, is unmeasured.
PREFIX_COLUMNS = 8
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
    names = [slot.name for slot in fm.layout]

    def forward(*args):  # the weights in layout order, then x: positional, so calls need no pytree work
        return functional_call(fm.module, (dict(zip(names, args[:-1])), fm.buffers), (args[-1],))
    try:
        with torch.no_grad():
            return make_fx(forward)(*fm.unflatten(fm.theta0).values(), probe)
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
    return prev.meta.get("val") if node.args[0] is prev else None


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


@dataclass(frozen=True)
class Split:
    """A traced module cut after its first layer (or its second Linear): out = rest(head(head weights, X), rest weights)."""
    head: fx.GraphModule  # (*head weights, X) -> the cut's output (n, ...)
    rest: fx.GraphModule  # (the cut's output, *rest weights) -> [out]
    first_names: tuple  # parameter names the head takes, in order
    rest_names: tuple  # parameter names the rest takes, in order
    out_numel: int  # floats of the traced output: n C
    cut_numel: int  # floats of the cut's output: n F


def point_graph(fm, X: torch.Tensor) -> fx.GraphModule | None:
    """fm's forward traced on X's exact shape as graph(*weights in layout order, X) -> logits, with each ReLU
    of a layer's fresh output made in place; None for modules make_fx cannot trace or with buffers (the
    trace would freeze them)."""
    if fm.buffers:
        return None
    key = ("point", tuple(X.shape), X.dtype, X.device)
    cached = _structures.setdefault(fm.module, {})
    if key not in cached:
        traced = _traced(fm, X)
        if traced is not None and any(_data_dependent(node) for node in traced.graph.nodes):
            traced = None  # vmap meets the same op and says so, instead of a surface of θ0's counts
        if traced is not None:
            for node in traced.graph.nodes:  # nothing else reads that output: no copy needed
                if node.target == aten.relu.default and node.args[0].target in FRESH and len(node.args[0].users) == 1:
                    node.target = aten.relu_.default
            traced.recompile()
        cached[key] = traced
    return cached[key]


def _data_dependent(node) -> bool:
    """Whether node's result depends on the values in a way a trace freezes: DATA_DEPENDENT, or boolean-mask
    indexing (x[x > 0] has as many elements as there are positives)."""
    if node.target in DATA_DEPENDENT:
        return True
    if node.target in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
        masks = [i for i in node.args[1] if isinstance(i, fx.Node)]
        return any(getattr(i.meta.get("val"), "dtype", None) == torch.bool for i in masks)
    return False


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
    if _first_layer_weights(node, prev, params) is None or not isinstance(output.args[0], fx.Node) or any(
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
    rest = _subgraph([node] + rest_inputs, rest_body, output.args[0])
    return Split(fx.GraphModule(traced, head), fx.GraphModule(traced, rest), tuple(params[p] for p in head_inputs[:-1]),
                 tuple(params[p] for p in rest_inputs), output.args[0].meta["val"].numel(),
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
