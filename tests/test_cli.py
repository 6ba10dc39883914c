"""The command line as a user meets it: one clear line and exit code 2 for every user error."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arg, field", [("--epochs=-3", "epochs"), ("--dataset=nope", "dataset"),
                                        ("--lr=abc", "lr"), ("--bogus=1", "bogus"),
                                        ("--vis_resolution=1", "vis_resolution"),
                                        ("--curvature_resolution=1", "curvature_resolution"),
                                        ("--seed_list=", "seed_list"), ("epochs=3", "epochs=3"),
                                        ("--lr=1e308", "lr"), ("--seed_list=1,1", "seed_list"),
                                        ("--threads=1000000", "threads"), ("--quick=yes", "quick")])
def test_bad_arguments_exit_2_with_one_line(arg, field, capsys, tmp_path):
    code = main.main([arg, f"--output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and field in err and "Traceback" not in err


def test_unwritable_output_folder_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main.main([f"--output_dir={blocker / 'figures'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "output_dir" in err and len(err.splitlines()) == 1


def test_a_real_process_prints_no_traceback():
    proc = subprocess.run([sys.executable, "main.py", "--epochs=-3"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "epochs" in proc.stderr


def test_help_lists_every_field(capsys):
    assert main.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("epochs", "lr", "vis_resolution", "seed_list", "direction_norm", "device", "output_dir"):
        assert f"--{name}=" in out


def test_key_space_value_reaches_the_same_check(capsys, tmp_path):
    assert main.main(["--epochs", "-3", f"--output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'epochs'" in err


def test_help_answers_before_torch_is_imported():
    code = "import sys, main; code = main.main(['--help']); print(code, 'torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "0 False"
    assert "--epochs=" in proc.stdout


def test_a_bad_flag_under_torchrun_is_said_once(capsys, tmp_path, monkeypatch):
    """Every rank parses the same flags: rank 0 says what is wrong, the others only exit with code 2."""
    for rank, lines in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        assert main.main(["--lr=-1", f"--output_dir={tmp_path}"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == lines


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("folder", ["/proc", "/proc/landscape"])
def test_a_folder_on_a_virtual_file_system_is_named_as_such(folder, capsys):
    """/proc answers 'No such file or directory' to a new file in a folder that exists: say why instead."""
    assert main.main([f"--output_dir={folder}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not take new files there" in err and "No such file" not in err
