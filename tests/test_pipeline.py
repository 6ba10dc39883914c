"""End to end: `main.py --quick` into a fresh folder writes every output, each one valid."""
import json
import math
from html.parser import HTMLParser

import pytest
from PIL import Image

import main

PNGS = ["logistic_3d.png", "mlp_3d.png", "logistic_contour.png", "mlp_contour.png", "mlp_multi_seed.png",
        "mlp_curvature.png", "edge_of_stability.png", "mlp_pca_vs_isomap.png", "optimizer_comparison.png",
        "lr_sensitivity.png", "interpolation_1d.png", "mlp_eigen_ratio.png"]
GIFS = ["logistic_descent.gif", "mlp_descent.gif", "optimizer_race.gif"]
PAGES = ["logistic_3d.html", "mlp_3d.html", "mlp_multi_seed.html", "optimizer_comparison.html", "index.html"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    assert main.main(["--quick", f"--output_dir={out}"]) == 0
    return out


def all_numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from all_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from all_numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_every_png_and_gif_reopens(quick_run):
    for name in PNGS:
        with Image.open(quick_run / name) as image:
            assert image.format == "PNG" and min(image.size) > 300, name
    for name in GIFS:
        with Image.open(quick_run / name) as image:
            assert image.format == "GIF" and image.n_frames >= 2 and image.info.get("loop") == 0, name


def test_every_page_parses_and_uses_the_local_plotly(quick_run):
    for name in PAGES:
        text = (quick_run / name).read_text(encoding="utf-8")
        HTMLParser().feed(text)
        assert "cdn.plot.ly" not in text and "<html" in text.lower(), name
    assert list((quick_run / "assets").glob("plotly-*.min.js"))
    index = (quick_run / "index.html").read_text(encoding="utf-8")
    for name in PNGS + GIFS + PAGES[:-1]:
        assert name in index, f"index.html does not show {name}"


def test_summary_holds_finite_numbers_that_agree_with_the_run(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    numbers = list(all_numbers(summary))
    assert numbers and all(math.isfinite(x) for x in numbers)
    assert len(summary["runs"]["mlp"]) == 3 and summary["config"]["epochs"] == 30
    for run in summary["runs"]["logistic"]:
        assert run["final_loss"] < run["initial_loss"]
    assert summary["curvature"]["logistic"]["lambda_min_lowest"] >= -1e-6  # convex
    assert set(summary["timings_s"]) >= {"training", "surfaces", "curvature", "figures", "animations", "html"}
    assert not list(quick_run.glob(".*.png")) and not list(quick_run.glob(".*.tmp*"))  # no temporary leftovers


def test_skip_and_only_limit_the_outputs(tmp_path):
    assert main.main(["--quick", "--only=interpolation", f"--output_dir={tmp_path}"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interpolation_1d.png", "summary.json"]
