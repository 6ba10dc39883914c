"""Interactive Plotly pages that open from disk: surfaces with their paths and an epoch slider."""
from __future__ import annotations

import hashlib
import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib import ticker
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from outputs import write_text
from plot_style import (CURVE_CAP, as_record, finite_prefix, line_pieces, loss_scale, on_mask, run_colour, shadow_label,
                        switch_points, view_azimuth)

ASSET_DIR = "assets"
MAX_SLIDER_STEPS = 101  # more steps than this are subsampled, first and last kept
LEGEND = dict(x=0.01, y=0.98, bgcolor="rgba(90, 90, 90, 0.25)")  # grey: the white path shows in it
BAR_PX = 30  # the strip above each plot that links back to index.html


def plotly_asset(out_dir) -> str:
    """plotly.js under out_dir/assets, versioned; return its path relative to the pages.

    Checked (size, then hash) each time and written whole, atomically, when missing or damaged
    (a run killed mid-write): a page is only written after its script is complete.
    """
    relative = f"{ASSET_DIR}/plotly-{get_plotlyjs_version()}.min.js"
    target = Path(out_dir) / relative
    script = get_plotlyjs().encode("utf-8")
    if not _same_file(target, script):
        write_text(target, script.decode("utf-8"))
    return relative


def _same_file(path: Path, content: bytes) -> bool:
    try:
        if os.path.getsize(path) != len(content):
            return False
    except OSError:
        return False
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest()


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>html, body {{ margin: 0; background: #fff; font: 14px system-ui, sans-serif; }}
nav {{ height: {bar}px; line-height: {bar}px; padding: 0 12px; background: #22313f; }}
nav a {{ color: #fff; text-decoration: none; }}</style>
<script src="{script}"></script></head>
<body><nav><a href="index.html">← all results (index.html)</a></nav>{plot}</body></html>
"""


# Below NARROW_PX of width (a phone) the legend moves under the plot (over it where a slider keeps the
# bottom), the colour bar gets shorter with its title on its side and the tool bar stands on the right edge,
# so none of them covers the surface or the title; wider, the layout the figure was built with comes back.
NARROW_PX = 700
NARROW_ZOOM = 2.0  # the 3D camera's distance on a phone, over a wide screen's: the whole box in view
FIT_SCRIPT = """
var gd = document.getElementById('{plot_id}'), narrow = null, slider = (gd.layout.sliders || []).length > 0;
function copy(value) { return value === undefined ? null : JSON.parse(JSON.stringify(value)); }  // null: unset
var wide = {legend: copy(gd.layout.legend || {}), margin: copy(gd.layout.margin || {})};
var bars = gd.data.map(function (t, i) { return t.type === 'surface' ? i : -1; })
  .filter(function (i) { return i >= 0; });
var wideBars = bars.map(function (i) {
  var bar = gd.data[i].colorbar || {};
  return [copy(bar.len), copy(bar.thickness), copy((bar.title || {}).side)];
});
var scenes = Object.keys(gd.layout).filter(function (k) { return /^scene\\d*$/.test(k); });
function zoomed(factor) {  // every 3D scene's camera moved back (factor > 1) along its own line of sight,
  var update = {};         // so a view the reader has turned stays turned
  scenes.forEach(function (s) {
    var eye = ((gd.layout[s] || {}).camera || {}).eye;
    if (eye) update[s + '.camera.eye'] = {x: eye.x * factor, y: eye.y * factor, z: eye.z * factor};
  });
  return update;
}
function fit() {
  var now = gd.clientWidth < %d, was = narrow;
  if (now === narrow) return;
  narrow = now;
  Plotly.relayout(gd, Object.assign(narrow
    ? Object.assign({'legend.orientation': 'h', 'legend.x': 0, 'legend.font.size': 9, 'legend.title.side': 'top',
       'modebar.orientation': 'v', 'title.font.size': 12}, slider  // the slider keeps the bottom: legend on top
       ? {'legend.y': 1, 'legend.yanchor': 'bottom', 'margin.t': 150, 'title.y': 0.99, 'title.yanchor': 'top'}
       : {'legend.y': 0, 'legend.yanchor': 'top', 'margin.b': 150})
    : {legend: copy(wide.legend), margin: copy(wide.margin), 'modebar.orientation': 'h', 'title.font.size': null,
       'title.y': null, 'title.yanchor': null},
    // a tall narrow scene crops a wide-screen camera's view at the sides
    narrow ? zoomed(%s) : was ? zoomed(1 / %s) : {}));
  bars.forEach(function (i, k) {
    Plotly.restyle(gd, narrow ? {'colorbar.len': 0.45, 'colorbar.thickness': 10, 'colorbar.title.side': 'right'}
                              : {'colorbar.len': wideBars[k][0], 'colorbar.thickness': wideBars[k][1],
                                 'colorbar.title.side': wideBars[k][2]}, [i]);
  });
}
fit();
window.addEventListener('resize', fit);
""" % (NARROW_PX, NARROW_ZOOM, NARROW_ZOOM)


def write_page(fig: go.Figure, path, title: str) -> Path:
    """A page that fills the window under a link back to index.html and loads only the shared local
    plotly.js: no CDN, no MathJax, no auto-play; on a phone its legend and colour bar move off the plot."""
    plot = fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, auto_play=False,
                       default_height=f"calc(100vh - {BAR_PX}px)", config={"displaylogo": False, "responsive": True},
                       post_script=FIT_SCRIPT)
    page = PAGE.format(title=html.escape(title), script=plotly_asset(Path(path).parent), plot=plot, bar=BAR_PX)
    return write_text(path, page)


def _compact(values, digits: int = 5) -> np.ndarray:
    """float32 rounded to `digits` significant digits: the page stays small, no visible precision is lost."""
    values = np.asarray(values, dtype=float)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(values), where=values != 0, out=np.zeros_like(values))))
    return (np.round(values * scale) / scale).astype(np.float32)  # NaN stays NaN


def _surface_trace(surface, scale, loss_name: str = "training loss", floor: float | None = None) -> go.Surface:
    """The surface coloured on `scale` = (levels, is_log), the PNG's: on a log scale the colours map
    log10(loss) and the colour bar's ticks are round losses (1, 2, 5 x 10^k), as in the PNG. With a
    floor (a path lies on it), its contour lines are projected onto the scene's bottom, the floor: the
    map a shadow is drawn on."""
    z = np.where(np.isfinite(surface.loss), surface.loss, np.nan)  # NaN cells are left as holes
    levels, is_log = scale
    bar = dict(title=loss_name + (", log scale" if is_log else ""), len=0.75)
    colour = dict(cmin=levels[0], cmax=levels[-1])
    if is_log:
        ticks = [v for v in ticker.LogLocator(subs=(1, 2, 5)).tick_values(levels[0], levels[-1])
                 if levels[0] <= v <= levels[-1]]
        bar.update(tickvals=np.log10(ticks).tolist(), ticktext=[f"{v:g}" for v in ticks])
        colour = dict(surfacecolor=_compact(np.log10(np.clip(z, levels[0], None))), cmin=np.log10(levels[0]),
                      cmax=np.log10(levels[-1]))
    if floor is not None:
        finite = z[np.isfinite(z)]
        colour["contours"] = dict(z=dict(show=True, project_z=True, color="rgba(40, 40, 40, 0.55)", width=1,
                                         start=finite.min(), end=finite.max(), size=np.ptp(finite) / 12))
    # over a floor the surface lets the shadows under it show through (0.92 hid them from above)
    return go.Surface(x=_compact(surface.alphas), y=_compact(surface.betas), z=_compact(z), colorscale="Viridis",
                      opacity=0.92 if floor is None else SEE_THROUGH, colorbar=bar, name="loss surface", **colour,
                      hovertemplate="a %{x:.3f}<br>b %{y:.3f}<br>surface loss %{z:.4g}<extra></extra>")


def page_scale(surface, losses):
    """The PNG's colour scale: the surface and the runs' recorded losses up to CURVE_CAP x the largest
    initial loss (plot_style.loss_scale), so a page and its PNG colour a loss alike."""
    firsts = np.array([np.asarray(loss, float)[0] for loss in losses if len(loss)])
    return loss_scale(surface.loss, *losses, cap=CURVE_CAP * np.max(firsts[np.isfinite(firsts)], initial=1e-12))


def _lift(surface) -> float:
    finite = surface.loss[np.isfinite(surface.loss)]
    return 0.01 * float(np.ptp(finite)) if finite.size else 0.0  # paths float just above their facets


EYE = 1.77  # the camera's distance in the x-y plane, in box units
FLOOR_INK = "#333333"  # a path on the pale floor of the single-run page: white would vanish there
SEE_THROUGH = 0.6  # opacity of a surface with shadows under it, as in the 3D PNG's 0.75 at a darker floor
FLOOR_DROP = 0.35  # the floor lies this share of the surface's range below its minimum, as in the 3D PNG


def _floor(surface) -> float:
    """Height of the floor a shadow lies on, below the surface: seen from above, much of a path on it
    shows beside the surface rather than behind it."""
    finite = surface.loss[np.isfinite(surface.loss)]
    low = finite.min() - FLOOR_DROP * np.ptp(finite) if finite.size else 0.0
    return float(_compact([low])[0])


OFF_HOVER = "shadow: off the plane, drawn on the floor<br>(the surface is not its loss here)"


def _hover(steps, true_losses, drawn, accuracies=None, lam_max=None, label=None, on_surface=True,
           metric_name: str = "accuracy") -> list:
    """One hover text per checkpoint; on_surface: a bool for all or a (T,) mask. A checkpoint off the
    plane says so and gives no surface value, which is not its loss."""
    on = np.broadcast_to(np.asarray(on_surface, dtype=bool), (len(steps),))
    rows = []
    for k in range(len(steps)):
        text = (f"{label}<br>" if label else "") + f"epoch {int(steps[k])}<br>recorded loss {true_losses[k]:.4f}"
        text += f"<br>on the surface: surface loss {drawn[k]:.4f}" if on[k] else f"<br>{OFF_HOVER}"
        if accuracies is not None:
            text += f"<br>{metric_name} {accuracies[k]:.3f}"
        if lam_max is not None and np.isfinite(lam_max[k]):
            text += f"<br>λmax {lam_max[k]:.4f}"
        rows.append(text)
    return rows


def _scene(surface, loss_name: str = "training loss", floor: float | None = None) -> dict:
    """Axes and camera; with a floor, the z axis starts at it, so the projected contours lie on it. The
    camera faces the surface's low side, as the PNG and GIF do: a path in the valley is not behind a ridge."""
    labels, azim = surface.plane.axis_labels(), np.radians(view_azimuth(surface.loss))
    no_spikes = dict(showspikes=False)  # the hover box already gives the numbers; spike lines only clutter
    finite = surface.loss[np.isfinite(surface.loss)]
    z_range = {} if floor is None or not finite.size else dict(
        range=[floor, finite.max() + 2 * _lift(surface)],  # no tick on the floor: no loss is drawn at its height
        tickvals=[v for v in ticker.MaxNLocator(6).tick_values(finite.min(), finite.max())
                  if finite.min() <= v <= finite.max()])
    return dict(xaxis=dict(no_spikes, title=labels[0]), yaxis=dict(no_spikes, title=labels[1]),
                zaxis=dict(no_spikes, title=loss_name, **z_range),
                camera=dict(eye=dict(x=EYE * np.cos(azim), y=EYE * np.sin(azim), z=0.8),
                            center=dict(x=0, y=0, z=-0.12)),
                aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.7))


def surface_figure(surface, coords, path_surface_loss, true_losses, accuracies, steps, title,
                   lam_max=None, lam_steps=None, loss_name: str = "training loss", drawn="surface",
                   residual_mean: float | None = None, metric_name: str = "accuracy") -> go.Figure:
    """3D surface, the path (hover: epoch, recorded loss, surface loss where it is the path's, accuracy or R²,
    λmax) and a marker that an epoch slider and a play button move. Only the marker is in the frames.

    drawn: "surface", "shadow" or a (T,) bool mask, True where the surface is the checkpoint's loss:
    those checkpoints are lifted onto the surface (solid), the rest lie dashed on the floor (the
    surface's minimum), as on the runs pages; the marker follows. residual_mean: the legend's "% off plane".
    """
    coords, path_loss = np.asarray(coords, float), np.asarray(path_surface_loss, float)
    steps, true_losses = np.asarray(steps), np.asarray(true_losses, float)
    on = on_mask(drawn, len(coords))
    lam = None
    if lam_max is not None:  # eigenvalues may exist at every k-th checkpoint only
        lam = np.full(len(steps), np.nan)
        lam[np.searchsorted(steps, np.asarray(lam_steps if lam_steps is not None else steps))] = lam_max
    floor = None if on.all() else _floor(surface)
    z = np.where(on, path_loss + _lift(surface), floor)  # (T,) a shadow point is never lifted
    hover = _hover(steps, true_losses, path_loss, accuracies, lam, on_surface=on, metric_name=metric_name)
    x, y = _compact(coords[:, 0]), _compact(coords[:, 1])
    shadow = shadow_label("path", drawn if isinstance(drawn, str) else on, residual_mean, steps=steps)
    names = {True: "path" if on.all() else "path on the surface", False: f"{shadow}: on the floor"}
    # white reads on viridis; on the pale floor a dark dash does
    path = _path_traces(x, y, _compact(z), on, np.array(hover), ("white", FLOOR_INK), names, floor, widths=(7, 5),
                        solid_first=True, mode="lines+markers")
    path += _connectors(x, y, _compact(z), on, floor)
    start = go.Scatter3d(x=[coords[0, 0]], y=[coords[0, 1]], z=[z[0]], mode="markers", name="start",
                         marker=dict(size=6, color="white", line=dict(color="black", width=2)), hoverinfo="skip")
    marker = go.Scatter3d(x=[coords[-1, 0]], y=[coords[-1, 1]], z=[z[-1]], mode="markers", name="epoch marker",
                          marker=dict(size=8, color="#D55E00", line=dict(color="black", width=2)),
                          text=[hover[-1]], hoverinfo="text")
    fig = go.Figure([_surface_trace(surface, page_scale(surface, [true_losses]), loss_name, floor), *path, start,
                     marker])
    shown = np.unique(np.round(np.linspace(0, len(steps) - 1, min(len(steps), MAX_SLIDER_STEPS))).astype(int))
    fig.frames = [go.Frame(name=str(int(steps[i])), traces=[len(fig.data) - 1],  # the marker, the last trace
                           data=[go.Scatter3d(x=[coords[i, 0]], y=[coords[i, 1]], z=[z[i]], text=[hover[i]])])
                  for i in shown]
    _add_player(fig, [str(int(steps[i])) for i in shown])
    fig.update_layout(title=title, scene=_scene(surface, loss_name, floor),
                      margin=dict(l=0, r=0, t=50, b=20),  # b: room for the slider's ticks
                      legend=LEGEND)
    return fig


def _add_player(fig: go.Figure, names: list) -> None:
    """An epoch slider and play/pause buttons; nothing moves until the user asks."""
    move = lambda frames, ms: dict(label="", method="animate", args=[  # noqa: E731
        frames, dict(mode="immediate", frame=dict(duration=ms, redraw=True), transition=dict(duration=0))])
    play, pause = move(None, 80), move([None], 0)
    play["label"], pause["label"] = "▶ play", "❚❚ pause"
    play["args"][1]["fromcurrent"] = True
    slider_steps = [dict(move([n], 0), label=n) for n in names]
    fig.update_layout(
        updatemenus=[dict(type="buttons", direction="left", buttons=[play, pause], x=0.01, y=0.0, xanchor="left",
                          yanchor="top", pad=dict(t=35, r=10), showactive=False)],
        # step labels would overlap at ~100 steps: they are hidden and the current epoch is shown above
        sliders=[dict(steps=slider_steps, active=len(names) - 1, x=0.2, len=0.78, y=0.0, yanchor="top",
                      font=dict(color="rgba(0,0,0,0)"), ticklen=3, pad=dict(t=30),
                      currentvalue=dict(prefix="epoch ", font=dict(size=14, color="#222"), xanchor="left"))])


def surface_page(surface, coords, path_surface_loss, true_losses, accuracies, steps, path, title,
                 lam_max=None, lam_steps=None, loss_name: str = "training loss", drawn="surface",
                 residual_mean: float | None = None, metric_name: str = "accuracy") -> Path:
    """logistic_3d.html / mlp_3d.html: see surface_figure."""
    return write_page(surface_figure(surface, coords, path_surface_loss, true_losses, accuracies, steps, title,
                                     lam_max, lam_steps, loss_name, drawn, residual_mean, metric_name), path, title)


@dataclass
class PageRun:
    """One run on a shared surface: coords (T, 2), the surface's loss there (T,), recorded losses (T,),
    one row per epoch. drawn: "surface", "shadow" (the run leaves the plane: dashed on the plot's floor,
    never on the surface) or a (T,) bool mask, True where a checkpoint lies on the surface."""
    coords: np.ndarray
    path_surface_loss: np.ndarray
    true_losses: np.ndarray
    label: str
    drawn: object = "surface"
    colour: str | None = None
    residual_mean: float | None = None


def as_page_run(run) -> PageRun:
    """A PageRun from a tuple (coords, path_surface_loss, true_losses, label[, drawn[, colour]]) or a dict."""
    return as_record(PageRun, run)


def runs_figure(surface, runs, title, loss_name: str = "training loss") -> go.Figure:
    """Every run on the shared surface, in its own colour; clicking a legend entry hides or shows it.

    runs: PageRuns, or tuples/dicts with their fields. The colours follow the PNG's scale (log when it is).
    """
    runs = [as_page_run(run) for run in runs]
    scale = page_scale(surface, [run.true_losses for run in runs])
    shadow = any(not on_mask(run.drawn, len(run.coords)).all() for run in runs)
    floor = _floor(surface) if shadow else None
    fig, lift = go.Figure([_surface_trace(surface, scale, loss_name, floor)]), _lift(surface)
    for k, run in enumerate(runs):
        fig.add_traces(_run_traces(run, run.colour or run_colour(k), lift, floor))
    fig.update_layout(title=title, scene=_scene(surface, loss_name, floor), margin=dict(l=0, r=0, t=50, b=0),
                      legend=dict(LEGEND, title="click a run to hide or show it"))
    return fig


def _run_traces(run: PageRun, colour, lift, floor) -> list:
    """One run's path, a circle at its start and a diamond at its end (and dotted connectors where it
    joins the surface), toggled together by the legend.

    Checkpoints on the surface float just above their facets, solid; the rest (all of a "shadow" run,
    the masked-off part of a partial one) lie dashed on the floor, the surface's minimum, since the
    surface is not their loss."""
    coords, drawn = np.asarray(run.coords, float), np.asarray(run.path_surface_loss, float)
    on = on_mask(run.drawn, len(coords))
    T = finite_prefix(coords, np.where(on, drawn, 0.0))  # a diverged run keeps its finite part
    coords, drawn, on = coords[:T], drawn[:T], on[:T]
    label = shadow_label(run.label, run.drawn, run.residual_mean, steps=np.arange(len(on)))
    true_losses = np.asarray(run.true_losses, float)
    hover = np.array([_hover([k], true_losses[k:k + 1], drawn[k:k + 1], label=label, on_surface=bool(on[k]))[0]
                      for k in range(T)])
    x, y, z = _compact(coords[:, 0]), _compact(coords[:, 1]), _compact(np.where(on, drawn + lift, floor))
    traces = _path_traces(x, y, z, on, hover, (colour, colour), {True: label, False: label}, floor, widths=(6, 4),
                          mode="lines", legendgroup=run.label)
    ends = go.Scatter3d(x=x[[0, -1]], y=y[[0, -1]], z=z[[0, -1]], mode="markers", legendgroup=run.label,
                        showlegend=False, text=hover[[0, -1]], hoverinfo="text",
                        marker=dict(size=[5, 8], symbol=["circle", "diamond"], color=colour,
                                    line=dict(color="black", width=1)))
    return traces + _connectors(x, y, z, on, floor, colour, legendgroup=run.label) + [ends]


def _path_traces(x, y, z, on, hover, colours, names, floor, widths, solid_first: bool = False, **common) -> list:
    """One Scatter3d per piece of plot_style.line_pieces(on): solid at z where on, dashed wholly on the
    floor elsewhere (its joins to the surface included). colours, widths (px): (solid, dashed); names
    {True: solid, False: dashed}: each name enters the legend once, the solid one first if solid_first
    (else in the order drawn: runs keep their order); common: further Scatter3d fields."""
    traces, named = [], set()
    for lo, hi, piece_on in line_pieces(on):
        colour, width = colours[not piece_on], widths[not piece_on]
        traces.append(go.Scatter3d(x=x[lo:hi], y=y[lo:hi], z=z[lo:hi] if piece_on else np.full(hi - lo, floor),
                                   name=names[piece_on], showlegend=names[piece_on] not in named, text=hover[lo:hi],
                                   hoverinfo="text", marker=dict(size=2, color=colour),
                                   line=dict(color=colour, width=width, dash="solid" if piece_on else "dash"),
                                   **({"legendrank": 998 + (not piece_on)} if solid_first else {}), **common))
        named.add(names[piece_on])
    return traces


def _connectors(x, y, z, on, floor, colour=None, **common) -> list:
    """A dotted vertical line from the floor up to each checkpoint on the surface next to one off it
    (where the path switches), as in the 3D PNG; none when the path never switches."""
    at = switch_points(on)
    if not at.size:
        return []
    def strokes(bottom, top):  # (3K,): each connector's two ends, then a gap (NaN) before the next
        return np.c_[bottom, top, np.full(len(at), np.nan)].ravel()

    return [go.Scatter3d(x=strokes(x[at], x[at]), y=strokes(y[at], y[at]), z=strokes(np.full(len(at), floor), z[at]),
                         mode="lines", line=dict(color=colour or FLOOR_INK, width=3, dash="dot"), showlegend=False,
                         hoverinfo="skip", name="where the path joins the surface", **common)]


def runs_page(surface, runs, path, title, loss_name: str = "training loss") -> Path:
    """mlp_multi_seed.html / optimizer_comparison.html: see runs_figure."""
    return write_page(runs_figure(surface, runs, title, loss_name), path, title)
