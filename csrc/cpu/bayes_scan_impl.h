// Body of the Partial Bayes scan (declared in modelguard_fast/bayes_scan.h).
//
// Included once per instruction set by csrc/cpu/bayes_scan_*.cpp, which define
// MGF_BAYES_NS (the namespace of that copy), MGF_BAYES_VECTOR_BYTES (the
// native vector width) and MGF_BAYES_QUERIES (queries per register tile,
// sized so that the accumulators stay in registers). Nothing here may have
// external linkage other than the explicit instantiations of
// MGF_BAYES_NS::scan, and nothing from the C++ standard library is used: an
// inline function compiled for AVX-512 in one copy could otherwise be picked
// by the linker for all of them.
//
// Distances: for each (query, row) pair, sum over k = 0..C-1 in that order of
// |q[k] - p[k]| in T. A vector holds rows of one column, so each lane is such
// a sequential sum and the result does not depend on the vector width: every
// copy, the numpy reference and the CUDA kernel agree bit for bit.
#include "modelguard_fast/bayes_scan.h"

#if !defined(__GNUC__)
#error "the Partial Bayes scan needs GCC or Clang vector extensions"
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace mgf {
namespace MGF_BAYES_NS {
namespace {

constexpr int kVectorBytes = MGF_BAYES_VECTOR_BYTES;
// Vectors per block column.
constexpr int kParts = static_cast<int>(kBayesBlockBytes) / kVectorBytes;

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(kVectorBytes)));
  typedef int32_t M __attribute__((vector_size(kVectorBytes)));
  static constexpr int32_t kMagnitude = 0x7fffffff;
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(kVectorBytes)));
  typedef int64_t M __attribute__((vector_size(kVectorBytes)));
  static constexpr int64_t kMagnitude = 0x7fffffffffffffffLL;
};

// Distances are compared with the bound once per this many columns: partial
// sums only grow, so a partial sum above the bound proves the distance is.
constexpr int64_t kCheckColumns = 32;
// Blocks scanned by all query tiles of a group before moving on (kept in L2).
constexpr int64_t kChunkBytes = 256 * 1024;

// Whether any lane of acc[i * kParts + j] is <= bound[i] for the Q queries,
// and whether every lane is > bound[i] (the negation: distances are never NaN).
#if defined(__AVX512F__)
static_assert(kVectorBytes == 64, "AVX-512 masks are used for 64-byte vectors");
inline __mmask16 le_mask(const Vec<float>::V& a, const Vec<float>::V& b) {
  return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ);
}
inline __mmask8 le_mask(const Vec<double>::V& a, const Vec<double>::V& b) {
  return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ);
}

template <int Q, typename V>
inline bool any_le(const V* acc, const V* bound) {
  unsigned m = 0;
  for (int i = 0; i < Q; ++i) {
    for (int j = 0; j < kParts; ++j) m |= le_mask(acc[i * kParts + j], bound[i]);
  }
  return m != 0;
}
#else
template <int Q, typename V>
inline bool any_le(const V* acc, const V* bound) {
  auto m = acc[0] <= bound[0];
  for (int i = 0; i < Q; ++i) {
    for (int j = 0; j < kParts; ++j) m |= acc[i * kParts + j] <= bound[i];
  }
  uint64_t w[sizeof(m) / 8];
  __builtin_memcpy(w, &m, sizeof(m));
  uint64_t x = 0;
  for (unsigned i = 0; i < sizeof(m) / 8; ++i) x |= w[i];
  return x != 0;
}
#endif

template <int Q, typename V>
inline bool all_gt(const V* acc, const V* bound) {
  return !any_le<Q>(acc, bound);
}

// Adds row `src` of the clean data to query q's sum; `reset` empties it first.
template <typename T>
inline void take(const BayesScan<T>& s, int64_t q, int64_t src, bool reset) {
  double* acc = s.acc + q * s.C;
  if (reset) {
    for (int64_t k = 0; k < s.C; ++k) acc[k] = 0.0;
    s.count[q] = 0;
  }
  if (s.clean_rows != nullptr) {
    const T* row = s.clean_rows + src * s.C;
    for (int64_t k = 0; k < s.C; ++k) acc[k] += double(row[k]);
    s.count[q] += 1;
  } else {
    const double* sum = s.group_sums + src * s.C;
    for (int64_t k = 0; k < s.C; ++k) acc[k] += sum[k];
    s.count[q] += s.group_counts[src];
  }
}

// One row at distance d from query q, visited in table order. While no row is
// within delta, S holds the rows tied at the smallest distance so far; once
// one is, S holds every row within delta. Either way S ends as the rows within
// max(delta, smallest distance), as a second pass with that tolerance would
// find, and the rows of S are summed in table order.
template <typename T>
inline void visit(const BayesScan<T>& s, int64_t q, T d, int64_t src) {
  T& best = s.best[q];
  if (d <= s.delta) {
    take(s, q, src, best > s.delta);
  } else if (d < best) {
    take(s, q, src, true);
  } else if (d == best) {
    take(s, q, src, false);
  }
  if (d < best) best = d;
}

template <typename T, int Q>
void load_bounds(const BayesScan<T>& s, int64_t q0, typename Vec<T>::V* bound) {
  for (int i = 0; i < Q; ++i) {
    const T best = s.best[q0 + i];
    bound[i] = typename Vec<T>::V{} + (best > s.delta ? best : s.delta);
  }
}

// The rows of block b that may enter S: d holds the Q x W distances.
template <typename T, int Q>
__attribute__((noinline)) void settle_block(const BayesScan<T>& s, int64_t q0, int64_t b, const T* d) {
  constexpr int64_t W = bayes_block_rows<T>();
  const int32_t valid = s.valid[b];
  for (int i = 0; i < Q; ++i) {
    for (int32_t w = 0; w < valid; ++w) visit(s, q0 + i, d[i * W + w], s.source[b * W + w]);
  }
}

template <typename T, int Q>
void tile(const BayesScan<T>& s, int64_t q0, int64_t bb0, int64_t bb1) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::M M;
  constexpr int64_t W = bayes_block_rows<T>();
  constexpr int64_t L = kVectorBytes / sizeof(T);  // lanes per vector
  const int64_t C = s.C;
  const T* q[Q];
  for (int i = 0; i < Q; ++i) q[i] = s.queries[q0 + i];
  // bound[i] = max(delta, best) of query i; it only changes in settle_block.
  V bound[Q];
  load_bounds<T, Q>(s, q0, bound);

  for (int64_t b = bb0; b < bb1; ++b) {
    const T* block = s.blocks + b * C * W;
    V acc[Q * kParts];
    for (int i = 0; i < Q * kParts; ++i) acc[i] = V{};
    bool beyond = false;
    for (int64_t k = 0; k < C;) {
      const int64_t stop = C - k > kCheckColumns ? k + kCheckColumns : C;
      for (; k < stop; ++k) {
        V column[kParts];
        for (int j = 0; j < kParts; ++j) __builtin_memcpy(&column[j], block + k * W + j * L, sizeof(V));
        for (int i = 0; i < Q; ++i) {
          const T x = q[i][k];
          for (int j = 0; j < kParts; ++j) acc[i * kParts + j] += (V)((M)(x - column[j]) & Vec<T>::kMagnitude);
        }
      }
      if (k < C && all_gt<Q>(acc, bound)) {
        beyond = true;
        break;
      }
    }
    if (beyond || !any_le<Q>(acc, bound)) continue;
    alignas(kBayesBlockBytes) T d[Q * W];
    __builtin_memcpy(d, acc, sizeof d);
    settle_block<T, Q>(s, q0, b, d);
    load_bounds<T, Q>(s, q0, bound);
  }
}

template <typename T, int Q>
void tail_tile(const BayesScan<T>& s, int64_t q0, int64_t n, int64_t bb0, int64_t bb1) {
  if constexpr (Q > 1) {
    if (n < Q) {
      tail_tile<T, Q - 1>(s, q0, n, bb0, bb1);
      return;
    }
  }
  tile<T, Q>(s, q0, bb0, bb1);
}

}  // namespace

template <typename T>
void scan(const BayesScan<T>& s) {
  constexpr int Q = MGF_BAYES_QUERIES;
  const int64_t block_bytes = s.C * kBayesBlockBytes;
  const int64_t chunk = block_bytes >= kChunkBytes ? 1 : kChunkBytes / block_bytes;
  for (int64_t c0 = s.b0; c0 < s.b1; c0 += chunk) {
    const int64_t c1 = s.b1 - c0 > chunk ? c0 + chunk : s.b1;
    int64_t q0 = 0;
    for (; q0 + Q <= s.nq; q0 += Q) tile<T, Q>(s, q0, c0, c1);
    if (q0 < s.nq) tail_tile<T, Q>(s, q0, s.nq - q0, c0, c1);
  }
}

template void scan<float>(const BayesScan<float>&);
template void scan<double>(const BayesScan<double>&);

}  // namespace MGF_BAYES_NS
}  // namespace mgf
