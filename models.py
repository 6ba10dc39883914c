"""Models, and FlatModel: any nn.Module as a function of one flat parameter vector."""
from __future__ import annotations

import copy
import importlib.util
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.utils.checkpoint import checkpoint

from config import ConfigError


class LogisticRegression(nn.Module):
    def __init__(self, n_features: int, n_outputs: int = 1):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, x):  # (n, d) -> (n,) logits, or (n, C) when n_outputs = C > 1
        return _squeeze(self.linear(x))


class MLP(nn.Module):
    def __init__(self, n_features: int, hidden_dim: int = 32, n_outputs: int = 1):
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, n_outputs)

    def forward(self, x):  # (n, d) -> (n,) logits, or (n, C)
        return _squeeze(self.fc2(torch.relu(self.fc1(x))))


class CNN(nn.Module):
    """One 3x3 convolution (stride 2) and ReLU, then one Linear: 1,370 weights on the 8x8 digits.

    Stride instead of max-pooling keeps it fast on a CPU (measured on digits, one thread: a forward
    in 1.2 ms against 24 ms for two conv + pool layers), and the first layer stays affine on a plane.
    """

    def __init__(self, image_shape: tuple, n_outputs: int = 1, channels: int = 8):
        super().__init__()
        self.image_shape = tuple(image_shape)  # (C_in, H, W) of the flat input rows
        c_in, h, w = self.image_shape
        self.conv = nn.Conv2d(c_in, channels, 3, stride=2, padding=1)
        self.fc = nn.Linear(channels * ((h + 1) // 2) * ((w + 1) // 2), n_outputs)

    def forward(self, x):  # (n, C_in*H*W) flat rows -> (n,) or (n, C)
        x = torch.relu(self.conv(x.reshape(-1, *self.image_shape)))  # (n, 8, H/2, W/2)
        return _squeeze(self.fc(x.flatten(1)))


def _squeeze(out):
    """One output column is squeezed to (n,) (bce, mse); C columns stay (n, C) (ce)."""
    return out.squeeze(-1) if out.shape[-1] == 1 else out


MODEL_KINDS = ("logistic", "mlp", "cnn")
LOSSES = ("bce", "ce", "mse")  # binary cross-entropy with logits | multi-class cross-entropy | squared error


def loss_terms(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample losses (..., n): bce logits (..., n) and 0/1 labels; ce logits (..., n, C) and
    integer labels in [0, C); mse outputs (..., n) and float targets. Leading axes are kept."""
    if kind == "bce":
        return _bce_terms(logits, y)
    if kind == "ce":
        log_p = torch.log_softmax(logits, dim=-1)  # (..., n, C)
        return -log_p.gather(-1, y.long().expand(*log_p.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    if kind == "mse":
        return (logits - y) ** 2
    raise ValueError(f"unknown loss {kind!r}: expected one of {', '.join(LOSSES)}")


def _bce_terms(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log σ(z) for y = 1 and -log σ(-z) for y = 0, both softplus((1 - 2y) z): two passes over the logits
    instead of softplus(z) - y z's three, and no cancellation where z is large and right (softplus(z) - z
    rounds e^-z away). Labels are 0/1: data.py renumbers classes to 0..C-1."""
    return F.softplus(logits * (1 - 2 * y))


def loss_from_logits(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The one loss of the project: the mean of loss_terms over the sample axis, (...)."""
    return loss_terms(kind, logits, y).mean(dim=-1)


def metric_sum(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed over the sample axis: correct predictions (bce: z > 0; ce: argmax) or squared errors (mse)."""
    if kind == "bce":
        return ((logits > 0).to(y.dtype) == y).to(torch.float32).sum(dim=-1)
    if kind == "ce":
        return (logits.argmax(dim=-1) == y.long()).to(torch.float32).sum(dim=-1)
    if kind == "mse":
        return ((logits - y) ** 2).sum(dim=-1)
    raise ValueError(f"unknown loss {kind!r}: expected one of {', '.join(LOSSES)}")


def summed_loss_and_metric(kind: str, logits: torch.Tensor, y: torch.Tensor) -> tuple:
    """(loss_terms(...).sum(-1), metric_sum(...)) for many weight vectors' logits (K, n) or (K, n, C).

    The same numbers in fewer passes over the K x n logits: the bce correct count as one
    matrix-vector product, Σ (1 - y) + [z > 0]·(2y - 1). Losses are summed per sample, never as a
    difference of two large sums (that cancels in float32 when the loss is small).
    """
    if kind == "bce":
        y = y.to(logits.dtype)
        loss = _bce_terms(logits, y).sum(dim=-1)  # per sample first: no cancellation
        right = torch.gt(logits, 0, out=torch.empty_like(logits)) @ (2 * y - 1) + (1 - y).sum()
        return loss, right
    if kind == "ce" and logits.stride(-1) != 1:
        return _summed_ce_by_class(logits, y.long())
    if kind == "ce":
        picked = logits.gather(-1, y.long().expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)  # (K, n)
        loss = (torch.logsumexp(logits, dim=-1) - picked).sum(dim=-1)  # per sample first: no cancellation
        return loss, (logits.argmax(dim=-1) == y.long()).sum(dim=-1).to(logits.dtype)
    return loss_terms(kind, logits, y).sum(dim=-1), metric_sum(kind, logits, y)


def _summed_ce_by_class(logits: torch.Tensor, y: torch.Tensor) -> tuple:
    """summed_loss_and_metric's ce for logits (K, n, C) whose class axis is strided, such as a view of
    points-last (n, C, K) storage (plane_model's tiles): there each class is one block of memory, so C
    elementwise passes over class slices beat reductions across the strided axis. Measured (one thread,
    K = 520, n = 1000): 13 against 20 ms at C = 3 (with a contiguous copy first), 47 against 93 at C = 10;
    argmax alone on the strided axis took 82 ms. Ties go to the first class, as argmax's do.
    """
    classes = logits.unbind(-1)  # C views (K, n)
    top, best = classes[0], torch.zeros_like(classes[0], dtype=torch.long)
    for c, column in enumerate(classes[1:], 1):
        best = torch.where(column > top, c, best)  # strictly greater: the first of equal maxima stays
        top = torch.maximum(top, column)
    if torch.isnan(top).any():  # argmax takes the first NaN as the largest: a blown-up block is left to it
        best = logits.argmax(dim=-1)
    shift = torch.where(torch.isfinite(top), top, 0)  # as logsumexp: an infinite top gives ±inf, not NaN
    exp_sum, picked = torch.zeros_like(top), torch.zeros_like(top)
    for c, column in enumerate(classes):
        exp_sum += torch.exp(column - shift)
        picked += torch.where(y == c, column, 0)
    loss = (shift + torch.log(exp_sum) - picked).sum(dim=-1)  # log-sum-exp minus the label's logit, per sample
    return loss, (best == y).sum(dim=-1).to(logits.dtype)


def finish_metric(kind: str, total: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy = correct / n; R² = 1 - SSE / SST with SST over all of y (so batches combine exactly)."""
    if kind == "mse":
        sst = ((y - y.mean()) ** 2).sum().clamp_min(torch.finfo(total.dtype).tiny)
        return 1 - total / sst
    return total / y.shape[0]


def metric_from_logits(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy (bce, ce) or R² (mse) over the sample axis, same shapes as loss_from_logits."""
    return finish_metric(kind, metric_sum(kind, logits, y), y)


def build_model(kind: str, n_features: int, hidden_dim: int = 32, seed: int = 0, n_classes: int = 2,
                image_shape: tuple | None = None, loss: str = "bce") -> nn.Module:
    """A freshly initialised model; its weights depend on the seed alone, not on global RNG state.

    loss "ce" gives n_classes outputs (n, C); "bce" and "mse" one squeezed output (n,).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    if kind == "cnn" and image_shape is None:
        raise ConfigError("model 'cnn' needs image data (dataset=digits, or an .npz whose X is (n, H, W))")
    n_outputs = n_classes if loss == "ce" else 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "logistic":
            return LogisticRegression(n_features, n_outputs)
        if kind == "mlp":
            return MLP(n_features, hidden_dim, n_outputs)
        return CNN(image_shape, n_outputs)


_user_modules = itertools.count()


def load_user_model(spec: str, n_features: int, n_classes: int, seed: int) -> nn.Module:
    """The module returned by function(n_features, n_classes, seed) of spec "path/to/file.py:function".

    The file is imported under a unique module name, so it never shadows the project's modules.
    Every problem is one ConfigError line naming the file and function.
    """
    path_text, _, name = spec.rpartition(":")
    path = Path(path_text)
    if not path_text or not name or path.suffix != ".py":
        raise ConfigError(f"model {spec!r} is not of the form path/to/file.py:function")
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    module_name = f"_user_model_{next(_user_modules)}_{path.stem}"
    try:
        import_spec = importlib.util.spec_from_file_location(module_name, path)
        source = importlib.util.module_from_spec(import_spec)
        sys.modules[module_name] = source  # dataclasses and pickling look the module up here
        import_spec.loader.exec_module(source)
    except (Exception, SystemExit) as e:  # the user's file: one line, not a traceback
        sys.modules.pop(module_name, None)
        raise ConfigError(f"model file {path} failed to import: {_one_line(e)}") from None
    function = getattr(source, name, None)
    if not callable(function):
        raise ConfigError(f"model file {path} has no function {name!r}")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # an unseeded user function still gets this seed's weights
            module = function(n_features, n_classes, seed)
    except (Exception, SystemExit) as e:
        raise ConfigError(f"{path}:{name}(n_features={n_features}, n_classes={n_classes}, seed={seed}) "
                          f"raised {_one_line(e)}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{path}:{name} returned a {type(module).__name__}, not a torch.nn.Module")
    if not any(True for _ in module.parameters()):
        raise ConfigError(f"{path}:{name} returned a module with no parameters: nothing to train")
    return module


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: " + " ".join(str(error).split())


@dataclass(frozen=True)
class Slot:
    """Where one parameter tensor lives inside the flat vector."""
    name: str
    shape: tuple
    offset: int
    numel: int


class FlatModel:
    """The functional view of a module: loss(theta) for a flat theta of length dim.

    The module is never mutated: parameters and buffers are passed through functional_call.
    Evaluation runs a private copy in eval mode with `self.buffers`; training steps run a second
    copy in train mode (train_loss), whose BatchNorm updates the buffers passed to it in place.
    With eval_batch_size, every full-data evaluation runs over batches of that many samples and
    sums them exactly (the mean over all samples, differentiable).
    """

    def __init__(self, module: nn.Module, loss: str = "bce", device=None, eval_batch_size: int | None = None):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(LOSSES)}")
        self.loss_kind = loss
        device = torch.device(device) if device is not None else next(module.parameters()).device
        self.module = copy.deepcopy(module).to(device).eval()
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.layout, offset = [], 0
        for name, p in self.module.named_parameters():
            self.layout.append(Slot(name, tuple(p.shape), offset, p.numel()))
            offset += p.numel()
        self.dim = offset
        self.buffers = {k: b.detach().clone() for k, b in self.module.named_buffers()}
        self.theta0 = torch.cat([p.detach().reshape(-1) for p in self.module.parameters()]).clone()
        self._train_module = None

    def with_buffers(self, buffers: dict) -> "FlatModel":
        """The same model and layout evaluated with other buffers (e.g. a checkpoint's running statistics)."""
        if set(buffers) != set(self.buffers):
            raise ValueError(f"buffers {sorted(buffers)} do not match the model's {sorted(self.buffers)}")
        other = copy.copy(self)
        other.buffers = {k: b.to(self.device) for k, b in buffers.items()}
        return other

    def unflatten(self, theta: torch.Tensor) -> dict:
        """Views of theta shaped as the module's parameters."""
        return {s.name: theta[s.offset:s.offset + s.numel].view(s.shape) for s in self.layout}

    def logits(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Eval-mode outputs (n,) or (n, C), computed over eval batches (per-sample, so exact)."""
        parts = [self._logits(theta, X[b]) for b in self.sample_batches(X.shape[0])]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def _logits(self, theta, X):
        return functional_call(self.module, (self.unflatten(theta), self.buffers), (X,))

    def sample_batches(self, n: int) -> list:
        """Slices of the sample axis, eval_batch_size long (one slice when it is None)."""
        size = self.eval_batch_size or max(n, 1)
        return [slice(i, i + size) for i in range(0, max(n, 1), size)]

    def loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's loss (loss_from_logits of its kind) over (X, y): the one loss of the project."""
        return self._mean_loss(self.module, theta, self.buffers, X, y)

    def train_loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, buffers: dict) -> torch.Tensor:
        """The loss in train mode (batch statistics, dropout); BatchNorm updates `buffers` in place.

        BatchNorm couples the samples of a batch, so such a model sees X in one piece; any other
        model is summed over eval batches like `loss`.
        """
        if self._train_module is None:
            self._train_module = copy.deepcopy(self.module).train()
        coupled = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.module.modules())
        return self._mean_loss(self._train_module, theta, buffers, X, y, whole=coupled)

    def _mean_loss(self, module, theta, buffers, X, y, whole: bool = False):
        batches = self.sample_batches(X.shape[0])
        if whole or len(batches) == 1:
            logits = functional_call(module, (self.unflatten(theta), buffers), (X,))
            return loss_from_logits(self.loss_kind, logits, y)
        # Plain autograd keeps one batch of activations at a time (recomputed in backward); torch.func
        # transforms cannot checkpoint, so there the batches only bound the forward pass.
        step = checkpoint if _plain_autograd(theta) else (lambda f, *a, **k: f(*a))
        total = sum(step(self._loss_sum, theta, X[b], y[b], module, buffers, use_reentrant=False)
                    for b in batches)
        return total / X.shape[0]

    def _loss_sum(self, theta, X, y, module=None, buffers=None):
        module, buffers = (self.module, self.buffers) if module is None else (module, buffers)
        logits = functional_call(module, (self.unflatten(theta), buffers), (X,))
        return loss_terms(self.loss_kind, logits, y).sum(dim=-1)

    def grad(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The full-batch gradient (D,), one eval batch at a time: memory of one batch, also under vmap."""
        grad_sum = torch.func.grad(self._loss_sum)
        return sum(grad_sum(theta, X[b], y[b]) for b in self.sample_batches(X.shape[0])) / X.shape[0]

    def accuracy(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracy for bce and ce, R² for mse."""
        total = sum(metric_sum(self.loss_kind, self._logits(theta, X[b]), y[b])
                    for b in self.sample_batches(X.shape[0]))
        return finish_metric(self.loss_kind, total, y)

    def loss_and_accuracy(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> tuple:
        """(loss, accuracy) from one forward pass per eval batch: what training records at each epoch.

        The same numbers as loss() and accuracy(), computed in the same order, for half the forwards.
        """
        batches = self.sample_batches(X.shape[0])
        if len(batches) == 1:
            logits = self._logits(theta, X)
            return loss_from_logits(self.loss_kind, logits, y), metric_from_logits(self.loss_kind, logits, y)
        loss_sum, metric_total = 0.0, 0.0
        for b in batches:
            logits = self._logits(theta, X[b])
            loss_sum = loss_sum + loss_terms(self.loss_kind, logits, y[b]).sum(dim=-1)
            metric_total = metric_total + metric_sum(self.loss_kind, logits, y[b])
        return loss_sum / X.shape[0], finish_metric(self.loss_kind, metric_total, y)

    def losses(self, thetas: torch.Tensor, X, y, chunk: int = 256) -> torch.Tensor:
        """loss for each row of thetas (K, D) -> (K,), chunked so memory stays bounded."""
        return self._batched(self.loss, thetas, X, y, chunk)

    def accuracies(self, thetas: torch.Tensor, X, y, chunk: int = 256) -> torch.Tensor:
        return self._batched(self.accuracy, thetas, X, y, chunk)

    def _batched(self, fn, thetas, X, y, chunk):
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise ValueError(f"thetas must have shape (K, {self.dim}), got {tuple(thetas.shape)}")
        batched = vmap(fn, in_dims=(0, None, None))
        with torch.no_grad():
            parts = [batched(thetas[i:i + chunk], X, y) for i in range(0, len(thetas), chunk)]
        return torch.cat(parts) if parts else thetas.new_zeros(0)


def _plain_autograd(theta: torch.Tensor) -> bool:
    """Whether a backward pass will follow through ordinary autograd (not a torch.func transform)."""
    return (torch.is_grad_enabled() and theta.requires_grad
            and not torch._C._functorch.is_functorch_wrapped_tensor(theta))


def check_outputs(fm: FlatModel, X: torch.Tensor, y: torch.Tensor, n_classes: int | None = None,
                  n_probe: int = 16) -> None:
    """One forward pass at theta0 on a few samples; a wrong shape, label or value is one ValueError.

    Call it before any training: it says what the loss expected, what the model gave, and the fix.
    n_classes (ce) defaults to the width of the model's logits.
    """
    kind, n = fm.loss_kind, X.shape[0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels have shape {tuple(y.shape)}: expected ({n},), one per row of X {tuple(X.shape)}")
    probe = X[:n_probe]
    try:
        with torch.no_grad():
            out = fm._logits(fm.theta0, probe)
    except Exception as e:
        raise ValueError(f"the model fails on input of shape {tuple(probe.shape)}: {_one_line(e)}") from None
    m, got = probe.shape[0], "(n, " + ", ".join(str(s) for s in tuple(out.shape)[1:]) + ")"
    if kind == "ce":
        classes = n_classes or (out.shape[1] if out.ndim == 2 else 2)
        if out.ndim != 2 or out.shape[0] != m or out.shape[1] != classes:
            raise ValueError(f"expected logits (n, {classes}) for {classes} classes (loss ce), got {got}")
    elif out.ndim == 2 and out.shape[0] == m and out.shape[1] == 1:
        raise ValueError(f"logits have shape (n, 1): squeeze the last dimension (return out.squeeze(-1)); "
                         f"loss {kind} takes (n,)")
    elif out.ndim != 1 or out.shape[0] != m:
        fix = ": use loss ce for one score per class" if kind == "bce" and out.ndim == 2 else ""
        raise ValueError(f"expected outputs (n,) for loss {kind}, got {got}{fix}")
    _check_labels(kind, y, classes if kind == "ce" else 2)
    if not torch.isfinite(out).all():
        raise ValueError("the model's outputs at initialisation are not finite (NaN or inf)")


def _check_labels(kind: str, y: torch.Tensor, classes: int) -> None:
    """bce: 0/1 labels; ce: integers in [0, classes); mse: float targets."""
    if kind == "mse":
        if not y.is_floating_point():
            raise ValueError(f"loss mse needs float targets, got {y.dtype} (convert with y.float())")
        if not torch.isfinite(y).all():
            raise ValueError("the regression targets contain NaN or inf")
        return
    integral = bool((y == y.round()).all()) if y.is_floating_point() else True
    if not integral or float(y.min()) < 0 or float(y.max()) >= classes:
        raise ValueError(f"labels must be integers in [0, {classes}) for loss {kind}, "
                         f"got values from {float(y.min()):g} to {float(y.max()):g}")
