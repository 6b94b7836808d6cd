// The fused network kernel of the CUDA backend (cpp/cuda), written once as host/device code so
// that the C++ compiler runs the very same arithmetic on the CPU (cuda::emulate in
// cpp/cuda/kernels.cu; tests/test_cuda.py holds it to the NumPy reference without a GPU).
//
// A thread block takes one network and a tile of 64, 32 or 16 samples (the most whose scratch
// fits the shared-memory budget) and keeps the tile's activations of every layer in one scratch
// array in shared memory, as tiny-cuda-nn's fully fused MLP does, stored feature-major with an
// odd leading dimension (samples + 1) so that neighbouring threads hit different banks.
// Forward, loss, backward and the tile's weight gradient run in one launch as a sequence of
// phases separated by barriers; in each phase the threads share out independent items (register
// tiles of neurons x samples or of weights, a sample, a bias; WorkItem's R). A phase is a
// function of (thread, threads), so the device runs all threads of a phase at once and the host
// emulation runs them one after another, in either order: the same items, the same order of
// every sum.
//
// Determinism: the tiling depends only on the problem (architecture, M, n, d), never on the
// device; every parameter's gradient is summed over samples and tiles in one fixed order by one
// thread, and partial sums of a network's tile groups are reduced in group order. So results are
// bitwise reproducible from run to run (they differ from the CPU kernels' summation order by
// rounding only).
#pragma once
#include <cstddef>
#include <cstdint>

#include "gengrad/activation.hpp"
#include "gengrad/host_device.hpp"
#include "gengrad/contract.hpp"
#include "gengrad/layout.hpp"
#include "gengrad/loss.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

constexpr int kTile = 4;  // register tiles: kTile x kTile outputs per thread and item

// Consecutive rows (or columns) of a matrix read along a depth: entry (r, p) is
// data[(first + r) * stride + p * depth_stride], and 0 past `count` rows.
template <class T>
struct TileOperand {
    const T* data;
    int64_t first, count, stride, depth_stride;
    GENGRAD_HD T at(int r, int64_t p) const {
        return first + r < count ? data[(first + r) * stride + p * depth_stride] : T(0);
    }
};

// acc[r][q] = sum over p < depth of a(r, p) b(q, p), in order from the first product (the order
// gemm_tile sums in); depth >= 1. R x C outputs from R + C loads per step of the depth.
template <class T, int R, int C>
GENGRAD_HD void tile_product(T (&acc)[R][C], TileOperand<T> a, TileOperand<T> b, int64_t depth) {
    for (int64_t p = 0; p < depth; ++p)
        for (int r = 0; r < R; ++r) {
            const T x = a.at(r, p);
            for (int q = 0; q < C; ++q) acc[r][q] = p == 0 ? x * b.at(q, p) : acc[r][q] + x * b.at(q, p);
        }
}

// The architecture as plain data that a kernel takes by value. Scratch rows, per sample of a
// tile: h^0 = x (l_0 rows), then for k = 1..L the pre-activations z^k (l_k rows; overwritten by
// the deltas during the backward pass) and, for k < L, h^k = a(z^k).
struct Arch {
    int32_t L;
    LossKind loss;
    int64_t d, rows;
    int64_t widths[kMaxLayers + 1];
    int64_t weight[kMaxLayers + 1], bias[kMaxLayers + 1];  // offsets of W_k and b_k in theta
    int64_t z_row[kMaxLayers + 1], h_row[kMaxLayers + 1];  // first scratch row of z^k, h^k
};

inline Arch make_arch(const NetSpec& net) {
    Arch a{};
    a.L = int32_t(net.n_layers);
    a.loss = net.loss;
    for (int64_t k = 0; k <= net.n_layers; ++k) a.widths[k] = net.widths[k];
    a.d = parameter_dim(net.widths, net.n_layers);
    int64_t row = net.widths[0];
    a.h_row[0] = 0;
    for (int64_t k = 1; k <= net.n_layers; ++k) {
        const LayerOffsets lay = layer_offsets(net.widths, k);
        a.weight[k] = lay.weight;
        a.bias[k] = lay.bias;
        a.z_row[k] = row;
        row += lay.rows;
        if (k < net.n_layers) {
            a.h_row[k] = row;
            row += lay.rows;
        }
    }
    a.rows = row;
    return a;
}

// How the samples of each network are cut into tiles and the tiles into `groups` work items
// (one thread block each; group g takes tiles g, g + groups, ...). Depends on the problem only.
struct Tiling {
    static constexpr int kMaxSamples = 64;  // samples per tile: 64, 32 or 16
    static constexpr int kThreads = 256;    // threads per block
    // The shared memory a tile's scratch may take: what every GPU from sm_80 offers a block
    // (at least 99 KiB) less the architecture and the losses. Fixed, so that the tiling, and
    // with it every order of summation, depends on the problem only.
    static constexpr std::size_t kSharedBudget = 96 * 1024 - sizeof(Arch) - kMaxSamples * sizeof(double);
    int64_t n, M, samples, ld, tiles, groups;

    // The most samples per tile whose scratch fits kSharedBudget; 0: none (the layered path,
    // layered.hpp; make() is not called then).
    static int64_t samples_for(const Arch& a, std::size_t scalar_bytes) {
        for (int64_t s = kMaxSamples; s >= 16; s /= 2)
            if (std::size_t(a.rows * (s + 1)) * scalar_bytes <= kSharedBudget) return s;
        return 0;
    }

    // Several groups per network when there are few networks (to fill the device), as long as
    // their partial gradients (n x groups x d values) stay within about 256 MiB of float32.
    static Tiling make(const Arch& a, std::size_t scalar_bytes, int64_t n, int64_t M) {
        const int64_t S = samples_for(a, scalar_bytes), d = a.d;
        Tiling t{n, M, S, S + 1, (M + S - 1) / S, 1};
        const int64_t wanted = n >= 1024 ? 1 : 1024 / n;
        const int64_t room = (int64_t(1) << 26) / (n * d);
        t.groups = wanted < room ? wanted : room;
        if (t.groups > t.tiles) t.groups = t.tiles;
        if (t.groups < 1) t.groups = 1;
        return t;
    }
    GENGRAD_HD int64_t work_items() const { return n * groups; }
    GENGRAD_HD int64_t forward_items() const { return n * tiles; }  // the forward pass: no groups
    GENGRAD_HD int64_t scratch_elements(const Arch& a) const { return a.rows * ld; }
};

// Where a work item reads and writes. Device pointers on the device, host pointers in the
// emulation. The batch follows EnsembleBatch's strides (0: shared by all networks).
template <class T>
struct Problem {
    const T* thetas;  // (n, d)
    EnsembleBatch<T> batch;
    bool want_gradient;
    // One slot per work item: the gradient (d values) and risk of its tile group; with one group
    // per network these are the results themselves.
    T* grad_slots;
    double* risk_slots;
};

// One work item: network `net`, tile group `group`. `theta` points at the network's parameters
// (staged in shared memory or not), `Z` at the scratch (arch.rows x ld), `losses` at
// tiling.samples doubles.
//
// R: how the block's threads share out a layer's products and the weight gradient: R x R
// register tiles (kTile: a quarter of the shared-memory loads per multiply-add, more registers)
// or one output each (1: the most threads busy on a small layer). The same sums in the same
// order either way, so results do not depend on R, only speed.
template <class T, class Act, int R>
struct WorkItem {
    const Arch& a;
    const Act& act;
    const Tiling& tiling;
    const Problem<T>& p;
    int64_t net, group;
    const T* theta;
    T* Z;
    double* losses;

    GENGRAD_HD T* row(int64_t r) const { return Z + r * tiling.ld; }
    GENGRAD_HD T uniform() const { return T(1.0 / double(tiling.M)); }
    GENGRAD_HD T weight_of(int64_t m) const {
        return p.batch.weight ? p.batch.weight[net * p.batch.weight_stride + m] : uniform();
    }

    // x of the tile's samples into h^0; columns past the last sample get zeros.
    GENGRAD_HD void load_inputs(int64_t m0, int64_t valid, int t, int nt) const {
        const int64_t S = tiling.samples;
        const int64_t l0 = a.widths[0];
        const T* X = p.batch.X + net * p.batch.x_stride;
        for (int64_t item = t; item < l0 * S; item += nt) {
            const int64_t j = item / S, c = item % S;
            row(j)[c] = c < valid ? X[(m0 + c) * l0 + j] : T(0);
        }
    }

    // z^k = W_k h^{k-1} + b_k (and h^k = a(z^k) below the output), summed in the order of the
    // CPU kernels' gemm_tile: the first product, the others in turn, then the bias.
    // An item: R neurons x R samples c, c + S/R, ...: neighbouring threads take neighbouring
    // samples, so that their loads of h^{k-1} hit different banks.
    GENGRAD_HD void forward_layer(int64_t k, int t, int nt) const {
        const int64_t ld = tiling.ld, spread = tiling.samples / R;
        const int64_t rows = a.widths[k], cols = a.widths[k - 1];
        const T* W = theta + a.weight[k];
        const T* b = theta + a.bias[k];
        const T* H = row(a.h_row[k - 1]);
        for (int64_t item = t; item < (rows + R - 1) / R * spread; item += nt) {
            const int64_t i0 = item / spread * R, c = item % spread;
            T acc[R][R];
            tile_product(acc, TileOperand<T>{W, i0, rows, cols, 1}, TileOperand<T>{H + c, 0, R, spread, ld}, cols);
            for (int r = 0; r < R && i0 + r < rows; ++r)
                for (int q = 0; q < R; ++q) {
                    const T z = acc[r][q] + b[i0 + r];
                    row(a.z_row[k] + i0 + r)[c + q * spread] = z;
                    if (k < a.L) row(a.h_row[k] + i0 + r)[c + q * spread] = act.value(z);
                }
        }
    }

    // The loss of each sample and weight * dloss/dz^L written over z^L (zero past the last
    // sample, so the padding adds nothing anywhere).
    GENGRAD_HD void loss(int64_t m0, int64_t valid, int t, int nt) const {
        const int64_t S = tiling.samples, ld = tiling.ld;
        const int64_t out = a.widths[a.L];
        T* Zl = row(a.z_row[a.L]);
        const T* Y = p.batch.Y + net * p.batch.y_stride;
        for (int64_t c = t; c < S; c += nt) {
            if (c < valid) {
                losses[c] = sample_loss_delta(a.loss, Zl + c, ld, Y + (m0 + c) * out, weight_of(m0 + c), out);
            } else {
                for (int64_t j = 0; j < out; ++j) Zl[j * ld + c] = 0;
            }
        }
    }

    // delta^{k-1} = (W_k^T delta^k) (.) a'(z^{k-1}), written over z^{k-1}.
    // An item: R neurons of layer k - 1 x R samples, as in forward_layer.
    GENGRAD_HD void backward_layer(int64_t k, int t, int nt) const {
        const int64_t ld = tiling.ld, spread = tiling.samples / R;
        const int64_t rows = a.widths[k], cols = a.widths[k - 1];
        const T* W = theta + a.weight[k];
        const T* D = row(a.z_row[k]);
        T* Zp = row(a.z_row[k - 1]);
        for (int64_t item = t; item < (cols + R - 1) / R * spread; item += nt) {
            const int64_t j0 = item / spread * R, c = item % spread;
            T acc[R][R];
            tile_product(acc, TileOperand<T>{W, j0, cols, 1, cols}, TileOperand<T>{D + c, 0, R, spread, ld}, rows);
            for (int r = 0; r < R && j0 + r < cols; ++r)
                for (int q = 0; q < R; ++q) {
                    T& z = Zp[(j0 + r) * ld + c + q * spread];
                    z = acc[r][q] * act.derivative(z);
                }
        }
    }

    // Layer k's items of the weight gradient: R x R weights (rows i0.., columns j, j + spread,
    // ... with spread = ceil(l_{k-1} / R), so that neighbouring threads read neighbouring rows
    // of h^{k-1}), then one item per bias.
    GENGRAD_HD int64_t gradient_items(int64_t k) const {
        const int64_t rows = a.widths[k], cols = a.widths[k - 1];
        return (rows + R - 1) / R * ((cols + R - 1) / R) + rows;
    }

    // The tile's dW_k = delta^k (h^{k-1})^T and db_k = delta^k 1, over the samples in order;
    // added to the work item's slot (set on its first tile).
    GENGRAD_HD void gradient(int64_t valid, bool first, int t, int nt) const {
        T* g = p.grad_slots + (net * tiling.groups + group) * a.d;
        const int64_t ld = tiling.ld;
        int64_t items = 0;
        for (int64_t k = 1; k <= a.L; ++k) items += gradient_items(k);
        for (int64_t item = t; item < items; item += nt) {
            int64_t k = 1, rest = item;
            while (rest >= gradient_items(k)) rest -= gradient_items(k++);
            const int64_t rows = a.widths[k], cols = a.widths[k - 1], spread = (cols + R - 1) / R;
            const T* D = row(a.z_row[k]);
            const int64_t weight_items = (rows + R - 1) / R * spread;
            if (rest >= weight_items) {
                const int64_t i = rest - weight_items;
                T sum = 0;
                for (int64_t c = 0; c < valid; ++c) sum += D[i * ld + c];
                T& bias = g[a.bias[k] + i];
                bias = first ? sum : bias + sum;
                continue;
            }
            const int64_t i0 = rest / spread * R, j = rest % spread;
            T acc[R][R];
            tile_product(acc, TileOperand<T>{D, i0, rows, ld, 1},
                         TileOperand<T>{row(a.h_row[k - 1] + j), 0, (cols - j + spread - 1) / spread, spread * ld, 1},
                         valid);
            for (int r = 0; r < R && i0 + r < rows; ++r)
                for (int q = 0; q < R && j + q * spread < cols; ++q) {
                    T& weight = g[a.weight[k] + (i0 + r) * cols + j + q * spread];
                    weight = first ? acc[r][q] : weight + acc[r][q];
                }
        }
    }

    // Every phase of the work item in order; `each(phase)` runs phase(t, nt) for all threads
    // and then waits for them (a barrier on the device, a loop on the host).
    template <class Each>
    GENGRAD_HD void run(Each&& each) const {
        const int64_t S = tiling.samples;
        double risk = 0;  // thread 0's
        for (int64_t tile = group; tile < tiling.tiles; tile += tiling.groups) {
            const int64_t m0 = tile * S;
            const int64_t valid = tiling.M - m0 < S ? tiling.M - m0 : S;
            each([&](int t, int nt) { load_inputs(m0, valid, t, nt); });
            for (int64_t k = 1; k <= a.L; ++k) each([&](int t, int nt) { forward_layer(k, t, nt); });
            each([&](int t, int nt) { loss(m0, valid, t, nt); });
            if (p.want_gradient) {
                for (int64_t k = a.L; k >= 2; --k) each([&](int t, int nt) { backward_layer(k, t, nt); });
                each([&](int t, int nt) { gradient(valid, tile == group, t, nt); });
            }
            each([&](int t, int) {
                if (t == 0)
                    for (int64_t c = 0; c < valid; ++c) risk += double(weight_of(m0 + c)) * losses[c];
            });
        }
        each([&](int t, int) {
            if (t == 0) p.risk_slots[net * tiling.groups + group] = risk;
        });
    }
};

// Item `index` (< reduce_items) of the networks' results from their groups' slots, summed in
// group order (when groups > 1); grads null: the risks only.
inline int64_t reduce_items(const Tiling& tiling, int64_t d, bool gradients) {
    return gradients ? tiling.n * d : tiling.n;  // d >= 2
}

template <class T>
GENGRAD_HD void reduce_item(const Tiling& tiling, int64_t d, const T* grad_slots, const double* risk_slots,
                            int64_t index, T* grads, double* risks) {
    const int64_t G = tiling.groups;
    if (grads && index < tiling.n * d) {
        const int64_t net = index / d, q = index % d;
        T sum = grad_slots[net * G * d + q];
        for (int64_t g = 1; g < G; ++g) sum += grad_slots[(net * G + g) * d + q];
        grads[index] = sum;
    }
    if (index < tiling.n) {
        double sum = risk_slots[index * G];
        for (int64_t g = 1; g < G; ++g) sum += risk_slots[index * G + g];
        risks[index] = sum;
    }
}

// The columns of the forward pass's output rows: l_first + ... + l_L.
GENGRAD_HD inline int64_t forward_width(const Arch& a, int64_t first) {
    int64_t width = 0;
    for (int64_t k = first; k <= a.L; ++k) width += a.widths[k];
    return width;
}

// The forward pass alone (forward, pre-activations, kink counts) of network w.net on one tile of
// samples: z^first..z^L of each sample copied to its row of the network's (M, width) block of
// `out`. The work items of n networks are networks x tiles (Tiling::forward_items).
template <class T, class Act, int R>
struct ForwardItem {
    WorkItem<T, Act, R> w;
    int64_t first;
    T* out;  // (n, M, forward_width(a, first))

    template <class Each>
    GENGRAD_HD void run(int64_t tile, Each&& each) const {
        const Arch& a = w.a;
        const int64_t S = w.tiling.samples, M = w.tiling.M, m0 = tile * S;
        const int64_t valid = M - m0 < S ? M - m0 : S;
        each([&](int t, int nt) { w.load_inputs(m0, valid, t, nt); });
        for (int64_t k = 1; k <= a.L; ++k) each([&](int t, int nt) { w.forward_layer(k, t, nt); });
        each([&](int t, int nt) {
            const int64_t width = forward_width(a, first);
            T* rows = out + (w.net * M + m0) * width;
            for (int64_t item = t; item < valid * width; item += nt) {
                const int64_t c = item / width;
                int64_t col = item % width, k = first;
                while (col >= a.widths[k]) col -= a.widths[k++];
                rows[item] = w.row(a.z_row[k] + col)[c];
            }
        });
    }
};

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
