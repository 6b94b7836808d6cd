"""Nothing lost: checkpoints that are damaged or belong to another run are refused with a
ValueError naming the file and what is wrong; the folder is checked before the first epoch;
temporaries of killed writers are removed; checkpoints, sweep results and figures honour the
umask (gengrad.files)."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import gengrad
from gengrad.training import train


def problem(activation="relu", convention=None, seed=0):
    rng = np.random.default_rng(seed)
    net = gengrad.Network((3, 8, 2), activation, convention=convention)
    return net, net.init(seed=0), rng.normal(size=(40, 3)), rng.normal(size=(40, 2))


@pytest.fixture
def saved(tmp_path):
    net, theta, X, Y = problem()
    path = tmp_path / "run.npz"
    train(net, theta, X, Y, epochs=2, checkpoint=path, lr=0.01)
    return path


def resume(path):
    net, theta, X, Y = problem()
    return train(net, theta, X, Y, lr=0.01, epochs=4, resume=path)


@pytest.mark.parametrize("damage", ["truncate 1", "truncate half", "empty", "garbage", "no meta", "bad meta",
                                    "bad rng", "no theta"])
def test_damaged_checkpoints_are_refused_naming_the_file(saved, damage):
    data = saved.read_bytes()
    if damage == "truncate 1":
        saved.write_bytes(data[:-1])
    elif damage == "truncate half":
        saved.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        saved.write_bytes(b"")
    elif damage == "garbage":
        saved.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        with np.load(saved) as archive:
            arrays = {k: archive[k] for k in archive.files}
        if damage == "no meta":
            del arrays["meta"]
        elif damage == "bad meta":
            arrays["meta"] = np.array("{not json")
        elif damage == "bad rng":
            meta = json.loads(str(arrays["meta"]))
            meta["rng"] = {"bit_generator": "nonsense"}
            arrays["meta"] = np.array(json.dumps(meta))
        else:
            del arrays["theta"]
        np.savez(saved, **arrays)
    with pytest.raises(ValueError, match=f"checkpoint '{saved}' is damaged or not a gengrad checkpoint"):
        resume(saved)


@pytest.mark.parametrize("change,field", [
    (dict(activation="leaky_relu"), "activation"),
    (dict(convention=1.0), "activation"),
    (dict(X="shifted"), "X: checkpoint"),
    (dict(Y="shifted"), "Y: checkpoint"),
    (dict(sample_weight="uniform"), "sample_weight: checkpoint None"),
    (dict(optimizer="sgd", batch_size=8), "optimizer: checkpoint 'adam', now 'sgd'"),
    (dict(seed=1), "seed: checkpoint 0, now 1"),
])
def test_another_run_cannot_resume_the_checkpoint(saved, change, field):
    net, theta, X, Y = problem(change.pop("activation", "relu"), change.pop("convention", None))
    if change.pop("X", None):
        X = X + 1.0
    if change.pop("Y", None):
        Y = Y + 1.0
    if change.pop("sample_weight", None):
        change["sample_weight"] = np.full(len(X), 1 / len(X))
    with pytest.raises(ValueError, match=f"checkpoint '{saved}' was made by another run .*{field}"):
        train(net, theta, X, Y, lr=0.01, epochs=4, resume=saved, **change)


def test_a_missing_folder_fails_before_the_first_epoch(tmp_path):
    net, theta, X, Y = problem()
    epochs = []
    with pytest.raises(ValueError, match="checkpoint: the folder .* does not exist"):
        train(net, theta, X, Y, epochs=3, checkpoint=tmp_path / "missing" / "run.npz",
              callback=lambda epoch, theta: epochs.append(epoch))
    assert epochs == []


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    net, theta, X, Y = problem()
    path = tmp_path / "run.npz"
    stale = tmp_path / f".run.npz.{dead_pid()}.x1y2z3.tmp"
    living = tmp_path / f".run.npz.{os.getppid()}.abcdef.tmp"  # a writer that still runs
    other = tmp_path / ".other.npz.1.abcdef.tmp"
    for file in (stale, living, other):
        file.write_bytes(b"partial")
    train(net, theta, X, Y, epochs=1, checkpoint=path)
    assert not stale.exists() and living.exists() and other.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_honour_the_umask(tmp_path, umask):
    net, theta, X, Y = problem()
    before = os.umask(umask)
    try:
        train(net, theta, X, Y, epochs=1, checkpoint=tmp_path / "run.npz")
        gengrad.sweep(job, [{"seed": 1}], "serial", out=tmp_path / "sweep")
        plots = pytest.importorskip("gengrad.plots")
        figure = plots.pyplot().figure()
        plots.save(figure, tmp_path / "figure.png")
    finally:
        os.umask(before)
    files = [tmp_path / "run.npz", tmp_path / "figure.png"] + [p for p in (tmp_path / "sweep").rglob("*")
                                                                if p.is_file()]
    assert len(files) >= 4
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask, file


def job(config):
    return {"value": config["seed"] * 2.0}


def test_a_resume_must_keep_the_validation_set(saved):
    net, theta, X, Y = problem()
    with pytest.raises(ValueError, match="was made by another run .*X_val: checkpoint None"):
        train(net, theta, X, Y, lr=0.01, epochs=4, resume=saved, X_val=X, Y_val=Y)


def test_a_flipped_compression_method_is_damage_too(saved):
    data = bytearray(saved.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 10] ^= 0x0F  # the compression method of the first member
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is damaged or not a gengrad checkpoint"):
        resume(saved)


def test_temporaries_of_another_file_with_a_longer_name_are_kept(tmp_path):
    net, theta, X, Y = problem()
    other = tmp_path / f".run.npz.2024.{dead_pid()}.abcdef.tmp"  # a writer of "run.npz.2024"
    other.write_bytes(b"partial")
    train(net, theta, X, Y, epochs=1, checkpoint=tmp_path / "run.npz")
    assert other.exists()


def test_a_name_too_long_for_the_file_system_fails_before_the_first_epoch(tmp_path):
    net, theta, X, Y = problem()
    with pytest.raises(ValueError, match="too long for this file system"):
        train(net, theta, X, Y, epochs=1, checkpoint=tmp_path / ("x" * 250 + ".npz"),
              callback=lambda epoch, theta: pytest.fail("an epoch ran"))
