"""Loss surface of the default MLP at 51x51: batched evaluation against the per-point loop, in one run."""
import copy
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import vector_to_parameters

from common import default_mlp_run, median_time
from loss_surface import PlaneModel, _evaluate_generic, evaluate_surface, grid_for
from projection import pca_plane, project

fm, data, run = default_mlp_run()
X, y = data.X, data.y
plane = pca_plane(run.params, run.final, fm.layout)  # filter-normalised, as the pipeline draws it
coords, _ = project(run.params, plane)
alphas, betas = grid_for(coords, 51, 0.25)
aa, bb = np.meshgrid(alphas, betas)
grid = np.stack([aa.ravel(), bb.ravel()], axis=1)
module = copy.deepcopy(fm.module)


def per_point_loop():
    """What older tools do: copy each point's weights into the module, forward everything, read the loss."""
    out = np.empty(len(grid))
    with torch.no_grad():
        for k, (a, b) in enumerate(grid):
            vector_to_parameters(plane.center + float(a) * plane.u + float(b) * plane.v, module.parameters())
            out[k] = F.binary_cross_entropy_with_logits(module(X), y).item()
    return out


reference = per_point_loop()
batched = evaluate_surface(fm, X, y, plane, alphas, betas).loss.ravel()
t_loop = median_time(per_point_loop, repeats=3)
t_vmap = median_time(lambda: _evaluate_generic(fm, X, y, plane, grid, None), repeats=3)
t_fast = median_time(lambda: evaluate_surface(fm, X, y, plane, alphas, betas), repeats=7)
rel = np.abs(batched - reference).max() / np.abs(reference).max()
print(f"surface 51x51 (D={fm.dim}, n={len(y)}): loop {t_loop:.3f} s, plain vmap {t_vmap:.3f} s, "
      f"batched {t_fast:.4f} s; ratio {t_loop / t_fast:.1f}x over the loop ({t_vmap / t_fast:.1f}x over vmap), "
      f"max rel diff {rel:.1e}")

# Achieved arithmetic rate. The necessary work, counted once: three first-layer products
# (3 x 2 n d h), then per grid point and (sample, unit) pair ~6 flops for the pre-activation,
# ReLU and output weight, and ~10 per sample for the loss. The fast path skips the pairs whose
# ReLU does not switch inside the grid, so it reaches more "effective" GFLOP/s than it computes.
n, d, h = X.shape[0], X.shape[1], fm.module.fc1.out_features
flops = 3 * 2 * n * d * h + len(grid) * (6 * n * h + 10 * n)
a_big = torch.randn(2048, 2048)
t_mm = median_time(lambda: a_big @ a_big, repeats=5)
blocks = list(PlaneModel.of(fm, X, plane).blocks(grid))
mixed = sum(len(block.rows) for _, block in blocks)
print(f"  effective {flops / t_fast / 1e9:.1f} GFLOP/s against a 2048^2 matmul's {2 * 2048 ** 3 / t_mm / 1e9:.1f} "
      f"GFLOP/s: over {len(blocks)} tiles a ReLU switches for {mixed} of {len(blocks) * n * h} (sample, unit) "
      f"pairs ({100 * mixed / (len(blocks) * n * h):.0f}%); the rest is done in closed form")

# Peak memory of a 101x101 surface, in a fresh process so nothing else counts.
probe = ("import sys, resource; sys.path[:0] = ['benchmarks', '.']; from common import default_mlp_run;"
         "from loss_surface import evaluate_surface, grid_for; from projection import pca_plane, project;"
         "fm, data, run = default_mlp_run(); p = pca_plane(run.params, run.final, fm.layout);"
         "c, _ = project(run.params, p); a, b = grid_for(c, 101, 0.25);"
         "evaluate_surface(fm, data.X, data.y, p, a, b);"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
after = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
print(f"  peak memory of the whole process (torch, data, training, a 101x101 surface): {after / 1024:.0f} MB")
