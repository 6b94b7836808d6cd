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
#include "tiles.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// The weight gradient of a layer as a product with the tiles of tiles.hpp, for layers with at least
// this many rows and columns: C = D H^T with the samples as depth, D packed as Left panels and
// H^T in panels of gemm_step columns. Both packings transpose, which costs about one pass over
// D and H; below these widths the dot tiles, which need no copy, are faster.
constexpr int64_t kPanelGradientMinRows = 64, kPanelGradientMinCols = 64;
constexpr bool panel_gradient(int64_t rows, int64_t cols) {
    return rows >= kPanelGradientMinRows && cols >= kPanelGradientMinCols;
}
// The most samples summed in one chain before the sum is added into dW: it bounds the rounding
// of long blocks (float32 chains of 10^4 products), and shorter slices were slower (256: the
// load-add-store of dW once per slice showed in profiles).
constexpr int64_t kGradientSlice = 1024;
// Column panels of dW per task: each row panel of D_k (from L3) serves all of them in turn. One
// panel a task streamed all of D_k per 32 columns (float32); three made the weight gradient's
// calls 2-6 % faster on 2 threads than one or two (A/B, alternating processes), four no better.
constexpr int64_t kGradientPanels = 3;
constexpr int64_t kGradientTasksPerThread = 4;

template <class T>
struct GradientEpilogue {  // dW(i, j..) += acc for the columns j < cols
    T* dW;
    std::ptrdiff_t ld;
    int64_t cols;
    void operator()(int64_t i, int64_t j, vec<T> acc) const {
        T* out = dW + i * ld + j;
        if (j + lanes<T> <= cols) return store(out, load(out) + acc);
        T lane[lanes<T>];
        std::memcpy(lane, &acc, sizeof acc);
        for (int64_t l = 0; l < cols - j; ++l) out[l] += lane[l];
    }
};

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

// Tasks numbered group after group (the layers of a loop, the panels of several operands).
struct TaskGroups {
    int64_t end[2 * kMaxLayers + 1] = {0};  // end[g]: one past the last task of group g
    int groups = 0;
    void add(int64_t tasks) {
        end[groups + 1] = end[groups] + tasks;
        ++groups;
    }
    int64_t total() const { return end[groups]; }
    // The group of `task`; task becomes its index within the group.
    int group_of(int64_t& task) const {
        int g = 0;
        while (task >= end[g + 1]) ++g;
        task -= end[g];
        return g;
    }
};

// What a plan is for: the forward pass, a gradient (forward and backward), or the forward pass
// with its tangent (frozen.hpp).
enum class Passes { forward, gradient, tangent };

// Weight panels (Left::panels) cost one copy of the weights per call; they pay from a few
// hundred samples per block.
constexpr int64_t kPanelMinSamples = 256;
constexpr int64_t kPanelCopiesBytes = int64_t(64) << 20;

inline double forward_work(const NetSpec& net, int64_t columns) {
    double work = 0;
    for (int64_t k = 1; k <= net.n_layers; ++k) work += double(net.widths[k]) * double(net.widths[k - 1]);
    return work * double(columns);
}

// Where one block of samples lives in the workspace.
template <class T>
struct BlockPlan {
    static constexpr int64_t kChunk = 64;  // columns (samples) per parallel task
    int64_t L, block, ld;                  // ld: padded block width, a multiple of gemm_step
    T* input;                              // X^T, l_0 x ld
    T* Z[kMaxLayers + 1];                  // Z[k] for k = 1..L: pre-activations, then deltas
    T* H[kMaxLayers + 1];                  // H[k] for k = 1..L-1; H[0] = input
    T* dH[kMaxLayers + 1];                 // tangent passes only: dH[k] for k = 1..L-1
    // Weight panels, packed once per call: one copy that all workers of the chunk loops read, or
    // where weight_panels_per_worker() one per worker (with one copy that both cores streamed for
    // every chunk, (784, 512, 512, 10) at 1024 samples took 11.4 ms in float32 on 2 threads of an
    // Intel Xeon, with a copy each 10.7). Copies beyond kPanelCopiesBytes are shared by several
    // workers (a many-core machine would otherwise hold a copy per chunk of a block: 8 for that
    // network).
    T* forward_panels[kMaxLayers + 1];     // W_k packed as Left panels (worker 0's copy), or null
    T* backward_panels[kMaxLayers + 1];    // W_k^T packed (k >= 2, gradients only), or null
    int64_t panel_copy;                    // elements from one copy to the next (whole vectors)
    int panel_copies;                      // worker w reads copy w % panel_copies
    T* delta_panels[kMaxLayers + 1];       // D_k packed for weight_gradient (panel_gradient), or null
    double* losses;                        // per sample of the block
    T* pack;                               // per worker: packing scratch (see pack_depth)
    int64_t pack_stride;
    int threads;        // read once per call (call_threads), at most one per chunk of a block
    int chunk_threads;  // the threads of the loops over a block's chunks: threads, or 1 for small blocks

    BlockPlan(const NetSpec& net, int64_t M, Passes passes) : L(net.n_layers) {
        const bool tangent = passes == Passes::tangent;
        int64_t per_sample = net.widths[0] + net.widths[L];
        for (int64_t k = 1; k < L; ++k) per_sample += (tangent ? 3 : 2) * net.widths[k];
        // About 8 MiB of activations per block: enough samples to amortise the weight passes,
        // few enough to stay in the outer caches. Depends only on M, the architecture and T.
        const int64_t target = (int64_t(8) << 20) / (per_sample * int64_t(sizeof(T)));
        // The blocks of a call are as equal as multiples of kChunk allow: 1024 float64 samples of
        // (784, 512, 512, 10) made blocks of 576 and 448, 9 and 7 chunks, and one of two threads
        // waited a chunk at the end of every loop.
        const int64_t blocks = max_of(1, (M + max_of(kChunk, target) - 1) / max_of(kChunk, target));
        block = min_of(M, round_up((M + blocks - 1) / blocks, kChunk));
        ld = round_up(block, gemm_step<T>);
        // Rows 4 KiB apart map to the same L1 sets, and the kernels read down columns across
        // rows: a power-of-two leading dimension thrashed L1.
        if ((ld * int64_t(sizeof(T))) % 1024 == 0) ld += gemm_step<T>;
        // Scratch only for the products that pack: forward layer k (l_k rows, depth l_{k-1}) and
        // backward into layer k-1 (l_{k-1} rows, depth l_k), each over at most one chunk of
        // columns. Sizing it by the widest layer instead cost width x 64 x threads values even
        // where nothing packs: 5 GB a thread for widths (1, 10^7, 1) in float64.
        // A weight gradient by panels needs D_k packed and, per worker, a slice of H_{k-1}^T.
        int64_t pack_depth = 0, weight_panels = 0, delta_panels_elements = 0;
        bool transposes = false;
        for (int64_t k = 1; k <= L; ++k) {
            const int64_t rows = net.widths[k], cols = net.widths[k - 1];
            if (packs(rows, cols)) pack_depth = max_of(pack_depth, cols);
            if (k >= 2 && packs(cols, rows)) pack_depth = max_of(pack_depth, rows);
            const LayerPanels sizes = layer_panels(net, k, passes);
            weight_panels += sizes.forward + sizes.backward;
            delta_panels_elements += sizes.delta;
            transposes = transposes || sizes.delta > 0;
        }
        pack_stride = round_up(max_of(pack_depth * min_of(kChunk, ld), transposes ? kGradientPanels * gemm_step<T> * ld : 0), lanes<T>);
        threads = int(min_of(call_threads(), chunks(block)));
        chunk_threads = threads_for(forward_work(net, ld) * (passes == Passes::forward ? 1 : 2));
        const int64_t pack_elements = pack_stride * threads;
        panel_copy = round_up(weight_panels, lanes<T>);
        const int64_t copies_fit = kPanelCopiesBytes / max_of(1, weight_panels * int64_t(sizeof(T)));
        panel_copies = weight_panels_per_worker() ? int(max_of(1, min_of(chunk_threads, copies_fit))) : 1;
        char* base = static_cast<char*>(thread_workspace(
            size_t(per_sample * ld + pack_elements + panel_copy * panel_copies + delta_panels_elements) * sizeof(T) +
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
        const auto take = [&](int64_t elements) {
            T* start = elements > 0 ? next : nullptr;
            next += elements;
            return start;
        };
        for (int64_t k = 1; k <= L; ++k) {
            const LayerPanels sizes = layer_panels(net, k, passes);
            forward_panels[k] = take(sizes.forward);
            backward_panels[k] = take(sizes.backward);
        }
        next += panel_copy * panel_copies - weight_panels;
        for (int64_t k = 1; k <= L; ++k) delta_panels[k] = take(layer_panels(net, k, passes).delta);
        // Every region above is whole vectors (ld, pack_stride and panel_copy are), so the
        // doubles start aligned: an odd float32 panel count once left them 4 bytes off (UBSan).
        losses = reinterpret_cast<double*>(next);
    }

    // The elements of layer k's forward, backward and delta panels (0: that one has none), for
    // the plan's block (weight panels from kPanelMinSamples; the backward and delta panels for
    // gradients only).
    struct LayerPanels {
        int64_t forward, backward, delta;
    };
    LayerPanels layer_panels(const NetSpec& net, int64_t k, Passes passes) const {
        const int64_t rows = net.widths[k], cols = net.widths[k - 1];
        const bool weights = block >= kPanelMinSamples, gradient = passes == Passes::gradient;
        return {weights && packs(rows, cols) ? rows * cols : 0,
                weights && gradient && k >= 2 && packs(cols, rows) ? rows * cols : 0,
                gradient && panel_gradient(rows, cols) ? rows * ld : 0};
    }
    T* worker_pack(int worker) const { return pack + worker * pack_stride; }
    int64_t chunks(int64_t valid) const { return (round_up(valid, gemm_step<T>) + kChunk - 1) / kChunk; }
    // Splitting a call costs a wake-up of the helpers: on an idle machine a second thread pays
    // from about 2e5 multiply-adds; when the cores are shared (other processes, sweeps) a
    // helper may wait for a time slice, so only calls of tens of microseconds and more split.
    int threads_for(double multiply_adds) const { return multiply_adds < 1e6 ? 1 : threads; }

    // Z_k = W_k H_{k-1}: A = W_k. D_{k-1} = W_k^T D_k: A(i, p) = W_k[p, i]; `worker`'s panels.
    Left<T> forward_left(const NetSpec& net, const T* weights, int64_t k, int worker) const {
        const LayerOffsets lay = layer_offsets(net.widths, k);
        return {weights + lay.weight, lay.cols, 1, lay.rows, lay.cols, copy_of(forward_panels[k], worker)};
    }
    Left<T> backward_left(const NetSpec& net, const T* weights, int64_t k, int worker) const {
        const LayerOffsets lay = layer_offsets(net.widths, k);
        return {weights + lay.weight, 1, lay.cols, lay.cols, lay.rows, copy_of(backward_panels[k], worker)};
    }
    T* copy_of(T* panels, int worker) const { return panels ? panels + worker % panel_copies * panel_copy : nullptr; }

    // Fills every copy of the weight panels from theta, a panel per task.
    void pack_weights(const NetSpec& net, const T* theta) const {
        Left<T> lefts[2 * kMaxLayers];
        TaskGroups tasks;  // group g: the panels of lefts[g] (worker 0's copy)
        double elements = 0;
        for (int64_t k = 1; k <= L; ++k) {
            const Left<T> both[2] = {forward_left(net, theta, k, 0), backward_left(net, theta, k, 0)};
            for (const Left<T>& left : both)
                if (left.panels) {
                    lefts[tasks.groups] = left;
                    tasks.add((left.rows + kGemmRows - 1) / kGemmRows);
                    elements += double(left.rows) * double(left.K);
                }
        }
        // A copied value costs about as much as a few dozen multiply-adds.
        const int64_t per_copy = tasks.total();
        parallel_for(per_copy * panel_copies, threads_for(32 * elements * panel_copies), [&](int64_t task, int) {
            const int64_t copy = task / per_copy;
            task %= per_copy;
            const Left<T>& left = lefts[tasks.group_of(task)];
            pack_panel(left, task * kGemmRows, const_cast<T*>(left.panels) + copy * panel_copy);
        });
    }
};

// Copies the inputs of the columns [c0, c1) (multiples of gemm_step) of a block whose first
// sample is X row m0 with `valid` real samples into the block, transposed (pack_rows); the
// padding columns get zero inputs.
template <class T>
void load_inputs(const NetSpec& net, const T* X, int64_t m0, int64_t valid, const BlockPlan<T>& plan, int64_t c0,
                 int64_t c1) {
    const int64_t l0 = net.widths[0];
    pack_rows(X + (m0 + c0) * l0, l0, 1, c1 - c0, valid - c0, l0, plan.input + c0, plan.ld);
}

// Z_k = W_k H_{k-1} + b_k and, for a hidden layer, H_k = a(Z_k) on the columns [c0, c1).
template <class T, class Maps>
void forward_layer(const NetSpec& net, const Maps& maps, const T* theta, int64_t k, int64_t m0,
                   const BlockPlan<T>& plan, int64_t c0, int64_t c1, int worker) {
    const T* b = theta + layer_offsets(net.widths, k).bias;
    const Left<T> W = plan.forward_left(net, theta, k, worker);
    if (k < net.n_layers)
        gemm_columns(W, plan.H[k - 1], plan.ld, c0, c1, maps.forward(k, b, plan.Z[k], plan.H[k], plan.ld, m0),
                     plan.worker_pack(worker));
    else
        gemm_columns(W, plan.H[k - 1], plan.ld, c0, c1, OutputEpilogue<T>{b, plan.Z[k], plan.ld},
                     plan.worker_pack(worker));
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
    for (int64_t k = k_top < 0 ? net.n_layers : k_top; k >= 2; --k)
        gemm_columns(plan.backward_left(net, theta, k, worker), plan.Z[k], plan.ld, c0, c1,
                     maps.backward(k - 1, plan.Z[k - 1], plan.ld, m0), plan.worker_pack(worker));
}

// Copies the columns [c0, c1) of D_k into its panels (depth `columns`, the block's padded width)
// for the layers up to k_top (default L) that panel_gradient: a chunk's task does it for its
// columns right after its backward pass, so that the weight gradient is one loop.
template <class T>
void pack_deltas(const NetSpec& net, const BlockPlan<T>& plan, int64_t columns, int64_t c0, int64_t c1,
                 int64_t k_top = -1) {
    for (int64_t k = 1; k <= (k_top < 0 ? net.n_layers : k_top); ++k) {
        if (!plan.delta_panels[k]) continue;
        const Left<T> D{plan.Z[k], plan.ld, 1, net.widths[k], columns, nullptr};
        for (int64_t i0 = 0; i0 < net.widths[k]; i0 += kGemmRows) pack_panel(D, i0, plan.delta_panels[k], c0, c1);
    }
}

// dW_k += D_k H_{k-1}^T and db_k += D_k 1 for k = 1..k_top (default L) over the first `columns`
// samples of the block (the rest holds a previous block's values), D_k packed by pack_deltas
// where panel_gradient. One loop (each join costs a wait when a neighbour process holds a
// core): a layer by panels gives a task per kGradientPanels x gemm_step columns of dW_k, which
// transposes its own slice of H_{k-1}^T (the first also sums the bias rows); other layers
// kDotRows rows of dot tiles.
template <class T>
void weight_gradient(const NetSpec& net, const BlockPlan<T>& plan, int64_t columns, T* grad, int64_t k_top = -1) {
    if (k_top < 0) k_top = net.n_layers;
    const int threads = plan.threads_for(forward_work(net, columns));
    // Several panels a task only where that leaves tasks enough for the threads: (64,64,10) at
    // 1347 samples had one task for its first layer and lost its second thread (0.85 -> 1.02 of
    // the 1-thread time).
    const auto split = [&](int64_t panels_per_task) {
        TaskGroups groups;  // group k - 1: layer k
        const int64_t width = panels_per_task * gemm_step<T>;
        for (int64_t k = 1; k <= k_top; ++k)
            groups.add(plan.delta_panels[k] ? (net.widths[k - 1] + width - 1) / width
                                            : (net.widths[k] + kDotRows - 1) / kDotRows);
        return groups;
    };
    int64_t panels_per_task = kGradientPanels;
    TaskGroups tasks = split(panels_per_task);
    if (tasks.total() < kGradientTasksPerThread * threads) tasks = split(panels_per_task = 1);
    parallel_for(tasks.total(), threads, [&](int64_t task, int worker) {
        const int64_t k = tasks.group_of(task) + 1;
        const LayerOffsets lay = layer_offsets(net.widths, k);
        const auto bias_rows = [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) grad[lay.bias + i] += row_sum(plan.Z[k] + i * plan.ld, columns);
        };
        if (!plan.delta_panels[k]) {
            const int64_t i0 = task * kDotRows, rows = min_of(kDotRows, lay.rows - i0);
            dot_tail<T, kDotRows>(rows, plan.Z[k], plan.H[k - 1], plan.ld, columns, i0, lay.cols, grad + lay.weight,
                                  lay.cols);
            return bias_rows(i0, i0 + rows);
        }
        const int64_t j0 = task * panels_per_task * gemm_step<T>;
        if (j0 == 0) bias_rows(0, lay.rows);
        T* transposed = plan.worker_pack(worker);
        const int64_t j1 = min_of(j0 + panels_per_task * gemm_step<T>, round_up(lay.cols, gemm_step<T>));
        for (int64_t j = j0; j < j1; j += gemm_step<T>)
            pack_rows(plan.H[k - 1] + j * plan.ld, plan.ld, 1, gemm_step<T>, min_of(gemm_step<T>, lay.cols - j), columns,
                      transposed + (j - j0) * columns);
        const Left<T> D{plan.Z[k], plan.ld, 1, lay.rows, columns, plan.delta_panels[k]};
        const GradientEpilogue<T> add{grad + lay.weight, lay.cols, lay.cols};
        for (int64_t s0 = 0; s0 < columns; s0 += kGradientSlice) {
            const int64_t depth = min_of(kGradientSlice, columns - s0);
            gemm_panels(D.columns(s0, depth), Panels<T>{transposed + s0 * gemm_step<T>, gemm_step<T>, j0, columns, true},
                        j0, j1, add);
        }
    });
}

// The risk sum_m w_m loss(z_m, y_m) and, unless grad is null, its gradient for the network whose
// hidden layers map as `maps` says (Pointwise: the generalized derivative or an approximant A_r).
template <class T, class Maps>
double maps_risk_gradient(const NetSpec& net, const Maps& maps, const T* theta, const Batch<T>& batch, T* grad) {
    const int64_t L = net.n_layers, lL = net.widths[L];
    BlockPlan<T> plan(net, batch.M, grad ? Passes::gradient : Passes::forward);
    plan.pack_weights(net, theta);
    const T* weight = batch.weight;
    const T uniform = T(1.0 / double(batch.M));
    if (grad) fill(grad, parameter_dim(net.widths, L), T(0));
    double risk = 0;
    for (int64_t m0 = 0; m0 < batch.M; m0 += plan.block) {
        const int64_t valid = min_of(plan.block, batch.M - m0);
        const int64_t n_chunks = plan.chunks(valid);
        parallel_for(n_chunks, plan.chunk_threads, [&](int64_t chunk, int worker) {
            const int64_t c0 = chunk * plan.kChunk;
            const int64_t c1 = min_of(c0 + plan.kChunk, round_up(valid, gemm_step<T>));
            forward_chunk(net, maps, theta, batch.X, m0, valid, plan, c0, c1, worker);
            const int64_t real_end = min_of(c1, valid);
            block_losses(net.loss, plan.Z[L], plan.ld, lL, batch.Y + m0 * lL, weight ? weight + m0 : nullptr,
                         uniform, c0, real_end, plan.losses, grad != nullptr);
            for (int64_t j = 0; j < lL; ++j) fill(plan.Z[L] + j * plan.ld + real_end, c1 - real_end, T(0));
            if (grad) {
                backward_chunk(net, maps, theta, plan, c0, c1, m0, worker);
                pack_deltas(net, plan, round_up(valid, gemm_step<T>), c0, c1);
            }
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
    BlockPlan<T> plan(net, M, Passes::forward);
    plan.pack_weights(net, theta);
    for (int64_t m0 = 0; m0 < M; m0 += plan.block) {
        const int64_t valid = min_of(plan.block, M - m0);
        parallel_for(plan.chunks(valid), plan.chunk_threads, [&](int64_t chunk, int worker) {
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
