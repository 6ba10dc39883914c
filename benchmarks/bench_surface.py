"""Loss surface of the default MLP: evaluate_surface against the per-point loop it replaces, in one run."""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils import vector_to_parameters  # noqa: E402

from common import default_mlp_run  # noqa: E402
from loss_surface import _evaluate_generic, evaluate_surface, grid_for  # noqa: E402
from models import build_model  # noqa: E402
from projection import pca_plane, project  # noqa: E402

REPEATS = 5

# 1. The default MLP (1000 samples, 10 features, hidden 32), its trajectory, and the
#    filter-normalised PCA plane the pipeline draws it on.
fm, data, run = default_mlp_run()
X, y = data.X, data.y
plane = pca_plane(run.params, run.final, fm.layout)
coords, _ = project(run.params, plane)
alphas, betas = grid_for(coords, 51, 0.25)
grid = np.stack([g.ravel() for g in np.meshgrid(alphas, betas)], axis=1)  # (2601, 2), row-major like loss
module = build_model("mlp", X.shape[1], fm.module.fc1.out_features).eval()


def per_point_loop():
    """What older tools do: copy each point's weights into the module, forward everything, read the loss."""
    out = np.empty(len(grid))
    with torch.no_grad():
        for k, (a, b) in enumerate(grid):
            vector_to_parameters(plane.center + float(a) * plane.u + float(b) * plane.v, module.parameters())
            out[k] = F.binary_cross_entropy_with_logits(module(X), y).item()
    return out


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each fn, timed in turns so that all of them see the same load on a shared machine."""
    for fn in fns.values():  # warm-up
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# 2. Speed and agreement, 51x51.
load_before = os.getloadavg()[0]
t = interleaved_medians({
    "loop": per_point_loop,
    "batched": lambda: evaluate_surface(fm, X, y, plane, alphas, betas),
    "generic": lambda: _evaluate_generic(fm, X, y, plane, grid, None),
}, REPEATS)
reference = per_point_loop()
batched = evaluate_surface(fm, X, y, plane, alphas, betas).loss.ravel()
rel = float(np.max(np.abs(batched - reference) / np.abs(reference)))
print(f"surface 51x51: loop {t['loop']:.2f} s, batched {t['batched']:.3f} s, ratio {t['loop'] / t['batched']:.1f}x, "
      f"max rel diff {rel:.0e}")
print(f"  generic path (vmap over full weight vectors, any module): {t['generic']:.3f} s; "
      f"D={fm.dim}, n={len(y)}, {torch.get_num_threads()} threads, load average {load_before:.1f} -> "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {REPEATS}")

# 3. Achieved rate. The necessary work of a dense evaluation, counted once:
#    - the three first-layer products X W^T for the centre, u and v: 3 x 2 n d h
#    - per grid point and (sample, unit) pair: the pre-activation c + a cu + b cv (4), the ReLU (1)
#      and the second layer's multiply-add (2): 7 n h
#    - per grid point and sample: softplus, - y z, the mean, the accuracy test: ~10 n
#    The fast path skips most pairs (closed form where no ReLU switches), so this is an effective rate.
n, d, h = X.shape[0], X.shape[1], fm.module.fc1.out_features
flops = 3 * 2 * n * d * h + len(grid) * (7 * n * h + 10 * n)
big = torch.randn(2048, 2048)
t_mm = interleaved_medians({"mm": lambda: big @ big}, REPEATS)["mm"]
rate, mm_rate = flops / t["batched"] / 1e9, 2 * 2048 ** 3 / t_mm / 1e9
print(f"  {flops / 1e9:.2f} GFLOP of dense work: {rate:.1f} GFLOP/s effective, against {mm_rate:.1f} GFLOP/s "
      f"of a float32 2048^2 matmul in this run ({100 * rate / mm_rate:.0f}%)")

# 4. Peak memory of a 101x101 surface, in a fresh process holding only torch, the data and the plane.
#    Linux keeps a process's peak resident size (VmHWM); writing 5 to clear_refs resets it, so the
#    peak read after the call is the peak during the call.
PROBE = """
import re, sys, torch
sys.path.insert(0, sys.argv[2])
from loss_surface import evaluate_surface
from models import FlatModel, build_model
from projection import Plane
def megabytes(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
s = torch.load(sys.argv[1])
fm = FlatModel(build_model("mlp", s["X"].shape[1], s["hidden"]))
plane = Plane(s["center"], s["u"], s["v"], "pca")
imports_peak, before = megabytes("VmHWM"), megabytes("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
evaluate_surface(fm, s["X"], s["y"], plane, s["alphas"].numpy(), s["betas"].numpy())
print(imports_peak, before, megabytes("VmHWM"))
"""
with tempfile.TemporaryDirectory() as tmp:
    state = Path(tmp) / "state.pt"
    alphas101, betas101 = grid_for(coords, 101, 0.25)
    torch.save({"X": X, "y": y, "hidden": h, "center": plane.center, "u": plane.u, "v": plane.v,
                "alphas": torch.from_numpy(alphas101), "betas": torch.from_numpy(betas101)}, state)
    probe = subprocess.run([sys.executable, "-c", PROBE, str(state), str(ROOT)], capture_output=True, text=True,
                           check=False)
if probe.returncode:
    sys.exit(f"the memory probe failed:\n{probe.stderr}")
imports_peak, before, during = (float(v) for v in probe.stdout.split())
print(f"surface 101x101: peak memory {max(imports_peak, during):.0f} MB for the whole process (limit 1024 MB); "
      f"evaluate_surface raised the resident size from {before:.0f} to {during:.0f} MB (+{during - before:.0f} MB)")
