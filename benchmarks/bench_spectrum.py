"""Hutchinson trace and SLQ density with probes side by side, against the probe-at-a-time spectrum.py of HEAD."""
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import spectrum  # noqa: E402
from common import default_mlp_run  # noqa: E402
from config import Config  # noqa: E402
from main import load_data  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402

REPEATS = 5  # interleaved repeats of old and new; medians are compared
REVISION = "56e2e7d"  # the last probe-at-a-time spectrum.py (another revision may be given on the command line)


def load_old(revision: str):
    """spectrum.py as it was at `revision`, imported from a temporary file as module spectrum_old."""
    source = subprocess.run(["git", "show", f"{revision}:spectrum.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "spectrum_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("spectrum_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_cnn_run():
    """(fm, X, y, theta) for the digits CNN after 300 full-batch steps: no closed form, autodiff products."""
    data = load_data(Config(dataset="digits", model="cnn"), "cpu")
    fm = FlatModel(build_model("cnn", data.n_features, seed=0, n_classes=data.n_classes,
                               image_shape=data.image_shape, loss="ce"), loss="ce")
    run = train(fm, data.X, data.y, OptimizerSpec("gd", "sgd", 0.5), 300)
    return fm, data.X, data.y, run.final


def interleaved(old_fn, new_fn) -> tuple:
    """(old seconds, new seconds, old result, new result): medians of REPEATS alternating calls."""
    times, results = ([], []), [None, None]
    for _ in range(REPEATS):
        for i, fn in enumerate((old_fn, new_fn)):
            start = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), *results


def compare(label, old, fm, X, y, theta):
    args = (fm, X, y, theta)
    t_old, t_new, a, b = interleaved(lambda: old.trace(*args, n_probes=30, seed=0, exact=False),
                                     lambda: spectrum.trace(*args, n_probes=30, seed=0, exact=False))
    print(f"{label} D={fm.dim}  trace(n_probes=30):  old {t_old:.3f} s  new {t_new:.3f} s  "
          f"ratio {t_old / t_new:.2f}x  |Δ estimate| {abs(a[0] - b[0]):.2e} (of {abs(a[0]):.3g}), "
          f"|Δ error| {abs(a[1] - b[1]):.2e}")
    t_old, t_new, a, b = interleaved(lambda: old.spectral_density(*args, n_probes=10, n_steps=80, seed=0),
                                     lambda: spectrum.spectral_density(*args, n_probes=10, n_steps=80, seed=0))
    grid_step = np.abs(a[0][1] - a[0][0])
    print(f"{label} D={fm.dim}  spectral_density(10 probes, 80 steps):  old {t_old:.3f} s  new {t_new:.3f} s  "
          f"ratio {t_old / t_new:.2f}x  max |Δ grid| {np.abs(a[0] - b[0]).max():.2e} (step {grid_step:.2e}), "
          f"max |Δ density| {np.abs(a[1] - b[1]).max():.2e} (of peak {a[1].max():.3g})")


def main():
    torch.set_num_threads(1)
    old = load_old(sys.argv[1] if len(sys.argv) > 1 else REVISION)
    fm, data, run = default_mlp_run()
    compare("default MLP (closed form)", old, fm, data.X, data.y, run.final)
    compare("digits CNN (autodiff)", old, *digits_cnn_run())


if __name__ == "__main__":
    main()
