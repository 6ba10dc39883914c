"""Every knob of the pipeline: one frozen dataclass, its validation and the command line (no torch here)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass


class ConfigError(ValueError):
    """A config value a user set is out of range; the message names the field."""


@dataclass(frozen=True)
class Config:
    # --- data ---
    dataset: str = "classification"  # classification | moons | circles | breast_cancer | digits (8x8 images, 10 classes)
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
    epochs: int = 200  # passes over the training set; one checkpoint per epoch (200 full-batch steps at lr 0.5 end every seed at <= 7.4 % of its initial gradient norm)
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
    "dataset": ("classification", "moons", "circles", "breast_cancer", "digits"),
    "optimizer": ("sgd", "adam"),
    "direction_norm": ("filter", "layer", "none"),
    "loss": ("auto", "bce", "ce", "mse"),
    "hessian_method": ("auto", "exact", "lanczos", "power"),
    "device": ("cpu", "cuda", "auto"),
}
OUTPUT_GROUPS = ("surfaces", "plane_choice", "multi_seed", "sharpness", "curvature", "spectrum", "isomap", "optimizers",
                 "lr_sensitivity", "interpolation", "eigen_ratio", "gifs", "html")
FLAGS = ("quick", "no_cache", "help")  # command-line words that are not config fields

# ---------------------------------------------------------------- bounds

SEED_MAX = 2**32 - 1  # numpy's RandomState (the data draw) takes seeds in [0, 2**32 - 1]
# Learning rates: the weights are float32 (largest 3.4e38). A step lr * grad beyond ~1e4 on standardised
# data overflows to inf within a step or two (--lr=1e308 is inf once cast); below 1e-8 a float32 weight
# of size ~1 (spacing 1.2e-7) does not move at all. Both ends are runs that cannot show a landscape.
LR_RANGE = (1e-8, 1e4)
# field: (lowest, highest, why the highest); every int field that is not a list or optional
INT_RANGES = {
    "n_samples": (10, 10_000_000),  # drawn in float64 by scikit-learn: 1e7 rows of 10 features = 800 MB
    "n_features": (2, 10_000),  # a weight per feature and hidden unit; more is not a landscape study
    "n_classes": (2, 1000),  # and at most n_samples (checked below)
    "hidden_dim": (1, 10**9),  # only absurd widths here; budget.py refuses what the machine cannot hold
    "epochs": (1, 10**9),  # likewise: budget.py estimates the time and memory of the paths
    "vis_resolution": (2, 1000),  # 1000 x 1000 = 1e6 loss evaluations per plane; HTML of more will not open
    "curvature_every": (1, 10**9),
    "curvature_resolution": (0, 200),  # each point is one Hessian eigen-solve: 200 x 200 = 40,000 of them
    "gif_frames": (2, 1000),  # every frame is rendered and held in memory (~0.5 MB each)
    "gif_frame_ms": (10, 65535),  # GIF stores a frame's delay in 16 bits (centiseconds); over a minute is plenty
    "data_seed": (0, SEED_MAX),
    "threads": (1, None),  # None: the CPUs this process may use (more threads only wait on each other)
}
FLOAT_RANGES = {  # field: (lowest, highest, highest included?)
    "lr": (*LR_RANGE, True), "compare_sgd_lr": (*LR_RANGE, True),
    "compare_momentum_lr": (*LR_RANGE, True), "compare_adam_lr": (*LR_RANGE, True),
    "momentum": (0.0, 1.0, False), "compare_momentum": (0.0, 1.0, False),  # 1 never forgets: no convergence
    "grid_margin": (0.0, 10.0, True),  # fraction of the paths' extent; 10 already shows 21x the path's area
}
# noise is a label-flip fraction in [0, 1) for 'classification' (1 would make every label random); for
# moons/circles a point jitter in the data's own units (the moons span ~3): beyond 100 only noise remains
NOISE_RANGES = {"classification": (0.0, 1.0, False), "other": (0.0, 100.0, True)}
OPTIONAL_INTS = {"batch_size": 10**9, "study_batch_size": 10**9, "eval_batch_size": 10**9}  # None = full batch
LISTS = {"seed_list": (int, 1000), "lr_list": (float, 100), "only": (str, None), "skip": (str, None)}  # item, most
MAX_DATA_VALUES = 100_000_000  # n_samples x n_features of 'classification': 800 MB in float64
TEXT_FIELDS = ("dataset", "data", "loss", "model", "optimizer", "direction_norm", "hessian_method",
               "output_dir", "device", "cache_dir")
MODEL_FILE = re.compile(r".+\.py:[A-Za-z_][A-Za-z0-9_]*")


def validate(cfg: Config) -> Config:
    """Raise ConfigError (one line) naming the first field whose value a run cannot honour."""
    _check_types(cfg)
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            _fail(name, getattr(cfg, name), "one of " + ", ".join(allowed))
    _check_ranges(cfg)
    _check_lists(cfg)
    _check_text(cfg)
    _check_together(cfg)
    return cfg


def _check_types(cfg):
    for f in dataclasses.fields(Config):
        value, default = getattr(cfg, f.name), f.default
        if f.name in OPTIONAL_INTS:
            ok = value is None or _is_int(value)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = _is_int(value)
        elif isinstance(default, float):
            ok = _is_int(value) or isinstance(value, float)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            _fail(f.name, value, _kind(f.name))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ranges(cfg):
    for name, (low, high) in INT_RANGES.items():
        high = _cpu_count() if high is None else high
        if not low <= getattr(cfg, name) <= high:
            _fail(name, getattr(cfg, name), f"an integer in [{low}, {high}]" +
                  (" (the CPUs this process may use)" if name == "threads" else ""))
    synthetic = not cfg.data and cfg.dataset == "classification"
    noise = NOISE_RANGES["classification" if synthetic else "other"]
    for name, (low, high, closed) in [*FLOAT_RANGES.items(), ("noise", noise)]:
        value = getattr(cfg, name)
        if not (low <= value <= high if closed else low <= value < high):  # False for NaN
            _fail(name, value, f"a number in [{format_value(low)}, {format_value(high)}{']' if closed else ')'}"
                  + (" (the fraction of labels flipped)" if name == "noise" and synthetic else ""))
    if cfg.curvature_resolution == 1:
        _fail("curvature_resolution", 1, "0 (off) or an integer in [2, 200]")
    for name, high in OPTIONAL_INTS.items():
        value = getattr(cfg, name)
        if value is not None and not 1 <= value <= high:
            _fail(name, value, f"none (full batch) or an integer in [1, {high}]")


def _check_lists(cfg):
    """Each entry of seed_list and lr_list is one run: none may be out of range or given twice."""
    for name, (item, most) in LISTS.items():
        values = getattr(cfg, name)
        if not all(isinstance(v, item) and not isinstance(v, bool) or item is float and _is_int(v)
                   for v in values):
            _fail(name, values, _kind(name))
        if most and not 1 <= len(values) <= most:
            _fail(name, values, f"1 to {most} comma-separated values")
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if most and repeated:
            _fail(name, values, f"distinct values, each one run ({_short(repeated[0])} is given twice)")
    if not all(0 <= s <= SEED_MAX for s in cfg.seed_list):
        _fail("seed_list", cfg.seed_list, f"integers in [0, {SEED_MAX}], e.g. 0,1,2")
    if not all(LR_RANGE[0] <= lr <= LR_RANGE[1] for lr in cfg.lr_list):
        _fail("lr_list", cfg.lr_list, f"numbers in [{format_value(LR_RANGE[0])}, {format_value(LR_RANGE[1])}]")
    for name in ("only", "skip"):
        unknown = [g for g in getattr(cfg, name) if g not in OUTPUT_GROUPS]
        if unknown:
            _fail(name, ",".join(unknown), "a comma list of " + ", ".join(OUTPUT_GROUPS))


def _check_text(cfg):
    for name in TEXT_FIELDS:
        value = getattr(cfg, name)
        if "\0" in value:
            _fail(name, value, "text without NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 (surrogate escapes): they could not be printed
            _fail(name, value, "a UTF-8 name (rename the file or folder)")
    if cfg.model not in ("mlp", "cnn") and not MODEL_FILE.fullmatch(cfg.model):
        _fail("model", cfg.model, "mlp, cnn or path/to/file.py:function")
    if cfg.data and not cfg.data.lower().endswith((".csv", ".npz")):
        _fail("data", cfg.data, "empty (a built-in data set) or a path ending in .csv or .npz")
    for name in ("output_dir", "cache_dir"):
        if not getattr(cfg, name):
            _fail(name, getattr(cfg, name), "a folder path")


def _check_together(cfg):
    """Fields whose allowed values depend on another field."""
    synthetic = not cfg.data and cfg.dataset == "classification"
    if cfg.n_classes > cfg.n_samples:
        _fail("n_classes", cfg.n_classes, f"at most n_samples = {cfg.n_samples}")
    if synthetic and cfg.n_samples * cfg.n_features > MAX_DATA_VALUES:
        _fail("n_samples", cfg.n_samples, f"n_samples x n_features <= {MAX_DATA_VALUES:.0e} "
              f"(with n_features = {cfg.n_features}: n_samples <= {MAX_DATA_VALUES // cfg.n_features})")
    # data.py makes max(2, n_features // 2) features informative; they hold at most 2 ** informative classes
    if synthetic and cfg.n_classes > 2 ** max(2, min(cfg.n_features // 2, 64)):
        needed = 2 * math.ceil(math.log2(cfg.n_classes))
        _fail("n_classes", cfg.n_classes, f"a count that n_features = {cfg.n_features} can separate "
              f"(n_features >= {needed} for {cfg.n_classes} classes)")
    if cfg.model == "cnn" and not cfg.data and cfg.dataset != "digits":
        _fail("model", cfg.model, "mlp or a file for tabular data (cnn needs images: dataset=digits or an .npz "
              "whose X is (n, H, W))")
    if synthetic and cfg.loss == "bce" and cfg.n_classes > 2:
        _fail("loss", cfg.loss, "ce, mse or auto for n_classes > 2 (bce is for two classes)")


def wants(cfg: Config, group: str) -> bool:
    """Whether output group `group` is made under --only / --skip."""
    return (not cfg.only or group in cfg.only) and group not in cfg.skip


def format_value(x: float) -> str:
    """The shortest text that reads back as exactly x (0.1 and 0.1000001 stay distinct); 2.0 -> '2'."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _short(value) -> str:
    """repr of a value, cut to one readable line (a pasted 10 kB string stays a short error)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "..." + text[-15:]


def _fail(name, value, allowed):
    raise ConfigError(f"config field '{name}' = {_short(value)} is not allowed: expected {allowed}")


# ---------------------------------------------------------------- command line

BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
              "off": False}


def parse_args(argv) -> tuple[Config, set]:
    """The command line -> (validated Config, flags such as {"quick", "no_cache", "help"}).

    Accepts --key=value, --key value, --quick, --no-cache and --help / -h; dashes in keys read as
    underscores. With --help nothing else is parsed: the help always answers.
    """
    args = list(argv)
    if "--help" in args or "-h" in args:
        return Config(), {"help"}
    flags, changes = _split(args)
    base = quick(Config()) if "quick" in flags else Config()
    return _apply(base, changes), flags


def apply_overrides(cfg: Config, args: list[str]) -> Config:
    """Apply --key=value (or --key value) arguments to cfg; flags are not accepted here."""
    flags, changes = _split(list(args))
    if flags:
        raise ConfigError(f"--{sorted(flags)[0]} is a flag of main.py, not a config field")
    return _apply(cfg, changes)


def _split(args: list) -> tuple[set, list]:
    """Flags and (key, text) pairs, in order; a malformed argument is one ConfigError line."""
    flags, changes, i = set(), [], 0
    while i < len(args):
        arg, i = args[i], i + 1
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"argument {_short(arg)} is not of the form --key=value or --key value")
        key, has_value, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key in FLAGS:
            if has_value:
                raise ConfigError(f"--{key} takes no value (got {_short(arg)})")
            flags.add(key)
            continue
        if key not in Config.__dataclass_fields__:
            raise ConfigError(f"unknown config field {_short(key)} (python main.py --help lists them)")
        if not has_value:
            following = args[i] if i < len(args) else None
            if isinstance(Config.__dataclass_fields__[key].default, bool) and \
                    str(following).lower() not in BOOL_WORDS:
                following, i = "true", i - 1  # a bare boolean switch: --ignore_bias
            elif following is None or following.startswith("--"):
                raise ConfigError(f"--{key} needs a value: --{key}=VALUE or --{key} VALUE")
            text, i = following, i + 1
        changes.append((key, text))
    return flags, changes


def _apply(cfg: Config, changes: list) -> Config:
    values = {key: parse_value(key, text) for key, text in changes}  # a repeated key: the last one wins
    return validate(dataclasses.replace(cfg, **values))


def parse_value(name: str, text: str):
    """Turn the text of --name=text into a value of the type of that field's default."""
    if name not in Config.__dataclass_fields__:
        raise ConfigError(f"unknown config field {_short(name)} (python main.py --help lists them)")
    default = Config.__dataclass_fields__[name].default
    try:
        if name in LISTS:
            item = {int: _to_int, float: float, str: str.strip}[LISTS[name][0]]
            return tuple(item(t) for t in text.split(",") if t.strip())
        if name in OPTIONAL_INTS:
            return None if text.strip().lower() in ("none", "full", "") else _to_int(text)
        if isinstance(default, bool):
            return BOOL_WORDS[text.strip().lower()]
        if isinstance(default, int):
            return _to_int(text)
        return type(default)(text)
    except (ValueError, KeyError, OverflowError):
        raise ConfigError(f"config field '{name}' = {_short(text)} is not allowed: expected {_kind(name)}") from None


def _to_int(text: str) -> int:
    """An integer, also written as 1e3 or 100.0; 2.5 and words are a ValueError."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():  # also NaN and inf
            raise
        return int(value)


def _kind(name: str) -> str:
    if name in LISTS:
        return f"a comma-separated list of {LISTS[name][0].__name__}s"
    if name in OPTIONAL_INTS:
        return "none (full batch) or an integer"
    default = Config.__dataclass_fields__[name].default
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(type(default), "a value")


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
