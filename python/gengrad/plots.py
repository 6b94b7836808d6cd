"""Figures for `gengrad train --plot`, `gengrad flow --plot` and `gengrad verify --plot`
(matplotlib: the `plot` extra), written atomically (gengrad.files)."""
from __future__ import annotations

import math
import os
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .gradient_flow import FlowResult
    from .training import TrainResult
    from .verify.approximation import ApproximationStudy

from .files import writable_folder, write_atomically

PathLike = Union[str, "os.PathLike[str]"]

#: Event kinds and how the flow figure marks them.
_EVENT_STYLE = {"crossing": ("tab:gray", ":"), "sliding-start": ("tab:red", "--"),
                "sliding-end": ("tab:green", "--")}


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend, or ImportError naming the extra to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'gengrad[plot]'") from None
    return plt


def check_target(path: PathLike, name: str = "--plot") -> None:
    """Before the work whose figure goes to ``path``: matplotlib is there, the folder is
    writable and the extension is a format it writes; ValueError/ImportError naming ``name``."""
    plt = pyplot()
    writable_folder(path, name)
    extension = _format(path)
    figure = plt.figure()
    try:
        formats = figure.canvas.get_supported_filetypes()
    finally:
        plt.close(figure)
    if extension not in formats:
        raise ValueError(f"{name}: matplotlib cannot write .{extension} files; use one of "
                         f"{', '.join(sorted(formats))}")


def save(fig: Figure, path: PathLike) -> None:
    """The figure, written atomically (gengrad.files) in the format its extension names (PNG
    without one)."""
    write_atomically(path, lambda file: fig.savefig(file, format=_format(path), dpi=120))


def _format(path: PathLike) -> str:
    """The image format a file name asks for: its extension, PNG without one."""
    return os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"


def training_curve(result: TrainResult, path: PathLike) -> None:
    """Training (and validation) risk and |G| per epoch of a gengrad.train result."""
    plt = pyplot()
    h = result.history
    fig, (ax_risk, ax_norm) = plt.subplots(1, 2, figsize=(10, 4))
    ax_risk.semilogy(h["epoch"], h["risk"], label="training risk")
    if "val_risk" in h:
        ax_risk.semilogy(h["epoch"], h["val_risk"], label="validation risk")
    ax_risk.set_xlabel("epoch")
    ax_risk.legend()
    ax_norm.semilogy(h["epoch"], h["grad_norm"], color="tab:purple")
    ax_norm.set_xlabel("epoch")
    ax_norm.set_ylabel("|G| on the training set")
    fig.suptitle(f"gengrad.train ({result.optimizer})")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def flow_trajectories(result: FlowResult, path: PathLike) -> None:
    """Risk against time and every parameter's trajectory, switching times marked."""
    plt = pyplot()
    fig, (ax_risk, ax_theta) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    ax_risk.semilogy(result.t, result.risk, color="black")
    ax_risk.set_ylabel("risk")
    ax_theta.plot(result.t, result.theta, linewidth=0.8)
    ax_theta.set_ylabel("theta_i(t)")
    ax_theta.set_xlabel("t")
    shown: set[str] = set()
    for event in result.events:
        color, style = _EVENT_STYLE[event.kind]
        label: Optional[str] = event.kind if event.kind not in shown else None
        shown.add(event.kind)
        for ax in (ax_risk, ax_theta):
            ax.axvline(event.t, color=color, linestyle=style, linewidth=0.6,
                       label=label if ax is ax_risk else None)
    if shown:
        ax_risk.legend(loc="upper right")
    counts = result.event_counts()
    ax_risk.set_title("gradient flow: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def approximation_study(study: ApproximationStudy, path: PathLike) -> None:
    """Draw ||∇L_r - G|| against r (log-log), one line per family, to ``path`` (written
    atomically; the format follows the extension). Exact zeros are drawn on the bottom edge."""
    plt = pyplot()
    positive = [e for errs in study.errors.values() for e in errs if e > 0]
    floor = min(positive) / 10 if positive else 1e-16
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for family, errs in study.errors.items():
        style = "-o" if family in study.admissible else "--s"
        label = family + ("" if family in study.admissible else " (not admissible)")
        ax.loglog(study.r_values, [max(e, floor) for e in errs], style, label=label, ms=4)
    if math.isfinite(study.r_star) and study.r_star > 0:
        ax.axvline(study.r_star, color="gray", lw=0.8, ls=":")
        ax.text(study.r_star, floor, " r* = 1/gap", color="gray", va="bottom")
    ax.set_xlabel("r")
    ax.set_ylabel("||∇L_r(θ) − G(θ)||   (0 drawn at the bottom edge)")
    ax.set_title("R1: gradients of the approximant networks against G")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        save(fig, path)
    finally:
        plt.close(fig)
