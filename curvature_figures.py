"""Static PNG figures of curvature: Hessian extremes along a path, the edge of stability, the
eigenvalue density and the top-eigenvector plane, the convexity map."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: never opens a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from plot_style import (  # noqa: E402
    END, contour_levels, draw_background, draw_path, finish, legend_below, loss_scale, marker_handles, new_figure,
    nonfinite_note, run_colour, set_plain_log, set_plane_axes, shadow_label)


def plot_curvature(steps, lam_max, lam_min, stability, title, path, losses=None, loss_steps=None,
                   loss_name: str = "training loss"):
    """Hessian extremes along a path: λmax beside the optimiser's stability line and the loss on a
    twin axis above, λmin below. steps (K,) are the eigenvalues' epochs; losses share them unless
    loss_steps is given. stability: (value, label) from the caller, e.g. (40, "2/lr, full-batch GD")
    or (76, "2(1+β)/lr, heavy-ball momentum"); None where no such line exists (Adam, mini-batches)."""
    fig = new_figure("curvature")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.5, 1])
    lam_max = np.asarray(lam_max, dtype=float)
    notes = nonfinite_note(lam_max, "λmax values", "gaps")
    notes += nonfinite_note(lam_min, "λmin values", "gaps")
    handles = top.plot(steps, lam_max, color=run_colour(0), marker="o", ms=3, lw=1.8, label="λmax (sharpness)")
    highest = np.max(lam_max[np.isfinite(lam_max)], initial=-np.inf)
    if stability is not None and stability[0] <= 1.5 * highest:
        handles.append(top.axhline(stability[0], color=run_colour(1), ls="--", lw=1.5,
                                   label=f"{stability[1]} = {stability[0]:.3g}"))
    elif stability is not None:  # far above the data: say so above the panel rather than squash the curve
        top.set_title(f"↑ {stability[1]} = {stability[0]:.3g} is off scale, far above λmax", loc="left",
                      color=run_colour(1), fontsize=9)
    top.set_ylabel("λmax of the Hessian")
    if losses is not None:
        twin = top.twinx()
        handles += twin.plot(steps if loss_steps is None else loss_steps, losses, color="0.45", lw=1.5, ls="-.",
                             label=loss_name)
        twin.set_ylabel(loss_name, color="0.35")
    top.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize=9,
               frameon=False)
    bottom.plot(steps, lam_min, color=run_colour(2), marker="o", ms=3, lw=1.8)
    bottom.axhline(0, color="0.5", lw=0.8)
    bottom.set_ylabel("λmin of the Hessian\n(< 0: not locally convex)")
    bottom.set_xlabel("epoch")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.suptitle(title)
    return finish(fig, notes, path)


def plot_edge_of_stability(runs, title, path):
    """λmax against epoch for several runs, each beside its own stability line.

    runs: list of (steps (K,), lam_max (K,), stability, label) or (..., label, colour); stability is
    (value, label) from the caller (2/lr for full-batch GD, 2(1+β)/lr for heavy-ball momentum) or
    None (Adam, mini-batches: no line). A line far above every curve is named in a note instead
    of squashing the curves (Cohen et al. 2021).
    """
    fig = new_figure("curvature")
    ax = fig.add_subplot()
    top = max((np.nanmax(np.where(np.isfinite(run[1]), run[1], np.nan)) for run in runs
               if np.isfinite(run[1]).any()), default=1.0)
    ceiling, off_scale, lines = 1.35 * top, [], 0
    for k, (steps, lam_max, stability, label, *colour) in enumerate(runs):
        colour = colour[0] if colour and colour[0] else run_colour(k)
        ax.plot(steps, lam_max, color=colour, lw=1.8, label=f"{label}: λmax")
        if stability is None:
            continue
        name = f"{label}: {stability[1]} = {stability[0]:.3g}"
        if stability[0] <= ceiling:
            ax.axhline(stability[0], color=colour, ls="--", lw=1.2, label=name)
            lines += 1
        else:
            off_scale.append(name)
    ax.set_ylim(0, ceiling)
    ax.set_xlabel("epoch")
    ax.set_ylabel("λmax of the Hessian (sharpness)")
    ax.grid(alpha=0.3)
    legend_below(ax, ax.get_legend_handles_labels()[0], ncol=2)
    ax.set_title(title)
    notes = [f"above the plotted range: {', '.join(off_scale)}"] if off_scale else []
    if lines:
        notes.append("dashed: each run's stability line, the sharpness above which its optimiser stops being "
                     "stable on a quadratic (Cohen et al. 2021)")
    return finish(fig, notes, path)


def plot_eigen_ratio(alphas, betas, ratio, path_coords, axis_labels, title, path, surface=None,
                     drawn="surface", colour: str | None = None, steps=None):
    """|λmin / λmax| over a plane grid (ratio[i, j] at (alphas[j], betas[i])) with the path on top:
    dashed when drawn="shadow", dashed where False when drawn is a (T,) bool mask (the legend names
    the epochs, from steps (T,) when given).

    axis_labels: plane.axis_labels(). surface (optional): its loss contours, for orientation.
    """
    fig = new_figure("eigen_ratio")
    ax = fig.add_subplot()
    alphas, betas, ratio = (np.asarray(a, dtype=float) for a in (alphas, betas, ratio))
    top = np.max(ratio[np.isfinite(ratio)], initial=0.0)
    cmap = plt.get_cmap("cividis").with_extremes(bad="0.85")
    mesh = ax.pcolormesh(alphas, betas, np.ma.masked_invalid(ratio), cmap=cmap, vmin=0,
                         vmax=top if top > 0 else 1, shading="nearest")
    fig.colorbar(mesh, ax=ax, pad=0.02).set_label("|λmin / λmax|  (near 0: close to convex)")
    label = shadow_label("training path", drawn, steps=steps)
    handles = [draw_path(ax, path_coords, colour or run_colour(0), label, drawn)]
    if surface is not None:
        levels, is_log = contour_levels(surface.loss, n=10)
        ax.contour(surface.alphas, surface.betas, np.ma.masked_invalid(surface.loss), levels=levels,
                   colors="0.75", linewidths=0.7, norm=colors.LogNorm(levels[0], levels[-1]) if is_log else None)
        handles.append(Line2D([], [], color="0.75", lw=0.8, label="loss contours"))
    notes = nonfinite_note(ratio, "ratios", "light grey") + set_plane_axes(ax, alphas, betas, axis_labels)
    # the span evaluated, the loss contours' too: edge cells show their inner halves, each value centred on its point
    ax.set_xlim(alphas[0], alphas[-1])
    ax.set_ylim(betas[0], betas[-1])
    legend_below(ax, handles + marker_handles(), ncol=1)  # one column: the shadow label is long
    ax.set_title(title)
    return finish(fig, notes, path)


def plot_spectrum(densities, top_surface, title, path, axis_labels=None, top_path=None,
                  loss_name: str = "training loss"):
    """Hessian eigenvalue density (stochastic Lanczos quadrature) at several checkpoints beside the
    landscape on the plane of the top two Hessian eigenvectors at the final weights.

    densities: [(label, grid (G,), density (G,))]; log density axis when it spans many decades.
    top_surface: Surface centred on θ*; axis_labels e.g. ("top eigenvector 1 (λ=12.3)", ...), else
    the plane's own. top_path: optional PlanePath drawn by its own rule (dashed where a shadow).
    """
    fig = new_figure("spectrum")
    dens_ax, plane_ax = fig.subplots(1, 2, width_ratios=[1.45, 1])  # the square plane panel needs less width
    values = []
    for k, (label, grid, density) in enumerate(densities):
        density = np.asarray(density, dtype=float)
        dens_ax.plot(grid, density, color=run_colour(k), lw=1.8, label=label)
        values.append(density[np.isfinite(density) & (density > 0)])
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size and values.max() / values.min() > 100:  # tails and outliers: visible only on a log axis
        set_plain_log(dens_ax)
        dens_ax.set_ylim(max(values.min(), values.max() * 1e-6), values.max() * 2)
    dens_ax.axvline(0, color="0.5", lw=0.8)
    dens_ax.set_xlabel("eigenvalue λ of the Hessian")
    dens_ax.set_ylabel("density" + (", log scale" if dens_ax.get_yscale() == "log" else ""))
    dens_ax.grid(alpha=0.3)
    dens_ax.legend(fontsize=9)
    dens_ax.set_title("eigenvalue density (stochastic Lanczos quadrature)", fontsize=10)
    runs = [] if top_path is None else [top_path]
    scale = loss_scale(top_surface.loss, *[r.losses for r in runs])
    notes = draw_background(plane_ax, top_surface, scale=scale, loss_name=loss_name)
    notes += set_plane_axes(plane_ax, top_surface.alphas, top_surface.betas,
                            axis_labels or top_surface.plane.axis_labels())
    handles = [Line2D([], [], **END, mfc="white", label="θ* (final weights)")]
    plane_ax.plot(0, 0, **END, mfc="white", zorder=6)
    if top_path is not None:
        handles.insert(0, draw_path(plane_ax, top_path.coords, top_path.colour or run_colour(0),
                                    top_path.legend_label(), top_path.drawn))
        handles += marker_handles()
    legend_below(plane_ax, handles)
    plane_ax.set_title("landscape on the top-2 eigenvector plane at θ*", fontsize=10)
    fig.suptitle(title)
    return finish(fig, notes, path)
