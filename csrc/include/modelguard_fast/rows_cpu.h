// Batch forms of the probability-row check (common.h) that are not tied to
// one defense.
#pragma once

#include <cstdint>

#include "modelguard_fast/common.h"

namespace mgf {

// A checked copy: check_probability_row writes each row to `out` as it checks
// it, in one pass over the batch (the pass-through defense); x is read once,
// so the rows in `out` are the rows checked. On a bad row the first one is reported and `out` holds
// unchecked rows. Parallel over rows.
template <typename T>
BatchCheck check_copy_rows(const T* x, int64_t B, int64_t C, double sum_tol, T* out);

}  // namespace mgf
