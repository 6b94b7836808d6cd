// The contract between the ISA-independent code (dispatch, bindings) and the kernel builds.
//
// The kernels are compiled once per instruction set (see CMakeLists.txt); each build exports one
// IsaKernels table and the dispatcher picks the best table the running CPU supports. Everything
// that crosses this boundary is plain data, so no inline code is shared between builds that were
// compiled for different instruction sets (which would let the linker pick, say, an AVX-512 copy
// of a helper for a CPU that has only SSE2).
#pragma once
#include <cstddef>
#include <cstdint>

namespace gengrad {

enum class ActivationKind : int32_t { piecewise_linear = 0, tanh, sigmoid, softplus, gelu, silu };

// How the backward pass differentiates the activation: `exact` is the generalized derivative
// (docs/math.md §4); the others replace the activation by the approximant A_r of that family (§3).
enum class Family : int32_t { exact = 0, cubic, sine, softplus, shifted_softplus };

enum class LossKind : int32_t { squared_error = 0, cross_entropy };

// The names Python gives these codes, in code order: defined here only, and read by gengrad from
// the compiled module (bindings.cpp), so that a new code cannot be added on one side alone.
inline constexpr const char* kActivationKindNames[] = {"piecewise_linear", "tanh", "sigmoid", "softplus", "gelu",
                                                       "silu"};
inline constexpr const char* kFamilyNames[] = {"exact", "cubic", "sine", "softplus", "shifted_softplus"};
inline constexpr const char* kLossNames[] = {"squared_error", "cross_entropy"};
static_assert(sizeof(kActivationKindNames) / sizeof(kActivationKindNames[0]) == int(ActivationKind::silu) + 1);
static_assert(sizeof(kFamilyNames) / sizeof(kFamilyNames[0]) == int(Family::shifted_softplus) + 1);
static_assert(sizeof(kLossNames) / sizeof(kLossNames[0]) == int(LossKind::cross_entropy) + 1);

// The most layers L a network may have: the kernels keep per-layer pointers in fixed arrays.
constexpr int kMaxLayers = 64;

// A continuous piecewise-linear function with at most two kinks:
//   a(z) = slope[1]*clamp(z, kink[0], kink[1]) + slope[0]*min(z - kink[0], 0)
//          + slope[2]*max(z - kink[1], 0) + offset,
// with kink[1] = +inf when there is one kink. right_sided[i] selects the generalized derivative
// at kink[i]: the right derivative slope[i+1] (true) or the left one slope[i] (false).
struct PiecewiseLinearParams {
    double kink[2];
    double slope[3];
    double offset;
    int32_t n_kinks;
    bool right_sided[2];
};

struct NetSpec {
    const int64_t* widths;  // l_0, ..., l_L
    int64_t n_layers;       // L
    ActivationKind activation;
    PiecewiseLinearParams pwl;
    LossKind loss;
};

struct Approximation {
    Family family;
    double r;
};

template <class T>
struct Batch {
    const T* X;       // (M, l_0) row-major
    const T* Y;       // (M, l_L) row-major; may be null when only the forward pass runs
    const T* weight;  // (M,) masses of the empirical measure; null: 1/M each
    int64_t M;
};

// The batches of an ensemble: network i reads X + i*x_stride, Y + i*y_stride and
// weight + i*weight_stride (stride 0: data shared by all networks; weight null: 1/M each).
template <class T>
struct EnsembleBatch {
    const T* X;
    const T* Y;
    const T* weight;
    int64_t M, x_stride, y_stride, weight_stride;
};

// A frozen activation pattern (frozen.hpp; the gradient flow, cpp/flow): hidden unit j of hidden
// layer k of sample m has the affine activation h = slope z + intercept, both at index
// (l_1 + ... + l_{k-1} + j) * ld + m of their arrays. ld >= M + 64: the kernels read and write
// whole vectors of samples, past the last sample and past a column view's first one.
template <class T>
struct FrozenPattern {
    const T* slope;
    const T* intercept;
    int64_t ld;
};

template <class T>
struct KernelTable {
    // out: (M, l_first + ... + l_L) row-major: the pre-activations z^k of layers k = first..L
    // (first = L: the network outputs).
    void (*pre_activations)(const NetSpec&, const T* theta, const T* X, int64_t M, int64_t first, T* out);
    // Returns the risk; writes the gradient of the risk of the network whose activation is
    // differentiated as `approx` says into grad (length d) unless grad is null.
    double (*risk_gradient)(const NetSpec&, Approximation approx, const T* theta,
                            const Batch<T>& batch, T* grad);
    // counts: (L-1,) exact kink hits of hidden pre-activations, per hidden layer.
    void (*kink_counts)(const NetSpec&, const T* theta, const T* X, int64_t M, int64_t* counts);
    // n networks of one architecture, thetas (n, d) row-major: risks (n,) and, unless grads is
    // null, grads (n, d); each network's results are bitwise those of risk_gradient.
    void (*ensemble_risk_gradient)(const NetSpec&, Approximation approx, const T* thetas, int64_t n,
                                   const EnsembleBatch<T>& batch, double* risks, T* grads);
    // pre_activations and kink_counts of n networks (thetas (n, d)), network i reading
    // X + i * x_stride (0: X shared); out (n, M, row) and counts (n, L-1), bitwise as one at a time.
    void (*ensemble_pre_activations)(const NetSpec&, const T* thetas, int64_t n, const T* X, int64_t x_stride,
                                     int64_t M, int64_t first, T* out);
    void (*ensemble_kink_counts)(const NetSpec&, const T* thetas, int64_t n, const T* X, int64_t x_stride, int64_t M,
                                 int64_t* counts);
    // The network on a frozen pattern: returns the risk; writes its gradient into grad and,
    // unless null, the hidden pre-activations into hidden_z and dL/dh (the backward pass before
    // the pattern's slope) into hidden_g, both in the pattern's layout.
    double (*frozen_risk_gradient)(const NetSpec&, const T* theta, const Batch<T>& batch,
                                   const FrozenPattern<T>& pattern, T* grad, T* hidden_z, T* hidden_g);
    // The hidden pre-activations into hidden_z (unless null) and, unless direction is null,
    // their derivatives along direction (length d) into hidden_dz; pattern's layout.
    void (*frozen_hidden)(const NetSpec&, const T* theta, const T* direction, const T* X, int64_t M,
                          const FrozenPattern<T>& pattern, T* hidden_z, T* hidden_dz);
    // grad (the parameters of layers 1..k) = the gradient of the pre-activation z^k_j of the one
    // sample x (length l_0), whose pattern is column 0 of `pattern`; 1 <= k < L.
    void (*frozen_unit_gradient)(const NetSpec&, const T* theta, const T* x, const FrozenPattern<T>& pattern,
                                 int64_t k, int64_t j, T* grad);
};

struct IsaKernels {
    const char* isa;
    KernelTable<float> f32;
    KernelTable<double> f64;
};

// Implemented once, in dispatch.cpp, and called by the kernels.
// A 64-byte aligned scratch buffer owned by the calling thread, grown on demand and reused
// across calls, so the hot path does not allocate.
void* thread_workspace(std::size_t bytes);
// Whether each worker of a call's chunk loops reads its own copy of the weight panels
// (cpu/mlp.hpp) or all read one. Measured on one 2-core machine of each vendor
// (docs/performance.md): a copy each saved 6 % of the wide float32 gradient on an Intel Xeon;
// on AMD Zen 4 one shared copy saved 2-5 % of the wide gradients (alternating in one process),
// the second copy's packing and cache footprint costing more than it saved there, and was
// level where the panels fit in L2. Two machines are all the default (shared on AMD) rests on.
bool weight_panels_per_worker();

}  // namespace gengrad
