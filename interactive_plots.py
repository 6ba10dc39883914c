"""Interactive Plotly pages that open from disk: surfaces with their paths, an epoch slider, the index page."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from outputs import write_text
from plot_style import PATH_COLOURS

ASSET_DIR = "assets"
MAX_SLIDER_STEPS = 101  # more steps than this are subsampled, first and last kept
LEGEND = dict(x=0.01, y=0.98, bgcolor="rgba(90, 90, 90, 0.25)")  # grey: the white path shows in it
LINE_COLOURS = PATH_COLOURS  # the colours of the same runs in the PNGs and GIFs


def plotly_asset(out_dir) -> str:
    """Write plotly.js once, versioned, under out_dir/assets; return its path relative to the pages."""
    relative = f"{ASSET_DIR}/plotly-{get_plotlyjs_version()}.min.js"
    target = Path(out_dir) / relative
    script = get_plotlyjs()
    if not target.exists() or target.read_text(encoding="utf-8") != script:  # missing, or a broken copy
        write_text(target, script)
    return relative


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>html, body {{ margin: 0; height: 100%; background: #fff; }}</style>
<script src="{script}"></script></head>
<body>{plot}</body></html>
"""


def write_page(fig: go.Figure, path, title: str) -> Path:
    """A page that fills the window and loads only the shared local plotly.js: no CDN, no MathJax, no auto-play."""
    plot = fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, auto_play=False,
                       default_height="100vh", config={"displaylogo": False, "responsive": True})
    page = PAGE.format(title=html.escape(title), script=plotly_asset(Path(path).parent), plot=plot)
    return write_text(path, page)


def _compact(values, digits: int = 5) -> np.ndarray:
    """float32 rounded to `digits` significant digits: the page stays small, no visible precision is lost."""
    values = np.asarray(values, dtype=float)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(values), where=values != 0, out=np.zeros_like(values))))
    return (np.round(values * scale) / scale).astype(np.float32)  # NaN stays NaN


def _surface_trace(surface) -> go.Surface:
    z = np.where(np.isfinite(surface.loss), surface.loss, np.nan)  # NaN cells are left as holes
    return go.Surface(x=_compact(surface.alphas), y=_compact(surface.betas), z=_compact(z), colorscale="Viridis",
                      opacity=0.92, colorbar=dict(title="training loss (BCE)", len=0.75), name="loss surface",
                      hovertemplate="a %{x:.3f}<br>b %{y:.3f}<br>surface loss %{z:.4f}<extra></extra>")


def _lift(surface) -> float:
    finite = surface.loss[np.isfinite(surface.loss)]
    return 0.01 * float(np.ptp(finite)) if finite.size else 0.0  # paths float just above their facets


def _hover(steps, true_losses, drawn, accuracies=None, lam_max=None, label=None) -> list:
    rows = []
    for k in range(len(steps)):
        text = (f"{label}<br>" if label else "") + f"epoch {int(steps[k])}<br>true loss {true_losses[k]:.4f}" \
            f"<br>surface loss {drawn[k]:.4f}"
        if accuracies is not None:
            text += f"<br>accuracy {accuracies[k]:.3f}"
        if lam_max is not None and np.isfinite(lam_max[k]):
            text += f"<br>λmax {lam_max[k]:.4f}"
        rows.append(text)
    return rows


def _scene(surface) -> dict:
    labels = surface.plane.axis_labels()
    no_spikes = dict(showspikes=False)  # the hover box already gives the numbers; spike lines only clutter
    return dict(xaxis=dict(no_spikes, title=labels[0]), yaxis=dict(no_spikes, title=labels[1]),
                zaxis=dict(no_spikes, title="training loss"),
                camera=dict(eye=dict(x=1.25, y=-1.25, z=0.8), center=dict(x=0, y=0, z=-0.12)),
                aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.7))


def surface_figure(surface, coords, path_surface_loss, true_losses, accuracies, steps, title,
                   lam_max=None, lam_steps=None) -> go.Figure:
    """3D surface, the path on it (hover: epoch, recorded and surface loss, accuracy, λmax) and a
    marker that an epoch slider and a play button move. Only the marker is in the frames."""
    coords, drawn = np.asarray(coords, float), np.asarray(path_surface_loss, float)
    steps, true_losses = np.asarray(steps), np.asarray(true_losses, float)
    lam = None
    if lam_max is not None:  # eigenvalues may exist at every k-th checkpoint only
        lam = np.full(len(steps), np.nan)
        lam[np.searchsorted(steps, np.asarray(lam_steps if lam_steps is not None else steps))] = lam_max
    z, hover = drawn + _lift(surface), _hover(steps, true_losses, drawn, accuracies, lam)
    path = go.Scatter3d(x=_compact(coords[:, 0]), y=_compact(coords[:, 1]), z=_compact(z), mode="lines+markers",
                        line=dict(color="white", width=7), marker=dict(size=2, color="white"), name="path",
                        text=hover, hoverinfo="text")
    start = go.Scatter3d(x=[coords[0, 0]], y=[coords[0, 1]], z=[z[0]], mode="markers", name="start",
                         marker=dict(size=6, color="white", line=dict(color="black", width=2)), hoverinfo="skip")
    marker = go.Scatter3d(x=[coords[-1, 0]], y=[coords[-1, 1]], z=[z[-1]], mode="markers", name="epoch marker",
                          marker=dict(size=8, color="#D55E00", line=dict(color="black", width=2)),
                          text=[hover[-1]], hoverinfo="text")
    fig = go.Figure([_surface_trace(surface), path, start, marker])
    shown = np.unique(np.round(np.linspace(0, len(steps) - 1, min(len(steps), MAX_SLIDER_STEPS))).astype(int))
    fig.frames = [go.Frame(name=str(int(steps[i])), traces=[3],
                           data=[go.Scatter3d(x=[coords[i, 0]], y=[coords[i, 1]], z=[z[i]], text=[hover[i]])])
                  for i in shown]
    _add_player(fig, [str(int(steps[i])) for i in shown])
    fig.update_layout(title=title, scene=_scene(surface), margin=dict(l=0, r=0, t=50, b=20),  # b: slider ticks
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
                 lam_max=None, lam_steps=None) -> Path:
    """logistic_3d.html / mlp_3d.html: see surface_figure."""
    return write_page(surface_figure(surface, coords, path_surface_loss, true_losses, accuracies, steps, title,
                                     lam_max, lam_steps), path, title)


def runs_figure(surface, runs, title) -> go.Figure:
    """Every run on the shared surface; clicking a legend entry hides or shows that run.

    runs: list of (coords (T, 2), path_surface_loss (T,), true_losses (T,), label); row k is epoch k.
    """
    fig, lift = go.Figure([_surface_trace(surface)]), _lift(surface)
    for k, run in enumerate(runs):
        fig.add_traces(_run_traces(*run, colour=LINE_COLOURS[k % len(LINE_COLOURS)], lift=lift))
    fig.update_layout(title=title, scene=_scene(surface), margin=dict(l=0, r=0, t=50, b=0),
                      legend=dict(LEGEND, title="click a run to hide or show it"))
    return fig


def _run_traces(coords, drawn, true_losses, label, colour, lift) -> list:
    """One run's path, a circle at its start and a diamond at its end, toggled together by the legend."""
    coords, drawn = np.asarray(coords, float), np.asarray(drawn, float)
    ok = np.isfinite(drawn) & np.isfinite(coords).all(axis=1)  # a diverged run keeps its finite part
    hover = np.array(_hover(np.arange(len(drawn)), np.asarray(true_losses, float), drawn, label=label))[ok]
    x, y, z = _compact(coords[ok, 0]), _compact(coords[ok, 1]), _compact(drawn[ok] + lift)
    path = go.Scatter3d(x=x, y=y, z=z, mode="lines", line=dict(color=colour, width=6), name=label,
                        legendgroup=label, text=hover, hoverinfo="text")
    ends = go.Scatter3d(x=x[[0, -1]], y=y[[0, -1]], z=z[[0, -1]], mode="markers", legendgroup=label,
                        showlegend=False, text=hover[[0, -1]], hoverinfo="text",
                        marker=dict(size=[5, 8], symbol=["circle", "diamond"], color=colour,
                                    line=dict(color="black", width=1)))
    return [path, ends]


def runs_page(surface, runs, path, title) -> Path:
    """mlp_multi_seed.html / optimizer_comparison.html: see runs_figure."""
    return write_page(runs_figure(surface, runs, title), path, title)


INDEX_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f4; }
header { background: #22313f; color: #fff; padding: 24px 40px; }
header h1 { margin: 0 0 4px; font-size: 26px; } header p { margin: 0; opacity: 0.85; }
main { padding: 8px 40px 40px; max-width: 1500px; }
h2 { margin: 32px 0 12px; font-size: 19px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.pages { display: flex; flex-wrap: wrap; gap: 12px; }
.pages a { background: #fff; border: 1px solid #ccd; border-radius: 8px; padding: 10px 16px; text-decoration: none;
           color: #0b5cad; font-weight: 600; } .pages a span { display: block; color: #555; font-weight: 400; font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 18px; }
figure { margin: 0; background: #fff; border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px; }
figure img { width: 100%; height: auto; display: block; } figcaption { font-size: 13px; color: #444; margin-top: 6px; }
table { border-collapse: collapse; background: #fff; margin: 0 24px 16px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 8px 32px; } .tables h3 { margin: 4px 0; font-size: 15px; }
details { margin-top: 12px; } summary { cursor: pointer; font-weight: 600; }
"""


def index_page(path, title, subtitle, images, gifs, pages, numbers, config) -> Path:
    """The page a user opens first: links to the interactive pages, every figure inline, the numbers.

    images, gifs, pages: lists of (file name relative to the page, caption); numbers: {section:
    [(name, value), ...]}; config: {field: value}. No script and no resource outside the folder.
    """
    esc = html.escape
    links = "".join(f'<a href="{esc(name)}">{esc(name)}<span>{esc(caption)}</span></a>' for name, caption in pages)
    figures = lambda items: "".join(  # noqa: E731
        f'<figure><a href="{esc(n)}"><img src="{esc(n)}" alt="{esc(c)}" loading="lazy"></a>'
        f'<figcaption><b>{esc(n)}</b>: {esc(c)}</figcaption></figure>' for n, c in items)
    tables = "".join(f"<div><h3>{esc(section)}</h3>{_table(rows)}</div>" for section, rows in numbers.items())
    body = (f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>"
            f"<h2>Interactive pages</h2><div class='pages'>{links}</div>"
            f"<h2>The run's numbers</h2><div class='tables'>{tables}</div>"
            f"<h2>Animations</h2><div class='grid'>{figures(gifs)}</div>"
            f"<h2>Figures</h2><div class='grid'>{figures(images)}</div>"
            f"<details><summary>Configuration of this run</summary>{_table(list(config.items()))}</details></main>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{INDEX_CSS}</style>"
            f"</head><body>{body}</body></html>\n")
    return write_text(path, page)


def _table(rows) -> str:
    """rows: a list of (name, value) pairs or a dict; floats get 4 significant digits."""
    rows = rows.items() if isinstance(rows, dict) else rows
    cells = "".join(f"<tr><td>{html.escape(str(name))}</td>{_cell(value)}</tr>" for name, value in rows)
    return f"<table>{cells}</table>"


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(_format(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_format(v)}" for k, v in value.items())
    return str(value)


def _cell(value) -> str:
    numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    return f"<td class='num'>{html.escape(_format(value))}</td>" if numeric else f"<td>{html.escape(_format(value))}</td>"
