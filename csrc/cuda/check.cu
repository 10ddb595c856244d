// The probability-row check on the GPU: one thread per row runs
// mgf::check_probability_row, the function the CPU kernels run, so a row gets
// the same verdict (and top-1 class) on either device.
#include <cuda_runtime.h>

#include <stdexcept>

#include "cuda_check.h"
#include "modelguard_fast/common.h"
#include "modelguard_fast/cuda_api.h"

namespace mgf {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void check_rows_kernel(const T* __restrict__ x, int64_t B, int64_t C, double sum_tol, int32_t* status,
                                  int64_t* top) {
  for (int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; row < B;
       row += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = 0;
    int64_t col = -1;
    double value = 0.0;
    status[row] = check_probability_row(x + row * C, C, sum_tol, &t, &col, &value);
    top[row] = t;
  }
}

}  // namespace

void check_rows_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t status,
                     uintptr_t top, uintptr_t stream) {
  if (B == 0) return;
  const int64_t wanted = (B + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(wanted < 65535 ? wanted : 65535);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  auto* sp = reinterpret_cast<int32_t*>(status);
  auto* tp = reinterpret_cast<int64_t*>(top);
  if (dtype == 0) {
    check_rows_kernel<float><<<blocks, kThreads, 0, s>>>(reinterpret_cast<const float*>(x), B, C, sum_tol, sp, tp);
  } else if (dtype == 1) {
    check_rows_kernel<double><<<blocks, kThreads, 0, s>>>(reinterpret_cast<const double*>(x), B, C, sum_tol, sp, tp);
  } else {
    throw std::invalid_argument("dtype must be 0 (float32) or 1 (float64)");
  }
  check_cuda(cudaGetLastError(), "check_rows_kernel launch");
}

}  // namespace mgf
