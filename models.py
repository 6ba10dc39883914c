"""Models, and FlatModel: any nn.Module as a function of one flat parameter vector."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap


class LogisticRegression(nn.Module):
    def __init__(self, n_features: int):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x):  # (n, d) -> (n,) logits
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    def __init__(self, n_features: int, hidden_dim: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 1)

    def forward(self, x):  # (n, d) -> (n,) logits
        return self.fc2(torch.relu(self.fc1(x))).squeeze(-1)


MODEL_KINDS = ("logistic", "mlp")
LOSSES = ("bce", "ce", "mse")  # binary cross-entropy with logits | multi-class cross-entropy | squared error


def loss_from_logits(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The one loss of the project: mean over the sample axis of logits (..., n) or (..., n, C) -> (...).

    bce: logits (..., n), 0/1 float labels; ce: logits (..., n, C), integer labels in [0, C);
    mse: outputs (..., n), float targets. Leading axes (grid points, batches) are kept.
    """
    if kind == "bce":  # softplus(z) - y z: the stable form of F.binary_cross_entropy_with_logits
        return (F.softplus(logits) - logits * y).mean(dim=-1)
    if kind == "ce":
        log_p = torch.log_softmax(logits, dim=-1)  # (..., n, C)
        picked = log_p.gather(-1, y.long().expand(*log_p.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return -picked.mean(dim=-1)
    if kind == "mse":
        return ((logits - y) ** 2).mean(dim=-1)
    raise ValueError(f"unknown loss {kind!r}: expected one of {', '.join(LOSSES)}")


def metric_from_logits(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy (bce: z > 0; ce: argmax) or R² (mse) over the sample axis, same shapes as loss_from_logits."""
    if kind == "bce":
        return ((logits > 0).to(y.dtype) == y).to(torch.float32).mean(dim=-1)
    if kind == "ce":
        return (logits.argmax(dim=-1) == y.long()).to(torch.float32).mean(dim=-1)
    if kind == "mse":
        total = ((y - y.mean()) ** 2).sum().clamp_min(torch.finfo(logits.dtype).tiny)
        return 1 - ((logits - y) ** 2).sum(dim=-1) / total
    raise ValueError(f"unknown loss {kind!r}: expected one of {', '.join(LOSSES)}")


def build_model(kind: str, n_features: int, hidden_dim: int = 32, seed: int = 0) -> nn.Module:
    """A freshly initialised model; its weights depend on the seed alone, not on global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "logistic":
            return LogisticRegression(n_features)
        if kind == "mlp":
            return MLP(n_features, hidden_dim)
    raise ValueError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")


@dataclass(frozen=True)
class Slot:
    """Where one parameter tensor lives inside the flat vector."""
    name: str
    shape: tuple
    offset: int
    numel: int


class FlatModel:
    """The functional view of a module: loss(theta) for a flat theta of length dim.

    The module is never mutated: parameters are passed through functional_call, and the
    module is evaluated in eval mode (a private copy holds that flag).
    """

    def __init__(self, module: nn.Module, loss: str = "bce", device=None):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(LOSSES)}")
        self.loss_kind = loss
        device = torch.device(device) if device is not None else next(module.parameters()).device
        self.module = copy.deepcopy(module).to(device).eval()
        self.device = device
        self.layout, offset = [], 0
        for name, p in self.module.named_parameters():
            self.layout.append(Slot(name, tuple(p.shape), offset, p.numel()))
            offset += p.numel()
        self.dim = offset
        self.buffers = dict(self.module.named_buffers())
        self.theta0 = torch.cat([p.detach().reshape(-1) for p in self.module.parameters()]).clone()

    def unflatten(self, theta: torch.Tensor) -> dict:
        """Views of theta shaped as the module's parameters."""
        return {s.name: theta[s.offset:s.offset + s.numel].view(s.shape) for s in self.layout}

    def logits(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (self.unflatten(theta), self.buffers), (X,))

    def loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's loss (loss_from_logits of its kind) over (X, y): the one loss of the project."""
        return loss_from_logits(self.loss_kind, self.logits(theta, X), y)

    def accuracy(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracy for bce and ce, R² for mse."""
        return metric_from_logits(self.loss_kind, self.logits(theta, X), y)

    def losses(self, thetas: torch.Tensor, X, y, chunk: int = 256) -> torch.Tensor:
        """loss for each row of thetas (K, D) -> (K,), chunked so memory stays bounded."""
        return self._batched(self.loss, thetas, X, y, chunk)

    def accuracies(self, thetas: torch.Tensor, X, y, chunk: int = 256) -> torch.Tensor:
        return self._batched(self.accuracy, thetas, X, y, chunk)

    def _batched(self, fn, thetas, X, y, chunk):
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise ValueError(f"thetas must have shape (K, {self.dim}), got {tuple(thetas.shape)}")
        batched = vmap(fn, in_dims=(0, None, None))
        with torch.no_grad():
            parts = [batched(thetas[i:i + chunk], X, y) for i in range(0, len(thetas), chunk)]
        return torch.cat(parts) if parts else thetas.new_zeros(0)
