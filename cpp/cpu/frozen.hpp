// The network on a frozen activation pattern: hidden unit j of hidden layer k of sample m has
// its own affine activation h = slope z + intercept (contract.hpp, FrozenPattern). This is the
// gradient flow's field between switching events (cpp/flow): each unit keeps the linear piece
// it is on, continued past its kinks, so that Runge-Kutta stages that overshoot a switching
// surface still see one polynomial field. The passes are mlp.hpp's with other epilogues; the
// slope plays the generalized derivative's part in the backward pass.
#pragma once
#include <cstddef>
#include <cstdint>

#include "mlp.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

template <class T>
struct FrozenForwardEpilogue {  // z = acc + b; h = slope z + intercept; z also into hidden_z
    const T* bias;
    T* Z;
    T* H;
    std::ptrdiff_t ld;
    const T* slope;  // slope, intercept, hidden_z: at (unit 0 of the layer, first sample of the block)
    const T* intercept;
    T* hidden_z;
    std::ptrdiff_t pattern_ld;
    void operator()(int64_t i, int64_t c, vec<T> acc) const {
        const vec<T> z = acc + bias[i];
        const std::ptrdiff_t at = i * pattern_ld + c;
        store(Z + i * ld + c, z);
        store(H + i * ld + c, load(slope + at) * z + load(intercept + at));
        if (hidden_z) store(hidden_z + at, z);
    }
};

template <class T>
struct FrozenBackwardEpilogue {  // delta = (W^T delta_next) slope over z; W^T delta_next into hidden_g
    T* Z;
    std::ptrdiff_t ld;
    const T* slope;
    T* hidden_g;
    std::ptrdiff_t pattern_ld;
    void operator()(int64_t i, int64_t c, vec<T> acc) const {
        const std::ptrdiff_t at = i * pattern_ld + c;
        store(Z + i * ld + c, acc * load(slope + at));
        if (hidden_g) store(hidden_g + at, acc);
    }
};

// dz = acc (+ the bias of the direction) (+ dz so far); dh = slope dz when dH is set.
template <class T>
struct TangentEpilogue {
    const T* direction_bias;  // null: accumulate onto dz
    T* dz;                    // at (unit 0 of the layer, first sample of the block), pattern_ld apart
    const T* slope;
    std::ptrdiff_t pattern_ld;
    T* dH;  // the block's tangent activations, or null
    std::ptrdiff_t ld;
    void operator()(int64_t i, int64_t c, vec<T> acc) const {
        const std::ptrdiff_t at = i * pattern_ld + c;
        const vec<T> value = direction_bias ? acc + direction_bias[i] : load(dz + at) + acc;
        store(dz + at, value);
        if (dH) store(dH + i * ld + c, load(slope + at) * value);
    }
};

// The Maps policy of mlp.hpp for a frozen pattern, with optional copies of the hidden
// pre-activations and of dL/dh in the pattern's layout.
template <class T>
struct Frozen {
    FrozenPattern<T> pattern;
    T* hidden_z;
    T* hidden_g;
    int64_t first_row[65];  // the pattern row of unit 0 of hidden layer k

    Frozen(const NetSpec& net, const FrozenPattern<T>& p, T* z, T* g) : pattern(p), hidden_z(z), hidden_g(g) {
        first_row[1] = 0;
        for (int64_t k = 1; k < net.n_layers; ++k) first_row[k + 1] = first_row[k] + net.widths[k];
    }
    std::ptrdiff_t at(int64_t k, int64_t m0) const { return first_row[k] * pattern.ld + m0; }

    FrozenForwardEpilogue<T> forward(int64_t k, const T* bias, T* Z, T* H, std::ptrdiff_t ld, int64_t m0) const {
        return {bias, Z, H, ld, pattern.slope + at(k, m0), pattern.intercept + at(k, m0),
                hidden_z ? hidden_z + at(k, m0) : nullptr, pattern.ld};
    }
    FrozenBackwardEpilogue<T> backward(int64_t k, T* Z, std::ptrdiff_t ld, int64_t m0) const {
        return {Z, ld, pattern.slope + at(k, m0), hidden_g ? hidden_g + at(k, m0) : nullptr, pattern.ld};
    }
};

template <class T>
double frozen_risk_gradient(const NetSpec& net, const T* theta, const Batch<T>& batch, const FrozenPattern<T>& pattern,
                            T* grad, T* hidden_z, T* hidden_g) {
    return maps_risk_gradient(net, Frozen<T>(net, pattern, hidden_z, hidden_g), theta, batch, grad);
}

// The hidden pre-activations into hidden_z (unless null) and, given a direction, their
// derivatives along it into hidden_dz (a forward-mode pass: dz^1 = dW_1 x + db_1,
// dz^k = dW_k h^{k-1} + W_k (slope dz^{k-1}) + db_k).
template <class T>
void frozen_hidden(const NetSpec& net, const T* theta, const T* direction, const T* X, int64_t M,
                   const FrozenPattern<T>& pattern, T* hidden_z, T* hidden_dz) {
    const int64_t L = net.n_layers;
    if (L < 2) return;
    const Frozen<T> maps(net, pattern, hidden_z, nullptr);
    BlockPlan<T> plan(net, M, direction ? Passes::tangent : Passes::forward);
    plan.pack_weights(net, theta);
    for (int64_t m0 = 0; m0 < M; m0 += plan.block) {
        const int64_t valid = min_of(plan.block, M - m0);
        const int64_t n_chunks = plan.chunks(valid);
        parallel_for(n_chunks, plan.chunk_threads, [&](int64_t chunk, int worker) {
            const int64_t c0 = chunk * plan.kChunk;
            const int64_t c1 = min_of(c0 + plan.kChunk, round_up(valid, gemm_step<T>));
            load_inputs(net, X, m0, valid, plan, c0, c1);
            for (int64_t k = 1; k < L; ++k) {
                forward_layer(net, maps, theta, k, m0, plan, c0, c1, worker);
                if (!direction) continue;
                T* dz = hidden_dz + maps.at(k, m0);
                const T* slope = pattern.slope + maps.at(k, m0);
                T* dH = k + 1 < L ? plan.dH[k] : nullptr;
                Left<T> dW = plan.forward_left(net, direction, k, worker);
                dW.panels = nullptr;  // the panels hold theta's weights
                gemm_columns(dW, plan.H[k - 1], plan.ld, c0, c1,
                             TangentEpilogue<T>{direction + layer_offsets(net.widths, k).bias, dz, slope, pattern.ld,
                                                k == 1 ? dH : nullptr, plan.ld},
                             plan.worker_pack(worker));
                if (k > 1)
                    gemm_columns(plan.forward_left(net, theta, k, worker), plan.dH[k - 1], plan.ld, c0, c1,
                                 TangentEpilogue<T>{nullptr, dz, slope, pattern.ld, dH, plan.ld}, plan.worker_pack(worker));
            }
        });
    }
}

// grad (the parameters of layers 1..k) = the gradient of z^k_j(x) for the one sample x, whose
// activations are column 0 of `pattern`.
template <class T>
void frozen_unit_gradient(const NetSpec& net, const T* theta, const T* x, const FrozenPattern<T>& pattern, int64_t k,
                          int64_t j, T* grad) {
    const Frozen<T> maps(net, pattern, nullptr, nullptr);
    BlockPlan<T> plan(net, 1, Passes::gradient);
    const int64_t columns = gemm_step<T>;
    forward_chunk(net, maps, theta, x, 0, 1, plan, 0, columns, 0, k - 1);
    fill(plan.Z[k], net.widths[k] * plan.ld, T(0));
    plan.Z[k][j * plan.ld] = T(1);
    backward_chunk(net, maps, theta, plan, 0, columns, 0, 0, k);
    const LayerOffsets lay = layer_offsets(net.widths, k);
    fill(grad, lay.bias + lay.rows, T(0));
    pack_deltas(net, plan, columns, 0, columns, k);
    weight_gradient(net, plan, columns, grad, k);
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
