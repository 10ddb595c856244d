// Definitions shared by the C++ and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

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

// fabs, not a comparison: it vectorises (a sign mask). It differs only in
// giving +0 for -0, which no sum of non-negative terms can tell apart.
template <typename T>
MGF_HD inline T abs_value(T v) {
  return fabs(v);
}

// True for finite, non-negative v: one comparison pair, false for NaN and +-inf.
template <typename T>
MGF_HD inline bool finite_non_negative(T v) {
  return v >= T(0) && v <= std::numeric_limits<T>::max();
}

// Checks one probability row and finds its top-1 class (first index on ties,
// as numpy's and torch's argmax do). On failure, *bad_col and *bad_value name
// the offending entry (for kRowBadSum: column -1 and the row sum). The sum,
// used only against the tolerance, is accumulated in four float64 partial
// sums to keep the loop off a single dependency chain.
template <typename T>
MGF_HD inline int32_t check_probability_row(const T* y, int64_t C, double sum_tol, int64_t* top,
                                            int64_t* bad_col, double* bad_value) {
  double sum[4] = {0.0, 0.0, 0.0, 0.0};
  bool clean = true;
  int64_t best = 0;
  T best_value = y[0];
  for (int64_t k = 0; k < C; ++k) {
    const T v = y[k];
    clean &= finite_non_negative(v);
    sum[k & 3] += double(v);
    if (v > best_value) {
      best_value = v;
      best = k;
    }
  }
  if (!clean) {
    for (int64_t k = 0; k < C; ++k) {
      if (!finite_non_negative(y[k])) {
        *bad_col = k;
        *bad_value = double(y[k]);
        return is_finite(y[k]) ? kRowNegative : kRowNonFinite;
      }
    }
  }
  const double total = (sum[0] + sum[1]) + (sum[2] + sum[3]);
  if (!(abs_value(total - 1.0) <= sum_tol)) {
    *bad_col = -1;
    *bad_value = total;
    return kRowBadSum;
  }
  *top = best;
  return kRowOk;
}

}  // namespace mgf
