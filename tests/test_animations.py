"""GIFs reopen with the requested frames, timing and looping; frame selection keeps both ends."""
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from PIL import Image

import animations
from loss_surface import Surface
from projection import Plane


@pytest.fixture(autouse=True)
def small_frames(monkeypatch):
    monkeypatch.setattr(animations, "FIGSIZE", (3.2, 2.4))  # 320 x 240 at DPI 100: fast, same code


def bowl(a, b):
    return (a - 0.3) ** 2 + 2 * b ** 2 + 0.1


def tiny_surface(loss_fn=bowl):
    alphas, betas = np.linspace(-1, 1, 8), np.linspace(-1, 1, 6)  # not square: rows follow betas
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


def straight_path(n):
    t = np.linspace(0, 1, n)
    coords = np.stack([-0.8 + 1.1 * t, 0.5 - 0.5 * t], axis=1)
    return coords, bowl(coords[:, 0], coords[:, 1])


def has_colour(frame, colour):
    return bool((frame == np.round(255 * np.array(to_rgb(colour))).astype(np.uint8)).all(axis=-1).any())


@pytest.mark.parametrize("n_points, n_frames, expected", [(5, 10, [0, 1, 2, 3, 4]), (11, 6, [0, 2, 4, 6, 8, 10]),
                                                          (101, 3, [0, 50, 100]), (10, 4, [0, 3, 6, 9]),
                                                          (12, 6, [0, 2, 4, 7, 9, 11]), (1, 5, [0])])
def test_frame_indices_match_hand_computed_lists(n_points, n_frames, expected):
    assert animations.frame_indices(n_points, n_frames).tolist() == expected


def test_frame_indices_keep_both_ends_and_are_evenly_spaced():
    for n_points in range(2, 130, 7):
        for n_frames in (2, 3, 5, 30, 60):
            idx = animations.frame_indices(n_points, n_frames)
            gaps = np.diff(idx)
            assert idx[0] == 0 and idx[-1] == n_points - 1 and len(idx) == min(n_points, n_frames)
            assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1  # even: gaps differ by one at most


def test_race_indices_hold_a_finished_run_at_its_last_point():
    shown, at = animations.race_indices([12, 4], 6)
    assert shown.tolist() == [0, 2, 4, 7, 9, 11]
    assert at.tolist() == [[0, 0], [2, 2], [4, 3], [7, 3], [9, 3], [11, 3]]


def test_descent_gif_has_the_requested_frames_timing_loop_and_size(tmp_path):
    coords, loss = straight_path(9)
    info = animations.descent_gif(tiny_surface(), coords, loss, loss + 0.01, np.arange(9), tmp_path / "d.gif",
                                  "test", n_frames=5, frame_ms=120)
    n, duration, loop, frames = gif_facts(tmp_path / "d.gif")
    assert 2 <= n <= 5 and info.n_frames == 5 and duration == 120 and loop == 0
    assert frames[0].shape == (240, 320, 3)
    assert not np.array_equal(frames[0], frames[-1])
    assert has_colour(frames[-1], animations.HEAD_COLOUR)  # the small marker kept its exact colour
    assert info.bytes == (tmp_path / "d.gif").stat().st_size and info.seconds_per_frame > 0


def test_descent_frames_rendered_by_two_processes_equal_one_process(tmp_path):
    coords, loss = straight_path(30)
    args = (tiny_surface(), coords, loss, loss, np.arange(30))
    animations.descent_gif(*args, tmp_path / "one.gif", "t", n_frames=16, workers=1)
    animations.descent_gif(*args, tmp_path / "two.gif", "t", n_frames=16, workers=2)
    one, two = gif_facts(tmp_path / "one.gif")[3], gif_facts(tmp_path / "two.gif")[3]
    assert len(one) == len(two) >= 2 and all(np.array_equal(a, b) for a, b in zip(one, two))


def test_descent_survives_a_non_finite_surface_and_a_diverged_tail(tmp_path):
    surface = tiny_surface()
    surface.loss[0, :3], surface.loss[-1, -1] = np.nan, np.inf
    coords, loss = straight_path(8)
    true = loss.copy()
    true[-2:] = np.nan  # the run diverged: the last two records are cut
    info = animations.descent_gif(surface, coords, loss, true, np.arange(8), tmp_path / "n.gif", "nan",
                                  n_frames=8, frame_ms=60)
    n, duration, _, frames = gif_facts(tmp_path / "n.gif")
    assert info.n_frames == 6 and 2 <= n <= 6 and duration == 60
    assert not np.array_equal(frames[0], frames[-1])


def test_race_with_runs_of_unequal_length_and_a_non_finite_surface(tmp_path):
    surface = tiny_surface()
    surface.loss[0, 0] = np.inf  # a corner that overflowed
    t = np.linspace(0, 1, 12)[:, None]
    long_run = (np.hstack([-0.8 + t, 0 * t]), np.linspace(1, 0.2, 12), "SGD")
    short_run = (np.hstack([-0.8 + t[:4], 0.3 * t[:4]]), np.r_[1.0, 0.8, 0.7, np.nan], "diverged")
    info = animations.optimizer_race_gif(surface, [long_run, short_run], tmp_path / "r.gif", "race",
                                         n_frames=6, frame_ms=50)
    n, duration, loop, frames = gif_facts(tmp_path / "r.gif")
    assert info.n_frames == 6 and 2 <= n <= 6 and duration == 50 and loop == 0
    assert frames[0].shape == (240, 320, 3)
    assert not np.array_equal(frames[0], frames[-1])
    assert has_colour(frames[-1], animations.RACE_COLOURS[0]) and has_colour(frames[-1], animations.RACE_COLOURS[1])


def test_legend_and_counter_go_to_the_corners_no_path_crosses():
    axis = np.linspace(0, 1, 5)
    paths = [np.array([[0.1, 0.1], [0.15, 0.12]]), np.array([[0.9, 0.9]])]  # lower left (2 points), upper right
    assert animations._emptiest_corners(paths, axis, axis) == ["upper left", "lower right", "upper right",
                                                                  "lower left"]


def test_shared_palette_holds_every_accent_exactly():
    frames = [np.full((20, 30, 3), k * 40, np.uint8) for k in range(6)]  # grey frames: no accent in them
    palette = np.array(animations.shared_palette(frames, size=32).getpalette()).reshape(-1, 3)
    assert len(palette) <= 32
    for colour in animations.ACCENTS:
        assert (palette == np.round(255 * np.array(to_rgb(colour)))).all(axis=1).any(), colour
