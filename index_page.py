"""The index page a user opens first: the hero figure, the findings, every file, the numbers collapsed."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

import findings
from outputs import write_text

INDEX_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f4; }
header { background: #22313f; color: #fff; padding: 14px 32px; } header h1 { margin: 0; font-size: 24px; }
header p { margin: 0; opacity: 0.85; } main { padding: 16px 32px 40px; max-width: 1600px; }
h2 { margin: 28px 0 10px; font-size: 19px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.hero { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 24px; align-items: start; }
.hero img { max-height: calc(100vh - 130px); object-fit: contain; } .findings { font-size: 16px; }
.findings h2 { margin-top: 0; } .findings li { margin-bottom: 8px; }
.pages { display: flex; flex-wrap: wrap; gap: 10px; }
.pages a { background: #fff; border: 1px solid #ccd; border-radius: 8px; padding: 8px 14px; text-decoration: none;
           color: #0b5cad; font-weight: 600; } .pages a span { display: block; color: #555; font-weight: 400; font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 560px), 1fr)); gap: 18px; }
.grid .wide { grid-column: 1 / -1; } .grid { grid-auto-flow: row dense; }  /* squares fill the gaps */
figure { margin: 0; background: #fff; border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px; }
figure img { width: 100%; height: auto; display: block; } figcaption { font-size: 13px; color: #444; margin-top: 6px; }
a, figcaption, li, pre { overflow-wrap: anywhere; } td { overflow-wrap: break-word; } .scroll { overflow-x: auto; max-width: 100%; min-width: 0; }
table { border-collapse: collapse; background: #fff; margin: 0 24px 16px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 8px 32px; } .tables h3 { margin: 4px 0; font-size: 15px; }
details { margin-top: 12px; } summary { cursor: pointer; font-weight: 600; } pre { white-space: pre-wrap; font-size: 12px; }
@media (max-width: 900px) { .hero { grid-template-columns: minmax(0, 1fr); } header, main { padding-left: 14px; padding-right: 14px; } }
"""
HERO = ("mlp_3d.png", "mlp_contour.png", "logistic_3d.png", "logistic_contour.png")  # the first one present leads
WIDE = {"optimizer_comparison.png", "lr_sensitivity.png", "mlp_multi_seed.png", "plane_choice.png", "sharpness.png",
        "mlp_pca_vs_isomap.png", "interpolation_1d.png", "hessian_spectrum.png"}  # comparison figures: a row each


def write_index(path, title, subtitle, images, gifs, pages, numbers, config, summary=None, lead=HERO) -> Path:
    """The results page a user opens first: the hero figure and the run's headline findings, then the
    interactive pages, every figure (comparison figures a full row each) and the animations; numbers,
    timings, model and config collapsed, with a link to summary.json. No script, nothing outside the folder.

    images, gifs, pages: lists of (file name relative to the page, caption); numbers: {section:
    [(name, value), ...]}; config: {field: value}; summary: summary.json's dict (findings, model,
    skipped figures, timings), optional. lead: file names, the first one in images leads the page.
    """
    esc, folder, summary = html.escape, Path(path).parent, summary or {}
    hero = next((item for name in lead for item in images if item[0] == name), images[0] if images else None)
    rest = [item for item in images if item is not hero]
    lines = "".join(f"<li>{esc(line)}</li>" for line in findings.headline_findings(summary))
    skipped = "".join(f"<li><b>{esc(n)}</b>: {esc(str(why))}</li>" for n, why in summary.get("skipped", {}).items())
    links = "".join(f'<a href="{esc(name)}">{esc(name)}<span>{esc(caption)}</span></a>' for name, caption in pages)
    top = (f"<section class='hero'>{_figure(folder, *hero, lazy=False) if hero else ''}<div class='findings'>"
           + (f"<h2>What this run shows</h2><ol>{lines}</ol>" if lines else "")
           + (f"<h2>Not drawn in this run</h2><ul>{skipped}</ul>" if skipped else "") + "</div></section>")
    body = (f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>{top}"
            + (f"<h2>Interactive pages</h2><div class='pages'>{links}</div>" if links else "")
            + (f"<h2>Figures</h2><div class='grid'>{''.join(_figure(folder, *i) for i in rest)}</div>" if rest else "")
            + (f"<h2>Animations</h2><div class='grid'>{''.join(_figure(folder, *i) for i in gifs)}</div>" if gifs else "")
            + _collapsed(numbers, config, summary) + "</main>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{INDEX_CSS}</style>"
            f"</head><body>{body}</body></html>\n")
    return write_text(path, page)


def _figure(folder: Path, name: str, caption: str, lazy: bool = True) -> str:
    """One figure linking to its file; wide ones (WIDE, or wider than 1.6:1) take a whole row."""
    esc, size = html.escape, image_size(folder / name)
    wide = name in WIDE or (size is not None and size[0] > 1.6 * size[1])
    dims = f" width='{size[0]}' height='{size[1]}'" if size else ""  # the page does not jump as images load
    return (f"<figure{' class=wide' if wide else ''}><a href='{esc(name)}'><img src='{esc(name)}' alt='{esc(caption)}'"
            f"{dims}{' loading=lazy' if lazy else ''}></a><figcaption><b>{esc(name)}</b>: {esc(caption)}"
            f"</figcaption></figure>")


def image_size(path: Path):
    """(width, height) of a PNG or GIF from its header, or None (missing, or another format)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:4] == b"GIF8":
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    return None


def _collapsed(numbers: dict, config: dict, summary: dict) -> str:
    """The details a reader opens on purpose: model, numbers (with summary.json), timings, config.
    Without numbers of its own the page shows summary.json's, rounded (findings.number_tables)."""
    esc, model, parts = html.escape, summary.get("model"), []
    numbers = numbers or findings.number_tables(summary)
    if model:
        facts = {"loss": model.get("loss"), "classes": model.get("n_classes"), "parameters": model.get("parameters")}
        parts.append(f"<details><summary>Model: {esc(str(model.get('kind', '')))}</summary>"
                     f"{_table({k: v for k, v in facts.items() if v is not None})}"
                     f"<pre>{esc(str(model.get('description', '')))}</pre></details>")
    tables = "".join(f"<div class='scroll'><h3>{esc(section)}</h3>{_table(rows)}</div>" for section, rows in numbers.items())
    parts.append(f"<details><summary>The run's numbers</summary><p>Every number of this run: "
                 f"<a href='summary.json'>summary.json</a></p><div class='tables'>{tables}</div></details>")
    if summary.get("timings_s"):
        parts.append(f"<details><summary>Timings (s)</summary><div class='scroll'>{_table(summary['timings_s'])}"
                     f"</div></details>")
    parts.append(f"<details><summary>Configuration of this run</summary><div class='scroll'>{_table(config)}"
                 f"</div></details>")
    return "<h2>Details</h2>" + "".join(parts)


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
