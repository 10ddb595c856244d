#include <mutex>

#include "modelguard_fast/parallel.h"
#include "modelguard_fast/rows_cpu.h"

namespace mgf {

template <typename T>
BatchCheck check_copy_rows(const T* x, int64_t B, int64_t C, double sum_tol, T* out) {
  // The check writes each row to `out` as it reads it (x is read once), so the
  // rows returned are the rows checked even while another thread rewrites x.
  BatchCheck check;
  std::mutex bad_mutex;
  parallel_for(B, C, [&](int64_t i) {
    int64_t col = -1;
    double value = 0.0;
    const int32_t code = check_probability_row<T, false>(x + i * C, C, sum_tol, nullptr, &col, &value, out + i * C);
    if (code != kRowOk) {
      std::lock_guard<std::mutex> lock(bad_mutex);
      if (check.row < 0 || i < check.row) check = BatchCheck{i, code, col, value};
    }
  });
  return check;
}

template BatchCheck check_copy_rows<float>(const float*, int64_t, int64_t, double, float*);
template BatchCheck check_copy_rows<double>(const double*, int64_t, int64_t, double, double*);

}  // namespace mgf
