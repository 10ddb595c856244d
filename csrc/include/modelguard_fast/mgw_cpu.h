// ModelGuard-W on the CPU: the exact per-prediction LP solver over a batch.
#pragma once

#include <cstdint>

namespace mgf {

// Solves the ModelGuard-W LP (see mgw_solver.h) for every row of x (B x C,
// rows already validated) and every budget eps[0..E): out is B x E x C and
// feasible B x E. Infeasible (row, eps) pairs get the row unchanged. Arithmetic
// is float64 whatever T is; parallel over rows, each row sorted once for all E.
template <typename T>
void mgw_solve(const T* x, int64_t B, int64_t C, const double* eps, int64_t E, double margin, double log_shift,
               T* out, bool* feasible);

}  // namespace mgf
