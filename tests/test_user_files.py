"""Bad data and model files from the command line: one line naming the file and the problem, exit code 2."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import main

ROOT = Path(__file__).resolve().parents[1]


def _one_line(code, capsys, *words):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def _run(tmp_path, *args):
    return main.main(["--quick", f"--output_dir={tmp_path / 'out'}", f"--cache_dir={tmp_path / 'cache'}", *args])


BAD_DATA = {  # file name, content, words the one line must hold
    "nan.csv": ("1,2,0\n3,nan,1\n5,6,0\n", ["nan.csv", "row"]),
    "text.csv": ("1,2,0\n3,abc,1\n5,6,0\n", ["text.csv", "abc"]),
    "header_only.csv": ("a,b,label\n", ["header_only.csv"]),
    "one_class.csv": ("1,2,0\n3,4,0\n5,6,0\n", ["one_class.csv", "single class"]),
    "binary_junk.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", ["binary_junk.csv"]),
    "text.npz": ("X,y\n1,2\n", ["text.npz"]),
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_a_bad_data_file_is_one_line(name, tmp_path, capsys):
    content, words = BAD_DATA[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _one_line(_run(tmp_path, f"--data={path}"), capsys, *words)


def test_npz_problems_are_one_line(tmp_path, capsys):
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, X=np.zeros((5, 2)))
    _one_line(_run(tmp_path, f"--data={no_y}"), capsys, "no_y.npz", "y")
    lengths = tmp_path / "lengths.npz"
    np.savez(lengths, X=np.zeros((5, 2)), y=np.array([0, 1, 0]))
    _one_line(_run(tmp_path, f"--data={lengths}"), capsys, "lengths.npz")
    floats = tmp_path / "floats.npz"
    np.savez(floats, X=np.random.default_rng(0).normal(size=(20, 2)), y=np.linspace(0, 1, 20))
    _one_line(_run(tmp_path, f"--data={floats}", "--loss=ce"), capsys, "floats.npz", "integer")


BAD_MODELS = {
    "raises.py": ("raise RuntimeError('broken on purpose')\n", "RuntimeError"),
    "not_module.py": ("def build(n_features, n_classes, seed):\n    return 42\n", "nn.Module"),
    "no_params.py": ("from torch import nn\ndef build(n_features, n_classes, seed):\n    return nn.ReLU()\n",
                     "parameters"),
    "wrong_shape.py": ("from torch import nn\ndef build(n_features, n_classes, seed):\n"
                       "    return nn.Linear(n_features, 3)\n", "expected outputs"),
    "non_finite.py": ("import torch\nfrom torch import nn\nclass M(nn.Module):\n    def __init__(self, d):\n"
                      "        super().__init__()\n        self.w = nn.Parameter(torch.full((d,), float('nan')))\n"
                      "    def forward(self, x):\n        return x @ self.w\n"
                      "def build(n_features, n_classes, seed):\n    return M(n_features)\n", "finite"),
}


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_a_bad_model_file_is_one_line(name, tmp_path, capsys):
    source, word = BAD_MODELS[name]
    path = tmp_path / name
    path.write_text(source)
    _one_line(_run(tmp_path, f"--model={path}:build"), capsys, word)


def test_a_real_process_with_a_bad_data_file_and_a_bad_model_file(tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("1,2,0\n3,nan,1\n")
    model = tmp_path / "bad_model.py"
    model.write_text(textwrap.dedent("""
        raise ImportError("this file cannot be imported")
    """))
    for arg in (f"--data={data}", f"--model={model}:build"):
        proc = subprocess.run([sys.executable, "main.py", "--quick", arg, f"--output_dir={tmp_path / 'out'}",
                               f"--cache_dir={tmp_path / 'cache'}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert Path(arg.split("=", 1)[1].split(":")[0]).name in err
