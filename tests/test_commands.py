"""The `gengrad train` and `gengrad flow` commands."""
import pytest

import gengrad
from gengrad.cli import main


def test_flow_command_prints_events_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "flow.png"
    assert main(["flow", "--samples", "16", "--hidden", "4", "--t-end", "5",
                 "--plot", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "gradient flow to t = 5: ok" in out and "crossing" in out
    assert figure.stat().st_size > 1000 and [p.name for p in tmp_path.iterdir()] == ["flow.png"]


def test_train_command_on_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    checkpoint = tmp_path / "run.npz"
    assert main(["train", "--hidden", "16", "--epochs", "2", "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "digits: 1347 training and 450 test samples" in out and "test accuracy" in out
    threads = gengrad.get_num_threads()
    try:
        assert main(["train", "--hidden", "16", "--epochs", "3", "--resume", str(checkpoint),
                     "--threads", "1"]) == 0
    finally:
        gengrad.set_num_threads(threads)
    assert "3 epochs" in capsys.readouterr().out


def test_train_command_regression_with_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "loss.png"
    assert main(["train", "--data", "sine", "--hidden", "8", "--epochs", "3", "--optimizer", "gd",
                 "--lr", "0.1", "--dtype", "float64", "--plot", str(figure)]) == 0
    assert "test risk" in capsys.readouterr().out and figure.exists()


def test_bad_hidden_widths():
    with pytest.raises(ValueError, match="--hidden"):
        main(["train", "--hidden", "64,x"])
