// ModelGuard-S centroid search for one prediction in one class codebook.
#pragma once

#include "modelguard_fast/l1.h"

namespace mgf {

enum SearchMode : int32_t {
  // Algorithm 1: the lowest-index centroid within eps, or none.
  kSearchFirst = 0,
  // The leaky ablation: the nearest centroid within eps (lowest index on ties), or none.
  kSearchNearest = 1,
  // The attacker's offline map: the first centroid within eps, else the nearest one.
  kSearchOffline = 2,
};

// One candidate answer: index in the class codebook (-1 when none) and its distance.
template <typename T>
struct SearchHit {
  int64_t index;
  T distance;
};

// Keeps `candidate` when it is strictly nearer than `best` (so the lower index
// wins ties when candidates arrive in index order).
template <typename T>
MGF_HD inline void keep_nearer(SearchHit<T>* best, int64_t index, T distance) {
  if (best->index < 0 || distance < best->distance) {
    best->index = index;
    best->distance = distance;
  }
}

#if defined(MGF_HOST_LANES)
// l1_distance_bounded(y, a, C, bound) and l1_distance_bounded(y, b, C, bound)
// in one pass: each is the exact distance, or a value above `bound` (the
// partial sums stop only once both exceed it). Same lanes, same order, same
// combining tree, so an exact distance has the same bits; the two chains of
// additions are independent, so they run side by side instead of each waiting
// on its own adds.
template <typename T>
inline void l1_distance_pair_bounded(const T* y, const T* a, const T* b, int64_t C, T bound, T* da, T* db) {
  using L = lanes::Lanes<T>;
  typename L::V sa[L::N] = {}, sb[L::N] = {}, vy[L::N] = {}, va[L::N] = {}, vb[L::N] = {};
  int64_t k = 0;
  const int64_t full = C - C % kLanes;
  int since_check = 0;
  for (; k < full; k += kLanes) {
    lanes::load(y + k, vy);
    lanes::load(a + k, va);
    lanes::load(b + k, vb);
    for (int n = 0; n < L::N; ++n) {
      sa[n] += lanes::magnitude<T>(vy[n] - va[n]);
      sb[n] += lanes::magnitude<T>(vy[n] - vb[n]);
    }
    since_check += kLanes;
    if (since_check >= kBoundCheckColumns) {
      since_check = 0;
      const T pa = lanes::combine<T>(sa), pb = lanes::combine<T>(sb);
      if (pa > bound && pb > bound) {
        *da = pa;
        *db = pb;
        return;
      }
    }
  }
  if (k < C) {  // zeros beyond column C add |0 - 0| = +0, which changes no lane
    lanes::load_tail(y + k, C - k, T(0), vy);
    lanes::load_tail(a + k, C - k, T(0), va);
    lanes::load_tail(b + k, C - k, T(0), vb);
    for (int n = 0; n < L::N; ++n) {
      sa[n] += lanes::magnitude<T>(vy[n] - va[n]);
      sb[n] += lanes::magnitude<T>(vy[n] - vb[n]);
    }
  }
  *da = lanes::combine<T>(sa);
  *db = lanes::combine<T>(sb);
}
#endif

// Scans centroids [begin, end) of a row-major codebook with C columns.
template <typename T>
MGF_HD inline SearchHit<T> search_codebook(const T* y, const T* codebook, int64_t begin, int64_t end,
                                           int64_t C, T eps, int32_t mode) {
  SearchHit<T> hit{-1, T(0)};
  if (mode == kSearchFirst || mode == kSearchOffline) {
    int64_t j = begin;
#if defined(MGF_HOST_LANES)
    // Two centroids at a time (the lower index answers first) when rows are long
    // enough for the chains to matter: at C = 100 it cut the scan from 45 to 35
    // ns/row; at C = 10 it cost 4% (AVX2 module, one thread).
    for (; C >= kBoundCheckColumns && j + 1 < end; j += 2) {
      T d0, d1;
      l1_distance_pair_bounded(y, codebook + j * C, codebook + (j + 1) * C, C, eps, &d0, &d1);
      if (d0 <= eps) return SearchHit<T>{j, d0};
      if (d1 <= eps) return SearchHit<T>{j + 1, d1};
    }
#endif
    for (; j < end; ++j) {
      const T d = l1_distance_bounded(y, codebook + j * C, C, eps);
      if (d <= eps) return SearchHit<T>{j, d};
    }
    if (mode == kSearchFirst) return hit;
    for (int64_t j = begin; j < end; ++j) {
      const T bound = hit.index < 0 ? T(INFINITY) : hit.distance;
      keep_nearer(&hit, j, l1_distance_bounded(y, codebook + j * C, C, bound));
    }
    return hit;
  }
  for (int64_t j = begin; j < end; ++j) {
    const T bound = hit.index < 0 ? eps : hit.distance;
    const T d = l1_distance_bounded(y, codebook + j * C, C, bound);
    if (d <= eps) keep_nearer(&hit, j, d);
  }
  return hit;
}

}  // namespace mgf
