// The L1 distance used by ModelGuard-S, with one fixed summation order.
//
// Bit-for-bit agreement between a batch and a row-by-row run (and between the
// CPU and the GPU) needs every distance computed with the same roundings. The
// order is fixed here: column k goes to lane k % kLanes, each lane sums its
// columns left to right, and the lanes are combined by a fixed pairwise tree.
// Eight independent lanes let the compiler vectorise without reassociating.
// tests/reference_mgs.py reproduces this order in numpy. On the host the
// eight lanes are SIMD vectors (lanes.h), with the same per-lane operations.
#pragma once

#include "modelguard_fast/common.h"

namespace mgf {

constexpr int kLanes = 8;
// Partial sums are compared with the bound once per this many columns.
constexpr int kBoundCheckColumns = 32;

template <typename T>
MGF_HD inline T combine_lanes(const T* s) {
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Returns the L1 distance between a and b, or, as soon as a partial sum
// exceeds `bound`, some value greater than `bound`. Rounded additions of
// non-negative terms are monotone, so a partial sum above the bound proves the
// full distance is above it too: the early exit never changes a comparison
// `distance <= bound` nor the value of any distance that passes it.
template <typename T>
MGF_HD inline T l1_distance_bounded(const T* a, const T* b, int64_t C, T bound) {
#if defined(MGF_HOST_LANES)
  using L = lanes::Lanes<T>;
  typename L::V lane[L::N] = {}, va[L::N] = {}, vb[L::N] = {};
  int64_t k = 0;
  const int64_t full = C - C % kLanes;
  int since_check = 0;
  for (; k < full; k += kLanes) {
    lanes::load(a + k, va);
    lanes::load(b + k, vb);
    for (int n = 0; n < L::N; ++n) lane[n] += lanes::magnitude<T>(va[n] - vb[n]);
    since_check += kLanes;
    if (since_check >= kBoundCheckColumns) {
      since_check = 0;
      const T partial = lanes::combine<T>(lane);
      if (partial > bound) return partial;
    }
  }
  if (k < C) {  // zeros beyond column C add |0 - 0| = +0, which changes no lane
    lanes::load_tail(a + k, C - k, T(0), va);
    lanes::load_tail(b + k, C - k, T(0), vb);
    for (int n = 0; n < L::N; ++n) lane[n] += lanes::magnitude<T>(va[n] - vb[n]);
  }
  return lanes::combine<T>(lane);
#else
  T lane[kLanes];
MGF_UNROLL
  for (int j = 0; j < kLanes; ++j) lane[j] = T(0);
  int64_t k = 0;
  const int64_t full = C - C % kLanes;
  int since_check = 0;
  for (; k < full; k += kLanes) {
MGF_UNROLL
    for (int j = 0; j < kLanes; ++j) lane[j] += abs_value(a[k + j] - b[k + j]);
    since_check += kLanes;
    if (since_check >= kBoundCheckColumns) {
      since_check = 0;
      const T partial = combine_lanes(lane);
      if (partial > bound) return partial;
    }
  }
  for (int j = 0; k + j < C; ++j) lane[j] += abs_value(a[k + j] - b[k + j]);
  return combine_lanes(lane);
#endif
}

// A lower bound on the L1 distance, as l1_distance_bounded computes it, from y
// to every point c of the box lo <= c <= hi (per column), with the same early
// exit. It is exact under rounding, not only in real arithmetic: column k adds
// g_k = max(fl(lo_k - y_k), fl(y_k - hi_k), 0), and since rounding is monotone
// (and symmetric, fl(y - c) = -fl(c - y)), g_k <= |fl(c_k - y_k)| for every c
// in the box. The terms go to the same lanes in the same order and are combined
// by the same tree as in l1_distance_bounded, and a rounded sum of
// non-negative terms is monotone in each term, so the bound computed here is
// <= the distance computed there for every c in the box, bit for bit. A box
// whose bound exceeds eps therefore holds no centroid that the linear scan
// would find within eps.
template <typename T>
MGF_HD inline T l1_box_distance_bounded(const T* y, const T* lo, const T* hi, int64_t C, T bound) {
#if defined(MGF_HOST_LANES)
  using L = lanes::Lanes<T>;
  using V = typename L::V;
  using K = typename L::K;
  V lane[L::N] = {}, vy[L::N] = {}, vlo[L::N] = {}, vhi[L::N] = {};
  const V zero = V{};
  auto add_gaps = [&]() __attribute__((always_inline)) {
    for (int n = 0; n < L::N; ++n) {
      const V below = vlo[n] - vy[n];
      const V above = vy[n] - vhi[n];
      const V gap = (V)lanes::select((K)(below > above), (K)below, (K)above);
      lane[n] += (V)((K)gap & (K)(gap > zero));
    }
  };
  int64_t k = 0;
  const int64_t full = C - C % kLanes;
  int since_check = 0;
  for (; k < full; k += kLanes) {
    lanes::load(y + k, vy);
    lanes::load(lo + k, vlo);
    lanes::load(hi + k, vhi);
    add_gaps();
    since_check += kLanes;
    if (since_check >= kBoundCheckColumns) {
      since_check = 0;
      const T partial = lanes::combine<T>(lane);
      if (partial > bound) return partial;
    }
  }
  if (k < C) {  // zeros beyond column C: a gap of +0
    lanes::load_tail(y + k, C - k, T(0), vy);
    lanes::load_tail(lo + k, C - k, T(0), vlo);
    lanes::load_tail(hi + k, C - k, T(0), vhi);
    add_gaps();
  }
  return lanes::combine<T>(lane);
#else
  T lane[kLanes];
MGF_UNROLL
  for (int j = 0; j < kLanes; ++j) lane[j] = T(0);
  int64_t k = 0;
  const int64_t full = C - C % kLanes;
  int since_check = 0;
  for (; k < full; k += kLanes) {
MGF_UNROLL
    for (int j = 0; j < kLanes; ++j) {
      const T below = lo[k + j] - y[k + j];
      const T above = y[k + j] - hi[k + j];
      const T gap = below > above ? below : above;
      lane[j] += gap > T(0) ? gap : T(0);
    }
    since_check += kLanes;
    if (since_check >= kBoundCheckColumns) {
      since_check = 0;
      const T partial = combine_lanes(lane);
      if (partial > bound) return partial;
    }
  }
  for (int j = 0; k + j < C; ++j) {
    const T below = lo[k + j] - y[k + j];
    const T above = y[k + j] - hi[k + j];
    const T gap = below > above ? below : above;
    lane[j] += gap > T(0) ? gap : T(0);
  }
  return combine_lanes(lane);
#endif
}

template <typename T>
MGF_HD inline T l1_distance(const T* a, const T* b, int64_t C) {
  return l1_distance_bounded(a, b, C, T(INFINITY));
}

}  // namespace mgf
