"""The stage cache: bit-identical results, keys that follow inputs and code, damaged entries recomputed."""
import ast
import glob
import multiprocessing
from pathlib import Path

import torch

import stages
from cache import StageCache
import cache as stage_cache
from training import OptimizerSpec


def _train(cache, fm, data, lr=0.5, key=None):
    return stages.train_run(cache, fm, data, OptimizerSpec("gd", "sgd", lr), 6, None, 0, "seed 0",
                            key or {"data": "tiny"})


def test_cached_run_is_bit_identical_to_a_fresh_one(tmp_path, tiny_mlp, tiny_data):
    fresh = _train(StageCache(None), tiny_mlp, tiny_data)
    cache = StageCache(str(tmp_path))
    first, again = _train(cache, tiny_mlp, tiny_data), _train(cache, tiny_mlp, tiny_data)
    assert (cache.misses, cache.hits) == (1, 1)
    for run in (first, again):
        assert torch.equal(run.trajectory.params, fresh.trajectory.params)
        assert torch.equal(run.trajectory.losses, fresh.trajectory.losses)
        assert run.grad_norms == fresh.grad_norms


def test_a_changed_input_or_code_is_a_new_entry(tmp_path, tiny_mlp, tiny_data, monkeypatch):
    cache = StageCache(str(tmp_path))
    base = _train(cache, tiny_mlp, tiny_data)
    other_lr = _train(cache, tiny_mlp, tiny_data, lr=0.25)
    assert cache.misses == 2 and not torch.equal(base.trajectory.params, other_lr.trajectory.params)
    _train(cache, tiny_mlp, tiny_data, key={"data": "other"})
    assert cache.misses == 3
    # the same inputs under another version of training.py: never the old entry
    monkeypatch.setattr(stage_cache, "_CODE", {stages.TRAIN_CODE: "another-version"})
    _train(cache, tiny_mlp, tiny_data)
    assert (cache.misses, cache.hits) == (4, 0)


def test_drawing_knobs_are_not_in_any_stage_key():
    import config
    import main
    base = config.Config()
    drawn = config.Config(gif_frame_ms=200, gif_frames=20, output_dir="elsewhere", only=("gifs",))
    for kind in ("mlp", "logistic"):
        assert main.model_key(base, kind) == main.model_key(drawn, kind)
    assert main.data_key(base) == main.data_key(drawn)
    assert main.data_key(base) != main.data_key(config.Config(noise=0.2))


def test_a_damaged_entry_is_recomputed_with_one_warning(tmp_path, tiny_mlp, tiny_data, capsys):
    cache = StageCache(str(tmp_path))
    good = _train(cache, tiny_mlp, tiny_data)
    outputs = glob.glob(str(tmp_path / "**" / "output.pkl"), recursive=True)
    assert outputs
    for path in outputs:  # truncated mid-write, or bytes from another library version
        with open(path, "r+b") as f:
            f.truncate(20)
    again = _train(cache, tiny_mlp, tiny_data)
    out = capsys.readouterr()
    assert "damaged cache entry of stage 'training' was recomputed" in out.out
    assert "Traceback" not in out.out + out.err
    assert torch.equal(again.trajectory.params, good.trajectory.params) and cache.misses == 2
    assert torch.equal(_train(cache, tiny_mlp, tiny_data).trajectory.params, good.trajectory.params)
    assert cache.hits == 1  # the recomputed entry was stored again


def test_an_unusable_cache_folder_means_computing_without_it(tmp_path, tiny_mlp, tiny_data, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = StageCache(str(blocker / "cache"))
    run = _train(cache, tiny_mlp, tiny_data)
    assert "cannot be used" in capsys.readouterr().out
    assert len(run.trajectory) == 7 and cache.memory is None


def _fill(folder, results):
    from data import make_dataset
    from models import FlatModel, build_model
    torch.set_num_threads(1)
    data = make_dataset("classification", n_samples=64, n_features=4, noise=0.05, seed=0)
    fm = FlatModel(build_model("mlp", 4, hidden_dim=5, seed=0))
    results.put(_train(StageCache(folder), fm, data).trajectory.params.numpy().tobytes())


def test_concurrent_runs_sharing_a_cache_agree(tmp_path, tiny_mlp, tiny_data):
    context = multiprocessing.get_context("fork")  # the children inherit the imports: no second start-up
    results = context.Queue()
    workers = [context.Process(target=_fill, args=(str(tmp_path), results)) for _ in range(2)]
    for w in workers:
        w.start()
    got = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    expected = _train(StageCache(None), tiny_mlp, tiny_data).trajectory.params.numpy().tobytes()
    assert got == [expected] * 2
    cache = StageCache(str(tmp_path))  # what they left behind is one sound entry
    assert _train(cache, tiny_mlp, tiny_data).trajectory.params.numpy().tobytes() == expected
    assert cache.hits == 1


def test_drawn_files_come_back_from_the_cache_only_while_results_and_drawing_inputs_stand(tmp_path):
    drawings = []

    def run(stage_key: dict, draw_key: dict, out):
        """One pipeline run in miniature: a stage served, then a drawing stage writing one file into out."""
        cache = StageCache(str(tmp_path / "cache"))
        cache("stage", stage_key, ("stages",), lambda: 1)

        def draw():
            drawings.append(out)
            path = out / "figure.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"drawing {len(drawings)}".encode())
            return [path], {"frames": len(drawings)}
        paths, extra = cache.drawn("figures", draw_key, out, draw)
        assert paths == [out / "figure.png"] and (cache.hits + cache.misses) == 1  # drawing is not counted
        return paths[0].read_bytes(), extra

    first = run({"lr": 0.5}, {"title": "a"}, tmp_path / "first")
    assert run({"lr": 0.5}, {"title": "a"}, tmp_path / "again") == first == (b"drawing 1", {"frames": 1})
    assert drawings == [tmp_path / "first"]  # written again into the new folder without drawing
    assert run({"lr": 0.25}, {"title": "a"}, tmp_path / "other_results")[0] == b"drawing 2"
    assert run({"lr": 0.5}, {"title": "b"}, tmp_path / "other_title")[0] == b"drawing 3"


def test_a_diverged_run_is_named_by_its_label_on_a_fresh_and_a_cached_run(tmp_path, tiny_mlp, tiny_data, capsys):
    cache = StageCache(str(tmp_path))
    for _ in range(2):  # computed, then served from the cache: the same one line, no Python warning
        run = stages.train_run(cache, tiny_mlp, tiny_data, OptimizerSpec("lr", "sgd", 1e6), 50, None, 0,
                               "GD lr=1e+06", {"data": "tiny"})
        out = capsys.readouterr()
        assert run.trajectory.diverged
        assert out.out.count("note: run 'GD lr=1e+06' diverged after epoch") == 1 and not out.err


def _project_imports(module: str, project: set) -> set:
    """The project modules that module.py imports by name."""
    tree = ast.parse((Path(stages.__file__).parent / f"{module}.py").read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {name.split(".")[0] for name in names} & project


def test_every_module_a_stage_runs_is_in_its_code_list():
    """A module the stage's code reaches but its list lacks would leave stale results cached after an edit.
    config.py is the exception: its values reach the stages through their keys, and users edit it."""
    project = {path.stem for path in Path(stages.__file__).parent.glob("*.py")}
    for code in (stages.TRAIN_CODE, stages.SURFACE_CODE, stages.CURVATURE_CODE):
        reached, todo = set(), [m for m in code if m != "stages"]  # stages.py imports every stage's code
        while todo:
            module = todo.pop()
            if module not in reached:
                reached.add(module)
                todo += _project_imports(module, project)
        assert reached - {"config"} <= set(code), sorted(reached - {"config"} - set(code))
