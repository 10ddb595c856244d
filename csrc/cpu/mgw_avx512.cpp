// ModelGuard-W's per-row preparation for AVX-512 (CMakeLists.txt compiles this
// file with -mavx512f on x86-64; elsewhere it is empty and never called).
//
// The sort: 64-bit keys, the bit pattern of y (which orders like the value
// for y >= 0) with its lowest w bits replaced by the class index (w bits hold
// every index), sorted as unsigned integers by a bitonic network in registers.
// Keys are distinct and order like (y, class) except where two values agree
// in all but their lowest w bits; such runs (rare) are then put in order by
// the full (y, class). So the order is exactly mgw_heap_sort's.
#include "mgw_prepare.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "modelguard_fast/common.h"

namespace mgf {
namespace mgw_avx512 {
namespace {

// Not mgw_solver.h: its inline functions, compiled here for AVX-512, could be
// the copy the linker keeps for the portable code too. These three repeat its
// mgw_two_sum, mgw_lanes_total and mgw_key_less (a test checks the bits).
constexpr int kLanes = 8;  // kMgwSumLanes

inline void two_sum(double& s, double& comp, double v) {
  const double t = s + v;
  const double vp = t - s;
  comp += (s - (t - vp)) + (v - vp);
  s = t;
}

inline double lanes_total(const double* s, const double* comp) {
  double total = 0.0, c = 0.0;
  for (int j = 0; j < kLanes; ++j) two_sum(total, c, s[j]);
  for (int j = 0; j < kLanes; ++j) c += comp[j];
  return total + c;
}

inline bool key_less(double ya, int32_t ia, double yb, int32_t ib) { return ya < yb || (ya == yb && ia < ib); }

// The networks' loops have compile-time bounds: unrolled, the vectors stay in registers.
#define MGF_SORT_UNROLL _Pragma("GCC unroll 64")

// Lane i meets lane idx[i]; lanes in `upper` keep the larger key.
inline __m512i exchange(__m512i v, __m512i idx, __mmask8 upper) {
  const __m512i p = _mm512_permutexvar_epi64(idx, v);
  return _mm512_mask_max_epu64(_mm512_min_epu64(v, p), upper, v, p);
}

inline __m512i swap1() { return _mm512_set_epi64(6, 7, 4, 5, 2, 3, 0, 1); }
inline __m512i swap2() { return _mm512_set_epi64(5, 4, 7, 6, 1, 0, 3, 2); }
inline __m512i reverse4() { return _mm512_set_epi64(4, 5, 6, 7, 0, 1, 2, 3); }
inline __m512i reverse8() { return _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7); }

// Sorts the 8 lanes (a bitonic network).
inline __m512i sort8(__m512i v) {
  v = exchange(v, swap1(), 0xAA);
  v = exchange(v, reverse4(), 0xCC);
  v = exchange(v, swap1(), 0xAA);
  v = exchange(v, reverse8(), 0xF0);
  v = exchange(v, swap2(), 0xCC);
  return exchange(v, swap1(), 0xAA);
}

inline void min_max(__m512i& a, __m512i& b) {
  const __m512i lo = _mm512_min_epu64(a, b);
  b = _mm512_max_epu64(a, b);
  a = lo;
}

// Sorts each of two vectors whose lanes form bitonic sequences (the in-vector
// half-cleaners at distances 4, 2, 1, done on the pair at once).
inline void clean_pair(__m512i& a, __m512i& b) {
  __m512i x = _mm512_permutex2var_epi64(a, _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0), b);
  __m512i y = _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4), b);
  min_max(x, y);  // x = a0..a3 b0..b3, y = a4..a7 b4..b7
  __m512i x2 = _mm512_permutex2var_epi64(x, _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0), y);
  __m512i y2 = _mm512_permutex2var_epi64(x, _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2), y);
  min_max(x2, y2);  // x2 = a0 a1 b0 b1 a4 a5 b4 b5, y2 = a2 a3 b2 b3 a6 a7 b6 b7
  __m512i x3 = _mm512_unpacklo_epi64(x2, y2);
  __m512i y3 = _mm512_unpackhi_epi64(x2, y2);
  min_max(x3, y3);  // x3 = a0 a2 b0 b2 a4 a6 b4 b6, y3 = a1 a3 b1 b3 a5 a7 b5 b7
  a = _mm512_permutex2var_epi64(x3, _mm512_set_epi64(13, 5, 12, 4, 9, 1, 8, 0), y3);
  b = _mm512_permutex2var_epi64(x3, _mm512_set_epi64(15, 7, 14, 6, 11, 3, 10, 2), y3);
}

// Sorts the columns of r[0..8) (Knuth's 19-comparator network) and transposes,
// so each r[i] holds a sorted column.
inline void sort_columns8(__m512i* r) {
  static constexpr int kNet[19][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}, {0, 4}, {1, 5}, {2, 6}, {3, 7}, {0, 1}, {2, 3},
                                      {4, 5}, {6, 7}, {2, 4}, {3, 5}, {1, 4}, {3, 6}, {1, 2}, {3, 4}, {5, 6}};
  MGF_SORT_UNROLL
  for (const auto& c : kNet) min_max(r[c[0]], r[c[1]]);
  __m512i t[8], s[8];
  MGF_SORT_UNROLL
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);      // r(2i)[0] r(2i+1)[0] r(2i)[2] ...
    t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);  // columns 1, 3, 5, 7
  }
  const __m512i even = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
  const __m512i odd = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  MGF_SORT_UNROLL
  for (int h = 0; h < 2; ++h) {  // rows 0-3, then 4-7
    const __m512i* a = t + 4 * h;
    // s[.] = four rows' entries of columns (c, c + 4) for c = 0, 2, 1, 3.
    s[4 * h + 0] = _mm512_permutex2var_epi64(a[0], even, a[2]);
    s[4 * h + 1] = _mm512_permutex2var_epi64(a[0], odd, a[2]);
    s[4 * h + 2] = _mm512_permutex2var_epi64(a[1], even, a[3]);
    s[4 * h + 3] = _mm512_permutex2var_epi64(a[1], odd, a[3]);
  }
  // s[0]: columns 0 and 4 of rows 0-3 (as r0 r1 r2 r3 for column 0, then for 4);
  // s[1]: columns 2, 6; s[2]: columns 1, 5; s[3]: columns 3, 7; s[4..8) rows 4-7.
  static constexpr int kColumnOf[4] = {0, 2, 1, 3};
  MGF_SORT_UNROLL
  for (int i = 0; i < 4; ++i) {
    const int c = kColumnOf[i];
    r[c] = _mm512_shuffle_i64x2(s[i], s[4 + i], 0x44);
    r[c + 4] = _mm512_shuffle_i64x2(s[i], s[4 + i], 0xEE);
  }
}

// Sorts v[0..V) (V a power of two) as one ascending sequence of 8V keys.
template <int V>
inline void sort_vectors(__m512i* v) {
  if (V >= 8) {
    MGF_SORT_UNROLL
    for (int g = 0; g < V; g += 8) sort_columns8(v + g);
  } else {
    MGF_SORT_UNROLL
    for (int i = 0; i < V; ++i) v[i] = sort8(v[i]);
  }
  MGF_SORT_UNROLL
  for (int h = 1; h < V; h *= 2) {  // merge sorted runs of h vectors into runs of 2h
    MGF_SORT_UNROLL
    for (int base = 0; base < V; base += 2 * h) {
      MGF_SORT_UNROLL
      for (int j = 0; j < h; ++j) {  // first stage: key i of the run against key 16h - 1 - i
        __m512i& a = v[base + j];
        __m512i& b = v[base + 2 * h - 1 - j];
        const __m512i rb = _mm512_permutexvar_epi64(reverse8(), b);
        const __m512i lo = _mm512_min_epu64(a, rb);
        b = _mm512_permutexvar_epi64(reverse8(), _mm512_max_epu64(a, rb));
        a = lo;
      }
    }
    MGF_SORT_UNROLL
    for (int d = h / 2; d > 0; d /= 2) {  // half-cleaners at distances of whole vectors
      MGF_SORT_UNROLL
      for (int base = 0; base < V; base += 2 * d) {
        MGF_SORT_UNROLL
        for (int j = 0; j < d; ++j) min_max(v[base + j], v[base + j + d]);
      }
    }
    MGF_SORT_UNROLL
    for (int i = 0; i < V; i += 2) clean_pair(v[i], v[i + 1]);
  }
}

template <int V>
void sort_block(uint64_t* keys) {
  __m512i v[V];
  for (int i = 0; i < V; ++i) v[i] = _mm512_loadu_si512(keys + 8 * i);
  sort_vectors<V>(v);
  for (int i = 0; i < V; ++i) _mm512_storeu_si512(keys + 8 * i, v[i]);
}

void sort_keys(uint64_t* keys, int64_t padded) {
  switch (padded) {
    case 8:
      return sort_block<1>(keys);
    case 16:
      return sort_block<2>(keys);
    case 32:
      return sort_block<4>(keys);
    case 64:
      return sort_block<8>(keys);
    case 128:
      return sort_block<16>(keys);
    default:
      return sort_block<32>(keys);
  }
}

// Lanes j of a row chunk starting at k: C - k of them are in the row.
inline __mmask8 tail_mask(int64_t left) {
  return left >= 8 ? __mmask8(0xFF) : left <= 0 ? __mmask8(0) : __mmask8((1u << left) - 1u);
}

inline __m512d load_row(const double* y, __mmask8 m) { return _mm512_maskz_loadu_pd(m, y); }
inline __m512d load_row(const float* y, __mmask8 m) {
  return _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(__mmask16(m), y)));
}

// mgw_log (fdlibm's __ieee754_log) on 8 lanes: the same operations in the same
// order; every branch is computed and each lane takes its own.
inline __m512d log8(__m512d v) {
  const __m512d ln2_hi = _mm512_set1_pd(6.93147180369123816490e-01);
  const __m512d ln2_lo = _mm512_set1_pd(1.90821492927058770002e-10);
  const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd();
  const __m512i izero = _mm512_setzero_si512();
  __m512i hx = _mm512_srli_epi64(_mm512_castpd_si512(v), 32);
  const __mmask8 subnormal = _mm512_cmplt_epi64_mask(hx, _mm512_set1_epi64(0x00100000));
  v = _mm512_mask_mul_pd(v, subnormal, v, _mm512_set1_pd(1.80143985094819840000e+16));
  __m512i k = _mm512_maskz_mov_epi64(subnormal, _mm512_set1_epi64(-54));
  const __m512i bits = _mm512_castpd_si512(v);
  hx = _mm512_srli_epi64(bits, 32);
  k = _mm512_add_epi64(k, _mm512_sub_epi64(_mm512_srli_epi64(hx, 20), _mm512_set1_epi64(1023)));
  hx = _mm512_and_si512(hx, _mm512_set1_epi64(0x000fffff));
  const __m512i i = _mm512_and_si512(_mm512_add_epi64(hx, _mm512_set1_epi64(0x95f64)), _mm512_set1_epi64(0x100000));
  const __m512i high = _mm512_or_si512(hx, _mm512_xor_si512(i, _mm512_set1_epi64(0x3ff00000)));
  v = _mm512_castsi512_pd(_mm512_or_si512(_mm512_slli_epi64(high, 32),
                                          _mm512_and_si512(bits, _mm512_set1_epi64(0xffffffffll))));
  k = _mm512_add_epi64(k, _mm512_srli_epi64(i, 20));
  const __m512d f = _mm512_sub_pd(v, one);
  const __m512d dk = _mm512_cvtepi32_pd(_mm512_cvtepi64_epi32(k));
  const __mmask8 k0 = _mm512_cmpeq_epi64_mask(k, izero);
  const __m512d dk_hi = _mm512_mul_pd(dk, ln2_hi), dk_lo = _mm512_mul_pd(dk, ln2_lo);
  // |f| < 2^-20.
  const __mmask8 tiny = _mm512_cmplt_epi64_mask(
      _mm512_and_si512(_mm512_add_epi64(hx, _mm512_set1_epi64(2)), _mm512_set1_epi64(0x000fffff)), _mm512_set1_epi64(3));
  const __mmask8 f0 = _mm512_cmp_pd_mask(f, zero, _CMP_EQ_OQ);
  const __m512d tiny_zero = _mm512_mask_blend_pd(k0, _mm512_add_pd(dk_hi, dk_lo), zero);
  const __m512d Rt = _mm512_mul_pd(_mm512_mul_pd(f, f),
                                   _mm512_sub_pd(_mm512_set1_pd(0.5), _mm512_mul_pd(_mm512_set1_pd(0.33333333333333333), f)));
  const __m512d tiny_f = _mm512_mask_blend_pd(k0, _mm512_sub_pd(dk_hi, _mm512_sub_pd(_mm512_sub_pd(Rt, dk_lo), f)),
                                              _mm512_sub_pd(f, Rt));
  // The general case.
  const __m512d s = _mm512_div_pd(f, _mm512_add_pd(_mm512_set1_pd(2.0), f));
  const __m512d z = _mm512_mul_pd(s, s);
  const __m512d w = _mm512_mul_pd(z, z);
  const auto c = [](double x) { return _mm512_set1_pd(x); };
  const __m512d t1 = _mm512_mul_pd(
      w, _mm512_add_pd(c(3.999999999940941908e-01),
                       _mm512_mul_pd(w, _mm512_add_pd(c(2.222219843214978396e-01), _mm512_mul_pd(w, c(1.531383769920937332e-01))))));
  const __m512d t2 = _mm512_mul_pd(
      z, _mm512_add_pd(
             c(6.666666666666735130e-01),
             _mm512_mul_pd(w, _mm512_add_pd(c(2.857142874366239149e-01),
                                            _mm512_mul_pd(w, _mm512_add_pd(c(1.818357216161805012e-01),
                                                                           _mm512_mul_pd(w, c(1.479819860511658591e-01))))))));
  const __m512d R = _mm512_add_pd(t2, t1);
  const __mmask8 wide = _mm512_cmpgt_epi64_mask(
      _mm512_or_si512(_mm512_sub_epi64(hx, _mm512_set1_epi64(0x6147a)), _mm512_sub_epi64(_mm512_set1_epi64(0x6b851), hx)),
      izero);
  const __m512d hfsq = _mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(0.5), f), f);
  const __m512d shr = _mm512_mul_pd(s, _mm512_add_pd(hfsq, R));
  const __m512d wide_r = _mm512_mask_blend_pd(
      k0, _mm512_sub_pd(dk_hi, _mm512_sub_pd(_mm512_sub_pd(hfsq, _mm512_add_pd(shr, dk_lo)), f)),
      _mm512_sub_pd(f, _mm512_sub_pd(hfsq, shr)));
  const __m512d sfr = _mm512_mul_pd(s, _mm512_sub_pd(f, R));
  const __m512d narrow_r = _mm512_mask_blend_pd(k0, _mm512_sub_pd(dk_hi, _mm512_sub_pd(_mm512_sub_pd(sfr, dk_lo), f)),
                                                _mm512_sub_pd(f, sfr));
  __m512d out = _mm512_mask_blend_pd(wide, narrow_r, wide_r);
  out = _mm512_mask_blend_pd(tiny, out, _mm512_mask_blend_pd(f0, tiny_f, tiny_zero));
  return out;
}

// Lane sums of the row in its own dtype, as check_probability_row keeps them.
struct CheckSum {
  __m512d d = _mm512_setzero_pd();
  __m256 f = _mm256_setzero_ps();
  void add(__m512d v, const double*) { d = _mm512_add_pd(d, v); }
  void add(__m512d v, const float*) { f = _mm256_add_ps(f, _mm512_cvtpd_ps(v)); }
  double total(const double*) const {
    alignas(64) double lane[8];
    _mm512_store_pd(lane, d);
    double t = 0.0;
    for (double v : lane) t += v;
    return t;
  }
  double total(const float*) const {
    alignas(32) float lane[8];
    _mm256_store_ps(lane, f);
    double t = 0.0;
    for (float v : lane) t += double(v);
    return t;
  }
};

}  // namespace

template <typename T>
int32_t prepare(const T* y, int64_t C, double sum_tol, int64_t* top, double* row_sum, uint64_t* keys, double* values,
                int32_t* perm, double* ys, double* Y) {
  const int64_t n = C - 1;
  const int64_t padded = padded_keys(C);
  int w = 1;
  while ((int64_t(1) << w) < C) ++w;
  const uint64_t mask = (uint64_t(1) << w) - 1;
  const __m512i high = _mm512_set1_epi64(static_cast<long long>(~mask));
  const __m512i all_ones = _mm512_set1_epi64(-1);
  const __m512d zero = _mm512_setzero_pd();
  const __m512d largest = _mm512_set1_pd(double(std::numeric_limits<T>::max()));
  // One pass: the checks of check_probability_row (finite, >= 0, the sum in
  // T's lanes, the largest bit pattern), the keys, the values and the row sum
  // (lane j of mgw_row_sum is lane j here; the zeros past the row's end leave
  // every lane's sums and errors unchanged).
  __m512d s = zero, comp = zero;
  CheckSum check;
  __m512i best = _mm512_setzero_si512();
  __mmask8 bad = 0;
  __m512i index = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  for (int64_t k = 0; k < padded; k += 8) {
    const __mmask8 m = tail_mask(C - k);
    const __m512d v = load_row(y + k, m);
    bad |= _mm512_mask_cmp_pd_mask(m, v, zero, _CMP_NGE_UQ) | _mm512_mask_cmp_pd_mask(m, v, largest, _CMP_NLE_UQ);
    check.add(v, y);
    best = _mm512_max_epi64(best, _mm512_castpd_si512(v));
    const __m512d t = _mm512_add_pd(s, v);
    const __m512d vp = _mm512_sub_pd(t, s);
    comp = _mm512_add_pd(comp, _mm512_add_pd(_mm512_sub_pd(s, _mm512_sub_pd(t, vp)), _mm512_sub_pd(v, vp)));
    s = t;
    const __m512d pos = _mm512_add_pd(v, zero);  // -0.0 becomes +0.0
    _mm512_mask_storeu_pd(values + k, m, pos);
    const __m512i key = _mm512_or_si512(_mm512_and_si512(_mm512_castpd_si512(pos), high), index);
    _mm512_storeu_si512(keys + k, _mm512_mask_blend_epi64(m, all_ones, key));
    index = _mm512_add_epi64(index, _mm512_set1_epi64(8));
  }
  if (bad) return kRowNonFinite;  // the caller asks check_probability_row which
  const double total = check.total(y);
  if (!(std::fabs(total - 1.0) <= sum_tol)) return kRowBadSum;
  // The first class holding the largest value (its bits: the values are >= 0).
  const __m512i top_bits = _mm512_set1_epi64(_mm512_reduce_max_epi64(best));
  int64_t t = C - 1;  // (as check_probability_row, should no entry hold it: all -0.0)
  for (int64_t k = 0; k < C; k += 8) {
    const __mmask8 m = tail_mask(C - k);
    const __mmask8 hit = _mm512_mask_cmpeq_epi64_mask(m, _mm512_castpd_si512(load_row(y + k, m)), top_bits);
    if (hit) {
      t = k + __builtin_ctz(hit);
      break;
    }
  }
  *top = t;
  keys[t] = ~uint64_t(0);
  alignas(64) double lane_sum[kLanes], lane_comp[kLanes];
  _mm512_store_pd(lane_sum, s);
  _mm512_store_pd(lane_comp, comp);
  *row_sum = lanes_total(lane_sum, lane_comp);

  sort_keys(keys, padded);

  // Runs of keys that agree above the index bits; keys[n] (the top class's,
  // all ones) ends every run.
  __mmask8 runs = 0;
  const __m128i shift = _mm_cvtsi32_si128(w);
  for (int64_t q = 0; q < n; q += 8) {
    const __mmask8 m = tail_mask(n - q);
    const __m512i a = _mm512_loadu_si512(keys + q);
    const __m512i b = _mm512_maskz_loadu_epi64(m, keys + q + 1);
    runs |= _mm512_mask_cmpeq_epi64_mask(m, _mm512_srl_epi64(_mm512_xor_si512(a, b), shift), _mm512_setzero_si512());
  }
  if (runs) {
    const auto less = [&](uint64_t a, uint64_t b) {
      return key_less(values[a & mask], int32_t(a & mask), values[b & mask], int32_t(b & mask));
    };
    for (int64_t i = 0; i < n;) {
      int64_t j = i + 1;
      while (j < n && ((keys[j - 1] ^ keys[j]) >> w) == 0) ++j;
      for (int64_t a = i + 1; a < j; ++a) {
        const uint64_t v = keys[a];
        int64_t b = a;
        for (; b > i && less(v, keys[b - 1]); --b) keys[b] = keys[b - 1];
        keys[b] = v;
      }
      i = j;
    }
  }

  const __m512i low = _mm512_set1_epi64(static_cast<long long>(mask));
  for (int64_t q = 0; q < n; q += 8) {
    const __mmask8 m = tail_mask(n - q);
    const __m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi64(m, keys + q), low);
    _mm512_mask_cvtepi64_storeu_epi32(perm + q, m, k);
    _mm512_mask_storeu_pd(ys + q, m, _mm512_mask_i64gather_pd(_mm512_setzero_pd(), m, k, values, 8));
  }
  // mgw_prefix's blocked prefix sums (blocks of 8: one vector each). Lane j
  // of a block's running sum is lane j - 1's plus ys[j], one lane at a time;
  // the blocks are independent, so their chains overlap.
  constexpr int kBlocks = (kMaxClasses + 7) / 8;
  __m512d local[kBlocks];
  const __m512i previous = _mm512_set_epi64(6, 5, 4, 3, 2, 1, 0, 0);
  const int64_t blocks = (n + 7) / 8;
  for (int64_t b = 0; b < blocks; ++b) {
    const __m512d v = _mm512_maskz_loadu_pd(tail_mask(n - 8 * b), ys + 8 * b);
    __m512d l = v;
    for (int j = 1; j < 8; ++j) {
      l = _mm512_mask_add_pd(l, __mmask8(1u << j), _mm512_permutexvar_pd(previous, l), v);
    }
    local[b] = l;
  }
  double base = 0.0;
  Y[0] = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    const __m512d y = _mm512_add_pd(_mm512_set1_pd(base), local[b]);
    _mm512_mask_storeu_pd(Y + 1 + 8 * b, tail_mask(n - 8 * b), y);
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, y);
    base = lanes[7];
  }
  return kRowOk;
}

template int32_t prepare<float>(const float*, int64_t, double, int64_t*, double*, uint64_t*, double*, int32_t*, double*,
                                double*);
template int32_t prepare<double>(const double*, int64_t, double, int64_t*, double*, uint64_t*, double*, int32_t*,
                                 double*, double*);

void logs(const double* ys, int64_t count, double shift, double* out) {
  const __m512d add = _mm512_set1_pd(shift);
  for (int64_t q = 0; q < count; q += 8) {
    const __mmask8 m = tail_mask(count - q);
    _mm512_mask_storeu_pd(out + q, m, log8(_mm512_add_pd(_mm512_maskz_loadu_pd(m, ys + q), add)));
  }
}

}  // namespace mgw_avx512
}  // namespace mgf
#endif
