"""The project's one compiled loop: the ReLU pairs' shares of a Linear -> ReLU -> Linear model's logits, on CPU.

A tile's switching pairs (plane_model.Tile) each add relu(zc + a zu + b zv) times the outgoing weights
at every point of the tile. As torch ops that is five passes over an (m pairs, K points) block in
memory; as one loop (numba) each pair's row stays in registers. Measured (one thread, the default
MLP, 51x51 random plane of large steps, 16 tiles of 6,900 switching pairs on average): 14-28 ms as
torch ops, 4.0-4.2 ms here (the branch beat a branch-free max(pre, 0), 4.2 against 6.7 ms).
torch.compile of the torch ops was no faster (and took 17 s to compile). numba compiles this loop
in under a second, once per dtype and version of this file: the result is cached in __pycache__ or,
where that is read-only, in the user's cache folder (~/.cache/numba); with neither writable, once
per process.
"""
import numba


def _compiled(function):
    """numba.njit with its on-disk cache; numba refuses cache=True at decoration when no cache folder is
    writable (a read-only install and home), and the loop then compiles without it."""
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(function)


@_compiled
def add_relu_shares(rows, units, z, weights, a, b, logits):
    """logits[rows[p], c, k] += relu(z[p] . (1, a[k], b[k])) * weights[units[p], c, k] for every pair p.

    rows, units (m,): each pair's sample and hidden unit; z (m, 3): its pre-activation along centre, u, v;
    weights (h, C, K): the outgoing weights at each point; a, b (K,): the points; logits (n, C, K), in place.
    """
    K, C = a.shape[0], weights.shape[1]
    for p in range(rows.shape[0]):
        r, j = rows[p], units[p]
        zc, zu, zv = z[p, 0], z[p, 1], z[p, 2]
        for c in range(C):
            for k in range(K):
                pre = zc + a[k] * zu + b[k] * zv
                if pre > 0:  # relu: a pair that is off adds nothing
                    logits[r, c, k] += pre * weights[j, c, k]
