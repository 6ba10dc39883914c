"""Headline findings of a run in plain sentences, written from summary.json's numbers."""
from __future__ import annotations

import math

REACHED = 0.9  # λmax within 10% of 2/lr counts as reaching the stability line (it hovers there, Cohen et al.)
PAST = 1.5  # a peak beyond 1.5x the line went past it: the step overshoots there, it does not hover
AT_START = 1.01  # a peak within 1% of λmax at initialisation is that value: sharpness never climbed
CONVEX_TOL = 1e-3  # |λmin| below this share of λmax is within the eigensolver's error (eigensolver.END_TOL): convex
MAX_FINDINGS = 6
ORDINALS = {2: "second", 3: "third"}
SHADOWS_LISTED = 3  # planes named in the shadows finding; the rest are counted
SHARED_PLANES = ("optimizers", "lr_sensitivity")  # planes several runs share: their shadows are named first
PLANE_NAMES = {"optimizers": "optimiser", "lr_sensitivity": "learning-rate", "plane_choice/pca": "plane-choice PCA",
               "plane_choice/filter_pca": "filter-normalised PCA", "three_minima": "three-minima",
               "hessian_top2": "top-two Hessian eigenvector"}  # summary.json's keys as a reader names the planes


def readable(x) -> str:
    """A number rounded for reading: 3 significant digits, integers from 100 on, 2.8e-7 for tiny values."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{round(x):,}"
    if abs(x) < 1e-3:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{x:.3g}"


def percent(fraction) -> str:
    """0.0312 -> '3.1%'; one decimal below 10%, whole percents above."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    value = 100 * fraction
    return f"{value:.1f}%" if abs(value) < 10 else f"{value:.0f}%"


def eigen_text(lam_min, lam_max) -> str:
    """λmin for reading: '≈ 0 (convex)' when it is rounding noise next to λmax."""
    if lam_min is not None and lam_max and abs(lam_min) <= CONVEX_TOL * abs(lam_max):
        return "≈ 0 (convex)"
    return readable(lam_min)


def headline_findings(summary: dict) -> list[str]:
    """Up to MAX_FINDINGS sentences; a finding whose numbers are missing is left out."""
    writers = (final_loss_finding, convexity_finding, optimizer_finding, stability_finding, plane_finding,
               barrier_finding)
    sentences = []
    for write in writers:
        try:
            sentence = write(summary)
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
            sentence = None  # a stage was skipped or a number is null: no sentence rather than a wrong one
        if sentence:
            sentences.append(sentence)
    return sentences[:MAX_FINDINGS]


def main_key(summary: dict) -> str:
    """The main model's key in runs, planes and curvature: "mlp", "cnn" or "model" (a user's own module)."""
    return summary.get("model", {}).get("key", "mlp")


def model_name(summary: dict) -> str:
    """'the MLP', 'the CNN', or 'the model' for a user's own module."""
    return {"mlp": "the MLP", "cnn": "the CNN"}.get(main_key(summary), "the model")


def metric_name(loss: str | None) -> str:
    """What models.finish_metric computes for a loss: R² for mse (regression), accuracy otherwise."""
    return "R²" if loss == "mse" else "accuracy"


def baseline_title(loss: str | None) -> str:
    """The linear baseline: logistic regression, or linear regression where it is fitted by squared error."""
    return "linear regression" if loss == "mse" else "logistic regression"


def baseline_name(summary: dict) -> str:
    return baseline_title(summary.get("model", {}).get("loss"))


def metric_label(summary: dict) -> str:
    """The runs' second number in this summary: accuracy, or R² for regression."""
    return metric_name(summary.get("model", {}).get("loss"))


def metric_text(summary: dict, value) -> str:
    """'accuracy 93%', or 'R² 0.49' for regression (R² can be negative: a fraction, not a share)."""
    label = metric_label(summary)
    return f"{label} {readable(value) if label == 'R²' else percent(value)}"


def final_loss_finding(summary: dict) -> str | None:
    """Where the main model and the logistic baseline ended, averaged over seeds."""
    runs = summary["runs"]
    parts = []
    for kind, name in ((main_key(summary), model_name(summary)), ("logistic", baseline_name(summary))):
        finals = [r["final_loss"] for r in runs.get(kind, []) if r.get("final_loss") is not None]
        if finals:
            accs = [r["final_accuracy"] for r in runs[kind] if r.get("final_accuracy") is not None]
            acc = f" ({metric_text(summary, sum(accs) / len(accs))})" if accs else ""
            seeds = f", mean of {len(finals)} seeds" if len(finals) > 1 else ""
            parts.append(f"{name} to {readable(sum(finals) / len(finals))}{acc}{seeds}")
    return f"Training loss fell: {' and '.join(parts)}." if parts else None


def convexity_finding(summary: dict) -> str | None:
    """λmin of each model: ≈ 0 for a convex model, clearly negative for a non-convex one."""
    curvature = summary["curvature"]
    parts = []
    for kind, name in (("logistic", baseline_name(summary)), (main_key(summary), model_name(summary))):
        c = curvature.get(kind)
        if c and c.get("lambda_min_lowest") is not None:
            text = eigen_text(c["lambda_min_lowest"], c.get("lambda_max_peak"))
            shape = "" if "convex" in text else (" (non-convex)" if c["lambda_min_lowest"] < 0 else "")
            parts.append(f"{name} {text}{shape}")
    return f"Lowest Hessian eigenvalue λmin along the path: {'; '.join(parts)}." if parts else None


def directness(label: str, runs: dict) -> str:
    """How straight label's path was against the other runs' (efficiency: straight distance / path length):
    a ranking, because an absolute word ("fairly direct") read as praise for the least direct of three."""
    mine = runs[label]["efficiency"]
    others = [s["efficiency"] for other, s in runs.items()
              if other != label and s.get("efficiency") is not None and math.isfinite(s["efficiency"])]
    if not others or not math.isfinite(mine):  # nothing to rank against
        return f"a path of efficiency {readable(mine)} (straight distance / path length)"
    rank = 1 + sum(e > mine for e in others)
    place = ("straightest" if rank == 1 else "least straight" if rank == len(others) + 1
             else f"{ORDINALS.get(rank, f'{rank}th')} straightest")
    against = ", ".join(readable(e) for e in others)
    return f"the {place} path (efficiency {readable(mine)} against {against}: straight distance / path length)"


def optimizer_finding(summary: dict) -> str | None:
    """The optimiser that ended lowest, and how straight its path was (straight distance / path length)."""
    finished = {label: s for label, s in summary["optimizers"].items()
                if not s.get("diverged") and s.get("final_loss") is not None}
    if not finished:
        return None
    best = min(finished, key=lambda label: finished[label]["final_loss"])
    others = "; ".join(f"{label} at {readable(s['final_loss'])}" for label, s in finished.items() if label != best)
    s = finished[best]
    way = f" by {directness(best, finished)}" if s.get("efficiency") is not None else ""
    diverged = [label for label, run in summary["optimizers"].items() if run.get("diverged")]
    return (f"{best} ended lowest at loss {readable(s['final_loss'])}{way}"
            + (f"; {others}" if others else "") + (f"; {', '.join(diverged)} diverged" if diverged else "") + ".")


def stability_finding(summary: dict) -> str | None:
    """Whether sharpness λmax climbed to the stability line 2/lr, per learning rate."""
    runs = summary["curvature"].get("lr_sensitivity") or {}
    rows = [(c["lr"], c["lambda_max_peak"], c["stability_line"]) for c in runs.values()
            if c.get("stability_line") and c.get("lambda_max_peak") is not None]
    if not rows:
        c = summary["curvature"][main_key(summary)]
        if not c.get("stability_line") or c.get("lambda_max_peak") is None:
            return None
        return (f"λmax of {model_name(summary)} peaked at {readable(c['lambda_max_peak'])}, "
                f"{percent(c['lambda_max_peak'] / c['stability_line'])} of its stability line "
                f"{c.get('stability_label') or 'of ' + readable(c['stability_line'])}.")
    rows.sort()
    detail = "; ".join(f"lr {readable(lr)}: peak {readable(peak)} vs {readable(line)}" for lr, peak, line in rows)
    # a run that starts at or over its line did not climb to it (sharpness only fell): said apart
    starts = {c["lr"]: c.get("lambda_max_start") for c in runs.values()}
    began = [lr for lr, peak, line in rows if peak >= REACHED * line and starts.get(lr) is not None
             and peak <= AT_START * starts[lr]]
    rows = [row for row in rows if row[0] not in began]
    reached = [lr for lr, peak, line in rows if REACHED * line <= peak <= PAST * line]
    past = [(lr, peak / line) for lr, peak, line in rows if peak > PAST * line]
    if not reached and not past and not began:
        return f"λmax stayed below the stability line 2/lr at every learning rate ({detail})."
    parts = [f"reached the stability line 2/lr at lr {', '.join(readable(lr) for lr in reached)}"] if reached else []
    if past:
        parts.append(f"went past {'it' if reached else 'the stability line 2/lr'} at lr "
                     + ", ".join(f"{readable(lr)} ({readable(ratio)}x the line)" for lr, ratio in past))
    if began:
        parts.append(f"{'was' if parts else 'was already'} at or over {'it' if parts else 'the stability line 2/lr'} "
                     f"from initialisation at lr {', '.join(readable(lr) for lr in began)}, never climbing higher")
    below = len(reached) + len(past) < len(rows)
    return f"λmax {' and '.join(parts)}{' and stayed below it elsewhere' if below else ''} ({detail})."


def plane_finding(summary: dict) -> str | None:
    """How far the main path leaves its own plane, and which runs the other planes show only as shadows
    (a random plane is for sharpness, never for paths: left out)."""
    planes, main = summary["planes"], main_key(summary)
    parts = []
    own = planes.get(main, {}).get("runs", {})
    if own:
        worst = max(r["residual_mean"] for r in own.values())
        parts.append(f"{model_name(summary)}'s path lies {percent(worst)} off its PCA plane on average")
    shared_first = sorted(planes, key=lambda name: name not in SHARED_PLANES)  # the studies' planes lead
    others = {name: planes[name] for name in shared_first if name != main and planes[name].get("kind") != "random"
              and "random" not in name}
    shadows = [_shadow_text(plane_name(name), plane["runs"]) for name, plane in others.items()
               if any(r.get("drawn", "surface") != "surface" for r in plane.get("runs", {}).values())]
    if shadows:
        extra = len(shadows) - SHADOWS_LISTED
        more = f" and {extra} more plane{'s' if extra > 1 else ''}" if extra > 0 else ""
        parts.append("where runs leave their plane they are drawn as dashed shadows: "
                     + ", ".join(shadows[:SHADOWS_LISTED]) + more)
    elif any(p.get("runs") for p in others.values()):
        parts.append("every run of the other planes lies on its plane")
    return (parts[0][0].upper() + "; ".join(parts)[1:] + ".") if parts else None


def _shadow_text(name: str, runs: dict) -> str:
    """'Adam on the optimizers plane (45% off)' for one shadow, '2 of 3 runs on the optimizers plane' for more."""
    off = {label: r for label, r in runs.items() if r.get("drawn", "surface") != "surface"}
    if len(off) > 1:
        wholly = sum(r.get("drawn") == "shadow" for r in off.values())
        return (f"{len(off)} of {len(runs)} runs on the {name} plane"
                + (f" ({wholly} wholly)" if 0 < wholly < len(off) else " (wholly)" if wholly else " (in part)"))
    (label, r), = off.items()
    partly = ", partly" if r.get("drawn") == "partial" else ""
    where = "its own plane" if name == plane_name(label) else f"the {name} plane"  # a seed on its own plane
    return f"{label} on {where} ({percent(r.get('residual_mean'))} off{partly})"


def plane_name(key: str) -> str:
    """A planes key of summary.json as the findings name it: 'optimizers' -> 'optimiser', 'seed 3' -> "seed 3's own"."""
    return PLANE_NAMES.get(key, f"{key}'s own" if key.startswith("seed ") else key)


def barrier_finding(summary: dict) -> str | None:
    """The largest loss barrier on the straight line between two seeds' minima."""
    pairs = {pair: c for pair, c in summary["mode_connectivity"].items() if c.get("barrier") is not None}
    if not pairs:
        return None
    pair = max(pairs, key=lambda p: pairs[p]["barrier"])
    barrier, ends = pairs[pair]["barrier"], pairs[pair]["end_losses"]
    end = sum(ends) / len(ends)
    verdict = ("separate basins" if barrier > end else "linearly connected" if barrier < 0.1 * max(end, 1e-3)
               else "a low ridge between them")
    among = f", the highest of all {len(pairs)} pairs" if len(pairs) > 3 else ""  # the figure draws three seeds' pairs
    return (f"Between seeds' minima the straight line rises at most {readable(barrier)} above its ends "
            f"({pair}{among}, end losses about {readable(end)}): {verdict}.")


def number_tables(summary: dict) -> dict:
    """The run's main numbers as {section: [(name, text), ...]} for index.html, rounded for reading;
    a section whose keys are missing is left out (summary.json keeps every digit)."""
    builders = {f"final loss and {metric_label(summary)}": _run_rows, "optimisers": _optimizer_rows,
                "planes": _plane_rows, "curvature": _curvature_rows, "barriers between minima": _barrier_rows}
    tables = {}
    for section, rows_of in builders.items():
        try:
            rows = rows_of(summary)
        except (KeyError, TypeError, ValueError, AttributeError):
            rows = []  # a stage was skipped: no table rather than a wrong one
        if rows:
            tables[section] = rows
    return tables


def _run_rows(summary: dict) -> list:
    return [(f"{group} {r['label']}",
             f"loss {readable(r.get('final_loss'))}, {metric_text(summary, r.get('final_accuracy'))}"
             + (" (diverged)" if r.get("diverged") else "")) for group, runs in summary["runs"].items() for r in runs]


def _optimizer_rows(summary: dict) -> list:
    return [(label, f"loss {readable(s.get('initial_loss'))} → {readable(s.get('final_loss'))}, "
                    f"efficiency {readable(s.get('efficiency'))}") for label, s in summary["optimizers"].items()]


def _plane_rows(summary: dict) -> list:
    rows = []
    for name, plane in summary["planes"].items():
        explained = plane.get("explained_variance") or []
        rows += [(name, "explained " + " + ".join(percent(e) for e in explained))] if explained else []
        rows += [(f"{name} / {label}", f"residual {percent(r.get('residual_mean'))}, {r.get('drawn', 'surface')}")
                 for label, r in plane.get("runs", {}).items()]
    return rows


def _curvature_rows(summary: dict) -> list:
    curvature = summary["curvature"]
    runs = [(kind, curvature[kind]) for kind in (main_key(summary), "logistic") if kind in curvature]
    runs += list((curvature.get("lr_sensitivity") or {}).items())
    return [(name, f"λmax {readable(c.get('lambda_max_start'))} → {readable(c.get('lambda_max_end'))} "
                   f"(peak {readable(c.get('lambda_max_peak'))}), λmin lowest "
                   f"{eigen_text(c.get('lambda_min_lowest'), c.get('lambda_max_peak'))}"
                   + (f", stability line {readable(c['stability_line'])}" if c.get("stability_line") else ""))
            for name, c in runs]


def _barrier_rows(summary: dict) -> list:
    return [(pair, f"barrier {readable(c.get('barrier'))}, highest loss {readable(c.get('max_loss'))}")
            for pair, c in summary["mode_connectivity"].items()]
