"""`gengrad train`: a network on scikit-learn's digits or a regression target."""
from __future__ import annotations

import argparse

import numpy as np

from .. import datasets, plots, threads
from ..network import Network
from ..training import OPTIMIZERS, train


def _hidden_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"--hidden must list positive widths, got {text!r}")
    return widths


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("train", help="train a network on digits or a regression target")
    parser.add_argument("--data", default="digits", choices=("digits", *datasets.TARGETS),
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
    parser.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    """Trains a network on a bundled data set and prints a summary."""
    if args.plot:
        plots.check_target(args.plot)  # fail before the work, not after it
    if args.threads is not None:
        threads.set_num_threads(args.threads)
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
