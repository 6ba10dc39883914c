"""Filter normalisation of plane directions (Li et al. 2018) and filter-normalised random directions."""
from __future__ import annotations

import torch

MODES = ("filter", "layer", "none")


def normalize_direction(d: torch.Tensor, theta: torch.Tensor, layout, mode: str = "filter",
                        ignore_bias: bool = False) -> torch.Tensor:
    """Rescale direction d (D,) piece by piece so each piece has the norm of theta's piece.

    "filter": each row of a weight matrix (one output unit's incoming weights);
    "layer": each whole tensor; "none": d unchanged. 1-D tensors (biases) are rescaled
    per tensor, or zeroed when ignore_bias. A zero piece of d stays zero (no NaN).
    """
    if mode not in MODES:
        raise ValueError(f"unknown normalisation mode {mode!r}: expected one of {', '.join(MODES)}")
    if d.shape != theta.shape or d.ndim != 1:
        raise ValueError(f"direction and theta must be flat vectors of one length, "
                         f"got {tuple(d.shape)} and {tuple(theta.shape)}")
    if mode == "none":
        return d.clone()
    out = d.clone()
    for slot in layout:
        piece = slice(slot.offset, slot.offset + slot.numel)
        if len(slot.shape) <= 1:
            out[piece] = 0.0 if ignore_bias else _rescale(d[piece], theta[piece])
        elif mode == "filter":
            rows_d = d[piece].view(slot.shape[0], -1)  # (out_units, fan_in)
            rows_t = theta[piece].view(slot.shape[0], -1)
            out[piece] = _rescale(rows_d, rows_t).reshape(-1)
        else:
            out[piece] = _rescale(d[piece], theta[piece])
    return out


def _rescale(d: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """d * ‖theta‖/‖d‖ along the last axis; rows where d is zero stay zero."""
    d_norm = d.norm(dim=-1, keepdim=True)
    t_norm = theta.norm(dim=-1, keepdim=True)
    return torch.where(d_norm > 0, d * t_norm / d_norm.clamp_min(torch.finfo(d.dtype).tiny), d)


def random_direction(theta: torch.Tensor, layout, seed: int, mode: str = "filter",
                     ignore_bias: bool = False) -> torch.Tensor:
    """A Gaussian direction drawn from a seeded generator, then normalised against theta."""
    generator = torch.Generator().manual_seed(seed)
    d = torch.randn(theta.shape, generator=generator, dtype=theta.dtype).to(theta.device)
    return normalize_direction(d, theta, layout, mode, ignore_bias)
