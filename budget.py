"""What a run will cost in memory and time, estimated from its sizes before any of it is spent."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import torch

from config import Config, ConfigError, wants
from hessian import EXACT_MAX_DIM  # "auto" forms the full Hessian up to this many weights, Lanczos beyond

LIMIT_SECONDS = 600  # a longer run gets a warning line first
HEADROOM = 0.8  # share of the free memory a run may plan on: Python, matplotlib and the OS need the rest
BASE_BYTES = 500e6  # the interpreter with torch, numpy, matplotlib and plotly loaded
SOLVE_PRODUCTS = {"lanczos": 90, "power": 300}  # Hessian-vector products per eigen-solve (both ends)
HVP_FORWARDS = 4  # one Hessian-vector product costs about four forward passes
EXTRA_SOLVES = 30  # trace and spectral-density probes at two checkpoints
EMBED_PER_RUN = 101  # checkpoints per run given to Isomap (stages.embeddings)
SURFACE_ELEMENTS = 64e6  # loss_surface keeps one batch of grid points under this many (points x samples x weights)
FRAME_SECONDS, FRAME_BYTES, GIFS = 0.1, 0.5e6, 3  # one rendered GIF frame (matplotlib 3D); GIFs per run
PLANE_SECONDS = 0.06  # a plane's own work besides its grid (PCA, projections, caching): --quick's 15 planes, 0.9 s
FIXED_SECONDS = 20.0  # static figures, HTML pages and summary at any size the bounds allow
# Fitted to training.train, loss_surface.evaluate_surface and hessian.curvature_along (MLP, n = 1000,
# h = 32 to 1024, one thread, two shared cores): estimate / measured between 0.3 and 1.1 per stage.
OPS_PER_STEP = 200  # one functional_call with backward and an optimiser step costs ~200 tiny torch calls
AUTOGRAD_SHARE = 0.25  # training and Hessian-vector products reach ~25 % of the matmul rate (elementwise work)
SURFACE_SHARE = 0.5  # batched surface evaluation reaches ~50 %


@dataclass(frozen=True)
class Speed:
    """This machine, measured: arithmetic rate and the fixed cost of one small torch call."""
    flops_per_s: float
    op_seconds: float


@dataclass(frozen=True)
class Part:
    """One stage's cost. held: kept until the end of the run (data, trajectories) rather than freed after it."""
    bytes: float
    seconds: float
    knobs: tuple  # config fields that make it faster
    memory_knobs: tuple = ()  # config fields that make it smaller (default: knobs)
    held: bool = False


@dataclass(frozen=True)
class Estimate:
    peak_bytes: int  # held parts plus the largest passing one, plus the interpreter
    seconds: float  # every part one after another
    parts: dict  # name -> Part


def measure_speed(rows: int = 256, cols: int = 64, width: int = 64, device="cpu") -> Speed:
    """Time one matmul of the run's shape (capped at 512 per side) and one tiny call: under 50 ms."""
    r, c, w = (max(1, min(s, 512)) for s in (rows, cols, width))
    a = torch.full((r, c), 0.5, device=device)  # (r, c) samples x features
    b = torch.full((c, w), 0.25, device=device)  # (c, w) features x hidden units
    x = torch.ones(1, device=device)
    matmul, op = [], []
    for _ in range(4):  # the first of each is a warm-up; the fastest of the rest is the machine's speed
        matmul.append(_timed(lambda: a @ b, device))
        op.append(_timed(lambda: x + x, device))
    return Speed(2 * r * c * w / max(min(matmul[1:]), 1e-7), max(min(op[1:]), 1e-7))


def _timed(fn, device) -> float:
    start = time.perf_counter()
    fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def mlp_params(n_features: int, hidden_dim: int, n_outputs: int = 1) -> int:
    """Weights of Linear(d, h) -> ReLU -> Linear(h, o)."""
    return (n_features + 1) * hidden_dim + (hidden_dim + 1) * n_outputs


def data_sizes(cfg: Config) -> tuple:
    """(n_samples, n_features) as the config will draw them; a user's file is measured when loaded."""
    fixed = {"moons": (cfg.n_samples, 2), "circles": (cfg.n_samples, 2), "breast_cancer": (569, 30),
             "digits": (1797, 64)}
    return fixed.get(cfg.dataset, (cfg.n_samples, cfg.n_features))


def estimate(cfg: Config, n_samples: int | None = None, n_features: int | None = None,
             n_params: int | None = None, device="cpu", speed: Speed | None = None) -> Estimate:
    """Memory and time of every stage from the run's sizes, at this machine's measured speed.

    Sizes left out come from cfg (n_params: the MLP's count); pass the loaded data's and the built
    model's sizes when they are known (a user's file or model, the CNN).
    """
    n0, d0 = data_sizes(cfg)
    n, d = n_samples or n0, n_features or d0
    outputs = cfg.n_classes if cfg.n_classes > 2 else 1
    D = n_params or mlp_params(d, cfg.hidden_dim, outputs)
    width = max(1, D // (d + 1))  # hidden units: activations per sample
    speed = speed or _measure_with(cfg.threads, n, d, width, device)
    s = _Sizes(cfg, n, d, D, width, (d + 1) * outputs, speed)
    parts = {"data": Part(3 * n * d * 8.0, n * d * 1e-7, ("n_samples", "n_features"), held=True),
             "trajectories": Part(s.trajectory_bytes(), 0.0, ("epochs", "seed_list", "lr_list", "hidden_dim"),
                                 held=True),
             "training": s.training(), "surfaces": s.surfaces(), "curvature": s.curvature(),
             "embeddings": s.embeddings(), "gifs": s.gifs(),
             "figures": Part(0.0, FIXED_SECONDS, ("--skip=html",))}
    held = sum(p.bytes for p in parts.values() if p.held)
    passing = max(p.bytes for p in parts.values() if not p.held)
    return Estimate(int(BASE_BYTES + held + passing), sum(p.seconds for p in parts.values()), parts)


def _measure_with(threads: int, n: int, d: int, width: int, device) -> Speed:
    """Measure on the run's own thread count, then give torch its setting back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return measure_speed(n, d, width, device)
    finally:
        torch.set_num_threads(before)


class _Sizes:
    """The count of every unit of work (runs, checkpoints, grid points, eigen-solves) and its cost."""

    def __init__(self, cfg, n, d, D, width, D_logistic, speed):
        self.cfg, self.n, self.d, self.D, self.width, self.D_log, self.speed = cfg, n, d, D, width, D_logistic, speed
        self.seeds, self.T = len(cfg.seed_list), cfg.epochs + 1  # checkpoints per run
        self.studies = ((3 if wants(cfg, "optimizers") or wants(cfg, "gifs") or wants(cfg, "html") else 0)
                        + (len(cfg.lr_list) if wants(cfg, "lr_sensitivity") else 0))
        self.eval_n = min(n, cfg.eval_batch_size or n)  # samples per evaluation batch

    def seconds(self, flops: float, calls: float = 0.0, share: float = 1.0) -> float:
        """Time of `flops` arithmetic at `share` of the matmul rate plus `calls` small torch calls."""
        return flops / (share * self.speed.flops_per_s) + calls * self.speed.op_seconds

    def trajectory_bytes(self) -> float:
        """Every checkpoint of every run, float32: (runs, T, D)."""
        return 4.0 * self.T * ((self.seeds + self.studies) * self.D + self.seeds * self.D_log)

    def epoch_seconds(self, D: int, steps: int) -> float:
        """One epoch: forward and backward over every sample (3 passes), then the recorded loss and accuracy (2)."""
        return self.seconds(5 * 2 * self.n * D, (steps + 2) * OPS_PER_STEP, AUTOGRAD_SHARE)

    def training(self) -> Part:
        cfg, n = self.cfg, self.n
        main_steps = math.ceil(n / (cfg.batch_size or n))  # optimiser steps per epoch
        study_steps = math.ceil(n / (cfg.study_batch_size or n))
        seconds = cfg.epochs * (self.seeds * (self.epoch_seconds(self.D, main_steps)
                                              + self.epoch_seconds(self.D_log, main_steps))
                                + self.studies * self.epoch_seconds(self.D, study_steps))
        batch = min(n, max(cfg.batch_size or n, cfg.study_batch_size or n))
        return Part(4.0 * (3 * batch + 2 * self.eval_n) * self.width, seconds,
                    ("epochs", "seed_list", "n_samples", "hidden_dim", "batch_size"),
                    ("batch_size", "eval_batch_size", "hidden_dim", "n_samples"))

    def surfaces(self) -> Part:
        res, lrs = self.cfg.vis_resolution, len(self.cfg.lr_list)
        # full planes: logistic and main, three plane-choice, three minima, Hessian top-2, the studies' shared ones
        full = 2 + 3 + 1 + 1 + (self.studies > 0) + (self.studies > 3)
        planes = full + self.seeds + lrs  # plus one small plane per seed, and a sharpness plane per learning rate
        grids = full * res ** 2 + self.seeds * min(res, 30) ** 2 + lrs * min(res, 25) ** 2
        path_points = 8 * self.T * (self.seeds + self.studies)  # every run is projected onto its planes
        flops = 2 * self.n * self.D * (grids + path_points)
        batch = max(1, min(4096, SURFACE_ELEMENTS // (self.eval_n * self.D)))  # grid points per evaluation batch
        return Part(4.0 * batch * (self.D + self.eval_n * self.width) + 8.0 * res ** 2 * 4,
                    self.seconds(flops, grids, SURFACE_SHARE) + planes * PLANE_SECONDS,
                    ("vis_resolution", "n_samples", "hidden_dim"), ("hidden_dim", "eval_batch_size", "n_samples"))

    def curvature(self) -> Part:
        cfg = self.cfg
        if not (wants(cfg, "curvature") or wants(cfg, "eigen_ratio") or wants(cfg, "spectrum")):
            return Part(0.0, 0.0, ())
        along = math.ceil(self.T / cfg.curvature_every)  # checkpoints per path
        solves = along * (1 + (len(cfg.lr_list) if wants(cfg, "lr_sensitivity") else 0)) + EXTRA_SOLVES
        solves += cfg.curvature_resolution ** 2 if wants(cfg, "eigen_ratio") else 0
        method = cfg.hessian_method if cfg.hessian_method != "auto" else (
            "exact" if self.D <= EXACT_MAX_DIM else "lanczos")
        product = HVP_FORWARDS * 2 * self.n * self.D / AUTOGRAD_SHARE  # one Hessian-vector product, in matmul flops
        if method == "exact":  # H in closed form (MLP: ~n D^2) or from D products, then eigh (~10 D^3)
            build = 1.0 * self.n * self.D ** 2 if self.cfg.model == "mlp" else self.D * product
            per_solve, calls, nbytes = build + 10.0 * self.D ** 3, self.D / 32 * OPS_PER_STEP, 3 * 8.0 * self.D ** 2
            memory_knobs = ("hessian_method", "hidden_dim")  # the (D, D) matrix
        else:
            products = SOLVE_PRODUCTS[method]
            per_solve, calls, nbytes = products * product, products * OPS_PER_STEP, 40 * 8.0 * self.D
            memory_knobs = ("hidden_dim", "eval_batch_size")
        nbytes += 4.0 * 4 * self.eval_n * self.width  # activations of one product
        logistic = along * (2.0 * self.n * self.D_log ** 2 + 10.0 * self.D_log ** 3)  # its own closed form
        return Part(nbytes, self.seconds(solves * per_solve + logistic, solves * calls),
                    ("curvature_every", "epochs", "hessian_method", "hidden_dim", "curvature_resolution"), memory_knobs)

    def embeddings(self) -> Part:
        if not (wants(self.cfg, "isomap") and self.seeds > 1):
            return Part(0.0, 0.0, ())
        N = self.seeds * min(self.T, EMBED_PER_RUN)  # points embedded
        # dense (N, N) float64 distances, shortest paths, centred kernel and trustworthiness ranks
        flops = 2.0 * N * N * self.D + 50.0 * N * N * math.log2(N)
        return Part(4 * 8.0 * N * N + 4.0 * N * self.D, self.seconds(flops),
                    ("seed_list", "hidden_dim", "--skip=isomap"))

    def gifs(self) -> Part:
        if not wants(self.cfg, "gifs"):
            return Part(0.0, 0.0, ())
        frames = self.cfg.gif_frames
        return Part(frames * FRAME_BYTES, GIFS * frames * FRAME_SECONDS, ("gif_frames", "--skip=gifs"))


def check(est: Estimate, available_bytes: float | None = None, limit_seconds: float = LIMIT_SECONDS,
          device="cpu", quiet: bool = False) -> str | None:
    """Refuse a run that cannot fit in memory (ConfigError naming the knobs to lower); warn about a long one.

    Returns the warning line (also printed to stderr unless quiet) when the run would take over limit_seconds.
    """
    available = available_bytes if available_bytes is not None else available_memory(device)
    if available is not None and est.peak_bytes > HEADROOM * available:
        biggest = sorted(est.parts.items(), key=lambda item: -item[1].bytes)
        knobs = _knobs([part for _, part in biggest if part.bytes > 0.1 * HEADROOM * available], "bytes")
        raise ConfigError(f"this run needs about {human_bytes(est.peak_bytes)} of memory, more than the "
                          f"{human_bytes(HEADROOM * available)} it may use here ({biggest[0][0]}: "
                          f"{human_bytes(biggest[0][1].bytes)}): lower {knobs}")
    if est.seconds <= limit_seconds:
        return None
    slowest = sorted(est.parts.items(), key=lambda item: -item[1].seconds)
    shares = ", ".join(f"{name} {human_seconds(p.seconds)}" for name, p in slowest[:3] if p.seconds > 0)
    line = (f"warning: this run will take about {human_seconds(est.seconds)} ({shares}); "
            f"lower {_knobs([p for _, p in slowest if p.seconds > 0.1 * est.seconds], 'seconds')} for a shorter one")
    if not quiet:
        print(line, file=sys.stderr, flush=True)
    return line


def _knobs(parts, cost: str, most: int = 4) -> str:
    """The knobs that shrink the most of the given parts' cost, best first."""
    score = {}
    for part in parts:
        for knob in (part.memory_knobs or part.knobs) if cost == "bytes" else part.knobs:
            score[knob] = score.get(knob, 0.0) + getattr(part, cost)
    return ", ".join(sorted(score, key=lambda k: -score[k])[:most])


def available_memory(device="cpu") -> float | None:
    """Bytes this process can still use: MemAvailable, a cgroup limit if lower, and free GPU memory on CUDA."""
    candidates = [_meminfo_available(), _cgroup_room()]
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        candidates.append(float(torch.cuda.mem_get_info(torch.device(device))[0]))
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def _meminfo_available() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> float | None:
    """A container's memory limit minus what it already uses (cgroup v2), if there is a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = float(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0.0, float(limit) - used)


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def human_seconds(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"
