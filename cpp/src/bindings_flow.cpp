// pybind11 glue for the gradient flow (gengrad/flow.hpp): checks of sizes and values, the GIL
// released while integrating (re-taken now and then to let Ctrl-C stop it). No mathematics.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <string>
#include <vector>

#include "gengrad/dop853.hpp"
#include "gengrad/flow.hpp"
#include "model.hpp"

namespace gengrad {
namespace python {

namespace {

py::array_t<double> to_array(const std::vector<double>& values, std::vector<py::ssize_t> shape) {
    py::array_t<double> out(shape);
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

py::dict integrate(const Model& model, const py::array& theta0, const py::array& X, const py::array& Y,
                   const py::object& weight, double t_end, double rtol, double atol, double first_step,
                   double max_step, int64_t max_steps, int event_nodes, bool dense_output, bool save_steps,
                   const py::object& t_eval) {
    const int64_t d = model.dim();
    auto theta = checked<double>(theta0, "theta0", {d});
    const Model::Data<double> data = model.checked_data<double>(X, Y, weight);
    flow::Options options;
    options.t_end = t_end;
    options.rtol = rtol;
    options.atol = atol;
    options.first_step = first_step;
    options.max_step = max_step;
    options.max_steps = max_steps;
    options.event_nodes = event_nodes;
    options.dense_output = dense_output;
    options.save_steps = save_steps;
    if (!t_eval.is_none()) {
        auto times = checked<double>(t_eval, "t_eval", {-1});
        options.t_eval.assign(times.data(), times.data() + times.size());
    }
    const gengrad::Batch<double> batch = data.batch();
    const std::function<bool()> interrupted = [] {
        py::gil_scoped_acquire acquire;
        return PyErr_CheckSignals() != 0;
    };
    flow::Result r;
    {
        py::gil_scoped_release release;
        r = flow::integrate(model.spec(), theta.data(), batch, options, interrupted);
    }
    if (PyErr_Occurred()) throw py::error_already_set();

    const auto n = py::ssize_t(r.t.size()), n_eval = py::ssize_t(r.eval_risk.size());
    const auto n_dense = py::ssize_t(r.dense_t.size());
    py::dict out;
    out["t"] = to_array(r.t, {n});
    out["theta"] = to_array(r.theta, {n, py::ssize_t(d)});
    out["risk"] = to_array(r.risk, {n});
    out["eval_theta"] = to_array(r.eval_theta, {n_eval, py::ssize_t(d)});
    out["eval_risk"] = to_array(r.eval_risk, {n_eval});
    out["dense_t"] = to_array(r.dense_t, {n_dense});
    out["dense_h"] = to_array(r.dense_h, {n_dense});
    out["dense_stop"] = to_array(r.dense_stop, {n_dense});
    out["dense_coefficients"] = to_array(r.dense_coefficients, {n_dense, py::ssize_t(dop853::kDenseRows), py::ssize_t(d)});
    out["final_theta"] = to_array(r.final_theta, {py::ssize_t(d)});
    out["final_risk"] = r.final_risk;
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
    out["n_sample_gradient"] = r.n_sample_gradient;
    out["n_steps"] = r.n_steps;
    out["n_rejected"] = r.n_rejected;
    out["n_grazing"] = r.n_grazing;
    out["success"] = r.success;
    out["message"] = r.message;
    return out;
}

}  // namespace

void register_flow(py::module_& m) {
    m.def("flow", &integrate, py::arg("model"), py::arg("theta0"), py::arg("X"), py::arg("Y"),
          py::arg("sample_weight"), py::arg("t_end"), py::arg("rtol"), py::arg("atol"), py::arg("first_step"),
          py::arg("max_step"), py::arg("max_steps"), py::arg("event_nodes"), py::arg("dense_output"),
          py::arg("save_steps"), py::arg("t_eval"),
          "Integrates the gradient flow theta' = -G(theta) (gengrad/flow.hpp); returns a dict of arrays");
}

}  // namespace python
}  // namespace gengrad
