// Chooses the kernel build for the running CPU, and owns the per-thread workspace that the
// kernels use.
#include "gengrad/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

namespace gengrad {

#if GENGRAD_X86_KERNELS
extern const IsaKernels kernels_sse2, kernels_avx2, kernels_avx512;
#else
extern const IsaKernels kernels_portable;
#endif

namespace {

bool cpu_supports(const IsaKernels& k) {
#if GENGRAD_X86_KERNELS
    __builtin_cpu_init();
    if (&k == &kernels_avx512) return __builtin_cpu_supports("x86-64-v4");
    if (&k == &kernels_avx2) return __builtin_cpu_supports("x86-64-v3");
#endif
    (void)k;
    return true;
}

const IsaKernels* best_supported() {
    const IsaKernels* best = nullptr;
    for (const IsaKernels* k : all_kernels())
        if (cpu_supports(*k)) best = k;
    return best;
}

// GENGRAD_ISA with the blanks around it dropped (GENGRAD_NUM_THREADS is read so too); false if
// it is unset or empty.
bool isa_from_environment(std::string& isa) {
    const char* text = std::getenv("GENGRAD_ISA");
    if (!text || !*text) return false;
    const auto blank = [](char c) { return c == ' ' || c == '\t'; };
    isa = text;
    while (!isa.empty() && blank(isa.back())) isa.pop_back();
    size_t first = 0;
    while (first < isa.size() && blank(isa[first])) ++first;
    isa.erase(0, first);
    return true;
}

const IsaKernels* initial_kernels() {
    if (std::string forced; isa_from_environment(forced)) {
        try {
            return &select_kernels(forced);
        } catch (const std::exception&) {
            // Nothing may throw while the library loads: the import fails afterwards, naming the
            // variable (check_isa_environment).
        }
    }
    return best_supported();
}

std::atomic<const IsaKernels*> g_kernels{initial_kernels()};

bool per_worker_panels_pay() {
#if GENGRAD_X86_KERNELS
    __builtin_cpu_init();
    return !__builtin_cpu_is("amd");
#else
    return true;
#endif
}
std::atomic<bool> g_weight_panels_per_worker{per_worker_panels_pay()};
std::string weight_panel_policy_name(bool per_worker) { return per_worker ? "per_worker" : "shared"; }

struct AlignedFree {
    void operator()(void* p) const { std::free(p); }
};

}  // namespace

std::vector<const IsaKernels*> all_kernels() {
#if GENGRAD_X86_KERNELS
    return {&kernels_sse2, &kernels_avx2, &kernels_avx512};
#else
    return {&kernels_portable};
#endif
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> names;
    for (const IsaKernels* k : all_kernels())
        if (cpu_supports(*k)) names.emplace_back(k->isa);
    return names;
}

const IsaKernels& kernels() { return *g_kernels.load(std::memory_order_relaxed); }

void check_isa_environment() {
    std::string forced;
    if (!isa_from_environment(forced)) return;
    try {
        select_kernels(forced);
    } catch (const std::invalid_argument& error) {
        throw std::invalid_argument("GENGRAD_ISA='" + std::string(std::getenv("GENGRAD_ISA")) + "': " + error.what());
    }
}

const IsaKernels& select_kernels(const std::string& isa) {
    if (isa == "auto") {
        g_kernels = best_supported();
        return kernels();
    }
    for (const IsaKernels* k : all_kernels()) {
        if (isa != k->isa) continue;
        if (!cpu_supports(*k)) throw std::invalid_argument("isa '" + isa + "' is not supported by this CPU");
        g_kernels = k;
        return *k;
    }
    std::string known;
    for (const IsaKernels* k : all_kernels()) known += std::string(known.empty() ? "" : ", ") + k->isa;
    throw std::invalid_argument("unknown isa '" + isa + "'; expected 'auto' or one of " + known);
}

std::string select_weight_panels(const std::string& policy) {
    if (policy != "auto" && policy != "shared" && policy != "per_worker")
        throw std::invalid_argument("unknown weight panel policy '" + policy + "'; expected 'auto', 'shared' or 'per_worker'");
    const bool per_worker = policy == "auto" ? per_worker_panels_pay() : policy == "per_worker";
    g_weight_panels_per_worker = per_worker;
    return weight_panel_policy_name(per_worker);  // what this call set, whatever another thread sets
}

bool weight_panels_per_worker() { return g_weight_panels_per_worker.load(std::memory_order_relaxed); }

std::string weight_panel_policy() { return weight_panel_policy_name(weight_panels_per_worker()); }

namespace {
std::atomic<std::size_t> g_workspace_bytes{0};

// Frees a thread's buffer when the thread ends and keeps the process total up to date.
struct ThreadWorkspace {
    std::unique_ptr<void, AlignedFree> buffer;
    std::size_t capacity = 0;
    void resize(std::size_t bytes) {
        buffer.reset();
        g_workspace_bytes -= capacity;
        capacity = 0;
        if (bytes == 0) return;
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        buffer.reset(p);
        capacity = bytes;
        g_workspace_bytes += capacity;
    }
    ~ThreadWorkspace() { resize(0); }
};
thread_local ThreadWorkspace t_workspace;
}  // namespace

void* thread_workspace(std::size_t bytes) {
    if (bytes > t_workspace.capacity) t_workspace.resize((bytes + 63) / 64 * 64);
    return t_workspace.buffer.get();
}

std::size_t workspace_bytes() { return g_workspace_bytes.load(); }

}  // namespace gengrad
