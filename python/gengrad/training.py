"""Training by the generalized gradient: GD, SGD, momentum and Adam, with checkpoints.

``train(model, theta0, X, Y, optimizer="adam", lr=1e-3, epochs=10, batch_size=32, seed=0)``
runs mini-batch optimisation driven by G (docs/math.md §4) and returns the parameters and a per-epoch
history of the risk and the norm of G on the whole training set.

The model is anything with ``risk_and_gradient(theta, X, Y, sample_weight) -> (risk, G)``: a
gengrad.Network (theta of shape (d,)) or an ensemble whose theta has shape (n, d) and whose risk
has shape (n,) — every update below is elementwise, and norms are taken over the last axis.

Determinism: the samples are shuffled by numpy's PCG64 seeded with ``seed``; with the core's
bitwise-deterministic gradients, the same call gives the same bits. A checkpoint holds
everything the run depends on (theta, optimizer state, the generator's state, the history), is
written atomically (gengrad.files), and ``resume=`` continues from it bit for bit: N epochs,
then a resume to 2N, equals 2N epochs in one go. It also holds a fingerprint of the run (the
model's widths, activation with its convention and loss; the optimizer and its settings; dtype;
SHA-256 hashes of X, Y, sample_weight and the validation set): resuming with anything else is refused, naming what
differs. The backend may differ (the CPU core, the reference, the GPU agree to rounding).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arguments import count, positive
from .files import writable_folder, write_atomically

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")
CHECKPOINT_VERSION = 2

PathLike = Union[str, "os.PathLike[str]"]
#: Per epoch while training: ints (epoch), floats (seconds), risks and norms (scalars or (n,)).
_History = dict[str, list[Union[float, np.ndarray]]]


class Model(Protocol):
    """What train() needs: a gengrad.Network (theta (d,), risk a float) or gengrad.Ensemble
    (theta (n, d), risks (n,)). Positional-only: the two name their first argument differently."""

    def risk_and_gradient(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                          sample_weight: Optional[ArrayLike], /) -> tuple[Union[float, np.ndarray], np.ndarray]: ...

    def risk(self, theta: np.ndarray, X: ArrayLike, Y: ArrayLike, /) -> Union[float, np.ndarray]: ...

    def forward(self, theta: np.ndarray, X: ArrayLike, /) -> np.ndarray: ...


@dataclass
class TrainResult:
    """``theta``: the parameters after the last epoch. ``history``: per epoch, from epoch 0 (the
    start) — ``epoch``, ``risk`` and ``grad_norm`` on the training set (arrays of shape
    (epochs + 1,) or (epochs + 1, n) for an ensemble), ``seconds`` since the start of the
    first run, and ``val_risk`` / ``val_accuracy`` when validation data were given."""

    theta: np.ndarray
    history: dict[str, np.ndarray]
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


def _text(value: ArrayLike) -> str:
    array = np.asarray(value)
    return f"{float(array):.6g}" if array.ndim == 0 else np.array2string(array, precision=4)


class _Optimizer:
    """An update rule on arrays of any shape; ``state`` names the arrays a checkpoint keeps."""

    def __init__(self, name: str, lr: float, momentum: float, betas: tuple[float, float], eps: float,
                 theta: np.ndarray):
        self.name, self.lr, self.momentum, self.betas, self.eps = name, lr, momentum, betas, eps
        self.step_count = 0
        self.state: dict[str, np.ndarray] = {}
        if name == "momentum":
            self.state["velocity"] = np.zeros_like(theta)
        elif name == "adam":
            self.state["m"] = np.zeros_like(theta)
            self.state["v"] = np.zeros_like(theta)

    def step(self, theta: np.ndarray, G: np.ndarray) -> None:
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


class _Bar(Protocol):
    """The part of a tqdm progress bar that _Progress uses."""

    def set_postfix_str(self, s: str) -> None: ...

    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class _Progress:
    """tqdm when it is installed, otherwise a line on stderr every few seconds."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar: Optional[_Bar] = None
        self.enabled, self.last = enabled, 0.0
        self.total, self.done = total, initial
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, initial=initial, unit="epoch", leave=False)
            except ImportError:
                pass

    def update(self, risk: ArrayLike) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"risk {_text(risk)}")
            self.bar.update(1)
        elif time.monotonic() - self.last > 2.0 or self.done == self.total:
            self.last = time.monotonic()
            print(f"epoch {self.done}/{self.total}: risk {_text(risk)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _weights(sample_weight: Optional[ArrayLike], M: int, dtype: np.dtype) -> np.ndarray:
    if sample_weight is None:
        return np.full(M, 1.0 / M, dtype=dtype)
    w = np.asarray(sample_weight)
    if w.shape != (M,):
        raise ValueError(f"sample_weight must have shape ({M},), got {w.shape}")
    return np.ascontiguousarray(w, dtype=dtype)


def accuracy(model: Model, theta: np.ndarray, X: ArrayLike, labels: ArrayLike
             ) -> Union[np.float64, NDArray[np.float64]]:
    """The fraction of rows of X whose largest output is the label (shape () or (n,))."""
    out = np.asarray(model.forward(theta, X))
    hits: NDArray[np.bool_] = np.argmax(out, axis=-1) == np.asarray(labels)
    fraction: Union[np.float64, NDArray[np.float64]] = np.mean(hits, axis=-1)
    return fraction


def _digest(values: Optional[ArrayLike]) -> Optional[str]:
    """SHA-256 of an array's dtype, shape and values (None for None)."""
    if values is None:
        return None
    array = np.ascontiguousarray(values)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes() if array.dtype != object else repr(array.tolist()).encode())
    return digest.hexdigest()


def _fingerprint(model: Model, optimizer: str, lr: float, batch_size: Optional[int], seed: int, momentum: float,
                 betas: tuple[float, float], eps: float, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                 sample_weight: Optional[ArrayLike], X_val: Optional[ArrayLike], Y_val: Optional[ArrayLike]
                 ) -> dict[str, object]:
    """Everything a checkpoint must agree with to be resumed, by name (the validation set too: the
    history holds its risk per epoch)."""
    network = getattr(model, "network", model)  # an Ensemble's networks
    widths = getattr(network, "widths", None)
    return dict(model=type(model).__name__, widths=None if widths is None else list(widths),
                networks=getattr(model, "n", None), activation=str(getattr(network, "activation", None)),
                loss=getattr(network, "loss", None), optimizer=optimizer, lr=lr, batch_size=batch_size,
                seed=seed, momentum=momentum, betas=list(betas), eps=eps, samples=len(X),
                theta_shape=list(theta.shape), dtype=str(theta.dtype), X=_digest(X), Y=_digest(Y),
                sample_weight=_digest(sample_weight), X_val=_digest(X_val), Y_val=_digest(Y_val))


def _save(path: PathLike, theta: np.ndarray, opt: _Optimizer, rng: np.random.Generator, history: _History,
          epoch: int, config: dict[str, object]) -> None:
    arrays: dict[str, np.ndarray] = {"theta": theta, "epoch": np.array(epoch), "step_count": np.array(opt.step_count),
              "meta": np.array(json.dumps(dict(version=CHECKPOINT_VERSION, config=config,
                                                   rng=rng.bit_generator.state,
                                                   history_keys=list(history))))}
    arrays.update({f"state_{k}": v for k, v in opt.state.items()})
    arrays.update({f"history_{k}": np.asarray(v) for k, v in history.items()})
    # numpy's stub checks **kwds against savez's allow_pickle: bool
    write_atomically(path, lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]


def _load(path: PathLike, config: dict[str, object], state_names: Sequence[str]
          ) -> tuple[np.ndarray, int, int, dict[str, np.ndarray], dict[str, Any], _History]:
    """The checkpoint's contents; ValueError naming the file if it cannot be read, is damaged,
    or was made by another run (naming what differs)."""
    name = repr(os.fspath(path))
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict) or meta.get("version") != CHECKPOINT_VERSION:
                version = meta.get("version") if isinstance(meta, dict) else None
                raise ValueError(f"resume: checkpoint {name} has version {version}, expected {CHECKPOINT_VERSION}")
            saved = meta["config"]
            changed = [k for k in config if saved.get(k) != config[k]]
            if changed:
                detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r}, now {config[k]!r}" for k in changed)
                raise ValueError(f"resume: checkpoint {name} was made by another run ({detail})")
            theta = np.array(data["theta"])
            state = {k: np.array(data[f"state_{k}"]) for k in state_names}
            history: _History = {k: list(data[f"history_{k}"]) for k in meta["history_keys"]}
            epoch, steps = int(data["epoch"]), int(data["step_count"])
            rng_state = meta["rng"]
            np.random.default_rng().bit_generator.state = rng_state  # a malformed state raises here
            float(history["seconds"][-1])
    except FileNotFoundError:
        raise ValueError(f"resume: checkpoint {name} does not exist") from None
    except ValueError as error:
        if str(error).startswith("resume:"):
            raise
        raise ValueError(f"resume: checkpoint {name} is damaged or not a gengrad checkpoint ({error})") from None
    except (OSError, EOFError, KeyError, IndexError, TypeError, AttributeError, NotImplementedError,
            zipfile.BadZipFile) as error:  # NotImplementedError: zipfile on a flipped method/flag
        raise ValueError(f"resume: checkpoint {name} is damaged or not a gengrad checkpoint "
                         f"({type(error).__name__}: {error})") from None
    if list(theta.shape) != config["theta_shape"] or str(theta.dtype) != config["dtype"] or epoch < 0:
        raise ValueError(f"resume: checkpoint {name} is damaged (theta {theta.dtype} {theta.shape}, epoch {epoch})")
    return theta, epoch, steps, state, rng_state, history


def train(model: Model, theta0: ArrayLike, X: ArrayLike, Y: ArrayLike, optimizer: str = "adam", lr: float = 1e-3,
          epochs: int = 10, batch_size: Optional[int] = 32, seed: int = 0, sample_weight: Optional[ArrayLike] = None,
          momentum: float = 0.9, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
          X_val: Optional[ArrayLike] = None, Y_val: Optional[ArrayLike] = None, checkpoint: Optional[PathLike] = None,
          checkpoint_every: int = 1, resume: Optional[PathLike] = None,
          progress: Optional[bool] = None,
          callback: Optional[Callable[[int, np.ndarray], None]] = None) -> TrainResult:
    """Minimises the risk of ``model`` from ``theta0`` with the generalized gradient.

    Parameters
    ----------
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

    Raises
    ------
    FloatingPointError
        When theta overflows (the run diverged), naming the epoch and step.
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
    X_train, Y_train = np.asarray(X), np.asarray(Y)
    if X_train.ndim != 2:
        raise ValueError(f"X must have shape (M, inputs): train shares the data across an ensemble's "
                         f"networks; got shape {X_train.shape}")
    M = len(X_train)
    if M == 0:
        raise ValueError("X must hold at least one sample")
    if len(Y_train) != M:
        raise ValueError(f"Y must have one row per sample of X ({M}), got {len(Y_train)}")
    lr = positive(lr, "lr")
    epochs = count(epochs, "epochs", 0)
    seed = count(seed, "seed", 0)
    checkpoint_every = count(checkpoint_every, "checkpoint_every", 1)
    if optimizer == "gd":
        if batch_size is not None:
            raise ValueError("optimizer 'gd' is full-batch gradient descent: leave batch_size=None "
                             "(or use 'sgd')")
    elif batch_size is not None:
        batch_size = count(batch_size, "batch_size", 1)
    momentum = float(momentum)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    beta_values = tuple(float(b) for b in betas)
    if len(beta_values) != 2 or not all(0 <= b < 1 for b in beta_values):
        raise ValueError(f"betas must be two numbers in [0, 1), got {beta_values}")
    beta_pair = (beta_values[0], beta_values[1])
    eps = positive(eps, "eps")
    weight = _weights(sample_weight, M, theta.dtype)
    total_weight = weight.sum()
    batch = M if batch_size is None else min(batch_size, M)
    config = _fingerprint(model, optimizer, lr, batch_size, seed, momentum, beta_pair, eps, theta, X_train, Y_train,
                          sample_weight, X_val, Y_val)
    if checkpoint is not None:
        writable_folder(checkpoint, "checkpoint")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(epoch, theta), got {type(callback).__name__}")
    validation: Optional[tuple[ArrayLike, ArrayLike]] = None
    if X_val is not None:
        if Y_val is None:
            raise ValueError("X_val given without Y_val")
        validation = (X_val, Y_val)
    classify = validation is not None and np.asarray(Y_val).ndim == 1 and np.asarray(Y_val).dtype.kind in "iu"

    opt = _Optimizer(optimizer, lr, momentum, beta_pair, eps, theta)
    rng = np.random.default_rng(seed)
    history: _History = {"epoch": [], "risk": [], "grad_norm": [], "seconds": []}
    if validation is not None:
        history["val_risk"] = []
        if classify:
            history["val_accuracy"] = []
    start_epoch, offset = 0, 0.0
    if resume is not None:
        theta, start_epoch, opt.step_count, opt.state, rng_state, history = _load(resume, config, list(opt.state))
        if start_epoch > epochs:
            raise ValueError(f"resume: the checkpoint is at epoch {start_epoch}, beyond "
                             f"epochs={epochs}")
        rng.bit_generator.state = rng_state
        offset = float(history["seconds"][-1])
    started = time.perf_counter()

    def record(epoch: int) -> Union[float, np.ndarray]:
        risk, G = model.risk_and_gradient(theta, X_train, Y_train, weight)
        history["epoch"].append(epoch)
        history["risk"].append(np.asarray(risk))
        history["grad_norm"].append(np.linalg.norm(G, axis=-1))
        history["seconds"].append(offset + time.perf_counter() - started)
        if validation is not None:
            history["val_risk"].append(np.asarray(model.risk(theta, *validation)))
            if classify:
                history["val_accuracy"].append(accuracy(model, theta, *validation))
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
                _, G = model.risk_and_gradient(theta, X_train[idx], Y_train[idx], w)
                opt.step(theta, G)
                if not np.isfinite(theta).all():
                    raise FloatingPointError(
                        f"training diverged: theta overflowed to Inf or NaN at epoch {epoch}, step "
                        f"{first // batch + 1} of {-(-M // batch)} (the training risk after epoch {epoch - 1} was "
                        f"{_text(history['risk'][-1])}); try a smaller lr than {lr:g}")
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
