"""Splitting grid points and checkpoints across torch.distributed ranks, and gathering the results."""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

TIMEOUT_ENV = "LANDSCAPE_TIMEOUT_S"  # seconds without a sign of life before a rank is declared gone
DEFAULT_TIMEOUT_S = 30.0  # a killed rank is named well inside a minute
STORE_PREFIX = "landscape"
PIECE_BYTES = 4 * 2 ** 20  # the store's server refuses values over 8 MiB: a longer note goes in pieces


class RankError(RuntimeError):
    """One rank failed or stopped responding; str() is one line that names it (rank None: unknown)."""

    def __init__(self, rank: int | None, message: str):
        super().__init__(message)
        self.rank = rank


@dataclass
class Ranks:
    """This process's place in the run: rank 0 of 1 when started without torchrun."""
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group
    timeout_s: float = DEFAULT_TIMEOUT_S


_ranks: Ranks | None = None
_link = None  # _Link while a process group is up
_ledger: dict = {}  # name -> {"items": [per rank], "seconds": [per rank]}


def setup(device="cpu", timeout_s: float | None = None) -> Ranks:
    """Join the torchrun group if this process was started by torchrun, else run as rank 0 of 1.

    gloo on CPU; on CUDA one group with gloo for CPU tensors and NCCL for CUDA ones, each rank
    on GPU LOCAL_RANK. Calling it again returns the same Ranks; after teardown() it starts a new
    run with an empty ledger.
    """
    global _ranks, _link
    if _ranks is not None:
        return _ranks
    _ledger.clear()
    device = torch.device(device)
    timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S) if timeout_s is None else timeout_s)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or "MASTER_ADDR" not in os.environ:
        _ranks = Ranks(0, 1, device, None, timeout_s)
        return _ranks
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    _ranks = Ranks(dist.get_rank(), dist.get_world_size(), device, backend, timeout_s)
    _link = _Link(_ranks)
    return _ranks


def teardown() -> None:
    """Leave the process group (if any); the ledger stays for the summary."""
    global _ranks, _link
    if _link is not None:
        _link.close()
        _link = None
        if dist.is_initialized():
            dist.destroy_process_group()
    _ranks = None


def current() -> Ranks:
    return _ranks if _ranks is not None else Ranks()


def is_writer() -> bool:
    """Only rank 0 (or the single process) writes files."""
    return current().rank == 0


def share_bounds(n_items: int, world_size: int, rank: int) -> tuple:
    """[start, stop) of rank's contiguous share: sizes differ by at most one, the larger ones first."""
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def share_sizes(n_items: int, world_size: int) -> list:
    return [stop - start for start, stop in (share_bounds(n_items, world_size, r) for r in range(world_size))]


def split_map(fn, items, *, name: str = ""):
    """fn(items), computed as fn on each rank's contiguous share and concatenated in item order.

    items: a sequence, tensor or array of N work items (grid points (N, 2), checkpoint indices).
    fn must return one row per item: a tensor or array with first axis N, a list of N values, or
    a tuple of those. Every rank returns the whole result. On one process this is just fn(items).
    Raises RankError on every rank when one rank's fn raised or a rank stopped responding.
    """
    ranks = current()
    if ranks.world_size > 1 and len(items) > 0:
        return _link.split_map(fn, items, name)
    # one process, or nothing to share out (every rank then computes the empty result itself)
    start = time.perf_counter()
    result = fn(items)
    _check_rows(result, len(items))
    _record(name, [len(items)] + [0] * (ranks.world_size - 1), [time.perf_counter() - start] * ranks.world_size)
    return result


def shares() -> list:
    """Each rank's work so far: items per call name and seconds spent in fn, one dict per rank."""
    # from the ledger itself: the summary may be written after teardown()
    world_size = len(next(iter(_ledger.values()))["items"]) if _ledger else current().world_size
    return [{"rank": r,
             "items": int(sum(v["items"][r] for v in _ledger.values())),
             "seconds": round(float(sum(v["seconds"][r] for v in _ledger.values())), 3),
             "work": {name: int(v["items"][r]) for name, v in _ledger.items()}}
            for r in range(world_size)]


def summary() -> dict:
    """summary.json's "ranks" entry (also after teardown())."""
    entries = shares()
    return {"world_size": len(entries), "shares": entries}


def _record(name: str, counts, seconds) -> None:
    entry = _ledger.setdefault(name, {"items": [0] * len(counts), "seconds": [0.0] * len(counts)})
    entry["items"] = [a + b for a, b in zip(entry["items"], counts)]
    entry["seconds"] = [a + b for a, b in zip(entry["seconds"], seconds)]


def _check_rows(result, n: int) -> None:
    parts = result if isinstance(result, tuple) else (result,)
    if not parts or any(not isinstance(p, (torch.Tensor, np.ndarray, list)) or len(p) != n for p in parts):
        raise TypeError(f"split_map: fn must return one row per item ({n}) as a tensor, array, list "
                        f"or a tuple of them, got {type(result).__name__}")


def _on_accelerator(result) -> bool:
    parts = result if isinstance(result, tuple) else (result,)
    return any(isinstance(p, torch.Tensor) and p.device.type != "cpu" for p in parts)


def _to_cpu(result):
    """What travels between ranks: notes in the store are pickled from CPU memory."""
    if isinstance(result, tuple):
        return tuple(_to_cpu(r) for r in result)
    return result.cpu() if isinstance(result, torch.Tensor) else result


def _concat(parts: list, device: torch.device):
    """Per-rank results (None for an empty share) joined in rank order; tensors moved to device."""
    parts = [p for p in parts if p is not None]
    if isinstance(parts[0], tuple):
        return tuple(_concat([p[k] for p in parts], device) for k in range(len(parts[0])))
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts).to(device)
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [row for p in parts for row in p]


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _pickled(note: tuple) -> bytes:
    """A note as the store holds it; a result that cannot be pickled becomes this rank's failure."""
    try:
        return pickle.dumps(note)
    except Exception as err:
        return pickle.dumps((*note[:2], "error", f"its result cannot be sent to the other ranks ({_one_line(err)})",
                             *note[4:]))


class _Link:
    """The ranks' shared state in torchrun's store: heartbeats, and each call's notes (results or failures)."""

    def __init__(self, ranks: Ranks):
        self.ranks = ranks
        self.calls = 0
        self.read = 0  # the last call whose notes this rank has read (calls: the last it made)
        self.timeout_s = ranks.timeout_s
        run = f"{os.environ.get('TORCHELASTIC_RUN_ID', 'local')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        self.prefix = f"{STORE_PREFIX}/{run}"
        # rank 0 hosts the store unless torchrun's agent does: then rank 0 gone = store gone
        self.store_on_rank0 = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
        self.store = self._connect()
        self.stop = threading.Event()
        self.beat = threading.Thread(target=self._beat, args=(self._connect(),), daemon=True)
        self.beat.start()
        self.previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self.previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _connect(self):
        return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                             timeout=timedelta(seconds=self.timeout_s))

    def close(self) -> None:
        """Stop beating, say so in the store, and where this is rank 0 hosting the store, keep it up
        until every rank has left it or waits at a call rank 0 will not make (it then names rank 0)."""
        self.stop.set()
        self.beat.join(timeout=self.timeout_s)  # not inside a store call when the interpreter ends
        with contextlib.suppress(Exception):  # a store already gone: there is no one left to tell
            self.store.set(self._left(self.ranks.rank), "1")
        if self.store_on_rank0 and self.ranks.rank == 0 and self.read == self.calls > 0:
            with contextlib.suppress(RankError):  # a rank gone by now has nothing left to read
                self._wait_for(lambda k: self.store.check([self._left(k)])
                               or self.store.check([self._key(self.calls + 1, k)]), "the end")
        if self.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self.previous_sigterm)

    def _beat(self, store) -> None:
        """A counter that moves while this process lives: the others tell 'slow' from 'gone' by it."""
        interval = min(5.0, max(0.1, self.timeout_s / 6))
        key = f"{self.prefix}/beat/{self.ranks.rank}"
        while not self.stop.is_set():
            try:
                store.add(key, 1)
            except Exception:  # the store is gone: the waiters report it
                return
            self.stop.wait(interval)

    def _on_sigterm(self, signum, frame):
        # torchrun sends SIGTERM to the others when one rank dies: leave through the normal error path
        raise RankError(None, f"rank {self.ranks.rank} stopped: the launcher ended the run after another "
                              "rank failed (its report names which)")

    def split_map(self, fn, items, name: str):
        r, world = self.ranks.rank, self.ranks.world_size
        self.calls += 1
        start, stop = share_bounds(len(items), world, r)
        began = time.perf_counter()
        status, payload, error, on_accelerator = "ok", None, None, False
        if stop > start:
            try:
                payload = fn(items[start:stop])
                _check_rows(payload, stop - start)
                on_accelerator = _on_accelerator(payload)
                payload = _to_cpu(payload)
            except Exception as err:  # reported to every rank, re-raised on every rank below
                status, payload, error = "error", _one_line(err), err
        seconds = time.perf_counter() - began
        # note: (call name, N, status, result or error line, seconds in fn, result was on the accelerator)
        notes = self._exchange((name, len(items), status, payload, seconds, on_accelerator), name)
        self._check(notes, name, error)
        _record(name, share_sizes(len(items), world), [note[4] for note in notes])
        device = self.ranks.device if any(note[5] for note in notes) else torch.device("cpu")
        return _concat([note[3] for note in notes], device)

    def _exchange(self, note, name: str) -> list:
        """Every rank's note for this call, in rank order: each rank leaves its own in the store, waits
        until all are there (or one rank is gone), then reads them.

        Through the store rather than a gloo collective: gloo's worker threads free a collective's
        tensors after it has returned, and one that does so while the interpreter exits aborts the
        process ("terminate called without an active exception"; pytorch/pytorch#179291).
        """
        with self._store_calls():
            self._put(self._key(self.calls, self.ranks.rank), _pickled(note))
        self._wait_for(lambda k: self.store.check([self._key(self.calls, k)]), name)
        with self._store_calls():
            notes = [pickle.loads(self._take(self._key(self.calls, k))) for k in range(self.ranks.world_size)]
            if self.calls > 1:  # every rank is here, so all have read the previous call's notes
                self._drop(self._key(self.calls - 1, self.ranks.rank))
        self.read = self.calls
        return notes

    def _key(self, call: int, rank: int) -> str:
        return f"{self.prefix}/call{call}/{rank}"

    def _left(self, rank: int) -> str:
        return f"{self.prefix}/left/{rank}"

    def _put(self, key: str, blob: bytes) -> None:
        """blob in pieces under key/0, key/1, ..., then their number under key: once key is there, all are."""
        starts = range(0, max(len(blob), 1), PIECE_BYTES)
        for j, start in enumerate(starts):
            self.store.set(f"{key}/{j}", blob[start:start + PIECE_BYTES])
        self.store.set(key, str(len(starts)))

    def _take(self, key: str) -> bytes:
        return b"".join(self.store.get(f"{key}/{j}") for j in range(int(self.store.get(key))))

    def _drop(self, key: str) -> None:
        for j in range(int(self.store.get(key))):
            self.store.delete_key(f"{key}/{j}")
        self.store.delete_key(key)

    def _wait_for(self, ready, name: str) -> None:
        """Until ready(k) for every rank k; a rank not ready whose heartbeat stands still that long is gone."""
        seen = {k: (None, time.monotonic()) for k in range(self.ranks.world_size)}  # last beat, when it moved
        pause = 0.01
        while True:
            with self._store_calls():
                missing = [k for k in range(self.ranks.world_size) if not ready(k)]
                for k in missing:
                    count = int(self.store.add(f"{self.prefix}/beat/{k}", 0))
                    if count != seen[k][0]:
                        seen[k] = (count, time.monotonic())
            if not missing:
                return
            for k in missing:
                if time.monotonic() - seen[k][1] > self.timeout_s:
                    raise RankError(k, f"rank {k} stopped responding (no sign of life for "
                                       f"{self.timeout_s:g} s while the others waited at {name!r})")
            time.sleep(pause)
            pause = min(0.5, pause * 2)

    @contextlib.contextmanager
    def _store_calls(self):
        """A store error becomes one line naming who hosted the store; a RankError (SIGTERM's) passes as it is."""
        try:
            yield
        except RankError:
            raise
        except Exception as err:
            raise self._store_lost(err) from None

    def _store_lost(self, err) -> RankError:
        if self.store_on_rank0:
            return RankError(0, f"rank 0 stopped responding (the store it hosted is gone: {_one_line(err)})")
        return RankError(None, f"torchrun's store stopped responding ({_one_line(err)})")

    def _check(self, notes: list, name: str, own_error) -> None:
        failed = [k for k, note in enumerate(notes) if note[2] == "error"]
        if failed:
            k = failed[0]
            more = f" (and {len(failed) - 1} other rank(s))" if len(failed) > 1 else ""
            raise RankError(k, f"rank {k} failed at {name!r}: {notes[k][3]}{more}") from own_error
        calls = {(note[0], note[1]) for note in notes}
        if len(calls) > 1:
            raise RankError(None, f"ranks disagree on the work: {sorted(calls)} (every rank must make the "
                                  "same split_map calls in the same order)")
