// One kernel build: compiled once per instruction set with GENGRAD_ISA_NS naming it (see
// CMakeLists.txt), exporting the table gengrad::kernels_<isa> that dispatch.cpp chooses from.
#include "gengrad/contract.hpp"
#include "frozen.hpp"
#include "mlp.hpp"

#define GENGRAD_CONCAT2(a, b) a##b
#define GENGRAD_CONCAT(a, b) GENGRAD_CONCAT2(a, b)

namespace gengrad {
namespace GENGRAD_ISA_NS {
namespace {

constexpr Approximation kExact{Family::exact, 0.0};

template <class T>
void pre_activations_entry(const NetSpec& net, const T* theta, const T* X, int64_t M, int64_t first, T* out) {
    with_activation<T>(net, kExact, [&](const auto& act) { pre_activations(net, act, theta, X, M, first, out); });
}

template <class T>
double risk_gradient_entry(const NetSpec& net, Approximation approx, const T* theta,
                           const Batch<T>& batch, T* grad) {
    return with_activation<T>(net, approx, [&](const auto& act) {
        return risk_gradient(net, act, theta, batch, grad);
    });
}

template <class T>
void ensemble_risk_gradient_entry(const NetSpec& net, Approximation approx, const T* thetas, int64_t n,
                                  const EnsembleBatch<T>& batch, double* risks, T* grads) {
    with_activation<T>(net, approx, [&](const auto& act) {
        ensemble_risk_gradient(net, act, thetas, n, batch, risks, grads);
    });
}

template <class T>
void kink_counts_entry(const NetSpec& net, const T* theta, const T* X, int64_t M, int64_t* counts) {
    with_activation<T>(net, kExact, [&](const auto& act) { kink_counts(net, act, theta, X, M, counts); });
}

template <class T>
void ensemble_pre_activations_entry(const NetSpec& net, const T* thetas, int64_t n, const T* X, int64_t x_stride,
                                    int64_t M, int64_t first, T* out) {
    int64_t row = 0;
    for (int64_t k = first; k <= net.n_layers; ++k) row += net.widths[k];
    each_network(net, n, [&](int64_t i, int64_t d) {
        pre_activations_entry(net, thetas + i * d, X + i * x_stride, M, first, out + i * M * row);
    });
}

template <class T>
void ensemble_kink_counts_entry(const NetSpec& net, const T* thetas, int64_t n, const T* X, int64_t x_stride,
                                int64_t M, int64_t* counts) {
    each_network(net, n, [&](int64_t i, int64_t d) {
        kink_counts_entry(net, thetas + i * d, X + i * x_stride, M, counts + i * (net.n_layers - 1));
    });
}

template <class T>
constexpr KernelTable<T> table() {
    return {&pre_activations_entry<T>, &risk_gradient_entry<T>, &kink_counts_entry<T>,
            &ensemble_risk_gradient_entry<T>, &ensemble_pre_activations_entry<T>, &ensemble_kink_counts_entry<T>,
            &frozen_risk_gradient<T>, &frozen_hidden<T>, &frozen_unit_gradient<T>};
}

}  // namespace
}  // namespace GENGRAD_ISA_NS

#define GENGRAD_STRINGIFY2(x) #x
#define GENGRAD_STRINGIFY(x) GENGRAD_STRINGIFY2(x)

extern const IsaKernels GENGRAD_CONCAT(kernels_, GENGRAD_ISA_NS) = {
    GENGRAD_STRINGIFY(GENGRAD_ISA_NS), GENGRAD_ISA_NS::table<float>(), GENGRAD_ISA_NS::table<double>()};

}  // namespace gengrad
