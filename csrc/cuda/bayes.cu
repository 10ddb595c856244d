// Partial Bayes matching on the GPU, in two passes over a class-sorted table:
// the nearest distance of every received row, then the float64 sum of the
// clean rows within max(delta, nearest distance). The rule and the distance
// arithmetic (sequential sums over columns in T) are those of the CPU scan,
// so both find the same rows; only the order of the float64 additions differs.
//
// A block takes 32 received rows of one class (one per lane) and a slice of
// that class's table rows; table and query tiles go through shared memory,
// 32 columns at a time, and each thread keeps the distances of 4 rows.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "cuda_check.h"
#include "modelguard_fast/common.h"
#include "modelguard_fast/cuda_api.h"

namespace mgf {
namespace {

constexpr int kTileQueries = 32;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerThread = 4;
constexpr int kTileRows = kWarps * kRowsPerThread;
constexpr int kTileColumns = 32;
// Blocks wanted per multiprocessor before a class's rows are split among blocks.
constexpr int kBlocksPerSM = 8;
static_assert(kTileRows == kTileQueries, "the tile loads share one index range");

template <typename T>
struct Bits;
template <>
struct Bits<float> {
  typedef unsigned int U;
  __device__ static U of(float v) { return __float_as_uint(v); }
};
template <>
struct Bits<double> {
  typedef unsigned long long U;
  __device__ static U of(double v) { return static_cast<U>(__double_as_longlong(v)); }
};

struct Tiles {
  const int64_t* part;
  const int64_t* begin;  // into `order`
  const int64_t* end;
};

// kSum = false: atomically lowers dmin[q] to the nearest distance seen.
// kSum = true: adds the clean rows within max(delta, dmin[q]) to sums[q] and
// their weights (1, or weight[row] for grouped tables) to counts[q].
template <typename T, bool kSum, typename Clean>
__global__ void __launch_bounds__(kThreads)
    bayes_pass(const T* __restrict__ received, int64_t C, const int64_t* __restrict__ order, Tiles tiles,
               const T* __restrict__ pert, const int64_t* __restrict__ part_rows, int64_t split_rows,
               const Clean* __restrict__ clean, const int64_t* __restrict__ weight, T delta, T* dmin, double* sums,
               unsigned long long* counts) {
  __shared__ T query_tile[kTileColumns][kTileQueries + 1];  // padded: stored by column
  __shared__ T table_tile[kTileRows][kTileColumns];
  __shared__ int64_t query_id[kTileQueries];
  __shared__ T warp_min[kWarps][kTileQueries];

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t part = tiles.part[blockIdx.x];
  const int64_t q_begin = tiles.begin[blockIdx.x];
  const int64_t nq = tiles.end[blockIdx.x] - q_begin;
  const int64_t r_begin = part_rows[part] + int64_t(blockIdx.y) * split_rows;
  const int64_t r_end = min(part_rows[part + 1], r_begin + split_rows);
  if (threadIdx.x < kTileQueries) query_id[threadIdx.x] = threadIdx.x < nq ? order[q_begin + threadIdx.x] : -1;
  __syncthreads();
  const bool has_query = lane < nq;
  const int64_t qid = query_id[lane];
  T tol = T(0);
  if (kSum && has_query) tol = dmin[qid] > delta ? dmin[qid] : delta;
  T nearest = T(INFINITY);

  for (int64_t r0 = r_begin; r0 < r_end; r0 += kTileRows) {
    T acc[kRowsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) acc[i] = T(0);
    for (int64_t k0 = 0; k0 < C; k0 += kTileColumns) {
      const int kc = static_cast<int>(min(int64_t(kTileColumns), C - k0));
      for (int e = threadIdx.x; e < kTileQueries * kTileColumns; e += kThreads) {
        const int qi = e / kTileColumns;
        const int kk = e % kTileColumns;
        query_tile[kk][qi] = (qi < nq && kk < kc) ? received[query_id[qi] * C + k0 + kk] : T(0);
        const int64_t row = r0 + qi;
        table_tile[qi][kk] = (row < r_end && kk < kc) ? pert[row * C + k0 + kk] : T(0);
      }
      __syncthreads();
      for (int kk = 0; kk < kc; ++kk) {
        const T q = query_tile[kk][lane];
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i) acc[i] += abs_value(q - table_tile[warp * kRowsPerThread + i][kk]);
      }
      __syncthreads();
    }
    if (!has_query) continue;
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int64_t row = r0 + warp * kRowsPerThread + i;
      if (row >= r_end) continue;
      if (!kSum) {
        if (acc[i] < nearest) nearest = acc[i];
      } else if (acc[i] <= tol) {
        const Clean* src = clean + row * C;
        double* dst = sums + qid * C;
        for (int64_t k = 0; k < C; ++k) atomicAdd(dst + k, double(src[k]));
        atomicAdd(counts + qid, weight ? static_cast<unsigned long long>(weight[row]) : 1ull);
      }
    }
  }
  if (kSum) return;
  warp_min[warp][lane] = nearest;
  __syncthreads();
  if (warp == 0 && has_query) {
    for (int w = 1; w < kWarps; ++w) nearest = warp_min[w][lane] < nearest ? warp_min[w][lane] : nearest;
    // Distances are never negative, so their bit patterns order as they do.
    atomicMin(reinterpret_cast<typename Bits<T>::U*>(dmin + qid), Bits<T>::of(nearest));
  }
}

template <typename T, typename Clean>
void launch(const T* received, int64_t C, const int64_t* order, Tiles tiles, int64_t num_tiles, const T* pert,
            const int64_t* part_rows, int64_t max_part_rows, const Clean* clean, const int64_t* weight, double delta,
            T* dmin, double* sums, unsigned long long* counts, cudaStream_t stream) {
  int device = 0;
  int sms = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  const int64_t row_tiles = std::max<int64_t>(1, (max_part_rows + kTileRows - 1) / kTileRows);
  const int64_t wanted = (int64_t(sms) * kBlocksPerSM + num_tiles - 1) / num_tiles;
  const int64_t splits = std::min<int64_t>({std::max<int64_t>(1, wanted), row_tiles, 65535});
  const int64_t split_rows = (row_tiles + splits - 1) / splits * kTileRows;
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(splits));
  const T d = static_cast<T>(delta);
  bayes_pass<T, false, Clean><<<grid, kThreads, 0, stream>>>(received, C, order, tiles, pert, part_rows, split_rows,
                                                              clean, weight, d, dmin, sums, counts);
  check_cuda(cudaGetLastError(), "bayes_pass (nearest) launch");
  bayes_pass<T, true, Clean><<<grid, kThreads, 0, stream>>>(received, C, order, tiles, pert, part_rows, split_rows,
                                                             clean, weight, d, dmin, sums, counts);
  check_cuda(cudaGetLastError(), "bayes_pass (sum) launch");
}

template <typename T>
void dispatch_clean(uintptr_t received, int64_t C, uintptr_t order, Tiles tiles, int64_t num_tiles, uintptr_t pert,
                    uintptr_t part_rows, int64_t max_part_rows, uintptr_t clean, uintptr_t group_counts, double delta,
                    uintptr_t dmin, uintptr_t sums, uintptr_t counts, cudaStream_t stream) {
  const auto* x = reinterpret_cast<const T*>(received);
  const auto* o = reinterpret_cast<const int64_t*>(order);
  const auto* p = reinterpret_cast<const T*>(pert);
  const auto* pr = reinterpret_cast<const int64_t*>(part_rows);
  auto* dm = reinterpret_cast<T*>(dmin);
  auto* s = reinterpret_cast<double*>(sums);
  auto* n = reinterpret_cast<unsigned long long*>(counts);
  if (group_counts == 0) {
    launch<T, T>(x, C, o, tiles, num_tiles, p, pr, max_part_rows, reinterpret_cast<const T*>(clean), nullptr, delta,
                 dm, s, n, stream);
  } else {
    launch<T, double>(x, C, o, tiles, num_tiles, p, pr, max_part_rows, reinterpret_cast<const double*>(clean),
                      reinterpret_cast<const int64_t*>(group_counts), delta, dm, s, n, stream);
  }
}

}  // namespace

void bayes_match_cuda(uintptr_t received, int64_t C, int32_t dtype, uintptr_t order, uintptr_t tile_part,
                      uintptr_t tile_begin, uintptr_t tile_end, int64_t num_tiles, uintptr_t pert, uintptr_t part_rows,
                      int64_t max_part_rows, uintptr_t clean, uintptr_t group_counts, double delta, uintptr_t dmin,
                      uintptr_t sums, uintptr_t counts, uintptr_t stream) {
  if (num_tiles == 0) return;
  if (num_tiles > 0x7fffffff) throw std::invalid_argument("too many received rows for one launch");
  const Tiles tiles{reinterpret_cast<const int64_t*>(tile_part), reinterpret_cast<const int64_t*>(tile_begin),
                    reinterpret_cast<const int64_t*>(tile_end)};
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (dtype == 0) {
    dispatch_clean<float>(received, C, order, tiles, num_tiles, pert, part_rows, max_part_rows, clean, group_counts,
                          delta, dmin, sums, counts, s);
  } else {
    dispatch_clean<double>(received, C, order, tiles, num_tiles, pert, part_rows, max_part_rows, clean, group_counts,
                           delta, dmin, sums, counts, s);
  }
}

}  // namespace mgf
