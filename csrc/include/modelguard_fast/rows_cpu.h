// Batch forms of the probability-row check (common.h) that are not tied to
// one defense.
#pragma once

#include <cstdint>

#include "modelguard_fast/common.h"

namespace mgf {

// A checked copy: each row is checked with check_probability_row and copied
// to `out` while it is still in cache, in one pass over the batch (the
// pass-through defense). On a bad row the first one is reported and `out` is
// left partly written. Parallel over rows.
template <typename T>
BatchCheck check_copy_rows(const T* x, int64_t B, int64_t C, double sum_tol, T* out);

}  // namespace mgf
