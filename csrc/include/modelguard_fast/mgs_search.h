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

// Scans centroids [begin, end) of a row-major codebook with C columns.
template <typename T>
MGF_HD inline SearchHit<T> search_codebook(const T* y, const T* codebook, int64_t begin, int64_t end,
                                           int64_t C, T eps, int32_t mode) {
  SearchHit<T> hit{-1, T(0)};
  if (mode == kSearchFirst || mode == kSearchOffline) {
    for (int64_t j = begin; j < end; ++j) {
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
