// ModelGuard-S search on the GPU: one warp per row. The distance arithmetic is
// mgf::l1_distance_bounded, shared with the CPU, so both give the same bits.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "modelguard_fast/cuda_api.h"
#include "modelguard_fast/mgs_search.h"

namespace mgf {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr unsigned kFullMask = 0xffffffffu;

// Lexicographic (distance, index) minimum across the warp; index -1 loses.
template <typename T>
__device__ void warp_min_hit(T* d, int64_t* j) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T od = __shfl_down_sync(kFullMask, *d, offset);
    const int64_t oj = __shfl_down_sync(kFullMask, *j, offset);
    if (oj >= 0 && (*j < 0 || od < *d || (od == *d && oj < *j))) {
      *d = od;
      *j = oj;
    }
  }
  *d = __shfl_sync(kFullMask, *d, 0);
  *j = __shfl_sync(kFullMask, *j, 0);
}

// Status and top-1 class of one row: every lane runs check_probability_row,
// the function of the CPU kernels and of check.cu (the lanes read the same
// addresses, which the hardware broadcasts), so the verdict is the same bits.
template <typename T>
__device__ int32_t warp_check_row(const T* y, int64_t C, double sum_tol, int64_t* top) {
  int64_t col = -1;
  double value = 0.0;
  return check_probability_row(y, C, sum_tol, top, &col, &value);
}

template <typename T>
__global__ void mgs_search_kernel(const T* __restrict__ x, int64_t B, int64_t C, double sum_tol,
                                  const T* __restrict__ codebook, const int64_t* __restrict__ starts,
                                  const int64_t* __restrict__ ends, T eps,
                                  int32_t mode, int32_t* status, int64_t* top_out, int64_t* index_out,
                                  T* distance_out) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= B) return;  // whole warps exit together
  const T* y = x + row * C;
  int64_t top = 0;
  const int32_t code = warp_check_row(y, C, sum_tol, &top);
  SearchHit<T> hit{-1, T(0)};
  if (code == kRowOk) {
    const T* base = codebook + starts[top] * C;
    const int64_t n = ends[top] - starts[top];
    if (mode != kSearchNearest) {
      for (int64_t start = 0; start < n && hit.index < 0; start += kWarp) {
        const int64_t j = start + lane;
        const T d = j < n ? l1_distance_bounded(y, base + j * C, C, eps) : T(INFINITY);
        const unsigned hits = __ballot_sync(kFullMask, j < n && d <= eps);
        if (hits) {
          const int first = __ffs(hits) - 1;
          hit.index = start + first;
          hit.distance = __shfl_sync(kFullMask, d, first);
        }
      }
    }
    if (hit.index < 0 && mode != kSearchFirst) {
      T best = T(INFINITY);
      int64_t best_j = -1;
      for (int64_t j = lane; j < n; j += kWarp) {
        const T bound = best_j < 0 ? (mode == kSearchNearest ? eps : T(INFINITY)) : best;
        const T d = l1_distance_bounded(y, base + j * C, C, bound);
        if ((mode != kSearchNearest || d <= eps) && (best_j < 0 || d < best)) {
          best = d;
          best_j = j;
        }
      }
      warp_min_hit(&best, &best_j);
      hit.index = best_j;
      hit.distance = best_j < 0 ? T(0) : best;
    }
  }
  if (lane == 0) {
    status[row] = code;
    top_out[row] = top;
    index_out[row] = hit.index;
    distance_out[row] = hit.distance;
  }
}

template <typename T>
void launch_search(uintptr_t x, int64_t B, int64_t C, double sum_tol, uintptr_t codebook, uintptr_t starts,
                   uintptr_t ends, double eps, int32_t mode, uintptr_t status, uintptr_t top, uintptr_t index,
                   uintptr_t distance, cudaStream_t stream) {
  const int64_t blocks = (B + kWarpsPerBlock - 1) / kWarpsPerBlock;
  mgs_search_kernel<T><<<static_cast<unsigned>(blocks), kWarpsPerBlock * kWarp, 0, stream>>>(
      reinterpret_cast<const T*>(x), B, C, sum_tol, reinterpret_cast<const T*>(codebook),
      reinterpret_cast<const int64_t*>(starts), reinterpret_cast<const int64_t*>(ends), static_cast<T>(eps), mode,
      reinterpret_cast<int32_t*>(status),
      reinterpret_cast<int64_t*>(top), reinterpret_cast<int64_t*>(index), reinterpret_cast<T*>(distance));
  check_cuda(cudaGetLastError(), "mgs_search_kernel launch");
}

}  // namespace

void mgs_search_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t codebook,
                     uintptr_t starts, uintptr_t ends, double eps, int32_t mode, uintptr_t status, uintptr_t top,
                     uintptr_t index, uintptr_t distance, uintptr_t stream) {
  if (B == 0) return;
  if (B > int64_t(kWarpsPerBlock) * 0x7fffffff) throw std::invalid_argument("batch too large for one launch");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (dtype == 0) {
    launch_search<float>(x, B, C, sum_tol, codebook, starts, ends, eps, mode, status, top, index, distance, s);
  } else {
    launch_search<double>(x, B, C, sum_tol, codebook, starts, ends, eps, mode, status, top, index, distance, s);
  }
}

}  // namespace mgf
