"""Shared look of the static figures: sizes, colours, contour levels, notes and drawing pieces."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: never opens a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors, patheffects, ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from outputs import atomic_path  # noqa: E402

DPI = 150
FIGSIZES = {"surface_3d": (8.5, 7.5), "contour": (8, 7), "comparison": (14, 6.5), "curvature": (9, 7),
            "embeddings": (13, 6), "interpolation": (12, 5.5), "eigen_ratio": (8, 7)}  # inches
# Okabe-Ito colours (colour-blind safe); yellow left out of the run colours: it vanishes on light grey
RUN_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
CONTOUR_COLOURS = ["white", "#E69F00", "#56B4E9", "#CC79A7", "#009E73", "#D55E00"]  # light ones read on viridis
# Runs drawn on a surface (PNG, GIF and HTML alike): the same run gets the same colour everywhere, and
# each reads on viridis and on white loss-curve panels.
PATH_COLOURS = ["#E69F00", "#56B4E9", "#CC79A7", "#009E73", "#D55E00", "#F0E442", "#0072B2", "#FFFFFF"]
LINESTYLES = ["-", "--", ":"]  # after seven runs the colours repeat with the next line style
ARROW_COLOUR = "#E69F00"  # orange with a dark edge: stands out from white paths and from viridis
START = dict(marker="o", ms=9, mfc="white", mec="black", mew=1.5, ls="none")
END = dict(marker="*", ms=17, mec="black", mew=1.0, ls="none")
WHITE_EDGE = [patheffects.withStroke(linewidth=3.5, foreground="white")]
BLACK_EDGE = [patheffects.withStroke(linewidth=3.5, foreground="black")]
LOG_DECADES = 1.5  # values spanning more decades than this get log-spaced levels / a log axis
CURVE_CAP = 20  # loss-curve axes stop at this multiple of the largest initial loss


# ---------------------------------------------------------------- pure helpers

def save_figure(fig, path):
    """Write fig as a PNG at DPI through a temporary file (atomic), close it, return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def contour_levels(values, n: int = 15, max_decades: float = LOG_DECADES):
    """(levels, is_log): n increasing levels spanning the finite values, log-spaced when they are
    positive and span more than max_decades decades (detail near the minimum survives)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([0.0, 1.0]), False
    lo, hi = finite.min(), finite.max()
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):  # flat data: one band around the value
        pad = 0.5 * abs(hi) or 0.5
        return np.array([lo - pad, hi + pad]), False
    is_log = bool(lo > 0 and np.log10(hi / lo) > max_decades)
    levels = np.geomspace(lo, hi, n) if is_log else np.linspace(lo, hi, n)
    levels[0], levels[-1] = lo, hi  # exact ends: contourf leaves values outside the levels blank
    return levels, is_log


def spread_indices(coords, n: int) -> np.ndarray:
    """Up to n checkpoint indices spread evenly along the path's length (not its index), end excluded."""
    coords = np.asarray(coords, dtype=float)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(coords, axis=0), axis=1))])  # (T,)
    if len(coords) < 2 or arc[-1] <= 0:
        return np.array([0])
    targets = np.linspace(0.0, arc[-1], n, endpoint=False)
    return np.unique(np.minimum(np.searchsorted(arc, targets), len(coords) - 2))


def view_azimuth(z, candidates=(-60, 30, 120, -150)) -> float:
    """Azimuth (degrees) facing the lowest half of z (B, A; rows follow y): high walls stand at the
    back, so the valley and the path in it are not hidden behind a ridge."""
    z = np.asarray(z, dtype=float)
    yy, xx = np.meshgrid(np.linspace(-1, 1, z.shape[0]), np.linspace(-1, 1, z.shape[1]), indexing="ij")

    def near_mean(azim):
        near = np.isfinite(z) & (xx * np.cos(np.radians(azim)) + yy * np.sin(np.radians(azim)) > 0)
        return z[near].mean() if near.any() else np.inf

    return float(min(candidates, key=near_mean))


def finite_prefix(*arrays) -> int:
    """Length of the longest leading run of rows that are finite in every array (a diverged tail is cut)."""
    ok = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        a = np.asarray(a, dtype=float)
        if a.size:
            ok &= np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    return len(ok) if ok.all() else int(np.argmin(ok))


def nonfinite_note(values, what: str, action: str) -> list:
    bad = int(np.size(values) - np.isfinite(values).sum())
    return [f"{bad} of {np.size(values)} {what} non-finite: {action}"] if bad else []


def residual_note(residual) -> list:
    r = np.asarray([] if residual is None else residual, dtype=float).ravel()
    r = r[np.isfinite(r)]
    return [f"off-plane residual of the checkpoints: mean {100 * r.mean():.1f}%, max {100 * r.max():.1f}%"] \
        if r.size else []


def gap_note(surface_loss, true_losses) -> list:
    """How far the drawn (in-plane) loss is from the recorded loss, at the end and at worst."""
    gap = np.abs(surface_loss - true_losses)
    if not np.isfinite(gap).any():
        return []
    worst = int(np.nanargmax(gap))
    return [f"final loss: recorded {true_losses[-1]:.4g}, on the surface {surface_loss[-1]:.4g}; "
            f"largest gap along the path {gap[worst]:.3g} (checkpoint {worst})"]


def loss_label(is_log: bool) -> str:
    return "training loss (BCE)" + (", log scale" if is_log else "")


# ---------------------------------------------------------------- drawing pieces

def new_figure(kind: str):
    return plt.figure(figsize=FIGSIZES[kind], layout="constrained")  # fixed size: no bbox_inches="tight"


def finish(fig, notes, path):
    """Caveats (residuals, masked values) as small grey lines under the figure, then save."""
    if notes:
        fig.supxlabel("\n".join(notes), fontsize=8, color="0.3", x=0.02, ha="left")
    return save_figure(fig, path)


def legend_below(ax, handles, ncol: int = 2):
    """A legend under the axes, so it never covers data."""
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=ncol, fontsize=9,
              frameon=False)


def marker_handles() -> list:
    return [Line2D([], [], **START, label="start (initial weights)"),
            Line2D([], [], **END, mfc="0.6", label="end (final weights)")]


def draw_background(ax, surface, cmap: str = "viridis") -> list:
    """Filled and line contours of the surface, non-finite cells hatched grey, a labelled colour bar."""
    levels, is_log = contour_levels(surface.loss)
    loss = np.ma.masked_invalid(surface.loss)  # (B, A): rows follow betas
    norm = colors.LogNorm(levels[0], levels[-1]) if is_log else None
    filled = ax.contourf(surface.alphas, surface.betas, loss, levels=levels, cmap=cmap, norm=norm)
    ax.contour(surface.alphas, surface.betas, loss, levels=levels, colors="black", linewidths=0.4, alpha=0.35,
               norm=norm)
    ax.set_facecolor("0.85")  # masked cells show as hatched grey, never as a white "low" region
    ax.patch.set_hatch("xx")
    ax.patch.set_edgecolor("0.6")
    bar = ax.figure.colorbar(filled, ax=ax, pad=0.02)
    bar.set_label(loss_label(is_log))
    bar.locator = ticker.LogLocator(subs=(1, 2, 5)) if is_log else ticker.MaxNLocator(8)
    bar.formatter = ticker.FormatStrFormatter("%.3g")
    bar.update_ticks()
    return nonfinite_note(surface.loss, "surface values", "hatched grey")


def set_plane_axes(ax, alphas, betas, axis_labels) -> list:
    """Plane axis labels, limits = the grid; equal scales unless the grid is very elongated."""
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_xlim(alphas[0], alphas[-1])
    ax.set_ylim(betas[0], betas[-1])
    spans = np.ptp(alphas), np.ptp(betas)
    if max(spans) <= 4 * min(spans):  # equal scales: arrows then cross the contours at right angles
        ax.set_aspect("equal")
        return []
    return ["x and y scales differ: arrows are not drawn perpendicular to the contours"]


def draw_path(ax, coords, colour, label=None, outline=WHITE_EDGE, ls="-"):
    """One path with start ○ and end ★; rows from the first non-finite one on are dropped."""
    coords = np.asarray(coords, dtype=float)[:finite_prefix(coords)]
    if len(coords) == 0:
        return Line2D([], [], color=colour, ls=ls, label=label)
    line, = ax.plot(coords[:, 0], coords[:, 1], color=colour, lw=2, ls=ls, label=label, path_effects=outline)
    ax.plot(*coords[0], **START, zorder=5)
    ax.plot(*coords[-1], **END, mfc=colour, zorder=6)
    return line


def arrow_scale(surface, grads, fraction: float = 0.08) -> float:
    """Plane units per gradient unit so that the longest arrow spans `fraction` of the grid."""
    spans = np.array([np.ptp(surface.alphas), np.ptp(surface.betas)])
    longest = np.linalg.norm(grads / spans, axis=1).max() if len(grads) else 0.0
    return fraction / longest if longest > 0 else 0.0


def draw_arrows(ax, surface, coords, grads, n: int) -> bool:
    """Arrows of -(g·u, g·v) at points spread along the path; False when there is nothing to draw."""
    T = finite_prefix(coords, grads)
    coords, grads = np.asarray(coords, float)[:T], np.asarray(grads, float)[:T]
    idx = spread_indices(coords, n)
    s = arrow_scale(surface, grads[idx]) if T > 1 else 0.0
    if s > 0:
        ax.quiver(coords[idx, 0], coords[idx, 1], -grads[idx, 0], -grads[idx, 1], angles="xy", scale_units="xy",
                  scale=1 / s, color=ARROW_COLOUR, edgecolor="black", linewidth=0.6, width=0.007, headwidth=3.5,
                  zorder=4)
    return s > 0


def set_plain_log(ax):
    """Log y axis with ticks at 1, 2, 5 x 10^k labelled 0.2, 0.5, 1 rather than 2x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
