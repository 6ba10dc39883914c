"""Gradients of the loss surface in plane coordinates (a, b), and the arrows of where descent goes next."""
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


def descent_arrows(fm, X, y, points: torch.Tensor, plane: Plane, chunk: int = 128) -> np.ndarray:
    """Where descent goes next, in plane coordinates: (N, D) -> (N, 2) = -G⁻¹ (g·u, g·v), G = [u v]ᵀ[u v].

    The least-squares projection of -g onto the plane, so for full-batch gradient descent it is
    parallel to the next step c[t+1] - c[t] on any plane; -(g·u, g·v) alone is not when u, v
    are not orthonormal (filter-normalised planes).
    """
    basis = plane.basis().double()  # (D, 2)
    along = torch.as_tensor(plane_gradients(fm, X, y, points, plane, chunk), dtype=torch.float64)  # (N, 2)
    gram = (basis.T @ basis).cpu()  # (2, 2)
    return -torch.linalg.solve(gram, along.T).T.numpy()
