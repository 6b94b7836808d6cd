"""The CUDA backend (gengrad._cuda). Without a GPU: the module imports and reports that there is
no device, backend="cuda" refuses clearly, and the kernels' phases, emulated on the CPU (the same
host/device code, backends.CudaEmulated; the cross-implementation table runs it too), agree with
the reference and the CPU core, also for ensembles, approximants and the DLPack paths (with
PyTorch CPU tensors standing in for device arrays). With a GPU: the same on the device, device
arrays in and out, and bitwise reproducible results."""
import numpy as np
import pytest

import gengrad
from conftest import kink_problem, random_problem, relative_error
from gengrad import reference as R

BUILT = gengrad.cuda.built()
NO_DEVICE = gengrad.cuda.unavailable()
needs_module = pytest.mark.skipif(not BUILT, reason="gengrad was built without gengrad._cuda")
needs_device = pytest.mark.skipif(NO_DEVICE is not None, reason=f"no usable GPU: {NO_DEVICE}")
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def emulated(net: gengrad.Network):
    return gengrad.cuda.model(net._model_args, emulate=True)


def test_build_info_reports_cuda():
    info = gengrad.build_info()["cuda"]
    assert info["built"] == BUILT
    assert isinstance(info["devices"], int)
    assert (info["devices"] == 0) == (NO_DEVICE is not None)
    if BUILT:
        assert "90" in info["architectures"]


@pytest.mark.skipif(NO_DEVICE is None, reason="a GPU is usable here")
def test_backend_cuda_without_a_device_says_why():
    with pytest.raises(RuntimeError, match="backend='cuda' is unavailable: "):
        gengrad.Network((2, 3, 1), backend="cuda")
    with pytest.raises(RuntimeError, match="backend='cuda' is unavailable: "):
        gengrad.Ensemble((2, 3, 1), 4, backend="cuda")


@needs_module
@pytest.mark.skipif(NO_DEVICE is None, reason="a GPU is usable here")
def test_module_reports_no_device():
    from gengrad import _cuda
    assert _cuda.device_count() == 0
    assert _cuda.build_info()["unavailable"]
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _cuda.Model([2, 3, 1], 0, [0.0], [0.0, 1.0], 0.0, [False], 0)


def test_unknown_backend_of_an_ensemble():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        gengrad.Ensemble((2, 3, 1), 4, backend="gpu")


def test_device_arrays_are_told_apart_from_host_arrays():
    class FakeCuda:
        def __dlpack_device__(self):
            return (2, 0)

    assert gengrad.cuda.is_device_array(FakeCuda())
    assert not gengrad.cuda.is_device_array(np.zeros(3))
    assert not gengrad.cuda.is_device_array([1.0, 2.0])
    torch = pytest.importorskip("torch")
    assert not gengrad.cuda.is_device_array(torch.zeros(3))  # a CPU tensor: converted to NumPy


# --- the kernels' arithmetic, emulated on the CPU ---------------------------------------------

def _ensemble_problem(widths, n, M, dtype, loss, data, per_net, weighted, seed=0):
    rng = np.random.default_rng(seed)
    make = kink_problem if data == "kink" else random_problem
    problems = [make(widths, M, seed + i, loss, dtype) for i in range(n)]
    thetas = np.stack([p[0] for p in problems])
    X = np.stack([p[1] for p in problems]) if per_net else problems[0][1]
    Y = np.stack([p[2] for p in problems]) if per_net else problems[0][2]
    weight = None
    if weighted:
        shape = (n, M) if per_net else (M,)
        weight = rng.uniform(0.0, 2.0, size=shape).astype(dtype)
    return thetas, X, Y, weight

def _assert_networks_agree(risks, G, widths, act, loss, thetas, X, Y, weight, per_net, dtype):
    """Each network's risk and G against the float64 reference at the (rounded) inputs."""
    for i in range(len(thetas)):
        x = (X[i] if per_net else X).astype(np.float64)
        y = (Y[i] if per_net else Y).astype(np.float64)
        w = None if weight is None else (weight[i] if per_net else weight).astype(np.float64)
        t = thetas[i].astype(np.float64)
        assert relative_error(risks[i], R.risk(t, widths, act, x, y, loss, w)) <= TOLERANCE[dtype]
        G_ref = R.generalized_gradient(t, widths, act, x, y, loss, w)
        assert relative_error(G[i], G_ref) <= TOLERANCE[dtype] * 10



@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("data", ["random", "kink"])
@pytest.mark.parametrize("per_net,weighted", [(False, False), (True, True), (False, True)])
def test_emulated_ensemble_agrees_with_the_reference(dtype, loss, data, per_net, weighted):
    """Several networks and tile groups per network (M = 200: 4 tiles), so the grid over
    networks x tiles and the reduction of the groups' partial gradients are exercised."""
    widths, n, M = (3, 9, 7, 2), 5, 200
    ensemble = gengrad.Ensemble(widths, n, "relu", loss=loss)
    thetas, X, Y, weight = _ensemble_problem(widths, n, M, dtype, loss, data, per_net, weighted)
    model = emulated(ensemble.network)
    risks, G = model.ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, True, None)
    assert G.dtype == dtype and risks.dtype == np.float64
    _assert_networks_agree(risks, G, widths, ensemble.network.activation, loss, thetas, X, Y, weight, per_net,
                           dtype)
    risks_only, none = model.ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, False, None)
    assert none is None
    np.testing.assert_array_equal(risks_only, risks)


@needs_module
@pytest.mark.parametrize("family", ["cubic", "sine", "softplus", "shifted_softplus"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_emulated_approx_gradient_agrees_with_the_reference(family, dtype):
    widths, M, r = (2, 6, 5, 3), 70, 3.0
    net = gengrad.Network(widths, "leaky_relu")
    net.engine = emulated(net)
    theta, X, Y = kink_problem(widths, M, 1, "squared_error", dtype)
    G = net.approx_gradient(theta, X, Y, r, family)
    t, x, y = (a.astype(np.float64) for a in (theta, X, Y))
    expected = R.approx_gradient(t, widths, net.activation, x, y, r, family)
    assert relative_error(G, expected) <= TOLERANCE[dtype] * 10


@needs_module
def test_emulated_results_are_reproducible_and_independent_of_the_tile_groups():
    """Bitwise equal run to run; an ensemble's network i equals the same network alone up to
    rounding (alone it has more tile groups, summed in another order)."""
    widths, M = (4, 16, 16, 1), 300
    ensemble = gengrad.Ensemble(widths, 3, "relu")
    thetas, X, Y, _ = _ensemble_problem(widths, 3, M, np.float32, "squared_error", "random", False, False)
    model = emulated(ensemble.network)
    first = model.ensemble_risk_gradient(thetas, X, Y, None, 0, 0.0, True, None)
    second = model.ensemble_risk_gradient(thetas, X, Y, None, 0, 0.0, True, None)
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[0], second[0])
    risk, G = model.risk_gradient(thetas[1], X, Y, None, 0, 0.0, True, None)
    assert relative_error(G, first[1][1]) <= 1e-5


@needs_module
def test_emulated_forward_and_kink_counts_agree_with_the_core():
    widths, M = (3, 5, 4, 2), 150
    net = gengrad.Network(widths, "hardtanh")
    theta, X, _ = kink_problem(widths, M, 2, "squared_error", np.float64)
    model = emulated(net)
    np.testing.assert_array_equal(model.pre_activations(theta, X, 1), net.core.pre_activations(theta, X, 1))
    np.testing.assert_array_equal(model.pre_activations(theta, X, 3), net.core.pre_activations(theta, X, 3))
    counts = model.kink_counts(theta, X)
    np.testing.assert_array_equal(counts, net.core.kink_counts(theta, X))
    assert counts.sum() > 0
    assert model.pre_activations(theta, X[:0], 1).shape == (0, 11)


@needs_module
def test_emulated_model_checks_its_inputs_like_the_core():
    net = gengrad.Network((2, 3, 1))
    model = emulated(net)
    theta = net.init(0)
    X, Y = np.ones((4, 2)), np.ones((4, 1))
    with pytest.raises(ValueError, match=r"X must have shape \(M, 2\)"):
        model.risk_gradient(theta, np.ones((4, 3)), Y, None, 0, 0.0, True, None)
    with pytest.raises(TypeError, match="X must have dtype float64"):
        model.risk_gradient(theta, X.astype(np.float32), Y, None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        model.risk_gradient(theta, np.full((4, 2), np.nan), Y, None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        model.risk_gradient(theta, X, Y, -np.ones(4), 0, 0.0, True, None)
    with pytest.raises(ValueError, match="at least one sample"):
        model.risk_gradient(theta, X[:0], Y[:0], None, 0, 0.0, True, None)
    with pytest.raises(TypeError, match="must be a numpy array or a CUDA device array"):
        model.risk_gradient(theta, "X", Y, None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match="r must be a positive finite number"):
        model.risk_gradient(theta, X, Y, None, 1, -1.0, True, None)
    with pytest.raises(ValueError, match="out must not share memory"):
        model.risk_gradient(theta, X, Y, None, 0, 0.0, True, theta)
    out = np.empty(net.dim)
    assert model.risk_gradient(theta, X, Y, None, 0, 0.0, True, out)[1] is out


# The fused kernel takes tiles of 64, 32 or 16 samples, the most whose scratch (input + 2 x hidden
# + output rows) fits 95 KiB; wider nets take the layer-by-layer path (layered.hpp).
MEDIUM = (3, 120, 100, 2)   # 445 rows: tiles of 32 samples in float32, 16 in float64
WIDE = (2, 360, 360, 2)     # 1444 rows: the layered path in both


@pytest.fixture(params=[0, 10 * 1444], ids=["one-chunk", "chunks"])
def chunking(request):
    """The layered path with its default chunks, and with 8 samples per chunk."""
    from gengrad import _cuda
    _cuda._set_chunk_elements(request.param)
    yield request.param
    _cuda._set_chunk_elements(0)


@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("data", ["random", "kink"])
def test_emulated_smaller_tiles_agree_with_the_reference(dtype, loss, data):
    n, M = 2, 70
    ensemble = gengrad.Ensemble(MEDIUM, n, "relu", loss=loss)
    thetas, X, Y, weight = _ensemble_problem(MEDIUM, n, M, dtype, loss, data, True, dtype == np.float64)
    risks, G = emulated(ensemble.network).ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, True, None)
    _assert_networks_agree(risks, G, MEDIUM, ensemble.network.activation, loss, thetas, X, Y, weight, True, dtype)


@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("data", ["random", "kink"])
@pytest.mark.parametrize("activation", ["relu", "hardtanh", "gelu"])
def test_emulated_layered_path_agrees_with_the_reference(dtype, loss, data, activation, chunking):
    n, M = 2, 30
    ensemble = gengrad.Ensemble(WIDE, n, activation, loss=loss)
    thetas, X, Y, weight = _ensemble_problem(WIDE, n, M, dtype, loss, data, True, dtype == np.float64)
    model = emulated(ensemble.network)
    risks, G = model.ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, True, None)
    act = ensemble.network.activation
    _assert_networks_agree(risks, G, WIDE, act, loss, thetas, X, Y, weight, True, dtype)
    net = ensemble.network
    Z = model.pre_activations(thetas[0], X[0], 2)
    Z_ref = np.hstack(R.pre_activations(thetas[0].astype(np.float64), WIDE, act, X[0].astype(np.float64))[1:])
    assert relative_error(Z, Z_ref) <= TOLERANCE[dtype]
    if data == "kink":
        np.testing.assert_array_equal(model.kink_counts(thetas[0], X[0]), net.core.kink_counts(thetas[0], X[0]))
    r = 2.0
    G_r = model.risk_gradient(thetas[0], X[0], Y[0], None, 1, r, True, None)[1]
    G_r_ref = R.approx_gradient(thetas[0].astype(np.float64), WIDE, act, X[0].astype(np.float64),
                                Y[0].astype(np.float64), r, "cubic", loss)
    assert relative_error(G_r, G_r_ref) <= TOLERANCE[dtype] * 10


@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("widths", [(3, 9, 7, 2), MEDIUM, WIDE], ids=["fused-64", "fused-smaller", "layered"])
def test_emulated_results_do_not_depend_on_the_order_of_threads(dtype, widths, chunking):
    """The emulation stands for the device only if no thread of a phase (no item of a step) reads
    what another writes in the same phase: then any order of the threads gives the same bits.
    Run last to first, every result must be bitwise what first to last gives."""
    from gengrad import _cuda
    n, M = 3, 200 if widths == (3, 9, 7, 2) else 40
    ensemble = gengrad.Ensemble(widths, n, "leaky_relu", loss="cross_entropy")
    thetas, X, Y, weight = _ensemble_problem(widths, n, M, dtype, "cross_entropy", "kink", False, True)
    model = emulated(ensemble.network)

    def results():
        return (*model.ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, True, None),
                model.risk_gradient(thetas[1], X, Y, None, 1, 2.0, True, None)[1],
                model.pre_activations(thetas[2], X, 1),
                model.ensemble_pre_activations(thetas, X, 1))

    _assert_same_bits(results, _cuda._set_emulation_reversed, True, False)


def _assert_same_bits(results, set_option, changed, default):
    """results() with an option changed are bitwise those with its default."""
    expected = results()
    set_option(changed)
    try:
        actual = results()
    finally:
        set_option(default)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a, b)


@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("widths", [(3, 9, 7, 2), (5, 16, 4, 3), MEDIUM],
                         ids=["odd", "multiples-of-4", "smaller-tiles"])
def test_emulated_register_tiles_change_no_bit(dtype, widths):
    """The fused kernel's threads take 4 x 4 register tiles or one output each (a choice of
    speed): the same sums in the same order, so every result must be the same bits, on layers
    whose widths are and are not multiples of the tile."""
    from gengrad import _cuda
    n, M = 3, 150
    ensemble = gengrad.Ensemble(widths, n, "leaky_relu", loss="cross_entropy")
    thetas, X, Y, weight = _ensemble_problem(widths, n, M, dtype, "cross_entropy", "kink", True, True)
    model = emulated(ensemble.network)

    def results():
        return (*model.ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, True, None),
                *model.ensemble_risk_gradient(thetas, X, Y, None, 3, 1.5, True, None),
                model.ensemble_pre_activations(thetas, X, 1))

    _assert_same_bits(results, _cuda._set_register_tiles, False, True)


# --- Ensemble.forward and kink_counts: all networks in one launch --------------------------------

def emulated_ensemble(widths, n, activation="relu"):
    """An Ensemble computing as backend="cuda" does, with the emulated kernels (NumPy arrays)."""
    ensemble = gengrad.Ensemble(widths, n, activation)
    ensemble.network.engine = emulated(ensemble.network)
    ensemble.network.backend = "cuda"
    return ensemble


def _reference_forward(thetas, X, widths, act, per_net, first):
    """(n, M, l_first + ... + l_L) of the float64 reference at the (rounded) inputs, and the
    (n, L-1) kink counts."""
    Z, counts = [], []
    for i, theta in enumerate(thetas):
        t, x = theta.astype(np.float64), (X[i] if per_net else X).astype(np.float64)
        Z.append(np.hstack(R.pre_activations(t, widths, act, x)[first - 1:]))
        counts.append(R.kink_counts(t, widths, act, x))
    return np.stack(Z), np.stack(counts)


def _assert_forward_agrees(ensemble, thetas, X, per_net, data, dtype):
    """forward, every layer's pre-activations and kink counts against the reference; integer
    data (sums of small integers, exact in both dtypes) bitwise, with kinks hit."""
    widths, act = ensemble.widths, ensemble.network.activation
    model = ensemble.network.engine
    n, M = len(thetas), X.shape[-2]
    Z_ref, counts_ref = _reference_forward(thetas, X, widths, act, per_net, 1)
    out = ensemble.forward(thetas, X)
    assert type(out) is np.ndarray and out.dtype == dtype and out.shape == (n, M, widths[-1])
    Z = model.ensemble_pre_activations(thetas, X, 1)
    assert Z.shape == (n, M, sum(widths[1:]))
    np.testing.assert_array_equal(out, Z[:, :, -widths[-1]:])
    np.testing.assert_array_equal(model.ensemble_pre_activations(thetas, X, 2), Z[:, :, widths[1]:])
    counts = ensemble.kink_counts(thetas, X)
    assert counts.dtype == np.int64 and counts.shape == (n, len(widths) - 2)
    np.testing.assert_array_equal(counts, counts_ref)
    if data == "kink":
        np.testing.assert_array_equal(Z, Z_ref)
        assert (counts > 0).all()
    else:
        for i in range(n):
            assert relative_error(Z[i], Z_ref[i]) <= TOLERANCE[dtype]


@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("data", ["random", "kink"])
@pytest.mark.parametrize("per_net", [False, True], ids=["shared-X", "X-per-network"])
@pytest.mark.parametrize("widths,M", [((3, 9, 7, 2), 200), (MEDIUM, 70)], ids=["tiles-of-64", "tiles-of-32-16"])
def test_emulated_ensemble_forward_agrees_with_the_reference(dtype, data, per_net, widths, M, chunking):
    """The fused path: networks x tiles (4 or 3-5 tiles per network), the last tile partial;
    with chunking, kink_counts takes the networks in batches."""
    n = 5
    ensemble = emulated_ensemble(widths, n)
    thetas, X, _, _ = _ensemble_problem(widths, n, M, dtype, "squared_error", data, per_net, False)
    _assert_forward_agrees(ensemble, thetas, X, per_net, data, dtype)


@needs_module
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("data", ["random", "kink"])
@pytest.mark.parametrize("per_net", [False, True], ids=["shared-X", "X-per-network"])
def test_emulated_layered_ensemble_forward_agrees_with_the_reference(dtype, data, per_net, chunking):
    """The layered path, network after network, in one chunk or chunks of 8 samples."""
    n, M = 3, 30
    ensemble = emulated_ensemble(WIDE, n, "hardtanh")
    thetas, X, _, _ = _ensemble_problem(WIDE, n, M, dtype, "squared_error", data, per_net, False)
    _assert_forward_agrees(ensemble, thetas, X, per_net, data, dtype)


@needs_module
@pytest.mark.parametrize("widths", [(3, 9, 7, 2), WIDE], ids=["fused", "layered"])
def test_emulated_ensemble_forward_is_each_network_alone(widths):
    """Network i of the ensemble is bitwise network i computed alone, and bitwise the CPU
    backend's loop on integer data; runs repeat bitwise."""
    n, M = 4, 100
    ensemble = emulated_ensemble(widths, n)
    thetas, X, _, _ = _ensemble_problem(widths, n, M, np.float32, "squared_error", "kink", True, False)
    model = ensemble.network.engine
    Z = model.ensemble_pre_activations(thetas, X, 1)
    for i in range(n):
        np.testing.assert_array_equal(Z[i], model.pre_activations(thetas[i], X[i], 1))
        np.testing.assert_array_equal(ensemble.kink_counts(thetas, X)[i], model.kink_counts(thetas[i], X[i]))
    np.testing.assert_array_equal(model.ensemble_pre_activations(thetas, X, 1), Z)
    cpu = gengrad.Ensemble(widths, n)
    np.testing.assert_array_equal(ensemble.forward(thetas, X), cpu.forward(thetas, X))
    np.testing.assert_array_equal(ensemble.kink_counts(thetas, X), cpu.kink_counts(thetas, X))


@needs_module
def test_emulated_ensemble_forward_checks_its_inputs():
    widths, n = (3, 9, 7, 2), 4
    ensemble = emulated_ensemble(widths, n)
    model = ensemble.network.engine
    d = ensemble.dim
    thetas, X, _, _ = _ensemble_problem(widths, n, 20, np.float64, "squared_error", "random", False, False)
    for call in (ensemble.forward, ensemble.kink_counts):
        with pytest.raises(ValueError, match=rf"thetas must have shape \(4, {d}\), got \(3, {d}\)"):
            call(thetas[:3], X)
        with pytest.raises(ValueError, match=r"X must have shape \(M, 3\), got \(20, 4\)"):
            call(thetas, np.ones((20, 4)))
        with pytest.raises(ValueError, match=r"X must have shape \(4, M, 3\), got \(3, 20, 3\)"):
            call(thetas, np.ones((3, 20, 3)))
        bad = X.copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match=r"X contains NaN or Inf \(first at flat index 7\)"):
            call(thetas, bad)
        bad = thetas.copy()
        bad[1, 0] = np.inf
        with pytest.raises(ValueError, match=rf"thetas contains NaN or Inf \(first at flat index {d}\)"):
            call(bad, X)
    for method, args in (("ensemble_pre_activations", (1,)), ("ensemble_kink_counts", ())):
        call = getattr(model, method)
        with pytest.raises(ValueError, match=rf"thetas must have shape \(n, {d}\), got \(4, {d + 1}\)"):
            call(np.ones((n, d + 1)), X, *args)
        with pytest.raises(ValueError, match=rf"thetas must have shape \(n, {d}\), got \({d},\)"):
            call(thetas[0], X, *args)
        with pytest.raises(ValueError, match="thetas must hold at least one network"):
            call(thetas[:0], X, *args)
        with pytest.raises(TypeError, match=r"X must have dtype float64 \(the dtype of theta\), got float32"):
            call(thetas, X.astype(np.float32), *args)
    with pytest.raises(ValueError, match="first must be a layer between 1 and 3"):
        model.ensemble_pre_activations(thetas, X, 4)
    # no samples: empty results, no kinks
    assert ensemble.forward(thetas, X[:0]).shape == (n, 0, 2)
    np.testing.assert_array_equal(ensemble.kink_counts(thetas, X[:0]), np.zeros((n, 2), np.int64))


# --- DLPack, with PyTorch CPU tensors standing in for device arrays (the emulation's device) --

@needs_module
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dlpack_inputs_and_outputs(dtype):
    """Tensors are read in place and results come back as DeviceArrays that torch takes without
    a copy; the numbers equal the NumPy path's bitwise."""
    torch = pytest.importorskip("torch")
    widths, M = (3, 8, 2), 100
    net = gengrad.Network(widths, "relu")
    model = emulated(net)
    theta, X, Y = random_problem(widths, M, 3, "squared_error", np.dtype(dtype).type)
    risk, G = model.risk_gradient(theta, X, Y, None, 0, 0.0, True, None)
    t_theta, t_X, t_Y = (torch.from_numpy(a) for a in (theta, X, Y))
    risk_dl, G_dl = model.risk_gradient(t_theta, t_X, t_Y, None, 0, 0.0, True, None)
    assert type(G_dl).__name__ == "DeviceArray" and G_dl.shape == (net.dim,) and G_dl.dtype == np.dtype(dtype)
    assert G_dl.__dlpack_device__() == (1, 0)
    assert risk_dl == risk
    np.testing.assert_array_equal(torch.from_dlpack(G_dl).numpy(), G)
    np.testing.assert_array_equal(np.asarray(G_dl), G)
    # mixed: a tensor theta with NumPy data
    np.testing.assert_array_equal(np.asarray(model.risk_gradient(t_theta, X, Y, None, 0, 0.0, True, None)[1]), G)
    # out= as a tensor: written in place
    out = torch.empty(net.dim, dtype=getattr(torch, dtype))
    assert model.risk_gradient(t_theta, t_X, t_Y, None, 0, 0.0, True, out)[1] is out
    np.testing.assert_array_equal(out.numpy(), G)
    # column slices of a DeviceArray, as Network.pre_activations makes them
    Z = model.pre_activations(t_theta, t_X, 1)
    Z_np = model.pre_activations(theta, X, 1)
    np.testing.assert_array_equal(torch.from_dlpack(Z[:, 8:10]).numpy(), Z_np[:, 8:10])
    with pytest.raises(IndexError, match="column slices"):
        Z[0]
    # a DeviceArray is an input too
    np.testing.assert_array_equal(np.asarray(model.risk_gradient(G_dl, X, Y, None, 0, 0.0, True, None)[1]),
                                  model.risk_gradient(G, X, Y, None, 0, 0.0, True, None)[1])


@needs_module
@pytest.mark.parametrize("per_net", [False, True], ids=["shared-X", "X-per-network"])
def test_dlpack_ensemble_forward(per_net):
    """Tensor thetas give a DeviceArray (n, M, width), bitwise the NumPy path's."""
    torch = pytest.importorskip("torch")
    widths, n, M = (3, 9, 7, 2), 3, 80
    model = emulated(gengrad.Network(widths))
    thetas, X, _, _ = _ensemble_problem(widths, n, M, np.float32, "squared_error", "random", per_net, False)
    Z = model.ensemble_pre_activations(torch.from_numpy(thetas), torch.from_numpy(X), 1)
    assert type(Z).__name__ == "DeviceArray" and Z.shape == (n, M, 18) and Z.dtype == np.float32
    np.testing.assert_array_equal(torch.from_dlpack(Z).numpy(), model.ensemble_pre_activations(thetas, X, 1))
    counts = model.ensemble_kink_counts(torch.from_numpy(thetas), torch.from_numpy(X))
    np.testing.assert_array_equal(counts, model.ensemble_kink_counts(thetas, X))
    with pytest.raises(ValueError, match=r"X contains NaN or Inf"):
        model.ensemble_pre_activations(torch.from_numpy(thetas), torch.full(X.shape, float("nan")), 1)


@needs_module
@pytest.mark.parametrize("call,bad", [
    ("risk_gradient", "theta"), ("risk_gradient", "X"), ("risk_gradient", "Y"),
    ("risk_gradient", "sample_weight"), ("pre_activations", "theta"), ("pre_activations", "X"),
    ("kink_counts", "X"), ("ensemble_risk_gradient", "thetas"), ("ensemble_risk_gradient", "Y"),
    ("ensemble_risk_gradient", "sample_weight"), ("ensemble_pre_activations", "X"),
    ("ensemble_kink_counts", "thetas")])
def test_every_call_scans_its_device_arrays(call, bad):
    """Device arrays are scanned for NaN and Inf together, after the call has read them all (one
    launch and one wait on a GPU): each call must still refuse each argument's bad value, naming it,
    and report the first bad argument in the order read when several are bad."""
    torch = pytest.importorskip("torch")
    net = gengrad.Network((2, 3, 2))
    model = emulated(net)
    theta, X, Y = (torch.from_numpy(a) for a in kink_problem((2, 3, 2), 5, 0, "squared_error", np.float64))
    args = {"theta": theta, "thetas": torch.stack([theta, theta]), "X": X, "Y": Y,
            "sample_weight": torch.ones(5, dtype=torch.float64)}
    args[bad] = args[bad].clone()
    args[bad].view(-1)[3] = -1.0 if bad == "sample_weight" else float("nan")
    calls = {
        "risk_gradient": lambda: model.risk_gradient(args["theta"], args["X"], args["Y"], args["sample_weight"], 0,
                                                     0.0, True, None),
        "pre_activations": lambda: model.pre_activations(args["theta"], args["X"], 1),
        "kink_counts": lambda: model.kink_counts(args["theta"], args["X"]),
        "ensemble_risk_gradient": lambda: model.ensemble_risk_gradient(args["thetas"], args["X"], args["Y"],
                                                                       args["sample_weight"], 0, 0.0, True, None),
        "ensemble_pre_activations": lambda: model.ensemble_pre_activations(args["thetas"], args["X"], 1),
        "ensemble_kink_counts": lambda: model.ensemble_kink_counts(args["thetas"], args["X"]),
    }
    with pytest.raises(ValueError, match=rf"^{bad} contains NaN(, Inf or a negative value| or Inf) "
                                         r"\(first at flat index 3\)$"):
        calls[call]()
    if bad != "X":
        args["X"] = args["X"].clone()
        args["X"][0, 0] = float("inf")
        first = "X" if bad in ("Y", "sample_weight") else bad
        with pytest.raises(ValueError, match=rf"^{first} contains"):
            calls[call]()


@needs_module
def test_dlpack_inputs_are_checked():
    torch = pytest.importorskip("torch")
    net = gengrad.Network((2, 3, 1))
    model = emulated(net)
    theta = torch.from_numpy(net.init(0))
    X, Y = torch.ones((4, 2), dtype=torch.float64), torch.ones((4, 1), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"X must have dtype float64 \(the dtype of theta\), got float32"):
        model.risk_gradient(theta, X.float(), Y, None, 0, 0.0, True, None)
    with pytest.raises(TypeError, match="got int64"):
        model.risk_gradient(theta, X.long(), Y, None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match="X must be C-contiguous"):
        model.risk_gradient(theta, torch.ones((2, 4), dtype=torch.float64).T, Y, None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match=r"Y must have shape \(4, 1\)"):
        model.risk_gradient(theta, X, torch.ones(4, 2, dtype=torch.float64), None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match=r"X contains NaN or Inf \(first at flat index 3\)"):
        bad = X.clone()
        bad[1, 1] = float("inf")
        model.risk_gradient(theta, bad, Y, None, 0, 0.0, True, None)
    with pytest.raises(ValueError, match="sample_weight contains NaN, Inf or a negative value"):
        model.risk_gradient(theta, X, Y, -torch.ones(4, dtype=torch.float64), 0, 0.0, True, None)
    with pytest.raises(TypeError, match="must have dtype float32 or float64"):
        model.risk_gradient(theta.long(), X, Y, None, 0, 0.0, True, None)


@needs_module
def test_device_arrays_of_the_wrong_kind_are_refused():
    class FakeCuda:  # a CUDA array, which the host emulation cannot read
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, stream=None):
            raise AssertionError("must not be consumed")

    net = gengrad.Network((2, 3, 1))
    with pytest.raises(TypeError, match="the host emulation takes NumPy arrays or DLPack arrays on the CPU"):
        emulated(net).risk_gradient(net.init(0), FakeCuda(), np.ones((4, 1)), None, 0, 0.0, True, None)


# --- on the GPU --------------------------------------------------------------------------

@needs_device
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_results_are_bitwise_reproducible(dtype):
    """Large enough for many tile groups, networks and blocks: every sum has one fixed order."""
    for widths, n, M in [((8, 64, 64, 1), 1, 20000), ((4, 32, 32, 2), 300, 500)]:
        ensemble = gengrad.Ensemble(widths, n, "relu", backend="cuda")
        thetas, X, Y, weight = _ensemble_problem(widths, n, M, dtype, "squared_error", "random", False, True)
        runs = [ensemble.risk_and_gradient(thetas, X, Y, weight) for _ in range(3)]
        for risks, G in runs[1:]:
            np.testing.assert_array_equal(risks, runs[0][0])
            np.testing.assert_array_equal(G, runs[0][1])
        expected = gengrad.Ensemble(widths, n, "relu").risk_and_gradient(thetas, X, Y, weight)
        assert relative_error(runs[0][1], expected[1]) <= TOLERANCE[dtype] * 100


@needs_device
def test_gpu_agrees_with_its_emulation():
    widths, n, M = (3, 9, 7, 2), 5, 200
    ensemble = gengrad.Ensemble(widths, n, "tanh", loss="cross_entropy", backend="cuda")
    thetas, X, Y, weight = _ensemble_problem(widths, n, M, np.float64, "cross_entropy", "random", True, True)
    risks, G = ensemble.risk_and_gradient(thetas, X, Y, weight)
    risks_e, G_e = emulated(ensemble.network).ensemble_risk_gradient(thetas, X, Y, weight, 0, 0.0, True, None)
    assert relative_error(G, G_e) <= 1e-13 and relative_error(risks, risks_e) <= 1e-13


@needs_device
@pytest.mark.parametrize("widths", [(3, 9, 7, 2), WIDE], ids=["fused", "layered"])
def test_gpu_ensemble_forward(widths):
    """One launch for all networks: bitwise reproducible, its emulation's numbers up to FMA
    contraction, the kink counts exactly; device thetas give a DeviceArray."""
    n, M = 6, 300
    ensemble = gengrad.Ensemble(widths, n, "relu", backend="cuda")
    thetas, X, _, _ = _ensemble_problem(widths, n, M, np.float64, "squared_error", "random", True, False)
    runs = [ensemble.forward(thetas, X) for _ in range(3)]
    for out in runs[1:]:
        np.testing.assert_array_equal(out, runs[0])
    expected = emulated(ensemble.network).ensemble_pre_activations(thetas, X, len(widths) - 1)
    assert relative_error(runs[0], expected) <= 1e-13
    k_thetas, k_X, _, _ = _ensemble_problem(widths, n, M, np.float64, "squared_error", "kink", False, False)
    counts = ensemble.kink_counts(k_thetas, k_X)
    np.testing.assert_array_equal(counts, emulated(ensemble.network).ensemble_kink_counts(k_thetas, k_X))
    assert counts.sum() > 0
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        out = ensemble.forward(torch.from_numpy(thetas).cuda(), torch.from_numpy(X).cuda())
        assert type(out).__name__ == "DeviceArray"
        np.testing.assert_array_equal(torch.from_dlpack(out).cpu().numpy(), runs[0])


@needs_device
def test_gpu_dlpack_with_torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    widths, M = (3, 8, 2), 100
    net = gengrad.Network(widths, "relu", backend="cuda")
    theta, X, Y = random_problem(widths, M, 3, "squared_error", np.float32)
    risk, G = net.risk_and_gradient(theta, X, Y)
    d_theta, d_X, d_Y = (torch.from_numpy(a).cuda() for a in (theta, X, Y))
    risk_d, G_d = net.risk_and_gradient(d_theta, d_X, d_Y)
    assert risk_d == risk
    G_t = torch.from_dlpack(G_d)
    assert G_t.is_cuda
    np.testing.assert_array_equal(G_t.cpu().numpy(), G)
    zs = net.pre_activations(d_theta, d_X)
    np.testing.assert_array_equal(torch.from_dlpack(zs[1]).cpu().numpy(), net.forward(theta, X))
    with pytest.raises(TypeError, match="device type 1 \\(the CPU\\)"):
        net.engine.risk_gradient(d_theta, torch.from_numpy(X), d_Y, None, 0, 0.0, True, None)


@needs_device
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("widths,n,M", [((3, 9, 7, 2), 5, 200), (MEDIUM, 2, 70), (WIDE, 2, 30)],
                         ids=["fused-64", "fused-smaller", "layered"])
def test_gpu_every_path_agrees_with_the_reference(dtype, widths, n, M, chunking):
    """Each kernel path on the device (also what .ci/gpu runs under compute-sanitizer), on integer
    data that hits the kinks: the ensemble's risks and G, and one network's forward pass, kink
    counts and approximate gradient."""
    ensemble = gengrad.Ensemble(widths, n, "relu", loss="cross_entropy", backend="cuda")
    thetas, X, Y, weight = _ensemble_problem(widths, n, M, dtype, "cross_entropy", "kink", True, True)
    risks, G = ensemble.risk_and_gradient(thetas, X, Y, weight)
    act = ensemble.network.activation
    _assert_networks_agree(risks, G, widths, act, "cross_entropy", thetas, X, Y, weight, True, dtype)
    net, cpu = ensemble.network, gengrad.Network(widths, "relu", loss="cross_entropy")
    theta, x, y = thetas[0], X[0], Y[0]
    assert net.kink_counts(theta, x).sum() > 0
    np.testing.assert_array_equal(net.kink_counts(theta, x), cpu.kink_counts(theta, x))
    assert relative_error(net.forward(theta, x), cpu.forward(theta, x)) <= TOLERANCE[dtype]
    G_r = net.approx_gradient(theta, x, y, 2.0, "softplus")
    assert relative_error(G_r, cpu.approx_gradient(theta, x, y, 2.0, "softplus")) <= TOLERANCE[dtype] * 10


@needs_device
def test_gpu_cupy_arrays_in_and_out_and_the_device_nan_scan():
    cupy = pytest.importorskip("cupy")
    widths, M = (3, 8, 2), 100
    net = gengrad.Network(widths, "relu", backend="cuda")
    theta, X, Y = kink_problem(widths, M, 4, "squared_error", np.float64)
    risk, G = net.risk_and_gradient(theta, X, Y)
    risk_d, G_d = net.risk_and_gradient(cupy.asarray(theta), cupy.asarray(X), cupy.asarray(Y))
    assert risk_d == risk
    np.testing.assert_array_equal(cupy.asnumpy(cupy.from_dlpack(G_d)), G)
    bad = cupy.asarray(X)
    bad[7, 1] = cupy.inf
    with pytest.raises(ValueError, match=r"X contains NaN or Inf \(first at flat index 15\)"):
        net.risk_and_gradient(cupy.asarray(theta), bad, cupy.asarray(Y))
    # the scans of all arguments run in one launch: each argument's own first index
    weight = cupy.ones(M)
    weight[M - 1] = -1
    with pytest.raises(ValueError, match=r"sample_weight contains NaN, Inf or a negative value \(first at flat "
                                         rf"index {M - 1}\)"):
        net.risk_and_gradient(cupy.asarray(theta), cupy.asarray(X), cupy.asarray(Y), sample_weight=weight)


@needs_module
def test_gpu_benchmark_rows_run_on_the_emulation(monkeypatch, capsys):
    """bench/cuda.py needs a GPU. Its rows run here on the emulated backend, with JAX on the CPU
    and stand-ins for PyTorch CUDA, so that a GPU session's minutes are not lost to an error in
    the script's own code (no timing is asserted)."""
    import importlib.util
    from pathlib import Path
    jax = pytest.importorskip("jax")
    bench_dir = Path(__file__).resolve().parent.parent / "bench"
    monkeypatch.syspath_prepend(str(bench_dir))
    spec = importlib.util.spec_from_file_location("bench_cuda", bench_dir / "cuda.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = gengrad.cuda.model
    monkeypatch.setattr(gengrad.cuda, "unavailable", lambda: None)
    monkeypatch.setattr(gengrad.cuda, "model", lambda args, emulate=False: model(args, emulate=True))
    monkeypatch.setattr(bench, "gengrad_fn",
                        lambda torch, ens, thetas, X, Y: lambda: ens.risk_and_gradient(thetas, X, Y))
    monkeypatch.setattr(bench, "torch_eager", lambda torch, *args: lambda: None)
    monkeypatch.setattr(bench, "torch_graph", lambda torch, *args: lambda: None)
    ceiling = {"matmul_gflops": 1e4, "copy_gbps": 1e3}
    x64 = jax.config.read("jax_enable_x64")  # the script sets it for its dtype; other tests need it kept
    try:
        for widths, n, M in [((1, 16, 16, 1), 1, 64), ((1, 8, 8, 1), 3, 32), ((2, 300, 300, 1), 1, 8)]:
            result = bench.row("case", widths, n, M, np.float32, None, jax, ceiling, 0.001)
            assert {"gengrad_s", "gengrad_1x1_s", "jax_ratio", "jax_tf32_ratio", "torch_graph_ratio",
                    "register_tile_speedup", "met"} <= set(result)
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert capsys.readouterr().out.count(" tiles ") == 3
