"""Hutchinson trace and SLQ nodes with probes side by side, against the plain probe-at-a-time loops they replace."""
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.linalg import eigh_tridiagonal  # noqa: E402

import hessian  # noqa: E402
import spectrum  # noqa: E402
from common import default_mlp_run  # noqa: E402
from config import Config  # noqa: E402
from eigensolver import lanczos_run, start_vector  # noqa: E402
from main import load_data  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402

REPEATS = 5  # interleaved repeats of loop and batched; medians are compared


def trace_loop(fm, X, y, theta, n_probes: int, seed: int) -> tuple:
    """Hutchinson with the same Rademacher probes as spectrum.trace, one product per probe."""
    matvec, dtype = hessian.operator(fm, X, y, theta)
    generator = torch.Generator().manual_seed(seed)
    Z = (2 * torch.randint(0, 2, (n_probes, fm.dim), generator=generator) - 1).to(theta.device, dtype)
    quad = np.array([float(z.double() @ matvec(z).double()) for z in Z])
    return float(quad.mean()), float(quad.std(ddof=1) / np.sqrt(n_probes))


def slq_loop(fm, X, y, theta, n_probes: int, n_steps: int, seed: int) -> tuple:
    """SLQ nodes and weights (n_probes, n_steps) with the same probes as spectrum.slq_nodes, one Lanczos run at a time."""
    matvec, dtype = hessian.operator(fm, X, y, theta)
    nodes, weights = np.zeros((n_probes, n_steps)), np.zeros((n_probes, n_steps))
    for p in range(n_probes):
        v0 = start_vector(fm.dim, torch.float64, theta.device, seed=seed * 100003 + p)
        alpha, beta, _ = lanczos_run(lambda v: matvec(v.to(dtype)), v0, n_steps)
        values, S = eigh_tridiagonal(alpha, beta[:-1])
        nodes[p, :len(values)], weights[p, :len(values)] = values, S[0] ** 2
        nodes[p, len(values):] = values[0]
    return nodes, weights


def digits_cnn_run():
    """(fm, X, y, theta) for the digits CNN after 300 full-batch steps: no closed form, autodiff products."""
    data = load_data(Config(dataset="digits", model="cnn"), "cpu")
    fm = FlatModel(build_model("cnn", data.n_features, seed=0, n_classes=data.n_classes,
                               image_shape=data.image_shape, loss="ce"), loss="ce")
    run = train(fm, data.X, data.y, OptimizerSpec("gd", "sgd", 0.5), 300)
    return fm, data.X, data.y, run.final


def interleaved(loop_fn, new_fn) -> tuple:
    """(loop seconds, new seconds, loop result, new result): medians of REPEATS alternating calls."""
    times, results = ([], []), [None, None]
    for _ in range(REPEATS):
        for i, fn in enumerate((loop_fn, new_fn)):
            start = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), *results


def compare(label, fm, X, y, theta):
    args = (fm, X, y, theta.detach())
    t_loop, t_new, a, b = interleaved(lambda: trace_loop(*args, n_probes=30, seed=0),
                                      lambda: spectrum.trace(*args, n_probes=30, seed=0, exact=False))
    print(f"{label} D={fm.dim}  trace(30 probes): loop {t_loop:.3f} s, batched {t_new:.3f} s, "
          f"{t_loop / t_new:.2f}x; |Δ estimate| {abs(a[0] - b[0]):.1e} (of {abs(a[0]):.3g})")
    t_loop, t_new, a, b = interleaved(lambda: slq_loop(*args, n_probes=10, n_steps=80, seed=0),
                                      lambda: spectrum.slq_nodes(*args, n_probes=10, n_steps=80, seed=0))
    print(f"{label} D={fm.dim}  SLQ (10 probes, 80 steps): loop {t_loop:.3f} s, lockstep {t_new:.3f} s, "
          f"{t_loop / t_new:.2f}x; density max |Δ| {density_difference(a, b):.1e}")


def density_difference(a, b) -> float:
    """Largest difference of the two node sets' densities on one grid (nodes may differ where weights vanish)."""
    grid = np.linspace(min(a[0].min(), b[0].min()), max(a[0].max(), b[0].max()), 1000)
    sigma = 0.01 * (grid[-1] - grid[0])
    density = [np.exp(-0.5 * ((grid[:, None] - n.ravel()) / sigma) ** 2) @ w.ravel() for n, w in (a, b)]
    return float(np.abs(density[0] - density[1]).max() / (sigma * np.sqrt(2 * np.pi) * len(a[0])))


def main():
    torch.set_num_threads(1)
    fm, data, run = default_mlp_run()
    compare("default MLP (closed form)", fm, data.X, data.y, run.final)
    compare("digits CNN (autodiff)", *digits_cnn_run())


if __name__ == "__main__":
    main()
