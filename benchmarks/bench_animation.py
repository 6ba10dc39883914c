"""3D descent GIF: seconds per frame of the one-figure renderer against a new figure per frame, in one run."""
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import common  # noqa: F401  (puts the repository on sys.path)
import animations
from loss_surface import Surface
from projection import Plane

# A non-convex 50x50 surface and a 101-point path down into one of its valleys.
alphas = betas = np.linspace(-2, 2, 50)
aa, bb = np.meshgrid(alphas, betas)
loss = 0.5 + 0.3 * np.sin(2 * aa) * np.cos(1.5 * bb) + 0.15 * (aa ** 2 + bb ** 2)
plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.7, 0.2))
surface = Surface(alphas, betas, loss, np.ones_like(loss), plane)
t = np.linspace(0, 1, 101)
coords = np.stack([1.8 - 2.5 * t, 1.5 * (1 - t) ** 2 - 0.3], axis=1)
path_loss = 0.5 + 0.3 * np.sin(2 * coords[:, 0]) * np.cos(1.5 * coords[:, 1]) + 0.15 * (coords ** 2).sum(1)


def naive_gif(path, n_frames: int) -> float:
    """What a simple script does: a new figure, a new surface, a full draw for every frame; same writer."""
    start, frames = time.perf_counter(), []
    for k, i in enumerate(animations.frame_indices(len(coords), n_frames)):
        fig = plt.figure(figsize=animations.FIGSIZE, dpi=animations.DPI)
        ax = fig.add_subplot(projection="3d")
        ax.plot_surface(aa, bb, loss, cmap="viridis", alpha=0.75, linewidth=0)
        ax.plot(coords[:i + 1, 0], coords[:i + 1, 1], path_loss[:i + 1], color="white", lw=2.5)
        ax.view_init(elev=32, azim=-60 + 70 * k / (n_frames - 1))
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return animations._write_gif(frames, path, 80, start).seconds_per_frame


with tempfile.TemporaryDirectory() as folder:
    naive, reused, sizes = [], [], []
    for _ in range(3):
        naive.append(naive_gif(Path(folder) / "naive.gif", 60))
        info = animations.descent_gif(surface, coords, path_loss, path_loss, np.arange(101),
                                      Path(folder) / "descent.gif", "benchmark", n_frames=60, frame_ms=80)
        reused.append(info.seconds_per_frame)
        sizes.append(info.bytes)
print(f"3D descent GIF, 50x50 surface, 60 frames: naive {1e3 * np.median(naive):.0f} ms/frame, one reused "
      f"figure per core {1e3 * np.median(reused):.0f} ms/frame (both: palette and writing included); ratio "
      f"{np.median(naive) / np.median(reused):.1f}x; GIF {np.median(sizes) / 1e6:.2f} MB")
