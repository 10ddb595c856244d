// Definitions shared by the C++ and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
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

// First invalid row of a batch (row -1 when every row is valid).
struct BatchCheck {
  int64_t row = -1;
  int32_t code = kRowOk;
  int64_t col = -1;
  double value = 0.0;
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
  return (v >= T(0)) & (v <= std::numeric_limits<T>::max());
}

// For finite non-negative floats, the bit patterns read as signed integers
// order like the values, and integer maxima vectorise where float ones may not.
template <typename T>
struct OrderKey;
template <>
struct OrderKey<float> {
  using type = int32_t;
};
template <>
struct OrderKey<double> {
  using type = int64_t;
};

template <typename T>
MGF_HD inline typename OrderKey<T>::type order_key(T v) {
  typename OrderKey<T>::type bits;
  memcpy(&bits, &v, sizeof(T));
  return bits;
}

// Checks one probability row and finds its top-1 class (first index on ties,
// as numpy's and torch's argmax do). On failure, *bad_col and *bad_value name
// the offending entry (for kRowBadSum: column -1 and the row sum). The row is
// scanned in eight independent lanes, like l1.h's distance, so the loop
// vectorises; the sum, used only against the tolerance, is in the row's dtype.
template <typename T>
MGF_HD inline int32_t check_probability_row(const T* y, int64_t C, double sum_tol, int64_t* top,
                                            int64_t* bad_col, double* bad_value) {
  using Key = typename OrderKey<T>::type;
  constexpr int L = 8;
  T sum[L];
  Key best[L];
  int ok[L];
  MGF_UNROLL
  for (int j = 0; j < L; ++j) {
    sum[j] = T(0);
    best[j] = order_key(T(0));
    ok[j] = 1;
  }
  int64_t k = 0;
  for (; k + L <= C; k += L) {
    MGF_UNROLL
    for (int j = 0; j < L; ++j) {
      const T v = y[k + j];
      ok[j] &= int(finite_non_negative(v));
      sum[j] += v;
      const Key key = order_key(v);
      best[j] = key > best[j] ? key : best[j];
    }
  }
  for (int j = 0; k + j < C; ++j) {
    const T v = y[k + j];
    ok[j] &= int(finite_non_negative(v));
    sum[j] += v;
    const Key key = order_key(v);
    best[j] = key > best[j] ? key : best[j];
  }
  int clean = 1;
  Key top_key = best[0];
  double total = 0.0;
  for (int j = 0; j < L; ++j) {
    clean &= ok[j];
    top_key = best[j] > top_key ? best[j] : top_key;
    total += double(sum[j]);
  }
  if (!clean) {
    for (k = 0; k < C; ++k) {
      if (!finite_non_negative(y[k])) {
        *bad_col = k;
        *bad_value = double(y[k]);
        return is_finite(y[k]) ? kRowNegative : kRowNonFinite;
      }
    }
  }
  if (!(abs_value(total - 1.0) <= sum_tol)) {
    *bad_col = -1;
    *bad_value = total;
    return kRowBadSum;
  }
  for (k = 0; k < C - 1 && order_key(y[k]) != top_key; ++k) {  // (none holds it only if all are -0.0)
  }
  *top = k;
  return kRowOk;
}

}  // namespace mgf
