"""Static PNG figures of loss landscapes: arrays and small dataclasses in, one PNG out per function."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: never opens a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors, ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from plot_style import (  # noqa: E402
    ARROW_COLOUR, BLACK_EDGE, CONTOUR_COLOURS, CURVE_CAP, END, LINESTYLES, PATH_COLOURS, RUN_COLOURS, START,
    arrow_scale, contour_levels, draw_arrows, draw_background, draw_path, finish, finite_prefix, gap_note,
    legend_below, loss_label, marker_handles, new_figure, nonfinite_note, residual_note, set_plain_log,
    set_plane_axes, spread_indices, view_azimuth)


@dataclass
class PlanePath:
    """One run as a comparison figure draws it: its plane coordinates and its loss curve."""
    coords: np.ndarray  # (T, 2) plane coordinates of each checkpoint
    losses: np.ndarray  # (T,) recorded training loss of each checkpoint
    label: str
    diverged: bool = False  # training stopped at a non-finite loss after the last row
    steps: np.ndarray | None = None  # (T,) epoch of each checkpoint; None = 0, 1, ..., T-1


# ---------------------------------------------------------------- one path on a plane

def plot_surface_3d(surface, path_coords, path_surface_loss, true_losses, grad_arrows, title, path,
                    residual=None, elev: float = 35, azim: float | None = None, n_arrows: int = 10):
    """3D loss surface with the path drawn ON it and downhill arrows along it.

    path_coords (T, 2) plane coordinates; path_surface_loss (T,) the surface's own value there
    (where the path is drawn); true_losses (T,) the recorded losses (dashed, and in the notes);
    grad_arrows (T, 2) or None: (g·u, g·v), drawn as -gradient tangent to the surface.
    The z axis is log10(loss) when the surface spans more than LOG_DECADES decades; azim=None
    looks from the surface's low side (view_azimuth).
    """
    fig = new_figure("surface_3d")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # draw order as given: path above surface
    heights = np.r_[np.ravel(surface.loss), np.ravel(path_surface_loss), np.ravel(true_losses)]
    (lo, hi), is_log = contour_levels(heights, n=2)  # the path may dip below the grid's lowest point

    def z_of(loss):  # loss -> drawn height; non-finite values are clipped to the top
        clipped = np.clip(np.nan_to_num(np.asarray(loss, float), nan=hi, posinf=hi, neginf=lo), lo, hi)
        return np.log10(clipped) if is_log else clipped

    aa, bb = np.meshgrid(surface.alphas, surface.betas)  # (B, A): loss[i, j] sits at (alphas[j], betas[i])
    z_grid = z_of(surface.loss)
    sheet = ax.plot_surface(aa, bb, z_grid, cmap="viridis", rstride=1, cstride=1, linewidth=0,
                            antialiased=False, alpha=0.8, zorder=1)
    T = finite_prefix(path_coords, path_surface_loss, true_losses)
    coords, on_surface = np.asarray(path_coords, float)[:T], np.asarray(path_surface_loss, float)[:T]
    recorded = np.asarray(true_losses, float)[:T]
    if T:
        z_path = z_of(on_surface) + 0.012 * (z_of(hi) - z_of(lo))  # lifted: visibly above its facets
        ax.plot(*coords.T, z_of(recorded), color="#56B4E9", ls="--", lw=1.5, zorder=2,
                label="recorded loss (the weights lie off the plane)")
        ax.plot(*coords.T, z_path, color="white", lw=2.4, zorder=3, path_effects=BLACK_EDGE,
                label="path on the surface")
        ax.plot(*coords[0], z_path[0], **START, zorder=5, label="start")
        ax.plot(*coords[-1], z_path[-1], **END, mfc="#F0E442", zorder=6, label="end")
        if grad_arrows is not None:
            _draw_arrows_3d(ax, surface, coords, np.asarray(grad_arrows, float)[:T], z_path, on_surface, is_log,
                            n_arrows)
    _style_3d(ax, fig.colorbar(sheet, ax=ax, shrink=0.55, pad=0.1), surface, is_log, lo, hi)
    ax.view_init(elev=elev, azim=view_azimuth(z_grid) if azim is None else azim)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    notes = nonfinite_note(surface.loss, "surface values", "clipped to the largest finite value")
    return finish(fig, notes + gap_note(on_surface, recorded) + residual_note(residual), path)


def _draw_arrows_3d(ax, surface, coords, grads, z_path, surface_loss, is_log, n):
    """-gradient arrows tangent to the surface: in-plane step -s·g, height change -s·|g|² (chain rule)."""
    idx = spread_indices(coords, n)
    g = grads[idx]  # (K, 2)
    s = arrow_scale(surface, g, fraction=0.12)
    if s == 0:
        return
    dz = -s * (g ** 2).sum(axis=1)
    if is_log:  # d log10(L) = dL / (L ln 10)
        dz = dz / (np.maximum(surface_loss[idx], 1e-300) * np.log(10))
    ax.quiver(coords[idx, 0], coords[idx, 1], z_path[idx], -s * g[:, 0], -s * g[:, 1], dz, color=ARROW_COLOUR,
              linewidth=2.2, arrow_length_ratio=0.45, zorder=4, label="−gradient (downhill)")


def _style_3d(ax, bar, surface, is_log, lo, hi):
    """Axis labels and ticks of the 3D view; log heights get round loss values as tick labels."""
    bar.set_label(loss_label(is_log))
    if is_log:
        values = [v for v in ticker.LogLocator(subs=(1, 2, 5), numticks=8).tick_values(lo, hi) if lo <= v <= hi]
        for axis in (ax.zaxis, bar.ax.yaxis):
            axis.set_ticks(np.log10(values), [f"{v:g}" for v in values])
    for axis in (ax.xaxis, ax.yaxis) + (() if is_log else (ax.zaxis,)):
        axis.set_major_locator(ticker.MaxNLocator(5))
    ax.set_xlabel(surface.plane.axis_labels()[0], labelpad=12)
    ax.set_ylabel(surface.plane.axis_labels()[1], labelpad=12)
    ax.set_zlabel("training loss" + (" (log scale)" if is_log else ""), labelpad=10)
    ax.set_box_aspect(None, zoom=0.88)  # room for the axis labels inside the figure


def plot_contour(surface, paths, grads, title, path, residual=None, n_arrows: int = 12):
    """Filled loss contours of a plane with one or more paths (start ○, end ★) and -gradient arrows.

    paths: list of (coords (T, 2), label). grads: None, (T, 2) for the first
    path, or a list with one (T, 2) array or None per path. residual: scalar or (T,) array.
    """
    fig = new_figure("contour")
    ax = fig.add_subplot()
    notes = draw_background(ax, surface)
    notes += set_plane_axes(ax, surface.alphas, surface.betas, surface.plane.axis_labels())
    grads = list(grads) if isinstance(grads, (list, tuple)) else [grads] + [None] * (len(paths) - 1)
    handles, arrows = [], False
    for k, ((coords, label), g) in enumerate(zip(paths, grads)):
        handles.append(draw_path(ax, coords, CONTOUR_COLOURS[k % len(CONTOUR_COLOURS)], label, BLACK_EDGE))
        arrows = (g is not None and draw_arrows(ax, surface, coords, g, n_arrows)) or arrows
    if arrows:
        handles.append(Line2D([], [], color=ARROW_COLOUR, marker=">", mec="black", ls="none", ms=9,
                              label="−gradient, −(g·u, g·v)"))
    legend_below(ax, handles + marker_handles())
    ax.set_title(title)
    return finish(fig, notes + residual_note(residual), path)


# ---------------------------------------------------------------- several runs on one plane

def plot_runs(surface, runs, title, path, residual=None, log_curves=None):
    """Several runs (list of PlanePath) on one shared plane over its loss contours, beside their
    recorded loss curves: the multi-seed, optimiser and learning-rate figures.

    Each end ★ marks that run's minimum; a diverged run ends at ✕ and says so in the legend.
    log_curves: True = log loss axis, None = log only when the losses span many decades.
    """
    fig = new_figure("comparison")
    plane_ax, curve_ax = fig.subplots(1, 2, width_ratios=[1.2, 1])
    notes = draw_background(plane_ax, surface)
    notes += set_plane_axes(plane_ax, surface.alphas, surface.betas, surface.plane.axis_labels())
    firsts = np.array([np.asarray(run.losses, float)[0] for run in runs])
    cap = CURVE_CAP * np.max(firsts[np.isfinite(firsts)], initial=1e-12)
    low, high = (surface.alphas.min(), surface.betas.min()), (surface.alphas.max(), surface.betas.max())
    handles, outside = [], []
    for k, run in enumerate(runs):
        colour, ls = PATH_COLOURS[k % len(PATH_COLOURS)], LINESTYLES[k // len(PATH_COLOURS) % len(LINESTYLES)]
        style = dict(color=colour, ls=ls)
        handle, coords = _draw_run(plane_ax, curve_ax, run, style, cap)
        handles.append(handle)
        if ((coords < low) | (coords > high)).any():
            outside.append(run.label)
    notes += ["partly outside the plotted grid: " + ", ".join(outside)] if outside else []
    diverged = [Line2D([], [], marker="X", color="0.5", mec="black", ms=10, ls="none",
                       label="last finite checkpoint (diverged)")] if any(h.diverged for h in handles) else []
    legend_below(plane_ax, marker_handles() + diverged)
    plane_ax.set_title("paths on the shared plane")
    notes += _style_curves(curve_ax, handles, log_curves, cap)
    fig.suptitle(title)
    fig.get_layout_engine().set(wspace=0.06)  # keeps the colour bar's label clear of the curve panel
    return finish(fig, notes + residual_note(residual), path)


def _draw_run(plane_ax, curve_ax, run, style, cap):
    """One run's path and loss curve up to its last finite checkpoint, ✕ there if it diverged."""
    T = finite_prefix(run.coords, run.losses)
    coords, losses = np.asarray(run.coords, float)[:T], np.asarray(run.losses, float)[:T]
    steps = np.arange(T) if run.steps is None else np.asarray(run.steps, float)[:T]
    diverged = run.diverged or T < len(run.losses)
    label = run.label
    if diverged:
        label += f" (diverged after epoch {steps[-1]:g})" if T else " (diverged at once)"
    draw_path(plane_ax, coords, style["color"], None, BLACK_EDGE, style["ls"])
    handle = curve_ax.plot(steps, losses, lw=1.8, label=label, **style)[0]
    handle.diverged = diverged
    if diverged and T:
        plane_ax.plot(*coords[-1], "X", color=style["color"], mec="black", ms=11, zorder=7)
        _mark_divergence(curve_ax, steps[-1], losses[-1], cap, style["color"])
    return handle, coords


def _mark_divergence(ax, step, loss, cap, colour):
    """✕ at a diverged run's last finite loss; on the top edge, with its value, when that is off scale."""
    if loss <= cap:
        ax.plot(step, loss, "X", color=colour, mec="black", ms=11)
        return
    ax.plot(step, 1.0, "X", color=colour, mec="black", ms=11, transform=ax.get_xaxis_transform(), clip_on=False)
    ax.annotate(f"{loss:.2g}", (step, 1.0), xycoords=ax.get_xaxis_transform(), xytext=(8, -4),
                textcoords="offset points", va="top", fontsize=8, color="0.2")


def _style_curves(ax, handles, log_curves, cap) -> list:
    """Loss-curve axes: log scale when asked or when the losses span many decades; a run that
    blows up is cut at cap so the other curves keep their detail."""
    values = np.concatenate([np.minimum(h.get_ydata(), cap) for h in handles])
    if log_curves or (log_curves is None and contour_levels(values)[1]):
        set_plain_log(ax)
    notes = []
    if values.size and max(np.max(h.get_ydata(), initial=0) for h in handles) > cap:
        is_log = ax.get_yscale() == "log"
        ax.set_ylim(values.min() * 0.8 if is_log else None, cap * (1.3 if is_log else 1.05))
        notes.append(f"loss axis cut at {cap:.3g} ({CURVE_CAP}x the initial loss): "
                     "larger losses run off the top")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_label(ax.get_yscale() == "log"))
    ax.set_title("recorded loss curves", pad=12)  # room for a ✕ on the top edge
    ax.grid(alpha=0.3)
    legend_below(ax, handles)
    return notes


# ---------------------------------------------------------------- curvature, embeddings, lines

def plot_curvature(steps, lam_max, lam_min, lr, title, path, losses=None, loss_steps=None):
    """Hessian extremes along a path: λmax with the 2/lr line (Cohen et al. 2021) and the loss on a
    twin axis above, λmin below. steps (K,) are the eigenvalues' epochs; losses share them unless
    loss_steps is given."""
    fig = new_figure("curvature")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.5, 1])
    lam_max = np.asarray(lam_max, dtype=float)
    notes = nonfinite_note(lam_max, "λmax values", "gaps")
    notes += nonfinite_note(lam_min, "λmin values", "gaps")
    handles = top.plot(steps, lam_max, color="#0072B2", marker="o", ms=3, lw=1.8, label="λmax (sharpness)")
    highest = np.max(lam_max[np.isfinite(lam_max)], initial=-np.inf)
    edge = 2.0 / lr
    if edge <= 1.5 * highest:
        handles.append(top.axhline(edge, color="#D55E00", ls="--", lw=1.5,
                                   label=f"2/lr = {edge:.3g} (edge of stability)"))
    else:  # far above the data: say so above the panel rather than squash the curve to the bottom
        top.set_title(f"↑ 2/lr = {edge:.3g} (edge of stability) is off scale, far above λmax", loc="left",
                      color="#D55E00", fontsize=9)
    top.set_ylabel("λmax of the Hessian")
    if losses is not None:
        twin = top.twinx()
        handles += twin.plot(steps if loss_steps is None else loss_steps, losses, color="0.45", lw=1.5, ls="-.",
                             label="training loss")
        twin.set_ylabel("training loss (BCE)", color="0.35")
    top.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize=9,
               frameon=False)
    bottom.plot(steps, lam_min, color="#009E73", marker="o", ms=3, lw=1.8)
    bottom.axhline(0, color="0.5", lw=0.8)
    bottom.set_ylabel("λmin of the Hessian\n(< 0: not locally convex)")
    bottom.set_xlabel("epoch")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.suptitle(title)
    return finish(fig, notes, path)


def plot_edge_of_stability(runs, title, path):
    """λmax against epoch for runs at several learning rates, each beside its own 2/lr line.

    runs: list of (steps (K,), lam_max (K,), lr, label). Under full-batch gradient descent
    λmax rises towards 2/lr and hovers there (Cohen et al. 2021); a 2/lr line far above every
    curve is named in a note instead of squashing the curves.
    """
    fig = new_figure("curvature")
    ax = fig.add_subplot()
    top = max((np.nanmax(np.where(np.isfinite(lam), lam, np.nan)) for _, lam, _, _ in runs
               if np.isfinite(lam).any()), default=1.0)
    ceiling, off_scale = 1.35 * top, []
    for k, (steps, lam_max, lr, label) in enumerate(runs):
        colour = RUN_COLOURS[k % len(RUN_COLOURS)]
        ax.plot(steps, lam_max, color=colour, lw=1.8, label=f"{label}: λmax")
        if 2.0 / lr <= ceiling:
            ax.axhline(2.0 / lr, color=colour, ls="--", lw=1.2, label=f"{label}: 2/lr = {2.0 / lr:.3g}")
        else:
            off_scale.append(f"{label}: 2/lr = {2.0 / lr:.3g}")
    ax.set_ylim(0, ceiling)
    ax.set_xlabel("epoch")
    ax.set_ylabel("λmax of the Hessian (sharpness)")
    ax.grid(alpha=0.3)
    legend_below(ax, ax.get_legend_handles_labels()[0], ncol=2)
    ax.set_title(title)
    notes = [f"above the plotted range: {', '.join(off_scale)}"] if off_scale else []
    return finish(fig, notes + ["dashed: 2/lr, the sharpness at which gradient descent stops being stable "
                                 "on a quadratic (Cohen et al. 2021)"], path)


def plot_pca_vs_isomap(pca, isomap, losses, points_per_run, trust_pca, trust_isomap, title, path):
    """The same checkpoints (all runs, stacked) embedded by PCA and by Isomap, coloured by loss.

    pca, isomap (N, 2); losses (N,); points_per_run: how many consecutive rows belong to each run.
    """
    fig = new_figure("embeddings")
    axes = fig.subplots(1, 2)
    losses = np.asarray(losses, dtype=float)
    (lo, hi), is_log = contour_levels(losses, n=2)
    norm = (colors.LogNorm if is_log else colors.Normalize)(lo, hi)  # shared by both panels
    bounds = np.cumsum([0] + list(points_per_run))
    for ax, emb, name, trust in zip(axes, (pca, isomap), ("PCA", "Isomap"), (trust_pca, trust_isomap)):
        emb = np.asarray(emb, dtype=float)
        for first, end in zip(bounds[:-1], bounds[1:]):  # one thin line per run, in training order
            ax.plot(emb[first:end, 0], emb[first:end, 1], color="0.55", lw=0.7, zorder=1)
            ax.plot(*emb[first], **dict(START, ms=6), zorder=3)
        placed = np.isfinite(emb).all(axis=1)
        ok = placed & np.isfinite(losses)
        dots = ax.scatter(emb[ok, 0], emb[ok, 1], c=losses[ok], cmap="viridis", norm=norm, s=14, zorder=2)
        ax.scatter(emb[placed & ~ok, 0], emb[placed & ~ok, 1], marker="x", color="0.5", s=20, zorder=2)
        ax.set_title(f"{name}: trustworthiness {trust:.3f}")
        ax.set_xlabel(f"{name} component 1")
        ax.set_ylabel(f"{name} component 2")
    fig.colorbar(dots, ax=list(axes), pad=0.02).set_label(loss_label(is_log))
    fig.legend(handles=[Line2D([], [], **dict(START, ms=6), label="initialisation of each run"),
                        Line2D([], [], color="0.55", lw=0.7, label="checkpoints of one run, in order")],
               loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(title)
    return finish(fig, nonfinite_note(losses, "losses", "drawn as grey crosses"), path)


def plot_interpolation(ts, lines, title, path):
    """Loss (and accuracy, twin axis) along θ(t) = θ_init + t (θ_final - θ_init), one panel per model.

    lines: {label: (losses (P,), accuracies (P,))} over the same ts (P,).
    """
    fig = new_figure("interpolation")
    axes = np.atleast_1d(fig.subplots(1, len(lines)))
    ts, notes = np.asarray(ts, dtype=float), []
    for ax, (label, (loss, acc)) in zip(axes, lines.items()):
        loss = np.asarray(loss, dtype=float)
        notes += nonfinite_note(loss, f"{label} losses", "gaps in the line")
        loss_line, = ax.plot(ts, np.where(np.isfinite(loss), loss, np.nan), color="#0072B2", lw=2,
                             label="training loss")
        if contour_levels(loss)[1]:
            set_plain_log(ax)
        twin = ax.twinx()
        acc_line, = twin.plot(ts, acc, color="#D55E00", lw=1.6, ls="--", label="training accuracy")
        twin.set_ylim(0, 1.02)
        twin.set_ylabel("training accuracy", color="#D55E00")
        for t, name, marker in ((0, "init (t=0)", START), (1, "final (t=1)", dict(END, mfc="#F0E442"))):
            ax.axvline(t, color="0.35", ls=":", lw=1.2)
            ax.plot(t, np.interp(t, ts, loss), **marker, zorder=5)
            ax.text(t, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9)
        ax.set_title(label, pad=18)
        ax.set_xlabel("t  along  θ_init + t (θ_final − θ_init)")
        ax.set_ylabel("training loss (BCE)", color="#0072B2")
        ax.grid(alpha=0.3)
    fig.legend(handles=[loss_line, acc_line], loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(title)
    return finish(fig, notes, path)


def plot_eigen_ratio(alphas, betas, ratio, path_coords, axis_labels, title, path, surface=None):
    """|λmin / λmax| over a plane grid (ratio[i, j] at (alphas[j], betas[i])) with the path on top.

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
    handles = [draw_path(ax, path_coords, "white", "training path", BLACK_EDGE)]
    if surface is not None:
        levels, is_log = contour_levels(surface.loss, n=10)
        ax.contour(surface.alphas, surface.betas, np.ma.masked_invalid(surface.loss), levels=levels,
                   colors="0.75", linewidths=0.7, norm=colors.LogNorm(levels[0], levels[-1]) if is_log else None)
        handles.append(Line2D([], [], color="0.75", lw=0.8, label="loss contours"))
    notes = nonfinite_note(ratio, "ratios", "light grey") + set_plane_axes(ax, alphas, betas, axis_labels)
    ax.set_xlim(*_cell_edges(alphas))  # whole cells: each value is drawn centred on its grid point
    ax.set_ylim(*_cell_edges(betas))
    legend_below(ax, handles + marker_handles())
    ax.set_title(title)
    return finish(fig, notes, path)


def _cell_edges(centres) -> tuple:
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    return centres[0] - half, centres[-1] + half
