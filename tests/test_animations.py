"""GIFs reopen with the requested frames, timing and looping; frame selection keeps both ends; the
last frame is held; captions clear the axes; shadow runs are dashed; workers die with their parent."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from mpl_toolkits.mplot3d import proj3d
from PIL import Image

import animations
import race_gif
from plot_style import run_colour
from loss_surface import Surface
from projection import Plane


@pytest.fixture(autouse=True)
def small_frames(monkeypatch):
    monkeypatch.setattr(animations, "FIGSIZE", (3.2, 2.4))  # 320 x 240 at DPI 100: fast, same code
    monkeypatch.setattr(race_gif, "FIGSIZE", (3.2, 2.4))


def bowl(a, b):
    return (a - 0.3) ** 2 + 2 * b ** 2 + 0.1


def tiny_surface(loss_fn=bowl):
    alphas, betas = np.linspace(-1, 1, 8), np.linspace(-1, 1, 6)  # not square: rows follow betas
    aa, bb = np.meshgrid(alphas, betas)
    plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.8, 0.1))
    return Surface(alphas, betas, loss_fn(aa, bb), np.ones_like(aa), plane)


def gif_facts(path):
    """(frames stored, first frame's ms, loop, RGB frames); Pillow merges identical neighbours."""
    return gif_frames(path)[:4]


def gif_frames(path):
    with Image.open(path) as gif:
        frames, durations = [], []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB")))
            durations.append(gif.info["duration"])
        return gif.n_frames, durations[0], gif.info["loop"], frames, durations


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
    shown, at = race_gif.race_indices([12, 4], 6)
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
    info = race_gif.optimizer_race_gif(surface, [long_run, short_run], tmp_path / "r.gif", "race",
                                         n_frames=6, frame_ms=50)
    n, duration, loop, frames = gif_facts(tmp_path / "r.gif")
    assert info.n_frames == 6 and 2 <= n <= 6 and duration == 50 and loop == 0
    assert frames[0].shape == (240, 320, 3)
    assert not np.array_equal(frames[0], frames[-1])
    assert has_colour(frames[-1], run_colour(0)) and has_colour(frames[-1], run_colour(1))


def test_the_counter_goes_to_the_corner_no_path_crosses():
    axis = np.linspace(0, 1, 5)
    paths = [np.array([[0.1, 0.1], [0.15, 0.12]]), np.array([[0.9, 0.9]])]  # lower left (2 points), upper right
    assert race_gif._emptiest_corners(paths, axis, axis) == ["upper left", "lower right", "upper right",
                                                                  "lower left"]


def test_shared_palette_holds_every_accent_exactly():
    frames = [np.full((20, 30, 3), k * 40, np.uint8) for k in range(6)]  # grey frames: no accent in them
    palette = np.array(animations.shared_palette(frames, size=32).getpalette()).reshape(-1, 3)
    assert len(palette) <= 32
    for colour in animations.ACCENTS:  # noqa: B007
        assert (palette == np.round(255 * np.array(to_rgb(colour)))).all(axis=1).any(), colour


def test_the_last_frame_is_held_and_the_others_keep_their_pace(tmp_path):
    coords, loss = straight_path(9)
    animations.descent_gif(tiny_surface(), coords, loss, loss, np.arange(9), tmp_path / "d.gif", "t",
                           n_frames=5, frame_ms=90)
    t = np.linspace(0, 1, 7)[:, None]
    race_gif.optimizer_race_gif(tiny_surface(), [(np.hstack([-0.8 + t, 0 * t]), np.linspace(1, 0.2, 7), "a")],
                                  tmp_path / "r.gif", "r", n_frames=7, frame_ms=60)
    for name, pace in (("d.gif", 90), ("r.gif", 60)):
        durations = gif_frames(tmp_path / name)[4]
        assert durations[-1] == animations.HOLD_MS == 1500, name
        assert set(durations[:-1]) == {pace}, name  # every frame differs from the next: none merged


@pytest.mark.parametrize("drawn", ["surface", np.arange(9) >= 4])  # a partial path: legend, longer caption
def test_the_caption_clears_every_axis_label_at_every_camera_angle(monkeypatch, drawn):
    monkeypatch.setattr(animations, "FIGSIZE", (8, 6))  # the real frame: its fonts and margins
    coords, loss = straight_path(9)
    scene = animations.descent_scene(tiny_surface(), coords, loss, loss, np.arange(9), "t", drawn=drawn)
    fig, *_ = artists = animations.descent_figure(scene)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    ax = fig.axes[0]
    for k in range(0, 60, 6):
        animations.set_descent_frame(scene, artists, 2, animations.camera_azimuth(scene, k, 60))
        fig.canvas.draw()
        caption = artists[3].get_window_extent()
        texts = [axis.label for axis in (ax.xaxis, ax.yaxis, ax.zaxis)]
        texts += [t for axis in (ax.xaxis, ax.yaxis, ax.zaxis) for t in axis.get_ticklabels() if t.get_text()]
        assert caption.y0 >= 0 and caption.width > 0
        assert not [t.get_text() for t in texts if t.get_window_extent().overlaps(caption)], k


def test_the_first_frame_faces_the_surface_from_above_its_low_side(monkeypatch):
    monkeypatch.setattr(animations, "FIGSIZE", (8, 6))
    coords, loss = straight_path(9)
    scene = animations.descent_scene(tiny_surface(), coords, loss, loss, np.arange(9), "t")
    assert animations.camera_azimuth(scene, 0, 60) == scene["azim0"]  # the best view, not a sweep's end
    assert abs(animations.camera_azimuth(scene, 59, 60) - scene["azim0"]) < 0.15 * animations.ROTATION
    assert 20 <= animations.ELEVATION <= 45  # from above: the relief shows, never edge-on
    fig, *_ = artists = animations.descent_figure(scene)
    animations.set_descent_frame(scene, artists, 0, animations.camera_azimuth(scene, 0, 60))
    fig.canvas.draw()
    ax = fig.axes[0]
    a, b = scene["alphas"][[0, -1, -1, 0]], scene["betas"][[0, 0, -1, -1]]  # the grid's corners, in order
    x, y, _ = proj3d.proj_transform(a, b, np.full(4, scene["z"].min()), ax.get_proj())
    corners = ax.transData.transform(np.stack([x, y], axis=1))  # (4, 2) pixels
    area = 0.5 * abs(np.dot(corners[:, 0], np.roll(corners[:, 1], 1)) - np.dot(corners[:, 1], np.roll(corners[:, 0], 1)))
    # the grid's floor seen from above covers ~10% of the frame at 30 degrees; edge-on 0.5%, 10 degrees 4%
    assert area / (fig.bbox.width * fig.bbox.height) > 0.07


def test_a_shadow_run_is_dashed_and_says_so_and_a_given_colour_is_used(tmp_path):
    t = np.linspace(0, 1, 8)[:, None]
    runs = [(np.hstack([-0.8 + t, 0 * t]), np.linspace(1, 0.2, 8), "SGD"),
            dict(coords=np.hstack([-0.8 + t, 0.5 * t]), losses=np.linspace(1, 0.3, 8), label="momentum",
                 drawn="shadow", colour="#123456", residual_mean=0.4)]
    records = [race_gif.as_race_run(run) for run in runs]
    assert records[0].drawn == "surface" and records[0].colour is None
    solid, dashed, start = race_gif.race_handles(records, [run_colour(0), "#123456"])
    assert solid.get_label() == "SGD" and solid.get_linestyle() == "-"
    assert dashed.get_label() == "momentum (shadow: 40 % off plane)" and dashed.get_linestyle() == "--"
    assert start.get_label() == "start"
    race_gif.optimizer_race_gif(tiny_surface(), runs, tmp_path / "r.gif", "r", n_frames=8)
    assert has_colour(gif_facts(tmp_path / "r.gif")[3][-1], "#123456")
    with pytest.raises(ValueError, match="drawn"):
        race_gif.race_handles([race_gif.as_race_run((runs[0][0], runs[0][1], "x", "lifted"))], ["k"])


def test_a_default_size_gif_stays_under_three_megabytes_for_sixty_frames(tmp_path, monkeypatch):
    monkeypatch.setattr(animations, "FIGSIZE", (8, 6))  # the real 800 x 600 frames
    alphas = betas = np.linspace(-2, 2, 40)
    aa, bb = np.meshgrid(alphas, betas)
    plane = Plane(torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), "pca", (0.7, 0.2))
    surface = Surface(alphas, betas, 0.5 + 0.3 * np.sin(2 * aa) * np.cos(1.5 * bb) + 0.15 * (aa ** 2 + bb ** 2),
                      np.ones_like(aa), plane)
    coords = np.stack([np.linspace(1.8, -0.7, 12), np.linspace(1.2, -0.3, 12)], axis=1)
    loss = 0.5 + 0.15 * (coords ** 2).sum(axis=1)
    info = animations.descent_gif(surface, coords, loss, loss, np.arange(12), tmp_path / "big.gif", "size",
                                  n_frames=12, workers=1)
    assert gif_facts(tmp_path / "big.gif")[3][0].shape == (600, 800, 3)
    assert info.bytes / 12 * 60 < 3e6  # the first frame is a whole picture, later ones only changes: an upper bound


KILLED_RENDERER = """
import sys, numpy as np
sys.path[:0] = [{root!r}, {tests!r}]
import animations, test_animations as t
animations.FIGSIZE = (6, 4.5)
coords, loss = t.straight_path(400)
animations.descent_gif(t.tiny_surface(), coords, loss, loss, np.arange(400), {out!r}, "killed", n_frames=400,
                       workers=2)
"""


def group_members(pgid: int) -> list:
    """Live processes (not zombies) whose process group is pgid, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # not a process, or it just ended
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
def test_frame_workers_end_when_their_parent_is_killed(tmp_path):
    script = KILLED_RENDERER.format(root=str(Path(animations.__file__).parent), tests=str(Path(__file__).parent),
                                    out=str(tmp_path / "k.gif"))
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)  # its own process group
    try:
        deadline = time.monotonic() + 60
        while len(group_members(parent.pid)) < 3 and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until both workers run
        assert len(group_members(parent.pid)) >= 3, "the workers never started"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 3
        while group_members(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(parent.pid) == []
    finally:
        for pid in group_members(parent.pid):  # a failed test must not leave renderers behind
            os.kill(pid, signal.SIGKILL)


def test_a_run_partly_off_its_plane_is_solid_on_it_and_dashed_off_it(tmp_path):
    import matplotlib.pyplot as plt
    t = np.linspace(0, 1, 8)[:, None]
    mask = np.array([True] * 4 + [False] * 4)  # epochs 4-7 leave the plane
    run = race_gif.as_race_run((np.hstack([-0.8 + t, 0.5 * t]), np.linspace(1, 0.3, 8), "Adam", mask, "#123456"))
    fig, ax = plt.subplots()
    pieces = race_gif._trail_pieces(ax, run, 8, "#123456")
    assert [(lo, hi, line.get_linestyle()) for lo, hi, line in pieces] == [(0, 4, "-"), (3, 8, "--")]
    plt.close(fig)
    handle, _ = race_gif.race_handles([run], ["#123456"])
    assert handle.get_label() == "Adam (dashed: shadow, epochs 4–7 off the plane)"
    race_gif.optimizer_race_gif(tiny_surface(), [run], tmp_path / "p.gif", "p", n_frames=8)
    assert has_colour(gif_facts(tmp_path / "p.gif")[3][-1], "#123456")


def partial_frame(i, drawn):
    """(scene, artists) of a 9-checkpoint path on tiny_surface with frame i set."""
    coords, loss = straight_path(9)
    scene = animations.descent_scene(tiny_surface(), coords, loss, loss, np.arange(9),
                                     "t", drawn=drawn, residual_mean=0.2)
    artists = animations.descent_figure(scene)
    animations.set_descent_frame(scene, artists, i, scene["azim0"])
    return scene, artists


def expected_heights(loss):
    """(lifted (T,), floor): the drawn heights from their definition, log10 when the losses span > 1.5 decades."""
    lo, hi = min(tiny_surface().loss.min(), loss.min()), max(tiny_surface().loss.max(), loss.max())
    h = np.log10 if np.log10(hi / lo) > 1.5 else (lambda v: v)
    span = h(hi) - h(lo)
    return h(loss) + 0.015 * span, h(lo) - 0.35 * span


def drawn_points(trail) -> np.ndarray:
    """(N, 3) every point the trail's lines hold in this frame."""
    return np.concatenate([np.stack(line.get_data_3d(), axis=1).reshape(-1, 3) for *_, line in trail])


def test_a_partial_frame_lifts_only_checkpoints_on_the_surface_and_reached():
    import matplotlib.pyplot as plt
    mask = np.arange(9) >= 4  # checkpoints 0-3 leave the plane
    coords, loss = straight_path(9)
    lifted, floor = expected_heights(loss)
    scene, (fig, trail, head, caption, connectors) = partial_frame(6, mask)
    points = drawn_points(trail)
    up = ~np.isclose(points[:, 2], floor)
    np.testing.assert_allclose(np.unique(points[up, 0]), coords[4:7, 0])  # 4-6: on the surface and reached
    np.testing.assert_allclose(points[up, 2], lifted[[4, 5, 6]])
    assert len(points[~up]) == 5  # 0-3 and the join to 4, on the floor
    assert [line.get_linestyle() for *_, line in trail] == ["--", "-"]
    np.testing.assert_allclose(head.get_data_3d()[2], lifted[6])
    (k, _, connector), = connectors
    assert k == 4 and np.allclose(connector.get_data_3d()[2], [floor, lifted[4]])
    assert "shadow" not in caption.get_text()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "path on the surface", "path (dashed: shadow, epochs 0–3 off the plane): on the floor"]
    plt.close(fig)
    scene, (fig, trail, head, caption, connectors) = partial_frame(2, mask)
    assert np.allclose(drawn_points(trail)[:, 2], floor) and len(drawn_points(trail)) == 3
    np.testing.assert_allclose(head.get_data_3d()[2], floor)  # the head is off the plane: on the floor
    assert len(connectors[0][2].get_data_3d()[2]) == 0  # not reached yet
    assert caption.get_text().rstrip().endswith("(shadow: off the plane)")
    assert len(caption.get_text()) == len(animations.caption_text(scene, 8))  # fixed width
    plt.close(fig)


def test_surface_and_shadow_frames_keep_their_meaning():
    import matplotlib.pyplot as plt
    coords, loss = straight_path(9)
    scene, (fig, trail, head, _, connectors) = partial_frame(8, "surface")
    assert len(trail) == 1 and connectors == [] and fig.axes[0].get_legend() is None
    np.testing.assert_allclose(drawn_points(trail)[:, 2], expected_heights(loss)[0])
    plt.close(fig)
    scene, (fig, trail, head, caption, connectors) = partial_frame(8, "shadow")
    np.testing.assert_allclose(drawn_points(trail)[:, 2], expected_heights(loss)[1])
    assert connectors == []
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "path (shadow: 20 % off plane): on the floor"]
    assert "(shadow: off the plane)" in caption.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="drawn"):
        partial_frame(0, np.ones(8, bool))


def test_a_partial_gif_holds_its_last_frame_and_shows_the_head(tmp_path, monkeypatch):
    monkeypatch.setattr(animations, "FIGSIZE", (4.8, 3.6))  # room for the legend: 320 x 240 collapses the axes
    coords, loss = straight_path(9)
    info = animations.descent_gif(tiny_surface(), coords, loss, loss, np.arange(9), tmp_path / "p.gif", "p",
                                  n_frames=5, frame_ms=70, drawn=np.arange(9) >= 3, residual_mean=0.1)
    durations, frames = gif_frames(tmp_path / "p.gif")[4], gif_frames(tmp_path / "p.gif")[3]
    assert info.n_frames == 5 and durations[-1] == animations.HOLD_MS and set(durations[:-1]) == {70}
    assert has_colour(frames[0], animations.HEAD_COLOUR) and has_colour(frames[-1], animations.HEAD_COLOUR)
