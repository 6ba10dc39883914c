"""GIFs reopen with the requested frames, timing and looping; frame selection keeps both ends."""
import numpy as np
import pytest
import torch
from PIL import Image

import animations
from loss_surface import Surface
from projection import Plane


def tiny_surface(loss_fn=lambda a, b: (a - 0.3) ** 2 + 2 * b ** 2 + 0.1):
    alphas, betas = np.linspace(-1, 1, 8), np.linspace(-1, 1, 6)
    aa, bb = np.meshgrid(alphas, betas)
    plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.8, 0.1))
    return Surface(alphas, betas, loss_fn(aa, bb), np.ones_like(aa), plane)


def gif_facts(path):
    with Image.open(path) as gif:
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB")))
        return gif.n_frames, gif.info["duration"], gif.info["loop"], frames


@pytest.mark.parametrize("n_points, n_frames, expected", [(5, 10, [0, 1, 2, 3, 4]), (11, 6, [0, 2, 4, 6, 8, 10]),
                                                          (101, 3, [0, 50, 100]), (10, 4, [0, 3, 6, 9])])
def test_frame_indices_keep_both_ends_evenly(n_points, n_frames, expected):
    assert animations.frame_indices(n_points, n_frames).tolist() == expected


def test_descent_gif_has_the_requested_frames_timing_and_loop(tmp_path):
    t = np.linspace(0, 1, 9)
    coords = np.stack([-0.8 + 1.1 * t, 0.5 - 0.5 * t], axis=1)
    loss = (coords[:, 0] - 0.3) ** 2 + 2 * coords[:, 1] ** 2 + 0.1
    info = animations.descent_gif(tiny_surface(), coords, loss, loss + 0.01, np.arange(9), tmp_path / "d.gif",
                                  "test", n_frames=5, frame_ms=120)
    n, duration, loop, frames = gif_facts(tmp_path / "d.gif")
    assert 2 <= n <= 5 and info.n_frames == 5 and duration == 120 and loop == 0
    assert not np.array_equal(frames[0], frames[-1])
    assert info.bytes == (tmp_path / "d.gif").stat().st_size and info.seconds_per_frame > 0


def test_race_with_runs_of_unequal_length_and_a_non_finite_surface(tmp_path):
    surface = tiny_surface()
    surface.loss[0, 0] = np.inf  # a corner that overflowed
    t = np.linspace(0, 1, 12)[:, None]
    long_run = (np.hstack([-0.8 + t, 0 * t]), np.linspace(1, 0.2, 12), "SGD")
    short_run = (np.hstack([-0.8 + t[:4], 0.3 * t[:4]]), np.r_[1.0, 0.8, 0.7, np.nan], "diverged")
    animations.optimizer_race_gif(surface, [long_run, short_run], tmp_path / "r.gif", "race",
                                  n_frames=6, frame_ms=50)
    n, duration, loop, frames = gif_facts(tmp_path / "r.gif")
    assert 2 <= n <= 6 and duration == 50 and loop == 0
    assert not np.array_equal(frames[0], frames[-1])
