"""Planes, coordinates, filter normalisation, gradients and embeddings: invariants and oracles."""
import numpy as np
import pytest
import torch

from filter_norm import normalize_direction, random_direction
from gradients import plane_gradients
from loss_surface import evaluate_points
from projection import (isomap_embedding, joint_pca_plane, pca_embedding, pca_plane, project,
                        random_plane, trustworthiness_score)


@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_points_built_in_the_plane_project_back_exactly(tiny_run, tiny_mlp, norm):
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout, norm=norm)
    if norm != "none":  # normalised directions are neither unit length nor orthogonal
        assert abs(plane.u.norm() - 1) > 1e-3 and abs(plane.u @ plane.v) > 1e-6
    coords = np.array([[0.0, 0.0], [0.3, -1.2], [-2.0, 0.5], [1e-3, 4.0]])
    back, residual = project(plane.points(coords), plane)
    assert np.allclose(back, coords, atol=1e-5)
    assert residual.max() < 1e-6


def test_unnormalised_pca_directions_are_orthonormal_and_explain_the_path(tiny_run):
    plane = pca_plane(tiny_run.params, tiny_run.final)
    gram = torch.stack([plane.u, plane.v]) @ torch.stack([plane.u, plane.v]).T
    assert torch.allclose(gram, torch.eye(2), atol=1e-5)
    assert 0 < plane.explained[1] <= plane.explained[0] <= 1 and sum(plane.explained) <= 1 + 1e-9
    coords, residual = project(tiny_run.params, plane)
    # the residual energy of the projection is exactly what the two components leave unexplained
    disp = (tiny_run.params - tiny_run.final).double()
    left = (residual ** 2 * disp.norm(dim=1).numpy() ** 2).sum() / (disp ** 2).sum().item()
    assert left == pytest.approx(1 - sum(plane.explained), abs=1e-5)
    assert coords[0, 0] <= 0 and np.allclose(coords[-1], 0)  # starts at negative PC1, ends at the centre


def test_joint_plane_is_centred_on_the_reference_run(tiny_run, tiny_mlp, tiny_data):
    from training import OptimizerSpec, train
    other = train(tiny_mlp, tiny_data.X, tiny_data.y, OptimizerSpec("adam", "adam", 0.05), 12)
    plane = joint_pca_plane([tiny_run, other], reference=1, layout=tiny_mlp.layout)
    assert torch.equal(plane.center, other.final)
    coords, _ = project(other.params, plane)
    assert np.allclose(coords[-1], 0, atol=1e-6)


def test_filter_normalisation_matches_row_norms_and_keeps_zero_rows(tiny_mlp):
    theta = tiny_mlp.theta0
    d = torch.randn(tiny_mlp.dim, generator=torch.Generator().manual_seed(0))
    w1 = tiny_mlp.layout[0]
    d[w1.offset:w1.offset + w1.shape[1]] = 0.0  # first filter of fc1: a zero row
    out = normalize_direction(d, theta, tiny_mlp.layout, "filter")
    assert torch.isfinite(out).all()
    for slot in tiny_mlp.layout:
        piece = slice(slot.offset, slot.offset + slot.numel)
        if len(slot.shape) == 2:
            rows_d, rows_t = out[piece].view(slot.shape), theta[piece].view(slot.shape)
            for r in range(slot.shape[0]):
                expected = 0.0 if (slot is w1 and r == 0) else rows_t[r].norm().item()
                assert rows_d[r].norm().item() == pytest.approx(expected, rel=1e-5)
        else:
            assert out[piece].norm().item() == pytest.approx(theta[piece].norm().item(), rel=1e-5)
    biasless = normalize_direction(d, theta, tiny_mlp.layout, "filter", ignore_bias=True)
    for slot in tiny_mlp.layout:
        if len(slot.shape) == 1:
            assert torch.all(biasless[slot.offset:slot.offset + slot.numel] == 0)


def test_layer_mode_matches_tensor_norms_and_none_is_identity(tiny_mlp):
    d = torch.randn(tiny_mlp.dim, generator=torch.Generator().manual_seed(1))
    out = normalize_direction(d, tiny_mlp.theta0, tiny_mlp.layout, "layer")
    for slot in tiny_mlp.layout:
        piece = slice(slot.offset, slot.offset + slot.numel)
        assert out[piece].norm().item() == pytest.approx(tiny_mlp.theta0[piece].norm().item(), rel=1e-5)
    assert torch.equal(normalize_direction(d, tiny_mlp.theta0, tiny_mlp.layout, "none"), d)
    with pytest.raises(ValueError, match="mode"):
        normalize_direction(d, tiny_mlp.theta0, tiny_mlp.layout, "rows")


def test_random_directions_are_seeded(tiny_mlp):
    a = random_direction(tiny_mlp.theta0, tiny_mlp.layout, seed=4)
    assert torch.equal(a, random_direction(tiny_mlp.theta0, tiny_mlp.layout, seed=4))
    assert not torch.equal(a, random_direction(tiny_mlp.theta0, tiny_mlp.layout, seed=5))
    plane = random_plane(tiny_mlp.theta0, tiny_mlp.layout, seed=4)
    assert plane.kind == "random" and not torch.equal(plane.u, plane.v)


def test_plane_gradients_equal_finite_differences_of_the_surface(tiny_run, tiny_mlp, tiny_data):
    X, y = tiny_data.X.double(), tiny_data.y.double()
    fm = tiny_mlp
    fm.module.double()  # float64 so central differences are an exact-enough oracle
    plane64 = pca_plane(tiny_run.params.double(), tiny_run.final.double(), fm.layout)
    points = tiny_run.params.double()[::3]
    g = plane_gradients(fm, X, y, points, plane64)
    h = 1e-5
    for k in range(len(points)):
        base = points[k]  # off the plane: the surface through it is L(base + da u + db v)
        f = lambda da, db: fm.loss(base + da * plane64.u + db * plane64.v, X, y).item()
        fd = [(f(h, 0) - f(-h, 0)) / (2 * h), (f(0, h) - f(0, -h)) / (2 * h)]
        assert np.allclose(g[k], fd, rtol=1e-5, atol=1e-8)


def test_bad_points_are_value_errors(tiny_run, tiny_mlp):
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout)
    with pytest.raises(ValueError, match="weights each"):
        project(torch.zeros(3, tiny_mlp.dim + 1), plane)
    with pytest.raises(ValueError, match="non-empty"):
        project(torch.zeros(0, tiny_mlp.dim), plane)
    bad = tiny_run.params.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        pca_plane(bad, tiny_run.final)
    with pytest.raises(ValueError, match="at least 2"):
        pca_plane(tiny_run.params[:1], tiny_run.final)


def test_isomap_and_pca_embed_several_runs(tiny_data):
    from models import FlatModel, build_model
    from training import OptimizerSpec, train
    runs = [train(FlatModel(build_model("mlp", 4, 5, seed=s)), tiny_data.X, tiny_data.y,
                  OptimizerSpec("gd", "sgd", 0.5), 10) for s in range(3)]
    points = torch.cat([r.params for r in runs])  # (33, D)
    for embedding in (isomap_embedding(points, n_neighbors=6), pca_embedding(points)):
        assert embedding.shape == (33, 2) and np.isfinite(embedding).all()
        assert 0.0 <= trustworthiness_score(points, embedding) <= 1.0
    # an embedding that keeps every distance (the points themselves, in 2-D) is perfectly trustworthy
    flat = np.random.default_rng(0).normal(size=(20, 2))
    assert trustworthiness_score(flat, flat) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs more than"):
        isomap_embedding(points[:5], n_neighbors=6)


def test_surface_along_a_path_in_the_plane_equals_the_true_loss(tiny_run, tiny_mlp, tiny_data):
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout, norm="none")
    coords = np.array([[0.1, 0.2], [-0.4, 0.05]])
    loss, _ = evaluate_points(tiny_mlp, tiny_data.X, tiny_data.y, plane, coords)
    expected = tiny_mlp.losses(plane.points(coords), tiny_data.X, tiny_data.y)
    assert np.allclose(loss, expected.numpy(), rtol=1e-5)


def test_grid_covers_every_point_with_one_range_for_both_axes():
    from loss_surface import grid_for
    coords = [np.array([[-1.0, 0.1], [0.5, -0.05]]), np.array([[2.0, 0.0]])]
    alphas, betas = grid_for(coords, (7, 5), margin=0.25)
    assert len(alphas) == 7 and len(betas) == 5
    assert alphas[0] < -1.0 and alphas[-1] > 2.0 and betas[0] < -0.05 and betas[-1] > 0.1
    assert alphas[-1] - alphas[0] == pytest.approx(betas[-1] - betas[0]) == pytest.approx(1.5 * 3.0)
    with pytest.raises(ValueError, match="at least 2"):
        grid_for(coords, 1)
    with pytest.raises(ValueError, match="non-finite"):
        grid_for(np.array([[np.nan, 0.0]]), 5)


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.mark.parametrize("norm", ["filter", "none"])
def test_descent_arrows_point_along_the_next_gradient_descent_step(tiny_run, tiny_mlp, tiny_data, norm):
    from gradients import descent_arrows
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout, norm=norm)
    coords, _ = project(tiny_run.params, plane)
    arrows = descent_arrows(tiny_mlp, tiny_data.X, tiny_data.y, tiny_run.params[:-1], plane)
    steps = np.diff(coords, axis=0)  # c[t+1] - c[t] for full-batch gradient descent
    assert _angles_deg(arrows, steps).max() < 1.0
    # the length matches too: the step is lr times the projected descent direction
    assert np.allclose(steps, 0.5 * arrows, rtol=1e-3, atol=1e-6)
    if norm == "filter":  # the old arrows -(g·u, g·v) miss the step on a non-orthogonal plane
        old = -plane_gradients(tiny_mlp, tiny_data.X, tiny_data.y, tiny_run.params[:-1], plane)
        assert _angles_deg(old, steps).max() > 1.0


def test_default_trajectory_plane_is_orthonormal_and_holds_the_path(tiny_run, tiny_mlp):
    import config
    plane = pca_plane(tiny_run.params, tiny_run.final, tiny_mlp.layout, norm=config.Config().direction_norm)
    gram = (plane.basis().T @ plane.basis()).double()
    assert torch.allclose(gram, torch.eye(2, dtype=torch.float64), atol=1e-5)
    _, residual = project(tiny_run.params, plane)
    assert residual.mean() < 0.05


def test_minima_plane_passes_through_all_three_points_and_the_surface_is_their_loss(tiny_mlp, tiny_data):
    from models import FlatModel, build_model
    from projection import minima_plane
    from training import OptimizerSpec, train
    runs = [train(FlatModel(build_model("mlp", 4, 5, seed=s)), tiny_data.X, tiny_data.y,
                  OptimizerSpec("gd", "sgd", 0.5), 10) for s in range(3)]
    plane = minima_plane(*(r.final for r in runs))
    gram = (plane.basis().T @ plane.basis()).double()
    assert torch.allclose(gram, torch.eye(2, dtype=torch.float64), atol=1e-5)
    coords, residual = project(torch.stack([r.final for r in runs]), plane)
    assert residual.max() < 1e-5
    surface, _ = evaluate_points(tiny_mlp, tiny_data.X, tiny_data.y, plane, coords)
    assert np.allclose(surface, [r.losses[-1].item() for r in runs], atol=1e-5)
    with pytest.raises(ValueError, match="collinear"):
        minima_plane(runs[0].final, runs[1].final, 2 * runs[1].final - runs[0].final)


def test_shared_plane_passes_through_its_centre_and_covers_every_run(tiny_mlp, tiny_data):
    from projection import shared_plane
    from training import OptimizerSpec, train_optimizers
    specs = [OptimizerSpec("sgd", "sgd", 0.5), OptimizerSpec("adam", "adam", 0.05)]
    runs = train_optimizers(tiny_mlp, tiny_data.X, tiny_data.y, specs, 15)
    plane = shared_plane(runs, tiny_mlp.theta0)
    assert torch.equal(plane.center, tiny_mlp.theta0)
    gram = (plane.basis().T @ plane.basis()).double()
    assert torch.allclose(gram, torch.eye(2, dtype=torch.float64), atol=1e-5)
    # the best plane through the centre for these points: no other orthonormal pair fits them better
    points = torch.cat([(r.params - plane.center) / len(r) ** 0.5 for r in runs]).double()
    kept = (points @ plane.basis().double()).norm() ** 2
    _, s, _ = torch.linalg.svd(points, full_matrices=False)
    assert kept.item() == pytest.approx((s[:2] ** 2).sum().item(), rel=1e-6)


def test_a_straight_path_still_gets_a_plane_that_holds_it(tiny_run):
    two = tiny_run.params[:2]  # one epoch: the path spans one direction
    plane = pca_plane(two, two[-1])
    coords, residual = project(two, plane)
    assert residual.max() < 1e-6 and plane.explained == pytest.approx((1.0, 0.0))
    gram = (plane.basis().T @ plane.basis()).double()
    assert torch.allclose(gram, torch.eye(2, dtype=torch.float64), atol=1e-5)
    with pytest.raises(ValueError, match="no direction"):
        pca_plane(torch.stack([two[-1], two[-1]]), two[-1])


def test_shared_plane_by_extent_fits_each_run_scaled_to_its_own_reach(tiny_mlp, tiny_data):
    from projection import shared_plane
    from training import OptimizerSpec, train_optimizers
    specs = [OptimizerSpec("sgd", "sgd", 0.1), OptimizerSpec("momentum", "sgd", 0.5, momentum=0.9)]
    runs = train_optimizers(tiny_mlp, tiny_data.X, tiny_data.y, specs, 15)
    plane = shared_plane(runs, tiny_mlp.theta0, "extent")
    points = [(r.params - plane.center).double() / len(r) ** 0.5 for r in runs]
    points = torch.cat([p / p.norm(dim=1).max() for p in points])
    kept = (points @ plane.basis().double()).norm() ** 2
    _, s, _ = torch.linalg.svd(points, full_matrices=False)
    assert kept.item() == pytest.approx((s[:2] ** 2).sum().item(), rel=1e-6)
    assert not torch.allclose(plane.u, shared_plane(runs, tiny_mlp.theta0).u)  # the two weightings differ here
    with pytest.raises(ValueError, match="weighting"):
        shared_plane(runs, tiny_mlp.theta0, "speed")


def test_the_shared_landscape_takes_the_weighting_that_draws_most_checkpoints_on_its_surface(tiny_mlp, tiny_data):
    import stages
    from cache import StageCache
    from config import Config
    from projection import SHARED_WEIGHTINGS, shared_plane
    from training import OptimizerSpec
    runs = [stages.train_run(StageCache(None), tiny_mlp, tiny_data, OptimizerSpec(f"lr={lr}", "sgd", lr), 20, None, 0,
                             f"lr={lr}", {"data": "tiny", "lr": lr}) for lr in (0.05, 0.5, 2.0)]
    scape = stages.shared_landscape(StageCache(None), tiny_mlp, tiny_data, runs, Config(vis_resolution=5))
    chosen = np.mean([p.on_surface.mean() for p in scape.paths])
    coverage = {}
    for weighting in SHARED_WEIGHTINGS:
        plane = shared_plane([r.trajectory for r in runs], tiny_mlp.theta0, weighting)
        coverage[weighting] = np.mean([stages.path_on(tiny_mlp, tiny_data, plane, r).on_surface.mean() for r in runs])
    assert chosen == max(coverage.values())
