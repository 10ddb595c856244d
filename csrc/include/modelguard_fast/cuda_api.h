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

}  // namespace mgf
