// ModelGuard-W on the CPU: the per-row preparation (sort and prefix sums) in
// SIMD, chosen at run time by mgw.cpp. It fills the same arrays, with the same
// bits, as the portable path (and the GPU's mgw_gather, mgw_heap_sort,
// mgw_prefix and mgw_row_sum), only faster.
#pragma once

#include <cstdint>

namespace mgf {
namespace mgw_avx512 {

// Largest row (C) the SIMD preparation takes.
constexpr int64_t kMaxClasses = 256;

// Number of keys the SIMD sort works on for C classes: C rounded up to a power
// of two, at least 8.
inline int64_t padded_keys(int64_t C) {
  int64_t padded = 8;
  while (padded < C) padded *= 2;
  return padded;
}

// For a row y of 2 <= C <= kMaxClasses classes: checks it as
// check_probability_row does and returns kRowOk or another code (which one
// may differ; ask check_probability_row). For a good row, writes its top-1
// class, the other classes ascending by (y, class index) as ys[0, C-1)
// (float64, +0.0 for -0.0) and their indices perm[0, C-1), the prefix sums
// Y[0, C) of ys, and mgw_row_sum(y, C) as *row_sum. keys (padded_keys(C)
// entries) and values (C entries) are scratch. Defined only in an x86-64
// build (mgw_avx512.cpp); call only where the CPU has AVX-512F.
template <typename T>
int32_t prepare(const T* y, int64_t C, double sum_tol, int64_t* top, double* row_sum, uint64_t* keys, double* values,
                int32_t* perm, double* ys, double* Y);

// out[q] = mgw_log(ys[q] + shift) for q < count, eight at a time, with
// mgw_log's bits (an MgwLogBlock).
void logs(const double* ys, int64_t count, double shift, double* out);

}  // namespace mgw_avx512
}  // namespace mgf
