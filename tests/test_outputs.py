"""Atomic writes: an interrupted write leaves the old file whole and no partial file behind."""
import json

import pytest

from outputs import atomic_path, remove_partial_files, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "mlp_3d.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a fi")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp_3d.png"]


def test_a_finished_write_replaces_the_file(tmp_path):
    write_json(tmp_path / "summary.json", {"loss": 0.5})
    write_json(tmp_path / "summary.json", {"loss": 0.25})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"loss": 0.25}


def test_partial_files_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "assets").mkdir()
    for name in (".partial-mlp_3d.abc.png", "assets/.partial-plotly.x.js", "keep.png"):
        (tmp_path / name).write_bytes(b"x")
    assert remove_partial_files(tmp_path) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.png"]
