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
        if loss != "bce":
            raise ValueError(f"unknown loss {loss!r}: only 'bce' (binary cross-entropy with logits)")
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
        """Mean binary cross-entropy with logits over (X, y): the one loss of the project."""
        return F.binary_cross_entropy_with_logits(self.logits(theta, X), y)

    def accuracy(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((self.logits(theta, X) > 0).to(y.dtype) == y).to(torch.float32).mean()

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
