// The thread runtime (gengrad/parallel.hpp).
//
// Measured on a 2-core machine with another process spinning on one core: OpenMP's static
// schedule and barrier made two threads 2-7x slower than one, because half of the work waited
// for a thread that had no core. Here the tasks are claimed one by one and the caller works too.
#include "gengrad/parallel.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace gengrad {

namespace {

// How long an idle helper spins before it sleeps: calls that follow each other closely (a
// training loop, the steps of a flow) find it awake, and an idle process stops using the CPU
// after this long. On a 2-core machine this made two threads 15 % faster than one on calls of
// 0.2 ms, when the cores are ours.
constexpr auto kSpin = std::chrono::microseconds(50);

// When they are not, the spinning costs more than it brings: beside one process spinning on a
// core the same calls took 1.4x as long on two threads as on one, and 1.0-1.08x when the
// helpers slept at once. The sign is the scheduler's: the pool's threads are preempted
// (involuntary context switches, per thread) about 700 times a second beside the busy process
// and 10-20 times a second without it, in bursts of at most 4-5 within 20 ms. A thread that sees
// kBusyPreemptions within kBusyWindow stops the helpers' spinning for kBusyHold; while the
// neighbour stays, the preemptions go on and the hold is renewed.
constexpr int kBusyPreemptions = 8;
constexpr auto kBusyWindow = std::chrono::milliseconds(20);
constexpr auto kBusyHold = std::chrono::milliseconds(400);

std::atomic<std::chrono::steady_clock::rep> g_spin_resumes{0};  // steady_clock ticks

bool spinning_pays() {
    return std::chrono::steady_clock::now().time_since_epoch().count() >= g_spin_resumes.load(std::memory_order_relaxed);
}

// Called by each thread of a pooled job after its tasks.
void watch_preemptions() {
    thread_local long seen = -1;  // the first call only takes the count: earlier ones are not ours
    thread_local int in_window = 0;
    thread_local std::chrono::steady_clock::time_point window_start, seen_at;
    struct rusage usage;
    if (getrusage(RUSAGE_THREAD, &usage) != 0) return;
    const auto now = std::chrono::steady_clock::now();
    // Only preemptions since a call within the window count: 9 over 3 s of serial work between
    // two calls fired the hold on a quiet machine (an independent review); a forked child's
    // count starts again below its parent's.
    const bool counts = seen >= 0 && usage.ru_nivcsw >= seen && now - seen_at <= kBusyWindow;
    const long preemptions = counts ? usage.ru_nivcsw - seen : 0;
    seen = usage.ru_nivcsw;
    seen_at = now;
    if (preemptions == 0) return;
    if (now - window_start > kBusyWindow) {
        window_start = now;
        in_window = 0;
    }
    in_window += int(preemptions);
    if (in_window >= kBusyPreemptions) g_spin_resumes.store((now + kBusyHold).time_since_epoch().count());
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
}

thread_local bool t_in_task = false;
thread_local int t_limit = 0;

struct Job {
    TaskFunction body;
    void* context;
    int64_t n_tasks;
    int workers;
    IdleFunction idle;
    void* idle_context;
    std::atomic<int64_t> next_task{0};
    std::atomic<int> next_worker{1};  // slot 0 is the caller's
    std::atomic<bool> failed{false};
    std::exception_ptr error;  // written by the thread that set `failed`
};

// Loops started by the tasks run on their thread when the job has helpers (`nested_serial`); a job
// that runs alone on its caller leaves them the threads.
void work_on(Job& job, int worker, bool nested_serial) {
    const bool was_in_task = t_in_task;
    t_in_task = nested_serial;
    for (int64_t task; !job.failed.load(std::memory_order_relaxed) &&
                       (task = job.next_task.fetch_add(1, std::memory_order_relaxed)) < job.n_tasks;) {
        try {
            job.body(job.context, task, worker);
        } catch (...) {
            if (!job.failed.exchange(true)) job.error = std::current_exception();
        }
    }
    t_in_task = was_in_task;
}

class Pool {
public:
    // Runs the job with the pool's helpers, or returns false at once if another thread's job
    // holds the pool (the caller then runs its tasks alone).
    bool run(Job& job) {
        std::unique_lock<std::mutex> lock(submit_, std::try_to_lock);
        if (!lock) return false;
        job.workers = 1 + add_helpers(job.workers - 1);
        wanted_.store(job.workers - 1);
        current_.store(&job);
        epoch_.fetch_add(1);
        // Only the helpers the job wants are woken: after one call on many threads, the others
        // sleep on instead of waking for every later job.
        for (int id = 1; id < job.workers; ++id) {
            Helper& helper = helpers_[size_t(id - 1)];
            std::lock_guard<std::mutex> guard(helper.mutex);
            if (helper.asleep) helper.wake.notify_one();
        }
        work_on(job, 0, true);
        watch_preemptions();
        // Helpers that saw the job before it was withdrawn are counted in inside_; the others
        // will find current_ empty. The job lives on the caller's stack: wait for the former.
        current_.store(nullptr);
        auto idle_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
        for (int spins = 0; inside_.load() != 0; ++spins) {
            if (spins < 4096) {
                cpu_relax();
                continue;
            }
            std::this_thread::yield();
            if (job.idle && std::chrono::steady_clock::now() >= idle_at) {
                job.idle(job.idle_context);
                idle_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
            }
        }
        return true;
    }

private:
    struct Helper {
        std::mutex mutex;
        std::condition_variable wake;
        bool asleep = false;  // guarded by mutex
    };

    // Starts helpers until there are `wanted` (or the system refuses more); returns how many
    // there are, at most `wanted`.
    int add_helpers(int wanted) {
        while (int(helpers_.size()) < wanted) {
            helpers_.emplace_back();
            try {
                // The job that starts it is one epoch on: it joins that job (a thread takes ~0.1 ms
                // to start, and a helper that read the epoch itself missed the job, which kept a
                // flow ensemble of 1000 networks on one thread for its whole 14 s).
                std::thread(&Pool::helper_loop, this, &helpers_.back(), int(helpers_.size()), epoch_.load()).detach();
            } catch (const std::system_error&) {
                helpers_.pop_back();
                break;
            }
        }
        const int have = int(helpers_.size());
        return have < wanted ? have : wanted;
    }

    // Helper `id` (1, 2, ...) joins the jobs that want at least id helpers. After a job it spins
    // a while for the next one, then sleeps until a job that wants it wakes it.
    void helper_loop(Helper* helper, int id, uint64_t seen) {
        Helper& self = *helper;  // not helpers_[id - 1]: the caller may be growing the deque
        const auto wanted = [&] { return epoch_.load() != seen && id <= wanted_.load(); };
        for (bool spin = spinning_pays();; spin = spinning_pays()) {
            const auto start = std::chrono::steady_clock::now();
            for (int spins = 1; spin && epoch_.load(std::memory_order_acquire) == seen; ++spins) {
                if (spins % 64 == 0 && std::chrono::steady_clock::now() - start > kSpin) spin = false;
                cpu_relax();
            }
            if (!wanted()) {
                std::unique_lock<std::mutex> lock(self.mutex);
                self.asleep = true;
                self.wake.wait(lock, wanted);
                self.asleep = false;
            }
            seen = epoch_.load();
            inside_.fetch_add(1);
            if (Job* job = current_.load()) {
                const int worker = job->next_worker.fetch_add(1);
                if (worker < job->workers) {
                    work_on(*job, worker, true);
                    watch_preemptions();
                }
            }
            inside_.fetch_sub(1);
        }
    }

    std::mutex submit_;             // one job at a time
    std::deque<Helper> helpers_;    // grown under submit_; elements never move
    std::atomic<Job*> current_{nullptr};
    std::atomic<int> wanted_{0};    // helpers the current job can use
    std::atomic<int> inside_{0};
    std::atomic<uint64_t> epoch_{0};
};

// Never freed: detached helpers use it until the process ends. A forked child gets a new one
// (its copy of the old one has locks that threads of the parent may have held, and no helpers).
std::atomic<Pool*> g_pool{nullptr};

Pool& pool() {
    Pool* current = g_pool.load();
    if (current) return *current;
    Pool* fresh = new Pool;
    if (g_pool.compare_exchange_strong(current, fresh)) return *fresh;
    delete fresh;  // another thread made one first; this one has no helpers yet
    return *current;
}

[[maybe_unused]] const int g_atfork_registered = pthread_atfork(nullptr, nullptr, [] { g_pool.store(nullptr); });

int available_cpus() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? int(n) : 1;
}

std::string out_of_range(const std::string& what) {
    return what + ": expected an integer from 1 to " + std::to_string(kMaxThreads);
}

int default_threads() {
    const int from_environment = threads_from_environment();
    if (from_environment > 0) return from_environment;
    const int cpus = available_cpus();
    return cpus < kMaxThreads ? cpus : kMaxThreads;
}

std::atomic<int> g_threads{0};  // 0: not read yet (the environment is read on first use)

}  // namespace

int threads_from_environment() {
    const char* text = std::getenv("GENGRAD_NUM_THREADS");
    if (!text || !*text) return 0;
    errno = 0;
    char* end = nullptr;
    const long long n = std::strtoll(text, &end, 10);
    while (*end == ' ' || *end == '\t') ++end;  // as strtoll skips leading blanks
    if (errno != 0 || end == text || *end != '\0' || n < 1 || n > kMaxThreads)
        throw std::invalid_argument(out_of_range("GENGRAD_NUM_THREADS='" + std::string(text) + "'"));
    return int(n);
}

int num_threads() {
    int n = g_threads.load(std::memory_order_relaxed);
    if (n == 0) {
        int unset = 0;
        int chosen;
        try {
            chosen = default_threads();
        } catch (const std::invalid_argument&) {
            chosen = 1;  // reported at import; never a throw from inside a kernel
        }
        g_threads.compare_exchange_strong(unset, chosen);
        n = g_threads.load(std::memory_order_relaxed);
    }
    return n;
}

void set_num_threads(int n) {
    if (n < 1 || n > kMaxThreads) throw std::invalid_argument(out_of_range("n = " + std::to_string(n)));
    g_threads.store(n, std::memory_order_relaxed);
}

void set_thread_limit(int n) {
    if (n < 0 || n > kMaxThreads) throw std::invalid_argument(out_of_range("limit = " + std::to_string(n)) + " (or 0: none)");
    t_limit = n;
}

int thread_limit() { return t_limit; }

int call_threads() {
    if (t_in_task) return 1;
    const int n = num_threads();
    return t_limit > 0 && t_limit < n ? t_limit : n;
}

void run_tasks(int64_t n_tasks, int threads, TaskFunction body, void* context, IdleFunction idle,
               void* idle_context) {
    if (n_tasks <= 0) return;
    Job job{body, context, n_tasks, int(threads < n_tasks ? threads : n_tasks), idle, idle_context};
    if (job.workers <= 1 || !pool().run(job)) work_on(job, 0, false);
    if (job.error) std::rethrow_exception(job.error);
}

}  // namespace gengrad

// For threadpoolctl (gengrad/_threadpoolctl.py), which finds the library by these names and calls
// them through ctypes: no C++ exception may leave, so a count out of range is clamped.
extern "C" __attribute__((visibility("default"))) int gengrad_get_num_threads() { return gengrad::num_threads(); }
extern "C" __attribute__((visibility("default"))) void gengrad_set_num_threads(int n) {
    gengrad::set_num_threads(n < 1 ? 1 : n > gengrad::kMaxThreads ? gengrad::kMaxThreads : n);
}
