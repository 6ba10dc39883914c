"""The one place computation stages are cached: joblib.Memory keyed by a stage's inputs and its code."""
from __future__ import annotations

import hashlib
import importlib
import logging
import os
from pathlib import Path


class StageCache:
    """The one place stages are cached: joblib.Memory keyed by the stage's inputs and the code it runs.

    A damaged entry (truncated, or pickled by another version) is recomputed with a one-line
    warning, never trusted; a folder that cannot be written means computing without the cache.
    Concurrent runs may share the folder: joblib writes each entry to a temporary name and renames it.
    """

    def __init__(self, folder: str | None):
        self.memory, self.hits, self.misses = None, 0, 0
        self._seen = {}  # this run's results by key, when there is no folder
        self.served = []  # the full keys of every stage served this run: what the results are a function of
        if folder:
            import joblib
            try:
                self.memory = joblib.Memory(folder, verbose=0)
            except OSError as err:
                print(f"warning: cache folder {folder!r} cannot be used ({err.strerror}); computing without it")

    def __call__(self, stage: str, key: dict, modules: tuple, compute):
        full_key = {"stage": stage, "key": key, "code": code_version(modules)}
        self.served.append(full_key)
        if self.memory is None:  # no folder: still compute a stage asked for twice in one run only once
            import joblib
            name = joblib.hash(full_key)
            if name not in self._seen:
                self._seen[name] = compute()
            return self._seen[name]
        cached = self.memory.cache(_computed, ignore=["compute"])
        complaints = _JoblibComplaints()
        try:
            hit = cached.check_call_in_cache(full_key, None)
            result = cached(full_key, compute)
        except OSError as err:  # the folder turned read-only or full: compute, store nothing
            print(f"warning: cache folder not writable ({err.strerror}); computing {stage} without it")
            self.memory = None
            return compute()
        finally:
            complaints.close()
        if complaints.records:  # joblib could not load the entry and recomputed it
            hit = False
            print(f"warning: a damaged cache entry of stage '{stage}' was recomputed")
        self.hits, self.misses = self.hits + hit, self.misses + (not hit)
        return result

    def drawn(self, stage: str, key: dict, out, draw) -> tuple:
        """draw() -> (paths written under folder out, a picklable extra), cached as the files' bytes: a rerun
        whose results and drawing inputs are unchanged writes the same bytes again (atomically, into its own
        out) without drawing.

        The key is every stage served so far this run (the results are a function of those), the
        drawing inputs in `key` and the whole project's code. Without a cache folder it just draws.
        """
        if self.memory is None:
            return draw()
        drew = []

        def compute():
            paths, extra = draw()
            drew.append(True)
            return [(os.path.relpath(p, out), Path(p).read_bytes()) for p in paths], extra
        counts = self.hits, self.misses  # they count computation: drawing again is not recomputing
        files, extra = self(stage, {"computed": self.served[:], "draw": key}, PROJECT, compute)
        self.hits, self.misses = counts
        self.served.pop()  # files are not results: what is drawn next does not depend on them
        if not drew:
            from outputs import atomic_path
            for name, data in files:
                with atomic_path(Path(out) / name) as tmp:
                    Path(tmp).write_bytes(data)
        return [Path(out) / name for name, _ in files], extra


class _JoblibComplaints(logging.Handler):
    """Collects what joblib logs (a failed load) instead of letting it print a traceback."""

    def __init__(self):
        super().__init__()
        self.records, self.logger = [], logging.getLogger("joblib")
        self.propagate = self.logger.propagate
        self.logger.addHandler(self)
        self.logger.propagate = False

    def emit(self, record):
        self.records.append(record)

    def close(self):
        self.logger.removeHandler(self)
        self.logger.propagate = self.propagate
        super().close()


def _computed(key, compute):
    return compute()


_CODE: dict = {}


PROJECT = ("*",)  # code_version's name for every module of the project: drawing reaches most of them


def code_version(modules: tuple) -> str:
    """A hash of the source files of `modules`: a change to their code invalidates the stage."""
    if modules not in _CODE:
        digest = hashlib.sha256()
        files = sorted(Path(__file__).parent.glob("*.py")) if modules == PROJECT else \
            [Path(importlib.import_module(name).__file__) for name in modules]
        for file in files:
            digest.update(file.read_bytes())
        _CODE[modules] = digest.hexdigest()[:16]
    return _CODE[modules]


def file_version(path: str) -> str:
    """A hash of a user's file (data or model), so editing it invalidates what was computed from it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""
