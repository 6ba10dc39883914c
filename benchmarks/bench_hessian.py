"""Hessian eigenvalues on the default MLP: time per checkpoint and error of each method against float64."""
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hessian  # noqa: E402
from data import make_dataset  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from projection import pca_plane  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402

CHECKPOINTS = (0, 25, 50, 75, 100)  # where each method is timed and held against float64


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def float64_reference(fm, X, y, thetas) -> list:
    """(lambda_min, lambda_max) of the autodiff Hessian in float64: no closed form, no float32."""
    fm64 = FlatModel(copy.deepcopy(fm.module).double())
    X64, y64 = X.double(), y.double()
    eigs = [torch.linalg.eigvalsh(torch.func.hessian(fm64.loss)(t.double(), X64, y64)) for t in thetas]
    return [(float(e[0]), float(e[-1])) for e in eigs]


def exact_from(build):
    """An eigen-solver from a function theta -> full Hessian."""
    def solve(fm, X, y, theta):
        with hessian._solver_threads():
            eig = torch.linalg.eigvalsh(build(fm, X, y, theta))
        return hessian.EigenResult(float(eig[0]), float(eig[-1]), "exact", fm.dim)
    return solve


def seed_power(fm, X, y, theta):
    """The seed's method: power iteration with one fresh jvp-of-grad HVP per iteration."""
    with hessian._solver_threads():
        lam_min, lam_max, count = hessian.power_extremes(lambda v: hessian.hvp(fm, X, y, theta, v), fm.dim)
    return hessian.EigenResult(lam_min, lam_max, "power", count)


SOLVERS = {  # name -> fn(fm, X, y, theta) -> EigenResult
    "power, jvp HVP (seed)": seed_power,
    "power, linearised HVP": lambda fm, X, y, t: hessian.eigen_result(fm, X, y, t, "power"),
    "lanczos (ARPACK)": lambda fm, X, y, t: hessian.eigen_result(fm, X, y, t, "lanczos"),
    "exact, torch.func.hessian": exact_from(lambda fm, X, y, t: torch.func.hessian(fm.loss)(t, X, y)),
    "exact, vmapped HVPs": exact_from(hessian._hvp_hessian),
    "exact, closed form (auto)": lambda fm, X, y, t: hessian.eigen_result(fm, X, y, t, "exact"),
}


def time_solvers(fm, X, y, params, reference) -> dict:
    """Median seconds per checkpoint of each solver, printed with its worst error over CHECKPOINTS."""
    scale = max(abs(lam_max) for _, lam_max in reference)
    per_checkpoint = {}
    print(f"{'method':<27}{'ms/ckpt':>9}{'HVPs':>7}{'λmax rel err':>14}{'λmin err/λmax':>15}{'speed-up':>10}")
    for name, solve in SOLVERS.items():
        solve(fm, X, y, params[0])  # warm-up: first-call tracing and allocation
        times, results = [], []
        for i in CHECKPOINTS:
            start = time.perf_counter()
            results.append(solve(fm, X, y, params[i]))
            times.append(time.perf_counter() - start)
        per_checkpoint[name] = statistics.median(times)
        err_max = max(abs(r.lam_max - ref[1]) / abs(ref[1]) for r, ref in zip(results, reference))
        err_min = max(abs(r.lam_min - ref[0]) / scale for r, ref in zip(results, reference))
        hvps = int(np.median([r.hvps for r in results]))
        speed_up = per_checkpoint["power, jvp HVP (seed)"] / per_checkpoint[name]
        print(f"{name:<27}{1e3 * per_checkpoint[name]:9.1f}{hvps:7d}{err_max:14.1e}{err_min:15.1e}{speed_up:9.0f}x")
    return per_checkpoint


def main():
    data = make_dataset("classification", 1000, 10, 0.1, seed=0)
    X, y = data.X, data.y
    fm = FlatModel(build_model("mlp", 10, 32, seed=0))
    run = train(fm, X, y, OptimizerSpec("gd", "sgd", 0.05), 100)
    print(f"default MLP: D={fm.dim}, n={len(y)}, {len(run)} checkpoints, torch threads {torch.get_num_threads()}, "
          f"solver threads {hessian.SOLVER_THREADS}; errors: worst over checkpoints {list(CHECKPOINTS)} "
          "against the float64 autodiff Hessian")
    reference = float64_reference(fm, X, y, run.params[list(CHECKPOINTS)])
    per_checkpoint = time_solvers(fm, X, y, run.params, reference)
    baseline = per_checkpoint["power, jvp HVP (seed)"]

    along = seconds(lambda: hessian.curvature_along(fm, X, y, run.params, progress=False))
    print(f"curvature_along, {len(run)} checkpoints: {along:.2f} s "
          f"(power iteration, seed's: ~{baseline * len(run):.0f} s, {baseline * len(run) / along:.0f}x)")
    plane = pca_plane(run.params, run.final, fm.layout)
    grid = np.linspace(-1, 1, 11)
    ratio_map = seconds(lambda: hessian.eigen_ratio_map(fm, X, y, plane, grid, grid, progress=False))
    print(f"eigen_ratio_map, 11x11: {ratio_map:.2f} s "
          f"(power iteration, seed's: ~{baseline * 121:.0f} s, {baseline * 121 / ratio_map:.0f}x)")

    hessian.SOLVER_THREADS = None  # torch's own thread count: why the solvers run on one thread
    threaded = seconds(lambda: hessian.curvature_along(fm, X, y, run.params, progress=False))
    print(f"curvature_along with torch's {torch.get_num_threads()} threads instead of 1: {threaded:.2f} s")


if __name__ == "__main__":
    main()
