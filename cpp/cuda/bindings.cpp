// gengrad._cuda: the CUDA backend's thin pybind11 glue (compiled by the host compiler; the
// kernels are behind launch.hpp). Arguments are NumPy arrays, checked as in _core and copied to
// the device, or CUDA device arrays taken without a copy through DLPack (CuPy, PyTorch, JAX);
// results follow theta: NumPy arrays for a NumPy theta, DeviceArray (which exports DLPack) for a
// device theta. Every call waits for its kernels, so results are ready for any stream.
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../python/model.hpp"
#include "arguments.hpp"
#include "dlpack.h"
#include "gengrad/activation.hpp"
#include "launch.hpp"

namespace py = pybind11;

namespace gengrad {
namespace cuda {
namespace {

class Model {
public:
    Model(std::vector<int64_t> widths, int activation, std::vector<double> kinks, std::vector<double> slopes,
          double offset, std::vector<bool> right_sided, int loss, bool emulate)
        : host_(std::move(widths), activation, std::move(kinks), std::move(slopes), offset, std::move(right_sided), loss),
          emulate_(emulate) {
        if (!emulate_) {
            std::string why;
            if (device_count(why) == 0) throw std::runtime_error("no CUDA device: " + why);
        }
    }

    int64_t dim() const { return host_.dim(); }
    bool emulate() const { return emulate_; }

    // Reads theta ((d,), float32 or float64) and X ((M, l_0), theta's dtype) and calls
    // f(zero of that type, theta, X, whether theta lives on the device, the scans of the device
    // arrays read, which f completes with its other inputs and checks before it launches).
    template <class F>
    auto with_theta_and_X(const py::object& theta, const py::object& X, F&& f) const {
        const Source th_src = source(theta, "theta", emulate_);
        return dispatch(th_src, "theta", [&](auto zero) {
            using T = decltype(zero);
            Scans<T> scans(emulate_);
            const Input<T> th = input<T>(th_src, "theta", {dim()}, emulate_, &scans);
            const Input<T> x = input<T>(source(X, "X", emulate_), "X", {-1, host_.spec().widths[0]}, emulate_, &scans);
            return f(zero, th, x, th_src.on_device(), scans);
        });
    }

    // Reads thetas ((n, d), n >= 1, float32 or float64) and X, shared ((M, l_0)) or one per
    // network ((n, M, l_0)), and calls f(zero of that type, thetas, the batch of X (Y and the
    // weights unset), whether thetas live on the device, the scans) as with_theta_and_X does.
    template <class F>
    auto with_thetas_and_X(const py::object& thetas, const py::object& X, F&& f) const {
        const int64_t l0 = host_.spec().widths[0];
        const Source th_src = source(thetas, "thetas", emulate_);
        return dispatch(th_src, "thetas", [&](auto zero) {
            using T = decltype(zero);
            const std::vector<int64_t> shape = th_src.shape();
            if (shape.size() != 2 || shape[1] != dim())
                throw py::value_error("thetas must have shape (n, " + std::to_string(dim()) + "), got " + shape_text(shape));
            if (shape[0] == 0) throw py::value_error("thetas must hold at least one network");
            const int64_t n = shape[0];
            Scans<T> scans(emulate_);
            const Input<T> th = input<T>(th_src, "thetas", {n, dim()}, emulate_, &scans);
            const Source x_src = source(X, "X", emulate_);
            const bool per_net_x = x_src.ndim() == 3;
            const Input<T> x = input<T>(x_src, "X", per_net_x ? std::vector<int64_t>{n, -1, l0} : std::vector<int64_t>{-1, l0}, emulate_, &scans);
            const int64_t M = x.shape[per_net_x ? 1 : 0];
            return f(zero, th, EnsembleBatch<T>{x.data, nullptr, nullptr, M, per_net_x ? M * l0 : 0, 0, 0},
                     th_src.on_device(), scans);
        });
    }

    py::object pre_activations(const py::object& theta, const py::object& X, int64_t first) const {
        const int64_t row = forward_width(first);
        return with_theta_and_X(theta, X, [&](auto zero, const auto& th, const auto& x, bool theta_on_device,
                                              const auto& scans) {
            using T = decltype(zero);
            scans.check();
            const int64_t M = x.shape[0];
            return forward_pass(th.data, 1, EnsembleBatch<T>{x.data, nullptr, nullptr, M, 0, 0, 0}, first, {M, row},
                                theta_on_device);
        });
    }

    // (n, M, l_first + ... + l_L): network i's pre_activations at X or X[i], all in one launch.
    py::object ensemble_pre_activations(const py::object& thetas, const py::object& X, int64_t first) const {
        const int64_t row = forward_width(first);
        return with_thetas_and_X(thetas, X, [&](auto, const auto& th, const auto& batch, bool on_device,
                                               const auto& scans) {
            scans.check();
            const int64_t n = th.shape[0];
            return forward_pass(th.data, n, batch, first, {n, batch.M, row}, on_device);
        });
    }

    py::tuple risk_gradient(const py::object& theta, const py::object& X, const py::object& Y,
                            const py::object& weight, int family, double r, bool want_gradient,
                            const py::object& out) const {
        check_family(family, r);
        const NetSpec& spec = host_.spec();
        return with_theta_and_X(theta, X, [&](auto zero, const auto& th, const auto& x, bool theta_on_device,
                                              auto& scans) {
            using T = decltype(zero);
            const int64_t M = x.shape[0];
            if (M == 0)
                throw py::value_error("X must hold at least one sample, got shape (0, " + std::to_string(spec.widths[0]) + ")");
            const Input<T> y = input<T>(source(Y, "Y", emulate_), "Y", {M, spec.widths[spec.n_layers]}, emulate_, &scans);
            Input<T> w;
            if (!weight.is_none())
                w = input<T>(source(weight, "sample_weight", emulate_), "sample_weight", {M}, emulate_, &scans, true);
            scans.check();
            Output<T> grad;
            if (want_gradient) grad = output<T>({dim()}, theta_on_device, emulate_, out, {th.data, x.data, y.data, w.data});
            Output<double> risk = output<double>({1}, false, emulate_);
            {
                py::gil_scoped_release release;
                gengrad::cuda::risk_gradient(spec, {Family(family), r}, th.data, 1,
                                             EnsembleBatch<T>{x.data, y.data, w.data, M, 0, 0, 0}, risk.data,
                                             want_gradient ? grad.data : nullptr, emulate_);
            }
            const double value = risk.finish().template cast<py::array_t<double>>().at(0);
            return py::make_tuple(value, want_gradient ? grad.finish() : py::none());
        });
    }

    py::tuple ensemble_risk_gradient(const py::object& thetas, const py::object& X, const py::object& Y,
                                     const py::object& weight, int family, double r, bool want_gradient,
                                     const py::object& out) const {
        check_family(family, r);
        const NetSpec& spec = host_.spec();
        const int64_t lL = spec.widths[spec.n_layers];
        return with_thetas_and_X(thetas, X, [&](auto zero, const auto& th, auto batch, bool on_device, auto& scans) {
            using T = decltype(zero);
            const int64_t n = th.shape[0], M = batch.M;
            if (M == 0) throw py::value_error("X must hold at least one sample");
            const Source y_src = source(Y, "Y", emulate_);
            const bool per_net_y = y_src.ndim() == 3;
            const Input<T> y = input<T>(y_src, "Y", per_net_y ? std::vector<int64_t>{n, M, lL} : std::vector<int64_t>{M, lL}, emulate_, &scans);
            batch.Y = y.data;
            batch.y_stride = per_net_y ? M * lL : 0;
            Input<T> w;
            if (!weight.is_none()) {
                const Source w_src = source(weight, "sample_weight", emulate_);
                const bool per_net_w = w_src.ndim() == 2;
                w = input<T>(w_src, "sample_weight", per_net_w ? std::vector<int64_t>{n, M} : std::vector<int64_t>{M}, emulate_, &scans, true);
                batch.weight = w.data;
                batch.weight_stride = per_net_w ? M : 0;
            }
            scans.check();
            Output<T> grads;
            if (want_gradient) grads = output<T>({n, dim()}, on_device, emulate_, out, {th.data, batch.X, y.data, w.data});
            Output<double> risks = output<double>({n}, on_device, emulate_);
            {
                py::gil_scoped_release release;
                gengrad::cuda::risk_gradient(spec, {Family(family), r}, th.data, n, batch, risks.data,
                                             want_gradient ? grads.data : nullptr, emulate_);
            }
            return py::make_tuple(risks.finish(), want_gradient ? grads.finish() : py::none());
        });
    }

    // Exact kink hits per hidden layer (L - 1,), counted on the host from the device's
    // pre-activations.
    py::array_t<int64_t> kink_counts(const py::object& theta, const py::object& X) const {
        return with_theta_and_X(theta, X, [&](auto zero, const auto& th, const auto& x, bool, const auto& scans) {
            using T = decltype(zero);
            scans.check();
            return count_kinks(th.data, 1, EnsembleBatch<T>{x.data, nullptr, nullptr, x.shape[0], 0, 0, 0},
                               {host_.spec().n_layers - 1});
        });
    }

    // The same for every network: (n, L - 1).
    py::array_t<int64_t> ensemble_kink_counts(const py::object& thetas, const py::object& X) const {
        return with_thetas_and_X(thetas, X, [&](auto, const auto& th, const auto& batch, bool, const auto& scans) {
            scans.check();
            return count_kinks(th.data, th.shape[0], batch, {th.shape[0], host_.spec().n_layers - 1});
        });
    }

private:
    // z^first..z^L of n networks into a new result of `shape` (NumPy, or on the device).
    template <class T>
    py::object forward_pass(const T* thetas, int64_t n, const EnsembleBatch<T>& batch, int64_t first,
                            const std::vector<int64_t>& shape, bool on_device) const {
        Output<T> out = output<T>(shape, on_device, emulate_);
        {
            py::gil_scoped_release release;
            gengrad::cuda::pre_activations(host_.spec(), thetas, n, batch, first, out.data, emulate_);
        }
        return out.finish();
    }

    // The row length l_first + ... + l_L of pre_activations' results.
    int64_t forward_width(int64_t first) const {
        const NetSpec& spec = host_.spec();
        if (first < 1 || first > spec.n_layers)
            throw py::value_error("first must be a layer between 1 and " + std::to_string(spec.n_layers));
        int64_t row = 0;
        for (int64_t k = first; k <= spec.n_layers; ++k) row += spec.widths[k];
        return row;
    }

    template <class T>
    py::array_t<int64_t> count_kinks(const T* thetas, int64_t n, const EnsembleBatch<T>& batch,
                                     std::vector<py::ssize_t> shape) const {
        py::array_t<int64_t> counts(std::move(shape));
        int64_t* hits = counts.mutable_data();
        {
            py::gil_scoped_release release;
            gengrad::cuda::kink_counts(host_.spec(), thetas, n, batch, hits, emulate_);
        }
        return counts;
    }

    static void check_family(int family, double r) {
        if (family < 0 || family > int(Family::shifted_softplus))
            throw py::value_error("unknown approximant family " + std::to_string(family));
        if (family != 0 && !(r > 0 && std::isfinite(r)))
            throw py::value_error("r must be a positive finite number, got " + std::to_string(r));
    }

    python::Model host_;  // the architecture, its checks and layout, shared with _core
    bool emulate_;
};

py::object numpy_copy(const DeviceArray& a, const py::object& dtype) {
    if (!a.contiguous()) throw py::value_error("a column slice of a DeviceArray is copied with DLPack (e.g. torch.from_dlpack)");
    py::array host = a.bits == 32 ? py::array(py::array_t<float>(a.shape)) : py::array(py::array_t<double>(a.shape));
    const std::size_t bytes = std::size_t(a.size()) * a.bits / 8;
    if (a.device_type == kDLCPU) {
        std::memcpy(host.mutable_data(), a.data<char>(), bytes);
    } else {
        py::gil_scoped_release release;
        copy_to_host(host.mutable_data(), a.data<char>(), bytes);
    }
    return dtype.is_none() ? py::object(host) : py::object(host.attr("astype")(dtype));
}

}  // namespace
}  // namespace cuda
}  // namespace gengrad

PYBIND11_MODULE(_cuda, m) {
    using namespace gengrad::cuda;
    m.doc() = "gengrad's CUDA backend: the fused network kernels on the GPU, or emulated on the CPU";
    py::class_<DeviceArray>(m, "DeviceArray")
        .def_property_readonly("shape", [](const DeviceArray& a) { return py::tuple(py::cast(a.shape)); })
        .def_property_readonly("dtype", [](const DeviceArray& a) { return py::dtype(a.bits == 32 ? "float32" : "float64"); })
        .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.size(); })
        .def("__dlpack__", [](const DeviceArray& a, const py::object&, const py::object&, const py::object&,
                              const py::object&) { return to_dlpack(a); },
             py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
             py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
        .def("__dlpack_device__", [](const DeviceArray& a) { return py::make_tuple(int(a.device_type), a.device); })
        .def("__array__", [](const DeviceArray& a, const py::object& dtype, const py::object&) { return numpy_copy(a, dtype); },
             py::arg("dtype") = py::none(), py::arg("copy") = py::none())
        // the column slice [:, start:stop] of a matrix, sharing the buffer (Network.pre_activations)
        .def("__getitem__", [](const DeviceArray& a, const py::object& key) {
            if (!py::isinstance<py::tuple>(key))
                throw py::index_error("a DeviceArray supports only the column slices [:, start:stop] of a matrix");
            const auto index = key.cast<py::tuple>();
            if (a.shape.size() != 2 || index.size() != 2 || !py::isinstance<py::slice>(index[0]) ||
                !py::isinstance<py::slice>(index[1]))
                throw py::index_error("a DeviceArray supports only the column slices [:, start:stop] of a matrix");
            size_t r0, r1, rs, rn, c0, c1, cs, cn;
            if (!index[0].cast<py::slice>().compute(size_t(a.shape[0]), &r0, &r1, &rs, &rn) ||
                !index[1].cast<py::slice>().compute(size_t(a.shape[1]), &c0, &c1, &cs, &cn))
                throw py::error_already_set();
            if (rn != size_t(a.shape[0]) || cs != 1)
                throw py::index_error("a DeviceArray supports only the column slices [:, start:stop] of a matrix");
            DeviceArray view = a;
            view.byte_offset += c0 * a.bits / 8;
            view.shape[1] = int64_t(cn);
            return view;
        })
        .def("__repr__", [](const DeviceArray& a) {
            return "DeviceArray(shape=" + gengrad::python::shape_text(a.shape) + ", dtype=float" + std::to_string(a.bits) +
                   ", device=" + (a.device_type == kDLCPU ? std::string("cpu") : "cuda:" + std::to_string(a.device)) + ")";
        });
    py::class_<Model> model(m, "Model");
    model
        .def(py::init<std::vector<int64_t>, int, std::vector<double>, std::vector<double>, double, std::vector<bool>, int, bool>(),
             py::arg("widths"), py::arg("activation"), py::arg("kinks"), py::arg("slopes"), py::arg("offset"),
             py::arg("right_sided"), py::arg("loss"), py::arg("emulate") = false)
        .def_property_readonly("emulate", &Model::emulate);
    gengrad::python::define_operations(model);
    m.def("_set_chunk_elements", &set_chunk_elements, py::arg("elements"),
          "For tests: the scratch budget that sets the layer-by-layer path's samples per chunk (0: default)");
    m.def("_set_emulation_reversed", &set_emulation_reversed, py::arg("reversed"),
          "For tests: the host emulation runs a phase's threads (a step's items) last to first");
    m.def("_set_register_tiles", &set_register_tiles, py::arg("on"),
          "For tests and benchmarks: the fused kernel's threads take 4 x 4 register tiles (default) or one output each");
    m.def("is_device_array", [](const py::handle& obj) { return is_device_array(obj); }, py::arg("obj"));
    m.def("device_count", []() {
        std::string why;
        return device_count(why);
    });
    m.def("build_info", []() {
        py::dict info;
        std::string why;
        const int count = device_count(why);
        info["runtime_version"] = runtime_version();
        info["architectures"] = architectures();
        info["devices"] = count;
        std::vector<std::string> names;
        for (int i = 0; i < count; ++i) names.push_back(device_name(i));
        info["device_names"] = names;
        info["unavailable"] = count ? py::object(py::none()) : py::object(py::str(why));
        return info;
    });
}
