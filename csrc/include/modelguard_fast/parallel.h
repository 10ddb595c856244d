// Row-parallel loops for the CPU kernels (OpenMP when the build has it).
#pragma once

#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace mgf {

// Below this much estimated work a loop stays on the calling thread: starting
// a parallel region costs a few microseconds, more than a small batch takes.
constexpr int64_t kMinParallelWork = 1 << 15;

inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Calls fn(i) for i in [0, n). `work_per_item` is a rough cost estimate used
// only to decide whether threads are worth starting. Items are handed out in
// small chunks because rows differ widely in cost.
template <typename Fn>
void parallel_for(int64_t n, int64_t work_per_item, Fn&& fn) {
#if defined(_OPENMP)
  if (n > 1 && n * work_per_item >= kMinParallelWork && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace mgf
