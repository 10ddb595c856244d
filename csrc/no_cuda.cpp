// Stand-ins for the CUDA entry points in a build without a CUDA compiler.
#include <stdexcept>

#include "modelguard_fast/cuda_api.h"

namespace mgf {

namespace {
[[noreturn]] void built_without_cuda() {
  throw std::runtime_error(
      "modelguard_fast was built without CUDA (no CUDA compiler was found at build time, or "
      "MODELGUARD_FAST_CUDA=OFF); reinstall with nvcc on the PATH to use GPU inputs");
}
}  // namespace

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

void check_rows_cuda(uintptr_t, int64_t, int64_t, int32_t, double, uintptr_t, uintptr_t, uintptr_t) {
  built_without_cuda();
}

void mgs_search_cuda(uintptr_t, int64_t, int64_t, int32_t, double, uintptr_t, uintptr_t, uintptr_t, double, int32_t,
                     uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t) {
  built_without_cuda();
}

void bayes_match_cuda(uintptr_t, int64_t, int32_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, int64_t, uintptr_t,
                      uintptr_t, int64_t, uintptr_t, uintptr_t, double, uintptr_t, uintptr_t, uintptr_t, uintptr_t) {
  built_without_cuda();
}

void mgw_solve_cuda(uintptr_t, int64_t, int64_t, int32_t, double, uintptr_t, int64_t, double, double, uintptr_t,
                    uintptr_t, int64_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t) {
  built_without_cuda();
}

}  // namespace mgf
