"""End to end: `main.py --quick` into a fresh folder writes every output, each one valid."""
import json
import math
from html.parser import HTMLParser

import pytest
from PIL import Image

import main

PNGS = ["logistic_3d.png", "mlp_3d.png", "logistic_contour.png", "mlp_contour.png", "mlp_multi_seed.png",
        "plane_choice.png", "sharpness.png", "hessian_spectrum.png",
        "mlp_curvature.png", "edge_of_stability.png", "mlp_pca_vs_isomap.png", "optimizer_comparison.png",
        "lr_sensitivity.png", "interpolation_1d.png", "mlp_eigen_ratio.png"]
GIFS = ["logistic_descent.gif", "mlp_descent.gif", "optimizer_race.gif"]
PAGES = ["logistic_3d.html", "mlp_3d.html", "optimizer_comparison.html", "index.html"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("figures")
    assert main.main(["--quick", f"--output_dir={out}", f"--cache_dir={cache_dir}"]) == 0
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


def test_summary_records_every_plane_run_and_pair(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    for name in ("logistic", "mlp", "optimizers", "lr_sensitivity", "three_minima", "seed 0",
                 "plane_choice/pca", "plane_choice/filter_pca", "plane_choice/random", "hessian_top2"):
        plane = summary["planes"][name]
        for numbers in plane["runs"].values():
            assert numbers["drawn"] in ("surface", "shadow", "partial") and numbers["gap_max"] >= 0
            assert 0 <= numbers["residual_mean"] <= 1
    for run in summary["runs"]["mlp"] + summary["runs"]["optimizers"]:
        assert run["grad_norm_final"] < run["grad_norm_initial"]
    assert len(summary["mode_connectivity"]) == 3  # every pair of the three seeds
    for pair in summary["mode_connectivity"].values():
        assert pair["barrier"] == pytest.approx(pair["max_loss"] - sum(pair["end_losses"]) / 2)
    # the three minima lie in their plane: drawn exactly there
    for numbers in summary["planes"]["three_minima"]["runs"].values():
        assert numbers["residual_mean"] < 1e-5 and numbers["gap_max"] < 1e-5


def test_a_drawing_knob_rerun_recomputes_nothing(quick_run, cache_dir, tmp_path):
    assert main.main(["--quick", f"--output_dir={tmp_path}", f"--cache_dir={cache_dir}", "--gif_frame_ms=120",
                      "--gif_frames=8"]) == 0
    first, again = (json.loads((d / "summary.json").read_text()) for d in (quick_run, tmp_path))
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] > 0
    assert again["planes"] == first["planes"] and again["runs"] == first["runs"]
    # the PNGs read no GIF knob: the same bytes, written again from the cache; the GIFs are drawn anew
    for name in ("mlp_3d.png", "plane_choice.png", "optimizer_comparison.png"):
        assert (tmp_path / name).read_bytes() == (quick_run / name).read_bytes(), name
    assert {info["frames"] for info in again["gifs"].values()} == {8}
    assert not any(info["from_cache"] for info in again["gifs"].values())
    # the same knobs once more: the GIFs' bytes and timings come from the run that drew them, and say so
    third = tmp_path / "again"
    assert main.main(["--quick", f"--output_dir={third}", f"--cache_dir={cache_dir}", "--gif_frame_ms=120",
                      "--gif_frames=8"]) == 0
    cached = json.loads((third / "summary.json").read_text())["gifs"]
    assert cached == {name: {**info, "from_cache": True} for name, info in again["gifs"].items()}
    assert (third / "mlp_descent.gif").read_bytes() == (tmp_path / "mlp_descent.gif").read_bytes()
    assert Image.open(tmp_path / "mlp_descent.gif").n_frames == 8


def test_only_gifs_keeps_the_full_summary(quick_run, cache_dir):
    before = json.loads((quick_run / "summary.json").read_text())
    assert main.main(["--quick", "--only=gifs", f"--output_dir={quick_run}", f"--cache_dir={cache_dir}"]) == 0
    after = json.loads((quick_run / "summary.json").read_text())
    assert set(after) >= set(before) and after["planes"].keys() >= before["planes"].keys()
    assert after["curvature"] == before["curvature"]


def test_skip_and_only_limit_the_outputs(tmp_path):
    assert main.main(["--quick", "--only=interpolation", f"--output_dir={tmp_path}",
                      f"--cache_dir={tmp_path / 'cache'}"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "interpolation_1d.png", "summary.json"]


def test_the_same_run_twice_gives_identical_files(quick_run, cache_dir, tmp_path):
    assert main.main(["--quick", f"--output_dir={tmp_path}", f"--cache_dir={cache_dir}", "--only=surfaces"]) == 0
    for name in ("mlp_3d.png", "logistic_contour.png"):
        assert (tmp_path / name).read_bytes() == (quick_run / name).read_bytes(), name
    again = json.loads((tmp_path / "summary.json").read_text())
    first = json.loads((quick_run / "summary.json").read_text())
    for group in ("mlp", "logistic"):
        assert again["runs"][group] == first["runs"][group] and again["planes"][group] == first["planes"][group]


def test_one_drawing_process_gives_the_two_processes_files(quick_run, cache_dir, tmp_path, monkeypatch):
    import gallery
    monkeypatch.setattr(gallery, "FIGURE_WORKERS", 1)  # quick_run drew its PNGs in two forked processes
    assert main.main(["--quick", f"--output_dir={tmp_path}", f"--cache_dir={cache_dir}", "--skip=gifs,html"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(PNGS)
    for name in PNGS:
        assert (tmp_path / name).read_bytes() == (quick_run / name).read_bytes(), name


def test_ctrl_c_stops_with_one_line_and_leaves_no_partial_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(main.__file__).parent
    proc = subprocess.Popen([sys.executable, "main.py", "--quick", "--no-cache", f"--output_dir={tmp_path}"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # interrupt once training is under way
        if "data" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: finished files are intact")
    assert "Traceback" not in err and not list(tmp_path.glob(".partial-*"))


def test_a_full_run_shows_only_its_own_figures_and_leads_with_its_model(quick_run, cache_dir, tmp_path):
    """Another model's figure left in the folder by an earlier run is not on this run's page."""
    Image.new("RGB", (40, 30)).save(tmp_path / "cnn_3d.png")
    assert main.main(["--quick", f"--output_dir={tmp_path}", f"--cache_dir={cache_dir}"]) == 0
    page = (tmp_path / "index.html").read_text()
    assert "cnn_3d.png" not in page
    hero = page[page.index("<section class='hero'>"):page.index("</section>")]
    assert "src='mlp_3d.png'" in hero
    # a partial run keeps showing what it left in place
    assert main.main(["--quick", "--only=html", f"--output_dir={tmp_path}", f"--cache_dir={cache_dir}"]) == 0
    assert "src='mlp_contour.png'" in (tmp_path / "index.html").read_text()
