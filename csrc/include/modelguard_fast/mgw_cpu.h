// ModelGuard-W on the CPU: the exact per-prediction LP solver over a batch.
#pragma once

#include <cstdint>

#include "modelguard_fast/common.h"

namespace mgf {

// Checks every row of x (B x C) like check_probability_rows and solves the
// ModelGuard-W LP (see mgw_solver.h) for it and every budget eps[0..E): out
// is B x E x C and feasible B x E. Infeasible (row, eps) pairs get the row
// unchanged. Arithmetic is float64 whatever T is; parallel over rows, each row
// sorted once for all E. Returns the first bad row (row -1 when all are
// good); out and feasible are then incomplete. allow_simd = false forces the
// portable row preparation (for tests: it gives the same bits).
template <typename T>
BatchCheck mgw_solve(const T* x, int64_t B, int64_t C, double sum_tol, const double* eps, int64_t E, double margin,
                     double log_shift, T* out, bool* feasible, bool allow_simd = true);

// Whether mgw_solve runs its AVX-512 row preparation (and block logs) on this CPU.
bool mgw_cpu_simd();

// The SIMD block log: out[q] = mgw_log(ys[q] + shift) for q < count. Only
// where mgw_cpu_simd().
void mgw_cpu_logs(const double* ys, int64_t count, double shift, double* out);

}  // namespace mgf
