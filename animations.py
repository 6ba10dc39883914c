"""Animated GIFs: gradient descent step by step on a rotating surface; the frame palette and GIF writing."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogLocator, MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from outputs import atomic_path  # noqa: E402
from plot_style import (SHADOW_DASHES, contour_levels, finite_prefix, line_pieces, on_mask,  # noqa: E402
                        shadow_label, switch_points, view_azimuth)
from workers import in_workers  # noqa: E402

FIGSIZE, DPI = (8, 6), 100  # 800 x 600 frames: 10-12 pt text reads at the GIF's own size, 60 frames < 3 MB
FONT = dict(tick=9, label=11, caption=11, title=12)  # points, at DPI 100
HOLD_MS = 1500  # the last frame stays this long before the loop starts again: time to read the result
ROTATION = 30  # degrees the camera swings to either side of the best view: slow enough to follow the path
ELEVATION = 30  # degrees above the plane: the surface's relief shows, never edge-on
PALETTE_SIZE = 128  # colours shared by all frames: smooth enough for viridis, half the bytes of 256
SURFACE_FACETS = 25  # at most this many facets per axis: smooth enough, and large flat areas compress well
TICKS = 5  # at most this many ticks per 3D axis: tick labels are most of a frame's drawing time
HEAD_COLOUR = "#D55E00"  # the current point: vermillion stands out from viridis and from the white trail
ACCENTS = ["white", "black", HEAD_COLOUR]  # small markers: exact entries of every palette (plus the runs' colours)


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
                n_frames: int = 60, frame_ms: int = 80, workers: int | None = None,
                loss_name: str = "training loss", drawn="surface", residual_mean: float | None = None) -> GifInfo:
    """The path growing step by step on the 3D surface while the camera swings about its best view.

    coords (T, 2) plane coordinates; path_surface_loss (T,) the surface's value there; true_losses
    (T,) and steps (T,) are printed under each frame. drawn: "surface", "shadow" or a (T,) bool mask,
    True where the surface is the checkpoint's loss: as in the 3D PNG, those checkpoints are lifted onto
    the surface and the rest lie dashed on a contour map below it, with a dotted connector where the
    path switches; the moving marker follows, and the caption says when it is off the plane.
    residual_mean feeds the legend's "% off plane" (plot_style.shadow_label). A diverged tail
    (non-finite rows) is cut. Frames are rendered by `workers` processes (default: one per
    core), each reusing one figure; the last frame is held HOLD_MS.
    """
    start = time.perf_counter()
    scene = descent_scene(surface, coords, path_surface_loss, true_losses, steps, title, loss_name, drawn,
                          residual_mean)
    shown = frame_indices(len(scene["coords"]), n_frames)
    workers = min(workers or len(os.sched_getaffinity(0)), max(1, len(shown) // 8))
    jobs = [(scene, shown, part) for part in np.array_split(np.arange(len(shown)), workers)]
    frames = [f for part in in_workers(_render_descent, jobs) for f in part]  # contiguous shares, in order
    return write_gif(frames, path, frame_ms, start)


def descent_scene(surface, coords, path_surface_loss, true_losses, steps, title,
                  loss_name: str = "training loss", drawn="surface", residual_mean: float | None = None) -> dict:
    """Everything a descent frame needs, as plain arrays: heights are log10(loss) when the loss
    spans decades, clipped to the surface's finite range (a NaN corner is drawn at the top).
    heights (T,) are where each checkpoint is drawn: lifted onto the surface where `on`, else the floor."""
    T = max(1, finite_prefix(coords, path_surface_loss, true_losses))
    on = on_mask(drawn, len(np.asarray(coords)))[:T]  # (T,) True: the surface is this checkpoint's loss
    path_loss = np.asarray(path_surface_loss, float)[:T]
    (lo, hi), is_log = contour_levels(np.r_[np.ravel(surface.loss), path_loss], n=2)

    def height(loss):
        clipped = np.clip(np.nan_to_num(np.asarray(loss, float), nan=hi, posinf=hi, neginf=lo), lo, hi)
        return np.log10(clipped) if is_log else clipped

    z = height(surface.loss)  # (B, A)
    span = height(hi) - height(lo)
    lifted = height(path_loss) + 0.015 * span  # the path floats just above the facets: never hidden
    floor = height(lo) - (0.35 * span if not on.all() else 0.0)  # the 3D PNG's floor, under the surface
    steps = np.asarray(steps)[:T]
    return dict(alphas=surface.alphas, betas=surface.betas, z=z, is_log=is_log, lo=lo, hi=hi, floor=floor,
                azim0=view_azimuth(z), labels=surface.plane.axis_labels(), coords=np.asarray(coords, float)[:T],
                on=on, lifted=lifted, heights=np.where(on, lifted, floor), steps=steps,
                true_losses=np.asarray(true_losses, float)[:T], title=title, loss_name=loss_name,
                label=shadow_label("path", drawn if isinstance(drawn, str) else on, residual_mean, steps=steps))


OFF_CAPTION = "   (shadow: off the plane)"


def caption_text(scene: dict, i: int) -> str:
    """The line under frame i; fixed width (padded), so the room kept for it fits every frame."""
    text = f"epoch {int(scene['steps'][i]):>5}   {scene['loss_name']} {scene['true_losses'][i]:10.4g}"
    width = len(text) + (0 if scene["on"].all() else len(OFF_CAPTION))
    return (text + ("" if scene["on"][i] else OFF_CAPTION)).ljust(width)


TRAIL = {True: dict(color="white", lw=2.5, ls="-"), False: dict(color="white", lw=2.0, ls=SHADOW_DASHES)}
CONNECTOR = dict(color="white", lw=1.4, ls=(0, (1, 1.5)))  # dotted, from the floor up to the surface


def descent_figure(scene: dict):
    """(fig, trail, head, caption, connectors): the surface drawn once, the moving artists still empty.

    trail: [(lo, hi, on, line)], the path's pieces (plot_style.line_pieces: solid on the surface, dashed on
    the floor); connectors: [(i, shown_from, line)], the connector at checkpoint i, shown once the head
    reaches checkpoint shown_from (the first one whose piece of trail uses its foot on the floor)."""
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # draw order as given: path above surface
    aa, bb = np.meshgrid(scene["alphas"], scene["betas"])  # (B, A): z[i, j] sits at (alphas[j], betas[i])
    on, shadow = scene["on"], not scene["on"].all()
    if shadow:  # the contour map the shadow lies on, as in the 3D PNG
        ax.contourf(aa, bb, scene["z"], levels=10, zdir="z", offset=scene["floor"], cmap="viridis", alpha=0.75,
                    zorder=0)
    stride = max(1, int(np.ceil(max(aa.shape) / SURFACE_FACETS)))
    ax.plot_surface(aa, bb, scene["z"], cmap="viridis", rstride=stride, cstride=stride, linewidth=0,
                    antialiased=False, alpha=0.75, zorder=1)
    trail = [(lo, hi, piece_on, ax.plot([], [], [], **TRAIL[piece_on], zorder=3)[0])
             for lo, hi, piece_on in line_pieces(on)]
    connectors = [(i, i if i > 0 and not on[i - 1] else i + 1, ax.plot([], [], [], **CONNECTOR, zorder=3)[0])
                  for i in switch_points(on)]
    ax.plot(*scene["coords"][0], scene["heights"][0], "o", ms=8, mfc="white", mec="black", zorder=4)
    head, = ax.plot([], [], [], "o", ms=10, mfc=HEAD_COLOUR, mec="black", zorder=5)
    _style_descent_axes(ax, scene)
    if shadow:
        ax.set_zlim(scene["floor"], np.max(scene["z"]))
        ax.legend(handles=descent_handles(scene), loc="upper left", fontsize=FONT["tick"], framealpha=0.9)
    fig.suptitle(scene["title"], fontsize=FONT["title"])  # a 3D axes title re-measures the whole axes every frame
    # supxlabel: constrained layout keeps a row for it under the axes, so it never covers an axis label
    caption = fig.supxlabel(caption_text(scene, len(scene["steps"]) - 1), fontsize=FONT["caption"],
                            family="monospace")
    return fig, trail, head, caption, connectors


def descent_handles(scene: dict) -> list:
    """Legend entries of a path partly or wholly off the plane, the trail's white lines outlined in black so
    they read on the legend's white; the dashed entry's label is plot_style.shadow_label's."""
    edge = [patheffects.withStroke(linewidth=4, foreground="black")]
    handles = [Line2D([], [], **TRAIL[False], path_effects=edge, label=scene["label"] + ": on the floor")]
    if scene["on"].any():
        handles.insert(0, Line2D([], [], **TRAIL[True], path_effects=edge, label="path on the surface"))
    return handles


def _style_descent_axes(ax, scene: dict) -> None:
    """Axis labels and at most TICKS ticks per axis; log heights get round loss values as labels, as the PNG."""
    ax.set_xlabel(scene["labels"][0], fontsize=FONT["label"], labelpad=8)
    ax.set_ylabel(scene["labels"][1], fontsize=FONT["label"], labelpad=8)
    ax.set_zlabel(scene["loss_name"] + (" (log scale)" if scene["is_log"] else ""), fontsize=FONT["label"],
                  labelpad=8)
    ax.tick_params(labelsize=FONT["tick"])
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(TICKS))
    if scene["is_log"]:
        lo, hi = scene["lo"], scene["hi"]
        values = [v for v in LogLocator(subs=(1, 2, 5), numticks=TICKS + 1).tick_values(lo, hi) if lo <= v <= hi]
        ax.zaxis.set_ticks(np.log10(values), [f"{v:g}" for v in values])
    elif not scene["on"].all():  # no tick on the floor below the surface: no loss is drawn at that height
        ax.zaxis.set_ticks([v for v in MaxNLocator(TICKS).tick_values(scene["lo"], scene["hi"])
                            if scene["lo"] <= v <= scene["hi"]])
    ax.grid(False)  # grid lines sweep across every frame: noise to the eye and to the GIF encoder


def set_descent_frame(scene: dict, artists, i: int, azim: float) -> None:
    """Show checkpoint i: the trail up to it (each piece on the surface or on the floor, and the connectors
    reached), the marker on it (on the floor while it is off the plane), its epoch and loss, the camera at azim."""
    fig, trail, head, caption, connectors = artists
    coords, heights = scene["coords"], scene["heights"]
    for lo, hi, on, line in trail:
        end = max(lo, min(hi, i + 1))
        # a dashed piece lies wholly on the floor, its joins to the surface included
        line.set_data_3d(coords[lo:end, 0], coords[lo:end, 1], heights[lo:end] if on else np.full(end - lo,
                                                                                                 scene["floor"]))
    for k, shown_from, line in connectors:
        at = [k, k] if i >= shown_from else []
        line.set_data_3d(coords[at, 0], coords[at, 1], [scene["floor"], scene["lifted"][k]][:len(at)])
    head.set_data_3d(coords[i:i + 1, 0], coords[i:i + 1, 1], heights[i:i + 1])
    caption.set_text(caption_text(scene, i))
    fig.axes[0].view_init(elev=ELEVATION, azim=azim)


def camera_azimuth(scene: dict, k: int, n_frames: int) -> float:
    """Frame k of n_frames: the camera swings ROTATION degrees to either side of the scene's best view,
    starting there and coming back to it, so the first frame shows the surface's shape and the loop is seamless."""
    return scene["azim0"] + ROTATION * np.sin(2 * np.pi * k / max(1, n_frames))


def _render_descent(scene: dict, shown: np.ndarray, part: np.ndarray) -> list:
    """Frames number `part` of the descent GIF, drawn on one figure whose artists are updated."""
    artists = descent_figure(scene)
    fig = artists[0]
    set_descent_frame(scene, artists, shown[-1], scene["azim0"])
    fig.canvas.draw()
    fig.set_layout_engine("none")  # layout fixed after the first draw: re-solving it per frame doubles the time
    frames = []
    for k in part:
        set_descent_frame(scene, artists, shown[k], camera_azimuth(scene, k, len(shown)))
        fig.canvas.draw()  # the camera moved: the one figure is redrawn, nothing is rebuilt
        frames.append(grab_frame(fig))
    plt.close(fig)
    return frames


def grab_frame(fig) -> np.ndarray:
    """The canvas as it was last drawn or blitted: (H, W, 3) uint8."""
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def shared_palette(frames, size: int = PALETTE_SIZE, accents=ACCENTS) -> Image.Image:
    """One palette for every frame: adaptive colours from a few frames, plus the accents exactly.

    A palette per frame would flicker; median cut alone averages a small marker's colour away.
    """
    accents = list(dict.fromkeys(accents))  # a run's colour may repeat an accent
    sample = np.concatenate(frames[:: max(1, len(frames) // 6)], axis=0)  # (6 H, W, 3)
    adaptive = Image.fromarray(sample).quantize(colors=size - len(accents), method=Image.Quantize.MEDIANCUT)
    exact = [round(255 * c) for colour in accents for c in to_rgb(colour)]
    palette = Image.new("P", (1, 1))
    palette.putpalette(adaptive.getpalette()[:3 * (size - len(accents))] + exact)
    return palette


def frame_durations(n_frames: int, frame_ms: int) -> list:
    """Milliseconds per frame: frame_ms each, the last held HOLD_MS so the result can be read."""
    return [frame_ms] * (n_frames - 1) + [max(frame_ms, HOLD_MS)]


def write_gif(frames, path, frame_ms, start, accents=ACCENTS) -> GifInfo:
    """Every frame mapped to one shared palette (no dithering), looping forever, written atomically.

    imageio's pillow plugin gets the frames already indexed, with the palette: handed RGB it
    would quantise every frame again, which took longer than all the rest of the writing.
    """
    palette = shared_palette(frames, accents=accents)
    indexed = np.stack([np.asarray(Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE))
                        for f in frames])  # (N, H, W) palette indices
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, indexed, extension=".gif", plugin="pillow", mode="P", palette=bytes(palette.getpalette()),
                    duration=frame_durations(len(frames), frame_ms), loop=0)
    return GifInfo(Path(path), len(frames), time.perf_counter() - start, Path(path).stat().st_size)
