// ModelGuard-W's row preparation, shared by the CPU and CUDA kernels: the
// classes other than the top-1 gathered, sorted ascending by (y, class index),
// their prefix sums, and the row's compensated sum. The solver (mgw_solver.h)
// starts from the prepared row. On the CPU, csrc/cpu/mgw_avx512.cpp writes the
// same bits in one AVX-512 pass where the CPU has it.
#pragma once

#include <cstdint>

#include "modelguard_fast/common.h"
#include "modelguard_fast/mgw_math.h"

namespace mgf {

template <typename T>
struct StridedSpan {
  T* data;
  int64_t stride;
  MGF_HD T& operator[](int64_t i) const { return data[i * stride]; }
};

// Per-row scratch for n = C - 1 classes: sorted values ys[n], their class
// indices perm[n], prefix sums Y[n + 1] of ys, and the costs cs[n] and their
// partial sums Cc[n + 2], both filled on demand (see MgwRow::cost_sum).
struct MgwWorkspace {
  StridedSpan<double> ys;
  StridedSpan<int32_t> perm;
  StridedSpan<double> cs;
  StridedSpan<double> Y;
  StridedSpan<double> Cc;
};

MGF_HD inline bool mgw_key_less(double ya, int32_t ia, double yb, int32_t ib) {
  return ya < yb || (ya == yb && ia < ib);
}

MGF_HD inline void mgw_sift_down(StridedSpan<double> y, StridedSpan<int32_t> idx, int64_t root, int64_t end) {
  const double ry = y[root];
  const int32_t ri = idx[root];
  while (2 * root + 1 < end) {
    int64_t child = 2 * root + 1;
    if (child + 1 < end && mgw_key_less(y[child], idx[child], y[child + 1], idx[child + 1])) ++child;
    if (!mgw_key_less(ry, ri, y[child], idx[child])) break;
    y[root] = y[child];
    idx[root] = idx[child];
    root = child;
  }
  y[root] = ry;
  idx[root] = ri;
}

// In-place heapsort ascending by (y, class index); keys are distinct, so any
// correct sort (std::sort on the host) gives the same order.
MGF_HD inline void mgw_heap_sort(StridedSpan<double> y, StridedSpan<int32_t> idx, int64_t n) {
  for (int64_t i = n / 2; i-- > 0;) mgw_sift_down(y, idx, i, n);
  for (int64_t end = n - 1; end > 0; --end) {
    const double ty = y[0];
    const int32_t ti = idx[0];
    y[0] = y[end];
    idx[0] = idx[end];
    y[end] = ty;
    idx[end] = ti;
    mgw_sift_down(y, idx, 0, end);
  }
}

template <typename T>
MGF_HD inline double mgw_row_sum(const T* y, int64_t C) {
  double s[kMgwSumLanes], comp[kMgwSumLanes];
  for (int j = 0; j < kMgwSumLanes; ++j) s[j] = comp[j] = 0.0;
  int64_t k = 0;
  for (; k + kMgwSumLanes <= C; k += kMgwSumLanes) {
    MGF_UNROLL
    for (int j = 0; j < kMgwSumLanes; ++j) mgw_two_sum(s[j], comp[j], double(y[k + j]));
  }
  MGF_UNROLL
  for (int j = 0; j < kMgwSumLanes; ++j) {
    if (k + j < C) mgw_two_sum(s[j], comp[j], double(y[k + j]));
  }
  return mgw_lanes_total(s, comp);
}

// Copies the classes other than t into ws.ys / ws.perm, unsorted.
template <typename T>
MGF_HD inline void mgw_gather(const T* y, int64_t C, int64_t t, const MgwWorkspace& ws) {
  int64_t q = 0;
  for (int64_t k = 0; k < C; ++k) {
    if (k == t) continue;
    ws.ys[q] = double(y[k]) + 0.0;  // -0.0 becomes +0.0, so bit patterns order like values
    ws.perm[q] = static_cast<int32_t>(k);
    ++q;
  }
}

// Prefix sums of the sorted values, in blocks of kMgwPrefixBlock: within a
// block a running local sum, each added to the sum of the blocks before, so
// the chain of dependent additions is short (the CPU runs the blocks in SIMD).
// Still non-decreasing (every rounding is monotone), and Y[8 b] is exactly
// the base that block b's entries are added to.
constexpr int kMgwPrefixBlock = 8;

MGF_HD inline void mgw_prefix(const MgwWorkspace& ws, int64_t n) {
  double base = 0.0;
  ws.Y[0] = 0.0;
  for (int64_t b = 0; b < n; b += kMgwPrefixBlock) {
    double local = 0.0;
    double end = base;
    for (int64_t q = b; q < b + kMgwPrefixBlock && q < n; ++q) {
      local = q == b ? ws.ys[q] : local + ws.ys[q];
      end = base + local;
      ws.Y[q + 1] = end;
    }
    base = end;
  }
}

}  // namespace mgf
