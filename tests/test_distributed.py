"""split_map on two gloo ranks equals one process; a rank that raises or is killed is named in one line.

The two-rank tests start this file as a script once per rank, with the environment variables
torchrun would set (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distributed  # noqa: E402
from loss_surface import evaluate_points  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from projection import random_plane  # noqa: E402
from stages import curvature_in_chains  # noqa: E402

TIMEOUT_S = 3.0  # ranks' LANDSCAPE_TIMEOUT_S in these tests: a killed rank is named after this long


# ---------------------------------------------------------------- the work both sides compute

def problem():
    """An MLP 10-16-1 on 64 samples, a random plane, a 23x19 grid (odd: the shares differ by one), 7 checkpoints."""
    # drawn here rather than by data.make_dataset: every rank process would spend seconds importing sklearn
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 10, generator=generator)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).float()
    fm = FlatModel(build_model("mlp", 10, 16, seed=0))
    plane = random_plane(fm.theta0, fm.layout, seed=0)
    aa, bb = np.meshgrid(np.linspace(-1, 1, 23), np.linspace(-0.8, 0.8, 19))
    grid = np.stack([aa.ravel(), bb.ravel()], axis=1)  # (437, 2)
    checkpoints = plane.points(np.linspace([-0.6, 0.4], [0.3, -0.2], 7))  # (7, D)
    return fm, X, y, plane, grid, checkpoints


def surface_fn(fm, X, y, plane):
    return lambda coords: evaluate_points(fm, X, y, plane, coords)  # (K, 2) -> loss (K,), accuracy (K,)


def curvature_fn(fm, X, y, checkpoints):
    """lambda_min (7,), lambda_max (7,) as the pipeline computes them: chains of 3 split across ranks."""
    return curvature_in_chains(fm, X, y, checkpoints, np.arange(len(checkpoints)), chain=3)


# ---------------------------------------------------------------- one rank, started as a script

def rank_main(scenario: str, out: Path) -> int:
    """What main.py does around the split: set up, split, write on rank 0, one line on a RankError."""
    torch.set_num_threads(1)
    ranks = distributed.setup("cpu")
    try:
        results = (equal_work() if scenario == "equal" else
                   {"double": distributed.split_map(failing(scenario, ranks.rank), np.arange(10.0), name="double")})
    except distributed.RankError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        distributed.teardown()
    # every rank writes here (main.py's ranks would not): each must hold the whole result
    np.savez(out / f"rank{ranks.rank}.npz", **results)
    if distributed.is_writer():
        (out / "ranks.json").write_text(json.dumps(distributed.summary()))
    return 0


def equal_work() -> dict:
    fm, X, y, plane, grid, checkpoints = problem()
    loss, acc = distributed.split_map(surface_fn(fm, X, y, plane), grid, name="surface")
    lam = curvature_fn(fm, X, y, checkpoints)
    one = distributed.split_map(lambda items: items * 10, np.arange(3, 4), name="one item")  # rank 1 gets none
    wide = distributed.split_map(wide_rows, np.arange(4, dtype=np.float32), name="wide")  # over the store's 8 MiB
    return {"loss": loss, "acc": acc, "lam": np.stack(lam, axis=1), "one": one, "wide_sums": wide.sum(axis=1)}


def wide_rows(items):
    """4 MiB per item: each rank's share of two is more than the store takes as one value."""
    return np.outer(items, np.arange(2 ** 20, dtype=np.float32))


def failing(scenario: str, rank: int):
    """Doubles its items, except that on rank 1 it raises or kills its own process."""
    def double(items):
        if rank == 1 and scenario == "raise":
            raise ValueError("no loss here\nsecond line that must not be printed")
        if rank == 1 and scenario == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if rank == 1 and scenario == "unpicklable":
            return [lambda: None] * len(items)  # one row per item, but nothing another process can receive
        return items * 2.0
    return double


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, out: Path, world_size: int = 2) -> list:
    """Start world_size ranks of this file; returns (exit code, stderr, seconds to exit) per rank."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": str(world_size), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           distributed.TIMEOUT_ENV: str(TIMEOUT_S)}
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, __file__, scenario, str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(world_size)]
    ended = [None] * world_size
    while None in ended and time.monotonic() - start < 90:
        for r, p in enumerate(procs):
            if ended[r] is None and p.poll() is not None:
                ended[r] = time.monotonic() - start
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:  # a hang: the test fails below, the process must not outlive it
            p.kill()
    return [(p.wait(), p.stderr.read(), t) for p, t in zip(procs, ended)]


# ---------------------------------------------------------------- tests

def test_shares_are_contiguous_and_balanced():
    for n in (0, 1, 5, 437):
        for world_size in (1, 2, 3, 7):
            bounds = [distributed.share_bounds(n, world_size, r) for r in range(world_size)]
            edges = [0] + [stop for _, stop in bounds]
            assert [start for start, _ in bounds] == edges[:-1] and edges[-1] == n  # contiguous, in order
            sizes = distributed.share_sizes(n, world_size)
            assert sizes == [len(s) for s in np.array_split(np.arange(n), world_size)]  # balanced like numpy


def test_one_process_is_fn_itself_without_a_process_group(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    distributed.teardown()
    ranks = distributed.setup("cpu")
    assert (ranks.rank, ranks.world_size, ranks.backend) == (0, 1, None)
    assert distributed.setup("cpu") is ranks and distributed.is_writer()
    items = torch.arange(10.0).reshape(5, 2)
    calls = []
    out = distributed.split_map(lambda x: calls.append(x) or (x.sum(1), [float(v) for v in x[:, 0]]), items,
                                name="test/one")
    assert len(calls) == 1 and calls[0] is items  # the whole input, not a copy of a share
    assert torch.equal(out[0], items.sum(1)) and out[1] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert not torch.distributed.is_initialized()
    summary = distributed.summary()
    assert summary["world_size"] == 1 and len(summary["shares"]) == 1
    assert {k: summary["shares"][0][k] for k in ("rank", "items", "work")} == {"rank": 0, "items": 5,
                                                                               "work": {"test/one": 5}}
    distributed.teardown()
    assert distributed.setup("cpu").world_size == 1 and distributed.shares()[0]["work"] == {}  # a new run
    distributed.teardown()


def test_fn_must_return_one_row_per_item():
    with pytest.raises(TypeError, match="one row per item"):
        distributed.split_map(lambda x: x[:-1], np.zeros((4, 2)))
    with pytest.raises(TypeError, match="one row per item"):
        distributed.split_map(lambda x: float(x.sum()), np.zeros((4, 2)))


def test_two_ranks_equal_one_process(tmp_path):
    fm, X, y, plane, grid, checkpoints = problem()
    loss, acc = surface_fn(fm, X, y, plane)(grid)
    lam = np.stack(curvature_fn(fm, X, y, checkpoints), axis=1)  # (7, 2)
    results = launch("equal", tmp_path)
    assert [code for code, _, _ in results] == [0, 0], [err for _, err, _ in results]
    for rank in (0, 1):  # every rank holds the whole result, in item order
        got = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_allclose(got["loss"], loss, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["acc"], acc)
        np.testing.assert_allclose(got["lam"], lam, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["one"], [30])
        np.testing.assert_array_equal(got["wide_sums"], wide_rows(np.arange(4, dtype=np.float32)).sum(axis=1))
    summary = json.loads((tmp_path / "ranks.json").read_text())
    assert summary["world_size"] == 2
    assert [s["work"] for s in summary["shares"]] == [
        {"surface": 219, "curvature chains": 2, "one item": 1, "wide": 2},
        {"surface": 218, "curvature chains": 1, "one item": 0, "wide": 2}]
    assert all(s["seconds"] >= 0 for s in summary["shares"])


def test_a_raising_rank_is_named_on_every_rank(tmp_path):
    results = launch("raise", tmp_path)
    for code, err, seconds in results:
        assert code == 3 and seconds < 30
        assert err.strip().splitlines() == ["error: rank 1 failed at 'double': ValueError: no loss here"]
    assert not list(tmp_path.iterdir())  # nobody wrote a result


def test_a_result_that_cannot_be_sent_is_named_as_its_ranks_failure(tmp_path):
    for code, err, seconds in launch("unpicklable", tmp_path):
        assert code == 3 and seconds < 30  # at once, not after a rank's timeout
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: rank 1 failed at 'double': its result cannot be "
                                                       "sent to the other ranks (AttributeError: Can't pickle"), err
    assert not list(tmp_path.iterdir())


def test_a_killed_rank_is_named_by_the_survivor_within_the_timeout(tmp_path):
    (code0, err0, exit0), (code1, _, exit1) = launch("kill", tmp_path)
    assert code1 == -signal.SIGKILL
    assert code0 == 3 and exit0 - exit1 < TIMEOUT_S + 10  # start-up on busy cores is not counted
    lines = err0.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: rank 1 stopped responding"), err0
    assert not list(tmp_path.iterdir())


if __name__ == "__main__":
    sys.exit(rank_main(sys.argv[1], Path(sys.argv[2])))
