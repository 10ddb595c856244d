// ModelGuard-W on the GPU: one thread per row, running the per-row solver of
// mgw_solver.h that the CPU runs too. This file is compiled without FMA
// contraction (see CMakeLists.txt) so both give the same bits.
#include <cuda_runtime.h>

#include <stdexcept>

#include "cuda_check.h"
#include "modelguard_fast/cuda_api.h"
#include "modelguard_fast/mgw_solver.h"

namespace mgf {
namespace {

constexpr int kThreadsPerBlock = 128;

// Thread `tid` owns element q of each workspace array at q * threads + tid, so
// threads of a warp reading the same q touch consecutive addresses.
template <typename T>
__global__ void mgw_kernel(const T* __restrict__ x, int64_t B, int64_t C, double sum_tol,
                           const double* __restrict__ eps, int64_t E, double margin, double log_shift,
                           double* workspace_f64, int32_t* workspace_i32, int64_t threads, T* __restrict__ out,
                           bool* __restrict__ feasible, int32_t* __restrict__ status) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tid >= threads) return;
  const int64_t n = C - 1;
  double* w = workspace_f64 + tid;
  const MgwWorkspace ws{
      StridedSpan<double>{w, threads},
      StridedSpan<int32_t>{workspace_i32 + tid, threads},
      StridedSpan<double>{w + n * threads, threads},
      StridedSpan<double>{w + 2 * n * threads, threads},
      StridedSpan<double>{w + (3 * n + 1) * threads, threads},
  };
  for (int64_t row = tid; row < B; row += threads) {
    const T* y = x + row * C;
    int64_t top = 0, bad_col = -1;
    double bad_value = 0.0;
    const int32_t code = check_probability_row(y, C, sum_tol, &top, &bad_col, &bad_value);
    status[row] = code;
    if (code != kRowOk) continue;
    mgw_gather(y, C, top, ws);
    mgw_heap_sort(ws.ys, ws.perm, n);
    mgw_prefix(ws, n);
    MgwRow solver(ws, n, double(y[top]), log_shift, mgw_row_sum(y, C));
    for (int64_t e = 0; e < E; ++e) {
      T* xe = out + (row * E + e) * C;
      double level = 0.0;
      const bool ok = solver.solve(eps[e], margin, &level);
      feasible[row * E + e] = ok;
      if (ok) {
        solver.write(level, y, top, xe);
      } else {
        for (int64_t k = 0; k < C; ++k) xe[k] = y[k];
      }
    }
  }
}

template <typename T>
void launch(uintptr_t x, int64_t B, int64_t C, double sum_tol, uintptr_t eps, int64_t E, double margin,
            double log_shift, uintptr_t workspace_f64, uintptr_t workspace_i32, int64_t threads, uintptr_t out,
            uintptr_t feasible, uintptr_t status, cudaStream_t stream) {
  const int64_t blocks = (threads + kThreadsPerBlock - 1) / kThreadsPerBlock;
  mgw_kernel<T><<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(
      reinterpret_cast<const T*>(x), B, C, sum_tol, reinterpret_cast<const double*>(eps), E, margin, log_shift,
      reinterpret_cast<double*>(workspace_f64), reinterpret_cast<int32_t*>(workspace_i32), threads,
      reinterpret_cast<T*>(out), reinterpret_cast<bool*>(feasible), reinterpret_cast<int32_t*>(status));
  check_cuda(cudaGetLastError(), "mgw_kernel launch");
}

}  // namespace

void mgw_solve_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t eps, int64_t E,
                    double margin, double log_shift, uintptr_t workspace_f64, uintptr_t workspace_i32,
                    int64_t threads, uintptr_t out, uintptr_t feasible, uintptr_t status, uintptr_t stream) {
  if (B == 0 || E == 0) return;
  if (C < 1) throw std::invalid_argument("mgw_solve_cuda: needs at least one column");
  const MgwCudaWorkspace need = mgw_cuda_workspace(B, C);
  if (threads < 1 || threads > need.threads) {
    throw std::invalid_argument("mgw_solve_cuda: threads must be in [1, mgw_cuda_workspace(B, C).threads]");
  }
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (dtype == 0) {
    launch<float>(x, B, C, sum_tol, eps, E, margin, log_shift, workspace_f64, workspace_i32, threads, out, feasible,
                  status, s);
  } else {
    launch<double>(x, B, C, sum_tol, eps, E, margin, log_shift, workspace_f64, workspace_i32, threads, out,
                   feasible, status, s);
  }
}

}  // namespace mgf
