"""Shared tiny fixtures: the project's modules sit at the repository root."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import make_dataset  # noqa: E402
from models import FlatModel, build_model  # noqa: E402
from training import OptimizerSpec, train  # noqa: E402


@pytest.fixture
def tiny_data():
    return make_dataset("classification", n_samples=64, n_features=4, noise=0.05, seed=0)


@pytest.fixture
def tiny_mlp(tiny_data):
    return FlatModel(build_model("mlp", tiny_data.n_features, hidden_dim=5, seed=0))


@pytest.fixture
def tiny_run(tiny_mlp, tiny_data):
    return train(tiny_mlp, tiny_data.X, tiny_data.y, OptimizerSpec("gd", "sgd", 0.5), epochs=12)


@pytest.fixture(autouse=True)
def _float32_one_thread():
    """float32 by default, and one torch thread: the tests' tiny tensors only lose time to thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
