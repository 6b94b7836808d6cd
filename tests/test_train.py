"""gengrad.train: optimizers against PyTorch and plain loops, determinism, bitwise resume,
atomic checkpoints, ensembles of shape (n, d), bad input."""
import os

import numpy as np
import pytest

import gengrad
from gengrad import datasets
from gengrad.training import OPTIMIZERS, accuracy, train


def problem(M=40, loss="squared_error", seed=0):
    rng = np.random.default_rng(seed)
    widths = (3, 8, 2) if loss == "squared_error" else (3, 8, 4)
    net = gengrad.Network(widths, "relu", loss=loss)
    X = rng.normal(size=(M, 3))
    Y = rng.normal(size=(M, 2)) if loss == "squared_error" else rng.integers(0, 4, M)
    return net, net.init(seed=seed), X, Y


SETTINGS = {"gd": dict(lr=0.05, batch_size=None), "sgd": dict(lr=0.05, batch_size=7),
            "momentum": dict(lr=0.02, batch_size=7), "adam": dict(lr=0.01, batch_size=7)}


def test_gd_is_the_plain_loop():
    net, theta, X, Y = problem()
    result = train(net, theta, X, Y, optimizer="gd", lr=0.05, batch_size=None, epochs=6)
    expected = theta.copy()
    for _ in range(6):
        expected -= 0.05 * net.gradient(expected, X, Y)
    assert np.array_equal(result.theta, expected) and result.steps == 6
    assert np.array_equal(theta, problem()[1])                    # theta0 is not modified


def test_sgd_is_the_plain_minibatch_loop():
    """Each epoch visits rng.permutation(M) in batches; a batch's gradient is that of the batch
    mean (the default weights 1/M rescaled to sum to 1 over the batch)."""
    net, theta, X, Y = problem(M=10)
    result = train(net, theta, X, Y, optimizer="sgd", lr=0.05, batch_size=4, epochs=3, seed=7)
    rng, expected = np.random.default_rng(7), theta.copy()
    for _ in range(3):
        order = rng.permutation(10)
        for first in range(0, 10, 4):
            idx = order[first:first + 4]
            expected -= 0.05 * net.gradient(expected, X[idx], Y[idx])
    assert np.allclose(result.theta, expected, rtol=1e-14, atol=1e-15) and result.steps == 9


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_updates_match_pytorch(optimizer):
    torch = pytest.importorskip("torch")
    net, theta, X, Y = problem()
    result = train(net, theta, X, Y, optimizer=optimizer, lr=0.01, batch_size=None, epochs=5)
    p = torch.nn.Parameter(torch.tensor(theta))
    opt = (torch.optim.SGD([p], lr=0.01, momentum=0.9) if optimizer == "momentum"
           else torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8))
    for _ in range(5):
        p.grad = torch.tensor(net.gradient(p.detach().numpy().copy(), X, Y))
        opt.step()
    assert np.allclose(result.theta, p.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_same_seed_same_bits_and_the_risk_falls(optimizer):
    net, theta, X, Y = problem(loss="cross_entropy")
    a = train(net, theta, X, Y, optimizer=optimizer, epochs=8, seed=3, **SETTINGS[optimizer])
    b = train(net, theta, X, Y, optimizer=optimizer, epochs=8, seed=3, **SETTINGS[optimizer])
    assert np.array_equal(a.theta, b.theta)
    assert np.array_equal(a.history["risk"], b.history["risk"])
    assert a.history["risk"].shape == (9,) and a.history["risk"][-1] < a.history["risk"][0]
    if optimizer != "gd":
        c = train(net, theta, X, Y, optimizer=optimizer, epochs=8, seed=4, **SETTINGS[optimizer])
        assert not np.array_equal(a.theta, c.theta)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_resume_continues_bit_for_bit(optimizer, tmp_path):
    net, theta, X, Y = problem()
    settings = dict(optimizer=optimizer, seed=1, **SETTINGS[optimizer])
    straight = train(net, theta, X, Y, epochs=10, **settings)
    path = tmp_path / "run.npz"
    half = train(net, theta, X, Y, epochs=5, checkpoint=path, **settings)
    assert half.epochs == 5 and os.listdir(tmp_path) == ["run.npz"]    # no temporary file left
    resumed = train(net, theta, X, Y, epochs=10, resume=path, **settings)
    assert np.array_equal(resumed.theta, straight.theta) and resumed.steps == straight.steps
    for key in ("epoch", "risk", "grad_norm"):
        assert np.array_equal(resumed.history[key], straight.history[key])


def test_checkpoint_is_replaced_atomically(tmp_path, monkeypatch):
    net, theta, X, Y = problem()
    path = tmp_path / "run.npz"
    train(net, theta, X, Y, epochs=2, checkpoint=path, lr=0.01)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        train(net, theta, X, Y, epochs=4, resume=path, checkpoint=path, lr=0.01)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.npz"]


def test_checkpoint_every(tmp_path):
    net, theta, X, Y = problem()
    saved = []
    path = tmp_path / "run.npz"

    def spy(epoch, theta):
        if path.exists():
            saved.append(int(np.load(path)["epoch"]))
    train(net, theta, X, Y, epochs=6, checkpoint=path, checkpoint_every=4, callback=spy)
    assert saved == [4, 4] and int(np.load(path)["epoch"]) == 6


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_ensemble_trains_like_its_members(optimizer):
    """gengrad.Ensemble: theta of shape (n, d), risks of shape (n,); every update is elementwise."""
    net, _, X, Y = problem(loss="cross_entropy")
    ensemble = gengrad.Ensemble(net.widths, 3, "relu", loss="cross_entropy")
    thetas = np.stack([net.init(seed=s) for s in range(3)])
    settings = dict(optimizer=optimizer, epochs=4, seed=2, **SETTINGS[optimizer])
    together = train(ensemble, thetas, X, Y, X_val=X, Y_val=Y, **settings)
    assert together.history["risk"].shape == (5, 3)
    assert together.history["val_accuracy"].shape == (5, 3)
    for i, theta in enumerate(thetas):
        alone = train(net, theta, X, Y, **settings)
        assert np.allclose(together.theta[i], alone.theta, rtol=1e-12, atol=1e-14)
        assert np.allclose(together.history["grad_norm"][:, i], alone.history["grad_norm"],
                           rtol=1e-12)


def test_digits_reach_the_documented_accuracy():
    data = datasets.load_digits()
    net = gengrad.Network(data.widths(32), "relu", loss="cross_entropy")
    result = train(net, net.init(seed=0), data.X_train, data.y_train, optimizer="adam", lr=3e-3,
                   epochs=8, batch_size=32, X_val=data.X_test, Y_val=data.y_test)
    assert result.history["val_accuracy"][-1] >= 0.93
    assert accuracy(net, result.theta, data.X_test, data.y_test) == result.history["val_accuracy"][-1]


def test_plain_progress_without_tqdm(capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)
    net, theta, X, Y = problem()
    train(net, theta, X, Y, epochs=3, progress=True)
    assert "epoch 3/3" in capsys.readouterr().err


def test_summary_mentions_the_risks():
    net, theta, X, Y = problem(loss="cross_entropy")
    result = train(net, theta, X, Y, epochs=2, X_val=X, Y_val=Y)
    text = result.summary()
    assert "training risk" in text and "accuracy" in text


@pytest.mark.parametrize("change,error,match", [
    (dict(model="net"), TypeError, "risk_and_gradient"),
    (dict(optimizer="lbfgs"), ValueError, "unknown optimizer"),
    (dict(lr=0.0), ValueError, "lr must be a positive"),
    (dict(lr="0.1"), TypeError, "lr must be a positive number"),
    (dict(epochs=-1), ValueError, "epochs must be >= 0"),
    (dict(epochs=2.0), TypeError, "epochs must be an integer"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(optimizer="gd", batch_size=8), ValueError, "full-batch"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(betas=(0.9, 1.0)), ValueError, "betas"),
    (dict(theta0=np.zeros(3, dtype=int)), TypeError, "theta0 must be a float32 or float64"),
    (dict(Y=np.zeros((5, 2))), ValueError, "Y must have one row per sample"),
    (dict(sample_weight=np.ones(3)), ValueError, "sample_weight must have shape"),
    (dict(X_val=np.zeros((2, 3))), ValueError, "X_val given without Y_val"),
    (dict(resume="/nonexistent/run.npz"), ValueError, "does not exist"),
    (dict(checkpoint="/nonexistent/run.npz"), ValueError, "checkpoint: the folder '/nonexistent' does not exist"),
    (dict(callback=3), TypeError, "callback must be callable"),
    (dict(X=np.zeros((2, 5, 3))), ValueError, "X must have shape \\(M, inputs\\)"),
])
def test_bad_input(change, error, match):
    net, theta, X, Y = problem()
    kwargs = dict(model=net, theta0=theta, X=X, Y=Y, epochs=1)
    kwargs.update(change)
    with pytest.raises(error, match=match):
        train(**kwargs)


def test_lr_may_be_any_real_number():
    # np.isfinite on a Fraction raised a TypeError from NumPy instead of training.
    from fractions import Fraction
    net, theta, X, Y = problem()
    exact = train(net, theta, X, Y, lr=Fraction(1, 100), epochs=2)
    assert np.array_equal(exact.theta, train(net, theta, X, Y, lr=0.01, epochs=2).theta)


def test_resume_refuses_other_settings(tmp_path):
    net, theta, X, Y = problem()
    path = tmp_path / "run.npz"
    train(net, theta, X, Y, epochs=2, checkpoint=path, lr=0.01)
    with pytest.raises(ValueError, match="lr: checkpoint 0.01, now 0.02"):
        train(net, theta, X, Y, epochs=4, resume=path, lr=0.02)
    with pytest.raises(ValueError, match="beyond epochs=1"):
        train(net, theta, X, Y, epochs=1, resume=path, lr=0.01)


# --- datasets ----------------------------------------------------------------------------------

def test_digits_split_is_fixed_stratified_and_standardized():
    a, b = datasets.load_digits(), datasets.load_digits()
    assert a.X_train.shape == (1347, 64) and a.X_test.shape == (450, 64)
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert a.y_train.dtype == np.int64 and set(np.unique(a.y_train)) == set(range(10))
    assert np.all(np.abs(a.X_train.mean(axis=0)) < 1e-12)
    assert np.all(np.bincount(a.y_test) >= 43)                       # stratified: ~45 per class
    f32 = datasets.load_digits(dtype=np.float32, seed=1)
    assert f32.X_train.dtype == np.float32 and not np.array_equal(f32.y_train, a.y_train)
    assert a.widths(32) == (64, 32, 10)


def test_regression_targets():
    data = datasets.regression("sine", n_train=50, n_test=11, seed=3)
    assert data.X_train.shape == (50, 1) and data.y_test.shape == (11, 1)
    assert np.allclose(data.y_train, np.sin(np.pi * data.X_train))
    assert np.all(np.abs(data.X_train) <= 1) and data.widths(16) == (1, 16, 1)
    noisy = datasets.regression("runge", noise=0.1, seed=3)
    assert not np.allclose(noisy.y_train, 1 / (1 + 25 * noisy.X_train ** 2))


@pytest.mark.parametrize("call,match", [
    (lambda: datasets.regression("cosh"), "unknown target"),
    (lambda: datasets.regression(n_train=0), "n_train"),
    (lambda: datasets.regression(noise=-1.0), "noise"),
    (lambda: datasets.load_digits(test_fraction=1.5), "test_fraction"),
    (lambda: datasets.load_digits(seed=-1), "seed"),
])
def test_dataset_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
