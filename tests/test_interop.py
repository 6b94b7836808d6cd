"""The torch and JAX adapters against the native paths: bitwise the Network's risk and G, and,
at exact kinks, the frameworks' own relu (same convention) to 1e-12, while their maximum-based
relu (1/2 at a tie) differs."""
import numpy as np
import pytest

import gengrad
from conftest import kink_problem, random_problem, relative_error

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = jax.numpy
from gengrad.interop import jax as gengrad_jax  # noqa: E402
from gengrad.interop import torch as gengrad_torch  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 arrays; float32 tests pass float32 explicitly

WIDTHS = (2, 5, 4, 1)


def torch_risk(net, theta, X, Y, relu):
    """The same network written in torch ops, differentiated by torch's autograd."""
    h = torch.from_numpy(X)
    for k, (w0, b0, rows, cols) in enumerate(net.layout):
        z = h @ theta[w0:w0 + rows * cols].reshape(rows, cols).T + theta[b0:b0 + rows]
        h = relu(z) if k + 1 < net.n_layers else z
    return ((z - torch.from_numpy(Y)) ** 2).sum(dim=1).mean()


def jax_risk(net, theta, X, Y, relu):
    h = X
    for k, (w0, b0, rows, cols) in enumerate(net.layout):
        z = h @ theta[w0:w0 + rows * cols].reshape(rows, cols).T + theta[b0:b0 + rows]
        h = relu(z) if k + 1 < net.n_layers else z
    return ((z - Y) ** 2).sum(axis=1).mean()


@pytest.mark.parametrize("problem", [random_problem, kink_problem])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("convention", [None, 1.0])
def test_torch_adapter_is_the_network_bitwise(problem, dtype, convention):
    net = gengrad.Network(WIDTHS, "relu", convention)
    theta, X, Y = problem(WIDTHS, 33, seed=1, dtype=dtype)
    t = torch.tensor(theta, requires_grad=True)
    value = gengrad_torch.risk(net, t, torch.from_numpy(X), torch.from_numpy(Y))
    value.backward()
    risk, G = net.risk_and_gradient(theta, X, Y)
    assert value.dtype == t.dtype and value.item() == np.asarray(risk, dtype)
    assert t.grad.dtype == t.dtype and np.array_equal(t.grad.numpy(), G)


@pytest.mark.parametrize("problem", [random_problem, kink_problem])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jax_adapter_is_the_network_bitwise_under_grad_and_jit(problem, dtype):
    net = gengrad.Network(WIDTHS, "relu")
    theta, X, Y = problem(WIDTHS, 33, seed=2, dtype=dtype)
    risk = gengrad_jax.risk_function(net)
    expected_risk, G = net.risk_and_gradient(theta, X, Y)
    for transform in (lambda f: f, jax.jit):
        value, grad = transform(jax.value_and_grad(risk))(jnp.asarray(theta), X, Y)
        assert value.dtype == dtype and value == np.asarray(expected_risk, dtype)
        assert grad.dtype == dtype and np.array_equal(np.asarray(grad), G)
    assert risk(jnp.asarray(theta), X, Y) == np.asarray(expected_risk, dtype)


def test_at_kinks_the_adapters_agree_with_the_frameworks_relu_and_not_with_maximum():
    net = gengrad.Network(WIDTHS, "relu")  # relu'(0) = 0, torch's and JAX's relu convention
    theta, X, Y = kink_problem(WIDTHS, 64, seed=4)
    assert net.kink_counts(theta, X).sum() > 0
    G = net.gradient(theta, X, Y)
    t = torch.tensor(theta, requires_grad=True)
    gengrad_torch.risk(net, t, X, Y).backward()
    for relu, same in ((torch.relu, True), (lambda z: torch.maximum(z, torch.zeros_like(z)), False)):
        native = torch.tensor(theta, requires_grad=True)
        torch_risk(net, native, X, Y, relu).backward()
        assert (relative_error(t.grad.numpy(), native.grad.numpy()) <= 1e-12) == same
    jax_G = jax.grad(gengrad_jax.risk_function(net))(jnp.asarray(theta), X, Y)
    for relu, same in ((jax.nn.relu, True), (lambda z: jnp.maximum(z, 0.0), False)):
        native = jax.grad(jax_risk, argnums=1)(net, jnp.asarray(theta), X, Y, relu)
        assert (relative_error(jax_G, native) <= 1e-12) == same
    assert np.array_equal(jax_G, G)


def test_other_conventions_reach_the_frameworks():
    net = gengrad.Network(WIDTHS, "relu", convention="right")  # relu'(0) = 1: no torch op has it
    theta, X, Y = kink_problem(WIDTHS, 64, seed=4)
    t = torch.tensor(theta, requires_grad=True)
    gengrad_torch.risk(net, t, X, Y).backward()
    native = torch.tensor(theta, requires_grad=True)
    torch_risk(net, native, X, Y, torch.relu).backward()
    assert np.array_equal(t.grad.numpy(), net.gradient(theta, X, Y))
    assert relative_error(t.grad.numpy(), native.grad.numpy()) > 1e-3


def test_torch_chain_rule_weights_and_cross_entropy():
    net = gengrad.Network((3, 6, 4), "relu", loss="cross_entropy")
    theta, X, _ = random_problem((3, 6, 4), 20, seed=5)
    labels = np.random.default_rng(5).integers(0, 4, 20)
    w = np.random.default_rng(6).uniform(0, 1, 20)
    t = torch.tensor(theta, requires_grad=True)
    (3.0 * gengrad_torch.risk(net, t, X, torch.from_numpy(labels), torch.from_numpy(w))).backward()
    assert np.array_equal(t.grad.numpy(), 3.0 * net.gradient(theta, X, labels, w))


def test_torch_module_trains_with_a_torch_optimizer():
    net = gengrad.Network(WIDTHS, "relu")
    theta, X, Y = random_problem(WIDTHS, 16, seed=7)
    model = gengrad_torch.NetworkRisk(net, theta)
    assert model.theta.dtype == torch.float64 and len(list(model.parameters())) == 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = theta.copy()
    for _ in range(3):
        optimizer.zero_grad()
        model(X, Y).backward()
        optimizer.step()
        expected -= 0.1 * net.gradient(expected, X, Y)
    assert relative_error(model.theta.detach().numpy(), expected) <= 1e-14
    W1, b1 = model.layers()[0]
    assert np.array_equal(W1.detach().numpy(), net.layers(model.theta.detach().numpy())[0][0])
    assert np.array_equal(model.predict(X).numpy(), net.forward(model.theta.detach().numpy(), X))
    assert gengrad_torch.NetworkRisk(net, seed=3).theta.dtype == torch.float32
    with torch.no_grad():
        assert model(X, Y).item() == net.risk(model.theta.numpy(), X, Y)


def test_jax_vmap_runs_one_network_after_another():
    net = gengrad.Network(WIDTHS, "relu")
    thetas = gengrad.Ensemble(WIDTHS, 3).init(0)
    _, X, Y = random_problem(WIDTHS, 10, seed=8)
    grads = jax.vmap(jax.grad(gengrad_jax.risk_function(net)), in_axes=(0, None, None))(jnp.asarray(thetas), X, Y)
    for theta, grad in zip(thetas, np.asarray(grads)):
        assert np.array_equal(grad, net.gradient(theta, X, Y))


def test_adapters_refuse_what_they_cannot_differentiate():
    net = gengrad.Network(WIDTHS, "relu")
    theta, X, Y = random_problem(WIDTHS, 10, seed=9)
    t = torch.tensor(theta, requires_grad=True)
    with pytest.raises(ValueError, match="X requires grad"):
        gengrad_torch.risk(net, t, torch.tensor(X, requires_grad=True), Y)
    with pytest.raises(ValueError, match="theta must have shape"):
        gengrad_torch.risk(net, t[:-1], X, Y)
    with pytest.raises(TypeError, match="X has dtype float32 but theta has dtype float64"):
        gengrad_torch.risk(net, t, X.astype(np.float32), Y)
    with pytest.raises(TypeError, match="network must be a gengrad.Network"):
        gengrad_torch.risk("net", t, X, Y)
    with pytest.raises(TypeError, match="theta must be a torch.Tensor"):
        gengrad_torch.risk(net, theta, X, Y)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        gengrad_torch.NetworkRisk(net, dtype=torch.int32)
    value = gengrad_torch.risk(net, t, X, Y)
    (G,) = torch.autograd.grad(value, t, create_graph=True)
    with pytest.raises(RuntimeError):  # G is not differentiated again (no Hessian)
        G.sum().backward()

    risk = gengrad_jax.risk_function(net)
    with pytest.raises(ValueError, match="X must not be differentiated"):
        jax.grad(risk, argnums=1)(jnp.asarray(theta), X, Y)
    bad = jnp.asarray(theta).at[0].set(jnp.nan)
    with pytest.raises(ValueError, match="theta contains NaN or Inf"):
        jax.grad(risk)(bad, X, Y)
    with pytest.raises(Exception, match="theta contains NaN or Inf"):  # jit: JaxRuntimeError
        jax.jit(risk)(bad, X, Y)
    with pytest.raises(TypeError, match="1-d float32 or float64"):
        risk(jnp.ones((2, net.dim)), X, Y)


# --- framework arrays passed straight to Network and Ensemble ------------------------------------

CONVERT = {"numpy": np.asarray, "torch": torch.from_numpy, "jax": jnp.asarray}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["torch", "jax"])
def test_framework_arrays_are_treated_as_the_numpy_arrays_they_convert_to(kind, dtype):
    """A float32 torch CPU tensor or JAX array is computed in float32, as a float32 NumPy array
    is (it used to be converted to NumPy's default float64), bit for bit the same."""
    net, ens = gengrad.Network(WIDTHS), gengrad.Ensemble(WIDTHS, 3)
    theta, X, Y = random_problem(WIDTHS, 9, 0, dtype=dtype)
    thetas = ens.init(1, dtype=dtype)
    to = CONVERT[kind]
    for method, args in (("forward", (theta, X)), ("kink_counts", (theta, X)), ("risk", (theta, X, Y)),
                         ("gradient", (theta, X, Y)), ("approx_gradient", (theta, X, Y, 10.0))):
        expected = getattr(net, method)(*args)
        got = getattr(net, method)(*(to(a) if isinstance(a, np.ndarray) else a for a in args))
        assert np.asarray(got).dtype == np.asarray(expected).dtype, method
        assert np.array_equal(got, expected), method
    assert [W.dtype for W, _ in net.layers(to(theta))] == [np.dtype(dtype)] * net.n_layers
    risks, G = ens.risk_and_gradient(to(thetas), to(X), to(Y))
    assert G.dtype == dtype
    assert np.array_equal(G, ens.gradient(thetas, X, Y))
    assert ens.forward(to(thetas), to(X)).dtype == dtype
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match=f"X has dtype {np.dtype(other)} but theta has dtype {np.dtype(dtype)}"):
        net.gradient(to(theta), to(X.astype(other)), to(Y))


def test_lists_follow_numpys_default_and_thetas_dtype():
    net = gengrad.Network(WIDTHS)
    theta, X, Y = random_problem(WIDTHS, 9, 0, dtype=np.float32)
    assert net.gradient(theta.tolist(), X.astype(np.float64), Y.astype(np.float64)).dtype == np.float64
    assert np.array_equal(net.gradient(theta, X.tolist(), Y.tolist()), net.gradient(theta, X, Y))


def test_tensors_that_do_not_convert_are_refused_by_name():
    net = gengrad.Network(WIDTHS)
    theta, X, Y = random_problem(WIDTHS, 9, 0)
    with pytest.raises(TypeError, match="theta cannot be converted to a NumPy array: .*requires grad"):
        net.gradient(torch.tensor(theta, requires_grad=True), X, Y)
    with pytest.raises(TypeError, match="Y cannot be converted to a NumPy array"):
        gengrad.Ensemble(WIDTHS, 2).risk(np.zeros((2, net.dim)), X, torch.tensor(Y, requires_grad=True))
