"""Shared set-up for the benchmarks: the default MLP trained at the default config, and a timer."""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Config  # noqa: E402
from data import make_dataset  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402


def default_mlp_run():
    """(fm, data, trajectory) for the default MLP: 10 features, hidden 32, 1000 samples, 100 epochs."""
    cfg = Config()
    data = make_dataset(cfg.dataset, cfg.n_samples, cfg.n_features, cfg.noise, cfg.data_seed)
    fm = FlatModel(build_model("mlp", data.n_features, cfg.hidden_dim, seed=0))
    run = train(fm, data.X, data.y, OptimizerSpec("gd", "sgd", cfg.lr), cfg.epochs)
    return fm, data, run


def median_time(fn, repeats: int = 5) -> float:
    """Median wall-clock seconds of fn() over repeats, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
