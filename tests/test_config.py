"""The command line and the bounds of every field: a config is either valid or one ConfigError line."""
import dataclasses
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
from config import Config, ConfigError, format_value, parse_args, validate

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- parse_args

def test_both_spellings_and_the_flags():
    cfg, flags = parse_args(["--epochs", "50", "--lr=0.2", "--no-cache", "--quick", "--seed-list", "4,5"])
    assert (cfg.epochs, cfg.lr, cfg.seed_list, flags) == (50, 0.2, (4, 5), {"quick", "no_cache"})
    assert cfg.n_samples == config.quick(Config()).n_samples  # --quick is the base, overrides go on top


def test_help_answers_whatever_else_is_on_the_line():
    assert parse_args(["--bogus", "-h"]) == (Config(), {"help"})
    assert parse_args(["--help"])[1] == {"help"}


def test_optional_sizes_read_none_and_full():
    for name in ("batch_size", "study_batch_size", "eval_batch_size"):
        assert getattr(parse_args([f"--{name}=none"])[0], name) is None
        assert getattr(parse_args([f"--{name}", "full"])[0], name) is None
        assert getattr(parse_args([f"--{name}=64"])[0], name) == 64


def test_integers_written_as_floats_and_bare_switches():
    cfg, _ = parse_args(["--epochs=1e3", "--ignore_bias", "--vis_resolution", "20.0"])
    assert (cfg.epochs, cfg.ignore_bias, cfg.vis_resolution) == (1000, True, 20)
    assert parse_args(["--ignore_bias", "false"])[0].ignore_bias is False


@pytest.mark.parametrize("argv, words", [
    (["epochs=3"], "epochs=3"), (["-x"], "-x"), (["--"], "--"), (["--epochs"], "needs a value"),
    (["--epochs", "--lr=1"], "needs a value"), (["--quick=1"], "takes no value"), (["--bogus=1"], "bogus"),
    (["--epochs=2.5"], "integer"), (["--lr=abc"], "number"), (["--ignore_bias=maybe"], "true or false"),
])
def test_malformed_arguments_are_one_line(argv, words):
    with pytest.raises(ConfigError) as err:
        parse_args(argv)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_apply_overrides_still_works_and_refuses_flags():
    assert config.apply_overrides(Config(), ["--epochs=7", "--lr", "0.5"]).epochs == 7
    with pytest.raises(ConfigError, match="quick"):
        config.apply_overrides(Config(), ["--quick"])


# ---------------------------------------------------------------- bounds

# every case that once gave a traceback or a hang, with the field its one line must name
REFUSED = ["--n_samples=99999999999999999999", "--n_features=99999999999999999999", "--vis_resolution=100000",
           "--lr=1e308", "--noise=1e9", "--noise=1.0000001", "--grid_margin=1e300", "--gif_frame_ms=999999999999",
           "--lr_list=0.1,1e308", "--data_seed=-1", "--data_seed=4294967296", "--momentum=nan", "--noise=nan",
           "--noise=inf", "--grid_margin=nan", "--gif_frame_ms=655360", "--threads=1000000",
           "--curvature_resolution=10000", "--n_features=100000", "--lr=0", "--lr=-0.0", "--compare_adam_lr=inf",
           "--momentum=1", "--n_classes=1", "--batch_size=0", "--eval_batch_size=-5", "--study_batch_size=0",
           "--seed_list=-1", "--epochs=0", "--hidden_dim=0", "--curvature_resolution=1", "--gif_frames=1",
           "--model=net.txt", "--model=file.py:", "--data=x.txt", "--cache_dir=", "--output_dir=",
           "--lr_list=", "--only=nothing", "--dataset=Moons", "--hidden_dim=99999999999"]


@pytest.mark.parametrize("arg", REFUSED)
def test_out_of_range_values_name_the_field_and_the_range(arg):
    field = arg[2:].split("=")[0]
    with pytest.raises(ConfigError) as err:
        parse_args([arg])
    message = str(err.value)
    assert f"'{field}'" in message and "\n" not in message and "expected" in message


def test_noise_means_what_the_data_set_means():
    assert parse_args(["--dataset=moons", "--noise=5"])[0].noise == 5  # jitter in the data's units
    assert parse_args(["--noise=0.99"])[0].noise == 0.99  # a label-flip fraction
    with pytest.raises(ConfigError, match="labels flipped"):
        parse_args(["--noise=1"])
    with pytest.raises(ConfigError, match=r"\[0, 100\]"):
        parse_args(["--dataset=circles", "--noise=101"])


def test_fields_that_depend_on_each_other():
    with pytest.raises(ConfigError, match="n_classes"):
        parse_args(["--n_classes=11", "--n_samples=10"])
    with pytest.raises(ConfigError, match="n_features >= 6"):  # 2 informative features hold 4 classes
        parse_args(["--n_classes=5", "--n_features=4"])
    assert parse_args(["--n_classes=4", "--n_features=4"])[0].n_classes == 4
    with pytest.raises(ConfigError, match="cnn needs images"):
        parse_args(["--model=cnn"])
    assert parse_args(["--model=cnn", "--dataset=digits"])[0].model == "cnn"
    with pytest.raises(ConfigError, match="n_samples x n_features"):
        parse_args(["--n_samples=1000000", "--n_features=1000"])
    with pytest.raises(ConfigError, match="loss"):
        parse_args(["--n_classes=3", "--loss=bce"])


def test_the_ends_of_every_range_are_allowed():
    ends = {**{name: (low, high) for name, (low, high) in config.INT_RANGES.items() if high},
            "threads": (1, config._cpu_count())}
    for name, (low, high) in ends.items():
        for value in (low, high):
            extra = {"n_features": ["--n_samples=10000"], "n_samples": ["--n_features=10"]}.get(name, [])
            extra += ["--n_samples=1000", "--n_features=20"] if name == "n_classes" and value > 10 else []
            assert getattr(parse_args(extra + [f"--{name}={value}"])[0], name) == value
    for value in config.LR_RANGE:
        assert parse_args([f"--lr={value!r}"])[0].lr == value


def test_gif_frame_limit_is_what_a_gif_can_store():
    """A GIF's delay is an unsigned 16-bit count of centiseconds: the largest allowed frame fits."""
    struct.pack("<H", config.INT_RANGES["gif_frame_ms"][1] // 10)
    with pytest.raises(struct.error):
        struct.pack("<H", 655360 // 10)


def test_float32_keeps_every_allowed_learning_rate_finite_and_nonzero():
    import numpy as np
    low, high = (np.float32(v) for v in config.LR_RANGE)
    assert 0 < low and np.isfinite(high) and np.isfinite(high * np.float32(1e4))  # lr x a large gradient
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float32(1e308))  # the case the bound keeps out


def test_repeated_list_entries_are_refused_not_merged():
    for arg in ("--seed_list=1,2,1", "--lr_list=0.1,0.10", "--lr_list=0.5,5e-1"):
        with pytest.raises(ConfigError, match="given twice"):
            parse_args([arg])
    assert parse_args(["--lr_list=0.1,0.1000001"])[0].lr_list == (0.1, 0.1000001)


def test_validate_refuses_wrong_types_and_non_utf8_names():
    for change in ({"epochs": "3"}, {"epochs": True}, {"lr": "0.1"}, {"seed_list": [1]}, {"lr_list": (0.1, "a")},
                   {"output_dir": os.fsdecode(b"fig\xff")}, {"cache_dir": "a\0b"}):
        with pytest.raises(ConfigError, match=next(iter(change))):
            validate(dataclasses.replace(Config(), **change))


# ---------------------------------------------------------------- format_value

def test_format_value_keeps_close_values_apart():
    assert [format_value(x) for x in (0.1, 0.1000001, 2.0, 1e-05, 0.5)] == ["0.1", "0.1000001", "2", "1e-05", "0.5"]


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_value_round_trips(x):
    assert float(format_value(x)) == x


# ---------------------------------------------------------------- property: valid or one line

FIELD_NAMES = [f.name for f in dataclasses.fields(Config)]
TEXTS = st.one_of(st.text(max_size=30), st.integers().map(str), st.floats().map(repr),
                  st.lists(st.floats(0, 3).map(repr), max_size=4).map(",".join),
                  st.sampled_from(["none", "full", "true", "nan", "-inf", "1e308", "1e3", "0", "", ","]))


def _valid_or_one_line(argv):
    try:
        cfg, flags = parse_args(argv)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert validate(cfg) is cfg and flags <= set(config.FLAGS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELD_NAMES), TEXTS, st.booleans())
def test_any_value_of_any_field_is_valid_or_one_line(name, text, spaced):
    _valid_or_one_line([f"--{name}", text] if spaced else [f"--{name}={text}"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=4))
def test_any_argument_list_is_valid_or_one_line(argv):
    _valid_or_one_line(argv)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FIELD_NAMES), TEXTS), min_size=2, max_size=5), st.booleans())
def test_any_mix_of_fields_is_valid_or_one_line(pairs, quick):
    """Several fields at once reach the checks between fields (classes and features, noise and data set)."""
    _valid_or_one_line(["--quick"] * quick + [f"--{name}={text}" for name, text in pairs])


# ---------------------------------------------------------------- no heavy imports

def test_config_imports_no_torch_numpy_or_sklearn():
    code = "import sys, config; config.parse_args(['--quick']); config.help_text(); " \
           "print(sorted(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cpu_count_is_at_least_one():
    assert config._cpu_count() >= 1 and math.isfinite(config._cpu_count())


@pytest.mark.parametrize("n_features", [2, 3, 4, 6, 8, 12])
def test_class_counts_agree_with_the_data_set_itself(n_features):
    """The config accepts a class count exactly when data.py can draw it (the oracle)."""
    from data import make_dataset
    for n_classes in (2, 3, 4, 5, 8, 9, 16, 17, 64, 65):
        try:
            parse_args([f"--n_features={n_features}", f"--n_classes={n_classes}", "--n_samples=200"])
            accepted = True
        except ConfigError:
            accepted = False
        try:
            make_dataset("classification", 200, n_features, 0.1, 0, n_classes=n_classes)
            drawn = True
        except (ValueError, ConfigError):
            drawn = False
        assert accepted == drawn, (n_features, n_classes)
