// Losses (docs/math.md §2): the per-sample loss and its derivative in the network output.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "gengrad/host_device.hpp"
#include "gengrad/isa_namespace.hpp"
#include "gengrad/contract.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Returns the softmax cross-entropy loss(z, y) for one sample whose n outputs lie at z[0],
// z[stride], ...; when `delta` is set, overwrites them with weight * dloss/dz (the start of
// backpropagation, docs/math.md §4).
// The squared error ||z - y||^2 is squared_error_term below; the name says which loss this is,
// so no caller can pass another kind and get cross-entropy silently.
template <class T>
GENGRAD_HD double cross_entropy_loss(T* z, std::ptrdiff_t stride, const T* y, T weight, int64_t n, bool delta) {
    double loss = 0;
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

// One output's term of the squared error ||z - y||^2: adds (z - y)^2 to loss and returns
// weight * d/dz, the start of backpropagation.
template <class T>
GENGRAD_HD inline T squared_error_term(T z, T y, T weight, double& loss) {
    const T diff = z - y;
    loss += double(diff) * double(diff);
    return 2 * weight * diff;
}

// The loss of one sample whose n outputs lie at z[0], z[stride], ..., overwritten by
// weight * dloss/dz: the per-sample form the CUDA kernels use.
template <class T>
GENGRAD_HD double sample_loss_delta(LossKind kind, T* z, std::ptrdiff_t stride, const T* y, T weight, int64_t n) {
    if (kind == LossKind::cross_entropy) return cross_entropy_loss(z, stride, y, weight, n, true);
    double loss = 0;
    for (int64_t j = 0; j < n; ++j) z[j * stride] = squared_error_term(z[j * stride], y[j], weight, loss);
    return loss;
}

// The losses of the samples in columns [c0, c1) of a block of outputs Z (n_out rows, leading
// dimension ld, feature-major), with targets Y (one row per column, sample-major) and masses
// weight (null: every sample weighs `uniform`); when `delta` is set, overwrites Z with
// weight * dloss/dz. The squared error runs output by output so that it vectorises across samples.
template <class T>
void block_losses(LossKind kind, T* Z, std::ptrdiff_t ld, int64_t n_out, const T* Y, const T* weight,
                  T uniform, int64_t c0, int64_t c1, double* losses, bool delta) {
    if (kind == LossKind::squared_error) {
        for (int64_t c = c0; c < c1; ++c) losses[c] = 0;
        for (int64_t j = 0; j < n_out; ++j) {
            T* z = Z + j * ld;
            for (int64_t c = c0; c < c1; ++c) {
                const T d = squared_error_term(z[c], Y[c * n_out + j], weight ? weight[c] : uniform, losses[c]);
                if (delta) z[c] = d;
            }
        }
        return;
    }
    for (int64_t c = c0; c < c1; ++c)
        losses[c] = cross_entropy_loss(Z + c, ld, Y + c * n_out, weight ? weight[c] : uniform, n_out, delta);
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
