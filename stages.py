"""The pipeline's computation stages: runs, planes with their surfaces, curvature, embeddings; cached on disk."""
from __future__ import annotations

import dataclasses
import itertools
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

import distributed
from config import format_value
from gradients import descent_arrows
from loss_surface import Surface, evaluate_points, evaluate_surface, grid_for, interpolate_line
from projection import SHARED_WEIGHTINGS, Plane, minima_plane, pca_plane, project, random_plane, shared_plane
from training import OptimizerSpec, Trajectory, full_batch_grad_norm, train

# The shadow rule: a run is drawn on a surface only while the plane holds it and the surface is its loss.
SHADOW_RESIDUAL = 0.10  # a checkpoint's off-plane distance, as a share of the path's largest displacement
SHADOW_GAP = 0.02  # |surface - recorded loss| at a checkpoint
# Checkpoints per warm-started eigensolver chain: a cold start costs about two warm ones (50 against
# 26 products), and 101 checkpoints still make 6 chains to share out across a few ranks.
CURVATURE_CHAIN = 20


# The source files each kind of stage runs: editing any of them invalidates its cached entries.
TRAIN_CODE = ("stages", "data", "models", "training")
SURFACE_CODE = TRAIN_CODE + ("projection", "filter_norm", "loss_surface", "model_graph", "plane_model", "relu_kernel",
                            "gradients")
CURVATURE_CODE = SURFACE_CODE + ("eigensolver", "relu_mlp_hessian", "hessian", "spectrum")


# ---------------------------------------------------------------- runs

def describe(spec: OptimizerSpec, batch_size) -> str:
    """What ran, in words: 'GD lr=0.5', 'SGD lr=0.1 batch 32', 'GD+momentum lr=0.5 β=0.9', 'Adam lr=0.05'."""
    name = "Adam" if spec.optimizer == "adam" else ("SGD" if batch_size else "GD")
    if spec.optimizer == "sgd" and spec.momentum:
        name += "+momentum"
    text = f"{name} lr={format_value(spec.lr)}"
    if spec.optimizer == "sgd" and spec.momentum:
        text += f" β={format_value(spec.momentum)}"
    return text + (f" batch {batch_size}" if batch_size else "")


def stability_line(spec: OptimizerSpec, batch_size):
    """(value, label) of the sharpness that full-batch GD cannot exceed, or None where there is none.

    2/lr for gradient descent, 2(1+β)/lr for heavy-ball momentum (Cohen et al. 2021); Adam and
    mini-batches have no such line.
    """
    if spec.optimizer != "sgd" or batch_size:
        return None
    if spec.momentum:
        return 2 * (1 + spec.momentum) / spec.lr, "2(1+β)/lr"
    return 2 / spec.lr, "2/lr"


@dataclass
class Run:
    """One training run and what identifies it: the cache key of everything computed from it."""
    trajectory: Trajectory
    spec: OptimizerSpec
    batch_size: int | None
    key: dict
    grad_norms: tuple = (float("nan"), float("nan"))  # full-batch gradient norm at the first and last checkpoint

    @property
    def label(self) -> str:
        return self.trajectory.label


def train_run(cache, fm, data, spec, epochs, batch_size, seed, label, key) -> Run:
    """One cached run; its key names the data, the model, the optimiser and every training knob."""
    key = {**key, "spec": asdict(spec), "epochs": epochs, "batch_size": batch_size, "seed": seed, "label": label}

    def compute():
        with warnings.catch_warnings():  # said below, by its label, on a cached rerun too
            warnings.simplefilter("ignore", RuntimeWarning)
            trajectory = train(fm, data.X, data.y, spec, epochs, batch_size=batch_size, seed=seed)
        trajectory.label = label
        buffers = trajectory.buffers or [None] * len(trajectory)
        norms = (full_batch_grad_norm(fm, data.X, data.y, trajectory.params[0], buffers[0]),
                 full_batch_grad_norm(fm, data.X, data.y, trajectory.final, buffers[-1]))
        return trajectory, norms
    trajectory, norms = cache("training", key, TRAIN_CODE, compute)
    if trajectory.diverged and distributed.is_writer():
        print(f"note: run '{label}' diverged after epoch {len(trajectory) - 1} of {epochs}; its "
              f"{len(trajectory)} checkpoints up to there are kept, marked diverged", flush=True)
    return Run(trajectory, spec, batch_size, key, norms)


# ---------------------------------------------------------------- planes and surfaces

@dataclass
class PathOnPlane:
    """One run seen on a plane: where its checkpoints project, and how truly the surface shows them."""
    run: Run
    coords: np.ndarray  # (T, 2) least-squares plane coordinates
    residual: np.ndarray  # (T,) off-plane share of each checkpoint's own displacement from the centre
    offset: np.ndarray  # (T,) off-plane distance of each checkpoint / the path's largest displacement
    surface_loss: np.ndarray  # (T,) L(center + a u + b v) at those coordinates
    arrows: np.ndarray | None = None  # (T, 2) descent_arrows at the checkpoints themselves
    plane_kind: str = "pca"

    @property
    def gap(self) -> np.ndarray:
        return np.abs(self.surface_loss - self.run.trajectory.losses.cpu().numpy())

    @property
    def on_surface(self) -> np.ndarray:
        """(T,) bool: the checkpoints the surface shows truly, drawn on it; the rest are drawn as a shadow.

        The offset, not the per-point residual, decides: near the centre a checkpoint 0.001 away
        can be 50 % off the plane and still sit within a hair of where it is drawn.
        """
        if self.plane_kind == "random":  # a random plane is for sharpness around θ*, never for paths
            return np.zeros(len(self.offset), bool)
        return (self.offset <= SHADOW_RESIDUAL) & (self.gap <= SHADOW_GAP)

    @property
    def drawn(self) -> str:
        on = self.on_surface
        return "surface" if on.all() else "shadow" if not on.any() else "partial"

    def numbers(self) -> dict:
        on = self.on_surface
        return {"residual_mean": float(np.mean(self.offset)), "residual_relative_mean": float(np.mean(self.residual)),
                "gap_max": float(np.max(self.gap[on] if on.any() else self.gap)),
                "gap_max_all": float(np.max(self.gap)), "drawn": self.drawn, "on_surface_share": float(on.mean())}


@dataclass
class Landscape:
    """One plane's surface and every run seen on it."""
    surface: Surface
    paths: list = field(default_factory=list)


def model_at(fm, run: Run, index: int):
    """The model evaluated with the buffers (BatchNorm statistics) of one checkpoint: the plane's centre."""
    buffers = run.trajectory.buffers
    return fm.with_buffers(buffers[index]) if buffers else fm


def evaluate_spread(fm, data, plane: Plane, coords: np.ndarray):
    """evaluate_points, with the points split across torch.distributed ranks when there are several."""
    return distributed.split_map(lambda part: evaluate_points(fm, data.X, data.y, plane, part), coords,
                                 name="surface points")


def surface_on(fm, data, plane: Plane, alphas, betas) -> Surface:
    """evaluate_surface with its grid points split across ranks."""
    return evaluate_surface(fm, data.X, data.y, plane, alphas, betas,
                            points=lambda coords: evaluate_spread(fm, data, plane, coords))


def path_on(fm, data, plane: Plane, run: Run, arrows: bool = False) -> PathOnPlane:
    params = run.trajectory.params
    coords, residual = project(params, plane)
    distance = (params - plane.center).double().norm(dim=1).cpu().numpy()  # (T,)
    offset = residual * distance / max(distance.max(), 1e-30)
    surface_loss, _ = evaluate_spread(fm, data, plane, coords)
    return PathOnPlane(run, coords, residual, offset, surface_loss,
                       descent_arrows(fm, data.X, data.y, params, plane) if arrows else None, plane.kind)


def landscape(cache, fm, data, plane_recipe: dict, make_plane, runs, fitted, resolution, margin,
              arrows=False, span=None) -> Landscape:
    """The surface of one plane around the `fitted` runs' coordinates (or on `span` = (alphas, betas)), cached."""
    key = {"plane": plane_recipe, "runs": [r.key for r in runs], "fitted": [r.key for r in fitted],
           "resolution": resolution, "margin": margin, "arrows": arrows, "span": None if span is None else
           [np.asarray(s).tolist() for s in span]}

    def compute():
        plane = make_plane()
        paths = [path_on(fm, data, plane, run, arrows) for run in runs]
        if span is None:
            fitted_coords = [p.coords for p in paths if any(p.run is f for f in fitted)] or [np.zeros((1, 2))]
            alphas, betas = grid_for(fitted_coords, resolution, margin)
        else:
            alphas, betas = span
        return Landscape(surface_on(fm, data, plane, alphas, betas), paths)
    return cache("surfaces", key, SURFACE_CODE, compute)


def finite_runs(runs) -> list:
    """Runs a plane may be fitted on: a diverged run ends far away and would shrink every other path to a dot."""
    return [r for r in runs if not r.trajectory.diverged] or runs[:1]


def single_run_landscape(cache, fm, data, run: Run, cfg, arrows: bool = True) -> Landscape:
    """A run's own trajectory plane (Li et al.: PCA through θ*), its surface, its path and (arrows) descent arrows."""
    recipe = {"kind": "pca", "norm": cfg.direction_norm, "ignore_bias": cfg.ignore_bias}
    make = lambda: pca_plane(run.trajectory.params, run.trajectory.final, fm.layout,  # noqa: E731
                             norm=cfg.direction_norm, ignore_bias=cfg.ignore_bias)
    return landscape(cache, model_at(fm, run, -1), data, recipe, make, [run], [run],
                     cfg.vis_resolution, cfg.grid_margin, arrows=arrows)


def shared_landscape(cache, fm, data, runs, cfg) -> Landscape:
    """Several runs from one initialisation on the one plane through it that covers them best: of the
    planes each SHARED_WEIGHTINGS gives, the one that draws the largest mean share of the runs'
    checkpoints on its surface (measured at defaults: checkpoint weighting 16 % against 1 % on the
    optimiser plane, extent weighting 62 % against 51 % on the learning-rate plane)."""
    fitted, centre = finite_runs(runs), model_at(fm, runs[0], 0)

    def coverage(plane) -> float:
        return float(np.mean([path_on(centre, data, plane, run).on_surface.mean() for run in fitted]))

    def make():
        planes = [shared_plane([r.trajectory for r in fitted], runs[0].trajectory.params[0], weighting)
                  for weighting in SHARED_WEIGHTINGS]
        return max(planes, key=coverage)  # the first on a tie: the plain least-squares plane
    return landscape(cache, centre, data, {"kind": "shared"}, make, runs, fitted, cfg.vis_resolution, cfg.grid_margin)


def plane_choice(cache, fm, data, run: Run, cfg) -> dict:
    """The same path on the orthonormal PCA plane, the filter-normalised PCA plane and a random plane."""
    fm_c, params, final = model_at(fm, run, -1), run.trajectory.params, run.trajectory.final
    res, margin = cfg.vis_resolution, cfg.grid_margin
    unit = (np.linspace(-1, 1, res), np.linspace(-1, 1, res))  # one filter-normalised step each way
    return {
        # the orthonormal plane is the run's own trajectory plane at the defaults: the same cached stage
        "pca": single_run_landscape(cache, fm, data, run, dataclasses.replace(cfg, direction_norm="none",
                                                                             ignore_bias=False)),
        "filter_pca": landscape(cache, fm_c, data, {"kind": "pca", "norm": "filter"},
                                lambda: pca_plane(params, final, fm.layout, norm="filter"), [run], [run], res, margin),
        "random": landscape(cache, fm_c, data, {"kind": "random", "seed": cfg.data_seed},
                            lambda: random_plane(final, fm.layout, seed=cfg.data_seed), [run], [], res, margin,
                            span=unit),
    }


def seed_landscapes(cache, fm, data, runs, cfg) -> dict:
    """Each seed's path on its own trajectory plane (small multiples), at a coarser grid, without arrows
    (the panels draw none: a gradient at every checkpoint of every seed is most of a CNN's surface time)."""
    small = dataclasses.replace(cfg, vis_resolution=min(cfg.vis_resolution, 30))
    return {run.label: single_run_landscape(cache, fm, data, run, small, arrows=False) for run in runs}


def minima_landscape(cache, fm, data, runs, cfg) -> Landscape:
    """The plane through three seeds' final weights (Garipov et al. 2018): exact at all three minima."""
    three = runs[:3]
    finals = [r.trajectory for r in three]
    make = lambda: minima_plane(*(t.final for t in finals))  # noqa: E731
    # only the minima are drawn on this plane: each run is represented by its last checkpoint
    ends = [Run(_last_only(r.trajectory), r.spec, r.batch_size, {**r.key, "last_only": True}, r.grad_norms)
            for r in three]
    return landscape(cache, model_at(fm, three[0], -1), data, {"kind": "minima"}, make, ends, ends,
                     cfg.vis_resolution, max(cfg.grid_margin, 0.35))


def _last_only(t: Trajectory) -> Trajectory:
    last = slice(len(t) - 1, len(t))
    return dataclasses.replace(t, params=t.params[last], losses=t.losses[last], accuracies=t.accuracies[last],
                               steps=t.steps[last], buffers=t.buffers[last] if t.buffers else None)


def mode_connectivity(cache, fm, data, runs, n_points: int = 25) -> dict:
    """Loss along the straight line between every pair of seeds' minima, and each barrier height.

    barrier = max along the line - mean of the two ends (Garipov et al.; Frankle et al. 2020).
    """
    ts = np.linspace(0, 1, n_points)

    def compute():
        lines = {}
        for a, b in itertools.combinations(runs, 2):
            loss, _ = interpolate_line(fm, data.X, data.y, a.trajectory.final, b.trajectory.final, ts)
            lines[f"{a.label} - {b.label}"] = {"losses": loss, "barrier": float(loss.max() - (loss[0] + loss[-1]) / 2),
                                               "end_losses": [float(loss[0]), float(loss[-1])],
                                               "max_loss": float(loss.max())}
        return {"ts": ts, "lines": lines}
    return cache("mode connectivity", {"runs": [r.key for r in runs], "points": n_points}, SURFACE_CODE, compute)


def sharpness(cache, fm, data, runs, cfg, n_points: int = 41) -> dict:
    """Filter-normalised random directions around each run's minimum, on one shared range (Li et al. fig. 5).

    One random direction (same seed for every run) gives the 1-D curves; a random plane the
    small 2-D surfaces. Filter normalisation gives each direction the weights' own scale, so
    widths compare across learning rates.
    """
    ts = np.linspace(-1, 1, n_points)
    grid = np.linspace(-1, 1, min(cfg.vis_resolution, 25))

    def compute():
        out = []
        for run in runs:
            final, fm_c = run.trajectory.final, model_at(fm, run, -1)
            plane = random_plane(final, fm.layout, seed=cfg.data_seed)
            line, _ = evaluate_points(fm_c, data.X, data.y, plane, np.stack([ts, np.zeros_like(ts)], axis=1))
            out.append({"label": run.label, "line": line, "surface": surface_on(fm_c, data, plane, grid, grid)})
        return {"ts": ts, "runs": out}
    return cache("sharpness", {"runs": [r.key for r in runs], "seed": cfg.data_seed, "points": n_points,
                               "grid": len(grid)}, SURFACE_CODE, compute)


# ---------------------------------------------------------------- curvature

def curvature_of(cache, fm, data, run: Run, cfg):
    """λmin and λmax along a run (every curvature_every-th checkpoint), cached."""
    import hessian
    params = run.trajectory.params
    indices = hessian.checkpoint_indices(len(params), cfg.curvature_every)

    def compute():
        lam_min, lam_max = curvature_in_chains(fm, data.X, data.y, params, indices, cfg.hessian_method)
        return hessian.Curvature(indices, lam_max, lam_min, hessian.resolve_method(cfg.hessian_method, fm.dim))
    key = {"run": run.key, "every": cfg.curvature_every, "method": cfg.hessian_method}
    return cache("curvature", key, CURVATURE_CODE, compute)


def curvature_in_chains(fm, X, y, params, indices, method: str = "auto", chain: int = CURVATURE_CHAIN) -> tuple:
    """(λmin, λmax) at params[indices], in chains of `chain` checkpoints split across ranks.

    Each chain starts cold and warm-starts within itself, so every number is the same whatever the
    number of ranks (a rank's share is whole chains), at any solver tolerance.
    """
    import hessian
    chains = [indices[i:i + chain] for i in range(0, len(indices), chain)]

    def ends(chain_numbers):
        return [hessian.curvature_along(fm, X, y, params, method=method, indices=chains[c], progress=False)
                for c in chain_numbers]
    done = distributed.split_map(ends, np.arange(len(chains)), name="curvature chains")
    return np.concatenate([c.lam_min for c in done]), np.concatenate([c.lam_max for c in done])


def curvature_extras(cache, fm, data, run: Run, cfg, n_trace: int = 6, n_probes: int = 30) -> dict:
    """Trace along the path (Hutchinson), the spectral density at the first and final checkpoints,
    and the landscape on the plane of the top two Hessian eigenvectors at θ* (how curved it is
    where descent did not go), beside the run's PCA plane and on its grid.
    """
    import hessian
    params = run.trajectory.params
    picks = np.unique(np.linspace(0, len(params) - 1, n_trace).round().astype(int))

    def compute():
        traces = [hessian.trace(fm, data.X, data.y, params[i], n_probes=n_probes, seed=0)[0] for i in picks]
        densities = {name: hessian.spectral_density(fm, data.X, data.y, params[i], seed=0)
                     for name, i in (("first", 0), ("final", len(params) - 1))}
        values, vectors = hessian.top_eigenpairs(fm, data.X, data.y, params[-1], k=2)
        return {"trace_steps": run.trajectory.steps[picks].cpu().numpy(), "trace": np.array(traces, float),
                "densities": densities, "top_values": values.detach().cpu().double().numpy(), "top_vectors": vectors}
    return cache("curvature extras", {"run": run.key, "points": n_trace, "probes": n_probes}, CURVATURE_CODE,
                 compute)


def eigen_landscape(cache, fm, data, run: Run, extras: dict, span, cfg) -> Landscape:
    """The surface on the plane of the top-2 Hessian eigenvectors at the run's final weights."""
    values, vectors = extras["top_values"], extras["top_vectors"]
    names = tuple(f"top eigenvector {i + 1} (λ={value:.3g})" for i, value in enumerate(values))
    make = lambda: Plane(run.trajectory.final.clone(), vectors[0].to(run.trajectory.final),  # noqa: E731
                         vectors[1].to(run.trajectory.final), "eigen", names=names)
    return landscape(cache, model_at(fm, run, -1), data, {"kind": "eigen", "values": values.tolist()}, make,
                     [run], [], cfg.vis_resolution, cfg.grid_margin, span=span)


def eigen_ratio(cache, fm, data, scape: Landscape, run: Run, cfg):
    """|λmin/λmax| on a coarse grid of a run's plane (Li et al.'s convexity map)."""
    import hessian
    surface = scape.surface
    alphas = np.linspace(surface.alphas[0], surface.alphas[-1], cfg.curvature_resolution)
    betas = np.linspace(surface.betas[0], surface.betas[-1], cfg.curvature_resolution)
    compute = lambda: (alphas, betas, hessian.eigen_ratio_map(fm, data.X, data.y, surface.plane, alphas, betas,  # noqa: E731
                                                              method=cfg.hessian_method, progress=False))
    key = {"run": run.key, "resolution": cfg.curvature_resolution, "method": cfg.hessian_method,
           "norm": cfg.direction_norm, "ignore_bias": cfg.ignore_bias, "grid": [cfg.vis_resolution, cfg.grid_margin]}
    return cache("eigen ratio", key, CURVATURE_CODE, compute)


# ---------------------------------------------------------------- embeddings and lines

def embeddings(cache, runs, max_per_run: int = 101) -> dict:
    """The checkpoints of every seed embedded by PCA and by Isomap, with trustworthiness."""
    from projection import isomap_embedding, pca_embedding, trustworthiness_score

    def compute():
        picks = [np.unique(np.linspace(0, len(r.trajectory) - 1, min(len(r.trajectory), max_per_run)).astype(int))
                 for r in runs]
        points = torch.cat([r.trajectory.params[p] for r, p in zip(runs, picks)]).cpu()
        with warnings.catch_warnings():  # separate runs make a disconnected graph; Isomap completes it
            warnings.simplefilter("ignore")
            isomap = isomap_embedding(points, min(10, len(points) - 2))
        pca = pca_embedding(points)
        return {"points_per_run": [len(p) for p in picks],
                "losses": torch.cat([r.trajectory.losses[p] for r, p in zip(runs, picks)]).cpu().numpy(),
                "pca": pca, "isomap": isomap, "trust_pca": trustworthiness_score(points, pca),
                "trust_isomap": trustworthiness_score(points, isomap)}
    return cache("embeddings", {"runs": [r.key for r in runs], "max_per_run": max_per_run},
                 SURFACE_CODE, compute)


def init_to_final(cache, fm, data, run: Run, n_points: int = 61):
    """Loss and accuracy along the straight line from a run's initial to its final weights (Goodfellow et al.)."""
    ts = np.linspace(-0.25, 1.25, n_points)
    t = run.trajectory
    compute = lambda: (ts, *interpolate_line(fm, data.X, data.y, t.params[0], t.final, ts))  # noqa: E731
    return cache("interpolation", {"run": run.key, "points": n_points}, SURFACE_CODE, compute)
