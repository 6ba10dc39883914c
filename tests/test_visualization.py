"""Figures: real PNGs of the right size from tiny synthetic inputs, finite or not; pure helpers vs hand values."""
import numpy as np
import pytest
import torch
from PIL import Image

import plot_style as style
import visualization as vis
from loss_surface import Surface
from projection import Plane


# ---------------------------------------------------------------- inputs and checks

def bowl(a, b):
    """A convex bowl with its minimum 0.3 at the origin; gradient (2a, 4b)."""
    return 0.3 + a ** 2 + 2 * b ** 2


def make_surface(loss_fn=bowl, n_alphas=9, n_betas=7):
    """A non-square grid (rows follow betas) on a plane of random tensors."""
    g = torch.Generator().manual_seed(0)
    plane = Plane(torch.randn(6, generator=g), torch.randn(6, generator=g), torch.randn(6, generator=g), "pca",
                  (0.8, 0.15))
    alphas, betas = np.linspace(-1, 1, n_alphas), np.linspace(-0.8, 1.2, n_betas)
    aa, bb = np.meshgrid(alphas, betas)
    return Surface(alphas, betas, loss_fn(aa, bb), np.full(aa.shape, 0.9), plane)


def make_path(n=15):
    """A curved descent from (-0.8, 0.9) to the origin: coords (n, 2), surface values, exact gradients."""
    t = np.linspace(0, 1, n)
    coords = np.stack([-0.8 * (1 - t) ** 2, 0.9 * (1 - t) ** 1.5], axis=1)
    return coords, bowl(*coords.T), np.stack([2 * coords[:, 0], 4 * coords[:, 1]], axis=1)


def assert_real_png(path, kind):
    """The file reopens as an image of figsize * DPI pixels with real content (not one flat colour)."""
    with Image.open(path) as image:
        width, height = style.FIGSIZES[kind]
        assert image.size == (round(width * style.DPI), round(height * style.DPI))
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(np.int32)
    assert len(np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2])) > 64  # distinct colours
    assert (pixels.min(axis=1) < 200).mean() > 0.01  # more than 1% of the pixels are not (near) white


@pytest.fixture
def captured(monkeypatch):
    """The figures passed to save_figure, inspected after they were written."""
    figures = []
    original = style.save_figure

    def keep(fig, path):
        figures.append(fig)
        return original(fig, path)

    monkeypatch.setattr(style, "save_figure", keep)
    return figures


# ---------------------------------------------------------------- pure helpers

def test_contour_levels_linear_within_decades():
    levels, is_log = style.contour_levels([0.6, 0.2, 0.4], n=5)
    assert not is_log
    np.testing.assert_allclose(levels, [0.2, 0.3, 0.4, 0.5, 0.6])


def test_contour_levels_log_when_span_exceeds_decades():
    levels, is_log = style.contour_levels([[0.01, 1.0], [100.0, 3.0]], n=5)
    assert is_log
    np.testing.assert_allclose(levels, [0.01, 0.1, 1, 10, 100])


def test_contour_levels_threshold_and_non_positive_values():
    assert not style.contour_levels([1.0, 10 ** 1.5])[1]  # exactly 1.5 decades: still linear
    assert style.contour_levels([1.0, 10 ** 1.6])[1]
    assert not style.contour_levels([0.0, 1e6])[1]  # a zero cannot sit on a log scale


def test_contour_levels_cover_finite_values_and_ignore_the_rest():
    values = np.array([np.nan, 0.37, np.inf, 5e3, -np.inf, 12.0])
    levels, is_log = style.contour_levels(values)
    assert is_log and levels[0] == 0.37 and levels[-1] == 5e3
    assert np.all(np.diff(levels) > 0)


def test_contour_levels_degenerate_inputs_stay_increasing():
    for values in ([np.nan, np.inf], [0.5, 0.5, 0.5], [0.0]):
        levels, is_log = style.contour_levels(values)
        finite = np.asarray(values)[np.isfinite(values)]
        assert not is_log and np.all(np.diff(levels) > 0)
        assert all(levels[0] <= v <= levels[-1] for v in finite)


def test_spread_indices_follow_arc_length_not_index():
    straight = np.stack([np.arange(11.0), np.zeros(11)], axis=1)
    np.testing.assert_array_equal(style.spread_indices(straight, 5), [0, 2, 4, 6, 8])
    # one long first step then ten short ones: half the length is already reached at index 1
    jump = np.stack([np.r_[0.0, 10 + 0.1 * np.arange(11)], np.zeros(12)], axis=1)
    np.testing.assert_array_equal(style.spread_indices(jump, 2), [0, 1])
    np.testing.assert_array_equal(style.spread_indices(np.zeros((5, 2)), 3), [0])


def test_finite_prefix_stops_at_first_non_finite_row():
    coords = np.ones((6, 2))
    coords[4, 1] = np.inf
    losses = np.r_[1.0, 1, np.nan, 1, 1, 1]
    assert style.finite_prefix(coords) == 4
    assert style.finite_prefix(coords, losses) == 2
    assert style.finite_prefix(np.ones(3)) == 3


def test_view_azimuth_faces_the_low_side():
    aa, bb = np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 6))  # (B, A): rows follow y
    assert style.view_azimuth(aa) == -150  # rises to +x: camera on the -x side
    assert style.view_azimuth(-aa) == 30  # rises to -x: camera on the +x side
    assert style.view_azimuth(bb) == -60  # rises to +y: camera on the -y side


def test_save_figure_is_atomic_and_closes(tmp_path):
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    out = style.save_figure(fig, tmp_path / "sub" / "line.png")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["line.png"]  # no temporary file left
    assert not plt.fignum_exists(fig.number)
    with Image.open(out) as image:
        assert image.size == (2 * style.DPI, 1 * style.DPI)


# ---------------------------------------------------------------- figures

def test_surface_3d_draws_the_path_at_the_surface_values(tmp_path, captured):
    surface, (coords, on_surface, grads) = make_surface(), make_path()
    recorded = on_surface + 0.05  # off-plane weights: the recorded loss differs from the surface's
    out = vis.plot_surface_3d(surface, coords, on_surface, recorded, grads, "bowl", tmp_path / "s.png",
                              residual=np.full(15, 0.1))
    assert_real_png(out, "surface_3d")
    ax = captured[0].axes[0]
    drawn = next(line for line in ax.lines if line.get_label() == "path on the surface")
    x, y, z = drawn.get_data_3d()
    np.testing.assert_allclose(np.c_[x, y], coords)
    np.testing.assert_allclose(z - z[0], on_surface - on_surface[0])  # the same values, lifted by a constant


def test_surface_3d_survives_non_finite_and_many_decades(tmp_path, captured):
    surface = make_surface(lambda a, b: 10 ** (4 * (a ** 2 + b ** 2)) * 0.01)  # spans ~4 decades: log z
    surface.loss[0, :3] = np.inf
    surface.loss[-1, -1] = np.nan
    coords, _, grads = make_path()
    on_surface = 10 ** (4 * (coords ** 2).sum(axis=1)) * 0.01
    out = vis.plot_surface_3d(surface, coords, on_surface, on_surface, grads, "overflowing", tmp_path / "s.png")
    assert_real_png(out, "surface_3d")
    assert "log scale" in captured[0].axes[0].get_zlabel()


def test_contour_with_arrows_several_paths_and_masked_cells(tmp_path, captured):
    surface, (coords, _, grads) = make_surface(), make_path()
    out = vis.plot_contour(surface, [(coords, "GD")], grads, "bowl", tmp_path / "c.png", residual=0.02)
    assert_real_png(out, "contour")
    surface.loss[:2, :2] = np.nan
    surface.loss[-1, :] = np.inf
    out = vis.plot_contour(surface, [(coords, "a"), (coords[::-1] * 0.5, "b")], [grads, None], "holes",
                           tmp_path / "c2.png")
    assert_real_png(out, "contour")
    ax = captured[1].axes[0]
    assert ax.get_xlabel() == "PC1 (80.0%)" and ax.get_ylabel() == "PC2 (15.0%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == ["a", "b", "−gradient, −(g·u, g·v)"]


def test_runs_figure_marks_a_diverged_run(tmp_path, captured):
    surface, (coords, on_surface, _) = make_surface(), make_path()
    blown = np.r_[on_surface[:4], 1e30, np.inf]  # the last finite loss is far off scale
    runs = [vis.PlanePath(coords, on_surface, "SGD lr=0.1"),
            vis.PlanePath(np.r_[coords[:5], [[np.nan, np.nan]]], blown, "SGD lr=9", diverged=True),
            vis.PlanePath(coords * 0.5, on_surface * 0.9, "SGD lr=1", steps=np.arange(15) * 2),
            vis.PlanePath(np.full((1, 2), np.nan), np.full(1, np.nan), "SGD lr=99", diverged=True)]
    out = vis.plot_runs(surface, runs, "learning rates", tmp_path / "r.png", residual=np.zeros(3),
                        log_curves=True)
    assert_real_png(out, "comparison")
    curve_ax = captured[0].axes[1]  # plane, curves, the plane's colour bar
    labels = [t.get_text() for t in curve_ax.get_legend().get_texts()]
    assert labels == ["SGD lr=0.1", "SGD lr=9 (diverged after epoch 4)", "SGD lr=1",
                      "SGD lr=99 (diverged at once)"]
    assert curve_ax.get_yscale() == "log"
    assert curve_ax.get_ylim()[1] < 1e30  # the blow-up does not flatten the other curves


def test_curvature_edge_of_stability_line_or_off_scale_note(tmp_path, captured):
    steps = np.arange(0, 30, 3)
    lam_max, lam_min = 1 + 0.1 * steps, -0.05 * np.exp(-steps / 10)
    vis.plot_curvature(steps, lam_max, lam_min, 0.5, "near", tmp_path / "a.png", losses=np.exp(-steps / 20))
    top = captured[0].axes[0]
    assert any(np.allclose(line.get_ydata(), 4.0) for line in top.lines)  # 2/lr = 4 within the data
    lam_max[3] = np.nan
    out = vis.plot_curvature(steps, lam_max, lam_min, 0.05, "far", tmp_path / "b.png",
                             losses=np.exp(-np.arange(30) / 20), loss_steps=np.arange(30))
    assert_real_png(out, "curvature")
    top = captured[1].axes[0]
    assert "off scale" in top.get_title(loc="left")
    assert top.get_ylim()[1] < 10  # 2/lr = 40 does not squash λ_max (at most 3.7) to the bottom


def test_edge_of_stability_draws_each_2_over_lr_in_range_and_names_the_rest(tmp_path, captured):
    steps = np.arange(20)
    runs = [(steps, 0.8 + 0.01 * steps, 2.0, "lr=2"), (steps, 0.5 + 0 * steps, 0.1, "lr=0.1"),
            (steps, np.r_[0.9, np.full(19, np.nan)], 1.0, "lr=1 (diverged)")]
    out = vis.plot_edge_of_stability(runs, "sharpness", tmp_path / "eos.png")
    assert_real_png(out, "curvature")
    ax = captured[0].axes[0]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [float(line.get_ydata()[0]) for line in dashed] == [1.0]  # only 2/2.0 lies within 1.35 x max λ
    assert ax.get_ylim()[1] == pytest.approx(1.35 * 0.99)
    assert "lr=0.1: 2/lr = 20" in captured[0].get_supxlabel()


def test_pca_vs_isomap_with_a_non_finite_loss(tmp_path):
    rng = np.random.default_rng(0)
    pca, iso = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    losses = np.linspace(1.0, 0.2, 20)
    losses[7] = np.nan
    out = vis.plot_pca_vs_isomap(pca, iso, losses, [10, 10], 0.91, 0.97, "embeddings", tmp_path / "e.png")
    assert_real_png(out, "embeddings")


def test_interpolation_two_models_one_overflowing(tmp_path):
    ts = np.linspace(-0.25, 1.25, 31)
    mlp_loss = 0.2 + (ts - 1) ** 2 * 50
    mlp_loss[-1] = np.inf
    lines = {"logistic": (0.3 + (ts - 1) ** 2, np.clip(0.5 + 0.4 * ts, 0, 1)),
             "MLP": (mlp_loss, np.full(31, 0.7))}
    assert_real_png(vis.plot_interpolation(ts, lines, "line", tmp_path / "i.png"), "interpolation")


def test_eigen_ratio_map_with_missing_cells(tmp_path):
    surface, (coords, _, _) = make_surface(), make_path()
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.8, 1.2, 4)
    ratio = np.abs(np.outer(betas, alphas)) / 2
    ratio[0, 0] = np.nan
    out = vis.plot_eigen_ratio(alphas, betas, ratio, coords, ("PC1", "PC2"), "ratio", tmp_path / "r.png",
                               surface=surface)
    assert_real_png(out, "eigen_ratio")
