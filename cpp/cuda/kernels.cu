// The CUDA kernels and their host-side drivers: the fused network kernel of fused.hpp for
// networks whose tile fits in shared memory, the layer-by-layer steps of layered.hpp for the
// others; launched on the device, or run on the CPU (emulate = true: the same code, thread after
// thread or item after item, which is how the kernels' arithmetic is tested without a GPU).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fused.hpp"
#include "layered.hpp"
#include "launch.hpp"

namespace gengrad {
namespace cuda {

using namespace GENGRAD_ISA_NS;

namespace {

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

// The launch checks: errors of the launch itself, then of the kernel's execution.
void check_launch(const char* kernel) {
    check(cudaGetLastError(), kernel);
    check(cudaStreamSynchronize(0), kernel);
}

// The architecture is read by every phase of every thread: kept in shared memory instead of the
// parameter space, whose address a reference would take (forcing a per-thread local copy).
__device__ const Arch& shared_arch(const Arch& a) {
    __shared__ Arch copy;
    const auto* src = reinterpret_cast<const int64_t*>(&a);
    auto* dst = reinterpret_cast<int64_t*>(&copy);
    static_assert(sizeof(Arch) % sizeof(int64_t) == 0, "Arch is copied as int64 words");
    for (int i = threadIdx.x; i < int(sizeof(Arch) / sizeof(int64_t)); i += blockDim.x) dst[i] = src[i];
    __syncthreads();
    return copy;
}

// Where a block keeps its scratch and the network's parameters: placement changes no result,
// only speed, so it may depend on the device.
struct Placement {
    bool scratch_shared, theta_shared;
    std::size_t shared_bytes;  // dynamic shared memory per block
};

template <class T>
Placement place(const Arch& a, const Tiling& tiling, int device) {
    int limit = 0;
    check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "shared memory limit");
    const std::size_t budget = std::size_t(limit) - sizeof(Arch);
    const std::size_t losses = Tiling::kMaxSamples * sizeof(double);
    const std::size_t scratch = std::size_t(tiling.scratch_elements(a)) * sizeof(T);
    const std::size_t theta = std::size_t(a.d) * sizeof(T);
    Placement p{losses + scratch <= budget, false, losses};
    if (p.scratch_shared) p.shared_bytes += scratch;
    p.theta_shared = p.shared_bytes + theta <= budget;
    if (p.theta_shared) p.shared_bytes += theta;
    return p;
}

// Runs a work item's phases on the device: all threads of the block, then a barrier.
struct DeviceEach {
    template <class Phase>
    __device__ void operator()(const Phase& phase) const {
        phase(int(threadIdx.x), int(blockDim.x));
        __syncthreads();
    }
};

// The same phases on the host: one thread after the other. No phase reads what another thread
// of the same phase writes (fused.hpp), so this is the device's arithmetic exactly, whatever
// order the device's threads run in; `reversed` runs them last to first, which changes results
// where that claim fails (set_emulation_reversed). (Host and device, like the WorkItem::run
// that calls it, only so that nvcc need not warn about a host function called from host/device
// code; it runs on the host.)
struct HostEach {
    bool reversed;
    template <class Phase>
    __host__ __device__ void operator()(const Phase& phase) const {
        for (int i = 0; i < Tiling::kThreads; ++i) phase(reversed ? Tiling::kThreads - 1 - i : i, Tiling::kThreads);
    }
};

// The block's memory: losses, then the scratch and the parameters where they are shared.
template <class T>
struct BlockMemory {
    double* losses;
    T* scratch;
    T* theta;  // null: read the parameters from global memory
};

template <class T>
__device__ BlockMemory<T> block_memory(unsigned char* shared, const Placement& place, int64_t scratch_elements,
                                       T* scratch_global) {
    BlockMemory<T> m{reinterpret_cast<double*>(shared), nullptr, nullptr};
    T* next = reinterpret_cast<T*>(shared + Tiling::kMaxSamples * sizeof(double));
    if (place.scratch_shared) {
        m.scratch = next;
        next += scratch_elements;
    } else {
        m.scratch = scratch_global + int64_t(blockIdx.x) * scratch_elements;
    }
    if (place.theta_shared) m.theta = next;
    return m;
}

template <class T>
__device__ const T* staged(const T* theta, int64_t d, T* shared) {
    if (!shared) return theta;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) shared[i] = theta[i];
    __syncthreads();
    return shared;
}

template <class T, class Act, int R>
__global__ void __launch_bounds__(Tiling::kThreads)
risk_gradient_kernel(const Arch arch, const Act act, const Tiling tiling, const Problem<T> p, const Placement place,
                     T* scratch_global) {
    extern __shared__ __align__(16) unsigned char shared[];
    const Arch& a = shared_arch(arch);
    const BlockMemory<T> mem = block_memory<T>(shared, place, tiling.scratch_elements(a), scratch_global);
    for (int64_t item = blockIdx.x; item < tiling.work_items(); item += gridDim.x) {
        const int64_t net = item / tiling.groups;
        const T* theta = staged(p.thetas + net * a.d, a.d, mem.theta);
        const WorkItem<T, Act, R> w{a, act, tiling, p, net, item % tiling.groups, theta, mem.scratch, mem.losses};
        w.run(DeviceEach{});
    }
}

// Work items: networks x tiles. A block restages the parameters only when its next item is
// another network's (for one network, once).
template <class T, class Act, int R>
__global__ void __launch_bounds__(Tiling::kThreads)
forward_kernel(const Arch arch, const Act act, const Tiling tiling, const Problem<T> p, const Placement place,
               T* scratch_global, int64_t first, T* out) {
    extern __shared__ __align__(16) unsigned char shared[];
    const Arch& a = shared_arch(arch);
    const BlockMemory<T> mem = block_memory<T>(shared, place, tiling.scratch_elements(a), scratch_global);
    const T* theta = nullptr;
    int64_t staged_net = -1;
    for (int64_t item = blockIdx.x; item < tiling.forward_items(); item += gridDim.x) {
        const int64_t net = item / tiling.tiles;
        if (net != staged_net) {
            theta = staged(p.thetas + net * a.d, a.d, mem.theta);
            staged_net = net;
        }
        const ForwardItem<T, Act, R> f{{a, act, tiling, p, net, 0, theta, mem.scratch, mem.losses}, first, out};
        f.run(item % tiling.tiles, DeviceEach{});
    }
}

template <class T>
__global__ void reduce_kernel(const Tiling tiling, int64_t d, int64_t count, const T* grad_slots,
                              const double* risk_slots, T* grads, double* risks) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
        reduce_item(tiling, d, grad_slots, risk_slots, i, grads, risks);
}

template <class T>
struct ScanTargets {
    ScanTarget<T> target[kMaxScanTargets];
};

// Target blockIdx.y, grid-stride over its elements.
template <class T>
__global__ void first_bad_kernel(const ScanTargets<T> targets, unsigned long long* first) {
    const ScanTarget<T> t = targets.target[blockIdx.y];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n; i += int64_t(gridDim.x) * blockDim.x)
        if (!isfinite(t.p[i]) || (t.negative_too && t.p[i] < 0))
            atomicMin(first + blockIdx.y, static_cast<unsigned long long>(i));
}

// The scratch budget of the layered path's chunks and of kink_counts' batches (set_chunk_elements).
std::atomic<int64_t> g_chunk_elements{kChunkElements};

// The emulation's order of threads and items (set_emulation_reversed).
std::atomic<bool> g_emulation_reversed{false};

// The fused kernel's register tiles (WorkItem's R; set_register_tiles).
std::atomic<bool> g_register_tiles{true};

// Calls f(std::integral_constant<int, R>{}) with the fused kernel's R.
template <class F>
void with_register_tile(F&& f) {
    if (g_register_tiles) f(std::integral_constant<int, kTile>{});
    else f(std::integral_constant<int, 1>{});
}

// The layered path's launches: one thread per item, a grid-stride loop over the items.
template <class Step>
__global__ void items_kernel(const Step step, int64_t count) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
        step(i);
}

struct DeviceRun {
    template <class Step>
    void operator()(const Step& step) const {
        const int64_t count = step.count();
        if (count == 0) return;
        const int64_t threads = 128, blocks = std::min<int64_t>((count + threads - 1) / threads, int64_t(1) << 20);
        items_kernel<Step><<<unsigned(blocks), unsigned(threads)>>>(step, count);
        check(cudaGetLastError(), "items_kernel");
    }
};

// Items are independent within a step (each writes its own outputs), so any order computes
// what the device does; `reversed` runs them last to first, as HostEach does.
struct HostRun {
    bool reversed;
    template <class Step>
    void operator()(const Step& step) const {
        const int64_t count = step.count();
        for (int64_t i = 0; i < count; ++i) step(reversed ? count - 1 - i : i);
    }
};

// Device memory released at the end of the scope (device_alloc).
template <class T>
struct Scratch {
    T* p = nullptr;
    explicit Scratch(std::size_t count) : p(static_cast<T*>(device_alloc(count * sizeof(T)))) {}
    ~Scratch() { device_free(p); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

// Blocks to launch a fused kernel with `shared_bytes` of dynamic shared memory: enough to fill
// the device, at most one per work item. Any number gives the same results (each work item is
// computed by one block, whichever). Raising the kernel's shared-memory limit and asking its
// occupancy are driver calls of microseconds each, against a narrow net's tens per call: done
// once per kernel and device (the limit only ever raised), and once per size.
template <class Kernel>
int64_t launch_blocks(Kernel kernel, std::size_t shared_bytes, int64_t work_items) {
    struct Known {
        std::size_t shared_limit = 0;
        std::map<std::size_t, int64_t> filling;  // shared bytes -> blocks that fill the device
    };
    static std::mutex mutex;
    static std::map<std::pair<const void*, int>, Known> known;  // (kernel, device)
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    std::lock_guard<std::mutex> lock(mutex);
    Known& k = known[{reinterpret_cast<const void*>(kernel), device}];
    if (shared_bytes > k.shared_limit) {
        check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes)),
              "shared memory size");
        k.shared_limit = shared_bytes;
    }
    auto found = k.filling.find(shared_bytes);
    if (found == k.filling.end()) {
        int sms = 0, per_sm = 0;
        check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
        check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Tiling::kThreads, shared_bytes),
              "occupancy");
        found = k.filling.emplace(shared_bytes, int64_t(sms) * std::max(per_sm, 1)).first;
    }
    return std::max<int64_t>(1, std::min<int64_t>(work_items, found->second));
}

template <int R, class T, class Act>
void risk_gradient_device(const Arch& a, const Act& act, const Tiling& tiling, Problem<T> p, double* risks, T* grads) {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    const Placement pl = place<T>(a, tiling, device);
    const bool reduce = tiling.groups > 1;
    Scratch<T> grad_slots(reduce && grads ? std::size_t(tiling.work_items() * a.d) : 0);
    Scratch<double> risk_slots(reduce ? std::size_t(tiling.work_items()) : 0);
    p.grad_slots = reduce ? grad_slots.p : grads;
    p.risk_slots = reduce ? risk_slots.p : risks;
    auto kernel = risk_gradient_kernel<T, Act, R>;
    const int64_t blocks = launch_blocks(kernel, pl.shared_bytes, tiling.work_items());
    Scratch<T> scratch(pl.scratch_shared ? 0 : std::size_t(blocks * tiling.scratch_elements(a)));
    kernel<<<unsigned(blocks), Tiling::kThreads, pl.shared_bytes>>>(a, act, tiling, p, pl, scratch.p);
    // The reduction follows in stream order: one wait for both kernels (each wait is a round
    // trip to the device, several microseconds of a narrow net's tens).
    check(cudaGetLastError(), "risk_gradient_kernel");
    if (reduce) {
        const int64_t count = reduce_items(tiling, a.d, grads != nullptr);
        const int64_t threads = 256, reduce_blocks = std::min<int64_t>((count + threads - 1) / threads, 65535);
        reduce_kernel<T><<<unsigned(reduce_blocks), unsigned(threads)>>>(tiling, a.d, count, grad_slots.p,
                                                                         risk_slots.p, grads, risks);
    }
    check_launch(reduce ? "risk_gradient_kernel and reduce_kernel" : "risk_gradient_kernel");
}

template <int R, class T, class Act>
void risk_gradient_host(const Arch& a, const Act& act, const Tiling& tiling, Problem<T> p, double* risks, T* grads) {
    const bool reduce = tiling.groups > 1;
    std::vector<T> grad_slots(reduce && grads ? std::size_t(tiling.work_items() * a.d) : 0);
    std::vector<double> risk_slots(reduce ? std::size_t(tiling.work_items()) : 0);
    p.grad_slots = reduce ? grad_slots.data() : grads;
    p.risk_slots = reduce ? risk_slots.data() : risks;
    std::vector<T> scratch(std::size_t(tiling.scratch_elements(a)));
    std::vector<double> losses(Tiling::kMaxSamples);
    for (int64_t item = 0; item < tiling.work_items(); ++item) {
        const int64_t net = item / tiling.groups;
        const WorkItem<T, Act, R> w{a, act, tiling, p, net, item % tiling.groups, p.thetas + net * a.d,
                                    scratch.data(), losses.data()};
        w.run(HostEach{g_emulation_reversed});
    }
    if (reduce)
        for (int64_t i = 0; i < reduce_items(tiling, a.d, grads != nullptr); ++i)
            reduce_item(tiling, a.d, grad_slots.data(), risk_slots.data(), i, grads, risks);
}

// Network after network, chunk after chunk, step after step (on the device: in stream order).
template <class T, class Act, class Run>
void layered_risk_gradient(const Arch& a, const Act& act, const Chunking& ch, const T* thetas, int64_t n,
                           const EnsembleBatch<T>& b, double* risks, T* grads, T* Z, double* losses, const Run& run) {
    for (int64_t net = 0; net < n; ++net)
        for (int64_t i = 0; i < ch.chunks; ++i) {
            const int64_t m0 = i * ch.chunk;
            const Layered<T, Act> s{act, a.loss, b.M, ch.ld, a.widths[0], a.widths[a.L], a.z_row[a.L],
                                    thetas + net * a.d, b.X + net * b.x_stride, b.Y + net * b.y_stride,
                                    b.weight ? b.weight + net * b.weight_stride : nullptr, Z, losses,
                                    grads ? grads + net * a.d : nullptr, risks + net, m0,
                                    std::min(ch.chunk, b.M - m0), i == 0};
            layered_chunk(a, s, run);
        }
}

template <class T, class Act>
void layered_risk_gradient(const Arch& a, const Act& act, const T* thetas, int64_t n, const EnsembleBatch<T>& b,
                           double* risks, T* grads, bool emulate) {
    const Chunking ch = Chunking::make(a, b.M, g_chunk_elements);
    const std::size_t scratch = std::size_t(a.rows * ch.ld);
    if (emulate) {
        std::vector<T> Z(scratch);
        std::vector<double> losses(std::size_t(ch.chunk));
        layered_risk_gradient(a, act, ch, thetas, n, b, risks, grads, Z.data(), losses.data(), HostRun{g_emulation_reversed});
        return;
    }
    Scratch<T> Z(scratch);
    Scratch<double> losses(std::size_t(ch.chunk));
    layered_risk_gradient(a, act, ch, thetas, n, b, risks, grads, Z.p, losses.p, DeviceRun{});
    check_launch("layered steps");
}

// Network after network, chunk after chunk (on the device: in stream order).
template <class T, class Act, class Run>
void layered_pre_activations(const Arch& a, const Act& act, const Chunking& ch, const T* thetas, int64_t n,
                             const EnsembleBatch<T>& b, int64_t first, T* out, T* Z, const Run& run) {
    const int64_t width = forward_width(a, first);
    for (int64_t net = 0; net < n; ++net)
        for (int64_t i = 0; i < ch.chunks; ++i) {
            const int64_t m0 = i * ch.chunk;
            const Layered<T, Act> s{act, a.loss, b.M, ch.ld, a.widths[0], a.widths[a.L], a.z_row[a.L],
                                    thetas + net * a.d, b.X + net * b.x_stride, nullptr, nullptr, Z, nullptr,
                                    nullptr, nullptr, m0, std::min(ch.chunk, b.M - m0), i == 0};
            layered_forward_chunk(a, s, first, out + net * b.M * width, run);
        }
}

template <class T, class Act>
void layered_pre_activations(const Arch& a, const Act& act, const T* thetas, int64_t n, const EnsembleBatch<T>& b,
                             int64_t first, T* out, bool emulate) {
    const Chunking ch = Chunking::make(a, b.M, g_chunk_elements);
    const std::size_t scratch = std::size_t(a.rows * ch.ld);
    if (emulate) {
        std::vector<T> Z(scratch);
        layered_pre_activations(a, act, ch, thetas, n, b, first, out, Z.data(), HostRun{g_emulation_reversed});
        return;
    }
    Scratch<T> Z(scratch);
    layered_pre_activations(a, act, ch, thetas, n, b, first, out, Z.p, DeviceRun{});
    check_launch("layered forward steps");
}

template <int R, class T, class Act>
void fused_pre_activations(const Arch& a, const Act& act, const T* thetas, int64_t n, const EnsembleBatch<T>& b,
                         int64_t first, T* out, bool emulate) {
    const Tiling tiling = Tiling::make(a, sizeof(T), n, b.M);
    const Problem<T> p{thetas, b, false, nullptr, nullptr};
    if (emulate) {
        std::vector<T> scratch(std::size_t(tiling.scratch_elements(a)));
        std::vector<double> losses(Tiling::kMaxSamples);
        for (int64_t item = 0; item < tiling.forward_items(); ++item) {
            const int64_t net = item / tiling.tiles;
            const ForwardItem<T, Act, R> f{
                {a, act, tiling, p, net, 0, thetas + net * a.d, scratch.data(), losses.data()}, first, out};
            f.run(item % tiling.tiles, HostEach{g_emulation_reversed});
        }
        return;
    }
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    const Placement pl = place<T>(a, tiling, device);
    auto kernel = forward_kernel<T, Act, R>;
    const int64_t blocks = launch_blocks(kernel, pl.shared_bytes, tiling.forward_items());
    Scratch<T> scratch(pl.scratch_shared ? 0 : std::size_t(blocks * tiling.scratch_elements(a)));
    kernel<<<unsigned(blocks), Tiling::kThreads, pl.shared_bytes>>>(a, act, tiling, p, pl, scratch.p, first, out);
    check_launch("forward_kernel");
}

}  // namespace

int device_count(std::string& why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        why = cudaGetErrorString(status);
        cudaGetLastError();  // clear the sticky error of a failed query
        return 0;
    }
    if (count == 0) why = "no CUDA device is visible";
    return count;
}

int current_device() {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    return device;
}

std::string device_name(int device) {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    return prop.name;
}

int runtime_version() {
    int version = 0;
    cudaRuntimeGetVersion(&version);
    return version;
}

const char* architectures() { return GENGRAD_CUDA_ARCHITECTURES; }

// Stream-ordered allocations from the device's memory pool, so that repeated calls do not pay
// for cudaMalloc (nor cudaFree's wait for the device); plain cudaMalloc where the driver offers
// no pools (some virtualised or older setups), so that the backend works there too.
static bool memory_pools() {
    int device = 0, supported = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess && supported;
}

void* device_alloc(std::size_t bytes) {
    void* p = nullptr;
    if (!bytes) return p;
    if (memory_pools()) check(cudaMallocAsync(&p, bytes, 0), "cudaMallocAsync");
    else check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
}

void device_free(void* p) noexcept {
    if (!p) return;
    if (memory_pools()) cudaFreeAsync(p, 0);
    else cudaFree(p);
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to the device");
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to the host");
}

void copy_on_device(void* dst, const void* src, std::size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy on the device");
}

void set_chunk_elements(int64_t elements) { g_chunk_elements = elements > 0 ? elements : kChunkElements; }

void set_emulation_reversed(bool reversed) { g_emulation_reversed = reversed; }

void set_register_tiles(bool on) { g_register_tiles = on; }

void synchronize() { check(cudaStreamSynchronize(0), "synchronize"); }

template <class T>
void first_bad(const ScanTarget<T>* targets, int count, int64_t* first) {
    if (count < 0 || count > kMaxScanTargets) throw std::invalid_argument("first_bad: at most 4 arrays at once");
    if (count == 0) return;
    ScanTargets<T> all{};
    int64_t longest = 0;
    for (int i = 0; i < count; ++i) {
        all.target[i] = targets[i];
        longest = std::max(longest, targets[i].n);
    }
    // All bits set: "none", above every index, so atomicMin keeps the first bad one.
    unsigned long long found[kMaxScanTargets];
    Scratch<unsigned long long> device_found{std::size_t(count)};
    check(cudaMemsetAsync(device_found.p, 0xff, count * sizeof(unsigned long long), 0), "scan");
    if (longest > 0) {
        const int64_t blocks = std::min<int64_t>((longest + 255) / 256, 4096);
        first_bad_kernel<T><<<dim3(unsigned(blocks), unsigned(count)), 256>>>(all, device_found.p);
        check(cudaGetLastError(), "first_bad_kernel");
    }
    // The copy waits for the kernel (same stream) and reports its errors.
    check(cudaMemcpy(found, device_found.p, count * sizeof(unsigned long long), cudaMemcpyDeviceToHost), "scan");
    for (int i = 0; i < count; ++i) first[i] = found[i] == ~0ull ? -1 : int64_t(found[i]);
}

template <class T>
void risk_gradient(const NetSpec& net, Approximation approx, const T* thetas, int64_t n,
                   const EnsembleBatch<T>& batch, double* risks, T* grads, bool emulate) {
    const Arch a = make_arch(net);
    with_activation<T>(net, approx, [&](const auto& act) {
        if (!fused_fits<T>(a)) return layered_risk_gradient(a, act, thetas, n, batch, risks, grads, emulate);
        const Tiling tiling = Tiling::make(a, sizeof(T), n, batch.M);
        const Problem<T> p{thetas, batch, grads != nullptr, nullptr, nullptr};
        with_register_tile([&](auto tile) {
            if (emulate) risk_gradient_host<tile()>(a, act, tiling, p, risks, grads);
            else risk_gradient_device<tile()>(a, act, tiling, p, risks, grads);
        });
    });
}

template <class T>
void pre_activations(const NetSpec& net, const T* thetas, int64_t n, const EnsembleBatch<T>& batch, int64_t first,
                     T* out, bool emulate) {
    if (n == 0 || batch.M == 0) return;
    const Arch a = make_arch(net);
    with_activation<T>(net, {Family::exact, 0.0}, [&](const auto& act) {
        if (!fused_fits<T>(a)) return layered_pre_activations(a, act, thetas, n, batch, first, out, emulate);
        with_register_tile([&](auto tile) { fused_pre_activations<tile()>(a, act, thetas, n, batch, first, out, emulate); });
    });
}

// The networks' pre-activations in batches of networks whose pre-activations stay within the
// scratch budget (set_chunk_elements), each copied to the host and counted there.
template <class T>
void kink_counts(const NetSpec& net, const T* thetas, int64_t n, const EnsembleBatch<T>& batch, int64_t* counts,
                 bool emulate) {
    const int64_t L = net.n_layers, M = batch.M;
    std::fill(counts, counts + n * (L - 1), int64_t(0));
    if (n == 0 || M == 0 || net.activation != ActivationKind::piecewise_linear || net.pwl.n_kinks == 0) return;
    const Arch a = make_arch(net);
    const int64_t row = forward_width(a, 1);
    const int64_t per_batch = std::max<int64_t>(1, std::min<int64_t>(n, g_chunk_elements / (M * row)));
    std::vector<T> Z(std::size_t(per_batch * M * row));
    Scratch<T> staging(emulate ? 0 : Z.size());
    T* dst = emulate ? Z.data() : staging.p;
    const PiecewiseLinear<T> act(net.pwl);
    for (int64_t n0 = 0; n0 < n; n0 += per_batch) {
        const int64_t nets = std::min(per_batch, n - n0);
        EnsembleBatch<T> part = batch;
        part.X += n0 * batch.x_stride;
        pre_activations(net, thetas + n0 * a.d, nets, part, 1, dst, emulate);
        if (!emulate) copy_to_host(Z.data(), dst, std::size_t(nets * M * row) * sizeof(T));
        for (int64_t i = 0; i < nets; ++i) {
            int64_t* hits = counts + (n0 + i) * (L - 1);
            for (int64_t m = 0; m < M; ++m) {
                const T* z = Z.data() + (i * M + m) * row;
                for (int64_t k = 1, col = 0; k < L; ++k)
                    for (int64_t j = 0; j < net.widths[k]; ++j) hits[k - 1] += act.is_kink(z[col++]);
            }
        }
    }
}

template void first_bad<float>(const ScanTarget<float>*, int, int64_t*);
template void first_bad<double>(const ScanTarget<double>*, int, int64_t*);
template void risk_gradient<float>(const NetSpec&, Approximation, const float*, int64_t,
                                   const EnsembleBatch<float>&, double*, float*, bool);
template void risk_gradient<double>(const NetSpec&, Approximation, const double*, int64_t,
                                    const EnsembleBatch<double>&, double*, double*, bool);
template void pre_activations<float>(const NetSpec&, const float*, int64_t, const EnsembleBatch<float>&, int64_t,
                                     float*, bool);
template void pre_activations<double>(const NetSpec&, const double*, int64_t, const EnsembleBatch<double>&, int64_t,
                                      double*, bool);
template void kink_counts<float>(const NetSpec&, const float*, int64_t, const EnsembleBatch<float>&, int64_t*, bool);
template void kink_counts<double>(const NetSpec&, const double*, int64_t, const EnsembleBatch<double>&, int64_t*,
                                  bool);

}  // namespace cuda
}  // namespace gengrad
