"""Figures: real PNGs of the right size from tiny synthetic inputs, finite or not; pure helpers vs hand values."""
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from PIL import Image

import comparison_figures as cf
import curvature_figures as cvf
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
    """A curved descent from (-0.8, 0.9) to the origin: coords (n, 2), surface values, exact descent
    arrows -(2a, 4b) (downhill, as gradients.descent_arrows gives them on an orthonormal plane)."""
    t = np.linspace(0, 1, n)
    coords = np.stack([-0.8 * (1 - t) ** 2, 0.9 * (1 - t) ** 1.5], axis=1)
    return coords, bowl(*coords.T), -np.stack([2 * coords[:, 0], 4 * coords[:, 1]], axis=1)


def assert_real_png(path, kind, height=None):
    """The file reopens as an image of figsize * DPI pixels (height: inches, where the figure sets its own)
    with real content (not one flat colour)."""
    with Image.open(path) as image:
        width, height = style.FIGSIZES[kind][0], height or style.FIGSIZES[kind][1]
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

# ---------------------------------------------------------------- figures: one path

def dashed(line) -> bool:
    return line.get_linestyle() == "--"


def test_surface_3d_draws_the_path_at_the_surface_values(tmp_path, captured):
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    recorded = on_surface + 0.01
    out = vis.plot_surface_3d(surface, coords, on_surface, recorded, arrows, "bowl", tmp_path / "s.png",
                              residual=np.full(15, 0.03), colour="#D55E00")
    assert_real_png(out, "surface_3d")
    ax = captured[0].axes[0]
    drawn = next(line for line in ax.lines if line.get_label().startswith("path on the surface"))
    x, y, z = drawn.get_data_3d()
    np.testing.assert_allclose(np.c_[x, y], coords)
    np.testing.assert_allclose(z - z[0], on_surface - on_surface[0])  # the same values, lifted by a constant
    assert not dashed(drawn) and drawn.get_color() == "#D55E00"


def test_surface_3d_shadow_lies_dashed_on_the_floor_and_says_so(tmp_path, captured):
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    out = vis.plot_surface_3d(surface, coords, on_surface, on_surface + 0.3, arrows, "bowl", tmp_path / "s.png",
                              residual=np.full(15, 0.34), drawn="shadow")
    assert_real_png(out, "surface_3d")
    ax = captured[0].axes[0]
    shadow = next(line for line in ax.lines if "shadow" in line.get_label())
    assert "34 % off plane" in shadow.get_label() and dashed(shadow)
    z = shadow.get_data_3d()[2]
    assert np.all(z == ax.get_zlim()[0])  # on the floor, below every surface value
    assert z[0] < surface.loss.min()
    ticks = ax.get_zticks()  # the floor is no loss value: every tick reads a height the surface reaches
    assert len(ticks) >= 3 and surface.loss.min() <= ticks.min() and ticks.max() <= surface.loss.max()


def arrow_patches(ax):
    return [patch for patch in ax.patches if isinstance(patch, vis.Arrow3D)]


def arrow_segments(ax):
    return np.array([patch.ends_3d for patch in arrow_patches(ax)])  # (K, 2, 3): tail, tip of each arrow


def box_lengths(ax, segments):
    spans = np.array([np.ptp(ax.get_xlim()), np.ptp(ax.get_ylim()), np.ptp(ax.get_zlim())])
    return np.linalg.norm((segments[:, 1] - segments[:, 0]) / spans * vis.BOX_ASPECT, axis=1)


@pytest.mark.parametrize("steepness", [1.0, 1000.0])
def test_3d_arrows_have_one_box_length_and_follow_the_given_direction(tmp_path, captured, steepness):
    surface, (coords, on_surface, arrows) = make_surface(lambda a, b: steepness * bowl(a, b)), make_path()
    vis.plot_surface_3d(surface, coords, steepness * on_surface, steepness * on_surface, arrows, "bowl",
                        tmp_path / "s.png", n_arrows=4)
    ax = captured[0].axes[0]
    shafts = arrow_segments(ax)
    # the surface's z range spans the box, so the box length is the same however steep the bowl (the
    # axes' limits carry a small margin beyond the data, hence the tolerance)
    np.testing.assert_allclose(box_lengths(ax, shafts), vis.ARROW_BOX_LENGTH, rtol=0.1)
    path_line = next(line for line in ax.lines if line.get_label().startswith("path on the surface"))
    assert min(a.get_zorder() for a in arrow_patches(ax)) > path_line.get_zorder()  # drawn over the path
    idx = style.spread_indices(coords, 4)
    np.testing.assert_allclose(shafts[:, 0, :2], coords[idx])  # tails on the path
    step = shafts[:, 1, :2] - shafts[:, 0, :2]
    cos = (step * arrows[idx]).sum(1) / np.linalg.norm(step, axis=1) / np.linalg.norm(arrows[idx], axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)  # drawn as given: already downhill, never negated
    assert np.all(shafts[:, 1, 2] < shafts[:, 0, 2])  # and downhill on the surface


def test_contour_draws_arrows_as_given_and_paths_solid_or_dashed(tmp_path, captured):
    surface, (coords, _, arrows) = make_surface(), make_path()
    out = vis.plot_contour(surface, [(coords, "GD lr=0.5"), (coords[::-1] * 0.5, "other")], [arrows, None], "bowl",
                           tmp_path / "c.png", residual=0.2, drawn=["surface", "shadow"], n_arrows=5)
    assert_real_png(out, "contour")
    ax = captured[0].axes[0]
    quiver = ax.collections[-1]
    idx = style.spread_indices(coords, 5)
    uv = np.c_[quiver.U, quiver.V]
    np.testing.assert_allclose(uv / np.linalg.norm(uv, axis=1, keepdims=True),
                               arrows[idx] / np.linalg.norm(arrows[idx], axis=1, keepdims=True), atol=1e-6)
    paths = [line for line in ax.lines if len(line.get_xdata()) > 1]
    assert [dashed(line) for line in paths] == [False, True]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["GD lr=0.5", "other (shadow: 20 % off plane)"]
    assert ax.get_xlabel() == "PC1 (80.0%)" and ax.get_ylabel() == "PC2 (15.0%)"


def test_contour_survives_masked_cells(tmp_path):
    surface, (coords, _, arrows) = make_surface(), make_path()
    surface.loss[:2, :2] = np.nan
    surface.loss[-1, :] = np.inf
    assert_real_png(vis.plot_contour(surface, [(coords, "a")], arrows, "holes", tmp_path / "c.png"), "contour")


def test_surface_3d_survives_non_finite_and_many_decades(tmp_path, captured):
    surface = make_surface(lambda a, b: 10 ** (4 * (a ** 2 + b ** 2)) * 0.01)  # spans ~4 decades: log z
    surface.loss[0, :3] = np.inf
    surface.loss[-1, -1] = np.nan
    coords, _, arrows = make_path()
    on_surface = 10 ** (4 * (coords ** 2).sum(axis=1)) * 0.01
    out = vis.plot_surface_3d(surface, coords, on_surface, on_surface, arrows, "overflowing", tmp_path / "s.png")
    assert_real_png(out, "surface_3d")
    assert "log scale" in captured[0].axes[0].get_zlabel()


# ---------------------------------------------------------------- figures: several runs

def three_runs(coords, on_surface):
    return [vis.PlanePath(coords, on_surface, "SGD lr=0.1", colour="#009E73"),
            vis.PlanePath(coords * 0.5, on_surface * 0.9, "SGD+momentum lr=0.1", drawn="shadow",
                          residual_mean=0.34),
            vis.PlanePath(coords * 0.7, np.linspace(0.9, 0.097, 15), "Adam lr=0.05", drawn="shadow",
                          residual_mean=0.5, colour="#C51B7D")]


def test_runs_shadow_rule_colours_and_colour_range(tmp_path, captured):
    surface, (coords, on_surface, _) = make_surface(lambda a, b: 0.22 + a ** 2 + 2 * b ** 2), make_path()
    runs = three_runs(coords, on_surface)
    out = vis.plot_runs(surface, runs, "optimisers", tmp_path / "r.png")
    assert_real_png(out, "comparison")
    fig = captured[0]
    plane_ax, curve_ax = fig.axes[:2]
    paths = [line for line in plane_ax.lines if len(line.get_xdata()) > 1]
    assert [dashed(line) for line in paths] == [False, True, True]
    assert [line.get_color() for line in paths] == ["#009E73", style.run_colour(1), "#C51B7D"]
    assert [line.get_color() for line in curve_ax.lines[:3]] == ["#009E73", style.run_colour(1), "#C51B7D"]
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:3] == ["SGD lr=0.1", "SGD+momentum lr=0.1 (shadow: 34 % off plane)",
                          "Adam lr=0.05 (shadow: 50 % off plane)"]
    for handle, line in zip(legend.legend_handles[:3], paths):  # legend entries look like the drawn paths
        assert (handle.get_color(), handle.get_linestyle(), handle.get_marker()) == \
            (line.get_color(), line.get_linestyle(), "*")
    filled = plane_ax.filled
    recorded = np.concatenate([run.losses for run in runs])
    assert filled.norm.vmin <= recorded.min() == pytest.approx(0.097) and filled.norm.vmax >= recorded.max()
    assert filled.norm.vmin < np.nanmin(surface.loss)  # Adam's 0.097 lies inside the colour bar (surface min 0.22)


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
    fig = captured[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:4] == ["SGD lr=0.1", "SGD lr=9 (diverged after epoch 4)", "SGD lr=1", "SGD lr=99 (diverged at once)"]
    curve_ax = fig.axes[1]
    assert curve_ax.get_yscale() == "log"
    assert curve_ax.get_ylim()[1] < 1e30  # the blow-up does not flatten the other curves
    assert fig.axes[0].filled.norm.vmax < 1e3  # nor the colour scale


def colour_bar_of(fig):
    return next(ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None)


def rendered(fig):
    """Draw a saved (closed, so canvas-less) figure again on an Agg canvas; return its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def test_an_off_scale_final_loss_sits_at_the_colour_bars_end_with_its_value(tmp_path, captured):
    """A blow-up's ▸ stays on the bar (at its top end, saying its value); an in-range one sits at its loss."""
    surface, (coords, on_surface, _) = make_surface(), make_path()
    runs = [vis.PlanePath(coords, on_surface, "GD lr=0.1"),
            vis.PlanePath(coords[:5], np.r_[on_surface[:4], 59.0], "GD+momentum lr=0.5", diverged=True)]
    vis.plot_runs(surface, runs, "optimisers", tmp_path / "r.png")
    fig = captured[0]
    renderer, bar_ax, plane_ax = rendered(fig), colour_bar_of(fig), fig.axes[0]
    bar = bar_ax.get_window_extent(renderer)
    assert bar_ax.get_ylim()[1] < 59  # the blow-up is off the bar's scale
    inside, blown = [line.get_transform().transform(np.c_[line.get_xdata(), line.get_ydata()])[0]
                     for line in bar_ax.lines if line.get_marker() == ">"]
    expected = bar_ax.transData.transform([0, on_surface[-1]])[1]
    assert inside[1] == pytest.approx(expected, abs=0.5) and bar.y0 <= inside[1] <= bar.y1
    assert blown[1] == pytest.approx(bar.y1, abs=0.5)  # at the top end, never above the bar
    value, = bar_ax.texts
    assert value.get_text() == "59 ↑"
    box = value.get_window_extent(renderer)
    assert bar.y1 <= box.y0 <= bar.y1 + 10 and (box.x0 + box.x1) / 2 == pytest.approx((bar.x0 + bar.x1) / 2, abs=1)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1  # just above the bar
    for other in (plane_ax.get_window_extent(renderer), plane_ax.title.get_window_extent(renderer)):
        assert not box.overlaps(other)


def test_runs_legend_and_notes_stay_inside_the_figure_apart_and_under_the_panels(tmp_path, captured):
    """Long legend labels, three lines of notes and a blow-up: the legend fits the width, the notes lie under
    it, neither touches a panel (its axis labels included), and no empty band opens under the title."""
    import warnings
    surface, (coords, on_surface, _) = make_surface(), make_path()
    every_third = np.arange(15) % 3 != 0  # several off stretches: the longest kind of label
    runs = [vis.PlanePath(coords * 1.4, on_surface, "GD lr=0.5", drawn=every_third),  # leaves the grid
            vis.PlanePath(coords[:8], np.r_[on_surface[:7], 59.0], "GD+momentum lr=0.5 β=0.9", diverged=True,
                          drawn=np.arange(8) > 0, steps=np.arange(8) * 3),
            vis.PlanePath(coords * 0.5, on_surface * 0.9, "Adam lr=0.05", drawn=every_third)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "constrained_layout not applied"
        vis.plot_runs(surface, runs, "your model: optimisers from one initialisation", tmp_path / "r.png",
                      residual=np.full(15, 0.2))
    fig = captured[0]
    renderer = rendered(fig)
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[-1] == "last checkpoint before divergence"  # true for a finite blow-up too
    assert labels[1].endswith("(diverged after epoch 21)")
    notes = next(t for t in fig.texts if t.get_text().startswith("partly outside the plotted grid: GD lr=0.5"))
    assert "loss axis cut at" in notes.get_text() and "off-plane residual" in notes.get_text()
    boxes = [legend.get_window_extent(renderer), notes.get_window_extent(renderer)]
    for box in boxes:
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    assert not boxes[0].overlaps(boxes[1]) and boxes[1].y1 <= boxes[0].y0  # notes under the legend
    for ax in fig.axes:  # panels with their tick and axis labels ("epoch") and the colour bar
        assert ax.get_tightbbox(renderer).y0 > boxes[0].y1
    title = fig.get_suptitle()
    title_box = next(t for t in fig.texts if t.get_text() == title).get_window_extent(renderer)
    top = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes[:2])
    assert title_box.y0 - top < 0.05 * fig.bbox.height  # no empty band under the title


# ---------------------------------------------------------------- figures: curvature

def all_text(fig) -> str:
    from matplotlib.text import Text
    return " ".join(t.get_text() for t in fig.findobj(Text))


def test_curvature_stability_line_label_from_the_caller_or_none(tmp_path, captured):
    steps = np.arange(0, 30, 3)
    lam_max, lam_min = 1 + 0.1 * steps, -0.05 * np.exp(-steps / 10)
    cvf.plot_curvature(steps, lam_max, lam_min, (4.0, "2(1+β)/lr, heavy-ball momentum"), "near", tmp_path / "a.png",
                       losses=np.exp(-steps / 20))
    top = captured[0].axes[0]
    assert any(np.allclose(line.get_ydata(), 4.0) for line in top.lines)
    assert "2(1+β)/lr, heavy-ball momentum = 4" in [t.get_text() for t in top.get_legend().get_texts()]
    lam_max[3] = np.nan
    out = cvf.plot_curvature(steps, lam_max, lam_min, (40.0, "2/lr"), "far", tmp_path / "b.png",
                             losses=np.exp(-np.arange(30) / 20), loss_steps=np.arange(30))
    assert_real_png(out, "curvature")
    assert "off scale" in captured[1].axes[0].get_title(loc="left")
    assert captured[1].axes[0].get_ylim()[1] < 10
    cvf.plot_curvature(steps, lam_max, lam_min, None, "Adam", tmp_path / "c.png", loss_name="training loss (MSE)")
    fig = captured[2]
    assert not [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]  # Adam: no stability line
    assert "gradient descent" not in all_text(fig)


def test_edge_of_stability_draws_each_stability_line_in_range_and_names_the_rest(tmp_path, captured):
    steps = np.arange(20)
    runs = [(steps, 0.8 + 0.01 * steps, (1.0, "2/lr"), "GD lr=2"), (steps, 0.5 + 0 * steps, (20.0, "2/lr"), "GD lr=0.1"),
            (steps, np.r_[0.9, np.full(19, np.nan)], None, "Adam lr=1", "#8C510A")]
    out = cvf.plot_edge_of_stability(runs, "sharpness", tmp_path / "eos.png")
    assert_real_png(out, "curvature")
    ax = captured[0].axes[0]
    dashes = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [float(line.get_ydata()[0]) for line in dashes] == [1.0]  # only GD lr=2's line lies within 1.35 x max λ
    assert ax.lines[-1].get_color() == "#8C510A"
    assert ax.get_ylim()[1] == pytest.approx(1.35 * 0.99)
    assert "GD lr=0.1: 2/lr = 20" in captured[0].get_supxlabel()
    assert "gradient descent" not in all_text(captured[0])


def test_eigen_ratio_map_with_missing_cells(tmp_path, captured):
    """The map shows the span the coarse grid and the loss contours share: the contours reach its four edges."""
    surface, (coords, _, _) = make_surface(loss_fn=lambda a, b: a + b), make_path()
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.8, 1.2, 4)  # the surface's span, coarser
    ratio = np.abs(np.outer(betas, alphas)) / 2
    ratio[0, 0] = np.nan
    out = cvf.plot_eigen_ratio(alphas, betas, ratio, coords, ("PC1", "PC2"), "ratio", tmp_path / "r.png",
                               surface=surface)
    assert_real_png(out, "eigen_ratio")
    ax = captured[0].axes[0]
    assert ax.get_xlim() == (-1, 1) and ax.get_ylim() == (-0.8, 1.2)
    contours = next(c for c in ax.collections if hasattr(c, "levels"))
    ink = np.concatenate([path.vertices for path in contours.get_paths() if len(path.vertices)])
    np.testing.assert_allclose([ink[:, 0].min(), ink[:, 0].max(), ink[:, 1].min(), ink[:, 1].max()],
                               [-1, 1, -0.8, 1.2], atol=0.05)


def test_spectrum_log_density_and_caller_axis_labels(tmp_path, captured):
    grid = np.linspace(-1, 30, 200)
    densities = [("epoch 0", grid, np.exp(-grid ** 2) + 1e-7), ("epoch 60", grid, np.exp(-(grid - 25) ** 2) + 1e-6)]
    labels = ("top eigenvector 1 (λ=25.0)", "top eigenvector 2 (λ=3.1)")
    out = cvf.plot_spectrum(densities, make_surface(), "spectrum", tmp_path / "h.png", axis_labels=labels)
    assert_real_png(out, "spectrum")
    density_ax, plane_ax = captured[0].axes[:2]
    assert density_ax.get_yscale() == "log"
    assert (plane_ax.get_xlabel(), plane_ax.get_ylabel()) == labels


# ---------------------------------------------------------------- figures: comparisons

def test_plane_choice_obeys_the_shadow_rule_per_panel(tmp_path, captured):
    surface, (coords, on_surface, _) = make_surface(), make_path()
    panels = [(surface, vis.PlanePath(coords, on_surface, "GD lr=0.5", residual_mean=0.03), "PCA: 3 %"),
              (surface, vis.PlanePath(coords, on_surface, "GD lr=0.5", drawn="shadow", residual_mean=0.61), "filter PCA"),
              (surface, vis.PlanePath(coords * 0.1, on_surface, "GD lr=0.5", drawn="shadow", residual_mean=0.99),
               "random")]
    out = cf.plot_plane_choice(panels, "planes", tmp_path / "p.png")
    assert_real_png(out, "plane_choice")
    axes = [ax for ax in captured[0].axes if ax.get_title() in ("PCA: 3 %", "filter PCA", "random")]
    assert [dashed(next(line for line in ax.lines if len(line.get_xdata()) > 1)) for ax in axes] == [False, True, True]
    assert "GD lr=0.5 (shadow: 61 % off plane)" in [t.get_text() for t in axes[1].get_legend().get_texts()]


def test_sharpness_shares_one_colour_scale_and_axis_range(tmp_path, captured):
    ts = np.linspace(-1, 1, 21)
    lines = [("lr=0.05", 0.2 + 0.1 * ts ** 2, "#0072B2"), ("lr=2", 0.1 + 3 * ts ** 2, "#D55E00")]
    flat, sharp = make_surface(lambda a, b: 0.2 + 0.1 * (a ** 2 + b ** 2)), make_surface(lambda a, b: 0.1 + 3 * a ** 2 + b ** 2)
    out = cf.plot_sharpness(ts, lines, [("lr=0.05", flat, "#0072B2"), ("lr=2", sharp, "#D55E00")], "minima",
                            tmp_path / "s.png")
    # as tall as the line panel and one row of square panels (at least 3 to a row): no empty band between
    assert_real_png(out, "sharpness", cf.SHARPNESS_LINE_HEIGHT + cf.SHARPNESS_ROW_WIDTH / 3 + cf.SHARPNESS_LABELS)
    panels = [ax for ax in captured[0].axes if hasattr(ax, "filled")]
    assert len(panels) == 2
    norms = [(ax.filled.norm.vmin, ax.filled.norm.vmax) for ax in panels]
    both = np.r_[flat.loss.ravel(), sharp.loss.ravel()]
    assert norms[0] == norms[1] == (pytest.approx(both.min()), pytest.approx(both.max()))
    assert panels[0].get_xlim() == panels[1].get_xlim()
    assert_real_png(cf.plot_sharpness(ts, lines, None, "lines only", tmp_path / "l.png"), "sharpness")


def test_multi_seed_minima_lines_and_small_panels(tmp_path, captured):
    surface, (coords, on_surface, _) = make_surface(), make_path()
    minima = np.array([[-0.5, -0.3], [0.6, -0.2], [0.0, 0.8]])
    ts = np.linspace(0, 1, 11)
    lines = [(f"seed {a} – seed {b}", ts, 0.3 + 0.1 * np.sin(np.pi * ts) * (a + b), 0.1 * (a + b), style.run_colour(a + b))
             for a, b in ((0, 1), (0, 2), (1, 2))]
    panels = [(surface, vis.PlanePath(coords, on_surface, f"seed {k}", colour=style.run_colour(k),
                                      drawn="shadow" if k == 3 else "surface", residual_mean=0.2))
              for k in range(10)]
    out = cf.plot_multi_seed(surface, minima, ["seed 0", "seed 1", "seed 2"], [0.31, 0.32, 0.33], lines, panels,
                             "seeds", tmp_path / "m.png")
    assert_real_png(out, "multi_seed")
    fig = captured[0]
    texts = all_text(fig)
    assert "seed 0: recorded loss 0.31" in texts and "seed 1 – seed 2: barrier 0.3" in texts
    small = [ax for ax in fig.axes if ax.get_title().startswith("seed ")]
    assert len(small) == 10 and small[3].get_title() == "seed 3\n(shadow: 20 % off plane)"
    assert dashed(next(line for line in small[3].lines if len(line.get_xdata()) > 1))


@pytest.mark.parametrize("coloured", [True, False])
def test_each_barrier_marker_has_its_lines_colour(tmp_path, captured, coloured):
    """Given colours or the axes' own cycle: the ▲ on a line's highest point is that line's colour."""
    surface, (coords, on_surface, _) = make_surface(), make_path()
    ts = np.linspace(0, 1, 11)
    lines = [(f"seed {a} – seed {b}", ts, 0.3 + 0.1 * (a + b) * np.sin(np.pi * ts), 0.1 * (a + b),
              style.run_colour(a + b) if coloured else None) for a, b in ((0, 1), (0, 2), (1, 2))]
    panels = [(surface, vis.PlanePath(coords, on_surface, "seed 0", colour=style.run_colour(0)))]
    cf.plot_multi_seed(surface, np.array([[-0.5, -0.3], [0.6, -0.2], [0.0, 0.8]]), ["seed 0", "seed 1", "seed 2"],
                       [0.31, 0.32, 0.33], lines, panels, "seeds", tmp_path / "m.png")
    ax = next(ax for ax in captured[0].axes if ax.get_title().startswith("straight line"))
    curves = [line for line in ax.lines if len(line.get_xdata()) > 1]
    markers = [line for line in ax.lines if line.get_marker() == "^"]
    assert len(curves) == len(markers) == 3
    for curve, marker in zip(curves, markers):
        assert to_hex(marker.get_color()) == to_hex(curve.get_color())
        assert marker.get_ydata()[0] == pytest.approx(np.max(curve.get_ydata()))
    styles = {(to_hex(curve.get_color()), curve.get_linestyle()) for curve in curves}
    assert len(styles) == 3  # the three pairs tell apart
    if not coloured:  # neutral ink: no pair line borrows a seed's colour
        assert not {colour for colour, _ in styles} & {to_hex(style.run_colour(k)) for k in range(10)}


# ---------------------------------------------------------------- figures: embeddings and lines

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



def test_interpolation_names_r2_and_shows_negative_values(tmp_path, captured):
    ts = np.linspace(-0.25, 1.25, 31)
    r2 = 0.9 - 4 * (ts - 1) ** 2  # -5.35 at t = -0.25: worse than predicting the mean
    lines = {"linear regression": (0.3 + (ts - 1) ** 2, r2)}
    assert_real_png(vis.plot_interpolation(ts, lines, "line", tmp_path / "r.png", metric_name="R²"), "interpolation")
    vis.plot_interpolation(ts, {"MLP": (0.3 + (ts - 1) ** 2, np.full(31, 0.7))}, "line", tmp_path / "a.png")
    r2_twin, acc_twin = (fig.axes[1] for fig in captured)
    assert r2_twin.get_ylabel() == "training R²" and r2_twin.lines[0].get_label() == "training R²"
    low, high = r2_twin.get_ylim()
    assert low < r2.min() and high == pytest.approx(1.02)  # every value shown, 1 the top
    assert acc_twin.get_ylabel() == "training accuracy" and acc_twin.get_ylim() == pytest.approx((0, 1.02))


# ---------------------------------------------------------------- paths drawn per checkpoint

def path_lines(ax):
    """(solid, dashed) lines of more than one point, in drawing order."""
    lines = [line for line in ax.lines if len(line.get_xdata()) > 1]
    return [line for line in lines if not dashed(line)], [line for line in lines if dashed(line)]


def test_contour_partial_path_is_solid_on_the_surface_and_dashed_elsewhere(tmp_path, captured):
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    mask = np.ones(15, bool)
    mask[5:8] = False  # checkpoints 5, 6, 7 off the plane: steps 4->5 ... 7->8 dashed
    run = vis.PlanePath(coords, on_surface, "GD", steps=np.arange(15) * 10, drawn=mask)
    out = vis.plot_contour(surface, [run, (coords * 0.5, "other")], [arrows, None], "bowl", tmp_path / "c.png",
                           drawn=np.zeros(15, bool))
    assert_real_png(out, "contour")
    ax = captured[0].axes[0]
    solid, dash = path_lines(ax)
    assert [len(line.get_xdata()) for line in solid] == [5, 7]
    np.testing.assert_allclose(np.c_[solid[0].get_data()], coords[0:5])
    np.testing.assert_allclose(np.c_[solid[1].get_data()], coords[8:15])
    np.testing.assert_allclose(np.c_[dash[0].get_data()], coords[4:9])  # the joins are dashed
    np.testing.assert_allclose(np.c_[dash[1].get_data()], coords * 0.5)  # the second path: all shadow
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["GD (dashed: shadow, epochs 50–70 off the plane)", "other (shadow: off plane)"]


def lines_3d(ax):
    """Path pieces (more than two points or not vertical) and the vertical connectors of a 3D axes."""
    lines = [line for line in ax.lines if len(line.get_data_3d()[0]) > 1]
    vertical = [line for line in lines if len(line.get_data_3d()[0]) == 2 and
                np.allclose(*line.get_data_3d()[0]) and np.allclose(*line.get_data_3d()[1])]
    return [line for line in lines if not any(line is v for v in vertical)], vertical


def test_surface_3d_partial_path_lifts_only_checkpoints_on_the_surface(tmp_path, captured):
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    mask = np.r_[np.zeros(4, bool), np.ones(11, bool)]
    out = vis.plot_surface_3d(surface, coords, on_surface, on_surface, arrows, "bowl", tmp_path / "s.png",
                              drawn=mask, steps=np.arange(15), n_arrows=6)
    assert_real_png(out, "surface_3d")
    ax = captured[0].axes[0]
    floor = ax.get_zlim()[0]
    pieces, vertical = lines_3d(ax)
    dash, = [line for line in pieces if dashed(line)]
    solid, = [line for line in pieces if not dashed(line)]
    x, y, z = dash.get_data_3d()
    np.testing.assert_allclose(np.c_[x, y], coords[0:5])  # the off stretch and its join, on the floor
    assert np.all(z == floor) and "epochs 0–3 off the plane" in dash.get_label()
    x, y, z = solid.get_data_3d()
    np.testing.assert_allclose(np.c_[x, y], coords[4:])  # lifted: exactly the checkpoints on the surface
    np.testing.assert_allclose(z - z[0], on_surface[4:] - on_surface[4])
    assert np.all(z > surface.loss.min() - 1e-12)
    connector, drop = vertical  # from the floor up to checkpoint 4, where the path joins the surface
    np.testing.assert_allclose(np.c_[connector.get_data_3d()][:, :2], coords[[4, 4]])
    np.testing.assert_allclose(connector.get_data_3d()[2], [floor, z[0]])
    start = next(line for line in ax.lines if line.get_label().startswith("start"))
    assert start.get_data_3d()[2][0] == on_surface[0]  # checkpoint 0 is not on the surface: at its own loss
    np.testing.assert_allclose(np.c_[drop.get_data_3d()], [[*coords[0], floor], [*coords[0], on_surface[0]]])
    tails = arrow_segments(ax)[:, 0, :2]
    assert len(tails) > 0
    on_points = coords[mask]
    assert all(np.isclose(on_points, tail).all(axis=1).any() for tail in tails)  # arrows only where on


def test_surface_3d_arrows_only_at_checkpoints_on_the_surface(tmp_path, captured):
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    vis.plot_surface_3d(surface, coords, on_surface, on_surface, arrows, "none on", tmp_path / "a.png",
                        drawn="shadow")
    mask = np.zeros(15, bool)
    mask[[3, 9]] = True
    vis.plot_surface_3d(surface, coords, on_surface, on_surface, arrows, "two on", tmp_path / "b.png",
                        drawn=list(mask), n_arrows=10)
    assert not arrow_patches(captured[0].axes[0])
    segments = arrow_segments(captured[1].axes[0])
    np.testing.assert_allclose(segments[:, 0, :2], coords[[3]])  # the last one on is the end
    # each lone point on the surface gets its connector, the start and the end (off it) their drop lines
    assert len(lines_3d(captured[1].axes[0])[1]) == 2 + 2


def test_3d_start_and_end_obey_the_shadow_rule(tmp_path, captured):
    """Off the surface the ○ and ★ stand at their own recorded loss with a dotted drop line to the floor
    (never a floor point painted over the surface mid-path); on it they sit on the drawn path."""
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    recorded = on_surface + 0.4  # the surface is not their loss where they are off it
    mask = (np.arange(15) >= 2) & (np.arange(15) <= 11)  # start and end off the surface
    vis.plot_surface_3d(surface, coords, on_surface, recorded, arrows, "off", tmp_path / "a.png", drawn=mask)
    vis.plot_surface_3d(surface, coords, on_surface, recorded, arrows, "on", tmp_path / "b.png")
    off_ax, on_ax = captured[0].axes[0], captured[1].axes[0]
    floor = off_ax.get_zlim()[0]
    ends = [next(line for line in off_ax.lines if line.get_label().startswith(name)) for name in ("start", "end")]
    for line, i in zip(ends, (0, -1)):
        np.testing.assert_allclose(np.ravel(line.get_data_3d()), [*coords[i], recorded[i]])
        assert "off this surface: drawn at that loss" in line.get_label()
        assert any(np.allclose(np.c_[v.get_data_3d()], [[*coords[i], floor], [*coords[i], recorded[i]]])
                   for v in lines_3d(off_ax)[1])  # its drop line down to the floor
    path, = [line for line in lines_3d(on_ax)[0] if line.get_label().startswith("path on the surface")]
    start, end = [next(line for line in on_ax.lines if line.get_label().startswith(name)) for name in ("start", "end")]
    np.testing.assert_allclose(np.ravel(start.get_data_3d()), np.c_[path.get_data_3d()][0])
    np.testing.assert_allclose(np.ravel(end.get_data_3d()), np.c_[path.get_data_3d()][-1])


def test_3d_arrows_have_filled_heads_above_the_path_pointing_along_descent(tmp_path, captured):
    """Drawn over the path, white with a black edge, each head's point at the projected tip of its 3D arrow
    and wide enough to read; the 3D direction itself is checked above (the surface's downhill)."""
    from mpl_toolkits.mplot3d import proj3d
    surface, (coords, on_surface, arrows) = make_surface(), make_path()
    vis.plot_surface_3d(surface, coords, on_surface, on_surface, arrows, "bowl", tmp_path / "s.png", n_arrows=4)
    fig = captured[0]
    ax = fig.axes[0]
    rendered(fig)
    path = next(line for line in ax.lines if line.get_label().startswith("path on the surface"))
    patches = arrow_patches(ax)
    assert len(patches) == len(style.spread_indices(coords, 4))
    for patch in patches:
        assert to_hex(patch.get_facecolor()) == "#ffffff" and to_hex(patch.get_edgecolor()) == "#000000"
        assert patch.get_zorder() > path.get_zorder()
        xs, ys, _ = proj3d.proj_transform(*patch.ends_3d.T, ax.M)
        tail, tip = ax.transData.transform(np.c_[xs, ys])  # pixels
        outline = ax.transData.transform(patch.get_path().vertices)
        point = outline[np.argmax(np.linalg.norm(outline - tail, axis=1))]
        np.testing.assert_allclose(point, tip, atol=1.0)  # the head points at the tip, away from the tail
        across = np.array([-(tip - tail)[1], (tip - tail)[0]]) / np.linalg.norm(tip - tail)
        assert np.ptp(outline @ across) >= 8  # a head several pixels wide, not a bar as thin as the path


def test_partial_runs_and_seed_panels_say_dashed_on_their_face(tmp_path, captured):
    surface, (coords, on_surface, _) = make_surface(), make_path()
    mask = np.arange(15) % 5 != 0  # three separate off stretches
    runs = [vis.PlanePath(coords, on_surface, "seed 0", drawn=np.arange(15) >= 9, steps=np.arange(15)),
            vis.PlanePath(coords * 0.5, on_surface, "seed 1", drawn=mask)]
    vis.plot_runs(surface, runs, "runs", tmp_path / "r.png")
    legend = captured[0].legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:2] == ["seed 0 (dashed: shadow, epochs 0–8 off the plane)",
                          "seed 1 (dashed where off the plane: 20 % of checkpoints)"]
    solid, dash = path_lines(captured[0].axes[0])
    assert len(solid) == 1 + 3 and len(dash) == 1 + 3
    cf.plot_multi_seed(surface, coords[[0, 5, 10]], ["seed 0", "seed 1", "seed 2"], [0.3] * 3, [],
                       [(surface, run) for run in runs], "seeds", tmp_path / "m.png")
    titles = [ax.get_title() for ax in captured[1].axes if ax.get_title().startswith("seed ")]
    assert titles == ["seed 0\n(dashed: shadow,\nepochs 0–8 off the plane)",
                      "seed 1\n(dashed where off the plane:\n20 % of checkpoints)"]


def test_eigen_ratio_spectrum_and_plane_choice_take_a_mask(tmp_path, captured):
    surface, (coords, on_surface, _) = make_surface(), make_path()
    mask = np.arange(15) >= 6
    ratio = np.full((4, 5), 0.1)
    cvf.plot_eigen_ratio(np.linspace(-1, 1, 5), np.linspace(-0.8, 1.2, 4), ratio, coords, ("PC1", "PC2"), "r",
                         tmp_path / "e.png", drawn=mask, steps=np.arange(15))
    run = vis.PlanePath(coords, on_surface, "GD", drawn=mask)
    cvf.plot_spectrum([("epoch 0", np.linspace(0, 1, 5), np.ones(5))], surface, "s", tmp_path / "h.png", top_path=run)
    cf.plot_plane_choice([(surface, run, "PCA")], "p", tmp_path / "p.png")
    for fig, ax in zip(captured, (captured[0].axes[0], captured[1].axes[1], captured[2].axes[0])):
        solid, dash = path_lines(ax)
        np.testing.assert_allclose(np.c_[dash[0].get_data()], coords[:7])
        np.testing.assert_allclose(np.c_[solid[0].get_data()], coords[6:])
    assert "epochs 0–5 off the plane" in captured[0].axes[0].get_legend().get_texts()[0].get_text()


def test_plane_choice_panels_share_one_colour_scale(tmp_path, captured):
    """A colour is the same loss in every panel: the levels cover all three surfaces, the steepest included."""
    surface, (coords, on_surface, _) = make_surface(), make_path()
    steep = Surface(surface.alphas, surface.betas, 3 * surface.loss, surface.accuracy, surface.plane)
    panels = [(s, vis.PlanePath(coords, on_surface, "GD"), name) for s, name in ((surface, "a"), (steep, "b"), (surface, "c"))]
    cf.plot_plane_choice(panels, "planes", tmp_path / "p.png")
    axes = [ax for ax in captured[0].axes if ax.get_title() in ("a", "b", "c")]
    levels = [next(c for c in ax.collections if hasattr(c, "levels")).levels for ax in axes]
    assert all(np.array_equal(levels[0], other) for other in levels[1:])
    assert levels[0][0] <= surface.loss.min() and levels[0][-1] >= steep.loss.max()


def test_eigen_ratio_map_dashes_the_shadow_and_keeps_every_text_inside_the_figure(tmp_path, captured):
    """A path partly off its plane: dashed there, named in a legend that still leaves room for the title."""
    a = np.linspace(-1, 1, 5)
    ratio = np.random.default_rng(0).uniform(0, 1, size=(5, 5))
    cvf.plot_eigen_ratio(a, a, ratio, np.c_[a, a], ("PC1", "PC2"), "MLP: convexity map |λmin/λmax|",
                         tmp_path / "r.png", drawn=np.arange(5) >= 2, steps=np.arange(5))
    fig = captured[0]
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "training path (dashed: shadow, epochs 0–1 off the plane)" in legend
    assert any(dashed(line) for line in ax.lines if len(line.get_xdata()) > 1)
    ink = np.asarray(Image.open(tmp_path / "r.png").convert("L")) < 128  # the title's glyphs are dark
    assert not ink[:3].any() and not ink[-3:].any()  # a margin above the title and below the legend: nothing cut
