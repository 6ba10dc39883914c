"""The run's numbers: summary.json (and merging a partial one) and the console report."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from findings import baseline_name, metric_label, model_name
from training import path_statistics


def summarize(results: dict, timings: dict, cache=None) -> dict:
    """The run's numbers, as defined in the README: every value finite or null."""
    cfg, runs, scapes, curvature = (results[k] for k in ("cfg", "runs", "scapes", "curvature"))
    main, data, fm = results["main"], results["data"], results["fms"][results["main"]]
    summary = {"config": dataclasses.asdict(cfg),
               "dataset": {"name": data.name, "n_samples": len(data.y), "n_features": data.n_features},
               "model": {"key": main, "kind": cfg.model, "loss": fm.loss_kind, "n_classes": data.n_classes,
                         "parameters": fm.dim, "description": repr(fm.module),
                         "evaluation": "eval mode, buffers (BatchNorm statistics) of each plane's centre"
                         if len(fm.buffers) else "eval mode"}}
    summary["runs"] = {group: [run_numbers(r) for r in group_runs] for group, group_runs in runs.items()}
    for study in ("optimizers", "lr_sensitivity"):
        if study in runs:
            summary[study] = {r.label: path_statistics(r.trajectory) for r in runs[study]}
    summary["planes"] = plane_table(scapes)
    if "mode_connectivity" in scapes:
        summary["mode_connectivity"] = {pair: {k: line[k] for k in ("barrier", "end_losses", "max_loss")}
                                        for pair, line in scapes["mode_connectivity"]["lines"].items()}
    summary["curvature"] = {kind: curvature_numbers(curvature[kind], runs[kind][0]) for kind in (main, "logistic")
                            if kind in curvature}
    if "lr_sensitivity" in curvature:
        summary["curvature"]["lr_sensitivity"] = {run.label: {**curvature_numbers(c, run), "lr": run.spec.lr}
                                                  for run, c in zip(runs["lr_sensitivity"], curvature["lr_sensitivity"])}
    if "extras" in curvature and main in summary["curvature"]:
        extras = curvature["extras"]
        summary["curvature"][main].update(trace_start=float(extras["trace"][0]), trace_end=float(extras["trace"][-1]),
                                          trace_along={"steps": extras["trace_steps"], "trace": extras["trace"]},
                                          top_eigenvalues=extras["top_values"])
    if "eigen_ratio" in curvature:
        ratio = curvature["eigen_ratio"][2]
        summary["curvature"]["eigen_ratio"] = {"resolution": cfg.curvature_resolution,
                                               "max": _finite(np.nanmax(ratio)), "mean": _finite(np.nanmean(ratio))}
    if results["embeddings"]:
        e = results["embeddings"]
        summary["embeddings"] = {"trustworthiness_pca": e["trust_pca"], "trustworthiness_isomap": e["trust_isomap"]}
    summary["gifs"] = results.get("gifs", {})
    summary["skipped"] = results.get("skipped", {})
    summary["ranks"] = results["ranks"]
    if cache is not None:
        summary["cache"] = {"hits": cache.hits, "misses": cache.misses}
    summary["timings_s"] = timings
    return _clean(summary)


def run_numbers(run) -> dict:
    t = run.trajectory
    return {"label": run.label, "optimizer": run.spec.optimizer, "lr": run.spec.lr, "momentum": run.spec.momentum,
            "batch_size": run.batch_size, "initial_loss": float(t.losses[0]), "final_loss": float(t.losses[-1]),
            "final_accuracy": float(t.accuracies[-1]), "epochs": len(t) - 1, "diverged": t.diverged,
            "grad_norm_initial": run.grad_norms[0], "grad_norm_final": run.grad_norms[1]}


def named_landscapes(scapes: dict) -> dict:
    """Every Landscape by its summary name: 'mlp', 'optimizers', 'seed 3', 'plane_choice/random', ..."""
    named = {}
    for name, value in scapes.items():
        if name in ("seeds", "plane_choice"):
            prefix = "" if name == "seeds" else "plane_choice/"
            named.update({prefix + sub: scape for sub, scape in value.items()})
        elif name == "three_minima" or hasattr(value, "surface"):
            named[name] = value
    return named


def plane_table(scapes: dict) -> dict:
    """Per plane: its kind, explained variance, grid and surface range, and per run residual, gap and drawn."""
    table = {}
    for name, scape in named_landscapes(scapes).items():
        surface = scape.surface
        table[name] = {"kind": surface.plane.kind,
                       "explained_variance": list(surface.plane.explained) if surface.plane.kind == "pca" else None,
                       "grid": [len(surface.alphas), len(surface.betas)],
                       "surface_loss_min": _finite(np.nanmin(surface.loss)),
                       "surface_loss_max": _finite(np.nanmax(surface.loss)),
                       "runs": {p.run.label: p.numbers() for p in scape.paths}}
    return table


def curvature_numbers(c, run) -> dict:
    import stages
    lam_max, lam_min = np.asarray(c.lam_max), np.asarray(c.lam_min)
    line = stages.stability_line(run.spec, run.batch_size)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():  # NaN where a run blew up
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"lambda_max_start": float(lam_max[0]), "lambda_max_end": float(lam_max[-1]),
                "lambda_max_peak": float(np.nanmax(lam_max)), "lambda_min_lowest": float(np.nanmin(lam_min)),
                "lambda_min_end": float(lam_min[-1]), "stability_line": None if line is None else line[0],
                "stability_label": None if line is None else line[1], "checkpoints": len(lam_max)}


def merge_summary(path, partial: dict) -> dict:
    """A partial run (--only/--skip) updates the keys it computed and keeps the rest of the last full summary."""
    import json
    try:
        old = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return partial
    merged = {**old, **{k: v for k, v in partial.items() if v not in ({}, None)}}
    for key in ("planes", "curvature", "runs"):
        if isinstance(old.get(key), dict) and isinstance(partial.get(key), dict):
            merged[key] = {**old[key], **partial[key]}
    return merged


def _finite(x):
    x = float(x)
    return x if np.isfinite(x) else None


def _clean(value):
    """NaN and inf become null so summary.json is strict JSON; tuples become lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if hasattr(value, "tolist"):  # numpy and torch arrays and scalars
        return _clean(value.tolist())
    return value




# ---------------------------------------------------------------- console

def print_report(summary: dict, written: list, out) -> None:
    """A compact table of the run's numbers and where to look next."""
    print()
    main = summary["model"]["key"]
    # the keys are file names ("logistic" even for the least-squares baseline); the reader gets the model's name
    shown = {"logistic": baseline_name(summary), main: model_name(summary).removeprefix("the ")}
    width = max(map(len, shown.values()))
    planes = {**shown, "optimizers": "optimisers", "lr_sensitivity": "learning rates"}
    for kind in ("logistic", main):
        runs = summary["runs"][kind]
        finals = np.array([r["final_loss"] for r in runs], float)
        accs = np.array([r["final_accuracy"] for r in runs], float)
        diverged = sum(r["diverged"] for r in runs)
        seeds = f"{len(runs)} seed{'s' * (len(runs) != 1)}"
        print(f"  {shown[kind]:<{width}}  final loss over {seeds}: mean {np.nanmean(finals):.4g}, std "
              f"{np.nanstd(finals):.2g}; {metric_label(summary)} {np.nanmean(accs):.3f}"
              + (f"  ({diverged} diverged)" if diverged else ""))
    if "optimizers" in summary:
        names = {label: label + (" (diverged)" if s.get("diverged") else "")
                 for label, s in summary["optimizers"].items()}
        width = max(map(len, names.values())) + 2
        print(f"\n  {'optimiser':<{width}}{'initial':>10}{'final':>10}{'improv.':>11}{'path':>10}{'straight':>10}"
              f"{'effic.':>8}")
        for label, s in summary["optimizers"].items():  # .4g: a diverged run's 3e17 stays in its column
            print(f"  {names[label]:<{width}}{s['initial_loss'] or float('nan'):>10.4g}"
                  f"{s['final_loss'] or float('nan'):>10.4g}{s['improvement_pct'] or float('nan'):>10.4g}%"
                  f"{s['path_length'] or float('nan'):>10.4g}{s['straight_distance'] or float('nan'):>10.4g}"
                  f"{s['efficiency'] or float('nan'):>8.2f}")
    print()
    for name, p in summary["planes"].items():
        for label, r in p["runs"].items():
            if name in planes:
                share = 100 * r["on_surface_share"]  # under 1 %: often the shared start alone, so say how little
                drawn = {"surface": "on the surface", "shadow": "as a shadow"}.get(
                    r["drawn"], f"on the surface for {share:.{0 if share >= 1 else 1}f}% of checkpoints, else a shadow")
                gap = f"gap {r['gap_max']:.3f} where on the surface" if r["drawn"] != "shadow" else "gap -"
                print(f"  plane {planes[name]:<19} {label:<26} residual {100 * r['residual_mean']:5.1f}%  {gap}  "
                      f"drawn {drawn}")
    files = f"{len(written) + 1} files, summary.json included" if written else "summary.json only"
    print(f"\n  {files}, in {out}/ in {summary['timings_s']['total']:.1f} s")
    index = Path(out) / "index.html"
    if index.exists():
        print(f"  open {index.resolve()}")
