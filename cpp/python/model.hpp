// The Python-facing model: checks of sizes and values, dtype dispatch, GIL release around the
// kernels. Shared by the binding translation units; no mathematics here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gengrad/checks.hpp"
#include "gengrad/dispatch.hpp"
#include "gengrad/layout.hpp"
#ifndef GENGRAD_NO_POOL
#include "gengrad/parallel.hpp"
#endif

namespace gengrad {
namespace python {

namespace py = pybind11;
using portable::layer_offsets;
using portable::parameter_dim;

// portable::first_non_finite on the core's threads, a piece of the array per task: every call
// reads all its inputs once before the kernels do, and serially that took 1.2 ms of a 23 ms
// float64 gradient of (784, 512, 512, 10) at 1024 samples on two threads.
// gengrad._cuda includes this header too but has no pool (the pool, cpp/cpu/parallel.cpp, is
// _core's; CMakeLists.txt defines GENGRAD_NO_POOL for it): there the check stays serial.
template <class T>
int64_t first_non_finite(const T* p, int64_t n) {
#ifdef GENGRAD_NO_POOL
    return portable::first_non_finite(p, n);
#else
    constexpr int64_t kPiece = int64_t(1) << 16;
    if (n <= 2 * kPiece) return portable::first_non_finite(p, n);
    std::vector<int64_t> first((n + kPiece - 1) / kPiece);
    parallel_for(int64_t(first.size()), call_threads(), [&](int64_t piece, int) {
        const int64_t start = piece * kPiece;
        const int64_t found = portable::first_non_finite(p + start, std::min(kPiece, n - start));
        first[piece] = found < 0 ? found : start + found;
    });
    for (const int64_t found : first)
        if (found >= 0) return found;
    return -1;
#endif
}

inline std::string shape_text(const std::vector<int64_t>& shape) {
    std::string text = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        text += shape[i] < 0 ? std::string("M") : std::to_string(shape[i]);
        if (i + 1 < shape.size() || shape.size() == 1) text += ", ";
    }
    if (shape.size() == 1) text.resize(text.size() - 1);
    return text + ")";
}

// Whether the array holds T in native byte order. By equivalence, not identity: an unpickled
// array has an equal dtype that is another object (identity refused it).
template <class T>
bool has_dtype(const py::array& array) {
    return py::detail::npy_api::get().PyArray_EquivTypes_(array.dtype().ptr(), py::dtype::of<T>().ptr());
}

// The array `obj` as a C-contiguous array of T with the expected shape (-1: any extent),
// holding only finite values; otherwise a TypeError/ValueError naming the argument.
template <class T>
py::array_t<T> checked(const py::handle& obj, const char* name, const std::vector<int64_t>& shape) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
    auto array = py::reinterpret_borrow<py::array>(obj);
    if (!has_dtype<T>(array))
        throw py::type_error(std::string(name) + " must have dtype " +
                             py::str(py::dtype::of<T>()).cast<std::string>() + " (the dtype of theta), got " +
                             py::str(array.dtype()).cast<std::string>());
    std::vector<int64_t> actual(array.shape(), array.shape() + array.ndim());
    bool ok = actual.size() == shape.size();
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == actual[i];
    if (!ok) throw py::value_error(std::string(name) + " must have shape " + shape_text(shape) + ", got " + shape_text(actual));
    if (!(array.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
    auto typed = py::reinterpret_borrow<py::array_t<T>>(array);
    const int64_t bad = first_non_finite(typed.data(), int64_t(typed.size()));
    if (bad >= 0)
        throw py::value_error(std::string(name) + " contains NaN or Inf (first at flat index " + std::to_string(bad) + ")");
    return typed;
}

inline std::string shape_of(const py::array& array) {
    return shape_text(std::vector<int64_t>(array.shape(), array.shape() + array.ndim()));
}

inline bool overlaps(const py::array& a, const py::array& b) {
    const char* a0 = static_cast<const char*>(a.data());
    const char* b0 = static_cast<const char*>(b.data());
    return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

template <class T>
const gengrad::KernelTable<T>& table() {
    if constexpr (sizeof(T) == 4) return gengrad::kernels().f32;
    else return gengrad::kernels().f64;
}

// Calls f(T{}) with T the scalar type of theta.
template <class F>
auto dispatch(const py::array& theta, F&& f) {
    if (has_dtype<float>(theta)) return f(float(0));
    if (has_dtype<double>(theta)) return f(double(0));
    throw py::type_error("theta must have dtype float32 or float64, got " + py::str(theta.dtype()).cast<std::string>());
}

class Model {
public:
    Model(std::vector<int64_t> widths, int activation, std::vector<double> kinks, std::vector<double> slopes,
          double offset, std::vector<bool> right_sided, int loss)
        : widths_(std::move(widths)) {
        if (widths_.size() < 2 || widths_.size() > size_t(gengrad::kMaxLayers) + 1)
            throw py::value_error("widths must list between 2 and " + std::to_string(gengrad::kMaxLayers + 1) +
                                  " layer widths, got " + std::to_string(widths_.size()));
        for (int64_t w : widths_)
            if (w < 1) throw py::value_error("every width must be >= 1, got " + std::to_string(w));
        check_dim_fits(widths_);
        if (activation < 0 || activation > int(gengrad::ActivationKind::silu))
            throw py::value_error("unknown activation kind " + std::to_string(activation));
        if (loss < 0 || loss > int(gengrad::LossKind::cross_entropy))
            throw py::value_error("unknown loss kind " + std::to_string(loss));
        const size_t n_kinks = kinks.size();
        if (n_kinks > 2 || slopes.size() != (activation == 0 ? n_kinks + 1 : 0) || right_sided.size() != n_kinks)
            throw py::value_error("a piecewise-linear activation needs at most 2 kinks, one more slope than kinks, "
                                  "and one side per kink");
        spec_.widths = widths_.data();
        spec_.n_layers = int64_t(widths_.size()) - 1;
        spec_.activation = gengrad::ActivationKind(activation);
        spec_.loss = gengrad::LossKind(loss);
        gengrad::PiecewiseLinearParams& p = spec_.pwl;
        p = {};
        p.n_kinks = int32_t(n_kinks);
        for (size_t i = 0; i < n_kinks; ++i) {
            p.kink[i] = kinks[i];
            p.right_sided[i] = right_sided[i];
        }
        for (size_t i = 0; i < 3; ++i) p.slope[i] = slopes.empty() ? 0.0 : slopes[std::min(i, slopes.size() - 1)];
        p.offset = offset;
        dim_ = parameter_dim(widths_.data(), spec_.n_layers);
    }

    int64_t dim() const { return dim_; }
    const gengrad::NetSpec& spec() const { return spec_; }
    const std::vector<int64_t>& widths() const { return widths_; }

    // (weight offset, bias offset, rows, cols) of each layer: the layout, for NumPy views.
    std::vector<std::vector<int64_t>> layout() const {
        std::vector<std::vector<int64_t>> out;
        for (int64_t k = 1; k <= spec_.n_layers; ++k) {
            const auto lay = layer_offsets(widths_.data(), k);
            out.push_back({lay.weight, lay.bias, lay.rows, lay.cols});
        }
        return out;
    }

    // Pre-activations of layers first..L, sample-major (first = L: the outputs).
    py::object pre_activations(const py::array& theta, const py::array& X, int64_t first) const {
        const int64_t row = forward_width(first);
        return dispatch(theta, [&](auto zero) {
            using T = decltype(zero);
            auto th = checked<T>(theta, "theta", {dim_});
            auto x = checked<T>(X, "X", {-1, widths_.front()});
            const int64_t M = x.shape(0);
            py::array_t<T> out({M, row});
            T* out_data = out.mutable_data();
            {
                py::gil_scoped_release release;
                table<T>().pre_activations(spec_, th.data(), x.data(), M, first, out_data);
            }
            return py::object(out);
        });
    }

    // The data of a risk: X and Y as contiguous, finite arrays of T with the network's widths
    // and at least one sample; the sample weights likewise and non-negative, or None (1/M each).
    template <class T>
    struct Data {
        py::array_t<T> X, Y, weight;  // weight: empty for None
        gengrad::Batch<T> batch() const {
            return {X.data(), Y.data(), weight.size() ? weight.data() : nullptr, X.shape(0)};
        }
    };

    template <class T>
    Data<T> checked_data(const py::array& X, const py::array& Y, const py::object& weight) const {
        auto x = checked<T>(X, "X", {-1, widths_.front()});
        const int64_t M = x.shape(0);
        if (M == 0) throw py::value_error("X must hold at least one sample, got shape (0, " + std::to_string(widths_.front()) + ")");
        auto y = checked<T>(Y, "Y", {M, widths_.back()});
        py::array_t<T> w(0);
        if (!weight.is_none()) {
            w = checked<T>(weight, "sample_weight", {M});
            for (int64_t m = 0; m < M; ++m)
                if (w.data()[m] < 0) throw py::value_error("sample_weight must be non-negative, got " + std::to_string(double(w.data()[m])) + " at index " + std::to_string(m));
        }
        return {x, y, w};
    }

    // (risk, gradient or None); family 0 is the generalized gradient G, others grad L_r.
    py::tuple risk_gradient(const py::array& theta, const py::array& X, const py::array& Y, const py::object& weight,
                            int family, double r, bool want_gradient, const py::object& out) const {
        check_family(family, r);
        return dispatch(theta, [&](auto zero) {
            using T = decltype(zero);
            auto th = checked<T>(theta, "theta", {dim_});
            const Data<T> data = checked_data<T>(X, Y, weight);
            py::object grad = py::none();
            T* grad_data = nullptr;
            if (want_gradient) {
                py::array_t<T> g = out.is_none() ? py::array_t<T>(dim_) : checked_out<T>(out, {dim_}, {theta, X, Y, weight});
                grad_data = g.mutable_data();
                grad = g;
            }
            const gengrad::Batch<T> batch = data.batch();
            double risk;
            {
                py::gil_scoped_release release;
                risk = table<T>().risk_gradient(spec_, {gengrad::Family(family), r}, th.data(), batch, grad_data);
            }
            return py::make_tuple(risk, grad);
        });
    }

    // The data of an ensemble of n networks: X, Y (and sample_weight) shared, or one per network
    // with a leading axis of length n; checked as checked_data checks one network's.
    template <class T>
    struct EnsembleData {
        py::array_t<T> X, Y, weight;  // weight: empty for None
        gengrad::EnsembleBatch<T> batch;
    };

    template <class T>
    EnsembleData<T> checked_ensemble_data(int64_t n, const py::array& X, const py::array& Y,
                                          const py::object& weight) const {
        const bool per_net_x = X.ndim() == 3;
        auto x = checked<T>(X, "X", per_net_x ? std::vector<int64_t>{n, -1, widths_.front()} : std::vector<int64_t>{-1, widths_.front()});
        const int64_t M = x.shape(per_net_x ? 1 : 0);
        if (M == 0) throw py::value_error("X must hold at least one sample");
        const bool per_net_y = Y.ndim() == 3;
        auto y = checked<T>(Y, "Y", per_net_y ? std::vector<int64_t>{n, M, widths_.back()} : std::vector<int64_t>{M, widths_.back()});
        py::array_t<T> w(0);
        int64_t w_stride = 0;
        if (!weight.is_none()) {
            const bool per_net_w = py::isinstance<py::array>(weight) && py::reinterpret_borrow<py::array>(weight).ndim() == 2;
            w = checked<T>(weight, "sample_weight", per_net_w ? std::vector<int64_t>{n, M} : std::vector<int64_t>{M});
            for (int64_t m = 0; m < int64_t(w.size()); ++m)
                if (w.data()[m] < 0) throw py::value_error("sample_weight must be non-negative, got " + std::to_string(double(w.data()[m])) + " at flat index " + std::to_string(m));
            w_stride = per_net_w ? M : 0;
        }
        const gengrad::EnsembleBatch<T> batch{x.data(), y.data(), w.size() ? w.data() : nullptr, M,
                                              per_net_x ? M * widths_.front() : 0,
                                              per_net_y ? M * widths_.back() : 0, w_stride};
        return {x, y, w, batch};
    }

    // X of an ensemble's forward pass: (M, l_0) shared (stride 0) or (n, M, l_0) one per network.
    template <class T>
    struct EnsembleInputs {
        py::array_t<T> X;
        int64_t M, stride;
    };

    template <class T>
    EnsembleInputs<T> checked_ensemble_inputs(int64_t n, const py::array& X) const {
        const int64_t l0 = widths_.front();
        if (!((X.ndim() == 2 && X.shape(1) == l0) || (X.ndim() == 3 && X.shape(0) == n && X.shape(2) == l0)))
            throw py::value_error("X must have shape " + shape_text({-1, l0}) + " (shared) or " +
                                  shape_text({n, -1, l0}) + " (one per network), got " + shape_of(X));
        const bool per_net = X.ndim() == 3;
        auto x = checked<T>(X, "X", per_net ? std::vector<int64_t>{n, -1, widths_.front()}
                                            : std::vector<int64_t>{-1, widths_.front()});
        const int64_t M = x.shape(per_net ? 1 : 0);
        return {x, M, per_net ? M * widths_.front() : 0};
    }

    // The row length l_first + ... + l_L of pre_activations' results.
    int64_t forward_width(int64_t first) const {
        if (first < 1 || first > spec_.n_layers)
            throw py::value_error("first must be a layer between 1 and " + std::to_string(spec_.n_layers));
        int64_t row = 0;
        for (int64_t k = first; k <= spec_.n_layers; ++k) row += widths_[k];
        return row;
    }

    // thetas (n, d) as a checked array of T; n >= 1.
    template <class T>
    py::array_t<T> checked_thetas(const py::array& thetas, const char* name) const {
        if (thetas.ndim() != 2)
            throw py::value_error(std::string(name) + " must have shape (n, " + std::to_string(dim_) + "), got " + shape_of(thetas));
        const int64_t n = thetas.shape(0);
        if (n == 0) throw py::value_error(std::string(name) + " must hold at least one network");
        return checked<T>(thetas, name, {n, dim_});
    }

    // An ensemble: thetas (n, d); X, Y (and sample_weight) shared, or one per network with a
    // leading axis of length n. Returns (risks (n,), gradients (n, d) or None).
    py::tuple ensemble_risk_gradient(const py::array& thetas, const py::array& X, const py::array& Y,
                                     const py::object& weight, int family, double r, bool want_gradient,
                                     const py::object& out) const {
        check_family(family, r);
        return dispatch(thetas, [&](auto zero) {
            using T = decltype(zero);
            auto th = checked_thetas<T>(thetas, "thetas");
            const int64_t n = th.shape(0);
            const EnsembleData<T> data = checked_ensemble_data<T>(n, X, Y, weight);
            py::array_t<double> risks(n);
            py::object grads = py::none();
            T* grads_data = nullptr;
            if (want_gradient) {
                py::array_t<T> g = out.is_none() ? py::array_t<T>({n, dim_}) : checked_out<T>(out, {n, dim_}, {thetas, X, Y, weight});
                grads_data = g.mutable_data();
                grads = g;
            }
            double* risks_data = risks.mutable_data();
            {
                py::gil_scoped_release release;
                table<T>().ensemble_risk_gradient(spec_, {gengrad::Family(family), r}, th.data(), n, data.batch,
                                                  risks_data, grads_data);
            }
            return py::make_tuple(risks, grads);
        });
    }

    // n networks at X (M, l_0) shared or (n, M, l_0) one per network: z^first..z^L, (n, M, row).
    py::object ensemble_pre_activations(const py::array& thetas, const py::array& X, int64_t first) const {
        const int64_t row = forward_width(first);
        return dispatch(thetas, [&](auto zero) {
            using T = decltype(zero);
            auto th = checked_thetas<T>(thetas, "thetas");
            const int64_t n = th.shape(0);
            const EnsembleInputs<T> x = checked_ensemble_inputs<T>(n, X);
            py::array_t<T> out({n, x.M, row});
            T* out_data = out.mutable_data();
            {
                py::gil_scoped_release release;
                table<T>().ensemble_pre_activations(spec_, th.data(), n, x.X.data(), x.stride, x.M, first, out_data);
            }
            return py::object(out);
        });
    }

    // Exact kink hits per network and hidden layer, (n, L-1); X as for ensemble_pre_activations.
    py::array_t<int64_t> ensemble_kink_counts(const py::array& thetas, const py::array& X) const {
        return dispatch(thetas, [&](auto zero) {
            using T = decltype(zero);
            auto th = checked_thetas<T>(thetas, "thetas");
            const int64_t n = th.shape(0);
            const EnsembleInputs<T> x = checked_ensemble_inputs<T>(n, X);
            py::array_t<int64_t> counts({n, spec_.n_layers - 1});
            int64_t* counts_data = counts.mutable_data();
            {
                py::gil_scoped_release release;
                table<T>().ensemble_kink_counts(spec_, th.data(), n, x.X.data(), x.stride, x.M, counts_data);
            }
            return counts;
        });
    }

    py::array_t<int64_t> kink_counts(const py::array& theta, const py::array& X) const {
        py::array_t<int64_t> counts(spec_.n_layers - 1);
        int64_t* counts_data = counts.mutable_data();
        dispatch(theta, [&](auto zero) {
            using T = decltype(zero);
            auto th = checked<T>(theta, "theta", {dim_});
            auto x = checked<T>(X, "X", {-1, widths_.front()});
            py::gil_scoped_release release;
            table<T>().kink_counts(spec_, th.data(), x.data(), int64_t(x.shape(0)), counts_data);
            return 0;
        });
        return counts;
    }

private:
    // d = sum_k l_k (l_{k-1} + 1) must not overflow int64 in layout.hpp (signed overflow is
    // undefined; it wrapped to a small d that a short theta would then pass).
    static void check_dim_fits(const std::vector<int64_t>& widths) {
        int64_t dim = 0;
        for (size_t k = 1; k < widths.size(); ++k) {
            int64_t layer = 0;
            if (__builtin_add_overflow(widths[k - 1], int64_t(1), &layer) ||
                __builtin_mul_overflow(layer, widths[k], &layer) || __builtin_add_overflow(dim, layer, &dim))
                throw py::value_error("widths give a network with more than 2^63 - 1 parameters");
        }
    }

    static void check_family(int family, double r) {
        if (family < 0 || family > int(gengrad::Family::shifted_softplus))
            throw py::value_error("unknown approximant family " + std::to_string(family));
        if (family != 0 && !(r > 0 && std::isfinite(r)))
            throw py::value_error("r must be a positive finite number, got " + std::to_string(r));
    }

    template <class T>
    static py::array_t<T> checked_out(const py::object& out, const std::vector<int64_t>& shape,
                                      std::initializer_list<py::handle> inputs) {
        if (!py::isinstance<py::array>(out) || !has_dtype<T>(py::reinterpret_borrow<py::array>(out)))
            throw py::type_error("out must be a numpy array with the dtype of theta");
        auto array = py::reinterpret_borrow<py::array_t<T>>(out);
        if (shape_of(array) != shape_text(shape)) throw py::value_error("out must have shape " + shape_text(shape) + ", got " + shape_of(array));
        if (!(array.flags() & py::array::c_style)) throw py::value_error("out must be C-contiguous");
        if (!array.writeable()) throw py::value_error("out must be writeable, got a read-only array");
        for (py::handle input : inputs)
            if (!input.is_none() && overlaps(array, py::reinterpret_borrow<py::array>(input)))
                throw py::value_error("out must not share memory with the inputs");
        return array;
    }

    std::vector<int64_t> widths_;
    gengrad::NetSpec spec_{};
    int64_t dim_ = 0;
};

// The operations every compiled backend's Model offers network.py, under one signature.
template <class BackendModel>
void define_operations(py::class_<BackendModel>& model) {
    using M = BackendModel;
    model.def_property_readonly("dim", &M::dim)
        .def("pre_activations", &M::pre_activations, py::arg("theta"), py::arg("X"), py::arg("first"))
        .def("risk_gradient", &M::risk_gradient, py::arg("theta"), py::arg("X"), py::arg("Y"),
             py::arg("sample_weight"), py::arg("family"), py::arg("r"), py::arg("want_gradient"), py::arg("out"))
        .def("kink_counts", &M::kink_counts, py::arg("theta"), py::arg("X"))
        .def("ensemble_risk_gradient", &M::ensemble_risk_gradient, py::arg("thetas"), py::arg("X"), py::arg("Y"),
             py::arg("sample_weight"), py::arg("family"), py::arg("r"), py::arg("want_gradient"), py::arg("out"))
        .def("ensemble_pre_activations", &M::ensemble_pre_activations, py::arg("thetas"), py::arg("X"),
             py::arg("first"))
        .def("ensemble_kink_counts", &M::ensemble_kink_counts, py::arg("thetas"), py::arg("X"));
}

// Defines gengrad._core.flow (bindings_flow.cpp).
void register_flow(py::module_& m);

}  // namespace python
}  // namespace gengrad
