"""Animated GIFs: gradient descent step by step on a rotating surface, and optimisers racing on a plane."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
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
from plot_style import (CURVE_CAP, SHADOW_DASHES, contour_levels, draw_background, drawn_kind,  # noqa: E402
                        finite_prefix, line_pieces, loss_scale, on_mask, path_handle, path_style, run_colour,
                        shadow_label, switch_points, view_azimuth)

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
    return _write_gif(frames, path, frame_ms, start)


PR_SET_PDEATHSIG = 1  # from linux/prctl.h


def in_workers(fn, jobs) -> list:
    """[fn(*job) for job in jobs], one forked process per job when there are several (the children
    inherit the imports). Each worker dies with its parent: a killed run leaves no renderer behind."""
    if len(jobs) == 1:
        return [fn(*jobs[0])]
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("fork"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        return list(pool.map(fn, *zip(*jobs)))


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when `parent` dies, even by SIGKILL, which runs no clean-up.

    Linux sends the signal itself (prctl PR_SET_PDEATHSIG); a thread that polls the parent's pid is
    the fallback elsewhere, and catches a parent that died before prctl was set.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # no prctl on this system: the watchdog alone
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, period_s: float = 0.5) -> None:
    while os.getppid() == parent:  # an orphan is adopted by another process: its parent pid changes
        time.sleep(period_s)
    os.kill(os.getpid(), signal.SIGKILL)


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
        frames.append(_grab(fig))
    plt.close(fig)
    return frames


def race_indices(lengths, n_frames: int):
    """(shown (F,), at (F, R)): the step of each frame, and where each of R runs is then.

    A run shorter than the longest (it diverged, or stopped) waits at its last point.
    """
    shown = frame_indices(max(lengths), n_frames)
    return shown, np.minimum(shown[:, None], np.asarray(lengths)[None, :] - 1)


@dataclass
class RaceRun:
    """One run of the race: coords (T, 2) and recorded losses (T,) per epoch. drawn: "surface", "shadow"
    (the run leaves the plane: dashed, never as if the contours were its loss) or a (T,) bool mask,
    True where a checkpoint lies on the surface (solid there, dashed elsewhere, as in the PNG)."""
    coords: np.ndarray
    losses: np.ndarray
    label: str
    drawn: object = "surface"
    colour: str | None = None
    residual_mean: float | None = None


def as_race_run(run) -> RaceRun:
    """A RaceRun from a tuple (coords, losses, label[, drawn[, colour]]), a dict or a RaceRun."""
    return run if isinstance(run, RaceRun) else RaceRun(**run) if isinstance(run, dict) else RaceRun(*run)


def optimizer_race_gif(surface, runs, path, title, n_frames: int = 60, frame_ms: int = 80,
                       loss_name: str = "training loss") -> GifInfo:
    """Several runs from one start racing over the contours of their shared plane.

    runs: RaceRuns, or tuples/dicts with their fields, one record per epoch. A run that ended early
    (it diverged) waits at its last finite point. Contours and colour bar are the PNG's
    (plot_style.draw_background on the same colour scale). Drawn by blitting: the background is
    rendered once, only the paths and the counter are drawn per frame.
    """
    start = time.perf_counter()
    runs = [as_race_run(run) for run in runs]
    tracks = [_finite_run(run.coords, run.losses) for run in runs]
    colours = [run.colour or run_colour(k) for k, run in enumerate(runs)]
    fig, ax = _race_background(surface, title, [losses for _, losses in tracks], loss_name)
    trails = [_trail_pieces(ax, run, len(coords), c) for run, (coords, _), c in zip(runs, tracks, colours)]
    heads = [ax.plot([], [], "o", ms=8, color=c, mec="black", animated=True)[0] for c in colours]
    ax.plot(*tracks[0][0][0], "o", ms=9, mfc="white", mec="black")
    handles = race_handles(runs, colours)
    counter_at = _emptiest_corners([c for c, _ in tracks], surface.alphas, surface.betas)[0]
    # below the axes: long labels ("(shadow: 20 % off plane)") never cover a path or the counter
    wide = max(len(h.get_label()) for h in handles) > 45  # two long labels side by side would leave the frame
    fig.legend(handles=handles, loc="outside lower center", ncol=1 if wide else 2, fontsize=FONT["tick"],
               frameon=False)
    anchor, ha, va, _ = CORNERS[counter_at]
    counter = ax.text(*anchor, "", ha=ha, va=va,
                      transform=ax.transAxes, fontsize=FONT["tick"], family="monospace", animated=True,
                      bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    fig.canvas.draw()
    fig.set_layout_engine("none")  # layout fixed after the first draw: the background must not move
    background = fig.canvas.copy_from_bbox(fig.bbox)
    lengths = [np.linalg.norm(np.diff(c, axis=0), axis=1).sum() for c, _ in tracks]
    order = np.argsort(lengths)[::-1]  # longest trail first: a short one that it crosses stays visible
    frames = []
    shown, at = race_indices([len(c) for c, _ in tracks], n_frames)
    for i, row in zip(shown, at):
        fig.canvas.restore_region(background)
        for (coords, _), pieces, head, j in zip(tracks, trails, heads, row):
            for lo, hi, line in pieces:  # each piece shows its checkpoints reached by now
                line.set_data(coords[lo:min(hi, j + 1), 0], coords[lo:min(hi, j + 1), 1])
            head.set_data(coords[j:j + 1, 0], coords[j:j + 1, 1])
        counter.set_text(_race_counter(i, [run.label for run in runs], [losses for _, losses in tracks], row))
        # the counter first: a path crossing its corner stays visible; every head above every trail
        for artist in [counter] + [line for r in order for _, _, line in trails[r]] + heads:
            ax.draw_artist(artist)
        frames.append(_grab(fig))
    plt.close(fig)
    return _write_gif(frames, path, frame_ms, start, accents=ACCENTS + colours)


def _trail_pieces(ax, run: RaceRun, T: int, colour) -> list:
    """[(lo, hi, line)]: the run's trail as the PNG draws it, solid where its checkpoints lie on the
    surface and dashed where they leave it (run.drawn: "surface", "shadow" or a (T_r,) bool mask)."""
    mask = on_mask(run.drawn, len(run.coords))[:T]
    return [(lo, hi, ax.plot([], [], **path_style(colour, "surface" if on else "shadow"), animated=True)[0])
            for lo, hi, on in line_pieces(mask)]


def race_handles(runs, colours) -> list:
    """Legend entries drawn like the trails: a shadow run dashed, "(shadow: ... off plane)" in its label;
    a run partly off its plane gets the PNG's half-dashed sample and says which epochs are dashed."""
    handles = []
    for c, run in zip(colours, runs):
        label = shadow_label(run.label, run.drawn, run.residual_mean, steps=np.arange(len(run.coords)))
        kind = drawn_kind(run.drawn)
        handles.append(path_handle(c, label, run.drawn) if kind == "partial" else
                       Line2D([], [], **path_style(c, kind), marker="o", mec="black", label=label))
    return handles + [Line2D([], [], ls="none", marker="o", ms=9, mfc="white", mec="black", label="start")]


def _race_counter(epoch: int, labels, losses, row) -> str:
    width = max(len(label) for label in labels)
    return f"epoch {epoch}\n" + "\n".join(f"{label:<{width}}  loss {loss[j]:.4f}"
                                           for label, loss, j in zip(labels, losses, row))


def _finite_run(coords, losses):
    """(coords (T, 2), losses (T,)) cut at the first non-finite row; at least the start is kept."""
    T = max(1, finite_prefix(coords, losses))
    return np.asarray(coords, float)[:T], np.asarray(losses, float)[:T]


def _race_background(surface, title, losses, loss_name: str):
    """The figure with everything that does not move: the PNG's contours and colour bar, axes, title.

    The colour scale covers the surface and the runs' recorded losses below CURVE_CAP x the largest
    initial loss, as in optimizer_comparison.png."""
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    firsts = np.array([l[0] for l in losses if len(l) and np.isfinite(l[0])])
    scale = loss_scale(surface.loss, *losses, cap=CURVE_CAP * np.max(firsts, initial=1e-12))
    draw_background(ax, surface, scale=scale, loss_name=loss_name)
    ax.set_xlabel(surface.plane.axis_labels()[0], fontsize=FONT["label"])
    ax.set_ylabel(surface.plane.axis_labels()[1], fontsize=FONT["label"])
    ax.tick_params(labelsize=FONT["tick"])
    ax.set_title(title, fontsize=FONT["title"])
    ax.set_xlim(surface.alphas[0], surface.alphas[-1])
    ax.set_ylim(surface.betas[0], surface.betas[-1])
    return fig, ax


# corner: (text anchor in axes fractions, ha, va, centre of the region it covers)
CORNERS = {"upper right": ((0.98, 0.97), "right", "top", (0.8, 0.85)),
           "upper left": ((0.02, 0.97), "left", "top", (0.2, 0.85)),
           "lower left": ((0.02, 0.03), "left", "bottom", (0.2, 0.15)),
           "lower right": ((0.98, 0.03), "right", "bottom", (0.8, 0.15))}


def _emptiest_corners(paths, alphas, betas) -> list:
    """Corner names, fewest path points first: the counter goes where no path runs.

    paths: list of (T_r, 2) plane coordinates; a corner region is 40% wide and 30% high.
    """
    pts = np.vstack(paths)  # (sum T_r, 2)
    fx = (pts[:, 0] - alphas[0]) / (alphas[-1] - alphas[0])  # axes fractions
    fy = (pts[:, 1] - betas[0]) / (betas[-1] - betas[0])
    counts = {name: int(np.sum((np.abs(fx - c[3][0]) < 0.2) & (np.abs(fy - c[3][1]) < 0.15)))
              for name, c in CORNERS.items()}
    return sorted(CORNERS, key=lambda name: counts[name])  # stable: ties keep the order above


def _grab(fig) -> np.ndarray:
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


def _write_gif(frames, path, frame_ms, start, accents=ACCENTS) -> GifInfo:
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
