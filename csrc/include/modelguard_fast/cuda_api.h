// Host-side entry points of the CUDA kernels. Pointers are device addresses
// passed as integers by the Python layer, which owns every allocation; work is
// queued on `stream` (the caller's current stream). In a build without CUDA,
// csrc/no_cuda.cpp defines them to throw.
#pragma once

#include <cstdint>

namespace mgf {

bool cuda_built();
// Number of visible CUDA devices; 0 when there is no driver or no device.
int cuda_device_count();

// mgf::check_probability_row over each row of a B x C batch (dtype: 0 = float32,
// 1 = float64): status (RowStatus) and top-1 class per row. See csrc/cuda/check.cu.
void check_rows_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t status,
                     uintptr_t top, uintptr_t stream);

// dtype: 0 = float32, 1 = float64. Per row: status (RowStatus), top-1 class,
// index of the answer in the class codebook (-1 when none) and its distance
// (in the input dtype). Class t's codebook is rows [starts[t], ends[t]) of
// `codebook` (int64 arrays of C entries): packed codebooks (see
// mgf::search_packed) pass offsets and offsets + 1; a growing device copy
// leaves room after each class.
void mgs_search_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t codebook,
                     uintptr_t starts, uintptr_t ends, double eps, int32_t mode, uintptr_t status, uintptr_t top,
                     uintptr_t index, uintptr_t distance, uintptr_t stream);

// Partial Bayes matching (see csrc/cuda/bayes.cu). dtype as above, for the
// received rows, the perturbed table and dmin. Received rows order[begin, end)
// of tile t all have class tile_part[t]; class p owns table rows
// [part_rows[p], part_rows[p + 1]). `clean` holds the clean rows in table
// order (dtype), or, when group_counts is non-zero, float64 group sums with
// those int64 weights. dmin (+inf), sums (B x C float64, zero) and counts
// (B int64, zero) are set by the caller and accumulated into.
void bayes_match_cuda(uintptr_t received, int64_t C, int32_t dtype, uintptr_t order, uintptr_t tile_part,
                      uintptr_t tile_begin, uintptr_t tile_end, int64_t num_tiles, uintptr_t pert, uintptr_t part_rows,
                      int64_t max_part_rows, uintptr_t clean, uintptr_t group_counts, double delta, uintptr_t dmin,
                      uintptr_t sums, uintptr_t counts, uintptr_t stream);
// ModelGuard-W: one thread per row (grid-stride over rows), each thread with a
// private workspace in global memory that the caller allocates from
// mgw_cuda_workspace. x: B x C, eps: E float64, out: B x E x C (x's dtype),
// feasible: B x E bool, status: B int32 (RowStatus; rows that fail it are left
// unsolved). See mgw_solver.h.
void mgw_solve_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t eps, int64_t E,
                    double margin, double log_shift, uintptr_t workspace_f64, uintptr_t workspace_i32,
                    int64_t threads, uintptr_t out, uintptr_t feasible, uintptr_t status, uintptr_t stream);

// Workspace of mgw_solve_cuda for a B x C batch: the thread count, then the
// number of float64 and of int32 elements to allocate. Threads are capped so
// the workspace stays within kMgwWorkspaceBytes.
constexpr int64_t kMgwMaxThreads = int64_t(1) << 17;
constexpr int64_t kMgwWorkspaceBytes = int64_t(1) << 30;

struct MgwCudaWorkspace {
  int64_t threads;
  int64_t f64;
  int64_t i32;
};

inline MgwCudaWorkspace mgw_cuda_workspace(int64_t B, int64_t C) {
  const int64_t n = C > 1 ? C - 1 : 1;
  const int64_t f64_per_thread = 4 * n + 3;  // sorted y, costs and their sums (see MgwWorkspace)
  const int64_t bytes_per_thread = 8 * f64_per_thread + 4 * n;
  int64_t threads = kMgwWorkspaceBytes / bytes_per_thread;
  if (threads > kMgwMaxThreads) threads = kMgwMaxThreads;
  if (threads > B) threads = B;
  if (threads < 1) threads = 1;
  return {threads, threads * f64_per_thread, threads * n};
}

}  // namespace mgf
