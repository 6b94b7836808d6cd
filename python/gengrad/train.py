"""Training by the generalized gradient: GD, SGD, momentum and Adam, with checkpoints.

``train(model, theta0, X, Y, optimizer="adam", lr=1e-3, epochs=10, batch_size=32, seed=0)``
runs mini-batch optimisation driven by G (MATH.md §4) and returns the parameters and a per-epoch
history of the risk and the norm of G on the whole training set.

The model is anything with ``risk_and_gradient(theta, X, Y, sample_weight) -> (risk, G)``: a
gengrad.Network (theta of shape (d,)) or an ensemble whose theta has shape (n, d) and whose risk
has shape (n,) — every update below is elementwise, and norms are taken over the last axis.

Determinism: the samples are shuffled by numpy's PCG64 seeded with ``seed``; with the core's
bitwise-deterministic gradients, the same call gives the same bits. A checkpoint holds
everything the run depends on (theta, optimizer state, the generator's state, the history), is
written atomically (a temporary file in the same folder, then os.replace), and ``resume=``
continues from it bit for bit: N epochs, then a resume to 2N, equals 2N epochs in one go.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Callable, Optional

import numpy as np

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")
CHECKPOINT_VERSION = 1


@dataclass
class TrainResult:
    """``theta``: the parameters after the last epoch. ``history``: per epoch, from epoch 0 (the
    start) — ``epoch``, ``risk`` and ``grad_norm`` on the training set (arrays of shape
    (epochs + 1,) or (epochs + 1, n) for an ensemble), ``seconds`` since the start of the
    first run, and ``val_risk`` / ``val_accuracy`` when validation data were given."""

    theta: np.ndarray
    history: dict
    optimizer: str
    epochs: int
    steps: int

    def summary(self) -> str:
        risk, norm = self.history["risk"], self.history["grad_norm"]
        lines = [f"{self.optimizer}: {self.epochs} epochs, {self.steps} steps, "
                 f"{self.history['seconds'][-1]:.2f} s",
                 f"  training risk {_text(risk[0])} -> {_text(risk[-1])}, "
                 f"|G| {_text(norm[0])} -> {_text(norm[-1])}"]
        if "val_accuracy" in self.history:
            lines.append(f"  validation risk {_text(self.history['val_risk'][-1])}, "
                         f"accuracy {_text(100 * self.history['val_accuracy'][-1])} %")
        return "\n".join(lines)


def _text(value) -> str:
    value = np.asarray(value)
    return f"{float(value):.6g}" if value.ndim == 0 else np.array2string(value, precision=4)


class _Optimizer:
    """An update rule on arrays of any shape; ``state`` names the arrays a checkpoint keeps."""

    def __init__(self, name, lr, momentum, betas, eps, theta):
        self.name, self.lr, self.momentum, self.betas, self.eps = name, lr, momentum, betas, eps
        self.step_count = 0
        self.state = {}
        if name == "momentum":
            self.state["velocity"] = np.zeros_like(theta)
        elif name == "adam":
            self.state["m"] = np.zeros_like(theta)
            self.state["v"] = np.zeros_like(theta)

    def step(self, theta, G):
        """Updates theta in place (PyTorch's formulas: heavy-ball v = mu v + G; Adam with bias
        correction)."""
        self.step_count += 1
        lr = theta.dtype.type(self.lr)
        if self.name in ("gd", "sgd"):
            theta -= lr * G
        elif self.name == "momentum":
            v = self.state["velocity"]
            v *= theta.dtype.type(self.momentum)
            v += G
            theta -= lr * v
        else:
            b1, b2 = self.betas
            m, v = self.state["m"], self.state["v"]
            m *= theta.dtype.type(b1)
            m += theta.dtype.type(1 - b1) * G
            v *= theta.dtype.type(b2)
            v += theta.dtype.type(1 - b2) * G * G
            m_hat = m / theta.dtype.type(1 - b1 ** self.step_count)
            v_hat = v / theta.dtype.type(1 - b2 ** self.step_count)
            theta -= lr * m_hat / (np.sqrt(v_hat) + theta.dtype.type(self.eps))


class _Progress:
    """tqdm when it is installed, otherwise a line on stderr every few seconds."""

    def __init__(self, total, initial, enabled):
        self.bar, self.enabled, self.last = None, enabled, 0.0
        self.total, self.done = total, initial
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, initial=initial, unit="epoch", leave=False)
            except ImportError:
                pass

    def update(self, risk):
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"risk {_text(risk)}")
            self.bar.update(1)
        elif time.monotonic() - self.last > 2.0 or self.done == self.total:
            self.last = time.monotonic()
            print(f"epoch {self.done}/{self.total}: risk {_text(risk)}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not (float(value) > 0 and np.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def _integer(value, name, low):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _weights(sample_weight, M, dtype):
    if sample_weight is None:
        return np.full(M, 1.0 / M, dtype=dtype)
    w = np.asarray(sample_weight)
    if w.shape != (M,):
        raise ValueError(f"sample_weight must have shape ({M},), got {w.shape}")
    return np.ascontiguousarray(w, dtype=dtype)


def accuracy(model, theta, X, labels) -> np.ndarray:
    """The fraction of rows of X whose largest output is the label (shape () or (n,))."""
    out = np.asarray(model.forward(theta, X))
    return np.mean(np.argmax(out, axis=-1) == np.asarray(labels), axis=-1)


def _config(optimizer, lr, batch_size, seed, momentum, betas, eps, M, theta):
    return dict(optimizer=optimizer, lr=lr, batch_size=batch_size, seed=seed, momentum=momentum,
                betas=list(betas), eps=eps, samples=M, theta_shape=list(theta.shape),
                dtype=str(theta.dtype))


def _save(path, theta, opt, rng, history, epoch, config):
    """The checkpoint, written to a temporary file in the same folder and moved into place."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    arrays = {"theta": theta, "epoch": np.array(epoch), "step_count": np.array(opt.step_count),
              "meta": np.array(json.dumps(dict(version=CHECKPOINT_VERSION, config=config,
                                                   rng=rng.bit_generator.state,
                                                   history_keys=list(history))))}
    arrays.update({f"state_{k}": v for k, v in opt.state.items()})
    arrays.update({f"history_{k}": np.asarray(v) for k, v in history.items()})
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(path, config):
    try:
        data = np.load(os.fspath(path), allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"resume: cannot read checkpoint {path!r}: {error}") from None
    meta = json.loads(str(data["meta"]))
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"resume: checkpoint {path!r} has version {meta.get('version')}, "
                         f"expected {CHECKPOINT_VERSION}")
    saved = meta["config"]
    changed = [k for k in config if saved.get(k) != config[k]]
    if changed:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r}, now {config[k]!r}" for k in changed)
        raise ValueError(f"resume: the checkpoint was made with other settings ({detail})")
    state = {k[len("state_"):]: data[k] for k in data.files if k.startswith("state_")}
    history = {k: list(data[f"history_{k}"]) for k in meta["history_keys"]}
    return (data["theta"], int(data["epoch"]), int(data["step_count"]), state, meta["rng"],
            history)


def train(model, theta0, X, Y, optimizer: str = "adam", lr: float = 1e-3, epochs: int = 10,
          batch_size: Optional[int] = 32, seed: int = 0, sample_weight=None,
          momentum: float = 0.9, betas=(0.9, 0.999), eps: float = 1e-8,
          X_val=None, Y_val=None, checkpoint=None, checkpoint_every: int = 1, resume=None,
          progress: Optional[bool] = None,
          callback: Optional[Callable[[int, np.ndarray], None]] = None) -> TrainResult:
    """Minimises the risk of ``model`` from ``theta0`` with the generalized gradient.

    optimizer : "gd" (full batch, batch_size must be None), "sgd", "momentum" (heavy ball,
        ``momentum``) or "adam" (``betas``, ``eps``).
    epochs : the total number of epochs (a resumed run continues up to it).
    batch_size : samples per step (None: all); each epoch visits a fresh permutation and the last
        batch may be smaller. A batch's gradient weighs its samples by sample_weight, rescaled
        so that the weights of the batch sum to those of the whole set.
    X_val, Y_val : validation data: its risk (and accuracy, if Y_val holds class labels) per epoch.
    checkpoint : a path: the state is saved there every ``checkpoint_every`` epochs and at the end.
    resume : a checkpoint path to continue from (the settings must be the same).
    progress : show progress (default: when stderr is a terminal).
    callback : called as callback(epoch, theta) after every epoch.
    """
    if not callable(getattr(model, "risk_and_gradient", None)):
        raise TypeError("model must have a risk_and_gradient(theta, X, Y, sample_weight) method "
                        f"(a gengrad.Network), got {type(model).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    theta = np.array(theta0, copy=True)
    if theta.dtype not in (np.float32, np.float64) or theta.ndim not in (1, 2):
        raise TypeError("theta0 must be a float32 or float64 array of shape (d,) or (n, d), got "
                        f"{theta.dtype} {theta.shape}")
    X, Y = np.asarray(X), np.asarray(Y)
    M = len(X)
    if M == 0:
        raise ValueError("X must hold at least one sample")
    if len(Y) != M:
        raise ValueError(f"Y must have one row per sample of X ({M}), got {len(Y)}")
    lr = _positive(lr, "lr")
    epochs = _integer(epochs, "epochs", 0)
    seed = _integer(seed, "seed", 0)
    checkpoint_every = _integer(checkpoint_every, "checkpoint_every", 1)
    if optimizer == "gd":
        if batch_size is not None:
            raise ValueError("optimizer 'gd' is full-batch gradient descent: leave batch_size=None "
                             "(or use 'sgd')")
    elif batch_size is not None:
        batch_size = _integer(batch_size, "batch_size", 1)
    momentum = float(momentum)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    betas = tuple(float(b) for b in betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    eps = _positive(eps, "eps")
    weight = _weights(sample_weight, M, theta.dtype)
    total_weight = weight.sum()
    batch = M if batch_size is None else min(batch_size, M)
    config = _config(optimizer, lr, batch_size, seed, momentum, betas, eps, M, theta)
    validation = X_val is not None
    if validation and Y_val is None:
        raise ValueError("X_val given without Y_val")
    classify = validation and np.asarray(Y_val).ndim == 1 and np.asarray(Y_val).dtype.kind in "iu"

    opt = _Optimizer(optimizer, lr, momentum, betas, eps, theta)
    rng = np.random.default_rng(seed)
    history = {"epoch": [], "risk": [], "grad_norm": [], "seconds": []}
    if validation:
        history["val_risk"] = []
        if classify:
            history["val_accuracy"] = []
    start_epoch, offset = 0, 0.0
    if resume is not None:
        theta, start_epoch, opt.step_count, state, rng_state, history = _load(resume, config)
        if start_epoch > epochs:
            raise ValueError(f"resume: the checkpoint is at epoch {start_epoch}, beyond "
                             f"epochs={epochs}")
        theta = np.array(theta)
        for k in opt.state:
            opt.state[k] = np.array(state[k])
        rng.bit_generator.state = rng_state
        offset = float(history["seconds"][-1])
    started = time.perf_counter()

    def record(epoch):
        risk, G = model.risk_and_gradient(theta, X, Y, weight)
        history["epoch"].append(epoch)
        history["risk"].append(np.asarray(risk))
        history["grad_norm"].append(np.linalg.norm(G, axis=-1))
        history["seconds"].append(offset + time.perf_counter() - started)
        if validation:
            history["val_risk"].append(np.asarray(model.risk(theta, X_val, Y_val)))
            if classify:
                history["val_accuracy"].append(accuracy(model, theta, X_val, Y_val))
        return risk

    if start_epoch == 0 and not history["epoch"]:
        record(0)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = _Progress(epochs, min(start_epoch, epochs), show and epochs > start_epoch)
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            order = np.arange(M) if batch == M else rng.permutation(M)
            for first in range(0, M, batch):
                idx = order[first:first + batch]
                w = weight[idx]
                if batch < M:
                    if not w.sum() > 0:
                        continue         # a batch of samples without mass: no gradient
                    w = w * (total_weight / w.sum())
                _, G = model.risk_and_gradient(theta, X[idx], Y[idx], w)
                opt.step(theta, G)
            risk = record(epoch)
            bar.update(risk)
            if callback is not None:
                callback(epoch, theta)
            if checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
                _save(checkpoint, theta, opt, rng, history, epoch, config)
    finally:
        bar.close()
    arrays = {k: np.asarray(v) for k, v in history.items()}
    return TrainResult(theta=theta, history=arrays, optimizer=optimizer, epochs=epochs,
                       steps=opt.step_count)


# --- the `gengrad train` command ----------------------------------------------------------------

def _hidden_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"--hidden must list positive widths, got {text!r}")
    return widths


def add_arguments(parser) -> None:
    from .datasets import TARGETS
    parser.add_argument("--data", default="digits", choices=("digits", *TARGETS),
                        help="digits (classification) or a regression target on [-1, 1]")
    parser.add_argument("--hidden", default="64", help="hidden widths, e.g. 64 or 64,32")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="0: the whole training set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--checkpoint", help="save the state here after every epoch")
    parser.add_argument("--resume", help="continue from this checkpoint")
    parser.add_argument("--plot", help="save the training curve to this image file")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the core (default: all CPUs; 1 is fastest for small "
                             "batches; results are the same bits)")


def command(args) -> int:
    """Trains a network on a bundled data set and prints a summary."""
    from . import datasets, plots, set_num_threads
    from .network import Network
    if args.threads is not None:
        set_num_threads(args.threads)
    dtype = np.dtype(args.dtype)
    if args.data == "digits":
        data = datasets.load_digits(seed=args.seed, dtype=dtype)
    else:
        data = datasets.regression(args.data, seed=args.seed, dtype=dtype)
    classify = data.task == "classification"
    net = Network(data.widths(*_hidden_widths(args.hidden)), args.activation,
                  loss="cross_entropy" if classify else "squared_error")
    batch_size = None if args.batch_size == 0 or args.optimizer == "gd" else args.batch_size
    print(f"{data.name}: {len(data.X_train)} training and {len(data.X_test)} test samples; "
          f"network {net.widths} {net.activation} {net.loss}, d = {net.dim}, {dtype}")
    result = train(net, net.init(seed=args.seed, dtype=dtype), data.X_train, data.y_train,
                   optimizer=args.optimizer, lr=args.lr, epochs=args.epochs,
                   batch_size=batch_size, seed=args.seed, X_val=data.X_test, Y_val=data.y_test,
                   checkpoint=args.checkpoint, resume=args.resume)
    print(result.summary())
    if classify:
        print(f"test accuracy: {100 * float(result.history['val_accuracy'][-1]):.2f} %")
    else:
        print(f"test risk (mean squared error): {float(result.history['val_risk'][-1]):.4g}")
    if args.plot:
        plots.training_curve(result, args.plot)
        print(f"training curve written to {args.plot}")
    return 0
