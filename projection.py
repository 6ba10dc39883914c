"""Planes through weight space (PCA or random), exact plane coordinates, and Isomap embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from filter_norm import normalize_direction, random_direction


@dataclass
class Plane:
    """The points center + a*u + b*v of weight space."""
    center: torch.Tensor  # (D,)
    u: torch.Tensor  # (D,) first direction (orthonormal with v, unless filter-normalised)
    v: torch.Tensor  # (D,)
    kind: str  # "pca", "random", "minima" or "eigen"
    explained: tuple = (float("nan"), float("nan"))  # variance ratio of each PCA direction
    names: tuple = ("direction 1", "direction 2")  # axis names of the kinds without explained variance

    def points(self, coords) -> torch.Tensor:
        """Weights at plane coordinates (N, 2) -> (N, D)."""
        c = torch.as_tensor(np.asarray(coords), dtype=self.center.dtype, device=self.center.device)
        return self.center + c[:, :1] * self.u + c[:, 1:2] * self.v

    def axis_labels(self) -> tuple:
        if self.kind == "pca":
            return tuple(f"PC{i + 1} ({100 * r:.1f}%)" for i, r in enumerate(self.explained))
        return self.names

    def to(self, dtype) -> "Plane":
        return Plane(self.center.to(dtype), self.u.to(dtype), self.v.to(dtype), self.kind, self.explained,
                     self.names)

    def basis(self) -> torch.Tensor:
        """[u v] as a (D, 2) matrix."""
        return torch.stack([self.u, self.v], dim=1)


def check_points(points: torch.Tensor, dim: int | None = None, what: str = "points") -> torch.Tensor:
    """Reject empty, wrongly shaped or non-finite weight matrices with a clear ValueError."""
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty (N, D) matrix, got shape {tuple(points.shape)}")
    if dim is not None and points.shape[1] != dim:
        raise ValueError(f"{what} have {points.shape[1]} weights each, the plane has {dim}")
    if not torch.isfinite(points).all():
        raise ValueError(f"{what} contain non-finite values (a diverged run?)")
    return points


def pca_plane(points: torch.Tensor, center: torch.Tensor, layout=None, norm: str = "filter",
              ignore_bias: bool = False) -> Plane:
    """The plane through center spanned by the top two principal directions of points - center.

    No mean is removed: the plane must pass through center, so this is the 2-D subspace
    through center closest to the points (least squares). `explained` is each direction's
    share of the squared displacement. The signs put the first point at negative
    coordinates, so paths run towards +a, +b. Normalisation (needs layout) rescales u, v
    against center, after which PCA scores are no longer coordinates: use project().
    """
    check_points(points, center.shape[0])
    if points.shape[0] < 2:
        raise ValueError("a PCA plane needs at least 2 checkpoints")
    disp = (points - center).double()  # (N, D)
    _, s, vh = torch.linalg.svd(disp, full_matrices=False)
    if s[0] <= 0:
        raise ValueError("the checkpoints all equal the centre: the path has no direction to draw")
    if len(s) < 2 or s[1] <= 1e-12 * s[0]:  # a straight path (one epoch, a tiny lr): it lies on any plane
        vh, s = _completed(vh[0], s[0])  # holding its direction, so a seeded second direction completes it
    first = disp[0] @ vh[:2].T  # (2,) scores of the first point
    dirs = vh[:2] * torch.where(first > 0, -1.0, 1.0).to(vh.dtype)[:, None]
    explained = tuple(float(r) for r in (s[:2] ** 2 / (s ** 2).sum()))
    u, v = (d.to(center.dtype) for d in dirs)
    if layout is not None:
        u = normalize_direction(u, center, layout, norm, ignore_bias)
        v = normalize_direction(v, center, layout, norm, ignore_bias)
    return Plane(center.clone(), u, v, "pca", explained)


def _completed(direction: torch.Tensor, scale: torch.Tensor) -> tuple:
    """Rows (direction, a seeded unit vector orthogonal to it) and singular values (scale, 0)."""
    other = torch.randn(direction.shape, generator=torch.Generator().manual_seed(0), dtype=direction.dtype)
    other = other.to(direction.device) - (other.to(direction.device) @ direction) * direction
    return torch.stack([direction, other / other.norm()]), torch.stack([scale, torch.zeros_like(scale)])


def joint_pca_plane(trajectories, reference: int = 0, **kwargs) -> Plane:
    """One PCA plane for several runs: every checkpoint of every run, centred on one run's end."""
    points = torch.cat([t.params for t in trajectories])
    return pca_plane(points, trajectories[reference].final, **kwargs)


def random_plane(center: torch.Tensor, layout, seed: int = 0, norm: str = "filter",
                 ignore_bias: bool = False) -> Plane:
    """Two seeded, filter-normalised Gaussian directions through center (Li et al. 2018)."""
    u = random_direction(center, layout, seed, norm, ignore_bias)
    v = random_direction(center, layout, seed + 1, norm, ignore_bias)
    return Plane(center.clone(), u, v, "random", names=("random direction 1", "random direction 2"))


SHARED_WEIGHTINGS = ("checkpoints", "extent")  # how shared_plane weighs each run (stages picks by coverage)


def shared_plane(trajectories, center: torch.Tensor, weighting: str = "checkpoints") -> Plane:
    """One orthonormal plane through center (e.g. the runs' common initialisation) that covers several runs.

    Each run's displacements from center are weighted by 1/sqrt(its checkpoints), so every run
    counts equally in the least-squares fit however long it trained: a run that stopped early
    is not left off the plane by one that went on. weighting="extent" also divides them by the run's
    largest displacement, so a run that went 3x further does not count 9x more.
    """
    if weighting not in SHARED_WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r}: expected one of {', '.join(SHARED_WEIGHTINGS)}")
    parts = [(t.params - center).double() / len(t) ** 0.5 for t in trajectories]
    if weighting == "extent":
        parts = [p / p.norm(dim=1).max().clamp_min(1e-300) for p in parts]
    return pca_plane(torch.cat(parts) + center.double(), center.double()).to(center.dtype)


def minima_plane(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> Plane:
    """The plane through three weight vectors (Garipov et al. 2018), centred on their mean, orthonormal.

    All three lie in it exactly, so the surface there is each minimum's own loss.
    """
    center = (a + b + c) / 3
    e1 = (b - a).double()
    e1 = e1 / e1.norm()
    e2 = (c - a).double()
    e2 = e2 - (e2 @ e1) * e1  # Gram-Schmidt: the part of c - a not along b - a
    if e2.norm() <= 1e-5 * (c - a).double().norm():  # float32 weights: rounding leaves ~1e-7
        raise ValueError("the three points are collinear: they span no plane")
    e2 = e2 / e2.norm()
    return Plane(center, e1.to(a.dtype), e2.to(a.dtype), "minima", names=("direction 1", "direction 2"))


def project(points: torch.Tensor, plane: Plane):
    """Least-squares plane coordinates of each point, and its relative off-plane residual.

    Solves [u v] c ≈ p - center per point in float64. Returns coords (N, 2) and
    residual (N,) = ‖p - (center + a u + b v)‖ / ‖p - center‖ (0 for p == center).
    """
    check_points(points, plane.center.shape[0])
    basis = plane.basis().double()  # (D, 2)
    disp = (points - plane.center).double()  # (N, D)
    coords = torch.linalg.solve(basis.T @ basis, basis.T @ disp.T).T  # (N, 2)
    off = (disp - coords @ basis.T).norm(dim=1)
    scale = disp.norm(dim=1)
    residual = torch.where(scale > 0, off / scale.clamp_min(1e-300), torch.zeros_like(off))
    return coords.cpu().numpy(), residual.cpu().numpy()


def isomap_embedding(points, n_neighbors: int = 10) -> np.ndarray:
    """2-D Isomap embedding of checkpoints (N, D) -> (N, 2). There is no inverse map back to weights."""
    from sklearn.manifold import Isomap
    X = _as_numpy(points)
    if X.shape[0] <= n_neighbors + 1:
        raise ValueError(f"Isomap with n_neighbors={n_neighbors} needs more than {n_neighbors + 1} "
                         f"points, got {X.shape[0]}: embed several runs at once")
    return Isomap(n_neighbors=n_neighbors, n_components=2).fit_transform(X)


def pca_embedding(points) -> np.ndarray:
    """Plain 2-D PCA scores of the points (mean removed), for comparison with Isomap."""
    X = _as_numpy(points)
    X = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    return X @ vt[:2].T


def trustworthiness_score(points, embedding, n_neighbors: int = 5) -> float:
    """How well a 2-D embedding keeps each point's nearest neighbours, in [0, 1] (1 = perfectly)."""
    from sklearn.manifold import trustworthiness
    X = _as_numpy(points)
    k = min(n_neighbors, X.shape[0] // 2 - 1)
    if k < 1:
        raise ValueError(f"trustworthiness needs at least 4 points, got {X.shape[0]}")
    return float(trustworthiness(X, np.asarray(embedding), n_neighbors=k))


def _as_numpy(points) -> np.ndarray:
    X = points.detach().cpu().double().numpy() if torch.is_tensor(points) else np.asarray(points, float)
    if X.ndim != 2 or X.shape[0] == 0 or not np.isfinite(X).all():
        raise ValueError(f"points must be a non-empty finite (N, D) matrix, got shape {X.shape}")
    return X
