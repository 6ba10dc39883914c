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
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from outputs import atomic_path  # noqa: E402
from plot_style import PATH_COLOURS, contour_levels, finite_prefix, view_azimuth  # noqa: E402

FIGSIZE, DPI = (6.4, 4.8), 100  # 640 x 480 frames keep a 60-frame GIF well under 3 MB
ROTATION = 70  # degrees the camera turns over one GIF: slow enough to follow the path
PALETTE_SIZE = 128  # colours shared by all frames: smooth enough for viridis, half the bytes of 256
SURFACE_FACETS = 25  # at most this many facets per axis: smooth enough, and large flat areas compress well
TICKS = 5  # at most this many ticks per 3D axis: tick labels are most of a frame's drawing time
HEAD_COLOUR = "#D55E00"  # the current point: vermillion stands out from viridis and from the white trail
RACE_COLOURS = PATH_COLOURS  # the colours of the same runs in the PNGs and the pages
ACCENTS = ["white", "black", HEAD_COLOUR, *RACE_COLOURS]  # small markers: exact entries of every palette


@dataclass
class GifInfo:
    """What a GIF writer reports; seconds cover rendering, palette and writing (for summary.json)."""
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
    path is drawn); true_losses (T,) and steps (T,) are printed in each frame. A diverged tail
    (non-finite rows) is cut. Frames are rendered by `workers` processes (default: one per
    core), each reusing one figure.
    """
    start = time.perf_counter()
    scene = descent_scene(surface, coords, path_surface_loss, true_losses, steps, title)
    shown = frame_indices(len(scene["coords"]), n_frames)
    workers = min(workers or len(os.sched_getaffinity(0)), max(1, len(shown) // 8))
    parts = np.array_split(np.arange(len(shown)), workers)
    jobs = [(scene, shown, part) for part in parts]
    if workers == 1:
        frames = _render_descent(*jobs[0])
    else:  # fork: the children inherit the imports; each renders a contiguous share of the frames
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            frames = [f for part in pool.map(_render_descent, *zip(*jobs)) for f in part]
    return _write_gif(frames, path, frame_ms, start)


def descent_scene(surface, coords, path_surface_loss, true_losses, steps, title) -> dict:
    """Everything a descent frame needs, as plain arrays: heights are log10(loss) when the loss
    spans decades, clipped to the surface's finite range (a NaN corner is drawn at the top)."""
    T = max(1, finite_prefix(coords, path_surface_loss, true_losses))
    drawn = np.asarray(path_surface_loss, float)[:T]
    (lo, hi), is_log = contour_levels(np.r_[np.ravel(surface.loss), drawn], n=2)

    def height(loss):
        clipped = np.clip(np.nan_to_num(np.asarray(loss, float), nan=hi, posinf=hi, neginf=lo), lo, hi)
        return np.log10(clipped) if is_log else clipped

    z = height(surface.loss)  # (B, A)
    lift = 0.015 * (height(hi) - height(lo))  # the path floats just above the facets: never hidden
    return dict(alphas=surface.alphas, betas=surface.betas, z=z, is_log=is_log, azim0=view_azimuth(z),
                labels=surface.plane.axis_labels(), coords=np.asarray(coords, float)[:T], heights=height(drawn) + lift,
                true_losses=np.asarray(true_losses, float)[:T], steps=np.asarray(steps)[:T], title=title)


def descent_figure(scene: dict):
    """(fig, trail, head, label): the surface drawn once, the moving artists still empty."""
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # draw order as given: path above surface
    aa, bb = np.meshgrid(scene["alphas"], scene["betas"])  # (B, A): z[i, j] sits at (alphas[j], betas[i])
    stride = max(1, int(np.ceil(max(aa.shape) / SURFACE_FACETS)))
    ax.plot_surface(aa, bb, scene["z"], cmap="viridis", rstride=stride, cstride=stride, linewidth=0,
                    antialiased=False, alpha=0.75, zorder=1)
    trail, = ax.plot([], [], [], color="white", lw=2.5, zorder=3)
    ax.plot(*scene["coords"][0], scene["heights"][0], "o", ms=7, mfc="white", mec="black", zorder=4)
    head, = ax.plot([], [], [], "o", ms=9, mfc=HEAD_COLOUR, mec="black", zorder=5)
    ax.set_xlabel(scene["labels"][0], fontsize=8)
    ax.set_ylabel(scene["labels"][1], fontsize=8)
    ax.set_zlabel("training loss" + (" (log10)" if scene["is_log"] else ""), fontsize=8)
    ax.tick_params(labelsize=7)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(TICKS))
    ax.grid(False)  # grid lines sweep across every frame: noise to the eye and to the GIF encoder
    fig.suptitle(scene["title"], fontsize=10)  # a 3D axes title re-measures the whole axes every frame
    label = fig.text(0.02, 0.02, "", fontsize=9, family="monospace")
    return fig, trail, head, label


def set_descent_frame(scene: dict, artists, i: int, azim: float) -> None:
    """Show checkpoint i: the trail up to it, the marker on it, its epoch and loss, the camera at azim."""
    fig, trail, head, label = artists
    coords, heights = scene["coords"], scene["heights"]
    trail.set_data_3d(coords[:i + 1, 0], coords[:i + 1, 1], heights[:i + 1])
    head.set_data_3d(coords[i:i + 1, 0], coords[i:i + 1, 1], heights[i:i + 1])
    label.set_text(f"epoch {int(scene['steps'][i]):>4}   training loss {scene['true_losses'][i]:.4f}")
    fig.axes[0].view_init(elev=32, azim=azim)


def camera_azimuth(scene: dict, k: int, n_frames: int) -> float:
    """Frame k of n_frames: the camera sweeps ROTATION degrees centred on the scene's best view."""
    return scene["azim0"] - ROTATION / 2 + ROTATION * k / max(1, n_frames - 1)


def _render_descent(scene: dict, shown: np.ndarray, part: np.ndarray) -> list:
    """Frames number `part` of the descent GIF, drawn on one figure whose artists are updated."""
    artists = descent_figure(scene)
    fig = artists[0]
    fig.canvas.draw()
    fig.set_layout_engine("none")  # layout fixed after the first draw: re-solving it per frame doubles the time
    frames = []
    for k in part:
        set_descent_frame(scene, artists, shown[k], camera_azimuth(scene, k, len(shown)))
        fig.canvas.draw()  # the camera moved: the one figure is redrawn, nothing is rebuilt
        frames.append(_grab(fig))
    plt.close(fig)
    return frames


def race_indices(lengths, n_frames: int):
    """(shown (F,), at (F, R)): the step of each frame, and where each of R runs is then.

    A run shorter than the longest (it diverged, or stopped) waits at its last point.
    """
    shown = frame_indices(max(lengths), n_frames)
    return shown, np.minimum(shown[:, None], np.asarray(lengths)[None, :] - 1)


def optimizer_race_gif(surface, runs, path, title, n_frames: int = 60, frame_ms: int = 80) -> GifInfo:
    """Several runs from one start racing over the contours of their shared plane.

    runs: list of (coords (T_r, 2), losses (T_r,), label), one record per epoch. A run that
    ended early (it diverged) waits at its last finite point. Drawn by blitting: the contours
    are rendered once, only the paths and the counter are drawn per frame.
    """
    start = time.perf_counter()
    tracks = [_finite_run(coords, losses) for coords, losses, _ in runs]
    labels = [label for _, _, label in runs]
    fig, ax = _race_background(surface, title)
    colours = [RACE_COLOURS[k % len(RACE_COLOURS)] for k in range(len(runs))]
    trails = [ax.plot([], [], color=c, lw=2, animated=True)[0] for c in colours]
    heads = [ax.plot([], [], "o", ms=8, color=c, mec="black", animated=True)[0] for c in colours]
    ax.plot(*tracks[0][0][0], "o", ms=9, mfc="white", mec="black")
    handles = [Line2D([], [], color=c, lw=2, marker="o", mec="black", label=lbl) for c, lbl in zip(colours, labels)]
    handles.append(Line2D([], [], ls="none", marker="o", ms=9, mfc="white", mec="black", label="start"))
    legend_at, counter_at = _emptiest_corners([c for c, _ in tracks], surface.alphas, surface.betas)[:2]
    ax.legend(handles=handles, loc=CORNERS[legend_at][0], fontsize=8, framealpha=0.85)
    counter = ax.text(*CORNERS[counter_at][1], "", ha=CORNERS[counter_at][2], va=CORNERS[counter_at][3],
                      transform=ax.transAxes, fontsize=8, family="monospace", animated=True,
                      bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    width = max(len(lbl) for lbl in labels)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # layout fixed after the first draw: the background must not move
    background = fig.canvas.copy_from_bbox(fig.bbox)
    lengths = [np.linalg.norm(np.diff(c, axis=0), axis=1).sum() for c, _ in tracks]
    order = np.argsort(lengths)[::-1]  # longest trail first: a short one that it crosses stays visible
    frames = []
    shown, at = race_indices([len(c) for c, _ in tracks], n_frames)
    for i, row in zip(shown, at):
        fig.canvas.restore_region(background)
        for (coords, _), trail, head, j in zip(tracks, trails, heads, row):
            trail.set_data(coords[:j + 1, 0], coords[:j + 1, 1])
            head.set_data(coords[j:j + 1, 0], coords[j:j + 1, 1])
        for artist in [trails[r] for r in order] + heads:  # every head above every trail
            ax.draw_artist(artist)
        counter.set_text(f"epoch {i}\n" + "\n".join(f"{lbl:<{width}}  loss {losses[j]:.4f}"
                                                     for lbl, (_, losses), j in zip(labels, tracks, row)))
        ax.draw_artist(counter)
        frames.append(_grab(fig))
    plt.close(fig)
    return _write_gif(frames, path, frame_ms, start)


def _finite_run(coords, losses):
    """(coords (T, 2), losses (T,)) cut at the first non-finite row; at least the start is kept."""
    T = max(1, finite_prefix(coords, losses))
    return np.asarray(coords, float)[:T], np.asarray(losses, float)[:T]


def _race_background(surface, title):
    """The figure with everything that does not move: filled contours, colour bar, axes, title."""
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
    return fig, ax


# corner: (legend loc, text anchor in axes fractions, ha, va, centre of the region it covers)
CORNERS = {"upper right": ("upper right", (0.98, 0.97), "right", "top", (0.8, 0.85)),
           "upper left": ("upper left", (0.02, 0.97), "left", "top", (0.2, 0.85)),
           "lower left": ("lower left", (0.02, 0.03), "left", "bottom", (0.2, 0.15)),
           "lower right": ("lower right", (0.98, 0.03), "right", "bottom", (0.8, 0.15))}


def _emptiest_corners(paths, alphas, betas) -> list:
    """Corner names, fewest path points first: the legend and the counter go where no path runs.

    paths: list of (T_r, 2) plane coordinates; a corner region is 40% wide and 30% high.
    """
    pts = np.vstack(paths)  # (sum T_r, 2)
    fx = (pts[:, 0] - alphas[0]) / (alphas[-1] - alphas[0])  # axes fractions
    fy = (pts[:, 1] - betas[0]) / (betas[-1] - betas[0])
    counts = {name: int(np.sum((np.abs(fx - c[4][0]) < 0.2) & (np.abs(fy - c[4][1]) < 0.15)))
              for name, c in CORNERS.items()}
    return sorted(CORNERS, key=lambda name: counts[name])  # stable: ties keep the order above


def _grab(fig) -> np.ndarray:
    """The canvas as it was last drawn or blitted: (H, W, 3) uint8."""
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def shared_palette(frames, size: int = PALETTE_SIZE) -> Image.Image:
    """One palette for every frame: adaptive colours from a few frames, plus the ACCENTS exactly.

    A palette per frame would flicker; median cut alone averages a small marker's colour away.
    """
    sample = np.concatenate(frames[:: max(1, len(frames) // 6)], axis=0)  # (6 H, W, 3)
    adaptive = Image.fromarray(sample).quantize(colors=size - len(ACCENTS), method=Image.Quantize.MEDIANCUT)
    accents = [round(255 * c) for colour in ACCENTS for c in to_rgb(colour)]
    palette = Image.new("P", (1, 1))
    palette.putpalette(adaptive.getpalette()[:3 * (size - len(ACCENTS))] + accents)
    return palette


def _write_gif(frames, path, frame_ms, start) -> GifInfo:
    """Every frame mapped to one shared palette (no dithering), looping forever, written atomically.

    imageio's pillow plugin gets the frames already indexed, with the palette: handed RGB it
    would quantise every frame again, which took longer than all the rest of the writing.
    """
    palette = shared_palette(frames)
    indexed = np.stack([np.asarray(Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE))
                        for f in frames])  # (N, H, W) palette indices
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, indexed, extension=".gif", plugin="pillow", mode="P", palette=bytes(palette.getpalette()),
                    duration=frame_ms, loop=0)
    return GifInfo(Path(path), len(frames), time.perf_counter() - start, Path(path).stat().st_size)
