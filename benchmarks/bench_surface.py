"""Loss surfaces against the per-point loop they replace, for every path, measured side by side in one run.

Rows: mlp (the project's MLP and its spellings), deep (a 10-128-128-1 MLP), prefix (a narrow second
Linear and a tail), cnn (digits); all by default, or name them: `bench_surface.py mlp deep`.
"""
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import vector_to_parameters  # noqa: E402

from common import default_mlp_run  # noqa: E402
from config import Config  # noqa: E402
from main import load_data  # noqa: E402
from model_graph import find_structure, point_graph, split_for  # noqa: E402
from plane_model import SplitModel  # noqa: E402
from loss_surface import _generic_logits, _point_logits, evaluate_points, evaluate_surface, grid_for  # noqa: E402
from models import FlatModel, build_model, loss_from_logits  # noqa: E402
from projection import pca_plane, project, random_plane  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402

REPEATS = 5
torch.set_num_threads(1)


def interleaved_medians(fns: dict, repeats: int = REPEATS) -> dict:
    """Median seconds of each fn, timed in turns so that all of them see the same load on a shared machine."""
    for fn in fns.values():  # warm-up (and make_fx tracing, cached per module)
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def per_point_loop(fm, X, y, plane, grid):
    """What older tools do: copy each point's weights into the module, forward everything, read the loss."""
    module = fm.module
    keep = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    out = np.empty(len(grid))
    with torch.no_grad():
        for k, (a, b) in enumerate(grid):
            vector_to_parameters(plane.center + float(a) * plane.u + float(b) * plane.v, module.parameters())
            out[k] = loss_from_logits(fm.loss_kind, module(X), y).item()
        vector_to_parameters(keep, module.parameters())
    return out


def generic_only(fm, X, y, plane, grid, chunk=None):
    """The generic path alone (its traced graph once per point), as a model without a recognised structure gets."""
    return [logits for _, logits in _point_logits(fm, point_graph(fm, X), X, plane, grid, chunk)]


def vmap_only(fm, X, y, plane, grid, chunk=None):
    """vmap of full weight vectors over chunk points: the path of untraceable models and models with buffers."""
    return [logits for _, logits in _generic_logits(fm, X, plane, grid, chunk)]


def split_only(fm, X, plane, grid, chunk=None):
    """The split path's vmap of the rest of the network (no closed form), logits only."""
    return [logits for _, logits in SplitModel(fm, split_for(fm, X), X, plane, chunk).logits(grid)]


def compare(label, fm, X, y, plane, alphas, betas, extra=None, repeats=REPEATS):
    """One table row: loop vs project (and extra paths), medians of REPEATS, ratios against the loop."""
    grid = np.stack([g.ravel() for g in np.meshgrid(alphas, betas)], axis=1)  # (A B, 2), row-major like loss
    fns = {"loop": lambda: per_point_loop(fm, X, y, plane, grid),
           "project": lambda: evaluate_surface(fm, X, y, plane, alphas, betas)}
    fns.update(extra or {})
    t = interleaved_medians(fns, repeats)
    reference = per_point_loop(fm, X, y, plane, grid)
    rel = float(np.max(np.abs(evaluate_points(fm, X, y, plane, grid)[0] - reference) / np.abs(reference)))
    others = "".join(f", {name} {t[name]:.3f} s ({t['loop'] / t[name]:.1f}x)" for name in extra or {})
    print(f"{label}: loop {t['loop']:.2f} s, project {t['project']:.3f} s ({t['loop'] / t['project']:.1f}x)"
          f"{others}; max rel diff {rel:.0e}")
    return t


def own_mlp_rows():
    """Rows 1-4: the project's MLP (1000 samples, 10 features, hidden 32), its spellings and its 3-class twin."""
    # 1. The default MLP, its trajectory, its PCA plane, 51x51.
    fm, data, run = default_mlp_run()
    X, y = data.X, data.y
    plane = pca_plane(run.params, run.final, fm.layout)
    alphas, betas = grid_for(project(run.params, plane)[0], 51, 0.25)
    compare(f"own MLP D={fm.dim}, PCA plane", fm, X, y, plane, alphas, betas)

    # 2. A filter-normalised random plane with steps of the weights' own size: most ReLUs switch.
    random = random_plane(run.final, fm.layout, seed=0)
    compare("own MLP, random plane a, b in [-1, 1]", fm, X, y, random, WIDE, WIDE)

    # 3. The user's spelling of the same function: nn.Sequential with the same weights; the generic
    #    path on it is what a model without a recognised structure would cost.
    seq = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), nn.Flatten(0))
    vector_to_parameters(run.final, seq.parameters())
    fm_seq = FlatModel(seq)
    grid = np.stack([g.ravel() for g in np.meshgrid(alphas, betas)], 1)
    compare("nn.Sequential(Linear, ReLU, Linear), same weights", fm_seq, X, y, plane, alphas, betas,
            {"generic": lambda: generic_only(fm_seq, X, y, plane, grid)})

    # 4. Three classes (ce): the closed form with C = 3 columns, and the generic path it saves.
    y3 = torch.bucketize(X[:, 0].contiguous(), torch.quantile(X[:, 0], torch.tensor([1 / 3, 2 / 3])))  # balanced
    fm3 = FlatModel(build_model("mlp", 10, 32, seed=0, n_classes=3, loss="ce"), loss="ce")
    plane3 = random_plane(fm3.theta0, fm3.layout, seed=0)
    compare("own MLP, 3 classes (ce), random plane", fm3, X, y3, plane3, WIDE, WIDE,
            {"generic (fallback)": lambda: generic_only(fm3, X, y3, plane3, WIDE_GRID)})


def deep_mlp_row():
    """Row 5: a 3-layer MLP 10-128-128-1 (D=18049) on a random plane, its achieved GFLOP/s, and the most any
    path can gain over the loop while it computes every layer's product (that alone, timed in this run)."""
    _, data, _ = default_mlp_run()
    X, y = data.X, data.y
    deep = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1),
                         nn.Flatten(0))
    fm = FlatModel(deep)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    extra = {"vmap K=2": lambda: vmap_only(fm, X, y, plane, WIDE_GRID, 2),
             "split K=2": lambda: split_only(fm, X, plane, WIDE_GRID, 2)}
    t = compare(f"3-layer MLP 10-128-128-1, D={fm.dim}", fm, X, y, plane, WIDE, WIDE, extra)
    # The dense forward's multiply-adds, 2 n (10*128 + 128*128 + 128) per point, per second, against a
    # float32 2048^2 matmul timed in this run.
    flops = len(WIDE_GRID) * 2 * len(X) * (10 * 128 + 128 * 128 + 128)
    big = torch.randn(2048, 2048)
    weights = [(layer.bias.detach(), layer.weight.detach().t()) for layer in deep if isinstance(layer, nn.Linear)]
    inputs = [X, torch.randn(len(X), 128), torch.randn(len(X), 128)]
    repeats = 100  # forwards per timing: each is under a millisecond

    def products():
        for _ in range(repeats):
            for x, (b, w) in zip(inputs, weights):
                torch.addmm(b, x, w)
    floor = interleaved_medians({"mm": lambda: big @ big, "products": products})
    mm_rate = 2 * 2048 ** 3 / floor["mm"] / 1e9
    for name in t:
        rate = flops / t[name] / 1e9
        print(f"  {name}: {rate:.1f} GFLOP/s against {mm_rate:.1f} GFLOP/s of a matmul ({100 * rate / mm_rate:.0f}%)")
    products = floor["products"] / repeats * len(WIDE_GRID)
    print(f"  the three products alone at {len(WIDE_GRID)} points: {products:.2f} s, so no path that computes "
          f"them can pass {t['loop'] / products:.2f}x the loop")


def prefix_row():
    """Row 6: a model that begins Linear -> ReLU -> Linear(128, 2) and goes on (tanh, a third Linear): the
    tiles' closed form for the narrow second Linear, the rest per point ("prefix"), against the split path."""
    _, data, _ = default_mlp_run()
    X, y = data.X, data.y
    torch.manual_seed(0)
    tail = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 2), nn.Tanh(), nn.Linear(2, 1), nn.Flatten(0))
    fm = FlatModel(tail)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    compare(f"10-128-2-tanh-1 MLP ({find_structure(fm, X).kind}), random plane", fm, X, y, plane, WIDE, WIDE,
            {"split": lambda: split_only(fm, X, plane, WIDE_GRID)})


def cnn_row():
    """Row 7: the CNN on digits (1797 8x8 images, 10 classes, D=1370), trained as main.py does, its PCA plane."""
    digits = load_data(Config(dataset="digits", model="cnn"), "cpu")
    fm = FlatModel(build_model("cnn", digits.n_features, seed=0, n_classes=digits.n_classes,
                               image_shape=digits.image_shape, loss="ce"), loss="ce")
    run = train(fm, digits.X, digits.y, OptimizerSpec("gd", "sgd", Config().lr), 100)
    plane = pca_plane(run.params, run.final, fm.layout)
    alphas, betas = grid_for(project(run.params, plane)[0], 51, 0.25)
    grid = np.stack([g.ravel() for g in np.meshgrid(alphas, betas)], 1)
    compare(f"CNN on digits D={fm.dim}, PCA plane", fm, digits.X, digits.y, plane, alphas, betas,
            {"split": lambda: split_only(fm, digits.X, plane, grid),
             "generic": lambda: generic_only(fm, digits.X, digits.y, plane, grid)}, repeats=3)


ROWS = {"mlp": own_mlp_rows, "deep": deep_mlp_row, "prefix": prefix_row, "cnn": cnn_row}
WIDE = np.linspace(-1.0, 1.0, 51)
WIDE_GRID = np.stack([g.ravel() for g in np.meshgrid(WIDE, WIDE)], 1)

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(ROWS)  # e.g. `bench_surface.py mlp deep`
    load_before = os.getloadavg()[0]
    for name in chosen:
        ROWS[name]()
    print(f"{torch.get_num_threads()} thread, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; medians of {REPEATS} (the CNN: 3), interleaved")
