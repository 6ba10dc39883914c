"""Shared look of the static figures: sizes, colours, contour levels, notes and drawing pieces."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: never opens a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors, patheffects, ticker  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.legend_handler import HandlerBase  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from outputs import atomic_path  # noqa: E402

DPI = 150
FIGSIZES = {"surface_3d": (8.5, 7.5), "contour": (8, 7), "comparison": (14, 6.5), "curvature": (9, 7),
            "embeddings": (13, 6), "interpolation": (12, 5.5), "eigen_ratio": (8, 7), "plane_choice": (17, 5.9),
            "sharpness": (12, 10), "multi_seed": (12, 11), "spectrum": (14, 6)}  # inches
# One colour per run (seed, learning rate, optimiser), the same in every PNG, GIF and HTML page. Each
# has WCAG contrast >= 3:1 against white (loss-curve panels) and is drawn with a white outline on
# viridis; none is white or pale. The first three are Okabe-Ito (colour-blind safe).
PATH_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#C51B7D", "#7570B3", "#8C510A", "#000000", "#B8860B",
                "#666666", "#B2182B"]
RUN_COLOURS = PATH_COLOURS  # one palette: a run keeps its colour from the plane to the curves
CONTOUR_COLOURS = PATH_COLOURS
ARROW_COLOUR = "white"  # white with a black edge: no path has that colour, and it reads on viridis
SHADOW_DASHES = (0, (4, 2.5))  # a path that leaves the plane: dashed, never drawn on the surface
DRAWN = ("surface", "shadow")
START = dict(marker="o", ms=9, mfc="white", mec="black", mew=1.5, ls="none")
END = dict(marker="*", ms=17, mec="black", mew=1.0, ls="none")
WHITE_EDGE = [patheffects.withStroke(linewidth=3.5, foreground="white")]
BLACK_EDGE = [patheffects.withStroke(linewidth=3.5, foreground="black")]
THIN_WHITE_EDGE = [patheffects.withStroke(linewidth=3.0, foreground="white")]
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


def loss_label(is_log: bool, loss_name: str = "training loss") -> str:
    return loss_name + (", log scale" if is_log else "")


def run_colour(i: int) -> str:
    """The colour of run i (seed, learning rate, optimiser): the palette repeats after ten runs."""
    return PATH_COLOURS[i % len(PATH_COLOURS)]


def as_record(cls, run):
    """A cls dataclass from one already, from a dict of its fields, or from a tuple of them in order."""
    return run if isinstance(run, cls) else cls(**run) if isinstance(run, dict) else cls(*run)


def check_drawn(drawn: str) -> str:
    if drawn not in DRAWN:
        raise ValueError(f"drawn must be one of {DRAWN}, got {drawn!r}")
    return drawn


def on_mask(drawn, n: int) -> np.ndarray:
    """(n,) bool, True where a checkpoint is drawn on the surface. drawn: "surface" (all), "shadow"
    (none), or a bool array or list of n values aligned with the checkpoints (the caller's rule,
    decided per checkpoint)."""
    if isinstance(drawn, str):
        return np.full(n, check_drawn(drawn) == "surface")
    mask = np.asarray(drawn)
    mask = mask.astype(bool) if mask.size == 0 else mask  # [] reads as float64
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(f"drawn must be one of {DRAWN} or a bool array of shape ({n},), "
                         f"got {mask.dtype} of shape {mask.shape}")
    return mask


def drawn_kind(drawn) -> str:
    """"surface" (every checkpoint on it), "shadow" (none) or "partial", as summary.json says."""
    if isinstance(drawn, str):
        return check_drawn(drawn)
    mask = np.asarray(drawn, dtype=bool)
    return "surface" if mask.all() else "shadow" if not mask.any() else "partial"


def segments(mask) -> list:
    """[(start, stop, on)]: the contiguous stretches of equal values of a bool mask (T,), in order;
    mask[start:stop] are all `on`."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, mask.size]
    return [(int(a), int(b), bool(mask[a])) for a, b in zip(starts, stops)] if mask.size else []


def switch_points(mask) -> np.ndarray:
    """Indices of checkpoints on the surface next to one off it: where a 3D view stands a dotted
    connector from the floor up to the surface, so the eye can follow the path."""
    mask = np.asarray(mask, dtype=bool)
    return np.flatnonzero(mask & ~(np.r_[True, mask[:-1]] & np.r_[mask[1:], True]))


def line_pieces(mask) -> list:
    """[(lo, hi, on)]: the slices [lo:hi] of a path drawn as one line each. A stretch on the surface is
    solid; a stretch off it is dashed and takes the joins to its neighbours, so the step between an
    off and an on checkpoint is dashed too (the surface does not show that step truly)."""
    n = len(mask)
    return [(a, b, True) if on else (max(a - 1, 0), min(b + 1, n), False) for a, b, on in segments(mask)]


def shadow_label(label: str, drawn, residual_mean=None, sep: str = " ", steps=None) -> str:
    """A shadow run's legend label says so, with how far its checkpoints leave the plane; a partial run
    (drawn a bool mask) says which epochs (steps, else checkpoint indices) or what share is dashed."""
    kind = drawn_kind(drawn)
    if kind == "surface":
        return label
    if kind == "shadow":
        off = "" if residual_mean is None or not np.isfinite(residual_mean) else f"{100 * residual_mean:.0f} % "
        return f"{label}{sep}(shadow: {off}off plane)"
    mask, wrap = np.asarray(drawn, dtype=bool), sep if "\n" in sep else " "  # a narrow title wraps once more
    off = [(a, b) for a, b, on in segments(mask) if not on]
    if len(off) > 1:
        return f"{label}{sep}(dashed where off the plane:{wrap}{100 * (~mask).mean():.0f} % of checkpoints)"
    (a, b), unit = off[0], "checkpoint" if steps is None else "epoch"
    at = np.arange(len(mask)) if steps is None else np.asarray(steps, dtype=float)
    span = f"{unit} {at[a]:g}" if b - a == 1 else f"{unit}s {at[a]:g}–{at[b - 1]:g}"
    return f"{label}{sep}(dashed: shadow,{wrap}{span} off the plane)"


def loss_scale(surface_loss, *recorded, cap: float = np.inf):
    """(levels, is_log) of contour_levels over the finite surface values and every finite recorded loss
    up to cap: the surface and the runs drawn on it share one colour scale, so a run's final loss below
    the surface's minimum still lies inside the colour bar. Recorded values above cap (a blow-up) are
    left out."""
    kept = [np.ravel(np.asarray(surface_loss, dtype=float))]
    for values in recorded:
        values = np.ravel(np.asarray(values, dtype=float))
        kept.append(values[values <= cap])
    return contour_levels(np.concatenate(kept))


# ---------------------------------------------------------------- drawing pieces

def new_figure(kind: str):
    return plt.figure(figsize=FIGSIZES[kind], layout="constrained")  # fixed size: no bbox_inches="tight"


def finish(fig, notes, path):
    """Caveats (residuals, masked values) as small grey lines under the figure, then save. A legend under
    all the panels (figure_legend) goes above them: constrained layout would put both in one strip."""
    if notes:
        legends = [leg for leg in fig.legends if getattr(leg, "_outside_loc", None) == "lower"]
        pad = 4 / 72 * fig.dpi / fig.bbox.height  # constrained layout's default padding, as a figure fraction
        text = fig.supxlabel("\n".join(notes), fontsize=8, color="0.3", x=0.02, ha="left",
                             y=pad if legends else None)  # a given y: the layout reserves no strip for it
        if legends:
            _stack_above(fig, legends, pad + text.get_window_extent(fig.canvas.get_renderer()).height
                         / fig.bbox.height, pad)
    return save_figure(fig, path)


def figure_legend(fig, handles, ncol: int = 3):
    """One legend under all the panels, with as many columns (up to ncol) as fit the figure's width."""
    renderer = fig.canvas.get_renderer()
    for n in range(ncol, 0, -1):  # its size does not depend on the layout: measure it before
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=n, fontsize=9, frameon=False)
        if n == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return legend
        legend.remove()


def _stack_above(fig, legends, bottom: float, pad: float):
    """Anchor each legend above the figure fraction `bottom` (the notes' top), one over the other, and lay
    the panels out above them all (an anchored legend is no longer in the layout)."""
    renderer = fig.canvas.get_renderer()
    for legend in legends:  # sizes do not depend on the layout
        legend.set_bbox_to_anchor((0, bottom, 1, 1 - bottom), transform=fig.transFigure)
        bottom += legend.get_window_extent(renderer).height / fig.bbox.height + 2 * pad  # its own pad too
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))


def legend_below(ax, handles, ncol: int = 2):
    """A legend under the axes, so it never covers data."""
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=ncol, fontsize=9,
              frameon=False)


def marker_handles() -> list:
    """The start ○, shared by every path (each path's own legend entry shows its end ★)."""
    return [Line2D([], [], **START, label="start (initial weights); ★ end")]


def draw_background(ax, surface, cmap: str = "viridis", scale=None, colorbar: bool = True,
                    loss_name: str = "training loss") -> list:
    """Filled and line contours of the surface, non-finite cells hatched grey, a labelled colour bar.

    scale: (levels, is_log) shared with other panels or covering recorded losses (loss_scale);
    None = the surface's own range.
    """
    levels, is_log = contour_levels(surface.loss) if scale is None else scale
    loss = np.ma.masked_invalid(surface.loss)  # (B, A): rows follow betas
    norm = colors.LogNorm(levels[0], levels[-1]) if is_log else colors.Normalize(levels[0], levels[-1])
    top = np.max(loss.compressed(), initial=-np.inf)
    filled = ax.contourf(surface.alphas, surface.betas, loss, levels=levels, cmap=cmap, norm=norm,
                         extend="max" if top > levels[-1] else "neither")  # a shared scale may end lower
    ax.contour(surface.alphas, surface.betas, loss, levels=levels, colors="black", linewidths=0.4, alpha=0.35,
               norm=norm)
    ax.set_facecolor("0.85")  # masked cells show as hatched grey, never as a white "low" region
    ax.patch.set_hatch("xx")
    ax.patch.set_edgecolor("0.6")
    ax.filled = filled  # for a colour bar drawn later, shared by several panels
    if colorbar:
        add_colorbar(ax.figure, filled, ax, is_log, loss_name)
    return nonfinite_note(surface.loss, "surface values", "hatched grey")


def add_colorbar(fig, mappable, axes, is_log: bool, loss_name: str = "training loss", **kwargs):
    bar = fig.colorbar(mappable, ax=axes, pad=0.02, **kwargs)
    bar.set_label(loss_label(is_log, loss_name))
    bar.locator = ticker.LogLocator(subs=(1, 2, 5)) if is_log else ticker.MaxNLocator(8)
    bar.formatter = ticker.FormatStrFormatter("%.3g")
    bar.update_ticks()
    return bar


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


def path_style(colour, drawn: str = "surface") -> dict:
    """Line style of a path: solid on its surface; a shadow (off the plane) dashed, thinner."""
    if check_drawn(drawn) == "shadow":
        return dict(color=colour, lw=1.8, ls=SHADOW_DASHES, path_effects=THIN_WHITE_EDGE)
    return dict(color=colour, lw=2.2, ls="-", path_effects=WHITE_EDGE)


def path_handle(colour, label, drawn="surface"):
    """Legend entry that looks like the drawn path: its line style, outline and end ★; a partial path
    gets a sample half dashed, half solid (PartialHandle)."""
    if drawn_kind(drawn) == "partial":
        return PartialHandle(colour, label, first_on=bool(np.asarray(drawn)[0]))
    return Line2D([], [], **path_style(colour, drawn_kind(drawn)), marker="*", ms=13, mfc=colour, mec="black",
                  mew=0.8, label=label)


class PartialHandle(Line2D):
    """Legend entry of a path drawn partly on the surface: dashed, then solid (or the other way round, as
    the path starts); no ★, which would hide half of so short a sample."""

    def __init__(self, colour, label, first_on: bool):
        super().__init__([], [], color=colour, label=label)
        self.first_on = first_on


class _PartialHandler(HandlerBase):
    def create_artists(self, legend, handle, xdescent, ydescent, width, height, fontsize, trans):
        x0, y, colour = -xdescent, height / 2 - ydescent, handle.get_color()
        halves = ("surface", "shadow") if handle.first_on else ("shadow", "surface")
        artists = []
        for k, kind in enumerate(halves):  # finer dashes than on the plot: the sample is short
            style = dict(path_style(colour, kind), **({"ls": (0, (1.6, 1.2))} if kind == "shadow" else {}))
            artists.append(Line2D([x0 + k * width / 2, x0 + (k + 1) * width / 2], [y, y], **style))
        for artist in artists:
            artist.set_transform(trans)
        return artists


Legend.update_default_handler_map({PartialHandle: _PartialHandler()})


def draw_path(ax, coords, colour, label=None, drawn="surface", zorder: float = 3):
    """One path with start ○ and end ★: solid where drawn says it lies on the surface, dashed elsewhere
    (drawn: "surface", "shadow" or a (T,) bool mask, see on_mask); rows from the first non-finite one
    on are dropped. Returns its legend handle."""
    coords = np.asarray(coords, dtype=float)
    mask = on_mask(drawn, len(coords))
    T = finite_prefix(coords)
    coords = coords[:T]
    for lo, hi, on in line_pieces(mask[:T]):
        ax.plot(coords[lo:hi, 0], coords[lo:hi, 1], **path_style(colour, "surface" if on else "shadow"),
                zorder=zorder)
    if T:
        ax.plot(*coords[0], **START, zorder=zorder + 2)
        ax.plot(*coords[-1], **END, mfc=colour, zorder=zorder + 3)
    return path_handle(colour, label, mask)


def arrow_scale(surface, arrows, fraction: float = 0.08) -> float:
    """Factor on the arrows (plane units) so that the longest spans `fraction` of the grid."""
    spans = np.array([np.ptp(surface.alphas), np.ptp(surface.betas)])
    longest = np.linalg.norm(arrows / spans, axis=1).max() if len(arrows) else 0.0
    return fraction / longest if longest > 0 else 0.0


def draw_arrows(ax, surface, coords, arrows, n: int) -> bool:
    """Descent arrows (already downhill, in plane coordinates) at points spread along the path,
    under it; False when there is nothing to draw."""
    T = finite_prefix(coords, arrows)
    coords, arrows = np.asarray(coords, float)[:T], np.asarray(arrows, float)[:T]
    idx = spread_indices(coords, n)
    s = arrow_scale(surface, arrows[idx]) if T > 1 else 0.0
    if s > 0:
        ax.quiver(coords[idx, 0], coords[idx, 1], arrows[idx, 0], arrows[idx, 1], angles="xy", scale_units="xy",
                  scale=1 / s, color=ARROW_COLOUR, edgecolor="black", linewidth=0.6, width=0.006, headwidth=3.5,
                  zorder=2.5)
    return s > 0


ARROW_HANDLE = dict(color=ARROW_COLOUR, marker=">", mec="black", ls="none", ms=9,
                    label="descent direction (−gradient projected on the plane)")


def set_plain_log(ax):
    """Log y axis with ticks at 1, 2, 5 x 10^k labelled 0.2, 0.5, 1 rather than 2x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
