"""GIFs at their default size: seconds per frame of the one-figure descent renderer against a new figure
per frame (in one run, interleaved), the optimiser race, and every GIF's size against the 3 MB budget."""
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import common  # noqa: F401  (puts the repository on sys.path)
import animations
import race_gif
from plot_style import run_colour
from loss_surface import Surface
from projection import Plane

N_FRAMES, REPEATS = 60, 3
BUDGET_BYTES = 3e6
torch.set_num_threads(1)

# A non-convex 50x50 surface and a 101-point path down into one of its valleys.
alphas = betas = np.linspace(-2, 2, 50)
aa, bb = np.meshgrid(alphas, betas)


def landscape(a, b):
    return 0.5 + 0.3 * np.sin(2 * a) * np.cos(1.5 * b) + 0.15 * (a ** 2 + b ** 2)


plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.7, 0.2))
surface = Surface(alphas, betas, landscape(aa, bb), np.ones_like(aa), plane)
t = np.linspace(0, 1, 101)
coords = np.stack([1.8 - 2.5 * t, 1.5 * (1 - t) ** 2 - 0.3], axis=1)
path_loss = landscape(coords[:, 0], coords[:, 1])
args = (surface, coords, path_loss, path_loss + 0.01, np.arange(101))


def naive_gif(path) -> animations.GifInfo:
    """What a simple script does: the same picture, but a new figure (surface, axes, layout) every frame."""
    start, frames = time.perf_counter(), []
    scene = animations.descent_scene(*args, "benchmark")
    shown = animations.frame_indices(len(coords), N_FRAMES)
    for k, i in enumerate(shown):
        artists = animations.descent_figure(scene)
        animations.set_descent_frame(scene, artists, i, animations.camera_azimuth(scene, k, len(shown)))
        artists[0].canvas.draw()
        frames.append(animations.grab_frame(artists[0]))
        plt.close(artists[0])
    return animations.write_gif(frames, path, 80, start)


def race_runs():
    """Three runs from one start: two on the plane, one a shadow (dashed), one stopping early."""
    ends = [(-0.6, 0.2), (0.4, -0.5), (-1.2, -1.0)]
    runs = []
    for k, (end, drawn) in enumerate(zip(ends, ("surface", "surface", "shadow"))):
        length = 101 if k < 2 else 70
        s = np.linspace(0, 1, length)[:, None] ** 0.5
        c = (1 - s) * np.array([1.8, 1.6]) + s * np.array(end)
        runs.append(dict(coords=c, losses=landscape(c[:, 0], c[:, 1]), label=["SGD", "Adam", "momentum"][k],
                         drawn=drawn, colour=run_colour(k)))
    return runs


with tempfile.TemporaryDirectory() as folder:
    results = {"naive": [], "reused, 1 process": [], "reused, 2 processes": []}
    for _ in range(REPEATS):  # interleaved, so a busy moment on the machine hits every renderer alike
        results["naive"].append(naive_gif(Path(folder) / "naive.gif"))
        for workers in (1, 2):
            results[f"reused, {workers} process{'es' if workers > 1 else ''}"].append(animations.descent_gif(
                *args, Path(folder) / f"descent{workers}.gif", "benchmark", n_frames=N_FRAMES, workers=workers))
    race = [race_gif.optimizer_race_gif(surface, race_runs(), Path(folder) / "race.gif", "benchmark",
                                          n_frames=N_FRAMES) for _ in range(REPEATS)]
per_frame = {name: np.median([r.seconds_per_frame for r in runs]) for name, runs in results.items()}
print(f"GIFs at {animations.FIGSIZE[0] * animations.DPI:.0f}x{animations.FIGSIZE[1] * animations.DPI:.0f}: "
      f"3D descent on a 50x50 surface, 101-point path, {N_FRAMES} frames (palette and writing included), "
      f"median of {REPEATS}:")
for name, runs in results.items():
    print(f"  {name:<20} {1e3 * per_frame[name]:6.1f} ms/frame  {per_frame['naive'] / per_frame[name]:4.1f}x  "
          f"GIF {np.median([r.bytes for r in runs]) / 1e6:.2f} MB")
race_ms = 1e3 * np.median([r.seconds_per_frame for r in race])
race_mb = np.median([r.bytes for r in race]) / 1e6
print(f"  {'optimizer race':<20} {race_ms:6.1f} ms/frame        GIF {race_mb:.2f} MB")
largest = max(r.bytes for runs in [*results.values(), race] for r in runs)
print(f"  largest GIF {largest / 1e6:.2f} MB of the {BUDGET_BYTES / 1e6:.0f} MB budget: "
      f"{'within' if largest <= BUDGET_BYTES else 'OVER'}")
