// pybind11 glue for the gradient flow (cpp/flow/flow.hpp): checks of sizes and values, the GIL
// released while integrating (re-taken now and then to let Ctrl-C stop it). No mathematics.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <string>
#include <vector>

#include "flow/runge_kutta.hpp"
#include "flow/flow.hpp"
#include "model.hpp"

namespace gengrad {
namespace python {

namespace {

template <class T>
py::array_t<T> to_array(const std::vector<T>& values, std::vector<py::ssize_t> shape) {
    py::array_t<T> out(shape);
    std::copy(values.begin(), values.end(), out.mutable_data());
    return out;
}

template <class T, class F>
py::array_t<T> column(const std::vector<flow::Event>& events, F&& get) {
    py::array_t<T> out(py::ssize_t(events.size()));
    T* data = out.mutable_data();
    for (size_t i = 0; i < events.size(); ++i) data[i] = T(get(events[i]));
    return out;
}

flow::Options options_of(const py::dict& kw) {
    flow::Options o;
    o.t_end = kw["t_end"].cast<double>();
    o.rtol = kw["rtol"].cast<double>();
    o.atol = kw["atol"].cast<double>();
    o.first_step = kw["first_step"].cast<double>();
    o.max_step = kw["max_step"].cast<double>();
    o.max_steps = kw["max_steps"].cast<int64_t>();
    o.event_nodes = kw["event_nodes"].cast<int>();
    o.dense_output = kw["dense_output"].cast<bool>();
    o.save_steps = kw["save_steps"].cast<bool>();
    o.gtol = kw["gtol"].cast<double>();
    const std::string method = kw["method"].cast<std::string>();
    if (method == "auto") o.method = flow::Method::automatic;
    else if (method == "dop853") o.method = flow::Method::dop853;
    else if (method == "dopri5") o.method = flow::Method::dopri5;
    else throw py::value_error("method must be 'auto', 'dop853' or 'dopri5', got '" + method + "'");
    if (!kw["t_eval"].is_none()) {
        auto times = checked<double>(kw["t_eval"], "t_eval", {-1});
        o.t_eval.assign(times.data(), times.data() + times.size());
    }
    return o;
}

py::dict to_dict(const flow::Result& r, const Model& model) {
    const auto d = py::ssize_t(r.dim);
    const auto n = py::ssize_t(r.t.size()), n_eval = py::ssize_t(r.eval_risk.size());
    const auto n_dense = py::ssize_t(r.dense_t.size());
    int64_t hidden = 0;
    for (size_t k = 1; k + 1 < model.widths().size(); ++k) hidden += model.widths()[k];
    py::dict out;
    out["t"] = to_array(r.t, {n});
    out["theta"] = to_array(r.theta, {n, d});
    out["risk"] = to_array(r.risk, {n});
    out["eval_theta"] = to_array(r.eval_theta, {n_eval, d});
    out["eval_risk"] = to_array(r.eval_risk, {n_eval});
    out["dense_t"] = to_array(r.dense_t, {n_dense});
    out["dense_h"] = to_array(r.dense_h, {n_dense});
    out["dense_stop"] = to_array(r.dense_stop, {n_dense});
    out["dense_coefficients"] = to_array(r.dense_coefficients, {n_dense, py::ssize_t(flow::kDenseRows), d});
    out["initial_pieces"] =
        to_array(r.initial_pieces, {py::ssize_t(r.initial_pieces.empty() ? 0 : r.initial_pieces.size() / hidden),
                                    py::ssize_t(r.initial_pieces.empty() ? 0 : hidden)});
    out["final_theta"] = to_array(r.final_theta, {d});
    out["final_risk"] = r.final_risk;
    out["t_final"] = r.t_final;
    const auto& e = r.events;
    out["event_t"] = column<double>(e, [](const flow::Event& v) { return v.t; });
    out["event_layer"] = column<int64_t>(e, [](const flow::Event& v) { return v.layer; });
    out["event_sample"] = column<int64_t>(e, [](const flow::Event& v) { return v.sample; });
    out["event_neuron"] = column<int64_t>(e, [](const flow::Event& v) { return v.neuron; });
    out["event_kink"] = column<int32_t>(e, [](const flow::Event& v) { return v.kink; });
    out["event_kind"] = column<int32_t>(e, [](const flow::Event& v) { return int32_t(v.kind); });
    out["event_from"] = column<int32_t>(e, [](const flow::Event& v) { return v.from_piece; });
    out["event_to"] = column<int32_t>(e, [](const flow::Event& v) { return v.to_piece; });
    out["n_gradient"] = r.n_gradient;
    out["n_forward"] = r.n_forward;
    out["n_tangent"] = r.n_tangent;
    out["n_unit"] = r.n_unit;
    out["n_steps"] = r.n_steps;
    out["n_rejected"] = r.n_rejected;
    out["n_grazing"] = r.n_grazing;
    out["success"] = r.success;
    out["stationary"] = r.stationary;
    out["message"] = r.message;
    return out;
}

// Polls for Ctrl-C from the thread that holds no GIL.
const std::function<bool()> kInterrupted = [] {
    py::gil_scoped_acquire acquire;
    return PyErr_CheckSignals() != 0;
};

py::dict integrate(const Model& model, const py::array& theta0, const py::array& X, const py::array& Y,
                   const py::object& weight, const py::dict& options) {
    auto theta = checked<double>(theta0, "theta0", {model.dim()});
    const Model::Data<double> data = model.checked_data<double>(X, Y, weight);
    const flow::Options o = options_of(options);
    const gengrad::Batch<double> batch = data.batch();
    flow::Result r;
    {
        py::gil_scoped_release release;
        r = flow::integrate(model.spec(), theta.data(), batch, o, kInterrupted);
    }
    if (PyErr_Occurred()) throw py::error_already_set();
    return to_dict(r, model);
}

py::list integrate_ensemble(const Model& model, const py::array& thetas0, const py::array& X, const py::array& Y,
                            const py::object& weight, const py::dict& options) {
    auto thetas = model.checked_thetas<double>(thetas0, "theta0");
    const int64_t n = thetas.shape(0);
    const Model::EnsembleData<double> data = model.checked_ensemble_data<double>(n, X, Y, weight);
    const flow::Options o = options_of(options);
    std::vector<flow::Result> results;
    {
        py::gil_scoped_release release;
        results = flow::integrate_ensemble(model.spec(), thetas.data(), n, data.batch, o, kInterrupted);
    }
    if (PyErr_Occurred()) throw py::error_already_set();
    py::list out;
    for (const flow::Result& r : results) out.append(to_dict(r, model));
    return out;
}

}  // namespace

void register_flow(py::module_& m) {
    m.def("flow", &integrate, py::arg("model"), py::arg("theta0"), py::arg("X"), py::arg("Y"),
          py::arg("sample_weight"), py::arg("options"),
          "Integrates the gradient flow theta' = -G(theta) (cpp/flow/flow.hpp); returns a dict of arrays. options: "
          "t_end, rtol, atol, first_step, max_step, max_steps, event_nodes, dense_output, save_steps, t_eval, gtol");
    m.def("flow_ensemble", &integrate_ensemble, py::arg("model"), py::arg("theta0"), py::arg("X"), py::arg("Y"),
          py::arg("sample_weight"), py::arg("options"),
          "n gradient flows from theta0 (n, d) across threads, with shared or per-network data; a list of dicts");
}

}  // namespace python
}  // namespace gengrad
