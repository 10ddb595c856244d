#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <cstring>
#include <vector>

#include "modelguard_fast/mgw_cpu.h"
#include "modelguard_fast/mgw_solver.h"
#include "modelguard_fast/parallel.h"
#include "mgw_prepare.h"

namespace mgf {
namespace {

struct Key {
  double y;
  int32_t index;
};

struct Scratch {
  std::vector<Key> keys, tmp;
  std::vector<uint64_t> packed;
  std::vector<double> values, ys, cs, Y, Cc;
  std::vector<int32_t> perm;
};

// Below this many classes the heapsort the GPU runs is as fast as the radix sort.
constexpr int64_t kRadixMinKeys = 64;

inline uint32_t high_bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return static_cast<uint32_t>(b >> 32);
}

// Runs longer than this are sorted with std::sort, shorter ones by insertion.
constexpr int64_t kInsertionRun = 16;

// Sorts keys that arrive in class order ascending by (y, class): a stable LSD
// radix sort (three 8-bit passes) on the top 24 bits of y's bit pattern, which
// order like the values for y >= 0 (equal values keep their class order), then
// runs sharing those bits (values within a relative 2^-12 of each other,
// usually short) are ordered by the full key. Same order as mgw_heap_sort, a
// few times faster than a comparison sort from ~100 keys. Returns whichever of
// keys and tmp holds the result.
Key* radix_sort(Key* keys, Key* tmp, int64_t n) {
  uint32_t count[3][256];
  std::memset(count, 0, sizeof count);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t h = high_bits(keys[i].y);
    ++count[0][(h >> 8) & 255];
    ++count[1][(h >> 16) & 255];
    ++count[2][h >> 24];
  }
  Key* src = keys;
  Key* dst = tmp;
  const uint32_t first = high_bits(keys[0].y);
  for (int b = 0; b < 3; ++b) {
    uint32_t* c = count[b];
    const int shift = 8 * (b + 1);
    if (c[(first >> shift) & 255] == static_cast<uint32_t>(n)) continue;  // one digit value: nothing moves
    uint32_t sum = 0;
    for (int d = 0; d < 256; ++d) {
      const uint32_t t = c[d];
      c[d] = sum;
      sum += t;
    }
    for (int64_t i = 0; i < n; ++i) dst[c[(high_bits(src[i].y) >> shift) & 255]++] = src[i];
    std::swap(src, dst);
  }
  const auto less = [](const Key& a, const Key& b) { return mgw_key_less(a.y, a.index, b.y, b.index); };
  for (int64_t i = 0; i < n;) {
    const uint32_t h = high_bits(src[i].y) >> 8;
    int64_t j = i + 1;
    while (j < n && (high_bits(src[j].y) >> 8) == h) ++j;
    if (j - i > kInsertionRun) {
      std::sort(src + i, src + j, less);
    } else {
      for (int64_t a = i + 1; a < j; ++a) {
        const Key v = src[a];
        int64_t b = a;
        for (; b > i && less(v, src[b - 1]); --b) src[b] = src[b - 1];
        src[b] = v;
      }
    }
    i = j;
  }
  return src;
}

// Checks the row, sorts the classes other than its top class into ws (ys,
// perm, Y) and finds the row sum: in one AVX-512 pass where allowed, else by
// the GPU kernel's own steps (a radix sort for long rows). Both give the same
// bits. Returns the row's check code (kRowOk, or a code that may differ from
// check_probability_row's).
template <typename T>
int32_t prepare_row(const T* y, int64_t C, double sum_tol, bool simd, int64_t* top, double* row_sum, Scratch& s,
                    const MgwWorkspace& ws) {
  const int64_t n = C - 1;
#if defined(MGF_MGW_X86_SIMD)
  if (simd && n > 0 && C <= mgw_avx512::kMaxClasses) {
    s.packed.resize(static_cast<size_t>(mgw_avx512::padded_keys(C)));
    s.values.resize(static_cast<size_t>(C));
    return mgw_avx512::prepare(y, C, sum_tol, top, row_sum, s.packed.data(), s.values.data(), s.perm.data(),
                               s.ys.data(), s.Y.data());
  }
#else
  (void)simd;
#endif
  int64_t bad_col = -1;
  double bad_value = 0.0;
  const int32_t code = check_probability_row(y, C, sum_tol, top, &bad_col, &bad_value);
  if (code != kRowOk) return code;
  if (n >= kRadixMinKeys) {
    s.keys.resize(static_cast<size_t>(n));
    s.tmp.resize(static_cast<size_t>(n));
    for (int64_t k = 0, q = 0; k < C; ++k) {
      if (k != *top) s.keys[q++] = Key{double(y[k]) + 0.0, static_cast<int32_t>(k)};
    }
    const Key* sorted = radix_sort(s.keys.data(), s.tmp.data(), n);
    for (int64_t q = 0; q < n; ++q) {
      s.ys[q] = sorted[q].y;
      s.perm[q] = sorted[q].index;
    }
  } else {
    mgw_gather(y, C, *top, ws);
    mgw_heap_sort(ws.ys, ws.perm, n);
  }
  mgw_prefix(ws, n);
  *row_sum = mgw_row_sum(y, C);
  return kRowOk;
}

// Checks one row and solves it for every budget; returns the row's check code
// (nothing is written for a bad row).
template <typename T>
int32_t solve_row(const T* y, int64_t C, double sum_tol, const double* eps, int64_t E, double margin,
                  double log_shift, T* out, bool* feasible, bool simd, Scratch& s) {
  const int64_t n = C - 1;
  s.ys.resize(static_cast<size_t>(C));
  s.perm.resize(static_cast<size_t>(C));
  s.cs.resize(static_cast<size_t>(C));
  s.Y.resize(static_cast<size_t>(C));
  s.Cc.resize(static_cast<size_t>(C + 1));
  const MgwWorkspace ws{
      StridedSpan<double>{s.ys.data(), 1},   StridedSpan<int32_t>{s.perm.data(), 1},
      StridedSpan<double>{s.cs.data(), 1},   StridedSpan<double>{s.Y.data(), 1},
      StridedSpan<double>{s.Cc.data(), 1},
  };
  int64_t top = 0;
  double row_sum = 0.0;
  const int32_t code = prepare_row(y, C, sum_tol, simd, &top, &row_sum, s, ws);
  if (code != kRowOk) return code;
  MgwRow row(ws, n, double(y[top]), log_shift, row_sum);
#if defined(MGF_MGW_X86_SIMD)
  if (simd) row.use_log_block(mgw_avx512::logs);
#endif
  for (int64_t e = 0; e < E; ++e) {
    T* x = out + e * C;
    double level = 0.0;
    feasible[e] = row.solve(eps[e], margin, &level);
    if (feasible[e]) {
      row.write(level, y, top, x);
    } else {
      std::copy(y, y + C, x);
    }
  }
  return kRowOk;
}

}  // namespace

bool mgw_cpu_simd() {
#if defined(MGF_MGW_X86_SIMD)
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
#else
  return false;
#endif
}

void mgw_cpu_logs(const double* ys, int64_t count, double shift, double* out) {
#if defined(MGF_MGW_X86_SIMD)
  if (mgw_cpu_simd()) return mgw_avx512::logs(ys, count, shift, out);
#endif
  (void)ys;
  (void)count;
  (void)shift;
  (void)out;
  throw std::logic_error("mgw_cpu_logs: no SIMD block log on this CPU/build");
}

template <typename T>
BatchCheck mgw_solve(const T* x, int64_t B, int64_t C, double sum_tol, const double* eps, int64_t E, double margin,
                     double log_shift, T* out, bool* feasible, bool allow_simd) {
  const bool simd = allow_simd && mgw_cpu_simd();
  std::atomic<int64_t> first_bad{B};
  // Checking and sorting plus a few dozen O(log C) slope evaluations per budget.
  const int64_t work = C * 8 + E * 512;
  parallel_for(B, work, [&](int64_t i) {
    thread_local Scratch scratch;
    const int32_t code =
        solve_row(x + i * C, C, sum_tol, eps, E, margin, log_shift, out + i * E * C, feasible + i * E, simd, scratch);
    if (code != kRowOk) {
      int64_t seen = first_bad.load(std::memory_order_relaxed);
      while (i < seen && !first_bad.compare_exchange_weak(seen, i, std::memory_order_relaxed)) {
      }
    }
  });
  BatchCheck check;
  const int64_t row = first_bad.load();
  if (row < B) {
    int64_t top = 0;
    check.row = row;
    check.code = check_probability_row(x + row * C, C, sum_tol, &top, &check.col, &check.value);
  }
  return check;
}

template BatchCheck mgw_solve<float>(const float*, int64_t, int64_t, double, const double*, int64_t, double, double,
                                     float*, bool*, bool);
template BatchCheck mgw_solve<double>(const double*, int64_t, int64_t, double, const double*, int64_t, double,
                                      double, double*, bool*, bool);

}  // namespace mgf
