"""Forked worker processes for drawing: results inherited at the fork, and no worker outliving its parent."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # from linux/prctl.h


def in_workers(fn, jobs) -> list:
    """[fn(*job) for job in jobs], one forked process per job when there are several (the children
    inherit the imports). Each worker dies with its parent: a killed run leaves no renderer behind."""
    if len(jobs) == 1:
        return [fn(*jobs[0])]
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("fork"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        return list(pool.map(fn, *zip(*jobs)))


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when `parent` dies, even by SIGKILL, which runs no clean-up.

    Linux sends the signal itself (prctl PR_SET_PDEATHSIG); a thread that polls the parent's pid is
    the fallback elsewhere, and catches a parent that died before prctl was set.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # no prctl on this system: the watchdog alone
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, period_s: float = 0.5) -> None:
    while os.getppid() == parent:  # an orphan is adopted by another process: its parent pid changes
        time.sleep(period_s)
    os.kill(os.getpid(), signal.SIGKILL)
