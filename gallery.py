"""Every file drawn from a run's results: the PNGs, the GIFs, the interactive pages and index.html."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
from tqdm import tqdm

from config import wants
from findings import baseline_title, metric_name
from outputs import output_path

MODEL_TITLES = {"mlp": "MLP", "cnn": "CNN", "model": "your model"}  # the linear baseline: findings.baseline_title
CAPTIONS = {
    "3d.png": "loss surface on the run's PCA plane, the path on it where the surface is its loss, descent arrows",
    "contour.png": "contours of the same plane, the path and where descent went next",
    "plane_choice.png": "one path on three planes: orthonormal PCA, filter-normalised PCA, a random plane",
    "multi_seed.png": "three seeds' minima on their own plane, the barriers between every pair, each seed's path",
    "sharpness.png": "filter-normalised random directions around each learning rate's minimum: flat versus sharp",
    "curvature.png": "Hessian λmax and λmin along the path, beside the loss and the optimiser's stability line",
    "edge_of_stability.png": "sharpness λmax at several learning rates, each against its own 2/lr",
    "hessian_spectrum.png": "Hessian eigenvalue density at the first and final checkpoints; the top-2 eigenvector plane",
    "pca_vs_isomap.png": "the checkpoints of every seed embedded by PCA and by Isomap",
    "optimizer_comparison.png": "optimisers from one initialisation on one shared plane, and their losses",
    "lr_sensitivity.png": "gradient descent at several learning rates on one shared plane, and their losses",
    "interpolation_1d.png": "loss along the straight line from the initial to the final weights",
    "eigen_ratio.png": "convexity map |λmin/λmax| over the plane",
    "descent.gif": "the path growing step by step on its surface",
    "optimizer_race.gif": "the optimisers racing on their shared plane",
    "3d.html": "rotate, zoom, hover every epoch",
    "optimizer_comparison.html": "the optimisers on their shared surface; click the legend to toggle runs",
}


def caption(name: str) -> str:
    return next((text for suffix, text in CAPTIONS.items() if name.endswith(suffix)), "")


LOSS_NAMES = {"bce": "training loss (BCE)", "ce": "training loss (cross-entropy)", "mse": "training loss (MSE)"}


def loss_name(results) -> str:
    """The colour bars' and axes' label: the loss that was actually used."""
    return LOSS_NAMES[results["fms"][results["main"]].loss_kind]


def _np(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def title_of(results, kind: str) -> str:
    """The model's name in titles; the linear baseline fitted by squared error is linear regression."""
    if kind == "logistic":
        return baseline_title(results["fms"]["logistic"].loss_kind)
    return MODEL_TITLES.get(kind, kind)


def metric_of(results) -> str:
    """What the runs' second number is: accuracy, or R² for regression."""
    return metric_name(results["fms"][results["main"]].loss_kind)


def run_colours(results) -> dict:
    """One colour per run label in every figure and page: a learning rate keeps its colour throughout."""
    from plot_style import run_colour
    labels = []
    for group in ("optimizers", "lr_sensitivity"):
        labels += [r.label for r in results["runs"].get(group, []) if r.label not in labels]
    colours = {label: run_colour(k) for k, label in enumerate(labels)}
    for k, run in enumerate(results["runs"][results["main"]]):
        colours.setdefault(run.label, run_colour(k))
    return colours


def plane_path(p, colours=None):
    """A stages.PathOnPlane as the figures draw it."""
    import visualization as vis
    t, numbers = p.run.trajectory, p.numbers()
    return vis.PlanePath(p.coords, _np(t.losses), p.run.label, t.diverged, _np(t.steps),
                         drawn=p.on_surface,
                         colour=(colours or {}).get(p.run.label), residual_mean=numbers["residual_mean"],
                         gap_max=numbers["gap_max"])


def plane_title(name: str, p) -> str:
    n = p.numbers()
    on_surface = (f"gap {n['gap_max']:.3f} where drawn on the surface" if n["on_surface_share"] > 0
                  else "no checkpoint drawn on the surface")
    return (f"{name}\nresidual {100 * n['residual_mean']:.1f}%, {on_surface}\n"
            f"gap {n['gap_max_all']:.3f} over the whole path")  # three short lines: panels sit side by side


# ---------------------------------------------------------------- PNGs

FIGURE_WORKERS = 2  # forked processes drawing the PNGs: the figures are independent of each other
_drawing: dict = {}  # what the forked workers draw, inherited at the fork: the results are never pickled


GIF_KNOBS = ("gif_frames", "gif_frame_ms")  # config fields only the GIFs read
WHERE = ("output_dir", "cache_dir")  # where files go: no output depends on it


def drawing_inputs(cfg, unread: tuple = ()) -> dict:
    """The config fields a drawing stage's files may depend on: all but where they go and what it does not read.
    With the stages served before it (cache.StageCache.drawn), they key the files it writes."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in WHERE + unread}


def write_figures(out, results, cache) -> list:
    """Every PNG, drawn, or written again from the cache when nothing they show has changed."""
    return cache.drawn("figures", drawing_inputs(results["cfg"], GIF_KNOBS), out,
                       lambda: (draw_figures(out, results), None))[0]


def write_animations(out, results, cache) -> list:
    """The GIFs, drawn or written again from the cache; their frame counts and timings go to results["gifs"],
    with from_cache: True where the timings are those of the earlier run that drew them."""
    drew = []

    def draw():
        drew.append(True)
        return draw_animations(out, results)
    paths, gifs = cache.drawn("animations", drawing_inputs(results["cfg"]), out, draw)
    results["gifs"] = {name: {**info, "from_cache": not drew} for name, info in gifs.items()}
    return paths


def draw_figures(out, results) -> list:
    """Every PNG whose data was computed, drawn by FIGURE_WORKERS processes; returns the paths written, in order."""
    from workers import in_workers
    writers = [functools.partial(single_run_figures, kind=kind) for kind in ("logistic", results["main"])
               if wants(results["cfg"], "surfaces")]
    writers += [plane_choice_figure, multi_seed_figure, study_figures, curvature_figures, other_figures]
    _drawing.update(out=out, results=results, writers=writers)
    try:
        shares = in_workers(_draw_share, [(k,) for k in range(min(FIGURE_WORKERS, len(writers)))])
    finally:
        _drawing.clear()
    return [path for _, paths in sorted(pair for share in shares for pair in share) for path in paths]


def _draw_share(k: int) -> list:
    """[(writer number, paths)] for every FIGURE_WORKERS-th writer from the k-th."""
    writers = _drawing["writers"]
    return [(i, writers[i](_drawing["out"], _drawing["results"])) for i in range(k, len(writers), FIGURE_WORKERS)]


def single_run_figures(out, results, kind) -> list:
    import visualization as vis
    scape, run = results["scapes"][kind], results["runs"][kind][0]
    p, what = scape.paths[0], f"{title_of(results, kind)}: {run.label}, {_what_ran(run)}"
    path = plane_path(p)
    return [vis.plot_surface_3d(scape.surface, p.coords, p.surface_loss, _np(run.trajectory.losses), p.arrows,
                                f"{what}\ntraining loss on the run's PCA plane", output_path(out, f"{kind}_3d.png"),
                                residual=p.offset, drawn=path.drawn, steps=_np(run.trajectory.steps),
                                loss_name=loss_name(results)),
            vis.plot_contour(scape.surface, [path], p.arrows, f"{what}: contours of its PCA plane",
                             output_path(out, f"{kind}_contour.png"), residual=p.offset,
                             loss_name=loss_name(results))]


def _what_ran(run) -> str:
    import stages
    return stages.describe(run.spec, run.batch_size)


def plane_choice_figure(out, results) -> list:
    import comparison_figures as cf
    scapes = results["scapes"]
    if "plane_choice" not in scapes:
        return []
    names = {"pca": "orthonormal PCA plane (default)", "filter_pca": "filter-normalised PCA (seed's method)",
             "random": "filter-normalised random plane around θ*"}
    panels = [(scape.surface, plane_path(scape.paths[0]), plane_title(names[key], scape.paths[0]))
              for key, scape in scapes["plane_choice"].items()]
    model = title_of(results, results["main"])
    return [cf.plot_plane_choice(panels, f"{model}: one path on three planes (path dashed where the plane "
                                         f"does not hold it)", output_path(out, "plane_choice.png"),
                                 loss_name=loss_name(results))]


def multi_seed_figure(out, results) -> list:
    import comparison_figures as cf
    scapes, main = results["scapes"], results["main"]
    if "mode_connectivity" not in scapes:
        return []
    colours = run_colours(results)
    minima = scapes.get("three_minima")
    if minima is not None:
        labels = [p.run.label for p in minima.paths]
        coords = np.vstack([p.coords[-1] for p in minima.paths])
        losses = [float(p.run.trajectory.losses[-1]) for p in minima.paths]
    lines = scapes["mode_connectivity"]["lines"]
    shown = [pair for pair in lines if minima is None or all(part in labels for part in pair.split(" - "))]
    lines = [(pair, scapes["mode_connectivity"]["ts"], lines[pair]["losses"], lines[pair]["barrier"], None)
             for pair in shown]  # the pairs of the three drawn minima; summary.json has every pair
    panels = [(scape.surface, plane_path(scape.paths[0], colours)) for scape in scapes["seeds"].values()]
    return [cf.plot_multi_seed(minima.surface if minima else None, coords if minima else None,
                               labels if minima else [], losses if minima else [], lines, panels,
                               f"{title_of(results, main)}: {len(panels)} initialisations, different minima",
                               output_path(out, f"{main}_multi_seed.png"),
                               colours=[colours.get(label) for label in labels] if minima else None,
                               loss_name=loss_name(results))]


def study_figures(out, results) -> list:
    import visualization as vis
    cfg, scapes, written, colours = results["cfg"], results["scapes"], [], run_colours(results)
    model = title_of(results, results["main"])
    titles = {"optimizers": ("optimizer_comparison.png", f"{model}: optimisers from one initialisation", True),
              "lr_sensitivity": ("lr_sensitivity.png", f"{model}: gradient descent at several learning rates", None)}
    for name, (filename, title, log_curves) in titles.items():
        if name in scapes and wants(cfg, name):
            written.append(vis.plot_runs(scapes[name].surface, [plane_path(p, colours) for p in scapes[name].paths],
                                         f"{title} (shared plane through the initialisation)",
                                         output_path(out, filename), log_curves=log_curves,
                                         loss_name=loss_name(results)))
    if "sharpness" in scapes:
        import comparison_figures as cf
        s = scapes["sharpness"]
        lines = [(r["label"], r["line"], colours.get(r["label"])) for r in s["runs"]]
        surfaces = [(r["label"], r["surface"], colours.get(r["label"])) for r in s["runs"]]
        written.append(cf.plot_sharpness(s["ts"], lines, surfaces, f"{model}: flat or sharp? The loss around "
                                         "each learning rate's minimum", output_path(out, "sharpness.png"),
                                         loss_name=loss_name(results)))
    return written


def curvature_figures(out, results) -> list:
    import curvature_figures as cvf
    import stages
    cfg, curvature, main, written = results["cfg"], results["curvature"], results["main"], []
    model, colours = title_of(results, main), run_colours(results)
    if main in curvature and wants(cfg, "curvature"):
        c, run = curvature[main], results["runs"][main][0]
        t = run.trajectory
        written.append(cvf.plot_curvature(_np(t.steps)[c.indices], c.lam_max, c.lam_min,
                                          stages.stability_line(run.spec, run.batch_size),
                                          f"{model}: Hessian extremes along {_what_ran(run)}",
                                          output_path(out, f"{main}_curvature.png"), losses=_np(t.losses),
                                          loss_steps=_np(t.steps), loss_name=loss_name(results)))
    if "lr_sensitivity" in curvature:
        runs = [(_np(run.trajectory.steps)[c.indices], c.lam_max, stages.stability_line(run.spec, run.batch_size),
                 run.label, colours.get(run.label))
                for run, c in zip(results["runs"]["lr_sensitivity"], curvature["lr_sensitivity"])]
        written.append(cvf.plot_edge_of_stability(runs, f"{model}: sharpness λmax at several learning rates",
                                                  output_path(out, "edge_of_stability.png")))
    if "extras" in curvature:
        e, top = curvature["extras"], results["scapes"]["hessian_top2"]
        densities = [(f"{name} checkpoint", *e["densities"][name]) for name in ("first", "final")]
        written.append(cvf.plot_spectrum(densities, top.surface, f"{model}: Hessian spectrum and the landscape "
                                         "along its sharpest directions", output_path(out, "hessian_spectrum.png"),
                                         loss_name=loss_name(results)))
    if "eigen_ratio" in curvature:
        alphas, betas, ratio = curvature["eigen_ratio"]
        scape = results["scapes"][main]
        p = scape.paths[0]  # the map is the plane's curvature: off the plane it is not the path's (shadow rule)
        written.append(cvf.plot_eigen_ratio(alphas, betas, ratio, p.coords,
                                            scape.surface.plane.axis_labels(), f"{model}: convexity map |λmin/λmax|",
                                            output_path(out, f"{main}_eigen_ratio.png"), surface=scape.surface,
                                            drawn=p.on_surface, colour=run_colours(results).get(p.run.label),
                                            steps=_np(p.run.trajectory.steps)))
    return written


def other_figures(out, results) -> list:
    import visualization as vis
    main, written = results["main"], []
    if results["embeddings"]:
        e = results["embeddings"]
        written.append(vis.plot_pca_vs_isomap(
            e["pca"], e["isomap"], e["losses"], e["points_per_run"], e["trust_pca"], e["trust_isomap"],
            f"{title_of(results, main)} checkpoints of {len(e['points_per_run'])} seeds: PCA vs Isomap",
            output_path(out, f"{main}_pca_vs_isomap.png"), loss_name=loss_name(results)))
    if results["lines"]:
        lines = {title_of(results, kind): (loss, acc) for kind, (ts, loss, acc) in results["lines"].items()}
        ts = next(iter(results["lines"].values()))[0]
        written.append(vis.plot_interpolation(ts, lines, "Loss along the straight line from initial to final weights",
                                              output_path(out, "interpolation_1d.png"), loss_name=loss_name(results),
                                              metric_name=metric_of(results)))
    return written


# ---------------------------------------------------------------- GIFs and pages

def draw_animations(out, results) -> tuple:
    """The descent GIFs and the optimiser race: (paths, {name: frames, seconds, seconds per frame, bytes})."""
    import animations
    import race_gif
    cfg, scapes, colours = results["cfg"], results["scapes"], run_colours(results)
    frames = dict(n_frames=cfg.gif_frames, frame_ms=cfg.gif_frame_ms, loss_name=loss_name(results))
    jobs = []
    for kind in ("logistic", results["main"]):
        p, run = scapes[kind].paths[0], results["runs"][kind][0]
        t = run.trajectory
        jobs.append(lambda p=p, t=t, kind=kind, run=run: animations.descent_gif(
            scapes[kind].surface, p.coords, p.surface_loss, _np(t.losses), _np(t.steps),
            output_path(out, f"{kind}_descent.gif"), f"{title_of(results, kind)}: {_what_ran(run)}",
            drawn=p.on_surface, residual_mean=p.numbers()["residual_mean"], **frames))
    if "optimizers" in scapes:
        runs = [dict(coords=p.coords, losses=_np(p.run.trajectory.losses), label=p.run.label,
                     drawn=p.on_surface, colour=colours.get(p.run.label),
                     residual_mean=p.numbers()["residual_mean"]) for p in scapes["optimizers"].paths]
        jobs.append(lambda: race_gif.optimizer_race_gif(
            scapes["optimizers"].surface, runs, output_path(out, "optimizer_race.gif"),
            f"{title_of(results, results['main'])}: optimisers from one initialisation", **frames))
    infos = [job() for job in tqdm(jobs, desc="animations", unit="gif", leave=False, disable=None)]
    return [info.path for info in infos], {info.path.name: {
        "frames": info.n_frames, "seconds": round(info.seconds, 3),
        "seconds_per_frame": round(info.seconds_per_frame, 4), "bytes": info.bytes} for info in infos}


def write_pages(out, results, written, summary) -> list:
    """The interactive pages and index.html, which shows every file written before it."""
    import index_page
    import interactive_plots as ip
    cfg, scapes, curvature, colours, pages = (results["cfg"], results["scapes"], results["curvature"],
                                              run_colours(results), [])
    for kind in ("logistic", results["main"]):
        p, c, run = scapes[kind].paths[0], curvature.get(kind), results["runs"][kind][0]
        t = run.trajectory
        pages.append(ip.surface_page(
            scapes[kind].surface, p.coords, p.surface_loss, _np(t.losses), _np(t.accuracies), _np(t.steps),
            output_path(out, f"{kind}_3d.html"), f"{title_of(results, kind)}: {_what_ran(run)} on its PCA plane",
            lam_max=None if c is None else c.lam_max, lam_steps=None if c is None else _np(t.steps)[c.indices],
            loss_name=loss_name(results), drawn=p.on_surface, residual_mean=p.numbers()["residual_mean"],
            metric_name=metric_of(results)))
    if "optimizers" in scapes:
        runs = [ip.PageRun(p.coords, p.surface_loss, _np(p.run.trajectory.losses), p.run.label,
                           p.on_surface, colours.get(p.run.label), p.numbers()["residual_mean"])
                for p in scapes["optimizers"].paths]
        pages.append(ip.runs_page(scapes["optimizers"].surface, runs, output_path(out, "optimizer_comparison.html"),
                                  f"{title_of(results, results['main'])}: optimisers from one initialisation",
                                  loss_name=loss_name(results)))
    files = [Path(f).name for f in written]
    if cfg.only or cfg.skip:  # a partial run shows the figures it left in place too; a full run only its own,
        # never another model's or data set's from an earlier run into the same folder
        files += sorted(f.name for pattern in ("*.png", "*.gif") for f in Path(out).glob(pattern) if f.name not in files)
    with_caption = lambda names: [(n, caption(n)) for n in names]  # noqa: E731
    ds = summary["dataset"]
    index = index_page.write_index(
        output_path(out, "index.html"), "Loss landscape of this run",
        f"{ds['name']} data, {ds['n_samples']} samples; {title_of(results, results['main'])} and logistic "
        f"regression; {len(cfg.seed_list)} seeds, {cfg.epochs} epochs",
        with_caption([n for n in files if n.endswith(".png")]), with_caption([n for n in files if n.endswith(".gif")]),
        with_caption([Path(p).name for p in pages]), {}, summary["config"], summary,
        lead=(f"{results['main']}_3d.png", f"{results['main']}_contour.png") + index_page.HERO)
    return pages + [index]
