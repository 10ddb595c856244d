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

// dtype: 0 = float32, 1 = float64. Per row: status (RowStatus), top-1 class,
// index of the answer in the class codebook (-1 when none) and its distance
// (in the input dtype). See mgf::search_packed for the codebook layout.
void mgs_search_cuda(uintptr_t x, int64_t B, int64_t C, int32_t dtype, double sum_tol, uintptr_t codebook,
                     uintptr_t offsets, double eps, int32_t mode, uintptr_t status, uintptr_t top,
                     uintptr_t index, uintptr_t distance, uintptr_t stream);

}  // namespace mgf
