"""Training loops that record the weights at every epoch: the paths drawn on the landscape."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from models import FlatModel


@dataclass
class Trajectory:
    params: torch.Tensor  # (T, D) row 0 = initialisation, last row = final weights
    losses: torch.Tensor  # (T,) full-batch loss at each record
    accuracies: torch.Tensor  # (T,) full-batch accuracy at each record
    steps: torch.Tensor  # (T,) epoch of each record
    label: str = ""
    diverged: bool = False  # stopped early on a non-finite loss
    lr: float = float("nan")  # learning rate it was trained with

    @property
    def final(self) -> torch.Tensor:
        return self.params[-1]

    def __len__(self) -> int:
        return self.params.shape[0]


@dataclass(frozen=True)
class OptimizerSpec:
    label: str
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.0


def make_optimizer(theta: torch.Tensor, spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD([theta], lr=spec.lr, momentum=spec.momentum)
    if spec.optimizer == "adam":
        return torch.optim.Adam([theta], lr=spec.lr)
    raise ValueError(f"unknown optimizer {spec.optimizer!r}: expected sgd or adam")


def train(fm: FlatModel, X, y, spec: OptimizerSpec, epochs: int, theta_init=None,
          batch_size: int | None = None, seed: int = 0) -> Trajectory:
    """Train from theta_init (default fm.theta0), recording full-batch loss and accuracy per epoch.

    Full batch unless batch_size is set; mini-batch order is drawn from a generator seeded
    by `seed`, so the same arguments give bit-identical trajectories.
    """
    theta = (fm.theta0 if theta_init is None else theta_init).detach().clone().requires_grad_(True)
    optimizer = make_optimizer(theta, spec)
    generator = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    records, diverged = [_record(fm, theta, X, y)], False
    for _ in range(epochs):
        # 1. one pass over the data: a single step when full batch
        order = torch.randperm(n, generator=generator).to(X.device) if batch_size else None
        for start in range(0, n, batch_size or n):
            idx = order[start:start + batch_size] if order is not None else slice(None)
            optimizer.zero_grad(set_to_none=True)
            fm.loss(theta, X[idx], y[idx]).backward()
            optimizer.step()
        # 2. record the full-batch numbers at the new weights; stop on the first non-finite one
        record = _record(fm, theta, X, y)
        if not (torch.isfinite(record[1]) and torch.isfinite(record[0]).all()):
            diverged = True
            warnings.warn(f"run '{spec.label}' diverged at epoch {len(records)} (lr={spec.lr}); "
                          f"keeping its {len(records)} finite checkpoints", RuntimeWarning, stacklevel=2)
            break
        records.append(record)
    params, losses, accs = (torch.stack(r) for r in zip(*records))
    steps = torch.arange(len(records))
    return Trajectory(params, losses, accs, steps, spec.label, diverged, spec.lr)


def _record(fm, theta, X, y):
    with torch.no_grad():
        t = theta.detach().clone()
        return t, fm.loss(t, X, y), fm.accuracy(t, X, y)


def train_seeds(make_fm, X, y, spec: OptimizerSpec, epochs: int, seeds, batch_size=None):
    """One run per seed; make_fm(seed) builds the FlatModel with that seed's initialisation."""
    runs = []
    for seed in seeds:
        run = train(make_fm(seed), X, y, spec, epochs, batch_size=batch_size, seed=seed)
        run.label = f"seed {seed}"
        runs.append(run)
    return runs


def train_optimizers(fm: FlatModel, X, y, specs, epochs: int, batch_size=None, seed: int = 0):
    """Several optimisers from one identical initialisation (fm.theta0)."""
    return [train(fm, X, y, spec, epochs, batch_size=batch_size, seed=seed) for spec in specs]


def path_statistics(run: Trajectory) -> dict:
    """How far and how directly a run travelled: the numbers of the optimiser table.

    path_length sums ‖θ_{t+1} - θ_t‖ over the records; straight_distance is ‖θ_T - θ_0‖;
    efficiency = straight_distance / path_length (1 = a straight line).
    """
    steps = (run.params[1:] - run.params[:-1]).double().norm(dim=1)
    length = float(steps.sum())
    straight = float((run.params[-1] - run.params[0]).double().norm())
    initial, final = float(run.losses[0]), float(run.losses[-1])
    return {"initial_loss": initial, "final_loss": final,
            "improvement_pct": 100.0 * (initial - final) / initial if initial else 0.0,
            "path_length": length, "straight_distance": straight,
            "efficiency": straight / length if length > 0 else 1.0,
            "epochs": len(run) - 1, "diverged": run.diverged}
