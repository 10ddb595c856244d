// The L1 distance used by ModelGuard-S, with one fixed summation order.
//
// Bit-for-bit agreement between a batch and a row-by-row run (and between the
// CPU and the GPU) needs every distance computed with the same roundings. The
// order is fixed here: column k goes to lane k % kLanes, each lane sums its
// columns left to right, and the lanes are combined by a fixed pairwise tree.
// Eight independent lanes let the compiler vectorise without reassociating.
// tests/reference_mgs.py reproduces this order in numpy.
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
}

template <typename T>
MGF_HD inline T l1_distance(const T* a, const T* b, int64_t C) {
  return l1_distance_bounded(a, b, C, T(INFINITY));
}

}  // namespace mgf
