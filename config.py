"""Every knob of the pipeline: one frozen dataclass, its validation and --key=value overrides."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass


class ConfigError(ValueError):
    """A config value a user set is out of range; the message names the field."""


@dataclass(frozen=True)
class Config:
    # --- data ---
    dataset: str = "classification"  # classification | moons | circles | breast_cancer
    n_samples: int = 1000  # points drawn for the synthetic data sets (breast_cancer has 569)
    n_features: int = 10  # input features of 'classification' (moons, circles: 2; breast_cancer: 30)
    noise: float = 0.1  # label noise (classification) or point jitter (moons, circles)
    data_seed: int = 0  # seed of the data set draw, fixed across model seeds
    n_classes: int = 2  # classes of 'classification' (2: binary cross-entropy; more: cross-entropy)
    data: str = ""  # your own data: a .csv (last column = label) or .npz (arrays X, y); replaces dataset
    loss: str = "auto"  # auto (from the labels) | bce | ce | mse

    # --- models ---
    model: str = "mlp"  # mlp | cnn | path/to/file.py:function; logistic regression runs beside it as the convex baseline
    hidden_dim: int = 32  # width of the MLP's hidden layer

    # --- training ---
    epochs: int = 300  # passes over the training set; one checkpoint per epoch (300 full-batch steps reach a minimum)
    lr: float = 0.5  # learning rate of the main runs
    optimizer: str = "sgd"  # sgd | adam, for the main runs
    momentum: float = 0.0  # SGD momentum of the main runs
    batch_size: typing.Optional[int] = None  # mini-batch size of the main runs; None = full batch (gradient descent)
    seed_list: tuple = tuple(range(10))  # one run per seed: different initialisations

    # --- optimiser comparison (one shared initialisation) ---
    compare_sgd_lr: float = 0.5  # learning rate of plain SGD
    compare_momentum_lr: float = 0.5  # learning rate of SGD with momentum
    compare_momentum: float = 0.9  # momentum of that run
    compare_adam_lr: float = 0.05  # learning rate of Adam

    # --- learning-rate sensitivity ---
    lr_list: tuple = (0.1, 0.5, 1.0, 2.0)  # SGD learning rates drawn on one plane
    study_batch_size: typing.Optional[int] = None  # batch size of the optimiser and learning-rate studies; None = full batch (edge of stability)

    # --- landscape geometry ---
    direction_norm: str = "none"  # none: orthonormal PCA plane (Li et al.'s trajectory plots) | filter | layer: PCA directions rescaled per filter (the seed's method)
    ignore_bias: bool = False  # zero the bias part of the directions instead of rescaling it
    vis_resolution: int = 50  # grid points per axis of every loss surface
    grid_margin: float = 0.25  # extra room around the paths, as a fraction of their extent

    # --- curvature ---
    hessian_method: str = "auto"  # auto | exact | lanczos | power
    curvature_every: int = 3  # Hessian eigenvalues at every k-th checkpoint
    curvature_resolution: int = 11  # grid of the |λmin/λmax| map per axis; 0 turns it off

    # --- animation ---
    gif_frames: int = 60  # frame budget per GIF; longer paths are subsampled
    gif_frame_ms: int = 80  # duration of one frame in milliseconds

    # --- output and hardware ---
    output_dir: str = "figures"  # where every PNG, GIF, HTML and summary.json goes
    device: str = "auto"  # cpu | cuda | auto (CUDA when present)
    threads: int = 1  # torch CPU threads; one is fastest for models this small, more only for big ones
    eval_batch_size: typing.Optional[int] = None  # samples per batch of every full-data evaluation (loss, surface, gradient, Hessian); None = all at once
    cache_dir: str = ".cache"  # computation stages cached here (--no-cache ignores it; make clean removes it)
    only: tuple = ()  # make only these output groups (e.g. --only=surfaces,html); empty = all
    skip: tuple = ()  # skip these output groups (e.g. --skip=gifs,curvature)


CHOICES = {
    "dataset": ("classification", "moons", "circles", "breast_cancer"),
    "optimizer": ("sgd", "adam"),
    "direction_norm": ("filter", "layer", "none"),
    "loss": ("auto", "bce", "ce", "mse"),
    "hessian_method": ("auto", "exact", "lanczos", "power"),
    "device": ("cpu", "cuda", "auto"),
}
OUTPUT_GROUPS = ("surfaces", "multi_seed", "curvature", "isomap", "optimizers",
                 "lr_sensitivity", "interpolation", "eigen_ratio", "gifs", "html")

# (field, smallest allowed value, what the field must be)
_MINIMA = [
    ("n_samples", 10, "an integer >= 10"), ("n_features", 2, "an integer >= 2"),
    ("hidden_dim", 1, "an integer >= 1"), ("epochs", 1, "an integer >= 1"),
    ("vis_resolution", 2, "an integer >= 2"), ("curvature_every", 1, "an integer >= 1"),
    ("curvature_resolution", 0, "0 (off) or an integer >= 2"), ("gif_frames", 2, "an integer >= 2"),
    ("gif_frame_ms", 10, "an integer >= 10 (milliseconds)"), ("threads", 1, "an integer >= 1"), ("noise", 0.0, "a number >= 0"),
    ("momentum", 0.0, "a number in [0, 1)"), ("compare_momentum", 0.0, "a number in [0, 1)"),
    ("grid_margin", 0.0, "a number >= 0"),
]


def validate(cfg: Config) -> Config:
    """Raise ConfigError naming the first field whose value is not allowed."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            _fail(name, getattr(cfg, name), "one of " + ", ".join(allowed))
    for name, low, what in _MINIMA:
        if getattr(cfg, name) < low:
            _fail(name, getattr(cfg, name), what)
    for name in ("momentum", "compare_momentum"):
        if getattr(cfg, name) >= 1:
            _fail(name, getattr(cfg, name), "a number in [0, 1)")
    for name in ("lr", "compare_sgd_lr", "compare_momentum_lr", "compare_adam_lr"):
        if not 0 < getattr(cfg, name) < float("inf"):
            _fail(name, getattr(cfg, name), "a positive finite number")
    if cfg.curvature_resolution == 1:
        _fail("curvature_resolution", 1, "0 (off) or an integer >= 2")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        _fail("batch_size", cfg.batch_size, "none (full batch) or an integer >= 1")
    if not cfg.seed_list or any(s < 0 for s in cfg.seed_list):
        _fail("seed_list", cfg.seed_list, "one or more non-negative integers, e.g. 0,1,2")
    if not cfg.lr_list or any(not 0 < lr < float("inf") for lr in cfg.lr_list):
        _fail("lr_list", cfg.lr_list, "one or more positive numbers, e.g. 0.1,0.5")
    for name in ("only", "skip"):
        unknown = [g for g in getattr(cfg, name) if g not in OUTPUT_GROUPS]
        if unknown:
            _fail(name, ",".join(unknown), "a comma list of " + ", ".join(OUTPUT_GROUPS))
    if not cfg.output_dir:
        _fail("output_dir", cfg.output_dir, "a folder path")
    return cfg


def wants(cfg: Config, group: str) -> bool:
    """Whether output group `group` is made under --only / --skip."""
    return (not cfg.only or group in cfg.only) and group not in cfg.skip


def _fail(name, value, allowed):
    raise ConfigError(f"config field '{name}' = {value!r} is not allowed: expected {allowed}")


# ---------------------------------------------------------------- command line

_TUPLE_ITEM = {"seed_list": int, "lr_list": float, "only": str, "skip": str}


def parse_value(name: str, text: str):
    """Turn the text of --name=text into a value of the type of that field's default."""
    default = Config.__dataclass_fields__[name].default
    try:
        if name in _TUPLE_ITEM:
            return tuple(_TUPLE_ITEM[name](t) for t in text.split(",") if t.strip())
        if name == "batch_size":
            return None if text.lower() in ("none", "full", "") else int(text)
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        return type(default)(text)
    except ValueError:
        kind = (f"comma-separated list of {_TUPLE_ITEM[name].__name__}s" if name in _TUPLE_ITEM
                else {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
                    type(default).__name__, f"a {type(default).__name__}"))
        kind = kind if name not in _TUPLE_ITEM else "a " + kind
        raise ConfigError(f"config field '{name}' = {text!r} is not allowed: expected {kind}") from None


def apply_overrides(cfg: Config, args: list[str]) -> Config:
    """Apply --key=value arguments; unknown keys and badly typed values raise ConfigError."""
    changes = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not of the form --key=value")
        key, text = arg[2:].split("=", 1)
        if key not in Config.__dataclass_fields__:
            raise ConfigError(f"unknown config field '{key}' (python main.py --help lists them)")
        changes[key] = parse_value(key, text)
    return validate(dataclasses.replace(cfg, **changes))


def quick(cfg: Config) -> Config:
    """A small preset that exercises every stage in a few seconds."""
    return dataclasses.replace(cfg, n_samples=200, epochs=30, seed_list=(0, 1, 2), vis_resolution=15,
                               curvature_resolution=5, curvature_every=3, gif_frames=12,
                               hidden_dim=min(cfg.hidden_dim, 16))


def help_text() -> str:
    """Every field with its default and its comment, read from this file."""
    import inspect
    comments = {}
    for line in inspect.getsource(Config).splitlines():
        if ":" in line and "#" in line and "=" in line:
            name = line.split(":")[0].strip()
            comments[name] = line.split("#", 1)[1].strip()
    rows = [f"  --{f.name}={_show(f.default)}".ljust(34) + comments.get(f.name, "")
            for f in dataclasses.fields(Config)]
    return "\n".join(rows)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
