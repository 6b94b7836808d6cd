"""Bad input gets a TypeError/ValueError that names the argument; nothing crashes."""
import os
import subprocess
import sys

import numpy as np
import pytest

import gengrad
from gengrad import activations

WIDTHS = (3, 4, 2)


@pytest.fixture
def problem():
    net = gengrad.Network(WIDTHS)
    rng = np.random.default_rng(0)
    return net, net.init(0), rng.normal(size=(5, 3)), rng.normal(size=(5, 2))


@pytest.mark.parametrize("widths,error,match", [
    ((3,), ValueError, "widths"), ((), ValueError, "widths"), ((3, 0, 2), ValueError, "width"),
    ((3, -1, 2), ValueError, "width"), ((3, 2.5, 2), TypeError, "integers"), (5, TypeError, "widths"),
    ((2,) * 67, ValueError, "widths"), ((3, True, 2), TypeError, "integers"),
    ((2**63, 1), ValueError, "between 1 and 2\\^62"),
    ((2**40, 2**40, 1), ValueError, "more than 2\\^63 - 1 parameters"),  # d overflowed int64
    ((2**62, 4, 1), ValueError, "more than 2\\^63 - 1 parameters"),
])
def test_bad_widths(widths, error, match):
    with pytest.raises(error, match=match):
        gengrad.Network(widths)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(activation="relu7"), ValueError, "unknown activation"),
    (dict(activation=3), TypeError, "activation"),
    (dict(activation="clip"), ValueError, "bounds"),
    (dict(activation="relu", convention=0.5), ValueError, "strictly between|one-sided"),
    (dict(activation="relu", convention=2.0), ValueError, "one-sided"),
    (dict(activation="abs", convention=0.0), ValueError, "limiting Frechet"),
    (dict(activation="hardtanh", convention=(0.0,)), ValueError, "2 value"),
    (dict(activation="relu", convention="middle"), ValueError, "convention"),
    (dict(activation="relu", convention=float("nan")), ValueError, "convention"),
    (dict(activation="tanh", convention=0.0), ValueError, "no kinks"),
    (dict(loss="hinge"), ValueError, "unknown loss"),
    (dict(backend="gpu"), ValueError, "unknown backend"),
])
def test_bad_network_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        gengrad.Network(WIDTHS, **kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: activations.leaky_relu(float("inf")), "alpha"),
    (lambda: activations.leaky_relu(1.0), "alpha"),
    (lambda: activations.hardtanh(1.0, -1.0), "lo < hi"),
    (lambda: activations.clip(0.0, "1"), "hi"),
])
def test_bad_activation_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("method", ["risk", "risk_and_gradient", "gradient"])
def test_bad_shapes_name_the_argument(problem, method):
    net, theta, X, Y = problem
    call = getattr(net, method)
    cases = [
        ((theta[:-1], X, Y), "theta must have shape \\(26,\\)"),
        ((theta, X[:, :2], Y), "X must have shape \\(M, 3\\)"),
        ((theta, X[0], Y), "X must have shape"),
        ((theta, X, Y[:4]), "Y must have shape \\(5, 2\\)"),
        ((theta, X, Y[:, :1]), "Y must have shape"),
        ((theta, X[:0], Y[:0]), "at least one sample"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            call(*args)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        call(theta, X, Y, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        call(theta, X, Y, sample_weight=-np.ones(5))


@pytest.mark.parametrize("name", ["theta", "X", "Y", "sample_weight"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(problem, name, bad):
    net, theta, X, Y = problem
    args = dict(theta=theta.copy(), X=X.copy(), Y=Y.copy(), sample_weight=np.full(5, 0.2))
    args[name].flat[1] = bad
    with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
        net.risk_and_gradient(args["theta"], args["X"], args["Y"], sample_weight=args["sample_weight"])
    if name in ("theta", "X"):
        with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
            net.forward(args["theta"], args["X"])
        with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
            net.kink_counts(args["theta"], args["X"])


def test_wrong_dtypes_are_refused_not_converted(problem):
    net, theta, X, Y = problem
    with pytest.raises(TypeError, match="X has dtype float32 but theta has dtype float64"):
        net.risk(theta, X.astype(np.float32), Y)
    with pytest.raises(TypeError, match="Y has dtype int64"):
        net.risk(theta, X, Y.astype(np.int64))
    with pytest.raises(TypeError, match="theta must have dtype float32 or float64"):
        net.risk(theta.astype(np.int32), X, Y)
    with pytest.raises(TypeError, match="theta must have dtype float32 or float64"):
        net.forward(theta.astype(np.float16), X.astype(np.float16))
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        net.forward(theta, [["a", "b", "c"]])
    with pytest.raises(TypeError, match="dtype"):
        net.init(dtype=np.int64)
    with pytest.raises(TypeError, match="the reference backend computes in float64"):
        gengrad.Network(WIDTHS, backend="reference").risk(theta.astype(np.float32), X.astype(np.float32),
                                                          Y.astype(np.float32))


def test_non_contiguous_and_read_only_inputs_are_read_correctly(problem):
    net, theta, X, Y = problem
    expected = net.risk_and_gradient(theta, X, Y)
    wide = np.zeros((5, 6))
    wide[:, ::2] = X
    frozen = theta.copy()
    frozen.flags.writeable = False
    risk, G = net.risk_and_gradient(frozen, wide[:, ::2], np.asfortranarray(Y))
    assert risk == expected[0] and np.array_equal(G, expected[1])


def test_out_must_be_a_writeable_contiguous_array_of_the_right_kind(problem):
    net, theta, X, Y = problem
    out = np.empty(net.dim)
    assert net.gradient(theta, X, Y, out=out) is out
    assert np.array_equal(out, net.gradient(theta, X, Y))
    read_only = np.empty(net.dim)
    read_only.flags.writeable = False
    cases = [
        (read_only, ValueError, "out must be writeable"),
        (np.empty(2 * net.dim)[::2], ValueError, "out must be C-contiguous"),
        (np.empty(net.dim - 1), ValueError, "out must have shape"),
        (np.empty(net.dim, np.float32), TypeError, "out must be a numpy array with the dtype of theta"),
        (theta, ValueError, "out must not share memory"),
        ([0.0] * net.dim, TypeError, "out"),
    ]
    for out, error, match in cases:
        with pytest.raises(error, match=match):
            net.gradient(theta, X, Y, out=out)


def test_approx_gradient_arguments(problem):
    net, theta, X, Y = problem
    for r in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="r must be a positive finite number"):
            net.approx_gradient(theta, X, Y, r)
    with pytest.raises(TypeError, match="r must be a positive number"):
        net.approx_gradient(theta, X, Y, "10")
    with pytest.raises(ValueError, match="unknown approximant family"):
        net.approx_gradient(theta, X, Y, 10.0, family="quadratic")


def test_cross_entropy_labels(problem):
    _, theta, X, _ = problem
    net = gengrad.Network(WIDTHS, loss="cross_entropy")
    labels = np.array([0, 1, 1, 0, 1])
    assert net.risk(theta, X, labels) == net.risk(theta, X, np.eye(2)[labels])
    with pytest.raises(ValueError, match="class labels"):
        net.risk(theta, X, np.array([0, 1, 2, 0, 1]))


def test_threads_and_isa_arguments():
    with pytest.raises(ValueError, match="n must be an integer from 1 to"):
        gengrad.set_num_threads(0)
    with pytest.raises(TypeError):
        gengrad.set_num_threads(1.5)
    with pytest.raises(ValueError, match="unknown isa"):
        gengrad.select_isa("neon9")
    info = gengrad.build_info()
    assert info["isa"] in info["isas_supported"] and info["threads"] >= 1
    for isa in set(info["isas_built"]) - set(info["isas_supported"]):
        with pytest.raises(ValueError, match="not supported by this CPU"):
            gengrad.select_isa(isa)


@pytest.mark.parametrize("value", ["neon9", "AVX2", "avx2,sse2", "  "])
def test_a_bad_isa_variable_fails_the_import_naming_it(value):
    """A mistyped GENGRAD_ISA used to be ignored silently: the default build ran instead."""
    done = subprocess.run([sys.executable, "-c", "import gengrad"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GENGRAD_ISA": value})
    assert done.returncode != 0
    assert f"GENGRAD_ISA='{value}': unknown isa '{value.strip()}'; expected 'auto' or one of" in done.stderr


def test_an_isa_variable_the_cpu_cannot_run_fails_the_import():
    info = gengrad.build_info()
    for isa in set(info["isas_built"]) - set(info["isas_supported"]):
        done = subprocess.run([sys.executable, "-c", "import gengrad"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GENGRAD_ISA": isa})
        assert done.returncode != 0 and f"GENGRAD_ISA='{isa}': isa '{isa}' is not supported by this CPU" in done.stderr
    for isa in info["isas_supported"] + ["auto", "", " avx2\t" if "avx2" in info["isas_supported"] else "auto "]:
        done = subprocess.run([sys.executable, "-c", "import gengrad; print(gengrad.build_info()['isa'])"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "GENGRAD_ISA": isa})
        best = info["isas_supported"][-1]
        assert done.returncode == 0 and done.stdout.strip() == (best if isa.strip() in ("auto", "") else isa.strip())


@pytest.mark.parametrize("n", [2**62, 10**30])
def test_ensemble_refuses_n_whose_parameters_overflow(n):
    with pytest.raises(ValueError, match=f"n = {n} networks of d = 13 parameters"):
        gengrad.Ensemble((2, 3, 1), n)


def test_impossible_sizes_fail_at_once_naming_what_was_asked():
    # init allocated nothing before spawning n seed sequences: n = 10^15 ran until memory ran out
    with pytest.raises(MemoryError, match="n = 1000000000000000 networks of d = 13 parameters"):
        gengrad.Ensemble((2, 3, 1), 10**15).init(0)
    with pytest.raises(MemoryError, match=r"widths \(10000000, 10000000, 1\)"):
        gengrad.Network((10**7, 10**7, 1)).init(0)


# --- refusals found by a review as a new user (issue 15) -------------------------------------


@pytest.mark.parametrize("networks", [2, 4])
def test_ensemble_per_network_inputs_must_match_its_size(networks):
    ensemble = gengrad.Ensemble(WIDTHS, 3)
    thetas = ensemble.init(0)
    X = np.zeros((networks, 5, 3))
    for method in (ensemble.forward, ensemble.kink_counts):
        with pytest.raises(ValueError, match=r"X must have shape \(M, 3\) \(shared\) or \(3, M, 3\)"):
            method(thetas, X)


def test_integer_targets_of_a_cross_entropy_ensemble_are_labels_or_refused():
    ensemble = gengrad.Ensemble((2, 3, 3), 3, loss="cross_entropy")
    thetas = ensemble.init(0)
    X = np.random.default_rng(0).normal(size=(3, 2))
    one_hot = np.eye(3, dtype=int)
    with pytest.raises(ValueError, match="ambiguous"):  # n = M = classes: labels or one-hot?
        ensemble.risk(thetas, X, one_hot)
    assert np.array_equal(ensemble.risk(thetas, X, one_hot.astype(float)),
                          [gengrad.Network((2, 3, 3), loss="cross_entropy").risk(t, X, np.eye(3)) for t in thetas])
    X4 = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"shape \(3, 4\), got \(4, 3\) \(for one-hot targets pass floats"):
        ensemble.risk(thetas, X4, np.eye(4, 3, dtype=int))
    labels = np.array([[0, 1, 2, 2], [1, 1, 0, 0], [2, 0, 1, 1]])
    single = gengrad.Network((2, 3, 3), loss="cross_entropy")
    assert np.array_equal(ensemble.risk(thetas, X4, labels),
                          [single.risk(t, X4, row) for t, row in zip(thetas, labels)])


def test_cross_entropy_labels_as_a_list_are_labels(problem):
    net = gengrad.Network((3, 4, 3), loss="cross_entropy")
    theta, X = net.init(0), problem[2]
    labels = [0, 2, 1, 1, 0]
    assert net.risk(theta, X, labels) == net.risk(theta, X, np.array(labels))


def test_flatten_refuses_complex_layers(problem):
    net = problem[0]
    layers = [(W * 1j, b) for W, b in net.layers(problem[1])]
    with pytest.raises(TypeError, match="W_1 must hold real numbers, got dtype complex128"):
        net.flatten(layers)


def test_dense_output_refuses_times_that_are_not_numbers_in_the_interval():
    net = gengrad.Network((1, 3, 1))
    X = np.linspace(-1, 1, 8)[:, None]
    sol = gengrad.flow(net, net.init(0), X, X, 1.0, dense_output=True).sol
    for t in (np.nan, -np.inf, np.inf, [0.5, np.nan], 1.5):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1.0\]"):
            sol(t)


@pytest.mark.parametrize("make,match", [
    (lambda: activations.Activation("foo"), "unknown activation 'foo'"),
    (lambda: activations.Activation("relu", (), (float("nan"),), (0.0, 1.0), 0.0, (False,)), "kinks must be a finite"),
    (lambda: activations.Activation("relu", (), (0.0,), (0.0, float("inf")), 0.0, (False,)), "slopes must be a finite"),
    (lambda: activations.Activation("hardtanh", (), (1.0, -1.0), (0, 1, 0), 0.0, (False, False)),
     "kinks must increase"),
    (lambda: activations.Activation("relu", (), (0.0,), (0.0, 1.0), 0.0, ()), "one bool per kink"),
    (lambda: activations.Activation("tanh", (), (0.0,), (1.0, 1.0), 0.0, (False,)), "is smooth"),
    (lambda: gengrad.Network((1, 2, 1), "relu", convention={1: 0.5}), "convention must be None, 'left', 'right'"),
    (lambda: gengrad.Network((1, 2, 1), "relu", convention={0.0}), "convention must be None"),
])
def test_activation_definitions_are_checked(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


@pytest.mark.parametrize("seed", [-1, 1.5, "x", [-2]])
def test_seeds_are_named(seed):
    for model in (gengrad.Network(WIDTHS), gengrad.Ensemble(WIDTHS, 2)):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            model.init(seed=seed)


def test_divergence_is_reported_as_divergence():
    net = gengrad.Network((2, 8, 1))
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(FloatingPointError, match=r"training diverged: .* at epoch \d+, step 1 of 1 .*smaller lr"):
        gengrad.train(net, net.init(0), X, np.ones((10, 1)), optimizer="gd", batch_size=None, lr=1e30, epochs=5)


def round_trip(model):
    import pickle
    return pickle.loads(pickle.dumps(model))


def test_networks_and_ensembles_pickle_and_copy_through_a_spawn_pool():
    import concurrent.futures as cf
    import copy
    import multiprocessing
    net = gengrad.Network(WIDTHS, activations.leaky_relu(0.2), convention="right", loss="cross_entropy")
    ensemble = gengrad.Ensemble(WIDTHS, 3, "hardtanh", convention=[1.0, 0.0])
    for model in (net, ensemble):
        for copied in (copy.deepcopy(model), copy.copy(model), round_trip(model)):
            assert repr(copied) == repr(model)
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        back = pool.submit(round_trip, ensemble).result(timeout=120)
    X = np.random.default_rng(0).normal(size=(5, 3))
    thetas = ensemble.init(0)
    assert np.array_equal(back.forward(thetas, X), ensemble.forward(thetas, X))


# --- found by an adversarial review ------------------------------------------------------------


def test_arrays_that_went_through_pickle_are_accepted(problem):
    """An unpickled array's dtype is equal to float64 but another object: the core compared
    dtypes by identity and refused it (arrays sent to process pools)."""
    import pickle
    net, theta, X, Y = problem
    again = [pickle.loads(pickle.dumps(a)) for a in (theta, X, Y)]
    assert net.risk(*again) == net.risk(theta, X, Y)
    ensemble = gengrad.Ensemble(WIDTHS, 2)
    thetas = ensemble.init(0)
    assert np.array_equal(ensemble.risk(pickle.loads(pickle.dumps(thetas)), X, Y), ensemble.risk(thetas, X, Y))
    with pytest.raises(TypeError, match="theta must have dtype float32 or float64, got >f8"):
        net.risk(theta.astype(">f8"), X, Y)  # another byte order stays refused


@pytest.mark.parametrize("definition", [
    ("relu", (), (), (1.0,), 0.0, ()),                              # relu's name, the identity's numbers
    ("relu", (), (1.0,), (0.0, 1.0), 0.0, (False,)),                # a kink moved
    ("leaky_relu", (0.2,), (0.0,), (0.5, 1.0), 0.0, (False,)),      # params and slopes disagree
    ("hardtanh", (-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0, 0.0), 7.0, (False, True)),
    ("tanh", (3.0,)),                                               # params a smooth one does not take
])
def test_an_activation_must_be_what_its_name_says(definition):
    with pytest.raises(ValueError, match="Activation (relu|leaky_relu|hardtanh|tanh)"):
        activations.Activation(*definition)


def test_per_network_labels_as_nested_lists_are_labels():
    ensemble = gengrad.Ensemble((2, 3, 3), 3, loss="cross_entropy")
    thetas = ensemble.init(0)
    X = np.random.default_rng(0).normal(size=(3, 2))
    labels = [[0, 1, 2], [2, 1, 0], [0, 0, 1]]
    assert np.array_equal(ensemble.risk(thetas, X, labels), ensemble.risk(thetas, X, np.array(labels)))


def test_dense_output_refuses_times_of_two_dimensions():
    net = gengrad.Network((1, 3, 1))
    X = np.linspace(-1, 1, 8)[:, None]
    sol = gengrad.flow(net, net.init(0), X, X, 1.0, dense_output=True).sol
    with pytest.raises(ValueError, match="1-D array of times"):
        sol(np.array([[0.1]]))


def test_thread_counts_may_be_numpy_integers():
    before = gengrad.get_num_threads()
    try:
        gengrad.set_num_threads(np.int64(1))
        with gengrad.threads.limit(np.int32(1)):
            assert gengrad.get_num_threads() == 1
    finally:
        gengrad.set_num_threads(before)


def test_names_of_codes_agree_between_the_core_and_the_specification():
    """The core defines the activation, family and loss codes (contract.hpp); the Python modules
    that name them must name the same set."""
    from gengrad import _core, activations, reference
    assert set(_core.ACTIVATION_CODES) == set(activations.SMOOTH) | {"piecewise_linear"}
    assert set(_core.FAMILY_CODES) == set(activations.FAMILIES) | {"exact"}
    assert gengrad.network.LOSSES == reference.LOSSES == tuple(_core.LOSS_CODES)
    assert gengrad.network.MAX_LAYERS == _core.MAX_LAYERS == 64


BAD_REFERENCE_INPUTS = [
    ("theta", lambda t, X, Y: (t[:-1], X, Y), ValueError),
    ("theta", lambda t, X, Y: (np.where(np.arange(t.size) == 2, np.nan, t), X, Y), ValueError),
    ("X", lambda t, X, Y: (t, X[:, :1].copy(), Y), ValueError),
    ("X", lambda t, X, Y: (t, np.full_like(X, np.inf), Y), ValueError),
    ("X", lambda t, X, Y: (t, X[:0].copy(), Y[:0].copy()), ValueError),
    ("Y", lambda t, X, Y: (t, X, Y[:-1].copy()), ValueError),
]


@pytest.mark.parametrize("name, corrupt, error", BAD_REFERENCE_INPUTS)
def test_the_reference_backend_rejects_what_the_core_rejects_on_its_own(problem, name, corrupt, error):
    """The reference checks its arguments without the compiled core, with the core's words."""
    net, theta, X, Y = problem
    reference_net = gengrad.Network(net.widths, net.activation, loss=net.loss, backend="reference")
    args = corrupt(theta, X, Y)
    with pytest.raises(error) as from_core:
        net.risk_and_gradient(*args)
    with pytest.raises(error) as from_reference:
        reference_net.risk_and_gradient(*args)
    assert str(from_core.value).startswith(name) and str(from_reference.value) == str(from_core.value)


def test_the_package_and_its_build_agree_on_the_version():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from pathlib import Path
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert gengrad.__version__ == pyproject["project"]["version"]
