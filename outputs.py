"""Output files: one place that names them and writes them atomically."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


TEMP_PREFIX = ".partial-"  # names of files still being written


def remove_partial_files(out_dir) -> int:
    """Delete what a killed run left half-written (a kill -9 skips the clean-up), so a new run starts clean."""
    stale = list(Path(out_dir).glob(f"{TEMP_PREFIX}*")) + list(Path(out_dir).glob(f"*/{TEMP_PREFIX}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def output_path(out_dir, name: str) -> Path:
    """The path of output `name` (e.g. "mlp_3d.png") in out_dir: names are short and stable."""
    return Path(out_dir) / name


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` in one step.

    An interrupted write (error or Ctrl-C) leaves the old file untouched and no truncated one.
    The temporary name keeps the suffix, so writers that look at it (matplotlib, imageio) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(value):
    """numpy and torch scalars/arrays become plain numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
