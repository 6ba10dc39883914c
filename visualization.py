"""Static PNG figures of loss landscapes: arrays and small dataclasses in, one PNG out per function."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: never opens a window, works without a display

import numpy as np  # noqa: E402
from matplotlib import colors, ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from plot_style import (  # noqa: E402
    ARROW_COLOUR, ARROW_HANDLE, CURVE_CAP, END, START, THIN_WHITE_EDGE, add_colorbar, contour_levels, draw_arrows,
    draw_background, draw_path, figure_legend, finish, finite_prefix, gap_note, legend_below, line_pieces,
    loss_label, loss_scale, marker_handles, new_figure, nonfinite_note, on_mask, path_style, residual_note,
    run_colour, set_plain_log, set_plane_axes, shadow_label, switch_points, spread_indices, view_azimuth)


@dataclass
class PlanePath:
    """One run as a figure draws it on a plane: its plane coordinates, its loss curve, and where the
    surface is its loss: drawn="surface" (solid), "shadow" (dashed, never on a 3D surface; the legend
    gives residual_mean) or a (T,) bool mask per checkpoint (solid where True, dashed elsewhere; the
    legend says which epochs are dashed)."""
    coords: np.ndarray  # (T, 2) plane coordinates of each checkpoint
    losses: np.ndarray  # (T,) recorded training loss of each checkpoint
    label: str  # from the caller, e.g. "Adam lr=0.05"
    diverged: bool = False  # training stopped at a non-finite loss after the last row
    steps: np.ndarray | None = None  # (T,) epoch of each checkpoint; None = 0, 1, ..., T-1
    drawn: str | np.ndarray = "surface"  # "surface" | "shadow" | (T,) bool, decided by the caller
    colour: str | None = None  # the run's colour in every figure; None = run_colour(its index)
    residual_mean: float | None = None  # mean relative off-plane residual of its checkpoints
    gap_max: float | None = None  # largest |surface - recorded loss| along it

    def legend_label(self, sep: str = " ") -> str:
        return shadow_label(self.label, self.drawn, self.residual_mean, sep, self.steps)


def recorded_cap(runs) -> float:
    """Loss above which a recorded value counts as a blow-up: CURVE_CAP x the largest initial loss."""
    firsts = np.array([np.asarray(run.losses, float)[0] for run in runs if len(run.losses)])
    return CURVE_CAP * np.max(firsts[np.isfinite(firsts)], initial=1e-12)


# ---------------------------------------------------------------- one path on a plane

def plot_surface_3d(surface, path_coords, path_surface_loss, true_losses, arrows, title, path, residual=None,
                    drawn="surface", colour: str | None = None, loss_name: str = "training loss",
                    elev: float = 35, azim: float | None = None, n_arrows: int = 6, steps=None):
    """3D loss surface with the path ON it where the surface is its loss, and as a dashed shadow on
    the floor elsewhere (its weights leave the plane there, so the surface is not its loss).

    path_coords (T, 2) plane coordinates; path_surface_loss (T,) the surface's own value there;
    true_losses (T,) the recorded losses (legend and notes); drawn: "surface", "shadow" or a (T,)
    bool mask (True: on the surface); steps (T,) epochs for the legend, else checkpoint indices.
    The start ○ and end ★ obey the same rule: off the surface they stand at their own recorded loss,
    a dotted line down to the floor. arrows (T, 2) or None: descent directions in plane coordinates
    (gradients.descent_arrows), drawn tangent to the surface with one fixed 3D length, only at
    checkpoints on the surface.
    The z axis is log10(loss) when the values span more than LOG_DECADES decades; azim=None looks
    from the surface's low side (view_azimuth).
    """
    mask = on_mask(drawn, len(np.asarray(path_coords)))
    colour = colour or run_colour(0)
    fig = new_figure("surface_3d")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # draw order as given: path above arrows
    recorded_all = np.asarray(true_losses, float)
    cap = CURVE_CAP * np.nan_to_num(recorded_all[:1], nan=1.0).max(initial=1e-12)
    levels, is_log = loss_scale(surface.loss, path_surface_loss, recorded_all, cap=cap)  # the path may dip lower
    lo, hi = levels[0], levels[-1]

    def z_of(loss):  # loss -> drawn height; non-finite values are clipped to the top
        clipped = np.clip(np.nan_to_num(np.asarray(loss, float), nan=hi, posinf=hi, neginf=lo), lo, hi)
        return np.log10(clipped) if is_log else clipped

    aa, bb = np.meshgrid(surface.alphas, surface.betas)  # (B, A): loss[i, j] sits at (alphas[j], betas[i])
    z_grid = z_of(surface.loss)
    floor = z_of(lo) - (0.35 * (z_of(hi) - z_of(lo)) if not mask.all() else 0.0)
    if not mask.all():  # a contour map on a floor below the surface: where the shadow is drawn
        ax.contourf(aa, bb, z_grid, levels=12, zdir="z", offset=floor, cmap="viridis", alpha=0.75, zorder=0)
    sheet = ax.plot_surface(aa, bb, z_grid, cmap="viridis", rstride=1, cstride=1, linewidth=0,
                            antialiased=False, alpha=0.8, zorder=1, vmin=z_of(lo), vmax=z_of(hi))
    T = finite_prefix(path_coords, path_surface_loss, true_losses)
    coords, on_surface = np.asarray(path_coords, float)[:T], np.asarray(path_surface_loss, float)[:T]
    recorded, mask = recorded_all[:T], mask[:T]
    if T:
        z_lifted = z_of(on_surface) + 0.012 * (z_of(hi) - z_of(lo))  # visibly above its facets
        labels = _path_labels_3d(on_surface, recorded, mask, drawn, residual, steps)
        _draw_path_3d(ax, coords, z_lifted, floor, mask, colour, labels)
        _draw_ends_3d(ax, coords, np.where(mask, z_lifted, z_of(recorded)), floor, mask, recorded, colour)
        if arrows is not None and _draw_arrows_3d(ax, surface, z_grid, coords, np.asarray(arrows, float)[:T],
                                                  z_lifted, n_arrows, mask):
            ax.plot([], [], **ARROW_HANDLE)
    ax.set_zlim(floor, z_of(hi))
    _style_3d(ax, fig.colorbar(sheet, ax=ax, shrink=0.55, pad=0.1), surface, is_log, lo, hi, loss_name)
    ax.view_init(elev=elev, azim=view_azimuth(z_grid) if azim is None else azim)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    notes = nonfinite_note(surface.loss, "surface values", "clipped to the largest finite value")
    return finish(fig, notes + gap_note(on_surface, recorded) + residual_note(residual), path)


def _path_labels_3d(on_surface, recorded, mask, drawn, residual, steps) -> dict:
    """{True: label of the solid part, False: label of the dashed part on the floor}."""
    gap = np.abs(on_surface - recorded)[mask]
    shadow = drawn if isinstance(drawn, str) else mask
    steps = None if steps is None else np.asarray(steps)[:len(mask)]
    joins = "; dotted up to where it joins it" if mask.any() else ""
    return {True: f"path on the surface (recorded loss within {np.max(gap, initial=0):.2g})",
            False: f"{shadow_label('path', shadow, _mean(residual), steps=steps)}:\ndrawn on the floor, "
                   f"not on this surface{joins}"}


def _draw_path_3d(ax, coords, z_lifted, floor, mask, colour, labels):
    """Solid on the surface where mask, dashed on the floor elsewhere; where the path switches, a thin
    dotted line stands from the floor up to the surface point, so the eye can follow it. Each kind of
    piece is labelled once."""
    for lo, hi, on in line_pieces(mask):
        z = z_lifted[lo:hi] if on else np.full(hi - lo, floor)
        ax.plot(*coords[lo:hi].T, z, **path_style(colour, "surface" if on else "shadow"), zorder=3,
                label=labels.pop(on, "_nolegend_"))
    for i in switch_points(mask):
        ax.plot(*[[c, c] for c in coords[i]], [floor, z_lifted[i]], color=colour, lw=1.4, ls=(0, (1, 1.5)),
                path_effects=THIN_WHITE_EDGE, zorder=3)


def _draw_ends_3d(ax, coords, z_ends, floor, mask, recorded, colour):
    """Start ○ and end ★ by the path's rule: on the surface where the path is on it; elsewhere the surface
    is not their loss, so they stand at their own recorded loss (z_ends), a dotted line down to the floor
    where their shadow lies. Never a floor point painted over the surface: it would read as a point on it."""
    for i, name, marker, zorder in ((0, "start", START, 5), (len(mask) - 1, "end", dict(END, mfc=colour), 6)):
        label = f"{name}: recorded loss {recorded[i]:.4g}"
        if not mask[i]:
            ax.plot(*[[c, c] for c in coords[i]], [floor, z_ends[i]], color=colour, lw=1.4, ls=(0, (1, 1.5)),
                    path_effects=THIN_WHITE_EDGE, zorder=3)
            label += ",\noff this surface: drawn at that loss, dotted down to the floor"
        ax.plot(*coords[i], z_ends[i], **marker, zorder=zorder, label=label)


def _mean(values):
    values = np.asarray([] if values is None else values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


BOX_ASPECT = np.array([4.0, 4.0, 3.0])  # matplotlib's default 3D box, in box units
ARROW_BOX_LENGTH = 0.3  # every 3D arrow is this long in box units (the box is 4 x 4 x 3)


def _draw_arrows_3d(ax, surface, z_grid, coords, arrows, z_start, n, mask) -> bool:
    """Descent arrows tangent to the drawn surface, each ARROW_BOX_LENGTH long in the box: the direction
    in the plane is the arrow's, the height change the surface's own slope along it (finite difference
    of the drawn heights), so a steep wall gives a short steep arrow, never a spike. Drawn above the path
    (they run along it) as flat 2D arrows on the screen: a filled white head with a black edge reads at
    any view angle. Only at checkpoints on the surface (mask): a surface slope under a shadow point would
    be no slope of its loss."""
    from scipy.interpolate import RegularGridInterpolator
    on = np.flatnonzero(mask)
    spread = on[spread_indices(coords[on], n)] if on.size else on  # spread along the part on the surface
    idx = [i for i in spread if np.linalg.norm(arrows[i]) > 0]
    if not idx:
        return False
    p = coords[idx]  # (K, 2)
    spans = np.array([np.ptp(surface.alphas), np.ptp(surface.betas)])
    step = 0.02 * arrows[idx] / np.linalg.norm(arrows[idx] / spans, axis=1, keepdims=True)  # 2 % of the box
    height = RegularGridInterpolator((surface.betas, surface.alphas), z_grid, bounds_error=False, fill_value=None)
    dz = height((p + step)[:, ::-1]) - height(p[:, ::-1])
    data_per_box = np.r_[spans, np.ptp(z_grid) if np.ptp(z_grid) > 0 else 1.0] / BOX_ASPECT
    box = np.c_[step, dz] / data_per_box  # (K, 3) in box units
    box *= ARROW_BOX_LENGTH / np.linalg.norm(box, axis=1, keepdims=True)
    tails = np.c_[p, z_start[idx]]
    for tail, tip in zip(tails, tails + box * data_per_box):
        ax.add_artist(Arrow3D(tail, tip, arrowstyle="simple,head_length=0.8,head_width=0.75,tail_width=0.14",
                              mutation_scale=12, shrinkA=0, shrinkB=0, facecolor=ARROW_COLOUR,
                              edgecolor="black", linewidth=0.9, zorder=4))
    return True


class Arrow3D(FancyArrowPatch):
    """A screen arrow between two 3D points (ends_3d (2, 3): tail, tip), projected at each draw."""

    def __init__(self, tail, tip, **kwargs):
        super().__init__((0, 0), (0, 0), **kwargs)
        self.ends_3d = np.array([tail, tip], dtype=float)

    def do_3d_projection(self, renderer=None):
        from mpl_toolkits.mplot3d import proj3d
        xs, ys, zs = proj3d.proj_transform(*self.ends_3d.T, self.axes.M)
        self.set_positions((xs[0], ys[0]), (xs[1], ys[1]))
        return np.min(zs)


def _style_3d(ax, bar, surface, is_log, lo, hi, loss_name):
    """Axis labels and ticks of the 3D view; log heights get round loss values as tick labels."""
    bar.set_label(loss_label(is_log, loss_name))
    if is_log:
        values = [v for v in ticker.LogLocator(subs=(1, 2, 5), numticks=8).tick_values(lo, hi) if lo <= v <= hi]
        for axis in (ax.zaxis, bar.ax.yaxis):
            axis.set_ticks(np.log10(values), [f"{v:g}" for v in values])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.MaxNLocator(5))
    if not is_log:  # no tick below the surface: the floor under it is no loss value (it may sit below 0)
        ax.zaxis.set_ticks([v for v in ticker.MaxNLocator(5).tick_values(lo, hi) if lo <= v <= hi])
    ax.set_xlabel(surface.plane.axis_labels()[0], labelpad=12)
    ax.set_ylabel(surface.plane.axis_labels()[1], labelpad=12)
    ax.set_zlabel(loss_name + (" (log scale)" if is_log else ""), labelpad=10)
    ax.set_box_aspect(None, zoom=0.88)  # room for the axis labels inside the figure


def plot_contour(surface, paths, arrows, title, path, residual=None, drawn="surface", colours=None,
                 loss_name: str = "training loss", n_arrows: int = 8):
    """Filled loss contours of a plane with one or more paths (start ○, end ★) and descent arrows.

    paths: list of PlanePath, or of (coords (T, 2), label) which take drawn ("surface" | "shadow" |
    a (T,) bool mask, one for all or one per path), colours (one per path or None) and residual (scalar or (T,) array,
    the legend's "% off plane"). arrows: None, (T, 2) for the first path, or a list with one (T, 2)
    array or None per path: descent directions in plane coordinates, drawn as they are.
    A shadow path (or the part of one off the surface) is dashed and its legend entry says so; the
    colour scale covers the surface and every PlanePath's recorded loss.
    """
    runs = _as_plane_paths(paths, drawn, colours, residual)
    fig = new_figure("contour")
    ax = fig.add_subplot()
    scale = loss_scale(surface.loss, *[run.losses for run in runs], cap=recorded_cap(runs))
    notes = draw_background(ax, surface, scale=scale, loss_name=loss_name)
    notes += set_plane_axes(ax, surface.alphas, surface.betas, surface.plane.axis_labels())
    arrows = list(arrows) if isinstance(arrows, (list, tuple)) else [arrows] + [None] * (len(runs) - 1)
    handles, any_arrows = [], False
    for k, (run, a) in enumerate(zip(runs, arrows)):
        handles.append(draw_path(ax, run.coords, run.colour or run_colour(k), run.legend_label(), run.drawn))
        any_arrows = (a is not None and draw_arrows(ax, surface, run.coords, a, n_arrows)) or any_arrows
    if any_arrows:
        handles.append(Line2D([], [], **ARROW_HANDLE))
    legend_below(ax, handles + marker_handles())
    ax.set_title(title)
    return finish(fig, notes + residual_note(residual), path)


def _as_plane_paths(paths, drawn, colours, residual) -> list:
    """PlanePaths from (coords, label) tuples. drawn is one for all (a string or a flat bool mask) or a
    list with one per path (strings or masks)."""
    n = len(paths)
    one_for_all = isinstance(drawn, str) or all(isinstance(d, (bool, np.bool_)) for d in drawn)
    drawn = [drawn] * n if one_for_all else list(drawn)
    colours = [None] * n if colours is None else list(colours)
    return [p if isinstance(p, PlanePath) else
            PlanePath(np.asarray(p[0], float), np.zeros(0), p[1], drawn=d, colour=c, residual_mean=_mean(residual))
            for p, d, c in zip(paths, drawn, colours)]


# ---------------------------------------------------------------- several runs on one plane

def plot_runs(surface, runs, title, path, residual=None, log_curves=None, loss_name: str = "training loss"):
    """Several runs (list of PlanePath) on one shared plane over its loss contours, beside their
    recorded loss curves: the optimiser and learning-rate figures.

    Each run keeps its colour (run.colour, else run_colour(k)) on the plane and on the curves.
    Surface runs are solid; shadow runs dashed, "(shadow: N % off plane)" in the legend; a partial
    run (drawn a bool mask) is dashed where off the surface and its legend says which epochs. The colour
    scale covers the surface and every run's recorded loss (not a blow-up's). Each end ★ marks that
    run's final weights; a diverged run ends at ✕ and says so. log_curves: True = log loss axis,
    None = log only when the losses span many decades.
    """
    fig = new_figure("comparison")
    plane_ax, curve_ax = fig.subplots(1, 2, width_ratios=[1.2, 1])
    cap = recorded_cap(runs)
    scale = loss_scale(surface.loss, *[run.losses for run in runs], cap=cap)
    notes = draw_background(plane_ax, surface, scale=scale, colorbar=False)
    bar = add_colorbar(fig, plane_ax.filled, plane_ax, scale[1], loss_name)
    notes += set_plane_axes(plane_ax, surface.alphas, surface.betas, surface.plane.axis_labels())
    low, high = (surface.alphas.min(), surface.betas.min()), (surface.alphas.max(), surface.betas.max())
    handles, curves, outside = [], [], []
    for k, run in enumerate(runs):
        colour = run.colour or run_colour(k)
        handle, curve, coords = _draw_run(plane_ax, curve_ax, run, colour, cap)
        handles.append(handle)
        curves.append(curve)
        _mark_on_colorbar(bar, curve.get_ydata(), colour)
        if ((coords < low) | (coords > high)).any():
            outside.append(run.label)
    notes += ["partly outside the plotted grid: " + ", ".join(outside)] if outside else []
    final = [Line2D([], [], marker=">", color="0.5", mec="black", ms=8, ls="none",
                    label="final recorded loss, on the colour bar")]
    diverged = [Line2D([], [], marker="X", color="0.5", mec="black", ms=10, ls="none",
                       label="last checkpoint before divergence")] if any(c.diverged for c in curves) else []
    figure_legend(fig, handles + marker_handles() + final + diverged, ncol=3)
    plane_ax.set_title("paths on the shared plane", fontsize=10)  # narrower than the panel: room for a ▸'s value
    notes += _style_curves(curve_ax, curves, log_curves, cap, loss_name)
    fig.suptitle(title)
    fig.get_layout_engine().set(wspace=0.06)  # keeps the colour bar's label clear of the curve panel
    return finish(fig, notes + residual_note(residual), path)


def _mark_on_colorbar(bar, losses, colour):
    """A ▸ in the run's colour at its final recorded loss on the colour bar; a loss off the bar's scale
    (a blow-up above it) sits at the bar's end, never outside the bar, its value just past that end
    (above or below the bar: beside it, the value would run into the plane panel)."""
    finite = np.asarray(losses, float)[np.isfinite(losses)]
    if not finite.size:
        return
    loss, (low, high) = finite[-1], sorted(bar.ax.get_ylim())
    style = dict(marker=">", ms=8, color=colour, mec="black", mew=0.6, clip_on=False, zorder=5)
    if low <= loss <= high:
        bar.ax.plot(-0.05, loss, transform=bar.ax.get_yaxis_transform(), **style)
        return
    end = float(loss > high)  # the bar's top (1) or bottom (0), in axes fraction
    bar.ax.plot(-0.05, end, transform=bar.ax.transAxes, **style)
    bar.ax.annotate(f"{loss:.2g} {'↑' if end else '↓'}", (0.5, end), xycoords="axes fraction",
                    xytext=(0, 4 if end else -4), textcoords="offset points", ha="center",
                    va="bottom" if end else "top", fontsize=8, color="0.2")


def _draw_run(plane_ax, curve_ax, run, colour, cap):
    """One run's path (solid or a dashed shadow) and its recorded loss curve up to its last finite
    checkpoint, ✕ there if it diverged. Returns (legend handle, curve line, finite coords)."""
    T = finite_prefix(run.coords, run.losses)
    coords, losses = np.asarray(run.coords, float)[:T], np.asarray(run.losses, float)[:T]
    steps = np.arange(T) if run.steps is None else np.asarray(run.steps, float)[:T]
    diverged = run.diverged or T < len(run.losses)
    label = run.legend_label()
    if diverged:
        label += f" (diverged after epoch {steps[-1]:g})" if T else " (diverged at once)"
    handle = draw_path(plane_ax, coords, colour, label, on_mask(run.drawn, len(run.coords))[:T])
    curve = curve_ax.plot(steps, losses, lw=1.8, color=colour, label=label)[0]
    curve.diverged = diverged
    if diverged and T:
        plane_ax.plot(*coords[-1], "X", color=colour, mec="black", ms=11, zorder=7)
        _mark_divergence(curve_ax, steps[-1], losses[-1], cap, colour)
    return handle, curve, coords


def _mark_divergence(ax, step, loss, cap, colour):
    """✕ at a diverged run's last finite loss; on the top edge, with its value, when that is off scale."""
    if loss <= cap:
        ax.plot(step, loss, "X", color=colour, mec="black", ms=11)
        return
    ax.plot(step, 1.0, "X", color=colour, mec="black", ms=11, transform=ax.get_xaxis_transform(), clip_on=False)
    ax.annotate(f"{loss:.2g}", (step, 1.0), xycoords=ax.get_xaxis_transform(), xytext=(8, -4),
                textcoords="offset points", va="top", fontsize=8, color="0.2")


def _style_curves(ax, curves, log_curves, cap, loss_name) -> list:
    """Loss-curve axes: log scale when asked or when the losses span many decades; a run that
    blows up is cut at cap so the other curves keep their detail."""
    values = np.concatenate([np.minimum(c.get_ydata(), cap) for c in curves])
    if log_curves or (log_curves is None and contour_levels(values)[1]):
        set_plain_log(ax)
    notes = []
    if values.size and max(np.max(c.get_ydata(), initial=0) for c in curves) > cap:
        is_log = ax.get_yscale() == "log"
        ax.set_ylim(values.min() * 0.8 if is_log else None, cap * (1.3 if is_log else 1.05))
        notes.append(f"loss axis cut at {cap:.3g} ({CURVE_CAP}x the initial loss): "
                     "larger losses run off the top")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_label(ax.get_yscale() == "log", loss_name))
    ax.set_title("recorded loss curves (colours as on the plane)", pad=12, fontsize=10)  # room for a ✕ on top
    ax.grid(alpha=0.3)
    return notes


# ---------------------------------------------------------------- curvature, embeddings, lines

def plot_pca_vs_isomap(pca, isomap, losses, points_per_run, trust_pca, trust_isomap, title, path,
                       loss_name: str = "training loss"):
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
    fig.colorbar(dots, ax=list(axes), pad=0.02).set_label(loss_label(is_log, loss_name))
    figure_legend(fig, [Line2D([], [], **dict(START, ms=6), label="initialisation of each run"),
                        Line2D([], [], color="0.55", lw=0.7, label="checkpoints of one run, in order")], ncol=2)
    fig.suptitle(title)
    return finish(fig, nonfinite_note(losses, "losses", "drawn as grey crosses"), path)


def plot_interpolation(ts, lines, title, path, loss_name: str = "training loss", metric_name: str = "accuracy"):
    """Loss (and accuracy or R², twin axis) along θ(t) = θ_init + t (θ_final - θ_init), one panel per model.

    lines: {label: (losses (P,), metrics (P,))} over the same ts (P,). metric_name: "accuracy" (axis 0-1)
    or "R²" (regression: the axis reaches below 0 to show every value, up to 1).
    """
    fig = new_figure("interpolation")
    axes = np.atleast_1d(fig.subplots(1, len(lines)))
    ts, notes = np.asarray(ts, dtype=float), []
    for ax, (label, (loss, acc)) in zip(axes, lines.items()):
        loss = np.asarray(loss, dtype=float)
        notes += nonfinite_note(loss, f"{label} losses", "gaps in the line")
        loss_line, = ax.plot(ts, np.where(np.isfinite(loss), loss, np.nan), color="#0072B2", lw=2,
                             label=loss_name)
        if contour_levels(loss)[1]:
            set_plain_log(ax)
        twin = ax.twinx()
        acc_line, = twin.plot(ts, acc, color="#D55E00", lw=1.6, ls="--", label=f"training {metric_name}")
        twin.set_ylim(_metric_floor(acc, metric_name), 1.02)
        twin.set_ylabel(f"training {metric_name}", color="#D55E00")
        for t, name, marker in ((0, "init (t=0)", START), (1, "final (t=1)", dict(END, mfc=run_colour(0)))):
            ax.axvline(t, color="0.35", ls=":", lw=1.2)
            ax.plot(t, np.interp(t, ts, loss), **marker, zorder=5)
            ax.text(t, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9)
        ax.set_title(label, pad=18)
        ax.set_xlabel("t  along  θ_init + t (θ_final − θ_init)")
        ax.set_ylabel(loss_name, color="#0072B2")
        ax.grid(alpha=0.3)
    figure_legend(fig, [loss_line, acc_line], ncol=2)
    fig.suptitle(title)
    return finish(fig, notes, path)


def _metric_floor(values, metric_name: str) -> float:
    """Lower limit of the metric axis: 0 for accuracy; for R² (negative when worse than the mean) low
    enough to show every finite value."""
    values = np.asarray(values, dtype=float)
    lowest = np.min(values[np.isfinite(values)], initial=0.0)
    return 0.0 if metric_name != "R²" or lowest >= 0 else lowest - 0.05 * (1.0 - lowest)
