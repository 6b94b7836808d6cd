// The interface of the CUDA kernels (kernels.cu) to the bindings (bindings.cpp): plain data and
// raw pointers, so that the bindings compile with the host compiler alone and no CUDA header
// reaches them. Every function throws std::runtime_error with CUDA's message when a call fails.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "gengrad/contract.hpp"

namespace gengrad {
namespace cuda {

// The number of usable devices; 0 with `why` set when there is none (no driver, no device, ...).
int device_count(std::string& why);
int current_device();
std::string device_name(int device);
int runtime_version();
// The architectures the kernels were compiled for, e.g. "sm_90 compute_90".
const char* architectures();

void* device_alloc(std::size_t bytes);
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
void copy_on_device(void* dst, const void* src, std::size_t bytes);
// Waits for everything gengrad queued (on the legacy default stream).
void synchronize();

// The samples per chunk of the layer-by-layer path, and the networks per batch of kink_counts,
// follow from a budget of scratch elements (default kChunkElements in layered.hpp; 0 restores
// it). For tests: several chunks or batches on small problems. Changes the order of summation of
// the layered risk and gradient, hence results by rounding (pre-activations and counts not).
void set_chunk_elements(int64_t elements);

// The host emulation runs a phase's threads, and a step's items, last to first instead of first
// to last. For tests: the results must not change (bitwise), since the device promises no order.
void set_emulation_reversed(bool reversed);

// Whether the fused kernel's threads take register tiles of a layer's products or one output
// each (WorkItem's R in fused.hpp; default on). Results are the same bits either way; for tests,
// and for bench/cuda.py to time both.
void set_register_tiles(bool on);

// An array to scan: the first flat index in p[0..n) holding NaN or Inf, or a negative value when
// `negative_too`.
template <class T>
struct ScanTarget {
    const T* p;
    int64_t n;
    bool negative_too;
};
constexpr int kMaxScanTargets = 4;  // a call's inputs: theta(s), X, Y, sample_weight

// first[i] for targets[i] in device memory, -1 where none (count <= kMaxScanTargets): all of a
// call's inputs in one launch and one copy back, since each wait for the device costs several
// microseconds of a narrow net's tens.
template <class T>
void first_bad(const ScanTarget<T>* targets, int count, int64_t* first);

// Risks (n,) and, when grads is not null, gradients (n, d) of n networks with parameters
// thetas (n, d): EnsembleBatch's conventions, every pointer in device memory; or, with
// `emulate`, every pointer in host memory and the kernels' phases run on the CPU.
template <class T>
void risk_gradient(const NetSpec& net, Approximation approx, const T* thetas, int64_t n,
                   const EnsembleBatch<T>& batch, double* risks, T* grads, bool emulate);

// The pre-activations z^first..z^L of n networks with parameters thetas (n, d) at the M rows
// of batch.X (shared when batch.x_stride = 0; Y and the weights are not read), into out
// (n, M, l_first + ... + l_L): network-major, then sample-major. One launch for all networks on
// the fused path; pointers as for risk_gradient.
template <class T>
void pre_activations(const NetSpec& net, const T* thetas, int64_t n, const EnsembleBatch<T>& batch, int64_t first,
                     T* out, bool emulate);

// Exact kink hits of each network per hidden layer into counts (n, L - 1), host memory: the
// pre-activations above, counted on the host.
template <class T>
void kink_counts(const NetSpec& net, const T* thetas, int64_t n, const EnsembleBatch<T>& batch, int64_t* counts,
                 bool emulate);

}  // namespace cuda
}  // namespace gengrad
