// Forward and backward passes of fully-connected networks (docs/math.md §1, §4).
//
// Activations are stored feature-major: the values of neuron i for the samples of a block lie
// contiguously, so SIMD lanes run across samples and narrow layers (width 1, 16, ...) use full
// vectors. Three products make a gradient, all with vectors along samples:
//   forward   Z_k   = W_k   H_{k-1} + b_k     (axpy tiles, gemm_tile)
//   backward  D_k-1 = W_k^T D_k  (.) a'(Z_k-1) (axpy tiles, gemm_tile)
//   weights   dW_k += D_k H_{k-1}^T           (dot tiles over samples, dot_tile)
// Determinism: every output element is accumulated in one fixed order that depends neither on
// the thread count nor on the tiling. Threads split samples (forward/backward) and output rows
// (weight gradient); the batch is cut into blocks whose size depends only on the architecture
// and the scalar type, and block contributions are added in block order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "gengrad/activation.hpp"
#include "gengrad/contract.hpp"
#include "gengrad/layout.hpp"
#include "gengrad/loss.hpp"
#include "gengrad/parallel.hpp"
#include "gengrad/simd.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Own helpers instead of <algorithm>: a standard-library template instantiated here could be
// merged by the linker with a copy compiled for another instruction set (isa_namespace.hpp).
inline int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }
inline int64_t min_of(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_of(int64_t a, int64_t b) { return a > b ? a : b; }
template <class T>
inline void fill(T* p, int64_t n, T value) {
    for (int64_t i = 0; i < n; ++i) p[i] = value;
}

// C(i, c..c+NV*lanes) = sum_p A(i, p) * B(p, c..) for rows i0..i0+R-1, handed to epi; Bc points
// at B(0, c), row p at Bc + p*ldb. The accumulators start from the first product rather than
// from zero: zero-initialising the array made GCC emit a `rep stos` per tile, 14 % of the
// forward pass of narrow nets.
template <class T, int R, int NV, class Epilogue>
inline void gemm_tile(const T* A, std::ptrdiff_t a_row, std::ptrdiff_t a_col, int64_t i0,
                      const T* Bc, std::ptrdiff_t ldb, int64_t c, int64_t K, const Epilogue& epi) {
    vec<T> acc[R][NV];
    for (int v = 0; v < NV; ++v) {
        const vec<T> b = load(Bc + v * lanes<T>);
        for (int r = 0; r < R; ++r) acc[r][v] = A[(i0 + r) * a_row] * b;
    }
    for (int64_t p = 1; p < K; ++p) {
        vec<T> b[NV];
        for (int v = 0; v < NV; ++v) b[v] = load(Bc + p * ldb + v * lanes<T>);
        for (int r = 0; r < R; ++r) {
            const T a = A[(i0 + r) * a_row + p * a_col];
            for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) epi(i0 + r, c + v * lanes<T>, acc[r][v]);
}

template <class T>
constexpr int64_t gemm_step = kGemmVectors * lanes<T>;

// Where the tiles read B: in place (B(0, c) = B + c, leading dimension ldb) or from a packed
// copy in which the gemm_step columns from c lie contiguously, row after row.
template <class T>
struct Panels {
    const T* B;
    std::ptrdiff_t ldb;
    int64_t c_begin, K;
    bool packed;
    const T* at(int64_t c) const { return packed ? B + (c - c_begin) * K : B + c; }
    std::ptrdiff_t stride() const { return packed ? gemm_step<T> : ldb; }
};

// Rows i0..i0+rows-1 (rows <= R) of C in tiles of exactly that height, so that the last rows
// of a layer keep several independent accumulator chains instead of one latency-bound chain.
template <class T, int R, class Epilogue>
inline void gemm_rows(int64_t rows, const T* A, std::ptrdiff_t a_row, std::ptrdiff_t a_col, int64_t i0,
                      int64_t K, const Panels<T>& B, int64_t c_begin, int64_t c_end, const Epilogue& epi) {
    if constexpr (R > 0) {
        if (rows != R) return gemm_rows<T, R - 1>(rows, A, a_row, a_col, i0, K, B, c_begin, c_end, epi);
        for (int64_t c = c_begin; c < c_end; c += gemm_step<T>)
            gemm_tile<T, R, kGemmVectors>(A, a_row, a_col, i0, B.at(c), B.stride(), c, K, epi);
    }
}

// Packing pays when a panel is read by several row tiles and is deep: then the tiles stream
// contiguous memory instead of one cache line per row of B, 4 KiB apart (no prefetch across
// pages). Below these sizes the copy costs more than it saves.
constexpr int64_t kPackMinRows = 16, kPackMinDepth = 64;
constexpr bool packs(int64_t rows, int64_t K) { return rows >= kPackMinRows && K >= kPackMinDepth; }

// All rows of C = A B for the columns [c_begin, c_end) (multiples of gemm_step); `pack` is
// scratch for K x (c_end - c_begin) values, or null.
template <class T, class Epilogue>
inline void gemm_columns(const T* A, std::ptrdiff_t a_row, std::ptrdiff_t a_col, int64_t rows,
                         int64_t K, const T* B, std::ptrdiff_t ldb, int64_t c_begin, int64_t c_end,
                         const Epilogue& epi, T* pack) {
    Panels<T> panels{B, ldb, c_begin, K, pack && packs(rows, K)};
    if (panels.packed) {
        for (int64_t c = c_begin; c < c_end; c += gemm_step<T>) {
            T* panel = pack + (c - c_begin) * K;
            for (int64_t p = 0; p < K; ++p)
                std::memcpy(panel + p * gemm_step<T>, B + p * ldb + c, sizeof(T) * gemm_step<T>);
        }
        panels.B = pack;
    }
    int64_t i = 0;
    for (; i + kGemmRows <= rows; i += kGemmRows)
        for (int64_t c = c_begin; c < c_end; c += gemm_step<T>)
            gemm_tile<T, kGemmRows, kGemmVectors>(A, a_row, a_col, i, panels.at(c), panels.stride(), c, K, epi);
    gemm_rows<T, kGemmRows - 1>(rows - i, A, a_row, a_col, i, K, panels, c_begin, c_end, epi);
}

// C(i, j) += sum over the n (a positive multiple of lanes) samples of D(i, .) H(j, .).
template <class T, int RI, int RJ>
inline void dot_tile(const T* D, const T* H, std::ptrdiff_t ld, int64_t n, int64_t i0, int64_t j0,
                     T* C, std::ptrdiff_t ldc) {
    vec<T> acc[RI][RJ];
    const auto step = [&](int64_t m, auto first) {
        vec<T> d[RI];
        for (int ri = 0; ri < RI; ++ri) d[ri] = load(D + (i0 + ri) * ld + m);
        for (int rj = 0; rj < RJ; ++rj) {
            const vec<T> h = load(H + (j0 + rj) * ld + m);
            for (int ri = 0; ri < RI; ++ri) {
                if constexpr (decltype(first)::value) acc[ri][rj] = d[ri] * h;
                else acc[ri][rj] += d[ri] * h;
            }
        }
    };
    step(0, std::true_type{});
    for (int64_t m = lanes<T>; m < n; m += lanes<T>) step(m, std::false_type{});
    for (int ri = 0; ri < RI; ++ri)
        for (int rj = 0; rj < RJ; ++rj) C[(i0 + ri) * ldc + j0 + rj] += hsum<T>(acc[ri][rj]);
}

template <class T, int RI>
inline void dot_rows(const T* D, const T* H, std::ptrdiff_t ld, int64_t n, int64_t i0,
                     int64_t cols, T* C, std::ptrdiff_t ldc) {
    int64_t j = 0;
    for (; j + kDotCols <= cols; j += kDotCols) dot_tile<T, RI, kDotCols>(D, H, ld, n, i0, j, C, ldc);
    for (; j < cols; ++j) dot_tile<T, RI, 1>(D, H, ld, n, i0, j, C, ldc);
}

// dot_rows for the last `rows` (<= R) rows of a layer in one tile of exactly that height.
template <class T, int R>
inline void dot_tail(int64_t rows, const T* D, const T* H, std::ptrdiff_t ld, int64_t n, int64_t i0, int64_t cols,
                     T* C, std::ptrdiff_t ldc) {
    if constexpr (R > 0) {
        if (rows != R) return dot_tail<T, R - 1>(rows, D, H, ld, n, i0, cols, C, ldc);
        dot_rows<T, R>(D, H, ld, n, i0, cols, C, ldc);
    }
}

template <class T>
inline T row_sum(const T* D, int64_t n) {
    vec<T> acc{};
    for (int64_t m = 0; m < n; m += lanes<T>) acc += load(D + m);
    return hsum<T>(acc);
}

template <class T, class Act>
struct HiddenEpilogue {  // z = acc + b; keep z for the backward pass and h = a(z) for the next layer
    const T* bias;
    T* Z;
    T* H;
    std::ptrdiff_t ld;
    const Act& act;
    void operator()(int64_t i, int64_t c, vec<T> acc) const {
        const vec<T> z = acc + bias[i];
        store(Z + i * ld + c, z);
        store(H + i * ld + c, act.template value<vec<T>>(z));
    }
};

template <class T>
struct OutputEpilogue {
    const T* bias;
    T* Z;
    std::ptrdiff_t ld;
    void operator()(int64_t i, int64_t c, vec<T> acc) const { store(Z + i * ld + c, acc + bias[i]); }
};

template <class T, class Act>
struct BackwardEpilogue {  // delta = (W^T delta_next) (.) a'(z), written over z
    T* Z;
    std::ptrdiff_t ld;
    const Act& act;
    void operator()(int64_t i, int64_t c, vec<T> acc) const {
        T* z = Z + i * ld + c;
        store(z, acc * act.template derivative<vec<T>>(load(z)));
    }
};

// How the hidden layers map pre-activations to activations, as the epilogues of the forward
// and backward products of layer k for the block whose first sample is m0. Pointwise: one
// activation for every unit (Network); frozen.hpp has one affine map per unit and sample (the
// gradient flow's field on a fixed activation pattern).
template <class T, class Act>
struct Pointwise {
    const Act& act;
    HiddenEpilogue<T, Act> forward(int64_t, const T* bias, T* Z, T* H, std::ptrdiff_t ld, int64_t) const {
        return {bias, Z, H, ld, act};
    }
    BackwardEpilogue<T, Act> backward(int64_t, T* Z, std::ptrdiff_t ld, int64_t) const { return {Z, ld, act}; }
};

// Where one block of samples lives in the workspace.
template <class T>
struct BlockPlan {
    static constexpr int64_t kChunk = 64;  // columns (samples) per parallel task
    int64_t L, block, ld;                  // ld: padded block width, a multiple of gemm_step
    T* input;                              // X^T, l_0 x ld
    T* Z[kMaxLayers + 1];                  // Z[k] for k = 1..L: pre-activations, then deltas
    T* H[kMaxLayers + 1];                  // H[k] for k = 1..L-1; H[0] = input
    T* dH[kMaxLayers + 1];                 // tangent passes only: dH[k] for k = 1..L-1
    double* losses;                        // per sample of the block
    T* pack;                               // per worker: packing scratch (see pack_depth)
    int64_t pack_stride;
    int threads;  // read once per call (call_threads), at most one per chunk of a block

    BlockPlan(const NetSpec& net, int64_t M, bool tangent = false) : L(net.n_layers) {
        int64_t per_sample = net.widths[0] + net.widths[L];
        for (int64_t k = 1; k < L; ++k) per_sample += (tangent ? 3 : 2) * net.widths[k];
        // About 8 MiB of activations per block: enough samples to amortise the weight passes,
        // few enough to stay in the outer caches. Depends only on the architecture and T.
        const int64_t target = (int64_t(8) << 20) / (per_sample * int64_t(sizeof(T)));
        block = min_of(M, max_of(kChunk, target / kChunk * kChunk));
        ld = round_up(block, gemm_step<T>);
        // Rows 4 KiB apart map to the same L1 sets, and the kernels read down columns across
        // rows: a power-of-two leading dimension thrashed L1.
        if ((ld * int64_t(sizeof(T))) % 1024 == 0) ld += gemm_step<T>;
        // Scratch only for the products that pack: forward layer k (l_k rows, depth l_{k-1}) and
        // backward into layer k-1 (l_{k-1} rows, depth l_k), each over at most one chunk of
        // columns. Sizing it by the widest layer instead cost width x 64 x threads values even
        // where nothing packs: 5 GB a thread for widths (1, 10^7, 1) in float64.
        int64_t pack_depth = 0;
        for (int64_t k = 1; k <= L; ++k) {
            if (packs(net.widths[k], net.widths[k - 1])) pack_depth = max_of(pack_depth, net.widths[k - 1]);
            if (k >= 2 && packs(net.widths[k - 1], net.widths[k])) pack_depth = max_of(pack_depth, net.widths[k]);
        }
        pack_stride = round_up(pack_depth * min_of(kChunk, ld), lanes<T>);
        threads = int(min_of(call_threads(), chunks(block)));
        const int64_t pack_elements = pack_stride * threads;
        char* base = static_cast<char*>(thread_workspace(size_t(per_sample * ld + pack_elements) * sizeof(T) +
                                                         size_t(block) * sizeof(double)));
        T* next = reinterpret_cast<T*>(base);
        input = next;
        next += net.widths[0] * ld;
        H[0] = input;
        for (int64_t k = 1; k <= L; ++k) {
            Z[k] = next;
            next += net.widths[k] * ld;
            if (k < L) {
                H[k] = next;
                next += net.widths[k] * ld;
                if (tangent) {
                    dH[k] = next;
                    next += net.widths[k] * ld;
                }
            }
        }
        pack = next;
        next += pack_elements;
        losses = reinterpret_cast<double*>(next);
    }
    T* worker_pack(int worker) const { return pack + worker * pack_stride; }
    int64_t chunks(int64_t valid) const { return (round_up(valid, gemm_step<T>) + kChunk - 1) / kChunk; }
    // Splitting a call costs a wake-up of the helpers: on an idle machine a second thread pays
    // from about 2e5 multiply-adds; when the cores are shared (other processes, sweeps) a
    // helper may wait for a time slice, so only calls of tens of microseconds and more split.
    int threads_for(double multiply_adds) const { return multiply_adds < 1e6 ? 1 : threads; }
};

inline double forward_work(const NetSpec& net, int64_t columns) {
    double work = 0;
    for (int64_t k = 1; k <= net.n_layers; ++k) work += double(net.widths[k]) * double(net.widths[k - 1]);
    return work * double(columns);
}

// Copies the inputs of the columns [c0, c1) of a block whose first sample is X row m0 with
// `valid` real samples into the block; the padding columns get zero inputs.
template <class T>
void load_inputs(const NetSpec& net, const T* X, int64_t m0, int64_t valid, const BlockPlan<T>& plan, int64_t c0,
                 int64_t c1) {
    const int64_t l0 = net.widths[0], ld = plan.ld;
    for (int64_t c = c0; c < c1; ++c)
        for (int64_t j = 0; j < l0; ++j) plan.input[j * ld + c] = c < valid ? X[(m0 + c) * l0 + j] : T(0);
}

// Z_k = W_k H_{k-1} + b_k and, for a hidden layer, H_k = a(Z_k) on the columns [c0, c1).
template <class T, class Maps>
void forward_layer(const NetSpec& net, const Maps& maps, const T* theta, int64_t k, int64_t m0,
                   const BlockPlan<T>& plan, int64_t c0, int64_t c1, int worker) {
    const LayerOffsets lay = layer_offsets(net.widths, k);
    const T* W = theta + lay.weight;
    const T* b = theta + lay.bias;
    if (k < net.n_layers)
        gemm_columns(W, lay.cols, 1, lay.rows, lay.cols, plan.H[k - 1], plan.ld, c0, c1,
                     maps.forward(k, b, plan.Z[k], plan.H[k], plan.ld, m0), plan.worker_pack(worker));
    else
        gemm_columns(W, lay.cols, 1, lay.rows, lay.cols, plan.H[k - 1], plan.ld, c0, c1,
                     OutputEpilogue<T>{b, plan.Z[k], plan.ld}, plan.worker_pack(worker));
}

// Forward pass of the columns [c0, c1) of a block whose first sample is X row m0 with `valid`
// real samples, through layer k_end (default: the output layer), by the loop's worker `worker`.
template <class T, class Maps>
void forward_chunk(const NetSpec& net, const Maps& maps, const T* theta, const T* X, int64_t m0,
                   int64_t valid, const BlockPlan<T>& plan, int64_t c0, int64_t c1, int worker, int64_t k_end = -1) {
    load_inputs(net, X, m0, valid, plan, c0, c1);
    for (int64_t k = 1; k <= (k_end < 0 ? net.n_layers : k_end); ++k)
        forward_layer(net, maps, theta, k, m0, plan, c0, c1, worker);
}

// D_{k-1} = (W_k^T D_k) (.) a'(Z_{k-1}) for k = k_top..2, D_{k_top} given in Z[k_top].
template <class T, class Maps>
void backward_chunk(const NetSpec& net, const Maps& maps, const T* theta, const BlockPlan<T>& plan,
                    int64_t c0, int64_t c1, int64_t m0, int worker, int64_t k_top = -1) {
    for (int64_t k = k_top < 0 ? net.n_layers : k_top; k >= 2; --k) {
        const LayerOffsets lay = layer_offsets(net.widths, k);
        // D_{k-1} = W_k^T D_k: A(i, p) = W_k[p, i]
        gemm_columns(theta + lay.weight, 1, lay.cols, lay.cols, lay.rows, plan.Z[k], plan.ld, c0, c1,
                     maps.backward(k - 1, plan.Z[k - 1], plan.ld, m0), plan.worker_pack(worker));
    }
}

// dW_k += D_k H_{k-1}^T and db_k += D_k 1 for k = 1..k_top (default L) over the first `columns`
// samples of the block (the rest holds a previous block's values); tasks are row tiles of all
// layers.
template <class T>
void weight_gradient(const NetSpec& net, const BlockPlan<T>& plan, int64_t columns, T* grad, int64_t k_top = -1) {
    if (k_top < 0) k_top = net.n_layers;
    int64_t tasks = 0;
    for (int64_t k = 1; k <= k_top; ++k) tasks += (net.widths[k] + kDotRows - 1) / kDotRows;
    parallel_for(tasks, plan.threads_for(forward_work(net, columns)), [&](int64_t task, int) {
        int64_t k = 1, tile = task;
        for (int64_t t; tile >= (t = (net.widths[k] + kDotRows - 1) / kDotRows); tile -= t) ++k;
        const LayerOffsets lay = layer_offsets(net.widths, k);
        const int64_t i0 = tile * kDotRows;
        T* dW = grad + lay.weight;
        dot_tail<T, kDotRows>(min_of(kDotRows, lay.rows - i0), plan.Z[k], plan.H[k - 1], plan.ld, columns, i0,
                              lay.cols, dW, lay.cols);
        for (int64_t i = i0; i < min_of(i0 + kDotRows, lay.rows); ++i)
            grad[lay.bias + i] += row_sum(plan.Z[k] + i * plan.ld, columns);
    });
}

// The risk sum_m w_m loss(z_m, y_m) and, unless grad is null, its gradient for the network whose
// hidden layers map as `maps` says (Pointwise: the generalized derivative or an approximant A_r).
template <class T, class Maps>
double maps_risk_gradient(const NetSpec& net, const Maps& maps, const T* theta, const Batch<T>& batch, T* grad) {
    const int64_t L = net.n_layers, lL = net.widths[L];
    BlockPlan<T> plan(net, batch.M);
    const T* weight = batch.weight;
    const T uniform = T(1.0 / double(batch.M));
    if (grad) fill(grad, parameter_dim(net.widths, L), T(0));
    double risk = 0;
    for (int64_t m0 = 0; m0 < batch.M; m0 += plan.block) {
        const int64_t valid = min_of(plan.block, batch.M - m0);
        const int64_t n_chunks = plan.chunks(valid);
        parallel_for(n_chunks, plan.threads_for(forward_work(net, plan.ld) * (grad ? 2 : 1)), [&](int64_t chunk, int worker) {
            const int64_t c0 = chunk * plan.kChunk;
            const int64_t c1 = min_of(c0 + plan.kChunk, round_up(valid, gemm_step<T>));
            forward_chunk(net, maps, theta, batch.X, m0, valid, plan, c0, c1, worker);
            const int64_t real_end = min_of(c1, valid);
            block_losses(net.loss, plan.Z[L], plan.ld, lL, batch.Y + m0 * lL, weight ? weight + m0 : nullptr,
                         uniform, c0, real_end, plan.losses, grad != nullptr);
            for (int64_t j = 0; j < lL; ++j) fill(plan.Z[L] + j * plan.ld + real_end, c1 - real_end, T(0));
            if (grad) backward_chunk(net, maps, theta, plan, c0, c1, m0, worker);
        });
        for (int64_t c = 0; c < valid; ++c) risk += double(weight ? weight[m0 + c] : uniform) * plan.losses[c];
        if (grad) weight_gradient(net, plan, round_up(valid, gemm_step<T>), grad);
    }
    return risk;
}

template <class T, class Act>
double risk_gradient(const NetSpec& net, const Act& act, const T* theta, const Batch<T>& batch, T* grad) {
    return maps_risk_gradient(net, Pointwise<T, Act>{act}, theta, batch, grad);
}

// each(i, d) for the n networks of an ensemble (d parameters each), one network per task, each
// computed serially by one thread with that thread's workspace (a loop inside a task runs on its
// thread): no fork/join per network, and results independent of which thread ran which network.
template <class Each>
void each_network(const NetSpec& net, int64_t n, const Each& each) {
    const int64_t d = parameter_dim(net.widths, net.n_layers);
    parallel_for(n, call_threads(), [&](int64_t i, int) { each(i, d); });
}

template <class T, class Act>
void ensemble_risk_gradient(const NetSpec& net, const Act& act, const T* thetas, int64_t n,
                            const EnsembleBatch<T>& b, double* risks, T* grads) {
    each_network(net, n, [&](int64_t i, int64_t d) {
        const Batch<T> batch{b.X + i * b.x_stride, b.Y + i * b.y_stride,
                             b.weight ? b.weight + i * b.weight_stride : nullptr, b.M};
        risks[i] = risk_gradient(net, act, thetas + i * d, batch, grads ? grads + i * d : nullptr);
    });
}

// The forward pass of every sample of X, block by block and chunk by chunk on the call's threads;
// after each chunk visit(plan, m0, c0, c_end): the chunk's samples m0 + c0 .. m0 + c_end - 1 are
// in the plan's columns c0 .. c_end - 1.
template <class T, class Act, class Visit>
void forward_blocks(const NetSpec& net, const Act& act, const T* theta, const T* X, int64_t M, const Visit& visit) {
    BlockPlan<T> plan(net, M);
    for (int64_t m0 = 0; m0 < M; m0 += plan.block) {
        const int64_t valid = min_of(plan.block, M - m0);
        parallel_for(plan.chunks(valid), plan.threads_for(forward_work(net, plan.ld)), [&](int64_t chunk, int worker) {
            const int64_t c0 = chunk * plan.kChunk;
            const int64_t c1 = min_of(c0 + plan.kChunk, round_up(valid, gemm_step<T>));
            forward_chunk(net, Pointwise<T, Act>{act}, theta, X, m0, valid, plan, c0, c1, worker);
            visit(plan, m0, c0, min_of(c1, valid));
        });
    }
}

// The pre-activations z^k of layers k = first..L for every sample, written sample-major:
// row m of out is (z^first_m, ..., z^L_m). first = L gives the network outputs.
template <class T, class Act>
void pre_activations(const NetSpec& net, const Act& act, const T* theta, const T* X, int64_t M,
                     int64_t first, T* out) {
    int64_t row = 0;
    for (int64_t k = first; k <= net.n_layers; ++k) row += net.widths[k];
    forward_blocks(net, act, theta, X, M, [&](const BlockPlan<T>& plan, int64_t m0, int64_t c0, int64_t c_end) {
        for (int64_t c = c0; c < c_end; ++c) {
            T* dst = out + (m0 + c) * row;
            for (int64_t k = first; k <= net.n_layers; ++k)
                for (int64_t j = 0; j < net.widths[k]; ++j) *dst++ = plan.Z[k][j * plan.ld + c];
        }
    });
}

template <class T, class Act>
void kink_counts(const NetSpec& net, const Act& act, const T* theta, const T* X, int64_t M, int64_t* counts) {
    fill(counts, net.n_layers - 1, int64_t(0));
    forward_blocks(net, act, theta, X, M, [&](const BlockPlan<T>& plan, int64_t, int64_t c0, int64_t c_end) {
        for (int64_t k = 1; k < net.n_layers; ++k) {
            int64_t hits = 0;
            for (int64_t i = 0; i < net.widths[k]; ++i)
                for (int64_t c = c0; c < c_end; ++c) hits += act.is_kink(plan.Z[k][i * plan.ld + c]);
            __atomic_fetch_add(&counts[k - 1], hits, __ATOMIC_RELAXED);
        }
    });
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
