"""The optimiser race GIF: several runs from one start moving over the contours of their shared plane."""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from animations import ACCENTS, DPI, FIGSIZE, FONT, GifInfo, frame_indices, grab_frame, write_gif  # noqa: E402
from plot_style import (CURVE_CAP, as_record, draw_background, drawn_kind, finite_prefix,  # noqa: E402
                        line_pieces, loss_scale, on_mask, path_handle, path_style, run_colour, shadow_label)


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
    return as_record(RaceRun, run)


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
        frames.append(grab_frame(fig))
    plt.close(fig)
    return write_gif(frames, path, frame_ms, start, accents=ACCENTS + colours)


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
