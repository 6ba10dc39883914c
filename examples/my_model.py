"""An example of your own model: python main.py --model=examples/my_model.py:build"""
import torch
from torch import nn


def build(n_features: int, n_classes: int, seed: int) -> nn.Module:
    """A small MLP with tanh units, its weights drawn from `seed`.

    More than two classes: one logit per class, (n, n_classes) for cross-entropy; two classes or
    a regression target: one output per sample, (n,).
    """
    torch.manual_seed(seed)
    n_outputs = n_classes if n_classes > 2 else 1
    layers = [nn.Linear(n_features, 16), nn.Tanh(), nn.Linear(16, n_outputs)]
    if n_outputs == 1:
        layers.append(nn.Flatten(0))  # (n, 1) -> (n,)
    return nn.Sequential(*layers)
