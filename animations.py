"""Animated GIFs: gradient descent step by step on a rotating surface, and optimisers racing on a plane."""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from outputs import atomic_path  # noqa: E402
from visualization import CONTOUR_COLOURS, contour_levels, finite_prefix, view_azimuth  # noqa: E402

FIGSIZE, DPI = (6.4, 4.8), 100  # 640 x 480 frames keep a 60-frame GIF well under 3 MB
ROTATION = 70  # degrees the camera turns over one GIF: slow enough to follow the path
ACCENTS = [(0xD5, 0x5E, 0x00), (255, 255, 255), (0, 0, 0), (0xE6, 0x9F, 0x00), (0x56, 0xB4, 0xE9), (0xCC, 0x79, 0xA7)]
PALETTE_SIZE = 128  # colours shared by all frames: smooth enough for viridis, half the bytes of 256
SURFACE_FACETS = 25  # at most this many facets per axis: smooth enough, and large flat areas compress well


@dataclass
class GifInfo:
    path: Path
    n_frames: int
    seconds: float
    bytes: int

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / max(1, self.n_frames)


def frame_indices(n_points: int, n_frames: int) -> np.ndarray:
    """Checkpoints shown, one per frame: all of them if they fit, else evenly spaced with both ends kept."""
    if n_points <= n_frames:
        return np.arange(n_points)
    return np.unique(np.round(np.linspace(0, n_points - 1, n_frames)).astype(int))


def descent_gif(surface, coords, path_surface_loss, true_losses, steps, path, title,
                n_frames: int = 60, frame_ms: int = 80, workers: int | None = None) -> GifInfo:
    """The path growing step by step on the 3D surface while the camera turns slowly.

    coords (T, 2) plane coordinates; path_surface_loss (T,) the surface's value there (where the
    path is drawn); true_losses (T,) and steps (T,) are printed in each frame. Frames are
    rendered by `workers` processes (default: one per core), each reusing one figure.
    """
    start = time.perf_counter()
    T = max(1, finite_prefix(coords, path_surface_loss, true_losses))
    scene = dict(alphas=surface.alphas, betas=surface.betas, loss=surface.loss, labels=surface.plane.axis_labels(),
                 coords=np.asarray(coords, float)[:T], drawn=np.asarray(path_surface_loss, float)[:T],
                 true_losses=np.asarray(true_losses, float)[:T], steps=np.asarray(steps)[:T], title=title)
    shown = frame_indices(T, n_frames)
    workers = min(workers or os.cpu_count() or 1, max(1, len(shown) // 8))
    parts = np.array_split(np.arange(len(shown)), workers)
    jobs = [(scene, shown, part) for part in parts]
    if workers == 1:
        frames = _render_descent(*jobs[0])
    else:  # fork: the children inherit the imports; each renders a contiguous share of the frames
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            frames = [f for part in pool.map(_render_descent, *zip(*jobs)) for f in part]
    return _write_gif(frames, path, frame_ms, start)


def _render_descent(scene: dict, shown: np.ndarray, part: np.ndarray) -> list:
    """Frames number `part` of the descent GIF, drawn on one figure whose artists are updated."""
    (lo, hi), is_log = contour_levels(np.r_[np.ravel(scene["loss"]), scene["drawn"]], n=2)
    z = lambda loss: (lambda c: np.log10(c) if is_log else c)(  # noqa: E731  loss -> height, clipped
        np.clip(np.nan_to_num(np.asarray(loss, float), nan=hi, posinf=hi), lo, hi))
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)
    aa, bb = np.meshgrid(scene["alphas"], scene["betas"])  # (B, A): loss[i, j] sits at (alphas[j], betas[i])
    stride = max(1, int(np.ceil(max(aa.shape) / SURFACE_FACETS)))
    ax.plot_surface(aa, bb, z(scene["loss"]), cmap="viridis", rstride=stride, cstride=stride, linewidth=0,
                    antialiased=False, alpha=0.75, zorder=1)
    coords, heights = scene["coords"], z(scene["drawn"]) + 0.015 * (z(hi) - z(lo))  # lifted: never hidden
    trail, = ax.plot([], [], [], color="white", lw=2.5, zorder=3)
    ax.plot(*coords[0], heights[0], "o", ms=7, mfc="white", mec="black", zorder=4)
    head, = ax.plot([], [], [], "o", ms=9, mfc="#D55E00", mec="black", zorder=5)
    ax.set_xlabel(scene["labels"][0], fontsize=8)
    ax.set_ylabel(scene["labels"][1], fontsize=8)
    ax.set_zlabel("training loss" + (" (log10)" if is_log else ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(False)  # grid lines sweep across every frame: noise to the eye and to the GIF encoder
    ax.set_title(scene["title"], fontsize=10)
    label = fig.text(0.02, 0.02, "", fontsize=9, family="monospace")
    azim0 = view_azimuth(z(scene["loss"]))
    fig.canvas.draw()
    fig.set_layout_engine("none")  # layout fixed after the first draw: re-solving it per frame doubles the time
    frames = []
    for k in part:
        i = shown[k]
        trail.set_data_3d(coords[:i + 1, 0], coords[:i + 1, 1], heights[:i + 1])
        head.set_data_3d(coords[i:i + 1, 0], coords[i:i + 1, 1], heights[i:i + 1])
        label.set_text(f"epoch {int(scene['steps'][i]):>4}   loss {scene['true_losses'][i]:.4f}")
        ax.view_init(elev=32, azim=azim0 - ROTATION / 2 + ROTATION * k / max(1, len(shown) - 1))
        fig.canvas.draw()  # the camera moved: the one figure is redrawn, nothing is rebuilt
        frames.append(_grab(fig))
    plt.close(fig)
    return frames


def optimizer_race_gif(surface, runs, path, title, n_frames: int = 60, frame_ms: int = 80) -> GifInfo:
    """Several runs from one start racing over the contours of their shared plane.

    runs: list of (coords (T_r, 2), losses (T_r,), label). A run that ended early (it diverged)
    waits at its last finite point. Drawn by blitting: the contours are rendered once.
    """
    start = time.perf_counter()
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    levels, is_log = contour_levels(surface.loss)
    norm = matplotlib.colors.LogNorm(levels[0], levels[-1]) if is_log else None
    filled = ax.contourf(surface.alphas, surface.betas, np.ma.masked_invalid(surface.loss), levels=levels,
                         cmap="viridis", norm=norm)
    fig.colorbar(filled, ax=ax, label="training loss (BCE)" + (", log scale" if is_log else ""),
                 ticks=levels[::2], format="%.3g")
    ax.set_xlabel(surface.plane.axis_labels()[0])
    ax.set_ylabel(surface.plane.axis_labels()[1])
    ax.set_title(title, fontsize=11)
    ax.set_xlim(surface.alphas[0], surface.alphas[-1])
    ax.set_ylim(surface.betas[0], surface.betas[-1])
    tracks = []
    for k, (coords, losses, label) in enumerate(runs):
        T = max(1, finite_prefix(coords, losses))
        colour = CONTOUR_COLOURS[k % len(CONTOUR_COLOURS)]  # light colours read on viridis
        trail, = ax.plot([], [], color=colour, lw=2, animated=True)
        head, = ax.plot([], [], "o", ms=8, color=colour, mec="black", animated=True, label=label)
        tracks.append((np.asarray(coords, float)[:T], np.asarray(losses, float)[:T], trail, head))
    ax.plot(*np.asarray(runs[0][0], float)[0], "o", ms=9, mfc="white", mec="black", label="start")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    counter = ax.text(0.02, 0.03, "", transform=ax.transAxes, fontsize=8, family="monospace", animated=True,
                      bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    fig.canvas.draw()
    fig.set_layout_engine("none")
    background = fig.canvas.copy_from_bbox(fig.bbox)
    frames = []
    for i in frame_indices(max(len(t[0]) for t in tracks), n_frames):
        fig.canvas.restore_region(background)
        for coords, losses, trail, head in tracks:
            j = min(i, len(coords) - 1)
            trail.set_data(coords[:j + 1, 0], coords[:j + 1, 1])
            head.set_data(coords[j:j + 1, 0], coords[j:j + 1, 1])
            ax.draw_artist(trail)
            ax.draw_artist(head)
        counter.set_text(f"epoch {i}\n" + "\n".join(f"{lbl}: loss {t[1][min(i, len(t[1]) - 1)]:.4f}"
                                                      for t, (_, _, lbl) in zip(tracks, runs)))
        ax.draw_artist(counter)
        frames.append(_grab(fig))
    plt.close(fig)
    return _write_gif(frames, path, frame_ms, start)


def _grab(fig) -> np.ndarray:
    """The canvas as it was last drawn or blitted: (H, W, 3) uint8."""
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _write_gif(frames, path, frame_ms, start) -> GifInfo:
    """One adaptive palette for every frame (no flicker, small file), looping forever, written atomically."""
    sample = np.concatenate(frames[:: max(1, len(frames) // 6)], axis=0)
    accents = np.repeat(np.array(ACCENTS, np.uint8)[:, None, :], sample.shape[1], axis=1).repeat(40, axis=0)
    sample = np.concatenate([sample, accents])  # small markers keep their exact colours in the palette
    palette = Image.fromarray(sample).quantize(colors=PALETTE_SIZE, method=Image.Quantize.MEDIANCUT)
    indexed = [np.asarray(Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB"))
               for f in frames]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(indexed), extension=".gif", plugin="pillow", duration=frame_ms, loop=0)
    return GifInfo(Path(path), len(frames), time.perf_counter() - start, Path(path).stat().st_size)
