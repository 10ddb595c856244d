// Definitions shared by the C++ and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MGF_HD __host__ __device__
#define MGF_UNROLL _Pragma("unroll")
#else
#define MGF_HD
#define MGF_UNROLL _Pragma("GCC unroll 8")
#endif

namespace mgf {

// Row validation results; the Python layer turns them into messages.
enum RowStatus : int32_t {
  kRowOk = 0,
  kRowNonFinite = 1,
  kRowNegative = 2,
  kRowBadSum = 3,
};

template <typename T>
MGF_HD inline bool is_finite(T v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

template <typename T>
MGF_HD inline T abs_value(T v) {
  return v < T(0) ? -v : v;
}

// Checks one probability row and finds its top-1 class (first index on ties,
// as numpy's and torch's argmax do). On failure, *bad_col and *bad_value name
// the offending entry (for kRowBadSum: column -1 and the row sum).
template <typename T>
MGF_HD inline int32_t check_probability_row(const T* y, int64_t C, double sum_tol, int64_t* top,
                                            int64_t* bad_col, double* bad_value) {
  double sum = 0.0;
  int64_t best = 0;
  for (int64_t k = 0; k < C; ++k) {
    const T v = y[k];
    if (!is_finite(v)) {
      *bad_col = k;
      *bad_value = double(v);
      return kRowNonFinite;
    }
    if (v < T(0)) {
      *bad_col = k;
      *bad_value = double(v);
      return kRowNegative;
    }
    sum += double(v);
    if (v > y[best]) best = k;
  }
  if (!(abs_value(sum - 1.0) <= sum_tol)) {
    *bad_col = -1;
    *bad_value = sum;
    return kRowBadSum;
  }
  *top = best;
  return kRowOk;
}

}  // namespace mgf
