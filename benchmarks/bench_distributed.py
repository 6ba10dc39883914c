"""Two ranks against one: a 3-layer MLP's loss surface through split_map, timed side by side in one run.

`python benchmarks/bench_distributed.py [resolution]` starts two gloo ranks on 127.0.0.1 with
torchrun. In turns, rank 0 evaluates the whole grid alone (rank 1 idles, as it would not exist),
then both ranks evaluate their halves through split_map; medians of each. One torch thread per rank.
"""
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import distributed  # noqa: E402
from data import make_dataset  # noqa: E402
from loss_surface import evaluate_points  # noqa: E402
from models import FlatModel  # noqa: E402
from projection import random_plane  # noqa: E402

REPEATS = 3
RESOLUTION = 101  # grid points per axis: 10201 points, enough to amortise the start-up of a rank


def surface_problem(resolution: int):
    """A 3-layer MLP 10-128-128-1 (the generic path), 1000 samples, a random plane, a square grid (N, 2)."""
    data = make_dataset("classification", n_samples=1000, n_features=10, noise=0.1, seed=0)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1),
                           nn.Flatten(0))
    fm = FlatModel(module)
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    axis = np.linspace(-1, 1, resolution)
    grid = np.stack([g.ravel() for g in np.meshgrid(axis, axis)], axis=1)
    return fm, data.X, data.y, plane, grid


def sync() -> None:
    """Every rank here before any goes on: a split_map of nothing much (no timeout while others compute)."""
    distributed.split_map(lambda items: np.zeros(len(items)), np.arange(2), name="sync")


def worker(resolution: int) -> None:
    torch.set_num_threads(1)
    ranks = distributed.setup("cpu", timeout_s=600)  # rank 1 waits out rank 0's solo runs
    fm, X, y, plane, grid = surface_problem(resolution)
    surface = lambda coords: evaluate_points(fm, X, y, plane, coords)  # noqa: E731
    surface(grid[:8])  # warm-up: the first call traces the model
    solo, split = [], []
    for _ in range(REPEATS):
        sync()
        if distributed.is_writer():
            start = time.perf_counter()
            reference = surface(grid)
            solo.append(time.perf_counter() - start)
        sync()
        start = time.perf_counter()
        loss, _ = distributed.split_map(surface, grid, name="surface")
        split.append(time.perf_counter() - start)
    if distributed.is_writer():
        one, two = statistics.median(solo), statistics.median(split)
        diff = float(np.abs(loss - reference[0]).max())
        shares = [s["work"]["surface"] // REPEATS for s in distributed.shares()]
        print(f"3-layer MLP 10-128-128-1 (D={fm.dim}), 1000 samples, {resolution}x{resolution} grid: "
              f"1 rank {one:.2f} s, {ranks.world_size} ranks {two:.2f} s ({one / two:.2f}x faster); "
              f"points per rank {shares}; max |difference| {diff:.1e}; medians of {REPEATS}")
    distributed.teardown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(resolution: int, world_size: int = 2) -> None:
    load_before = os.getloadavg()[0]
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), f"--nproc_per_node={world_size}", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", __file__, "--worker", str(resolution)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"})
    print(f"whole torchrun launch {time.perf_counter() - start:.1f} s; load average {load_before:.1f} -> "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared: ratios are noisy)")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(int(sys.argv[-1]))
    else:
        launch(int(sys.argv[1]) if len(sys.argv) > 1 else RESOLUTION)
