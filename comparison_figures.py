"""Multi-panel PNG figures that compare planes, minima and seeds: arrays in, one PNG out per function."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")  # files only: never opens a window, works without a display

import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from plot_style import (  # noqa: E402
    END, WHITE_EDGE, add_colorbar, contour_levels, draw_background, draw_path, finish, loss_label, loss_scale,
    marker_handles, new_figure, nonfinite_note, run_colour, set_plain_log, set_plane_axes)
from visualization import recorded_cap  # noqa: E402

GREY_EDGE = [patheffects.withStroke(linewidth=2.6, foreground="0.3")]  # a white dashed line on a white legend


def plot_plane_choice(panels, title, path, loss_name: str = "training loss"):
    """The same path on several planes side by side, on one colour scale (a colour is the same loss in
    every panel), each panel with its colour bar.

    panels: [(surface, PlanePath, panel_title)]; the caller's panel_title names the plane, its mean
    residual and its surface-vs-recorded gap. Each panel obeys its PlanePath.drawn ("surface", "shadow"
    or a (T,) bool mask per checkpoint): dashed where the path is a shadow.
    """
    fig = new_figure("plane_choice")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    notes = []
    runs = [run for _, run, _ in panels]
    scale = loss_scale(np.concatenate([np.ravel(s.loss) for s, _, _ in panels]), *[r.losses for r in runs],
                       cap=recorded_cap(runs))
    for k, (ax, (surface, run, panel_title)) in enumerate(zip(axes, panels)):
        notes += draw_background(ax, surface, scale=scale, loss_name=loss_name)
        notes += set_plane_axes(ax, surface.alphas, surface.betas, surface.plane.axis_labels())
        handle = draw_path(ax, run.coords, run.colour or run_colour(0), run.legend_label(), run.drawn)
        ax.set_title(panel_title, fontsize=10)
        ax.legend(handles=[handle] + marker_handles(), loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  fontsize=9, frameon=False)
        notes += _outside_note(ax, run, surface, f"panel {k + 1}")
    fig.suptitle(title)
    return finish(fig, sorted(set(notes), key=notes.index), path)


def _outside_note(ax, run, surface, where) -> list:
    coords = np.asarray(run.coords, float)
    low, high = (surface.alphas.min(), surface.betas.min()), (surface.alphas.max(), surface.betas.max())
    return [f"{where}: part of the path lies outside the grid"] if ((coords < low) | (coords > high)).any() else []


# ---------------------------------------------------------------- flat versus sharp minima

SHARPNESS_LINE_HEIGHT = 5.2  # inches of the 1-D panel
SHARPNESS_ROW_WIDTH, SHARPNESS_LABELS = 10.5, 1.2  # inches the square panels share; their titles and axis labels


def plot_sharpness(ts, lines, surfaces, title, path, loss_name: str = "training loss",
                   direction: str = "a filter-normalised random direction"):
    """Flat versus sharp minima: the loss along one filter-normalised random direction through each
    run's final weights, all on one axis, beside small 2-D contour panels of the same minima.

    ts (P,); lines: [(label, losses (P,), colour)]; surfaces: [(label, Surface, colour)] or None,
    drawn on one shared axis range and one shared colour scale.
    """
    fig = new_figure("sharpness")
    if surfaces:  # the line on top, the small square panels in a row under it, the figure as tall as they need
        lower_height = SHARPNESS_ROW_WIDTH / max(len(surfaces), 3) + SHARPNESS_LABELS
        fig.set_figheight(SHARPNESS_LINE_HEIGHT + lower_height)
        upper, lower = fig.subfigures(2, 1, height_ratios=[SHARPNESS_LINE_HEIGHT, lower_height])
    else:
        upper, lower = fig, None
    ax = upper.subplots()
    ts = np.asarray(ts, dtype=float)
    values = np.concatenate([np.asarray(loss, float) for _, loss, _ in lines])
    for label, loss, colour in lines:
        loss = np.asarray(loss, dtype=float)
        ax.plot(ts, np.where(np.isfinite(loss), loss, np.nan), color=colour, lw=2, label=label)
        ax.plot(0, np.interp(0, ts, loss), **END, mfc=colour, zorder=5)
    if contour_levels(values)[1]:
        set_plain_log(ax)
    ax.axvline(0, color="0.4", ls=":", lw=1)
    ax.set_xlabel(f"t along {direction} (t = 0: final weights ★)")
    ax.set_ylabel(loss_label(ax.get_yscale() == "log", loss_name))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    ax.set_title("1-D: one axis for every minimum", fontsize=10)
    notes = nonfinite_note(values, "line losses", "gaps in the lines")
    if lower is not None:
        notes += _minima_panels(lower, surfaces, loss_name)
    fig.suptitle(title)
    return finish(fig, notes, path)


def _minima_panels(subfig, surfaces, loss_name) -> list:
    """Small contour panels on one axis range and one colour scale, a ★ at each minimum (the centre)."""
    n = len(surfaces)
    axes = np.atleast_1d(subfig.subplots(1, max(n, 3), sharex=True, sharey=True)).ravel()
    scale = loss_scale(np.concatenate([s.loss.ravel() for _, s, _ in surfaces]))
    notes = []
    for ax, (label, surface, colour) in zip(axes, surfaces):
        notes += draw_background(ax, surface, scale=scale, colorbar=False)
        ax.plot(0, 0, **END, mfc=colour, zorder=5)
        ax.set_title(label, fontsize=10, color=colour, fontweight="bold")
        ax.set_aspect("equal")
        ax.tick_params(labelsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    first = surfaces[0][1]
    subfig.supxlabel(first.plane.axis_labels()[0], fontsize=9)
    subfig.supylabel(first.plane.axis_labels()[1], fontsize=9)
    add_colorbar(subfig, axes[0].filled, list(axes[:n]), scale[1], loss_name, shrink=0.85)
    subfig.suptitle("2-D: one axis range and one colour scale", fontsize=10)
    return sorted(set(notes), key=notes.index)


# ---------------------------------------------------------------- several seeds

def plot_multi_seed(minima_surface, minima_coords, minima_labels, minima_losses, lines, seed_panels, title, path,
                    colours=None, loss_name: str = "training loss"):
    """Several seeds: the plane through three minima (Garipov et al. 2018), the loss along the
    straight line between every pair of minima with its barrier, and each seed's path on its own plane.

    minima_surface: Surface of the three-minima plane; minima_coords (M, 2) their plane coordinates;
    minima_labels, minima_losses (M,) their names and recorded losses; colours (M,) or None.
    lines: [(pair_label, ts (P,), losses (P,), barrier, colour)].
    seed_panels: [(surface, PlanePath)] one small panel per seed (up to about 10), one colour scale; each
    path dashed where its PlanePath.drawn says it is off its plane.
    """
    fig = new_figure("multi_seed")
    rows = 1 if len(seed_panels) <= 5 else 2
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 0.15 + 0.5 * rows])  # no slack around square panels
    # an empty middle column keeps the colour bar's label apart from the line panel's axis label
    plane_ax, gap, line_ax = top.subplots(1, 3, width_ratios=[1.1, 0.06, 1])
    gap.axis("off")
    colours = [run_colour(k) for k in range(len(minima_labels))] if colours is None else colours
    notes = _minima_plane(plane_ax, minima_surface, minima_coords, minima_labels, minima_losses, colours,
                          loss_name)
    _barrier_lines(line_ax, lines, loss_name)
    if seed_panels:
        notes += _seed_panels(bottom, seed_panels, loss_name)
    fig.suptitle(title)
    return finish(fig, notes, path)


def _minima_plane(ax, surface, coords, labels, losses, colours, loss_name) -> list:
    notes = draw_background(ax, surface, scale=loss_scale(surface.loss, losses), loss_name=loss_name)
    notes += set_plane_axes(ax, surface.alphas, surface.betas, surface.plane.axis_labels())
    coords = np.asarray(coords, dtype=float)
    for a, b in itertools.combinations(range(len(coords)), 2):
        ax.plot(*coords[[a, b]].T, color="white", lw=1.2, ls=(0, (2, 2)), zorder=3)
    handles = []
    for point, label, loss, colour in zip(coords, labels, losses, colours):
        ax.plot(*point, **END, mfc=colour, zorder=5)
        ax.annotate(label, point, xytext=(7, 7), textcoords="offset points", fontsize=9, color="black",
                    path_effects=WHITE_EDGE, zorder=6)
        handles.append(Line2D([], [], **END, mfc=colour, label=f"{label}: recorded loss {loss:.4g}"))
    handles.append(Line2D([], [], color="white", lw=1.2, ls=(0, (2, 2)), path_effects=GREY_EDGE,
                          label="straight lines between minima (right)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8,
              frameon=False)
    ax.set_title("plane through three minima", fontsize=10)
    return notes


PAIR_STYLES = [("#333333", "-"), ("#333333", "--"), ("#333333", ":"), ("#333333", "-.")]  # dark grey: no seed has it


def _barrier_lines(ax, lines, loss_name):
    """Loss along (1 - t) θ_a + t θ_b for each pair; the highest point marked with its barrier."""
    values = np.concatenate([np.asarray(loss, float) for _, _, loss, _, _ in lines]) if lines else np.zeros(0)
    for k, (pair_label, ts, loss, barrier, colour) in enumerate(lines):
        ts, loss = np.asarray(ts, float), np.asarray(loss, float)
        # a pair is no run: without a colour of its own it takes neutral ink, never a seed's colour
        ink, dashes = PAIR_STYLES[k % len(PAIR_STYLES)] if colour is None else (colour, "-")
        line, = ax.plot(ts, np.where(np.isfinite(loss), loss, np.nan), color=ink, ls=dashes, lw=2,
                        label=f"{pair_label}: barrier {barrier:.3g}")
        if np.isfinite(loss).any():
            top = int(np.nanargmax(np.where(np.isfinite(loss), loss, np.nan)))
            # the line's own colour: without one given, a second plot call would take the next in the cycle
            ax.plot(ts[top], loss[top], marker="^", ms=8, color=line.get_color(), mec="black", zorder=5)
    if values.size and contour_levels(values)[1]:
        set_plain_log(ax)
    ax.set_xlabel("t along (1 − t) θ_a + t θ_b")
    ax.set_ylabel(loss_label(ax.get_yscale() == "log", loss_name))
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)
    ax.set_title("straight line between each pair of minima (▲: highest point)", fontsize=10)


def _seed_panels(subfig, seed_panels, loss_name) -> list:
    """Each seed's path on its own plane: small panels, one colour scale and one colour bar."""
    n = len(seed_panels)
    ncols = n if n <= 5 else int(np.ceil(n / 2))
    axes = np.atleast_1d(subfig.subplots(int(np.ceil(n / ncols)), ncols)).ravel()
    runs = [run for _, run in seed_panels]
    scale = loss_scale(np.concatenate([s.loss.ravel() for s, _ in seed_panels]), *[r.losses for r in runs],
                       cap=recorded_cap(runs))
    notes = []
    for k, (ax, (surface, run)) in enumerate(zip(axes, seed_panels)):
        notes += draw_background(ax, surface, scale=scale, colorbar=False)
        set_plane_axes(ax, surface.alphas, surface.betas, surface.plane.axis_labels())
        colour = run.colour or run_colour(k)
        draw_path(ax, run.coords, colour, drawn=run.drawn)
        ax.set_title(run.legend_label(sep="\n"), fontsize=9, color=colour, fontweight="bold")
        ax.xaxis.label.set_fontsize(7)
        ax.yaxis.label.set_fontsize(7)
        ax.tick_params(labelsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    add_colorbar(subfig, axes[0].filled, list(axes[:n]), scale[1], loss_name, shrink=0.9)
    subfig.suptitle("each seed's path on its own plane (○ start, ★ end; dashed: shadow, off its plane)",
                    fontsize=10)
    return sorted(set(notes), key=notes.index)
