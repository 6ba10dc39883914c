"""Built-in data sets with their natural losses, and the user's own .csv/.npz files with one-line errors."""
import numpy as np
import pytest
import torch

from config import ConfigError
from data import load_data_file, make_dataset


def _standardised(X):
    return torch.allclose(X.mean(0), torch.zeros(X.shape[1]), atol=1e-5) and \
        torch.allclose(X.std(0, unbiased=False), torch.ones(X.shape[1]), atol=1e-4)


# ---------------------------------------------------------------- built-in

def test_digits_are_images_with_ten_integer_classes():
    from sklearn.datasets import load_digits
    data = make_dataset("digits")
    raw = load_digits()
    assert data.X.shape == (1797, 64) and data.image_shape == (1, 8, 8)
    assert data.y.dtype == torch.int64 and torch.equal(data.y, torch.as_tensor(raw.target))
    assert (data.n_classes, data.loss_kind) == (10, "ce")
    # a pixel that varies is standardised; a pixel that is always 0 (the corners) stays 0
    varying = raw.data.std(0) > 0
    assert torch.allclose(data.X[:, varying].std(0, unbiased=False), torch.ones(int(varying.sum())), atol=1e-4)
    assert torch.equal(data.X[:, ~varying], torch.zeros(1797, int((~varying).sum())))
    # row-major flattening: feature 8 r + c is pixel (r, c) of the 8x8 image, standardised
    std = np.where(varying, raw.data.std(0), 1.0)
    pixels = (raw.images.reshape(1797, 64) - raw.data.mean(0)) / std
    assert torch.allclose(data.X, torch.tensor(pixels, dtype=torch.float32), atol=1e-5)


@pytest.mark.parametrize("n_classes, n_features", [(2, 6), (4, 6), (3, 2)])
def test_classification_with_n_classes(n_classes, n_features):
    a = make_dataset("classification", 200, n_features, 0.05, seed=1, n_classes=n_classes)
    b = make_dataset("classification", 200, n_features, 0.05, seed=1, n_classes=n_classes)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and _standardised(a.X)
    assert set(a.y.tolist()) == set(range(n_classes)) and a.n_classes == n_classes
    assert (a.loss_kind, a.y.dtype) == (("bce", torch.float32) if n_classes == 2 else ("ce", torch.int64))
    assert a.image_shape is None


def test_too_many_classes_for_the_features_names_the_field():
    with pytest.raises(ConfigError, match="n_classes"):
        make_dataset("classification", 100, 2, n_classes=5)


def test_for_loss_retypes_labels_or_refuses():
    binary = make_dataset("moons", 50, seed=0)
    assert binary.for_loss("ce").y.dtype == torch.int64 and binary.for_loss("ce").loss_kind == "ce"
    assert binary.for_loss("mse").y.dtype == torch.float32 and binary.for_loss("auto") is binary
    with pytest.raises(ConfigError, match="loss bce needs 2 classes"):
        make_dataset("digits").for_loss("bce")


# ---------------------------------------------------------------- user files

def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_header_gives_standardised_features_and_renumbered_classes(tmp_path):
    path = _csv(tmp_path, "a,b,label\n1,10,3\n2,20,7\n3,30,3\n\n4,45,7\n")
    data = load_data_file(path)
    raw = np.array([[1, 10], [2, 20], [3, 30], [4, 45]], dtype=float)
    expected = (raw - raw.mean(0)) / raw.std(0)
    assert torch.allclose(data.X, torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(data.y, torch.tensor([0.0, 1.0, 0.0, 1.0])) and data.loss_kind == "bce"
    assert data.name == "d" and data.n_classes == 2


def test_csv_without_header_and_auto_loss(tmp_path):
    three = load_data_file(_csv(tmp_path, "0.5,1\n1.5,2\n2.5,0\n3.5,1\n"))
    assert (three.loss_kind, three.n_classes, three.y.dtype) == ("ce", 3, torch.int64)
    regression = load_data_file(_csv(tmp_path, "0.5,1.25\n1.5,2\n2.5,0\n", "r.csv"))
    assert regression.loss_kind == "mse" and torch.allclose(regression.y, torch.tensor([1.25, 2.0, 0.0]))


def test_npz_images_keep_their_shape_and_the_examples_load():
    blobs = load_data_file("examples/blobs.npz")
    assert (blobs.X.shape, blobs.loss_kind, blobs.n_classes) == ((300, 2), "ce", 3)
    assert _standardised(blobs.X)
    wave = load_data_file("examples/wave.csv")
    assert (wave.X.shape, wave.loss_kind) == ((200, 2), "mse")


def test_the_committed_blobs_are_what_the_script_makes():
    from examples.make_data import make_blobs
    X, y = make_blobs()
    with np.load("examples/blobs.npz") as f:
        assert np.array_equal(f["X"], X) and np.array_equal(f["y"], y)


def test_npz_with_images(tmp_path):
    path = tmp_path / "img.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.standard_normal((20, 4, 4)), y=np.arange(20) % 2)
    data = load_data_file(str(path))
    assert data.X.shape == (20, 16) and data.image_shape == (1, 4, 4)


@pytest.mark.parametrize("name, content, loss, message", [
    ("d.csv", "a,b,y\n1,2,0\n3,x,1\n", "auto", r"row 3, column 2 \('b'\) holds 'x', not a finite number"),
    ("d.csv", "1,2,0\n3,nan,1\n", "auto", "row 2, column 2 holds 'nan'"),
    ("d.csv", "1,2,0\n3,,1\n", "auto", "row 2, column 2 is empty"),
    ("d.csv", "1,2,0\n3,4\n", "auto", "row 2 has 2 columns, expected 3"),
    ("d.csv", "a,b,label\n", "auto", "header row but no data rows"),
    ("d.csv", "", "auto", "is empty"),
    ("d.csv", "1,2,1\n3,4,1\n", "auto", r"single class \(label 1\)"),
    ("d.csv", "1,2,0\n3,4,0.5\n", "ce", "row 2 label 0.5 is not an integer class"),
    ("d.csv", "1,0\n2,1\n3,2\n", "bce", "has 3 classes but loss bce takes 2"),
    ("d.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "auto", "is not a text CSV file"),
    ("d.npz", "a,b\n1,2\n", "auto", r"is not a \.npz archive"),
    ("d.txt", "1,2\n", "auto", r"must end in \.csv or \.npz"),
    ("absent.csv", None, "auto", "does not exist"),
])
def test_file_problems_are_one_config_error_naming_the_place(tmp_path, name, content, loss, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_data_file(str(path), loss)
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, "X has 3 rows but y has 4 labels"),
    ({"features": np.zeros((3, 2)), "y": np.zeros(3)}, r"no array 'X' \(it holds: features, y\)"),
    ({"X": np.zeros((3, 2))}, "no array 'y'"),
    ({"X": np.array([[0.0, np.inf], [1, 2]]), "y": np.array([0, 1])}, r"X\[0, 1\] is not a finite number"),
    ({"X": np.zeros((2, 2)), "y": np.array(["a", "b"])}, "array y holds <U1 values, not numbers"),
])
def test_npz_problems(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=message):
        load_data_file(str(path))


def test_a_single_npy_array_named_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="single .npy array"):
        load_data_file(str(path))
