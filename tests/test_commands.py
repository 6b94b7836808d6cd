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


@pytest.mark.parametrize("argv,message", [
    (["train", "--hidden", "64,x"], "gengrad train: --hidden must be comma-separated integers"),
    (["train", "--epochs", "-1"], "gengrad train: epochs must be >= 0, got -1"),
    (["train", "--threads", "0"], "gengrad train: n must be an integer from 1 to"),
    (["train", "--activation", "relu(2)"], "gengrad train: activation 'relu' takes no parameters"),
    (["train", "--resume", "/nonexistent/run.npz", "--epochs", "1"], "does not exist"),
    (["flow", "--activation", "foo"], "gengrad flow: unknown activation 'foo'"),
    (["flow", "--t-end", "-1"], "gengrad flow: t_end must be a number >= 0"),
    (["flow", "--activation", "foo(1)"], "gengrad flow: unknown activation 'foo'"),
    (["train", "--threads", "abc"], "gengrad train: argument --threads: invalid int value: 'abc'"),
    (["bogus"], "gengrad: argument command: invalid choice: 'bogus'"),
    (["train", "--plot", "/nonexistent/x.png"], "gengrad train: --plot: the folder '/nonexistent' does not exist"),
    (["flow", "--plot", "/tmp/figure.qqq"], "gengrad flow: --plot: matplotlib cannot write .qqq files"),
])
def test_bad_arguments_get_one_line(argv, message, capsys):
    if "--plot" in argv:
        pytest.importorskip("matplotlib")
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_extras_are_named_before_any_work(monkeypatch, capsys, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setitem(sys.modules, "sympy", None)
    for name in [n for n in sys.modules if n.startswith("gengrad.narrow")]:  # imported by other tests
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(gengrad, "narrow", raising=False)
    for argv, extra in ((["train", "--epochs", "1", "--plot", str(tmp_path / "a.png")], "plot"),
                        (["flow", "--plot", str(tmp_path / "b.png")], "plot"),
                        (["narrow"], "narrow")):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert f"pip install 'gengrad[{extra}]'" in err and "Traceback" not in err
        assert out == "" or "training" not in out  # nothing computed


def test_leaky_relu_with_a_slope_everywhere(capsys):
    assert main(["flow", "--activation", "leaky_relu(0.2)", "--samples", "8", "--hidden", "3", "--t-end", "1",
                 "--events", "0"]) == 0
    assert "leaky_relu(0.2)" in capsys.readouterr().out


def test_info_says_plainly_whether_cuda_is_usable(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "threads (at most" in out
    cuda_line = next(line for line in out.splitlines() if line.startswith("CUDA backend:"))
    assert "usable on" in cuda_line or "not usable here" in cuda_line or "not available" in cuda_line
    assert "insufficient" not in cuda_line or "the CUDA runtime says" in cuda_line
