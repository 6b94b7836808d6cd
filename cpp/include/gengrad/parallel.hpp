// The core's thread runtime (cpp/cpu/parallel.cpp): one pool of helper threads per process.
//
// A parallel loop hands out its tasks one at a time from a shared counter, and the calling
// thread takes tasks too; so when the cores are shared with other processes, a helper that is
// not scheduled just takes fewer tasks, and nobody waits at a barrier for a thread that never
// started. The caller waits only for tasks already begun. Which thread runs a task never
// changes a result: every task writes its own outputs.
//
// Every call reads the thread count once (call_threads) and sizes its scratch with it, so
// set_num_threads may run on any thread at any time. The pool is made again, lazily, in a forked
// child (whose copy has no helper threads). A loop started inside a task runs on its thread.
#pragma once
#include <cstdint>
#include <type_traits>

namespace gengrad {

// The most threads set_num_threads and GENGRAD_NUM_THREADS accept.
constexpr int kMaxThreads = 1024;

// The number of threads the kernels may use: GENGRAD_NUM_THREADS at import, else the CPUs this
// process may run on; set_num_threads throws std::invalid_argument outside [1, kMaxThreads].
int num_threads();
void set_num_threads(int n);
// Reads GENGRAD_NUM_THREADS; throws std::invalid_argument naming it if it is set but not an
// integer in [1, kMaxThreads]. Called once at import (and by default_threads).
int threads_from_environment();

// A cap for the calls made by the current thread only (0: none; never above num_threads()),
// such as a sweep's threads_per_job in a thread pool, which must not change the process's count.
void set_thread_limit(int n);
int thread_limit();

// The threads a call starting now may use: num_threads() (or this thread's limit), or 1 inside a
// task of a parallel loop.
int call_threads();

// Runs body(context, task, worker) for task = 0..n_tasks-1 on at most `threads` threads; worker
// in [0, min(threads, n_tasks)) names the thread's slot (0: the caller), for per-thread scratch.
// The first exception a task throws is rethrown here once every begun task has finished; the
// tasks not begun are skipped. While the caller waits for the helpers' last tasks it calls
// idle(idle_context), if given, about every millisecond (a flow ensemble checks for Ctrl-C).
using TaskFunction = void (*)(void* context, int64_t task, int worker);
using IdleFunction = void (*)(void* context);
void run_tasks(int64_t n_tasks, int threads, TaskFunction body, void* context, IdleFunction idle = nullptr,
               void* idle_context = nullptr);

// run_tasks for lambdas: body(task, worker) and, if given, idle().
struct NoIdle {};

template <class Body, class Idle = NoIdle>
void parallel_for(int64_t n_tasks, int threads, const Body& body, const Idle& idle = {}) {
    IdleFunction idle_function = nullptr;
    void* idle_context = nullptr;
    if constexpr (!std::is_same_v<Idle, NoIdle>) {
        idle_function = [](void* context) { (*static_cast<const Idle*>(context))(); };
        idle_context = const_cast<void*>(static_cast<const void*>(&idle));
    }
    run_tasks(
        n_tasks, threads,
        [](void* context, int64_t task, int worker) { (*static_cast<const Body*>(context))(task, worker); },
        const_cast<void*>(static_cast<const void*>(&body)), idle_function, idle_context);
}

}  // namespace gengrad
