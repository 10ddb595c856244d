// Definitions shared by the C++ and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "modelguard_fast/lanes.h"

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

// The verdict of check_probability_row once its lanes are reduced (`clean`: no
// lane saw a bad entry; `total`: the row sum): the first bad entry of `row`,
// else the sum against the tolerance. Shared by its SIMD and scalar forms.
template <typename T>
MGF_HD inline int32_t row_verdict(const T* row, int64_t C, bool clean, double total, double sum_tol,
                                  int64_t* bad_col, double* bad_value) {
  if (!clean) {
    for (int64_t k = 0; k < C; ++k) {
      if (!finite_non_negative(row[k])) {
        *bad_col = k;
        *bad_value = double(row[k]);
        return is_finite(row[k]) ? kRowNegative : kRowNonFinite;
      }
    }
  }
  if (!(abs_value(total - 1.0) <= sum_tol)) {
    *bad_col = -1;
    *bad_value = total;
    return kRowBadSum;
  }
  return kRowOk;
}

// Checks one probability row and finds its top-1 class (first index on ties,
// as numpy's and torch's argmax do; with kWantTop false, only the check:
// `top` is not read nor written). On failure, *bad_col and *bad_value name
// the offending entry (for kRowBadSum: column -1 and the row sum). The row is
// scanned in eight independent lanes, like l1.h's distance; the sum, used
// only against the tolerance, is in the row's dtype, its lanes added in order
// 0..7 in double. On the host the lanes are SIMD vectors (lanes.h): each lane
// also keeps the first column holding its largest value, so the top-1 class
// needs no second pass; the result is the same in every case.
//
// `copy` (optional, C entries): receives the row as it was read. y is then
// read once, so a caller's buffer that another thread rewrites meanwhile
// yields a copy that is exactly the row checked (the verdict, top-1 class and
// the bad entry reported are all the copy's).
template <typename T, bool kWantTop = true>
MGF_HD inline int32_t check_probability_row(const T* y, int64_t C, double sum_tol, int64_t* top,
                                            int64_t* bad_col, double* bad_value, T* copy = nullptr) {
#if defined(MGF_HOST_LANES)
  using L = lanes::Lanes<T>;
  using V = typename L::V;
  using K = typename L::K;
  using Key = typename L::Key;
  constexpr int N = L::N;
  constexpr int W = L::W;
  // best starts below every finite non-negative key but -0.0's, which never
  // wins: a row of zeros and -0.0s answers its first +0.0, and a row of -0.0s
  // column C - 1, as the scalar form does.
  const V zero = V{};
  const V largest = V{} + std::numeric_limits<T>::max();
  V sum[N];
  K best[N], first[N], ok[N], column[N];
  for (int n = 0; n < N; ++n) {
    sum[n] = V{};
    best[n] = K{} + std::numeric_limits<Key>::min();
    first[n] = K{} - 1;
    ok[n] = K{} - 1;
    for (int w = 0; w < W; ++w) column[n][w] = Key(n * W + w);
  }
  V v[N] = {};
  int64_t k = 0;
  for (;; k += 8) {
    if (k + 8 <= C) {
      lanes::load(y + k, v);
      lanes::pin(v, N);  // y is read once: the copy and every use below see the same values
      if (copy != nullptr) lanes::store_row(v, copy + k);
    } else if (k < C) {
      lanes::load_tail(y + k, C - k, T(-0.0), v);  // -0.0: adds nothing, passes, never the largest
      lanes::pin(v, N);
      if (copy != nullptr) lanes::store_tail<T>(v, C - k, copy + k);
    } else {
      break;
    }
    for (int n = 0; n < N; ++n) {
      ok[n] &= (v[n] >= zero) & (v[n] <= largest);
      sum[n] += v[n];
      if (kWantTop) {
        const K key = (K)v[n];
        const K up = key > best[n];
        best[n] = lanes::select(up, key, best[n]);
        first[n] = lanes::select(up, column[n] + Key(k), first[n]);
      }
    }
  }
  K bad = ~ok[0];
  for (int n = 1; n < N; ++n) bad |= ~ok[n];
  double total = 0.0;
  for (int j = 0; j < 8; ++j) total += double(lanes::lane<T>(sum, j));
  const int32_t verdict =
      row_verdict(copy != nullptr ? copy : y, C, !lanes::any_set(bad), total, sum_tol, bad_col, bad_value);
  if (verdict != kRowOk || !kWantTop) return verdict;
  // The largest key, first column on ties: lane by lane over the vectors, then across lanes.
  K top_keys = best[0], at = first[0];
  for (int n = 1; n < N; ++n) {
    const K up = (best[n] > top_keys) | ((best[n] == top_keys) & (first[n] < at));
    top_keys = lanes::select(up, best[n], top_keys);
    at = lanes::select(up, first[n], at);
  }
  Key top_key, top_at;
  lanes::best_lane(top_keys, at, &top_key, &top_at);
  *top = top_at < 0 ? C - 1 : int64_t(top_at);
  return kRowOk;
#else
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
      if (copy != nullptr) copy[k + j] = v;
      ok[j] &= int(finite_non_negative(v));
      sum[j] += v;
      const Key key = order_key(v);
      best[j] = key > best[j] ? key : best[j];
    }
  }
  for (int j = 0; k + j < C; ++j) {
    const T v = y[k + j];
    if (copy != nullptr) copy[k + j] = v;
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
  const int32_t verdict = row_verdict(copy != nullptr ? copy : y, C, clean != 0, total, sum_tol, bad_col, bad_value);
  if (verdict != kRowOk || !kWantTop) return verdict;
  const T* row = copy != nullptr ? copy : y;
  for (k = 0; k < C - 1 && order_key(row[k]) != top_key; ++k) {  // (none holds it only if all are -0.0)
  }
  *top = k;
  return kRowOk;
#endif
}

}  // namespace mgf
