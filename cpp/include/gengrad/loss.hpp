// Losses (MATH.md §2): the per-sample loss and its derivative in the network output.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "gengrad/isa_namespace.hpp"
#include "gengrad/kernels.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Returns loss(z, y) for one sample whose n outputs lie at z[0], z[stride], ...; when `delta` is
// set, overwrites them with weight * dloss/dz (the start of backpropagation, MATH.md §4).
template <class T>
double sample_loss(LossKind kind, T* z, std::ptrdiff_t stride, const T* y, T weight, int64_t n,
                   bool delta) {
    double loss = 0;
    if (kind == LossKind::squared_error) {  // ||z - y||^2
        for (int64_t j = 0; j < n; ++j) {
            const T diff = z[j * stride] - y[j];
            loss += double(diff) * double(diff);
            if (delta) z[j * stride] = 2 * weight * diff;
        }
        return loss;
    }
    // softmax cross-entropy against the target distribution y: sum_j y_j (logsumexp(z) - z_j)
    T zmax = z[0];
    for (int64_t j = 1; j < n; ++j) zmax = z[j * stride] > zmax ? z[j * stride] : zmax;
    T sum_exp = 0, y_total = 0;
    for (int64_t j = 0; j < n; ++j) {
        sum_exp += std::exp(z[j * stride] - zmax);
        y_total += y[j];
    }
    const T logsumexp = zmax + std::log(sum_exp);
    for (int64_t j = 0; j < n; ++j) {
        loss += double(y[j]) * double(logsumexp - z[j * stride]);
        if (delta) z[j * stride] = weight * (std::exp(z[j * stride] - logsumexp) * y_total - y[j]);
    }
    return loss;
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
