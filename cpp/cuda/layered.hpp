// The CUDA backend's path for networks whose activations do not fit the fused kernel's shared
// memory (fused.hpp): one network at a time, layer by layer, each step a launch over independent
// items, so that wide layers fill the device (a (512 x 512) layer at 1024 samples is 32768
// items). Products are register-tiled 4 x 4 per thread (half a load per multiply-add) and read
// through the caches; no shared-memory tiling and no tensor cores.
//
// Like fused.hpp this is host/device code: an item is a function of its index alone, so the
// host emulation runs the items one after the other and computes exactly what the device does.
// Samples are processed in chunks whose size depends only on the problem; every output is summed
// in one fixed order (over p for the products, over the chunk's samples and then the chunks for
// the weight gradient and the risk), so results are bitwise reproducible.
#pragma once
#include <cstdint>

#include "fused.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Samples per chunk: the activations of a chunk (arch.rows x ld values) stay under `budget`
// elements (kChunkElements: 128 MiB in float32; tests lower it to get several chunks).
constexpr int64_t kChunkElements = int64_t(1) << 25;

struct Chunking {
    int64_t M, chunk, ld, chunks;
    static Chunking make(const Arch& a, int64_t M, int64_t budget) {
        const int64_t cap = budget / a.rows / kTile * kTile;
        const int64_t wanted = (M + kTile - 1) / kTile * kTile;
        const int64_t chunk = wanted < cap ? wanted : (cap > kTile ? cap : kTile);
        return {M, chunk, chunk, (M + chunk - 1) / chunk};
    }
};

// One layer k as the steps need it (small enough to pass to every launch by value, unlike Arch).
struct LayerRows {
    int64_t rows, cols;    // l_k, l_{k-1}
    int64_t weight, bias;  // offsets of W_k and b_k in theta
    int64_t in_row;        // first scratch row of h^{k-1}
    int64_t z_row;         // of z^k
    int64_t out_row;       // of h^k; -1 for the output layer
};

inline LayerRows layer_rows(const Arch& a, int64_t k) {
    return {a.widths[k], a.widths[k - 1], a.weight[k], a.bias[k], a.h_row[k - 1], a.z_row[k], k < a.L ? a.h_row[k] : -1};
}

// What every step of one chunk reads and writes. Z: the chunk's scratch, feature-major with
// leading dimension ld (rows as in Arch); losses: one double per sample.
template <class T, class Act>
struct Layered {
    Act act;
    LossKind loss;
    int64_t M, ld;
    int64_t l0, out, out_row;  // input width; output width and z^L's first scratch row
    const T* theta;
    const T* X;
    const T* Y;
    const T* weight;  // null: 1/M each
    T* Z;
    double* losses;
    T* grad;            // null: the risk only
    double* risk;       // one value
    int64_t m0, valid;  // the chunk's first sample and its number of samples
    bool first;         // the first chunk: the sums start here

    GENGRAD_HD T* row(int64_t r) const { return Z + r * ld; }
    GENGRAD_HD T weight_of(int64_t m) const { return weight ? weight[m] : T(1.0 / double(M)); }
    GENGRAD_HD static int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }
};

// h^0 = x for the chunk's samples.
template <class T, class Act>
struct LoadInputs {
    Layered<T, Act> s;
    GENGRAD_HD int64_t count() const { return s.l0 * s.valid; }
    GENGRAD_HD void operator()(int64_t item) const {
        const int64_t j = item / s.valid, c = item % s.valid;
        s.row(j)[c] = s.X[(s.m0 + c) * s.l0 + j];
    }
};

// z^k = W_k h^{k-1} + b_k and h^k = a(z^k): a kTile x kTile tile of (neuron, sample) per item,
// each sum in gemm_tile's order (first product, the others, then the bias).
template <class T, class Act>
struct Forward {
    Layered<T, Act> s;
    LayerRows l;
    GENGRAD_HD int64_t count() const { return s.tiles(l.rows) * s.tiles(s.valid); }
    GENGRAD_HD void operator()(int64_t item) const {
        const int64_t i0 = item / s.tiles(s.valid) * kTile, c0 = item % s.tiles(s.valid) * kTile;
        T acc[kTile][kTile];
        tile_product(acc, TileOperand<T>{s.theta + l.weight, i0, l.rows, l.cols, 1},
                     TileOperand<T>{s.row(l.in_row), c0, s.valid, 1, s.ld}, l.cols);
        for (int r = 0; r < kTile && i0 + r < l.rows; ++r)
            for (int q = 0; q < kTile && c0 + q < s.valid; ++q) {
                const T z = acc[r][q] + s.theta[l.bias + i0 + r];
                s.row(l.z_row + i0 + r)[c0 + q] = z;
                if (l.out_row >= 0) s.row(l.out_row + i0 + r)[c0 + q] = s.act.value(z);
            }
    }
};

// Each sample's loss, and weight * dloss/dz^L over z^L.
template <class T, class Act>
struct Loss {
    Layered<T, Act> s;
    GENGRAD_HD int64_t count() const { return s.valid; }
    GENGRAD_HD void operator()(int64_t c) const {
        s.losses[c] = sample_loss_delta(s.loss, s.row(s.out_row) + c, s.ld, s.Y + (s.m0 + c) * s.out,
                                        s.weight_of(s.m0 + c), s.out);
    }
};

// The risk, summed over the chunk's samples in order (one item).
template <class T, class Act>
struct Risk {
    Layered<T, Act> s;
    GENGRAD_HD int64_t count() const { return 1; }
    GENGRAD_HD void operator()(int64_t) const {
        double sum = s.first ? 0.0 : *s.risk;
        for (int64_t c = 0; c < s.valid; ++c) sum += double(s.weight_of(s.m0 + c)) * s.losses[c];
        *s.risk = sum;
    }
};

// delta^{k-1} = (W_k^T delta^k) (.) a'(z^{k-1}) over z^{k-1}, tiles of (neuron, sample).
template <class T, class Act>
struct Backward {
    Layered<T, Act> s;
    LayerRows l;       // layer k
    int64_t prev_z;    // first scratch row of z^{k-1}
    GENGRAD_HD int64_t count() const { return s.tiles(l.cols) * s.tiles(s.valid); }
    GENGRAD_HD void operator()(int64_t item) const {
        const int64_t j0 = item / s.tiles(s.valid) * kTile, c0 = item % s.tiles(s.valid) * kTile;
        T acc[kTile][kTile];
        tile_product(acc, TileOperand<T>{s.theta + l.weight, j0, l.cols, 1, l.cols},
                     TileOperand<T>{s.row(l.z_row), c0, s.valid, 1, s.ld}, l.rows);
        for (int r = 0; r < kTile && j0 + r < l.cols; ++r)
            for (int q = 0; q < kTile && c0 + q < s.valid; ++q) {
                T& z = s.row(prev_z + j0 + r)[c0 + q];
                z = acc[r][q] * s.act.derivative(z);
            }
    }
};

// The chunk's dW_k = delta^k (h^{k-1})^T (kTile x kTile weights per item) and db_k (one bias per
// item, after the weights), summed over the samples in order and added to grad.
template <class T, class Act>
struct Gradient {
    Layered<T, Act> s;
    LayerRows l;
    GENGRAD_HD int64_t weight_items() const { return s.tiles(l.rows) * s.tiles(l.cols); }
    GENGRAD_HD int64_t count() const { return weight_items() + l.rows; }
    GENGRAD_HD void operator()(int64_t item) const {
        const T* D = s.row(l.z_row);
        if (item >= weight_items()) {
            const int64_t i = item - weight_items();
            T sum = 0;
            for (int64_t c = 0; c < s.valid; ++c) sum += D[i * s.ld + c];
            T& g = s.grad[l.bias + i];
            g = s.first ? sum : g + sum;
            return;
        }
        const int64_t i0 = item / s.tiles(l.cols) * kTile, j0 = item % s.tiles(l.cols) * kTile;
        T acc[kTile][kTile];
        tile_product(acc, TileOperand<T>{D, i0, l.rows, s.ld, 1}, TileOperand<T>{s.row(l.in_row), j0, l.cols, s.ld, 1},
                     s.valid);
        for (int r = 0; r < kTile && i0 + r < l.rows; ++r)
            for (int q = 0; q < kTile && j0 + q < l.cols; ++q) {
                T& g = s.grad[l.weight + (i0 + r) * l.cols + j0 + q];
                g = s.first ? acc[r][q] : g + acc[r][q];
            }
    }
};

// z^k of the chunk's samples into columns col0.. of their rows of out (row length width).
template <class T, class Act>
struct CopyOut {
    Layered<T, Act> s;
    LayerRows l;
    int64_t col0, width;
    T* out;
    GENGRAD_HD int64_t count() const { return s.valid * l.rows; }
    GENGRAD_HD void operator()(int64_t item) const {
        const int64_t c = item / l.rows, i = item % l.rows;
        out[(s.m0 + c) * width + col0 + i] = s.row(l.z_row + i)[c];
    }
};

// The steps of one chunk in order; run(step) executes all items of a step before the next.
template <class T, class Act, class Run>
void layered_chunk(const Arch& a, const Layered<T, Act>& s, const Run& run) {
    run(LoadInputs<T, Act>{s});
    for (int64_t k = 1; k <= a.L; ++k) run(Forward<T, Act>{s, layer_rows(a, k)});
    run(Loss<T, Act>{s});
    run(Risk<T, Act>{s});
    if (!s.grad) return;
    for (int64_t k = a.L; k >= 2; --k) run(Backward<T, Act>{s, layer_rows(a, k), a.z_row[k - 1]});
    for (int64_t k = 1; k <= a.L; ++k) run(Gradient<T, Act>{s, layer_rows(a, k)});
}

// The forward pass of one chunk of one network, z^first..z^L copied to the network's out
// (M, l_first + ... + l_L).
template <class T, class Act, class Run>
void layered_forward_chunk(const Arch& a, const Layered<T, Act>& s, int64_t first, T* out, const Run& run) {
    run(LoadInputs<T, Act>{s});
    for (int64_t k = 1; k <= a.L; ++k) run(Forward<T, Act>{s, layer_rows(a, k)});
    const int64_t width = forward_width(a, first);
    for (int64_t k = first, col0 = 0; k <= a.L; col0 += a.widths[k++])
        run(CopyOut<T, Act>{s, layer_rows(a, k), col0, width, out});
}

// Whether a network takes the fused kernel: a tile of at least 16 samples fits its budget.
template <class T>
bool fused_fits(const Arch& a) {
    return Tiling::samples_for(a, sizeof(T)) > 0;
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
