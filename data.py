"""Data sets: built-in (tabular and 8x8 digit images) and the user's own .csv/.npz, standardised and deterministic."""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn import datasets as skd

from config import ConfigError

DATASETS = ("classification", "moons", "circles", "breast_cancer", "digits")


@dataclass
class Dataset:
    X: torch.Tensor  # (n, d) float32, standardised per feature (images flattened row-major)
    y: torch.Tensor  # (n,) float32 0/1 labels (bce), int64 classes (ce) or float32 targets (mse)
    name: str
    n_classes: int = 2  # classes of the labels; 0 for regression targets
    loss_kind: str = "bce"  # the natural loss of the labels: bce (2 classes), ce (more), mse (float targets)
    image_shape: tuple | None = None  # (C, H, W) of each row of X for image data, None for tabular

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def to(self, device) -> "Dataset":
        return dataclasses.replace(self, X=self.X.to(device), y=self.y.to(device))

    def for_loss(self, loss: str) -> "Dataset":
        """The data with labels typed for `loss` ("auto" = its own loss_kind); ConfigError if they cannot be."""
        if loss in ("auto", self.loss_kind):
            return self
        if loss == "mse":
            return dataclasses.replace(self, y=self.y.float(), loss_kind="mse", n_classes=0)
        if self.loss_kind == "mse":
            raise ConfigError(f"loss {loss} needs class labels, but data set '{self.name}' has "
                              f"regression targets (use loss mse)")
        if loss == "bce" and self.n_classes > 2:
            raise ConfigError(f"loss bce needs 2 classes, data set '{self.name}' has {self.n_classes} (use loss ce)")
        dtype = torch.int64 if loss == "ce" else torch.float32
        return dataclasses.replace(self, y=self.y.to(dtype), loss_kind=loss)


def make_dataset(name: str = "classification", n_samples: int = 1000, n_features: int = 10,
                 noise: float = 0.1, seed: int = 0, n_classes: int = 2) -> Dataset:
    """Draw a data set by name; the same arguments always give the same tensors.

    n_features and n_classes apply to "classification"; "moons" and "circles" are 2-D and binary,
    "breast_cancer" has its 30 measured features (binary) and "digits" its 1797 8x8 images (10 classes).
    """
    rng = np.random.RandomState(seed)
    image_shape = None
    if name == "classification":
        X, y = _classification(n_samples, n_features, n_classes, noise, rng)
    elif name in ("moons", "circles"):
        make = skd.make_moons if name == "moons" else skd.make_circles
        kwargs = {"factor": 0.5} if name == "circles" else {}
        X, y = make(n_samples=n_samples, noise=noise, random_state=rng, **kwargs)  # 2-D by nature
    elif name == "breast_cancer":
        X, y = skd.load_breast_cancer(return_X_y=True)  # ships inside scikit-learn: no download
    elif name == "digits":
        X, y = skd.load_digits(return_X_y=True)  # (1797, 64) pixel intensities 0..16, no download
        image_shape = (1, 8, 8)
    else:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return _as_dataset(X, y, name, "ce" if len(np.unique(y)) > 2 else "bce", image_shape)


def _classification(n_samples, n_features, n_classes, noise, rng):
    informative = max(2, n_features // 2)
    if n_classes > 2 ** informative:
        raise ConfigError(f"config field 'n_classes' = {n_classes} is not allowed: 'classification' with "
                          f"{n_features} features holds at most {2 ** informative} classes")
    clusters = 2 if 2 * n_classes <= 2 ** informative else 1  # make_classification's own limit
    return skd.make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=informative,
        n_redundant=min(2, n_features - informative), n_classes=n_classes, n_clusters_per_class=clusters,
        flip_y=noise, random_state=rng)


def _as_dataset(X: np.ndarray, y: np.ndarray, name: str, loss: str, image_shape=None) -> Dataset:
    """Standardise X per feature (a constant feature stays 0) and type y for the loss."""
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if loss == "mse":
        return Dataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                       name, 0, "mse", image_shape)
    classes = len(np.unique(y))
    dtype = torch.int64 if loss == "ce" else torch.float32
    return Dataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=dtype), name, classes, loss,
                   image_shape)


# ---------------------------------------------------------------- the user's own file

def load_data_file(path: str, loss: str = "auto") -> Dataset:
    """A .csv (last column = label, one header row allowed) or .npz (arrays X and y) as a Dataset.

    loss "auto" treats integer-valued labels as classes (2: bce, more: ce) and others as
    regression targets (mse). Class labels are renumbered 0..C-1 in sorted order. Every problem
    with the file is one ConfigError line naming the file and the row or column.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"data file {file} does not exist")
    if file.suffix.lower() == ".csv":
        X, y, where = _read_csv(file)
    elif file.suffix.lower() == ".npz":
        X, y, where = _read_npz(file)
    else:
        raise ConfigError(f"data file {file} must end in .csv or .npz")
    return from_arrays(X, y, file.stem, loss, where, f"data file {file}")


def from_arrays(X, y, name: str = "your data", loss: str = "auto", where=None, source: str | None = None) -> Dataset:
    """Features X (n, d), or images (n, H, W) / (n, C, H, W), and labels y (n,) as a standardised Dataset.

    Labels follow load_data_file's rules; a problem is one ConfigError line naming the source.
    """
    X, y = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64) for a in (X, y))
    source, where = source or f"data {name!r}", where or (lambda i: f"sample {i}")
    if y.ndim != 1 or len(y) != len(X):
        raise ConfigError(f"{source}: X has {len(X)} rows but y has shape {y.shape}: expected ({len(X)},)")
    image_shape = None
    if X.ndim >= 3:  # (n, H, W) or (n, C, H, W) images: flat rows that a CNN reshapes back
        image_shape = X.shape[1:] if X.ndim == 4 else (1, *X.shape[1:])
        X = X.reshape(X.shape[0], -1)
    if len(X) < 2:
        raise ConfigError(f"{source} has {len(X)} sample(s): at least 2 are needed")
    y, loss = _labels(source, y, loss, where)
    return _as_dataset(X, y, name, loss, image_shape)


def _labels(source: str, y: np.ndarray, loss: str, where) -> tuple:
    """(labels, loss): classes renumbered 0..C-1, or float targets for mse."""
    integral = np.equal(np.round(y), y)
    if loss == "auto":
        loss = "mse" if not integral.all() else ("ce" if len(np.unique(y)) > 2 else "bce")
    if loss == "mse":
        return y.astype(np.float64), loss
    if not integral.all():
        i = int(np.argmin(integral))
        raise ConfigError(f"{source}: {where(i)} label {y[i]:g} is not an integer class, "
                          f"as loss {loss} needs (use loss mse for regression)")
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"{source} has a single class (label {classes[0]:g}): a classifier needs two or more")
    if loss == "bce" and len(classes) > 2:
        raise ConfigError(f"{source} has {len(classes)} classes but loss bce takes 2 (use loss ce)")
    return y, loss


def _read_csv(file: Path):
    """(X, y, where) from a text CSV: numeric cells, last column the label, optional header row."""
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"data file {file} is not a text CSV file (it is not UTF-8 text)") from None
    if "\x00" in text:
        raise ConfigError(f"data file {file} is not a text CSV file (it holds binary bytes)")
    rows = [(i, row) for i, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in row)]
    if not rows:
        raise ConfigError(f"data file {file} is empty")
    header = None
    if not all(_is_number(c) for c in rows[0][1]):
        header, rows = rows[0][1], rows[1:]
    if not rows:
        raise ConfigError(f"data file {file} has a header row but no data rows")
    width = len(header) if header else len(rows[0][1])
    if width < 2:
        raise ConfigError(f"data file {file} has {width} column: it needs features and a label (last column)")
    try:  # fast path; on failure the slow scan below names the first bad cell
        values = np.array([row for _, row in rows], dtype=np.float64)
    except ValueError:
        values = None
    if values is None or values.shape[1:] != (width,) or not np.isfinite(values).all():
        _find_bad_cell(file, rows, header, width)
    lines = [line for line, _ in rows]
    return values[:, :-1], values[:, -1], lambda i: f"row {lines[i]}"


def _find_bad_cell(file, rows, header, width):
    """Raise the ConfigError for the first row of the wrong width or cell that is not a finite number."""
    for line, row in rows:
        if len(row) != width:
            raise ConfigError(f"data file {file}: row {line} has {len(row)} columns, expected {width}")
        for c, cell in enumerate(row):
            number = _number(cell)
            if number is None or not math.isfinite(number):
                column = f"column {c + 1}" + (f" ({header[c].strip()!r})" if header else "")
                problem = "is empty" if not cell.strip() else f"holds {cell.strip()!r}, not a finite number"
                raise ConfigError(f"data file {file}: row {line}, {column} {problem}")
    raise AssertionError("a row failed to parse but no bad cell was found")


def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return None


def _is_number(cell: str) -> bool:
    return _number(cell) is not None


def _read_npz(file: Path):
    """(X, y, where) from numpy.savez output with arrays X (n, ...) and y (n,)."""
    try:
        archive = np.load(file, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise ConfigError(f"data file {file} is not a .npz archive (numpy.savez output)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(f"data file {file} is a single .npy array, not a .npz archive with arrays X and y")
    with archive:
        arrays = {k: archive[k] for k in archive.files}
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise ConfigError(f"data file {file} has no array {missing[0]!r} (it holds: {', '.join(arrays) or 'nothing'})")
    X, y = arrays["X"], arrays["y"]
    for name, a in (("X", X), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"data file {file}: array {name} holds {a.dtype} values, not numbers")
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if X.ndim < 2 or y.ndim != 1:
        raise ConfigError(f"data file {file}: X must be (n, features) and y (n,), got {X.shape} and {y.shape}")
    if len(X) != len(y):
        raise ConfigError(f"data file {file}: X has {len(X)} rows but y has {len(y)} labels")
    X, y = X.astype(np.float64), y.astype(np.float64)
    for name, a in (("X", X), ("y", y)):
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            raise ConfigError(f"data file {file}: {name}[{', '.join(map(str, bad[0]))}] is not a finite number")
    return X, y, lambda i: f"y[{i}]"
