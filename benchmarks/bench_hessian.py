"""Hessian curvature along paths: both ends by warm-started Lanczos against a PyHessian-style λmax loop."""
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import config  # noqa: E402
import eigensolver  # noqa: E402
import hessian  # noqa: E402
import main as pipeline  # noqa: E402
from data import make_dataset  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from projection import pca_plane, project  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402

REPEATS = 7  # interleaved repeats of each timed method; medians are compared (with 3 the D=385 ratio read
# 0.88-1.03 on one shared machine within an hour, the code unchanged)
REPEATS_LARGE = 3  # at D=3073, where one repeat of the three methods takes about 4 s


def pyhessian_lambda_max(module, params, X, y, tol=1e-3, max_iter=100, seed=0) -> tuple:
    """PyHessian's eigenvalues(top_n=1) at each checkpoint: weights loaded into the module, one
    create_graph backward, then power iteration with one HVP per iteration from a fresh random start,
    stopping when λ moves less than tol relative. Returns (λmax per checkpoint, HVPs per checkpoint)."""
    lams, counts = [], []
    for k, theta in enumerate(params):
        torch.nn.utils.vector_to_parameters(theta, module.parameters())
        weights = list(module.parameters())
        loss = torch.nn.functional.binary_cross_entropy_with_logits(module(X), y)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        generator = torch.Generator().manual_seed(seed + k)
        v = [torch.randn(w.shape, generator=generator) for w in weights]
        lam = None
        for i in range(1, max_iter + 1):
            norm = torch.sqrt(sum((vi * vi).sum() for vi in v))
            v = [vi / norm for vi in v]
            Hv = torch.autograd.grad(grads, weights, grad_outputs=v, retain_graph=True)
            new = float(sum((h * vi).sum() for h, vi in zip(Hv, v)))
            v = [h.detach() for h in Hv]
            if lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol:
                break
            lam = new
        lams.append(new)
        counts.append(i)
    return np.array(lams), np.array(counts)


def interleaved(methods: dict, repeats: int = REPEATS) -> dict:
    """name -> (median seconds, last result); methods run in turn, so machine load hits all alike."""
    times, results = {name: [] for name in methods}, {}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in methods}


def lobpcg_ends(fm, X, y, params, tol=eigensolver.END_TOL) -> tuple:
    """scipy's LOBPCG, warm-started from the previous checkpoint's vectors, on the same float32 operator:
    λmin from a block of 4, λmax from a block of 1, residuals below tol of the λmax estimate."""
    import warnings
    from scipy.sparse.linalg import LinearOperator, lobpcg
    warnings.filterwarnings("ignore", message=".*(accuracies|requested tolerance).*")  # it says so per checkpoint
    generator = np.random.default_rng(0)
    low, high, lam_min, lam_max = generator.standard_normal((fm.dim, 4)), generator.standard_normal((fm.dim, 1)), [], []
    for theta in params:
        matvec, dtype = hessian.operator(fm, X, y, theta, torch.float32)
        op = LinearOperator((fm.dim, fm.dim), matvec=lambda v: matvec(torch.from_numpy(v.T).to(dtype)).double().numpy().T,
                            matmat=lambda V: matvec(torch.from_numpy(np.ascontiguousarray(V.T)).to(dtype)).double().numpy().T,
                            dtype=np.float64)
        top, high = lobpcg(op, high, largest=True, tol=tol * (abs(lam_max[-1]) if lam_max else 1.0), maxiter=50)
        bottom, low = lobpcg(op, low, largest=False, tol=tol * abs(top[0]), maxiter=200)
        lam_min.append(bottom.min())
        lam_max.append(top.max())
    return np.array(lam_min), np.array(lam_max)


def dense_ends(fm, X, y, params, rows) -> tuple:
    """(λmin, λmax, ‖H‖) of the float64 Hessian at the given rows by dense eigvalsh: the truth."""
    from scipy.linalg import eigvalsh
    ends = []
    for i in rows:
        H = hessian.hessian_matrix(FlatModel(copy.deepcopy(fm.module).double()), X.double(), y.double(),
                                   params[i].double())
        values = eigvalsh(H.numpy(), driver="evd")
        ends.append((values[0], values[-1], np.abs(values).max()))
    return tuple(np.array(column) for column in zip(*ends))


def max_errors(curvature, truth, rows) -> tuple:
    """The largest error of each end over rows, in units of END_TOL ‖H‖."""
    lo, hi, scale = truth
    unit = eigensolver.END_TOL * scale
    return np.max(np.abs(curvature.lam_min[rows] - lo) / unit), np.max(np.abs(curvature.lam_max[rows] - hi) / unit)


def compare_with_pyhessian(hidden: int, repeats: int, truth_every: int, with_lobpcg: bool) -> float:
    """Times both loops side by side; checks our ends against dense eigvalsh at every truth_every-th checkpoint."""
    data = make_dataset("classification", 1000, 10, 0.1, seed=0)
    X, y = data.X, data.y
    module = build_model("mlp", 10, hidden, seed=0)
    fm = FlatModel(module)
    run = train(fm, X, y, OptimizerSpec("sgd", "sgd", 0.05), 100, batch_size=32)
    twin = copy.deepcopy(module)
    out = interleaved({
        "pyhessian": lambda: pyhessian_lambda_max(twin, run.params, X, y),
        "warm": lambda: hessian.curvature_along(fm, X, y, run.params, progress=False),
        "cold": lambda: hessian.curvature_along(fm, X, y, run.params, progress=False, warm_start=False),
        **({"lobpcg": lambda: lobpcg_ends(fm, X, y, run.params)} if with_lobpcg else {}),
    }, repeats)
    (t_py, (lam_py, n_py)), (t_warm, warm), (t_cold, cold) = out["pyhessian"], out["warm"], out["cold"]
    rows = np.arange(0, len(run.params), truth_every)
    truth = dense_ends(fm, X, y, run.params, rows)
    print(f"D={fm.dim} ({len(run)} checkpoints, n=1000, method {warm.method}):")
    print(f"  PyHessian-style λmax only, tol 1e-3: {t_py:6.2f} s, {n_py.mean():5.1f} HVPs/ckpt")
    print(f"  curvature_along both ends, warm:     {t_warm:6.2f} s, {warm.hvps.mean():5.1f} HVPs/ckpt   "
          f"ratio project / PyHessian-style = {t_warm / t_py:.2f}")
    print(f"  curvature_along both ends, cold:     {t_cold:6.2f} s, {cold.hvps.mean():5.1f} HVPs/ckpt   "
          f"warm start saves {1 - t_warm / t_cold:.0%} time, {1 - warm.hvps.sum() / cold.hvps.sum():.0%} HVPs")
    for name, result in (("warm", warm), ("cold", cold)):
        lo, hi = max_errors(result, truth, rows)
        print(f"  {name} vs dense float64 eigvalsh at {len(rows)} checkpoints: max error λmin {lo:.2f}, "
              f"λmax {hi:.2f} (units of END_TOL ‖H‖ = {eigensolver.END_TOL:g} ‖H‖)")
    unit = eigensolver.END_TOL * truth[2]
    print(f"  PyHessian λmax vs dense: max error {np.max(np.abs(lam_py[rows] - truth[1]) / unit):.2f}")
    if with_lobpcg:  # 30x slower than ours at D=3073 (59 s), so only here
        t_lobpcg, (lobpcg_min, lobpcg_max) = out["lobpcg"]
        print(f"  scipy LOBPCG both ends, warm:        {t_lobpcg:6.2f} s   ratio / PyHessian-style = "
              f"{t_lobpcg / t_py:.2f}; vs dense: max error λmin {np.max(np.abs(lobpcg_min[rows] - truth[0]) / unit):.2f}, "
              f"λmax {np.max(np.abs(lobpcg_max[rows] - truth[1]) / unit):.2f}")
    return t_warm / t_py


def cnn_curvature() -> None:
    """The digits CNN (no closed form: autodiff HVPs), trained 300 epochs of GD, at 11 checkpoints."""
    data = pipeline.load_data(config.Config(dataset="digits", model="cnn"), "cpu")
    module = build_model("cnn", data.n_features, seed=0, n_classes=data.n_classes, image_shape=data.image_shape,
                         loss="ce")
    fm = FlatModel(module, loss="ce")
    run = train(fm, data.X, data.y, OptimizerSpec("gd", "sgd", 0.5), 300)
    rows = np.linspace(0, len(run.params) - 1, 11).round().astype(int)
    start = time.perf_counter()
    curvature = hessian.curvature_along(fm, data.X, data.y, run.params, progress=False, indices=rows)
    seconds = time.perf_counter() - start
    print(f"digits CNN (D={fm.dim}, n={len(data.X)}, method {curvature.method}), 11 checkpoints: {seconds:.2f} s, "
          f"{seconds / len(rows):.2f} s/ckpt, {curvature.hvps.mean():.1f} HVPs/ckpt")


def breast_cancer_curvature() -> float:
    """main.py's curvature stage on --dataset=breast_cancer: the MLP and logistic runs, four
    learning-rate runs (full batch) and the 11 x 11 |λmin/λmax| map over the MLP's plane."""
    data = make_dataset("breast_cancer")
    X, y = data.X, data.y
    fms = {kind: FlatModel(build_model(kind, data.n_features, 32, seed=0)) for kind in ("mlp", "logistic")}
    runs = {kind: train(fm, X, y, OptimizerSpec(kind, "sgd", 0.05), 100, batch_size=32) for kind, fm in fms.items()}
    lr_runs = [train(fms["mlp"], X, y, OptimizerSpec(f"lr {lr}", "sgd", lr), 100) for lr in (0.1, 0.5, 1.0, 2.0)]
    plane = pca_plane(runs["mlp"].params, runs["mlp"].final, fms["mlp"].layout)
    coords, _ = project(runs["mlp"].params, plane)
    alphas, betas = (np.linspace(1.25 * c.min(), 1.25 * c.max(), 11) for c in coords.T)
    start = time.perf_counter()
    for kind in ("mlp", "logistic"):
        hessian.curvature_along(fms[kind], X, y, runs[kind].params, progress=False)
    for run in lr_runs:
        hessian.curvature_along(fms["mlp"], X, y, run.params, progress=False)
    hessian.eigen_ratio_map(fms["mlp"], X, y, plane, alphas, betas, progress=False)
    seconds = time.perf_counter() - start
    print(f"breast_cancer curvature stage (D={fms['mlp'].dim}, {sum(len(r) for r in lr_runs) + 2 * 101} "
          f"checkpoints + 121 map points): {seconds:.2f} s")
    return seconds


def main():
    torch.set_num_threads(1)
    print(f"torch threads 1; medians of {REPEATS} interleaved repeats ({REPEATS_LARGE} at D=3073)")
    ratios = [compare_with_pyhessian(32, REPEATS, 1, True), compare_with_pyhessian(256, REPEATS_LARGE, 20, False)]
    print(f"ratios project / PyHessian-style: {', '.join(f'{r:.2f}' for r in ratios)} (target < 1)")
    breast_cancer_curvature()
    cnn_curvature()


if __name__ == "__main__":
    main()
