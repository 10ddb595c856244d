// The inner loop of the Partial Bayes matcher on the CPU: one query group
// scanned against one block range of a blocked table.
//
// The scan is compiled once per instruction set (csrc/cpu/bayes_scan_*.cpp)
// and chosen at run time, so a portable build still uses AVX-512 where the
// CPU has it. Each copy lives in its own namespace: sharing a symbol between
// copies would let the linker keep the AVX-512 one for every caller.
#pragma once

#include <cstdint>

namespace mgf {

// Rows of a blocked table are stored in blocks of kBayesBlockBytes / sizeof(T)
// rows, column-major inside a block ("SoA"): block b, column k, lane w is at
// values[(b * C + k) * W + w]. One column of a block is one 64-byte vector.
constexpr int64_t kBayesBlockBytes = 64;

template <typename T>
constexpr int64_t bayes_block_rows() {
  return kBayesBlockBytes / static_cast<int64_t>(sizeof(T));
}

enum BayesIsa : int32_t {
  kIsaAuto = 0,
  kIsaGeneric = 1,
  kIsaAvx2 = 2,
  kIsaAvx512 = 3,
};

// One scan: queries `queries[0..nq)` (pointers to C values each) against blocks
// [b0, b1). Per query it keeps `best` (the smallest distance seen, +inf at
// first) and the set S of rows within max(delta, best), as a float64 sum of
// their clean rows (`acc`, nq x C) and their weight (`count`). When the scan
// of all blocks ends, S is exactly {rows : distance <= max(delta, min distance)}.
//
// Row sources: `source[b * W + w]` names the clean data of a row (-1 for the
// padding lanes of a block, which `valid[b]` excludes). With `clean_rows` it
// indexes C values of T with weight 1; otherwise `group_sums` (C float64
// values) with weight `group_counts`.
template <typename T>
struct BayesScan {
  const T* blocks;
  const int32_t* valid;
  const int64_t* source;
  int64_t C;
  int64_t b0;
  int64_t b1;
  const T* const* queries;
  int64_t nq;
  T delta;
  const T* clean_rows;
  const double* group_sums;
  const int64_t* group_counts;
  T* best;
  double* acc;
  int64_t* count;
};

namespace bayes_generic {
template <typename T>
void scan(const BayesScan<T>& s);
}
namespace bayes_avx2 {
template <typename T>
void scan(const BayesScan<T>& s);
}
namespace bayes_avx512 {
template <typename T>
void scan(const BayesScan<T>& s);
}

}  // namespace mgf
