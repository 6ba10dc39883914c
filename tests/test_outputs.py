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


# ---------------------------------------------------------------- the output folder: one line, never a traceback

import errno  # noqa: E402
import os  # noqa: E402
from unittest import mock  # noqa: E402

import outputs  # noqa: E402
from outputs import OutputError, check_output_dir, write_bytes  # noqa: E402


def _one_line(fn, *args) -> str:
    with pytest.raises(OutputError) as err:
        fn(*args)
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_a_deep_folder_is_made_without_recursion(tmp_path):
    deep = tmp_path.joinpath(*["d"] * 1200)  # os.makedirs recurses once per level: RecursionError at ~1000
    try:
        assert check_output_dir(deep) == deep and deep.is_dir()
    finally:  # shutil.rmtree (pytest's clean-up) recurses too: remove the levels one by one, innermost first
        for level in [deep, *deep.parents]:
            if level == tmp_path:
                break
            if level.is_dir():
                level.rmdir()


def test_a_path_too_long_for_the_system_is_one_line(tmp_path):
    assert "too long" in _one_line(check_output_dir, str(tmp_path / ("d/" * 2100)))
    assert "too long" in _one_line(check_output_dir, str(tmp_path / ("x" * 300)))  # one name over NAME_MAX


def test_a_non_utf8_name_is_named_with_repr(tmp_path):
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/fig\xff")
    message = _one_line(check_output_dir, name)
    assert "fig\\udcff" in message and "UTF-8" in message
    message.encode("utf-8")  # the line itself can be printed


def test_a_file_where_the_folder_goes(tmp_path):
    (tmp_path / "blocker").write_text("x")
    assert "'" + str(tmp_path / "blocker") + "' is a file" in _one_line(check_output_dir, tmp_path / "blocker" / "f")
    assert "is a file" in _one_line(check_output_dir, tmp_path / "blocker")


@pytest.mark.parametrize("in_the_way", ["mlp_3d.png", "summary.json", "index.html", "assets/plotly.min.js"])
def test_a_folder_where_an_output_file_goes(tmp_path, in_the_way):
    (tmp_path / in_the_way).mkdir(parents=True)
    assert in_the_way.split("/")[-1] in _one_line(check_output_dir, tmp_path)


def test_a_file_where_the_assets_folder_goes(tmp_path):
    (tmp_path / "assets").write_text("x")
    assert "assets" in _one_line(check_output_dir, tmp_path)


def test_a_folder_in_the_way_of_a_write_is_left_alone(tmp_path):
    (tmp_path / "summary.json" / "inside").mkdir(parents=True)
    assert "summary.json" in _one_line(write_json, tmp_path / "summary.json", {"a": 1})
    assert [p.name for p in tmp_path.rglob("*")] == ["summary.json", "inside"]


def test_stale_partial_folders_are_removed_too(tmp_path):
    (tmp_path / ".partial-x" / "sub").mkdir(parents=True)
    (tmp_path / ".partial-x" / "sub" / "f").write_bytes(b"x")
    (tmp_path / "assets" / ".partial-y").mkdir(parents=True)
    assert remove_partial_files(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["assets"] and not any((tmp_path / "assets").iterdir())


@pytest.mark.parametrize("where", ["body", "rename"])
def test_a_full_disk_is_one_line_naming_the_folder_and_leaves_no_file(tmp_path, where):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    target = tmp_path / "figs" / "mlp_3d.png"
    with mock.patch.object(outputs.os, "replace", side_effect=full if where == "rename" else os.replace):
        with pytest.raises(OutputError) as err:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half a fi")
                if where == "body":
                    raise full
    message = str(err.value)
    assert "no space left" in message and repr(str(tmp_path / "figs")) in message and "\n" not in message
    assert list((tmp_path / "figs").iterdir()) == []  # no temp file, nothing under the final name


def test_any_write_error_is_one_line(tmp_path):
    with mock.patch.object(outputs.tempfile, "mkstemp", side_effect=PermissionError(errno.EACCES, "Permission denied")):
        assert "Permission denied" in _one_line(check_output_dir, tmp_path / "out")
        assert "Permission denied" in _one_line(write_bytes, tmp_path / "out" / "a.js", b"x")


def test_write_bytes_is_atomic_and_exact(tmp_path):
    data = bytes(range(256)) * 3
    assert write_bytes(tmp_path / "assets" / "plotly.js", data).read_bytes() == data
    assert [p.name for p in (tmp_path / "assets").iterdir()] == ["plotly.js"]


def test_output_error_is_a_config_error():
    assert issubclass(OutputError, outputs.ConfigError)


def test_the_cache_folder_is_checked_the_same_way(tmp_path):
    (tmp_path / "cache").write_text("x")
    assert _one_line(check_output_dir, tmp_path / "cache", "cache_dir").startswith("cache_dir ")
