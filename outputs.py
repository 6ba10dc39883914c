"""Output files: one place that names them, checks their folder and writes them atomically."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from config import ConfigError

TEMP_PREFIX = ".partial-"  # names of files still being written
ASSET_DIR = "assets"  # plotly.js beside the HTML pages
OUTPUT_SUFFIXES = (".png", ".gif", ".html", ".json", ".js")  # a folder with one of these names is in the way
NAME_ROOM = 128  # bytes kept free under PATH_MAX for "assets/.partial-<name>.<random>.png"


class OutputError(ConfigError):
    """The output folder or one of its files cannot be written: one line, exit code 2 (main prints it)."""


def check_output_dir(path, field: str = "output_dir") -> Path:
    """Create the output folder and prove that files can be written in it; raise OutputError otherwise.

    Catches before any work starts: a name that is not UTF-8, a path too long or too deep for the
    system, a file where a folder should be (the folder itself, a parent, or `assets`), a folder
    where an output file goes (figures/mlp_3d.png/), and a folder without write permission.
    field names the config field in the message (check cache_dir the same way).
    """
    text = os.fspath(path)
    shown = f"{field} {_show(text)}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputError(f"{shown} is not a UTF-8 name: choose another folder") from None
    if not text or "\0" in text:
        raise OutputError(f"{shown} is not a folder name")
    limit = _path_max(text)
    if len(os.fsencode(os.path.abspath(text))) + NAME_ROOM > limit:
        raise OutputError(f"{shown} is too long: the system allows {limit} bytes per path, "
                          f"file names inside it included")
    folder = Path(text)
    make_folder(folder, f"{shown}: cannot create it")
    _probe(folder, f"{shown}: cannot write in it")
    _check_obstacles(folder, field)
    return folder


def make_folder(folder: Path, what: str = "") -> None:
    """mkdir -p without recursion (os.makedirs recurses once per missing level: a deep path overflows)."""
    what = what or f"cannot create folder {_show(folder)}"
    try:
        missing = [p for p in [folder, *folder.parents] if not p.is_dir()][::-1]  # outermost first
        for level in missing:
            try:
                level.mkdir()
            except FileExistsError:
                if not level.is_dir():
                    raise OutputError(f"{what}: {_show(level)} is a file, not a folder") from None
    except OSError as err:
        raise _error(what, err, folder) from None


def _probe(folder: Path, what: str) -> None:
    """Write and remove one empty file (named like a partial file, so a killed probe is cleaned up later)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise _error(what, err, folder) from None


def _check_obstacles(folder: Path, field: str) -> None:
    assets = folder / ASSET_DIR
    if assets.exists() and not assets.is_dir():
        raise OutputError(f"{field}: {_show(assets)} is a file where the assets folder goes: remove or rename it")
    for entry in [*folder.iterdir(), *(assets.iterdir() if assets.is_dir() else [])]:
        if entry.is_dir() and entry.suffix.lower() in OUTPUT_SUFFIXES and not entry.name.startswith(TEMP_PREFIX):
            raise OutputError(f"{field}: {_show(entry)} is a folder where an output file goes: remove or rename it")


def remove_partial_files(out_dir) -> int:
    """Delete files and folders a killed run left half-written (kill -9 skips the clean-up): a clean start."""
    stale = list(Path(out_dir).glob(f"{TEMP_PREFIX}*")) + list(Path(out_dir).glob(f"*/{TEMP_PREFIX}*"))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)


def output_path(out_dir, name: str) -> Path:
    """The path of output `name` (e.g. "mlp_3d.png") in out_dir: names are short and stable."""
    return Path(out_dir) / name


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` in one step.

    An interrupted write (error or Ctrl-C) leaves the old file untouched and no truncated one.
    An OSError while writing (full disk, no permission, a folder in the way) becomes one
    OutputError line naming the file and its folder; the temporary file is removed either way.
    The temporary name keeps the suffix, so writers that look at it (matplotlib, imageio) still work.
    """
    path = Path(path)
    tmp = None
    try:
        make_folder(path.parent)
        if path.is_dir():
            raise OutputError(f"cannot write {_show(path)}: a folder of that name is in the way (remove it)")
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; outputs get the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise _error(f"cannot write {_show(path)}", err, path.parent) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.remove(tmp)


def _error(what: str, err: OSError, folder) -> OutputError:
    """One line: what failed, why, and (for a full disk) which folder to free."""
    reason = err.strerror or type(err).__name__
    if err.errno == errno.ENOSPC:
        return OutputError(f"{what}: no space left on the device of {_show(folder)} (free some space or "
                           f"choose another folder)")
    if err.errno == errno.ENAMETOOLONG:
        return OutputError(f"{what}: the path or a name in it is too long for the system (choose a shorter path)")
    if isinstance(err, IsADirectoryError):
        return OutputError(f"{what}: a folder of that name is in the way (remove it)")
    if err.errno == errno.ENOENT and Path(folder).parent.is_dir():  # the parent is there: e.g. /proc, /sys
        return OutputError(f"{what}: the system does not take new files there (a virtual file system?); "
                           f"choose a folder on a disk")
    return OutputError(f"{what}: {reason}")


def _show(path) -> str:
    """A path as a quoted one-line repr (non-UTF-8 bytes and newlines escaped), cut when very long."""
    text = repr(os.fspath(path))
    return text if len(text) <= 120 else f"{text[:50]}...{text[-50:]} ({len(text)} characters)"


def _path_max(path: str) -> int:
    try:
        return os.pathconf(os.path.dirname(os.path.abspath(path)) or "/", "PC_PATH_MAX")
    except (OSError, ValueError):  # the parent does not exist yet, or no such limit is known
        return 4096


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    """Write bytes atomically (e.g. the plotly.js asset); errors are one OutputError line."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(value):
    """numpy and torch scalars/arrays become plain numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
