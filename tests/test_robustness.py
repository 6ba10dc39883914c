"""Cost known before it is spent (budget.py), and the output-folder cases end to end: exit 2, one line."""
import dataclasses
import errno
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

import budget
from config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
SPEED = budget.Speed(flops_per_s=1e10, op_seconds=3e-6)  # fixed, so the tests do not depend on this machine
PLENTY = 64e9  # bytes a test machine "has"


def cost(**changes) -> budget.Estimate:
    return budget.estimate(dataclasses.replace(Config(), **changes), speed=SPEED)


# ---------------------------------------------------------------- budget.estimate

@pytest.mark.parametrize("field, small, large", [
    ("epochs", 100, 400), ("hidden_dim", 16, 64), ("n_samples", 500, 2000), ("vis_resolution", 20, 80),
    ("seed_list", (0, 1), (0, 1, 2, 3, 4, 5)), ("lr_list", (0.1,), (0.1, 0.2, 0.3)), ("gif_frames", 10, 100),
    ("curvature_resolution", 0, 21)])
def test_the_estimate_grows_with_every_size(field, small, large):
    low, high = cost(**{field: small}), cost(**{field: large})
    assert high.seconds > low.seconds and high.peak_bytes >= low.peak_bytes


def test_trajectory_memory_is_runs_x_checkpoints_x_weights():
    cfg = dataclasses.replace(Config(), epochs=99, seed_list=(0, 1), lr_list=(0.1,), only=("lr_sensitivity",))
    D, d = budget.mlp_params(10, cfg.hidden_dim), 10
    # two seeds of the MLP and of logistic regression, one learning-rate run; 100 checkpoints each, float32
    expected = 4 * 100 * (3 * D + 2 * (d + 1))
    assert budget.estimate(cfg, speed=SPEED).parts["trajectories"].bytes == expected


def test_an_exact_hessian_costs_d_squared():
    small, large = (cost(hessian_method="exact", hidden_dim=h).parts["curvature"].bytes for h in (100, 400))
    D_small, D_large = budget.mlp_params(10, 100), budget.mlp_params(10, 400)
    assert large / small == pytest.approx((D_large / D_small) ** 2, rel=0.05)
    auto, exact = (cost(hidden_dim=3000, hessian_method=m).parts["curvature"].bytes for m in ("auto", "exact"))
    assert auto < exact / 10  # auto turns to Lanczos above 2000 weights: vectors, not a (D, D) matrix


def test_sizes_from_the_loaded_data_and_model_replace_the_configs():
    guess, real = cost(), budget.estimate(Config(), n_samples=1000, n_features=10, n_params=50_000, speed=SPEED)
    assert real.parts["trajectories"].bytes > guess.parts["trajectories"].bytes
    assert budget.data_sizes(dataclasses.replace(Config(), dataset="breast_cancer")) == (569, 30)


def test_skipped_groups_cost_nothing():
    skipped = cost(skip=("gifs", "isomap", "curvature", "eigen_ratio", "spectrum"))
    assert all(skipped.parts[p].seconds == 0 for p in ("gifs", "embeddings", "curvature"))


# ---------------------------------------------------------------- budget.check

def test_a_huge_hidden_layer_is_refused_naming_the_knob():
    with pytest.raises(ConfigError) as err:
        budget.check(cost(hidden_dim=100_000_000), available_bytes=PLENTY)
    assert "hidden_dim" in str(err.value) and "\n" not in str(err.value) and "memory" in str(err.value)


def test_an_exact_hessian_too_big_names_hessian_method():
    with pytest.raises(ConfigError, match="hessian_method"):
        budget.check(cost(hidden_dim=20_000, hessian_method="exact", epochs=10, seed_list=(0,)),
                     available_bytes=PLENTY)


def test_many_seeds_name_isomap():
    with pytest.raises(ConfigError, match="isomap"):
        budget.check(cost(seed_list=tuple(range(1000))), available_bytes=16e9)


def test_a_huge_epoch_count_gives_one_warning_line(capsys):
    line = budget.check(cost(epochs=100_000, seed_list=(0,)), available_bytes=PLENTY)
    assert line.startswith("warning: ") and "\n" not in line and "epochs" in line
    assert capsys.readouterr().err.strip() == line


def test_the_defaults_pass_quietly(capsys):
    assert budget.check(cost(), available_bytes=PLENTY) is None
    assert capsys.readouterr().err == ""


def test_the_machine_is_measured():
    speed = budget.measure_speed(1000, 10, 32)
    assert speed.flops_per_s > 1e6 and 0 < speed.op_seconds < 0.01
    assert budget.available_memory() > 1e8
    assert budget.estimate(Config()).seconds > 0  # measured here, on one thread


# ---------------------------------------------------------------- end to end: exit 2, one line, no traceback

def run_main(*args, env=None):
    return subprocess.run([sys.executable, "main.py", "--quick", "--only=interpolation", *args], cwd=ROOT,
                          capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
                          timeout=300)


def assert_one_line_exit_2(proc, *words):
    err = proc.stderr.decode("utf-8", "replace").strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err


def test_e2e_deep_output_dir(tmp_path):
    assert_one_line_exit_2(run_main(f"--output_dir={tmp_path / ('d/' * 2100)}"), "too long")


def test_e2e_non_utf8_output_dir(tmp_path):
    proc = subprocess.run([sys.executable.encode(), b"main.py", b"--quick",
                           b"--output_dir=" + os.fsencode(str(tmp_path)) + b"/fig\xff"], cwd=ROOT,
                          capture_output=True, timeout=300)
    assert_one_line_exit_2(proc, "output_dir", "udcff")


@pytest.mark.parametrize("in_the_way", ["mlp_3d.png", "summary.json"])
def test_e2e_folder_where_an_output_file_goes(tmp_path, in_the_way):
    (tmp_path / in_the_way).mkdir()
    assert_one_line_exit_2(run_main(f"--output_dir={tmp_path}"), in_the_way)


def test_e2e_file_where_the_assets_folder_goes(tmp_path):
    (tmp_path / "assets").write_text("x")
    assert_one_line_exit_2(run_main(f"--output_dir={tmp_path}"), "assets")


def test_e2e_file_where_the_output_folder_goes(tmp_path):
    (tmp_path / "figures").write_text("x")
    assert_one_line_exit_2(run_main(f"--output_dir={tmp_path / 'figures'}"), "is a file")


@pytest.mark.parametrize("arg", ["--vis_resolution=100000", "--lr=1e308", "--noise=nan", "--epochs", "--bogus=1"])
def test_e2e_bad_values(arg, tmp_path):
    assert_one_line_exit_2(run_main(arg, f"--output_dir={tmp_path}"), arg.split("=")[0][2:])


def test_e2e_full_disk_is_one_line(tmp_path, capsys):
    """A disk that fills while the run writes: main prints one line and exits 2, no file under a final name."""
    import main
    import outputs
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch.object(outputs.os, "replace", side_effect=full):
        code = main.main(["--quick", "--only=interpolation", "--no-cache", f"--output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no space left" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_e2e_stale_partial_folder_is_cleaned_and_the_run_finishes(tmp_path):
    (tmp_path / ".partial-mlp_3d.abc.png").mkdir()
    proc = run_main(f"--output_dir={tmp_path}", "--no-cache")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert not list(tmp_path.glob(".partial-*")) and (tmp_path / "summary.json").is_file()
