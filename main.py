"""The pipeline: train, project, evaluate the landscape and write every figure to the output folder."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import config
from config import wants
from data import make_dataset
from gradients import plane_gradients
from loss_surface import Surface, evaluate_points, evaluate_surface, grid_for, interpolate_line
from models import FlatModel, build_model
from outputs import output_path, remove_partial_files, write_json
from report import print_report, summarize, write_animations, write_figures, write_pages
from projection import (isomap_embedding, joint_pca_plane, pca_embedding, project,
                        trustworthiness_score)
from training import OptimizerSpec, Trajectory, train, train_optimizers

USAGE = f"""usage: python main.py [--quick] [--key=value ...]

Trains logistic regression and an MLP, projects their paths onto loss-landscape planes and
writes PNGs, GIFs, interactive HTML and summary.json. --quick runs a small preset of every
stage in seconds. Output groups for --only/--skip: {", ".join(config.OUTPUT_GROUPS)}.
Every field of config.py can be set:
"""


@dataclass
class PathOnPlane:
    """One run seen on a plane: its coordinates and the surface's values there."""
    run: Trajectory
    coords: np.ndarray  # (T, 2) least-squares plane coordinates
    residual: np.ndarray  # (T,) relative distance of each checkpoint from the plane
    surface_loss: np.ndarray  # (T,) L(center + a u + b v): where the path is drawn on the surface
    grads: np.ndarray | None = None  # (T, 2) (g·u, g·v) at the in-plane points


@dataclass
class Landscape:
    """One plane's surface and every run drawn on it."""
    surface: Surface
    paths: list


class Stages:
    """Times each stage, prints one line per stage and keeps the timings for summary.json."""

    def __init__(self):
        self.seconds, self._start = {}, time.perf_counter()

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 3)
        print(f"[{time.perf_counter() - self._start:6.1f}s] {name:<22} {self.seconds[name]:6.2f}s", flush=True)
        return result


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise config.ConfigError("config field 'device' = 'cuda' is not allowed: no CUDA device is visible")
    return torch.device(name)


# ---------------------------------------------------------------- computation stages

def model_factory(kind: str, data, cfg, device):
    return lambda seed: FlatModel(build_model(kind, data.n_features, cfg.hidden_dim, seed), device=device)


def train_all(cfg, data, fms, device) -> dict:
    """Every run of the pipeline: both models over the seeds, the optimiser and learning-rate studies."""
    spec = OptimizerSpec(cfg.optimizer, cfg.optimizer, cfg.lr, cfg.momentum)
    jobs = [(kind, seed) for kind in ("logistic", "mlp") for seed in cfg.seed_list]
    runs = {"logistic": [], "mlp": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for kind, seed in tqdm(jobs, desc="training", unit="run", leave=False, disable=None):
            run = train(model_factory(kind, data, cfg, device)(seed), data.X, data.y,
                        dataclasses.replace(spec, label=f"{kind} seed {seed}"), cfg.epochs,
                        batch_size=cfg.batch_size, seed=seed)
            run.label = f"seed {seed}"
            runs[kind].append(run)
        studies = {
            "optimizers": [OptimizerSpec("SGD", "sgd", cfg.compare_sgd_lr),
                           OptimizerSpec("SGD+momentum", "sgd", cfg.compare_momentum_lr, cfg.compare_momentum),
                           OptimizerSpec("Adam", "adam", cfg.compare_adam_lr)],
            "lr_sensitivity": [OptimizerSpec(f"SGD lr={lr:g}", "sgd", lr) for lr in cfg.lr_list],
        }
        for name, specs in studies.items():
            if wants(cfg, name) or (name == "optimizers" and (wants(cfg, "gifs") or wants(cfg, "html"))):
                runs[name] = train_optimizers(fms["mlp"], data.X, data.y, specs, cfg.epochs,
                                              batch_size=cfg.batch_size, seed=cfg.seed_list[0])
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return runs


def build_landscape(fm, data, runs, cfg, with_grads=False) -> Landscape:
    """One plane through the runs (centred on the first finite run's end), its surface, and every run on it."""
    X, y = data.X, data.y
    # A diverged run ends ~1e18 away: fitted on, it would shrink every other path to a dot.
    fitted = [run for run in runs if not run.diverged] or runs[:1]
    plane = joint_pca_plane(fitted, 0, layout=fm.layout, norm=cfg.direction_norm, ignore_bias=cfg.ignore_bias)
    projected = [project(run.params, plane) for run in runs]
    alphas, betas = grid_for([coords for (coords, _), run in zip(projected, runs)
                              if any(run is f for f in fitted)], cfg.vis_resolution, cfg.grid_margin)
    surface = evaluate_surface(fm, X, y, plane, alphas, betas)
    paths = []
    for run, (coords, residual) in zip(runs, projected):
        surface_loss, _ = evaluate_points(fm, X, y, plane, coords)
        grads = plane_gradients(fm, X, y, plane.points(coords), plane) if with_grads else None
        paths.append(PathOnPlane(run, coords, residual, surface_loss, grads))
    return Landscape(surface, paths)


def compute_landscapes(cfg, data, runs, fm) -> dict:
    """Every plane the figures need, each evaluated once and shared by PNG, GIF and HTML."""
    scapes = {}
    for kind in ("logistic", "mlp"):
        scapes[kind] = build_landscape(fm[kind], data, runs[kind][:1], cfg, with_grads=True)
    if (wants(cfg, "multi_seed") or wants(cfg, "html")) and len(runs["mlp"]) > 1:
        scapes["multi_seed"] = build_landscape(fm["mlp"], data, runs["mlp"], cfg)
    for study in ("optimizers", "lr_sensitivity"):
        if study in runs:
            scapes[study] = build_landscape(fm["mlp"], data, runs[study], cfg)
    return scapes


def compute_curvature(cfg, data, runs, scapes, fm) -> dict:
    """Hessian extremes along the MLP and logistic paths and the learning-rate runs; the convexity map."""
    import hessian
    along = lambda kind, run: hessian.curvature_along(fm[kind], data.X, data.y, run.params,  # noqa: E731
                                                      every=cfg.curvature_every, method=cfg.hessian_method)
    curvature = {kind: along(kind, runs[kind][0]) for kind in ("mlp", "logistic")}
    if "lr_sensitivity" in runs and wants(cfg, "curvature"):  # does λmax climb to 2/lr? (edge of stability)
        curvature["lr_sensitivity"] = [along("mlp", run) for run in runs["lr_sensitivity"]]
    if cfg.curvature_resolution and wants(cfg, "eigen_ratio"):
        surface = scapes["mlp"].surface
        alphas = np.linspace(surface.alphas[0], surface.alphas[-1], cfg.curvature_resolution)
        betas = np.linspace(surface.betas[0], surface.betas[-1], cfg.curvature_resolution)
        ratio = hessian.eigen_ratio_map(fm["mlp"], data.X, data.y, surface.plane, alphas, betas,
                                        method=cfg.hessian_method)
        curvature["eigen_ratio"] = (alphas, betas, ratio)
    return curvature


def compute_embeddings(runs) -> dict:
    """The MLP checkpoints of every seed embedded by PCA and by Isomap, with trustworthiness."""
    points = torch.cat([run.params for run in runs]).cpu()
    n_neighbors = min(10, len(points) - 2)
    with warnings.catch_warnings():  # separate runs make a disconnected graph; Isomap completes it
        warnings.simplefilter("ignore")
        isomap = isomap_embedding(points, n_neighbors)
    pca = pca_embedding(points)
    return {"points_per_run": [len(run) for run in runs],
            "losses": torch.cat([run.losses for run in runs]).cpu().numpy(),
            "pca": pca, "isomap": isomap,
            "trust_pca": trustworthiness_score(points, pca), "trust_isomap": trustworthiness_score(points, isomap)}


def compute_interpolation(data, runs, fm, n_points: int = 61) -> dict:
    """Loss along the straight line from each model's initial to its final weights."""
    ts = np.linspace(-0.25, 1.25, n_points)
    lines = {}
    for kind in ("logistic", "mlp"):
        run = runs[kind][0]
        loss, acc = interpolate_line(fm[kind], data.X, data.y, run.params[0], run.final, ts)
        lines[kind] = (loss, acc)
    return {"ts": ts, "lines": lines}


# ---------------------------------------------------------------- entry point

def run_pipeline(cfg: config.Config) -> dict:
    """Every stage in order; returns the summary that is also written to summary.json."""
    stages, out = Stages(), cfg.output_dir
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)  # tiny matrices: extra threads mostly wait on each other
    remove_partial_files(out)
    torch.manual_seed(0)  # nothing should draw from it; fixed so an accidental draw is at least repeatable
    # 1. data and training
    data = stages.run("data", lambda: make_dataset(cfg.dataset, cfg.n_samples, cfg.n_features, cfg.noise,
                                                   cfg.data_seed).to(device))
    # the functional view of each model (seed 0's initialisation): one loss function for every stage
    fms = {kind: model_factory(kind, data, cfg, device)(cfg.seed_list[0]) for kind in ("logistic", "mlp")}
    runs = stages.run("training", train_all, cfg, data, fms, device)
    # 2. planes, surfaces, gradients; curvature; embeddings; interpolation
    scapes = stages.run("surfaces", compute_landscapes, cfg, data, runs, fms)
    curvature = stages.run("curvature", compute_curvature, cfg, data, runs, scapes, fms) \
        if wants(cfg, "curvature") or wants(cfg, "eigen_ratio") else {}
    embeddings = stages.run("embeddings", compute_embeddings, runs["mlp"]) \
        if wants(cfg, "isomap") and len(runs["mlp"]) > 1 else {}
    lines = stages.run("interpolation", compute_interpolation, data, runs, fms) \
        if wants(cfg, "interpolation") else {}
    # 3. figures, animations, pages, summary
    results = dict(cfg=cfg, runs=runs, scapes=scapes, curvature=curvature, embeddings=embeddings, lines=lines)
    written = stages.run("figures", write_figures, out, results)
    if wants(cfg, "gifs"):
        written += stages.run("animations", write_animations, out, results)
    summary = summarize(results, data, stages.seconds)
    if wants(cfg, "html"):
        written += stages.run("html", write_pages, out, results, written, summary)
    summary["timings_s"] = {**stages.seconds, "total": round(sum(stages.seconds.values()), 3)}
    write_json(output_path(out, "summary.json"), summary)
    print_report(summary, written, out)
    return summary


def check_output_dir(path: str) -> None:
    """An output folder that cannot be created or written is a user error: one line, exit 2."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise config.ConfigError(f"config field 'output_dir' = {path!r} is not allowed: "
                                 f"cannot write there ({err.strerror})") from None


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(USAGE + config.help_text())
        return 0
    try:
        base = config.quick(config.Config()) if "--quick" in args else config.Config()
        cfg = config.apply_overrides(base, [a for a in args if a != "--quick"])
        resolve_device(cfg.device)
        check_output_dir(cfg.output_dir)
    except config.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run_pipeline(cfg)
    except KeyboardInterrupt:
        print("interrupted: finished files are intact, unfinished ones were not written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
