"""The pages in a real headless Chromium: they render offline, WebGL works, the epoch slider moves the
marker, the index page leads with its hero figure at 1400x900 and fits a 390 px phone.

Without Chromium or Playwright the whole module is skipped and says why in the warnings summary
(and with pytest -rs), except under CI (CI=true), where .ci/run installs Chromium and a skip would
hide a broken page: there it fails instead.
"""
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import index_page
import interactive_plots as ip
from loss_surface import Surface
from projection import Plane

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu-sandbox",
        "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements-test.txt)"
    if CHROMIUM is None:
        return "no Chromium on this machine (apt-get install chromium)"
    return None


REASON = missing_browser()
if REASON and os.environ.get("CI") == "true":
    pytest.fail(f"browser tests cannot run under CI: {REASON}", pytrace=False)
if REASON:
    warnings.warn(f"browser tests skipped: {REASON}", stacklevel=1)  # shown in the summary without -rs
    pytest.skip(f"browser tests skipped: {REASON}", allow_module_level=True)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("pages")
    alphas, betas = np.linspace(-1, 1, 20), np.linspace(-1, 1, 20)
    aa, bb = np.meshgrid(alphas, betas)
    plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.9, 0.05))
    surface = Surface(alphas, betas, 0.3 + aa ** 2 + np.sin(3 * bb) ** 2, np.ones_like(aa), plane)
    t = np.linspace(0, 1, 30)
    coords = np.stack([-0.9 + 0.9 * t, 0.8 * (1 - t)], axis=1)
    drawn = 0.3 + coords[:, 0] ** 2 + np.sin(3 * coords[:, 1]) ** 2
    surface_page = ip.surface_page(surface, coords, drawn, drawn, np.full(30, 0.8), np.arange(30),
                                   out / "mlp_3d.html", "surface")
    runs_page = ip.runs_page(surface, [(coords, drawn, drawn, "a"), (coords * 0.5, drawn, drawn, "b")],
                             out / "runs.html", "runs")
    index = index_page.write_index(out / "index.html", "run", "sub", [], [], [("mlp_3d.html", "3d")], {"n": [("x", 1.0)]}, {})
    return surface_page, runs_page, index


@pytest.fixture(scope="module")
def results_page(tmp_path_factory):
    """index.html over real images: a square hero, two square figures, a wide comparison figure, a GIF."""
    out = tmp_path_factory.mktemp("results")
    sizes = {"mlp_contour.png": (1200, 1050), "mlp_3d.png": (1275, 1125), "logistic_3d.png": (1275, 1125),
             "optimizer_comparison.png": (2100, 975), "mlp_curvature.png": (1350, 1050)}
    for k, (name, size) in enumerate(sizes.items()):
        Image.new("RGB", size, (40 * k, 120, 200)).save(out / name)
    Image.new("RGB", (800, 600), (200, 80, 40)).save(out / "mlp_descent.gif")
    summary = {"model": {"kind": "mlp", "loss": "ce", "n_classes": 3, "parameters": 163,
                         "description": "MLP(\n  (fc1): Linear(in_features=2, out_features=32, bias=True)" + "x" * 300},
               "runs": {"mlp": [{"final_loss": 0.05, "final_accuracy": 0.97}]},
               "curvature": {"mlp": {"lambda_min_lowest": -0.4, "lambda_max_peak": 3.9}},
               "skipped": {"interpolation_1d.png": "reason " * 30}, "timings_s": {"training": 1.5, "total": 9.0}}
    config = {"output_dir": "figures/" + "deep/" * 40, "seed_list": list(range(40))}  # long values
    numbers = {"planes": [("plane_choice/filter_pca_" + "x" * 120, 0.5)]}
    return index_page.write_index(out / "index.html", "Loss landscape of this run", "moons, 400 samples",
                         [(name, name) for name in sizes], [("mlp_descent.gif", "descent")],
                         [("mlp_3d.html", "3d")], numbers, config, summary=summary)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def open_page(browser, path, width=1200, height=800):
    """Load a page from file://, recording console errors and every request it makes."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, errors, requests


def distinct_colours(png_bytes, tmp_path) -> int:
    shot = tmp_path / "shot.png"
    shot.write_bytes(png_bytes)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(np.int32)
    return len(np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]))


def test_3d_pages_render_offline_with_webgl(browser, pages, tmp_path):
    for path in pages[:2]:
        page, errors, requests = open_page(browser, path)
        page.wait_for_selector(".js-plotly-plot .gl-container canvas", timeout=20000)
        page.wait_for_timeout(500)
        assert page.evaluate("""() => [...document.querySelectorAll('canvas')].some(c => {
            try { return !!(c.getContext('webgl2') || c.getContext('webgl')); } catch (e) { return false; } })""")
        assert "WebGL is not supported" not in page.content()
        assert not errors, errors
        assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests
        assert distinct_colours(page.screenshot(), tmp_path) > 200  # a rendered surface, not a blank page
        page.close()


def test_the_epoch_slider_moves_the_marker(browser, pages):
    page, errors, _ = open_page(browser, pages[0])
    page.wait_for_selector(".js-plotly-plot .gl-container canvas", timeout=20000)
    marker = "() => { const d = document.querySelector('.js-plotly-plot').data[3]; return [d.x[0], d.y[0]]; }"
    before = page.evaluate(marker)
    page.locator(".slider-container .slider-grip, .slider-container .slider-rail-touch-rect").first.wait_for()
    rail = page.locator(".slider-rail-touch-rect").first.bounding_box()
    page.mouse.click(rail["x"] + 3, rail["y"] + rail["height"] / 2)  # the first epoch
    page.wait_for_function(f"() => {{ const m = ({marker})(); return m[0] !== {before[0]}; }}", timeout=10000)
    after = page.evaluate(marker)
    assert after != before and after[0] == pytest.approx(-0.9, abs=1e-3)  # the path's first point
    assert not errors, errors
    page.close()


def test_index_page_has_no_external_requests(browser, pages):
    page, errors, requests = open_page(browser, pages[2])
    page.wait_for_load_state("load")
    assert "mlp_3d.html" in page.content() and not errors
    assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests
    page.close()


def box_of(page, selector) -> dict:
    return page.locator(selector).first.bounding_box()


def test_the_hero_figure_and_findings_open_the_page_above_the_fold(browser, results_page):
    page, errors, _ = open_page(browser, results_page, width=1400, height=900)
    page.wait_for_load_state("load")
    hero = page.locator("img").first
    assert hero.get_attribute("src") == "mlp_3d.png"  # the preferred hero, not the first file listed
    box = hero.bounding_box()
    assert hero.is_visible() and 0 <= box["y"] < 900 and box["height"] > 300
    assert page.evaluate("() => document.querySelector('img').naturalWidth") == 1275  # it loaded
    assert box_of(page, ".findings li")["y"] < 900  # the first finding is on the first screen too
    wide, square = box_of(page, "figure.wide"), box_of(page, ".grid figure:not(.wide)")
    grid = box_of(page, ".grid")
    assert wide["width"] == pytest.approx(grid["width"], abs=2) and square["width"] < 0.6 * grid["width"]
    assert not errors, errors
    page.close()


def test_the_results_page_fits_a_phone_without_sideways_scrolling(browser, results_page):
    page, errors, _ = open_page(browser, results_page, width=390, height=844)
    page.wait_for_load_state("load")
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")  # long values too
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth]")
    assert max(widths) <= 390, widths
    assert box_of(page, "img")["width"] <= 390
    assert not errors, errors
    page.close()


def test_a_3d_page_links_back_to_the_index(browser, pages):
    page, errors, _ = open_page(browser, pages[0])
    page.click("nav a")
    page.wait_for_url("**/index.html")
    assert "mlp_3d.html" in page.content() and not errors
    page.close()


def test_a_3d_page_on_a_phone_moves_its_legend_under_the_plot_and_back(browser, pages):
    """Under interactive_plots.NARROW_PX the legend lies under the plot and the colour bar is shorter; wider,
    the figure's own layout returns; no sideways scrolling at either width."""
    page, errors, _ = open_page(browser, pages[1], width=390, height=844)
    page.wait_for_selector(".js-plotly-plot .gl-container canvas", timeout=20000)
    state = "() => { const gd = document.querySelector('.js-plotly-plot'), bar = gd._fullData[0].colorbar; " \
            "return [gd._fullLayout.legend.orientation, gd._fullLayout.margin.b, bar.len, bar.thickness, " \
            "document.documentElement.scrollWidth, gd._fullLayout.scene.camera.eye]; }"
    narrow = page.evaluate(state)
    assert narrow[0] == "h" and narrow[2] < 0.75 and narrow[4] <= 390
    wide_eye = {k: v / ip.NARROW_ZOOM for k, v in narrow[5].items()}  # the camera steps back
    assert np.hypot(wide_eye["x"], wide_eye["y"]) == pytest.approx(ip.EYE)
    for width in (1200, 390, 1200, 390, 1200):  # back and forth: each width always gets its own layout
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_timeout(400)
        now = page.evaluate(state)
        assert now[4] <= width
        if width == 390:
            assert now[:4] == narrow[:4] and now[5] == pytest.approx(narrow[5])
        else:
            assert now[0] == "v" and now[2] == 0.75 and now[3] == 30 and now[1] < narrow[1]
            assert now[5] == pytest.approx(wide_eye)
    assert not errors, errors
    page.close()
