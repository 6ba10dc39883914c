"""Tabular binary-classification data sets, standardised, deterministic for a seed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn import datasets as skd

DATASETS = ("classification", "moons", "circles", "breast_cancer")


@dataclass
class Dataset:
    X: torch.Tensor  # (n, d) float32, standardised per feature
    y: torch.Tensor  # (n,) float32 labels in {0, 1}
    name: str

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def to(self, device) -> "Dataset":
        return Dataset(self.X.to(device), self.y.to(device), self.name)


def make_dataset(name: str = "classification", n_samples: int = 1000, n_features: int = 10,
                 noise: float = 0.1, seed: int = 0) -> Dataset:
    """Draw a data set by name; the same arguments always give the same tensors.

    n_features applies to "classification"; "moons" and "circles" are 2-D and
    "breast_cancer" has its 30 measured features.
    """
    rng = np.random.RandomState(seed)
    if name == "classification":
        X, y = skd.make_classification(
            n_samples=n_samples, n_features=n_features, n_informative=max(2, n_features // 2),
            n_redundant=min(2, n_features - max(2, n_features // 2)), flip_y=noise, random_state=rng)
    elif name in ("moons", "circles"):
        make = skd.make_moons if name == "moons" else skd.make_circles
        kwargs = {"factor": 0.5} if name == "circles" else {}
        X, y = make(n_samples=n_samples, noise=noise, random_state=rng, **kwargs)  # 2-D by nature
    elif name == "breast_cancer":
        X, y = skd.load_breast_cancer(return_X_y=True)  # ships inside scikit-learn: no download
    else:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    return Dataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), name)
