"""Writes the example data files: blobs.npz (3 classes, 2-D) and wave.csv (regression, header row)."""
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_blobs(n_per_class: int = 100, seed: int = 0):
    """Three Gaussian blobs in 2-D: X (300, 2) float32, y (300,) int64 labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 2.0], [-1.8, -1.0], [1.8, -1.0]])
    X = np.concatenate([c + 0.8 * rng.standard_normal((n_per_class, 2)) for c in centers])
    y = np.repeat(np.arange(3), n_per_class)
    return X.astype(np.float32), y.astype(np.int64)


def make_wave(n: int = 200, seed: int = 0):
    """A noisy sine of two features: X (200, 2), target sin(2 x1) + 0.5 x2 + noise (float)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(n)


if __name__ == "__main__":
    X, y = make_blobs()
    np.savez_compressed(HERE / "blobs.npz", X=X, y=y)
    X, t = make_wave()
    rows = [f"{a:.4f},{b:.4f},{c:.4f}" for (a, b), c in zip(X, t)]
    (HERE / "wave.csv").write_text("x1,x2,target\n" + "\n".join(rows) + "\n")
