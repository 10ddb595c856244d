#include <cstring>
#include <vector>

#include "modelguard_fast/parallel.h"
#include "modelguard_fast/rows_cpu.h"

namespace mgf {

template <typename T>
BatchCheck check_copy_rows(const T* x, int64_t B, int64_t C, double sum_tol, T* out) {
  std::vector<int32_t> codes(static_cast<size_t>(B), kRowOk);
  parallel_for(B, C, [&](int64_t i) {
    int64_t top = 0, col = -1;
    double value = 0.0;
    codes[i] = check_probability_row(x + i * C, C, sum_tol, &top, &col, &value);
    std::memcpy(out + i * C, x + i * C, static_cast<size_t>(C) * sizeof(T));
  });
  BatchCheck check;
  for (int64_t i = 0; i < B; ++i) {
    if (codes[i] != kRowOk) {
      int64_t top = 0;
      check.row = i;
      check.code = check_probability_row(x + i * C, C, sum_tol, &top, &check.col, &check.value);
      break;
    }
  }
  return check;
}

template BatchCheck check_copy_rows<float>(const float*, int64_t, int64_t, double, float*);
template BatchCheck check_copy_rows<double>(const double*, int64_t, int64_t, double, double*);

}  // namespace mgf
