"""Everything the pipeline writes: summary numbers, PNGs, GIFs, HTML pages and the console report."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from config import wants
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




# ---------------------------------------------------------------- files

MODEL_TITLES = {"logistic": "logistic regression", "mlp": "MLP"}


def plane_paths(scape) -> list:
    """The runs of a landscape as the comparison figures draw them."""
    import visualization as vis
    return [vis.PlanePath(p.coords, _np(p.run.losses), p.run.label, p.run.diverged, _np(p.run.steps))
            for p in scape.paths]


def write_figures(out, results) -> list:
    """Every PNG of the gallery whose data was computed; returns the paths written."""
    import visualization as vis
    from outputs import output_path
    cfg, scapes, curvature = results["cfg"], results["scapes"], results["curvature"]
    written = []
    for kind in ("logistic", "mlp") if wants(cfg, "surfaces") else ():
        scape, title = scapes[kind], MODEL_TITLES[kind]
        p = scape.paths[0]
        written.append(vis.plot_surface_3d(
            scape.surface, p.coords, p.surface_loss, _np(p.run.losses), p.grads,
            f"{title}: training loss on the PCA plane, gradient descent lr {cfg.lr:g}",
            output_path(out, f"{kind}_3d.png"), residual=p.residual))
        written.append(vis.plot_contour(
            scape.surface, [(p.coords, f"gradient descent, lr {cfg.lr:g}")], p.grads,
            f"{title}: loss contours on the PCA plane", output_path(out, f"{kind}_contour.png"),
            residual=p.residual))
    comparisons = {"multi_seed": ("mlp_multi_seed.png", f"MLP: {len(cfg.seed_list)} initialisations on one plane", None),
                   "optimizers": ("optimizer_comparison.png", "MLP: optimisers from one initialisation", True),
                   "lr_sensitivity": ("lr_sensitivity.png", "MLP: SGD at several learning rates", None)}
    for name, (filename, title, log_curves) in comparisons.items():
        if name in scapes and wants(cfg, name):
            residual = np.concatenate([p.residual for p in scapes[name].paths])
            written.append(vis.plot_runs(scapes[name].surface, plane_paths(scapes[name]), title,
                                         output_path(out, filename), residual=residual, log_curves=log_curves))
    if "mlp" in curvature and wants(cfg, "curvature"):
        c, run = curvature["mlp"], results["runs"]["mlp"][0]
        written.append(vis.plot_curvature(
            _np(run.steps)[c.indices], c.lam_max, c.lam_min, cfg.lr, "MLP: Hessian extremes along gradient descent",
            output_path(out, "mlp_curvature.png"), losses=_np(run.losses), loss_steps=_np(run.steps)))
    if "lr_sensitivity" in curvature:
        lr_runs = [(_np(run.steps)[c.indices], c.lam_max, run.lr, run.label)
                   for run, c in zip(results["runs"]["lr_sensitivity"], curvature["lr_sensitivity"])]
        written.append(vis.plot_edge_of_stability(lr_runs, "MLP: sharpness λ_max under gradient descent at "
                                                  "several learning rates", output_path(out, "edge_of_stability.png")))
    if results["embeddings"]:
        e = results["embeddings"]
        written.append(vis.plot_pca_vs_isomap(
            e["pca"], e["isomap"], e["losses"], e["points_per_run"], e["trust_pca"], e["trust_isomap"],
            f"MLP checkpoints of {len(e['points_per_run'])} seeds: PCA vs Isomap",
            output_path(out, "mlp_pca_vs_isomap.png")))
    if results["lines"]:
        lines = {MODEL_TITLES[k]: v for k, v in results["lines"]["lines"].items()}
        written.append(vis.plot_interpolation(results["lines"]["ts"], lines,
                                              "Loss along the straight line from initial to final weights",
                                              output_path(out, "interpolation_1d.png")))
    if "eigen_ratio" in curvature:
        alphas, betas, ratio = curvature["eigen_ratio"]
        scape = scapes["mlp"]
        written.append(vis.plot_eigen_ratio(alphas, betas, ratio, scape.paths[0].coords,
                                            scape.surface.plane.axis_labels(), "MLP: convexity map |λmin/λmax|",
                                            output_path(out, "mlp_eigen_ratio.png"), surface=scape.surface))
    return written


def write_animations(out, results) -> list:
    """The two descent GIFs and the optimiser race; seconds per frame go to results["gifs"]."""
    import animations
    from outputs import output_path
    cfg, scapes = results["cfg"], results["scapes"]
    frames = dict(n_frames=cfg.gif_frames, frame_ms=cfg.gif_frame_ms)
    jobs = [lambda kind=kind: animations.descent_gif(
        scapes[kind].surface, scapes[kind].paths[0].coords, scapes[kind].paths[0].surface_loss,
        _np(scapes[kind].paths[0].run.losses), _np(scapes[kind].paths[0].run.steps),
        output_path(out, f"{kind}_descent.gif"), f"{MODEL_TITLES[kind]}: gradient descent, lr {cfg.lr:g}", **frames)
        for kind in ("logistic", "mlp")]
    if "optimizers" in scapes:
        runs = [(p.coords, _np(p.run.losses), p.run.label) for p in scapes["optimizers"].paths]
        jobs.append(lambda: animations.optimizer_race_gif(scapes["optimizers"].surface, runs,
                                                          output_path(out, "optimizer_race.gif"),
                                                          "MLP: optimisers from one initialisation", **frames))
    infos = [job() for job in tqdm(jobs, desc="animations", unit="gif", leave=False, disable=None)]
    results["gifs"] = {info.path.name: {"frames": info.n_frames, "seconds": round(info.seconds, 3),
                                        "seconds_per_frame": round(info.seconds_per_frame, 4), "bytes": info.bytes}
                       for info in infos}
    return [info.path for info in infos]


CAPTIONS = {
    "logistic_3d.png": "logistic regression: loss surface on the PCA plane, the path on it, downhill arrows",
    "mlp_3d.png": "MLP: loss surface on the PCA plane, the path on it, downhill arrows",
    "logistic_contour.png": "logistic regression: contours, path and -gradient arrows",
    "mlp_contour.png": "MLP: contours, path and -gradient arrows",
    "mlp_multi_seed.png": "MLP: every seed's path on one shared plane, and the loss curves",
    "mlp_curvature.png": "MLP: Hessian λmax and λmin along the path, beside the loss",
    "edge_of_stability.png": "MLP: sharpness λmax at several learning rates, each against its 2/lr",
    "mlp_pca_vs_isomap.png": "MLP checkpoints of all seeds embedded by PCA and by Isomap",
    "optimizer_comparison.png": "SGD, SGD+momentum and Adam from one initialisation",
    "lr_sensitivity.png": "SGD at several learning rates on one plane",
    "interpolation_1d.png": "loss along the straight line from the initial to the final weights",
    "mlp_eigen_ratio.png": "MLP: convexity map |λmin/λmax| over the plane",
    "logistic_descent.gif": "logistic regression: gradient descent step by step",
    "mlp_descent.gif": "MLP: gradient descent step by step",
    "optimizer_race.gif": "optimisers racing on their shared plane",
    "logistic_3d.html": "logistic regression: rotate, zoom, hover, epoch slider",
    "mlp_3d.html": "MLP: rotate, zoom, hover, epoch slider",
    "mlp_multi_seed.html": "every seed on one surface; click the legend to toggle runs",
    "optimizer_comparison.html": "the three optimisers on one surface; click the legend to toggle",
}


def write_pages(out, results, written, summary) -> list:
    """The interactive pages and index.html, which shows every file written before it."""
    import interactive_plots as ip
    from outputs import output_path
    cfg, scapes, curvature, pages = results["cfg"], results["scapes"], results["curvature"], []
    for kind in ("logistic", "mlp"):
        p, c = scapes[kind].paths[0], curvature.get(kind)
        pages.append(ip.surface_page(
            scapes[kind].surface, p.coords, p.surface_loss, _np(p.run.losses), _np(p.run.accuracies),
            _np(p.run.steps), output_path(out, f"{kind}_3d.html"),
            f"{MODEL_TITLES[kind]}: gradient descent on the PCA plane (lr {cfg.lr:g})",
            lam_max=None if c is None else c.lam_max, lam_steps=None if c is None else _np(p.run.steps)[c.indices]))
    for name, filename, title in (("multi_seed", "mlp_multi_seed.html", "MLP: every seed on one plane"),
                                  ("optimizers", "optimizer_comparison.html", "MLP: optimisers from one start")):
        if name in scapes:
            runs = [(p.coords, p.surface_loss, _np(p.run.losses), p.run.label) for p in scapes[name].paths]
            pages.append(ip.runs_page(scapes[name].surface, runs, output_path(out, filename), title))
    files = [Path(f).name for f in written]
    caption = lambda names: [(n, CAPTIONS.get(n, "")) for n in names]  # noqa: E731
    index = ip.index_page(
        output_path(out, "index.html"), "Loss landscape of this run",
        f"{summary['dataset']['name']} data, {summary['dataset']['n_samples']} samples; "
        f"{len(cfg.seed_list)} seeds, {cfg.epochs} epochs, lr {cfg.lr:g}; every stage in "
        f"{sum(summary['timings_s'].values()):.1f} s",
        caption([n for n in files if n.endswith(".png")]), caption([n for n in files if n.endswith(".gif")]),
        caption([Path(p).name for p in pages]), index_numbers(summary), summary["config"])
    return pages + [index]


def index_numbers(summary: dict) -> dict:
    """The tables of index.html, read from summary.json's numbers."""
    numbers = {"final training loss (mean over seeds)": [
        (kind, float(np.mean([r["final_loss"] for r in summary["runs"][kind]]))) for kind in ("logistic", "mlp")]}
    numbers["planes: explained variance, mean residual"] = [
        (name, f"{' + '.join(f'{100 * e:.1f}%' for e in p['explained_variance'] if e is not None)}; "
               f"{100 * p['residual_mean']:.1f}%") for name, p in summary["planes"].items()]
    numbers["curvature (seed 0)"] = [(f"{kind} {key}", value) for kind in ("mlp", "logistic")
                                     for key, value in summary.get("curvature", {}).get(kind, {}).items()
                                     if key.startswith("lambda")]
    if "optimizers" in summary:
        numbers["optimisers: final loss, efficiency"] = [
            (label, f"{s['final_loss']:.4f}; {s['efficiency']:.2f}") for label, s in summary["optimizers"].items()]
    numbers["timings (s)"] = list(summary["timings_s"].items())
    return {title: rows for title, rows in numbers.items() if rows}


def _np(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


# ---------------------------------------------------------------- console

def print_report(summary: dict, written: list, out) -> None:
    """A compact table of the run's numbers and where to look next."""
    from pathlib import Path
    print()
    for kind in ("logistic", "mlp"):
        runs = summary["runs"][kind]
        finals = np.array([r["final_loss"] for r in runs])
        accs = np.array([r["final_accuracy"] for r in runs])
        diverged = sum(r["diverged"] for r in runs)
        print(f"  {kind:<9} final loss over {len(runs)} seeds: mean {finals.mean():.4g}, std {finals.std():.2g}; "
              f"accuracy {accs.mean():.3f}" + (f"  ({diverged} diverged)" if diverged else ""))
    if "optimizers" in summary:
        print(f"\n  {'optimiser':<14}{'initial':>9}{'final':>9}{'improv.':>9}{'path':>8}{'straight':>10}{'effic.':>8}")
        for label, s in summary["optimizers"].items():
            print(f"  {label:<14}{s['initial_loss']:>9.4f}{s['final_loss']:>9.4f}{s['improvement_pct']:>8.1f}%"
                  f"{s['path_length']:>8.2f}{s['straight_distance']:>10.2f}{s['efficiency']:>8.2f}")
    print()
    for name, p in summary["planes"].items():
        ev = " + ".join(f"{100 * e:.1f}%" for e in p["explained_variance"] if e is not None)
        print(f"  plane {name:<15} explained {ev:<15} residual mean {p['residual_mean']:.3f}")
    for kind, c in summary.get("curvature", {}).items():
        if kind in ("mlp", "logistic"):
            print(f"  curvature {kind:<11} λmax peak {c['lambda_max_peak']:.4g}   λmin lowest "
                  f"{c['lambda_min_lowest']:.3g}   2/lr {c['edge_of_stability_2_over_lr']:.3g}")
    print(f"\n  {len(written) + 1} files, summary.json included, in {out}/ in {summary['timings_s']['total']:.1f} s")
    index = Path(out) / "index.html"
    if index.exists():
        print(f"  open {index.resolve()}")
