// Row-parallel loops for the CPU kernels, on a pool of worker threads.
//
// Why not OpenMP: its fork-join barrier waits for every thread of the team,
// including one the OS has not scheduled yet. On a machine whose cores are
// busy with other work (a serving process's own threads, other processes),
// a kernel call then stalls for whole scheduler slices; both were measured
// here (a 256-row ModelGuard-S batch taking milliseconds instead of
// microseconds). In this pool the calling thread always works, work is handed
// out in chunks from an atomic counter, and the caller waits only for chunks
// that a worker has actually started.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

namespace mgf {

// Below this much estimated work a loop stays on the calling thread.
constexpr int64_t kMinParallelWork = 1 << 15;

// Threads a parallel loop may use, the caller included: MGF_NUM_THREADS, else
// OMP_NUM_THREADS, else the hardware's count; read once, at first use. At
// most the limit set by set_thread_limit (for benchmarks: one thread or all
// in the same process).
int max_threads();
void set_thread_limit(int threads);

// Runs body(begin, end) over chunks of [0, n) on the pool and the calling
// thread. Runs everything on the caller when the pool is busy with another
// caller's loop, or in a forked child process.
void run_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& body);

// Calls fn(begin, end) over chunks of [0, n): on the pool as parallel_for
// decides, else once with the whole range (so per-chunk set-up, such as a
// scratch buffer, is paid once per call on one thread).
template <typename Fn>
void parallel_chunks(int64_t n, int64_t work_per_item, Fn&& fn) {
  if (n > 1 && n * std::max<int64_t>(work_per_item, 1) >= kMinParallelWork && max_threads() > 1) {
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(16, n / (8 * max_threads())));
    run_chunks(n, chunk, [&fn](int64_t begin, int64_t end) { fn(begin, end); });
    return;
  }
  if (n > 0) fn(0, n);
}

// Calls fn(i) for i in [0, n). `work_per_item` is a rough cost estimate used
// only to decide whether threads are worth waking. Items are handed out in
// small chunks because rows differ widely in cost.
template <typename Fn>
void parallel_for(int64_t n, int64_t work_per_item, Fn&& fn) {
  parallel_chunks(n, work_per_item, [&fn](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

}  // namespace mgf
