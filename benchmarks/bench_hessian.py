"""Hessian eigenvalues on the default MLP: time per checkpoint and error of each method, in one run."""
import time

import numpy as np
import torch

from common import default_mlp_run, median_time
import hessian
from models import FlatModel
from projection import pca_plane

fm, data, run = default_mlp_run()
X, y, theta = data.X, data.y, run.final

# float64 reference: the full Hessian by autodiff, no closed form involved
fm64 = FlatModel(fm.module.double())
reference = torch.linalg.eigvalsh(torch.func.hessian(fm64.loss)(theta.double(), X.double(), y.double()))
ref_min, ref_max = float(reference[0]), float(reference[-1])
print(f"default MLP (D={fm.dim}, n={len(y)}): float64 reference λmin {ref_min:.6f}, λmax {ref_max:.6f}")

timings = {}
methods = {"power (seed's method)": "power", "lanczos": "lanczos", "exact (closed form)": "exact"}
for name, method in methods.items():
    timings[name] = median_time(lambda: hessian.extreme_eigenvalues(fm, X, y, theta, method), repeats=3)
    lam_min, lam_max, n_hvp = hessian.eigen_extremes(fm, X, y, theta, method)
    print(f"  {name:<24} {1e3 * timings[name]:8.1f} ms/checkpoint   λmax rel err {abs(lam_max - ref_max) / ref_max:.1e}"
          f"   λmin abs err {abs(lam_min - ref_min):.1e}   ({n_hvp} HVPs)")
hvp_full = median_time(lambda: hessian._hvp_hessian(fm, X, y, theta, 128), repeats=3)
print(f"  {'exact via batched HVPs':<24} {1e3 * hvp_full:8.1f} ms/checkpoint (any module; the closed form is "
      f"{hvp_full / timings['exact (closed form)']:.0f}x faster)")
base = timings["power (seed's method)"]
print("  speed-up over power iteration: " + ", ".join(f"{name.split()[0]} {base / t:.0f}x"
                                                       for name, t in timings.items() if t != base))

start = time.perf_counter()
curvature = hessian.curvature_along(fm, X, y, run.params, progress=False)
print(f"curvature_along over {len(run)} checkpoints: {time.perf_counter() - start:.2f} s "
      f"(λmax {curvature.lam_max[0]:.3f} -> {curvature.lam_max[-1]:.3f}, lowest λmin {curvature.lam_min.min():.3f})")
plane = pca_plane(run.params, run.final, fm.layout)
start = time.perf_counter()
hessian.eigen_ratio_map(fm, X, y, plane, np.linspace(-1, 1, 11), np.linspace(-1, 1, 11), progress=False)
print(f"eigen_ratio_map at 11x11: {time.perf_counter() - start:.2f} s")
