#include <algorithm>
#include <cstring>
#include <vector>

#include "modelguard_fast/mgw_cpu.h"
#include "modelguard_fast/mgw_solver.h"
#include "modelguard_fast/parallel.h"

namespace mgf {
namespace {

// Sort keys laid out so that strided views over them serve as the solver's
// ys / perm workspace without a copy.
struct Key {
  double y;
  int32_t index;
};
static_assert(sizeof(Key) == 2 * sizeof(double), "Key must be two doubles wide");

struct Scratch {
  std::vector<Key> keys, tmp;
  std::vector<double> cs, Y, Cc;
};

// Below this many classes the heapsort the GPU runs is as fast as the radix sort.
constexpr int64_t kRadixMinKeys = 64;

inline uint32_t high_bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return static_cast<uint32_t>(b >> 32);
}

// Sorts keys that arrive in class order ascending by (y, class): a stable LSD
// radix sort on the high 32 bits of y's bit pattern (monotone in y >= 0, so
// equal values keep their class order), then runs sharing those bits, which
// are rare and short, are ordered by the full value. Same order as
// mgw_heap_sort, a few times faster than a comparison sort from ~100 keys.
void radix_sort(Key* keys, Key* tmp, int64_t n) {
  uint32_t count[4][256];
  std::memset(count, 0, sizeof count);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t h = high_bits(keys[i].y);
    ++count[0][h & 255];
    ++count[1][(h >> 8) & 255];
    ++count[2][(h >> 16) & 255];
    ++count[3][h >> 24];
  }
  Key* src = keys;
  Key* dst = tmp;
  const uint32_t first = high_bits(keys[0].y);
  for (int b = 0; b < 4; ++b) {
    uint32_t* c = count[b];
    const int shift = 8 * b;
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
  if (src != keys) std::copy(src, src + n, keys);
  const auto less = [](const Key& a, const Key& b) { return mgw_key_less(a.y, a.index, b.y, b.index); };
  for (int64_t i = 0; i < n;) {
    const uint32_t h = high_bits(keys[i].y);
    int64_t j = i + 1;
    while (j < n && high_bits(keys[j].y) == h) ++j;
    if (j - i > 1) std::sort(keys + i, keys + j, less);
    i = j;
  }
}

template <typename T>
void solve_row(const T* y, int64_t C, const double* eps, int64_t E, double margin, double log_shift, T* out,
               bool* feasible, Scratch& s) {
  const int64_t n = C - 1;
  int64_t top = 0;
  for (int64_t k = 1; k < C; ++k) {
    if (y[k] > y[top]) top = k;
  }
  s.keys.resize(static_cast<size_t>(C));
  s.tmp.resize(static_cast<size_t>(C));
  s.cs.resize(static_cast<size_t>(C));
  s.Y.resize(static_cast<size_t>(C));
  s.Cc.resize(static_cast<size_t>(C));
  const MgwWorkspace ws{
      StridedSpan<double>{&s.keys.data()->y, int64_t(sizeof(Key) / sizeof(double))},
      StridedSpan<int32_t>{&s.keys.data()->index, int64_t(sizeof(Key) / sizeof(int32_t))},
      StridedSpan<double>{s.cs.data(), 1},
      StridedSpan<double>{s.Y.data(), 1},
      StridedSpan<double>{s.Cc.data(), 1},
  };
  mgw_gather(y, C, top, ws);
  if (n >= kRadixMinKeys) {
    radix_sort(s.keys.data(), s.tmp.data(), n);
  } else {
    mgw_heap_sort(ws.ys, ws.perm, n);
  }
  mgw_prefix(ws, n, log_shift);
  MgwRow row(ws, n, double(y[top]), log_shift, mgw_row_sum(y, C));
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
}

}  // namespace

template <typename T>
void mgw_solve(const T* x, int64_t B, int64_t C, const double* eps, int64_t E, double margin, double log_shift,
               T* out, bool* feasible) {
  // Sorting plus a few dozen O(log C) slope evaluations per budget.
  const int64_t work = C * 8 + E * 512;
  parallel_for(B, work, [&](int64_t i) {
    thread_local Scratch scratch;
    solve_row(x + i * C, C, eps, E, margin, log_shift, out + i * E * C, feasible + i * E, scratch);
  });
}

template void mgw_solve<float>(const float*, int64_t, int64_t, const double*, int64_t, double, double, float*, bool*);
template void mgw_solve<double>(const double*, int64_t, int64_t, const double*, int64_t, double, double, double*,
                                bool*);

}  // namespace mgf
