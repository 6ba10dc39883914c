"""The pipeline: train, project, evaluate the landscape and write every figure to the output folder."""
from __future__ import annotations

import os
import sys
import time

import config  # no torch here: --help and bad arguments answer before torch is imported

USAGE = f"""usage: python main.py [--quick] [--no-cache] [--key=value | --key value ...]

Trains logistic regression and a model of your choice (an MLP, a small CNN or your own module),
projects their paths onto loss-landscape planes and writes PNGs, GIFs, interactive HTML and
summary.json. --quick runs a small preset of every stage in seconds; --no-cache recomputes every
stage. Output groups for --only/--skip: {", ".join(config.OUTPUT_GROUPS)}.
Every field of config.py can be set:
"""


class Stages:
    """Times each stage, prints one line per stage and keeps the timings for summary.json."""

    def __init__(self, quiet: bool = False):
        self.seconds, self._start, self.quiet = {}, time.perf_counter(), quiet

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 3)
        if not self.quiet:
            print(f"[{time.perf_counter() - self._start:6.1f}s] {name:<22} {self.seconds[name]:6.2f}s", flush=True)
        return result


def resolve_device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise config.ConfigError("config field 'device' = 'cuda' is not allowed: no CUDA device is visible")
    return torch.device(name)


# ---------------------------------------------------------------- data and models

def main_model_key(cfg) -> str:
    """The short name of the main model in file names: mlp, cnn, or model (a user's file)."""
    return cfg.model if cfg.model in ("mlp", "cnn") else "model"


def load_data(cfg, device):
    import data
    if cfg.data:
        dataset = data.load_data_file(cfg.data, loss=cfg.loss)
    else:
        dataset = data.make_dataset(cfg.dataset, cfg.n_samples, cfg.n_features, cfg.noise, cfg.data_seed,
                                    n_classes=cfg.n_classes)
    return dataset.for_loss(cfg.loss).to(device)


def model_builders(cfg, dataset, device, module_factory=None) -> dict:
    """kind -> seed -> FlatModel, for the logistic baseline and the main model, all on one loss."""
    import models
    loss = dataset.loss_kind
    sizes = dict(n_classes=dataset.n_classes, image_shape=dataset.image_shape, loss=loss)

    def builder(kind):
        if kind == "model" and module_factory is not None:
            make = lambda seed: module_factory(dataset.n_features, dataset.n_classes, seed)  # noqa: E731
        elif kind in models.MODEL_KINDS:
            make = lambda seed: models.build_model(kind, dataset.n_features, cfg.hidden_dim, seed, **sizes)  # noqa: E731
        else:
            make = lambda seed: models.load_user_model(cfg.model, dataset.n_features, dataset.n_classes, seed)  # noqa: E731
        return lambda seed: models.FlatModel(make(seed), loss=loss, device=device,
                                             eval_batch_size=cfg.eval_batch_size)
    return {"logistic": builder("logistic"), main_model_key(cfg): builder(main_model_key(cfg))}


def data_key(cfg) -> dict:
    from cache import file_version
    fields = ("dataset", "n_samples", "n_features", "noise", "data_seed", "n_classes", "data", "loss")
    return {**{f: getattr(cfg, f) for f in fields}, "data_file": file_version(cfg.data)}


def model_key(cfg, kind: str) -> dict:
    from cache import file_version
    user_file = cfg.model.rsplit(":", 1)[0] if kind == "model" and ":" in cfg.model else ""
    return {"kind": kind, "model": cfg.model if kind != "logistic" else "logistic", "hidden_dim": cfg.hidden_dim,
            "model_file": file_version(user_file), "eval_batch_size": cfg.eval_batch_size, "device": cfg.device}


# ---------------------------------------------------------------- computation stages

def train_all(cfg, cache, dataset, builders) -> dict:
    """Every run: both models over the seeds, then the optimiser and learning-rate studies (cached one by one)."""
    from tqdm import tqdm

    import stages
    from training import OptimizerSpec
    main_key = main_model_key(cfg)
    spec = OptimizerSpec("main", cfg.optimizer, cfg.lr, cfg.momentum)
    jobs = [(kind, seed) for kind in builders for seed in cfg.seed_list]
    studies = {"optimizers": [OptimizerSpec("SGD", "sgd", cfg.compare_sgd_lr),
                              OptimizerSpec("SGD+momentum", "sgd", cfg.compare_momentum_lr, cfg.compare_momentum),
                              OptimizerSpec("Adam", "adam", cfg.compare_adam_lr)],
               "lr_sensitivity": [OptimizerSpec("lr", "sgd", lr) for lr in cfg.lr_list]}
    wanted = {name: specs for name, specs in studies.items() if config.wants(cfg, name) or
              (name == "optimizers" and (config.wants(cfg, "gifs") or config.wants(cfg, "html")))}
    total = len(jobs) + sum(len(s) for s in wanted.values())
    runs = {kind: [] for kind in builders}
    with tqdm(total=total, desc="training", unit="run", leave=False, disable=None) as bar:
        for kind, seed in jobs:
            key = {"data": data_key(cfg), "model": model_key(cfg, kind)}
            runs[kind].append(stages.train_run(cache, builders[kind](seed), dataset, spec, cfg.epochs,
                                               cfg.batch_size, seed, f"seed {seed}", key))
            bar.update()
        first = cfg.seed_list[0]  # the studies start from the main model's first initialisation
        for name, specs in wanted.items():
            key = {"data": data_key(cfg), "model": model_key(cfg, main_key)}
            runs[name] = []
            for s in specs:
                label = stages.describe(s, cfg.study_batch_size)
                runs[name].append(stages.train_run(cache, builders[main_key](first), dataset, s, cfg.epochs,
                                                   cfg.study_batch_size, first, label, key))
                bar.update()
    return runs


def run_jobs(jobs: dict, desc: str, unit: str) -> dict:
    """name -> thunk, run in order under one progress bar (with an ETA; shown on a terminal)."""
    from tqdm import tqdm
    with tqdm(total=len(jobs), desc=desc, unit=unit, leave=False, disable=None) as bar:
        results = {}
        for name, job in jobs.items():
            results[name] = job()
            bar.update()
    return results


def compute_landscapes(cfg, cache, dataset, runs, fms) -> dict:
    """Every plane the figures need, each evaluated once and shared by PNG, GIF and HTML."""
    import stages
    main_key, wants = main_model_key(cfg), lambda g: config.wants(cfg, g)  # noqa: E731
    fm, seeds = fms[main_key], runs[main_key]
    jobs = {kind: (lambda kind=kind: stages.single_run_landscape(cache, fms[kind], dataset, runs[kind][0], cfg))
            for kind in ("logistic", main_key)}
    if wants("plane_choice"):
        jobs["plane_choice"] = lambda: stages.plane_choice(cache, fm, dataset, seeds[0], cfg)
    if wants("multi_seed") and len(seeds) >= 2:
        finite = stages.finite_runs(seeds)
        if len(finite) >= 3:
            jobs["three_minima"] = lambda: stages.minima_landscape(cache, fm, dataset, finite, cfg)
        jobs["mode_connectivity"] = lambda: stages.mode_connectivity(cache, fm, dataset, finite)
        jobs["seeds"] = lambda: stages.seed_landscapes(cache, fm, dataset, seeds, cfg)
    for study in ("optimizers", "lr_sensitivity"):
        if study in runs:
            jobs[study] = lambda study=study: stages.shared_landscape(cache, fm, dataset, runs[study], cfg)
    if wants("sharpness") and "lr_sensitivity" in runs:
        jobs["sharpness"] = lambda: stages.sharpness(cache, fm, dataset, stages.finite_runs(runs["lr_sensitivity"]), cfg)
    return run_jobs(jobs, "surfaces", "plane")


def compute_curvature(cfg, cache, dataset, runs, scapes, fms) -> dict:
    """Hessian extremes along the main runs and the learning-rate runs; trace, density, top-2 plane; convexity map."""
    import stages
    main_key = main_model_key(cfg)
    cfg = affordable_curvature(cfg, fms[main_key], dataset, runs[main_key][0])
    run, fm = runs[main_key][0], stages.model_at(fms[main_key], runs[main_key][0], -1)
    jobs = {kind: (lambda kind=kind: stages.curvature_of(cache, fms[kind], dataset, runs[kind][0], cfg))
            for kind in (main_key, "logistic")}
    if "lr_sensitivity" in runs and config.wants(cfg, "curvature"):  # does λmax climb to 2/lr? (edge of stability)
        jobs.update({("lr", k): (lambda r=r: stages.curvature_of(cache, fms[main_key], dataset, r, cfg))
                     for k, r in enumerate(runs["lr_sensitivity"])})
    if config.wants(cfg, "spectrum"):
        jobs["extras"] = lambda: stages.curvature_extras(cache, fm, dataset, run, cfg)
    if cfg.curvature_resolution and config.wants(cfg, "eigen_ratio"):
        jobs["eigen_ratio"] = lambda: stages.eigen_ratio(cache, fm, dataset, scapes[main_key], run, cfg)
    done = run_jobs(jobs, "curvature", "job")
    curvature = {name: value for name, value in done.items() if not isinstance(name, tuple)}
    if any(isinstance(name, tuple) for name in done):
        curvature["lr_sensitivity"] = [value for name, value in done.items() if isinstance(name, tuple)]
    if "extras" in curvature:
        grid = scapes[main_key].surface  # the PCA plane's extent, centred on θ*
        span = (grid.alphas - grid.alphas.mean(), grid.betas - grid.betas.mean())
        scapes["hessian_top2"] = stages.eigen_landscape(cache, fm, dataset, run, curvature["extras"], span, cfg)
    return curvature


AUTODIFF_CHECKPOINTS, AUTODIFF_MAP = 11, 5  # per path, and per axis of the convexity map


def affordable_curvature(cfg, fm, dataset, run):
    """Curvature settings this model can afford. Without a closed-form Hessian every product is an
    autodiff pass over the data (the CNN's: ~10 ms, ~40 per checkpoint), so the defaults become at most
    AUTODIFF_CHECKPOINTS checkpoints per path and an AUTODIFF_MAP-square convexity map, said in one
    line; values the user set are kept."""
    import dataclasses

    import distributed
    import hessian
    if hessian.has_closed_form(fm, dataset.X, run.trajectory.final):
        return cfg
    default, changes = config.Config(), {}
    if cfg.curvature_every == default.curvature_every:
        changes["curvature_every"] = max(cfg.curvature_every, -(-cfg.epochs // (AUTODIFF_CHECKPOINTS - 1)))
    if cfg.curvature_resolution == default.curvature_resolution:
        changes["curvature_resolution"] = min(cfg.curvature_resolution, AUTODIFF_MAP)
    changes = {k: v for k, v in changes.items() if v != getattr(cfg, k)}
    if changes and distributed.is_writer():
        print(f"note: no closed-form Hessian for this model: curvature with "
              f"{', '.join(f'{k}={v}' for k, v in changes.items())} (set them to choose)", flush=True)
    return dataclasses.replace(cfg, **changes)


# ---------------------------------------------------------------- entry point

def run_pipeline(cfg: config.Config, use_cache: bool = True, dataset=None, module_factory=None) -> dict:
    """Every stage in order; returns the summary that is also written to summary.json."""
    import torch

    import budget
    import distributed
    import gallery
    import report
    import stages as st
    from cache import StageCache
    from models import check_outputs
    from outputs import output_path, remove_partial_files, write_json
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)  # tiny matrices: extra threads mostly wait on each other
    ranks = distributed.setup(device)
    device, writer = ranks.device, distributed.is_writer()  # under torchrun on GPUs: this rank's own GPU
    stages = Stages(quiet=not writer)
    if writer:
        remove_partial_files(cfg.output_dir)
    # several ranks share the work of one computation: a cache entry would hold one rank's view of it
    cache = StageCache(cfg.cache_dir if use_cache and ranks.world_size == 1 else None)
    torch.manual_seed(0)  # nothing should draw from it; fixed so an accidental draw is at least repeatable
    # 0. the cost, known before it is spent: refuse what cannot fit, warn about what takes long
    budget.check(budget.estimate(cfg, device=device), device=device, quiet=not writer)
    # 1. data, models, training
    dataset = stages.run("data", load_data, cfg, device) if dataset is None else dataset.to(device)
    builders = model_builders(cfg, dataset, device, module_factory)
    fms = {kind: build(cfg.seed_list[0]) for kind, build in builders.items()}  # one loss function per model
    if cfg.model != "mlp" or cfg.data:  # the real sizes of a CNN, a user's module or a user's data
        budget.check(budget.estimate(cfg, len(dataset.y), dataset.n_features, fms[main_model_key(cfg)].dim,
                                     device=device), device=device, quiet=True)
    for kind, fm in fms.items():  # wrong shapes or labels: one line before any work
        try:
            check_outputs(fm, dataset.X, dataset.y, dataset.n_classes or None)
        except ValueError as err:
            name = cfg.model if kind == main_model_key(cfg) else kind
            raise config.ConfigError(f"model {name!r} does not fit the data: {err}") from None
    runs = stages.run("training", train_all, cfg, cache, dataset, builders)
    # 2. planes and surfaces; curvature; embeddings; interpolation
    scapes = stages.run("surfaces", compute_landscapes, cfg, cache, dataset, runs, fms)
    curvature = stages.run("curvature", compute_curvature, cfg, cache, dataset, runs, scapes, fms) \
        if config.wants(cfg, "curvature") or config.wants(cfg, "eigen_ratio") or config.wants(cfg, "spectrum") else {}
    main_runs = runs[main_model_key(cfg)]
    embeddings = stages.run("embeddings", st.embeddings, cache, main_runs) \
        if config.wants(cfg, "isomap") and len(main_runs) > 1 else {}
    lines = stages.run("interpolation", lambda: {kind: st.init_to_final(cache, fms[kind], dataset, runs[kind][0])
                                                 for kind in fms}) if config.wants(cfg, "interpolation") else {}
    if not writer:
        return {}
    # 3. figures, animations, pages, summary (rank 0 only)
    results = dict(cfg=cfg, runs=runs, scapes=scapes, curvature=curvature, embeddings=embeddings, lines=lines,
                   fms=fms, main=main_model_key(cfg), data=dataset, ranks=distributed.summary())
    written = stages.run("figures", gallery.write_figures, cfg.output_dir, results, cache)
    if config.wants(cfg, "gifs"):
        written += stages.run("animations", gallery.write_animations, cfg.output_dir, results, cache)
    summary = report.summarize(results, stages.seconds, cache)
    if config.wants(cfg, "html"):
        written += stages.run("html", gallery.write_pages, cfg.output_dir, results, written, summary)
    summary["timings_s"] = {**stages.seconds, "total": round(sum(stages.seconds.values()), 3)}
    path = output_path(cfg.output_dir, "summary.json")
    write_json(path, report.merge_summary(path, summary) if cfg.only or cfg.skip else summary)
    report.print_report(summary, written, cfg.output_dir)
    return summary


def write_report(model, X, y, output_dir: str = "figures", **fields) -> dict:
    """One call from Python: the full report (PNGs, GIFs, pages, summary.json) for your module and data.

    model: a function (n_features, n_classes, seed) -> nn.Module, as for --model=file.py:function, or
    an nn.Module: its own initialisation is the first seed's, and copies re-initialised under each
    other seed give the rest. X (n, d) and y (n,): arrays or tensors, read as --data reads a file.
    fields: any config.py field (epochs=100, seed_list=(0, 1, 2), loss="ce", ...). Returns the summary.
    Nothing is cached: an object in memory has no version to key a cache entry by.
    """
    import dataclasses

    import data
    cfg = config.validate(dataclasses.replace(config.Config(), output_dir=output_dir, **fields))
    from outputs import check_output_dir
    check_output_dir(cfg.output_dir)
    factory = model if not hasattr(model, "parameters") else _reseeded(model, cfg.seed_list[0])
    cfg = dataclasses.replace(cfg, model="python")  # the main model is "model": yours, not a built-in
    return run_pipeline(cfg, False, data.from_arrays(X, y, "your data", cfg.loss).for_loss(cfg.loss), factory)


def _reseeded(module, first_seed: int):
    """A factory of copies of module: the first seed gets its weights, every other seed fresh ones."""
    import copy

    import torch

    def make(n_features, n_classes, seed):
        clone = copy.deepcopy(module)
        if seed != first_seed:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for part in clone.modules():
                    if hasattr(part, "reset_parameters"):
                        part.reset_parameters()
        return clone
    return make


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg, flags = config.parse_args(args)
        if "help" in flags:
            print(USAGE + config.help_text())
            return 0
        from outputs import check_output_dir
        check_output_dir(cfg.output_dir)
        resolve_device(cfg.device)
        return _run(cfg, "no_cache" not in flags)
    except config.ConfigError as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank parses the same flags: say it once
            print(f"error: {err}", file=sys.stderr)
        return 2


def _run(cfg, use_cache: bool) -> int:
    """The pipeline, with every error a user can cause turned into one line and exit code 2."""
    import distributed
    try:
        run_pipeline(cfg, use_cache)
    except KeyboardInterrupt:
        print("interrupted: finished files are intact, unfinished ones were not written", file=sys.stderr)
        return 130
    except (config.ConfigError, distributed.RankError) as err:  # a bad file, a full disk, a dead rank
        if distributed.is_writer() or getattr(err, "rank", None) == distributed.current().rank:
            print(f"error: {err}", file=sys.stderr)  # once: by rank 0, or by the rank that failed
        return 2
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
