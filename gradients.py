"""Gradients of the loss surface with respect to the plane coordinates (a, b)."""
from __future__ import annotations

import numpy as np
import torch
from torch.func import grad, vmap

from projection import Plane, check_points


def plane_gradients(fm, X, y, points: torch.Tensor, plane: Plane, chunk: int = 128) -> np.ndarray:
    """(g·u, g·v) at each point (N, D) -> (N, 2), g the full-batch gradient there.

    This is d/d(a, b) of L(center + a u + b v), so -(g·u, g·v) drawn on the plane is
    perpendicular to the contour lines.
    """
    check_points(points, fm.dim)
    batched_grad = vmap(grad(fm.loss), in_dims=(0, None, None))
    basis = torch.stack([plane.u, plane.v], dim=1)  # (D, 2)
    parts = [batched_grad(points[i:i + chunk], X, y) @ basis for i in range(0, len(points), chunk)]
    return torch.cat(parts).detach().cpu().numpy()
