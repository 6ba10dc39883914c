"""Interactive pages without a browser: structure, offline assets, slider frames, hover text, size."""
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

import index_page
import interactive_plots as ip
from loss_surface import Surface
from projection import Plane


@pytest.fixture
def scene():
    alphas, betas = np.linspace(-1, 1, 12), np.linspace(-0.5, 0.5, 9)
    aa, bb = np.meshgrid(alphas, betas)
    plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.9, 0.05))
    surface = Surface(alphas, betas, 0.3 + aa ** 2 + 3 * bb ** 2, np.ones_like(aa), plane)
    t = np.linspace(0, 1, 21)
    coords = np.stack([-0.9 + 0.9 * t, 0.4 * (1 - t)], axis=1)
    drawn = 0.3 + coords[:, 0] ** 2 + 3 * coords[:, 1] ** 2
    return surface, coords, drawn, drawn + 0.01, np.linspace(0.5, 0.9, 21), np.arange(21)


class Sources(HTMLParser):
    """Every src and href of a page (the parser also proves the page parses)."""

    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def links_of(path):
    parser = Sources()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.links


def test_surface_figure_animates_only_the_marker_and_hovers_the_numbers(scene):
    surface, coords, drawn, true, acc, steps = scene
    lam = np.linspace(2.0, 1.0, 11)
    fig = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t", lam_max=lam, lam_steps=steps[::2])
    assert [trace.type for trace in fig.data] == ["surface", "scatter3d", "scatter3d", "scatter3d"]
    assert fig.data[3].name == "epoch marker"
    assert len(fig.frames) == 21 and all(frame.traces == (3,) and len(frame.data) == 1 for frame in fig.frames)
    assert [frame.name for frame in fig.frames] == [str(s) for s in steps]
    assert fig.frames[5].data[0].x[0] == pytest.approx(coords[5, 0])
    hover = fig.data[1].text
    assert "epoch 4" in hover[4] and f"loss {true[4]:.4f}" in hover[4] and f"surface loss {drawn[4]:.4f}" in hover[4]
    assert f"λmax {lam[2]:.4f}" in hover[4] and "λmax" not in hover[5]  # eigenvalues at every 2nd checkpoint
    assert fig.layout.sliders[0].active == 20 and len(fig.layout.sliders[0].steps) == 21
    assert f"accuracy {acc[4]:.3f}" in hover[4]
    regression = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t", metric_name="R²").data[1].text
    assert f"R² {acc[4]:.3f}" in regression[4] and "accuracy" not in regression[4]


def test_pages_are_offline_small_and_share_one_script(scene, tmp_path):
    surface, coords, drawn, true, acc, steps = scene
    first = ip.surface_page(surface, coords, drawn, true, acc, steps, tmp_path / "mlp_3d.html", "mlp")
    asset = next((tmp_path / "assets").glob("plotly-*.min.js"))
    stamp = asset.stat().st_mtime_ns
    second = ip.runs_page(surface, [(coords, drawn, true, "SGD"), (coords[::-1], drawn[::-1], true, "Adam")],
                          tmp_path / "runs.html", "runs")
    assert asset.stat().st_mtime_ns == stamp  # written once, then reused
    for page in (first, second):
        links = links_of(page)
        assert f"assets/{asset.name}" in links
        assert not [link for link in links if re.match(r"https?:", link)]
        assert page.stat().st_size < 1_000_000
    text = second.read_text()
    assert '"legendgroup":"SGD"' in text and '"legendgroup":"Adam"' in text


def test_index_page_shows_every_file_and_number(tmp_path):
    images, gifs = [("a.png", "first"), ("b.png", "second")], [("c.gif", "moving")]
    pages = [("mlp_3d.html", "3d")]
    numbers = {"final loss": [("mlp", 0.123456), ("logistic", 0.5)], "timings (s)": [("training", 1.5)]}
    index = index_page.write_index(tmp_path / "index.html", "title", "subtitle", images, gifs, pages, numbers,
                          {"epochs": 100, "seed_list": [0, 1]})
    links = links_of(index)
    for name in ("a.png", "b.png", "c.gif", "mlp_3d.html"):
        assert name in links
    text = index.read_text()
    assert "0.1235" in text and "training" in text and "0, 1" in text and "<script" not in text
    assert not [link for link in links if re.match(r"https?:", link)]


def test_surface_keeps_five_significant_digits_in_its_grid_order(scene):
    surface, coords, drawn, true, acc, steps = scene
    surface.loss[0, 0] = np.nan  # a hole stays a hole
    trace = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t").data[0]
    z = np.asarray(trace.z, dtype=float)  # (B, A): rows follow betas, as Surface.loss
    assert z.shape == surface.loss.shape and np.isnan(z[0, 0])
    np.testing.assert_allclose(z[1:], surface.loss[1:], rtol=5e-5)
    np.testing.assert_allclose(np.asarray(trace.x, float), surface.alphas, rtol=5e-5, atol=1e-12)
    np.testing.assert_allclose(np.asarray(trace.y, float), surface.betas, rtol=5e-5, atol=1e-12)


def test_a_damaged_asset_is_written_again(scene, tmp_path):
    surface, coords, drawn, true, acc, steps = scene
    ip.surface_page(surface, coords, drawn, true, acc, steps, tmp_path / "a.html", "a")
    asset = next((tmp_path / "assets").glob("plotly-*.min.js"))
    good = asset.read_bytes()
    asset.write_bytes(good[:-10] + b"0123456789")  # same size, different content
    ip.surface_page(surface, coords, drawn, true, acc, steps, tmp_path / "b.html", "b")
    assert asset.read_bytes() == good
    assert sorted(path.name for path in tmp_path.rglob("*")) == sorted(["a.html", "b.html", "assets", asset.name])


def test_every_page_links_back_to_the_index(scene, tmp_path):
    surface, coords, drawn, true, acc, steps = scene
    first = ip.surface_page(surface, coords, drawn, true, acc, steps, tmp_path / "mlp_3d.html", "mlp")
    second = ip.runs_page(surface, [(coords, drawn, true, "SGD")], tmp_path / "runs.html", "runs")
    for page in (first, second):
        assert "index.html" in links_of(page)


def test_a_truncated_asset_is_repaired_before_a_page_uses_it(scene, tmp_path):
    surface, coords, drawn, true, acc, steps = scene
    ip.surface_page(surface, coords, drawn, true, acc, steps, tmp_path / "a.html", "a")
    asset = next((tmp_path / "assets").glob("plotly-*.min.js"))
    good = asset.read_bytes()
    asset.write_bytes(good[: len(good) // 3])  # what a run killed mid-write would have left without atomic writes
    ip.plotly_asset(tmp_path)
    assert asset.read_bytes() == good
    assert not list(tmp_path.rglob(".partial-*"))  # the temporary file was renamed into place


def floor_of(surface):
    """The floor a shadow lies on, from its definition: 0.35 of the surface's range below its minimum."""
    return surface.loss.min() - 0.35 * np.ptp(surface.loss)


def on_floor(values, floor) -> bool:
    return bool(np.allclose(np.asarray(values, float), floor, rtol=1e-4, atol=1e-6))


def test_a_shadow_run_lies_dashed_on_the_floor_in_its_own_colour(scene):
    surface, coords, drawn, true, acc, steps = scene
    runs = [(coords, drawn, true, "SGD", "surface", "#0072B2"),
            dict(coords=coords[::-1], path_surface_loss=drawn[::-1], true_losses=true, label="Adam", drawn="shadow",
                 colour="#D55E00", residual_mean=0.4)]
    fig = ip.runs_figure(surface, runs, "t")
    surface_path, _, shadow_path, shadow_ends = fig.data[1:]
    assert surface_path.name == "SGD" and surface_path.line.dash == "solid" and surface_path.line.color == "#0072B2"
    np.testing.assert_allclose(surface_path.z, drawn + ip._lift(surface), rtol=1e-4)  # on the surface
    assert shadow_path.name == "Adam (shadow: 40 % off plane)" and shadow_path.line.dash == "dash"
    assert shadow_path.line.color == "#D55E00" and shadow_ends.marker.color == "#D55E00"
    assert on_floor(shadow_path.z, floor_of(surface)) and on_floor(fig.layout.scene.zaxis.range[0], floor_of(surface))
    assert "surface loss" not in shadow_path.text[0] and "surface loss" in surface_path.text[0]
    # the shadow under the surface shows through it; with nothing under it the surface stays nearly opaque
    assert fig.data[0].opacity <= 0.6 < ip.runs_figure(surface, runs[:1], "t").data[0].opacity
    with pytest.raises(ValueError, match="drawn"):
        ip.runs_figure(surface, [(coords, drawn, true, "x", "lifted")], "t")


def test_a_surface_spanning_decades_is_coloured_on_the_pngs_log_scale(scene):
    surface, coords, drawn, true, acc, steps = scene
    linear = ip.runs_figure(surface, [(coords, drawn, true, "SGD")], "t", loss_name="training loss (CE)").data[0]
    assert linear.surfacecolor is None and linear.colorbar.title.text == "training loss (CE)"
    surface.loss = 10.0 ** (-3 + 4 * (surface.loss - surface.loss.min()) / np.ptp(surface.loss))  # 1e-3 .. 10
    trace = ip.runs_figure(surface, [(coords, drawn, true, "SGD")], "t").data[0]
    np.testing.assert_allclose(np.asarray(trace.surfacecolor, float), np.log10(surface.loss), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(trace.z, float), surface.loss, rtol=1e-4)  # heights stay in loss units
    assert trace.colorbar.title.text == "training loss, log scale"
    assert list(trace.colorbar.ticktext) == ["0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5",
                                             "1", "2", "5", "10"]
    np.testing.assert_allclose(trace.colorbar.tickvals, np.log10([float(t) for t in trace.colorbar.ticktext]))


def test_the_results_page_leads_with_the_hero_and_findings_and_folds_the_rest(tmp_path):
    images = [("mlp_contour.png", "contours"), ("optimizer_comparison.png", "optimisers"), ("mlp_3d.png", "3d")]
    summary = {"model": {"key": "cnn", "kind": "cnn", "loss": "ce", "n_classes": 10, "parameters": 1234,
                         "description": "CNN(\n  (conv): Conv2d(1, 8, kernel_size=(3, 3))\n)"},
               "runs": {"cnn": [{"label": "seed 0", "final_loss": 0.25, "final_accuracy": 0.9}]},
               "skipped": {"interpolation_1d.png": "needs the logistic model"}, "timings_s": {"training": 2.5}}
    index = index_page.write_index(tmp_path / "index.html", "t", "s", images, [], [], {"n": [("x", 1.0)]}, {"epochs": 3},
                          summary=summary)
    text = index.read_text()
    imgs = [link for link in links_of(index) if link.endswith(".png")]
    assert imgs[0] == "mlp_3d.png" and text.count("src='mlp_3d.png'") == 1  # the hero leads, shown once
    assert text.index("mlp_3d.png") < text.index("Training loss fell: the CNN to 0.25 (accuracy 90%)")
    assert "interpolation_1d.png</b>: needs the logistic model" in text
    assert "<figure class=wide><a href='optimizer_comparison.png'" in text
    assert "<figure><a href='mlp_contour.png'" in text
    assert "summary.json" in links_of(index) and "Conv2d(1, 8, kernel_size=(3, 3))" in text
    assert text.count("<details>") == 4 and "<details open" not in text  # model, numbers, timings, config
    assert "loss 0.25, accuracy 90%" in index_page.write_index(tmp_path / "i.html", "t", "s", images, [], [], {}, {},
                                                      summary=summary).read_text()  # summary's own numbers
    assert "loading=lazy" in text and text.index("loading=lazy") > text.index("src='mlp_3d.png'")


def test_image_size_reads_png_and_gif_headers(tmp_path):
    from PIL import Image
    Image.new("RGB", (37, 21)).save(tmp_path / "a.png")
    Image.new("RGB", (300, 200)).save(tmp_path / "b.gif")
    (tmp_path / "c.txt").write_text("not an image")
    assert index_page.image_size(tmp_path / "a.png") == (37, 21) and index_page.image_size(tmp_path / "b.gif") == (300, 200)
    assert index_page.image_size(tmp_path / "c.txt") is None and index_page.image_size(tmp_path / "missing.png") is None


def test_a_run_partly_off_its_plane_is_lifted_only_where_the_surface_is_its_loss(scene):
    surface, coords, drawn, true, acc, steps = scene
    mask = np.arange(21) >= 15  # checkpoints 0-14 leave the plane
    fig = ip.runs_figure(surface, [ip.PageRun(coords, drawn, true, "SGD", mask, "#0072B2")], "t")
    off, on, connector, ends = fig.data[1:]
    floor = floor_of(surface)
    assert connector.line.dash == "dot" and connector.legendgroup == "SGD" and connector.line.color == "#0072B2"
    np.testing.assert_allclose(connector.z[:2], [floor, drawn[15] + ip._lift(surface)], rtol=1e-4)
    assert (off.line.dash, on.line.dash) == ("dash", "solid") and off.showlegend and not on.showlegend
    assert off.name == "SGD (dashed: shadow, epochs 0–14 off the plane)" == on.name
    assert len(off.x) == 16 and on_floor(off.z, floor)  # 0-14 and the join to checkpoint 15, on the floor
    np.testing.assert_allclose(on.z, drawn[15:] + ip._lift(surface), rtol=1e-4)
    assert on_floor(ends.z[0], floor) and ends.z[1] == pytest.approx(drawn[-1] + ip._lift(surface), rel=1e-4)
    assert "surface loss" not in off.text[0] and "surface loss" in on.text[0]


def test_the_single_run_page_lifts_only_checkpoints_on_the_surface_and_so_does_its_marker(scene):
    surface, coords, drawn, true, acc, steps = scene
    mask = np.arange(21) >= 8  # checkpoints 0-7 leave the plane
    fig = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t", drawn=mask, residual_mean=0.1)
    lifted, floor = drawn + ip._lift(surface), floor_of(surface)
    off, on, connector, start, marker = fig.data[1:]
    assert (off.line.dash, on.line.dash, connector.line.dash) == ("dash", "solid", "dot")
    assert off.name == "path (dashed: shadow, epochs 0–7 off the plane): on the floor"
    assert on.name == "path on the surface" and marker.name == "epoch marker"
    points = [(x, z) for trace in (off, on) for x, z in zip(trace.x, trace.z)]
    raised = sorted({x for x, z in points if not on_floor(z, floor)})  # every point drawn above the floor
    np.testing.assert_allclose(raised, np.sort(coords[mask, 0]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(on.z, lifted[8:], rtol=1e-4)
    assert len(off.z) == 9 and on_floor(off.z, floor)  # 0-7 and the join to checkpoint 8, all on the floor
    np.testing.assert_allclose(connector.x[:2], coords[8, 0], rtol=1e-4)
    assert on_floor(connector.z[0], floor) and connector.z[1] == pytest.approx(lifted[8], rel=1e-4)
    assert on_floor(start.z[0], floor) and marker.z[0] == pytest.approx(lifted[-1], rel=1e-4)
    assert all(frame.traces == (5,) for frame in fig.frames)  # the slider moves the marker, the last trace
    for frame, k in zip(fig.frames, range(21)):
        assert np.isclose(frame.data[0].z[0], lifted[k] if mask[k] else floor, rtol=1e-4), k
    assert f"recorded loss {true[3]:.4f}" in off.text[3] and "shadow: off the plane" in off.text[3]
    assert "surface loss" not in off.text[3] and f"on the surface: surface loss {drawn[9]:.4f}" in on.text[1]
    assert "shadow: off the plane" in fig.frames[3].data[0].text[0]


def test_the_single_run_page_drawn_surface_or_shadow(scene):
    surface, coords, drawn, true, acc, steps = scene
    lifted = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t", drawn="surface")
    assert [trace.name for trace in lifted.data[1:]] == ["path", "start", "epoch marker"]
    np.testing.assert_allclose(lifted.data[1].z, drawn + ip._lift(surface), rtol=1e-4)
    assert lifted.layout.scene.zaxis.range is None and lifted.data[0].contours.z.show is None  # no floor
    shadow = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t", drawn="shadow", residual_mean=0.3)
    path, start, marker = shadow.data[1:]
    assert path.name == "path (shadow: 30 % off plane): on the floor" and path.line.dash == "dash"
    assert on_floor([*path.z, start.z[0], marker.z[0]], floor_of(surface))
    assert shadow.data[0].contours.z.project.z  # the contour map the shadow lies on
    with pytest.raises(ValueError, match="drawn"):
        ip.surface_figure(surface, coords, drawn, true, acc, steps, "t", drawn=np.ones(20, bool))


def test_the_camera_faces_the_surfaces_low_side(scene):
    surface, coords, drawn, true, acc, steps = scene
    surface.loss = surface.loss + 5 * np.linspace(1, 0, 12)[None, :]  # (B, A): lowest at the largest a
    eye = ip.surface_figure(surface, coords, drawn, true, acc, steps, "t").layout.scene.camera.eye
    assert eye.x > abs(eye.y)  # looking from +a, over the low half
