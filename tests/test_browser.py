"""The pages in a real headless Chromium: they render offline, WebGL works, the epoch slider moves the marker.

Skips without Chromium or Playwright, except under CI (CI=true), where .ci/run installs Chromium
and a skip would hide a broken page: there it fails instead.
"""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import interactive_plots as ip
from loss_surface import Surface
from projection import Plane

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu-sandbox",
        "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]


def require_browser():
    reason = None
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        reason = "Playwright for Python is not installed (pip install -r requirements-test.txt)"
    if CHROMIUM is None:
        reason = "no Chromium on this machine (apt-get install chromium)"
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run under CI: {reason}")
    if reason:
        pytest.skip(reason)


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
    index = ip.index_page(out / "index.html", "run", "sub", [], [], [("mlp_3d.html", "3d")], {"n": [("x", 1.0)]}, {})
    return surface_page, runs_page, index


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def open_page(browser, path):
    """Load a page from file://, recording console errors and every request it makes."""
    page = browser.new_page(viewport={"width": 1200, "height": 800})
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
