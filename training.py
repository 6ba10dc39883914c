"""Training loops that record the weights at every epoch: the paths drawn on the landscape."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from models import FlatModel, check_outputs


# A loss this many times the initial one has diverged, finite or not: such a run ends far off and, kept,
# would shrink every other path to a dot and the colour scale to one colour (GD+momentum at 3e17).
DIVERGED_FACTOR = 1e3


@dataclass
class Trajectory:
    params: torch.Tensor  # (T, D) row 0 = initialisation, last row = final weights
    losses: torch.Tensor  # (T,) full-batch loss at each record
    accuracies: torch.Tensor  # (T,) full-batch accuracy at each record
    steps: torch.Tensor  # (T,) epoch of each record
    label: str = ""
    diverged: bool = False  # stopped early: a non-finite loss, or one DIVERGED_FACTOR x the initial loss
    lr: float = float("nan")  # learning rate it was trained with
    buffers: list | None = None  # buffers (BatchNorm running statistics) at each record; None without any

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
          batch_size: int | None = None, seed: int = 0, buffers_init: dict | None = None,
          n_classes: int | None = None) -> Trajectory:
    """Train from theta_init (default fm.theta0), recording full-batch loss and accuracy per epoch.

    Full batch unless batch_size is set; mini-batch order is drawn from a generator seeded by
    `seed`, and the module's own random draws (dropout) from torch's RNG seeded by it inside a
    fork, so the same arguments give bit-identical trajectories. Steps run the module in train
    mode; the records are the eval-mode loss with the buffers of that moment.
    """
    check_outputs(fm, X, y, n_classes)  # a wrong shape or label is one ValueError before any work
    theta = (fm.theta0 if theta_init is None else theta_init).detach().clone().requires_grad_(True)
    buffers = {k: b.clone() for k, b in (fm.buffers if buffers_init is None else buffers_init).items()}
    optimizer = make_optimizer(theta, spec)
    generator = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    with torch.random.fork_rng(devices=_cuda_devices(fm.device)):
        torch.manual_seed(seed)
        records, diverged = [_record(fm, theta, buffers, X, y)], False
        for _ in range(epochs):
            # 1. one pass over the data: a single step when full batch; BatchNorm updates `buffers`
            order = torch.randperm(n, generator=generator).to(X.device) if batch_size else None
            for start in range(0, n, batch_size or n):
                idx = order[start:start + batch_size] if order is not None else slice(None)
                optimizer.zero_grad(set_to_none=True)
                fm.train_loss(theta, X[idx], y[idx], buffers).backward()
                optimizer.step()
            # 2. record the full-batch numbers at the new weights; stop on the first diverged one
            record = _record(fm, theta, buffers, X, y)
            if _diverged(record, records[0][1]):
                diverged = True
                warnings.warn(f"run '{spec.label}' diverged at epoch {len(records)} (lr={spec.lr}, loss "
                              f"{float(record[1]):.3g}); keeping its {len(records)} checkpoints before that",
                              RuntimeWarning, stacklevel=2)
                break
            records.append(record)
    params, losses, accs, kept = zip(*records)
    params, losses, accs = torch.stack(params), torch.stack(losses), torch.stack(accs)
    steps = torch.arange(len(records))
    return Trajectory(params, losses, accs, steps, spec.label, diverged, spec.lr, list(kept) if fm.buffers else None)


def _diverged(record, initial_loss: torch.Tensor) -> bool:
    """A non-finite loss or weight, or a loss over DIVERGED_FACTOR x the initial one (when that is positive)."""
    theta, loss = record[0], record[1]
    if not (torch.isfinite(loss) and torch.isfinite(theta).all()):
        return True
    return bool(initial_loss > 0 and loss > DIVERGED_FACTOR * initial_loss)


def _cuda_devices(device) -> list:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _record(fm, theta, buffers, X, y):
    """(theta, loss, accuracy, buffers) copies at this moment: eval mode with the current buffers."""
    with torch.no_grad():
        t = theta.detach().clone()
        kept = {k: b.clone() for k, b in buffers.items()}
        at = fm.with_buffers(kept) if kept else fm
        return (t, *at.loss_and_accuracy(t, X, y), kept)


def full_batch_grad_norm(fm: FlatModel, X, y, theta: torch.Tensor, buffers: dict | None = None) -> float:
    """‖∇L(theta)‖ of the full-batch eval-mode loss (with these buffers), one eval batch at a time."""
    at = fm.with_buffers(buffers) if buffers else fm
    return float(at.grad(theta.detach(), X, y).double().norm())


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
