"""A user's own model and data: from the command line (a model file and an npz) and from Python outside the repo."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--epochs=12", "--seed_list=0,1,2", "--vis_resolution=10", "--gif_frames=3", "--curvature_every=4",
         "--curvature_resolution=0", "--lr_list=0.5,1", "--skip=gifs,html,isomap"]


def test_cli_runs_the_example_model_on_an_npz_file(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "main.py", "--model=examples/my_model.py:build",
                           "--data=examples/blobs.npz", f"--output_dir={out}", f"--cache_dir={tmp_path / 'c'}",
                           *SMALL], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["loss"] == "ce" and summary["model"]["n_classes"] == 3
    assert summary["model"]["parameters"] > 0 and "Linear" in summary["model"]["description"]
    assert (out / "model_3d.png").exists() and (out / "model_multi_seed.png").exists()
    assert summary["runs"]["model"][0]["final_loss"] < summary["runs"]["model"][0]["initial_loss"]


def test_python_api_from_a_folder_outside_the_repository(tmp_path):
    script = tmp_path / "mine.py"
    (tmp_path / "models.py").write_text("raise ImportError('the user's own models.py must not be imported')\n")
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})  # the README's way in: the repository first on the path
        import numpy as np
        from torch import nn
        import main
        rng = np.random.default_rng(0)
        X = rng.normal(size=(120, 4))
        y = (X[:, 0] - X[:, 1] > 0).astype(int)
        net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1), nn.Flatten(0))
        summary = main.write_report(net, X, y, output_dir="report", epochs=10, seed_list=(0, 1, 2),
                                    vis_resolution=8, curvature_every=5, curvature_resolution=0,
                                    lr_list=(0.5, 1.0), skip=("gifs", "html", "isomap"))
        print(summary["model"]["loss"], summary["model"]["parameters"])
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "bce 37"
    assert (tmp_path / "report" / "model_3d.png").exists() and (tmp_path / "report" / "summary.json").exists()
