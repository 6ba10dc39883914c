"""plot_style: contour levels, colours (WCAG contrast), paths cut into solid and dashed pieces, legends."""
import numpy as np
import pytest
from matplotlib.lines import Line2D
from PIL import Image

import plot_style as style


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


# ---------------------------------------------------------------- palette

def wcag_contrast(colour, background=(1.0, 1.0, 1.0)) -> float:
    """WCAG 2 contrast ratio from the relative luminance of sRGB colours (written out here, as the oracle)."""
    def luminance(rgb):
        rgb = np.asarray(rgb, dtype=float)
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])
    hex_ = colour.lstrip("#")
    rgb = [int(hex_[k:k + 2], 16) / 255 for k in (0, 2, 4)]
    light, dark = sorted([luminance(rgb), luminance(background)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_wcag_oracle_on_known_pairs():
    assert wcag_contrast("#000000") == pytest.approx(21.0)
    assert wcag_contrast("#FFFFFF") == pytest.approx(1.0)
    assert wcag_contrast("#767676") == pytest.approx(4.54, abs=0.01)  # the classic AA grey on white


def test_every_path_colour_contrasts_with_white_and_ten_runs_get_distinct_colours():
    for colour in style.PATH_COLOURS:
        assert wcag_contrast(colour) >= 3.0, colour
    assert len({c.lower() for c in style.PATH_COLOURS}) >= 10
    assert [style.run_colour(k) for k in range(10)] == style.PATH_COLOURS[:10]
    assert style.run_colour(10) == style.run_colour(0)
    assert style.RUN_COLOURS is style.PATH_COLOURS  # one colour per run in every figure


def test_shadow_label_and_drawn_check():
    assert style.shadow_label("Adam lr=0.05", "surface", 0.34) == "Adam lr=0.05"
    assert style.shadow_label("Adam lr=0.05", "shadow", 0.34) == "Adam lr=0.05 (shadow: 34 % off plane)"
    assert style.shadow_label("x", "shadow") == "x (shadow: off plane)"
    with pytest.raises(ValueError, match="drawn"):
        style.check_drawn("lifted")


def test_loss_scale_covers_recorded_losses_below_the_surface_but_not_a_blow_up():
    levels, _ = style.loss_scale(np.array([[0.22, 0.5], [0.9, 0.3]]), [0.7, 0.097], [0.6, 1e30], cap=14)
    assert levels[0] == pytest.approx(0.097) and levels[-1] == pytest.approx(0.9)


def plain_segments(mask):
    """The oracle: stretches of equal values found one element at a time."""
    out = []
    for i, value in enumerate(mask):
        if out and out[-1][2] == bool(value):
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1, bool(value)])
    return [tuple(s) for s in out]


def test_segments_and_line_pieces_against_a_plain_loop():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, 40):
        for p in (0.0, 0.3, 0.9, 1.0):
            mask = rng.random(n) < p
            assert style.segments(mask) == plain_segments(mask)
            steps = {}  # every step i -> i+1 drawn exactly once: solid iff both ends are on the surface
            for lo, hi, on in style.line_pieces(mask):
                for i in range(lo, hi - 1):
                    assert i not in steps
                    steps[i] = on
            assert steps == {i: bool(mask[i] and mask[i + 1]) for i in range(n - 1)}


def test_on_mask_and_drawn_kind_accept_strings_and_masks_only():
    np.testing.assert_array_equal(style.on_mask("surface", 3), [True] * 3)
    np.testing.assert_array_equal(style.on_mask("shadow", 2), [False] * 2)
    np.testing.assert_array_equal(style.on_mask([False, True], 2), [False, True])
    assert style.on_mask([], 0).shape == (0,)
    for bad in ("lifted", [1, 0], np.ones(3, bool)):
        with pytest.raises(ValueError, match="drawn"):
            style.on_mask(bad, 2)
    assert [style.drawn_kind(d) for d in ("shadow", [True, True], np.zeros(2, bool), [False, True])] == \
        ["shadow", "surface", "shadow", "partial"]


def test_shadow_label_names_the_dashed_epochs_or_share():
    mask = np.r_[np.zeros(9, bool), np.ones(6, bool)]
    assert style.shadow_label("seed 0", mask, steps=np.arange(15) * 2) == \
        "seed 0 (dashed: shadow, epochs 0–16 off the plane)"
    assert style.shadow_label("a", mask) == "a (dashed: shadow, checkpoints 0–8 off the plane)"
    assert style.shadow_label("a", np.r_[True, False, True], steps=[0, 5, 9]) == \
        "a (dashed: shadow, epoch 5 off the plane)"
    assert style.shadow_label("a", np.r_[True, False, True, False], sep="\n") == \
        "a\n(dashed where off the plane:\n50 % of checkpoints)"
    assert style.shadow_label("a", np.ones(4, bool)) == "a"
    assert style.shadow_label("a", np.zeros(4, bool), 0.2) == "a (shadow: 20 % off plane)"


def test_partial_legend_sample_is_dashed_then_solid_as_the_path_starts():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    handles = [style.path_handle("#0072B2", "a", np.r_[False, True]), style.path_handle("#0072B2", "b", [True, False]),
               style.path_handle("#0072B2", "c", np.r_[True, True])]
    legend = ax.legend(handles=handles)
    fig.canvas.draw()
    boxes = [child for child in legend.findobj(Line2D) if len(child.get_xdata()) == 2]
    styles = [(line.get_linestyle(), float(line.get_xdata()[0])) for line in boxes]
    plt.close(fig)
    assert [isinstance(h, style.PartialHandle) for h in handles] == [True, True, False]
    assert [ls for ls, _ in styles[:4]] == ["--", "-", "-", "--"]  # a: dashed first; b: solid first
    assert styles[0][1] < styles[1][1] and styles[2][1] < styles[3][1]


def test_switch_points_are_the_on_checkpoints_next_to_an_off_one():
    from plot_style import switch_points
    rng = np.random.default_rng(5)
    for _ in range(50):
        mask = rng.random(rng.integers(1, 12)) < 0.6
        n = len(mask)
        expected = [i for i in range(n) if mask[i] and ((i > 0 and not mask[i - 1]) or (i < n - 1 and not mask[i + 1]))]
        assert switch_points(mask).tolist() == expected


def test_notes_go_under_a_figure_legend_that_fits_the_width(tmp_path, monkeypatch):
    """Constrained layout alone puts a legend "outside lower center" and the notes in one strip, one over the
    other; finish stacks them (notes at the bottom) under the panels, and figure_legend drops columns
    until the legend fits the figure's width."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    kept = []
    monkeypatch.setattr(style, "save_figure", lambda fig, path: kept.append(fig))
    fig = style.new_figure("interpolation")
    axes = fig.subplots(1, 2)
    handles = [axes[k % 2].plot([0, 1], [k, k + 1], label=f"run {k}: " + "a long legend label " * 3)[0]
               for k in range(5)]
    axes[1].set_xlabel("epoch")
    style.figure_legend(fig, handles, ncol=3)
    style.finish(fig, ["first note: " + "x" * 60, "second note", "third note"], tmp_path / "f.png")
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    legend, notes = fig.legends[0], next(t for t in fig.texts if t.get_text().startswith("first note"))
    legend_box, notes_box = legend.get_window_extent(renderer), notes.get_window_extent(renderer)
    assert len({round(t.get_window_extent(renderer).x0) for t in legend.get_texts()}) < 3  # fewer columns
    for box in (legend_box, notes_box):
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0
    assert notes_box.y1 <= legend_box.y0  # the notes under the legend, not over it
    assert all(ax.get_tightbbox(renderer).y0 > legend_box.y1 for ax in axes)  # "epoch" included
