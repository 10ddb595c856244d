// ModelGuard-W's portable arithmetic, shared by the CPU and CUDA kernels, so
// both compute the same bits (no libm, and no FMA contraction in the files that
// include it): mgw_log, the natural logarithm every cost is taken with, and
// mgw_two_sum / mgw_lanes_total, the compensated summation of mgw_row_sum.
#pragma once

#include <cstdint>
#include <cstring>

#include "modelguard_fast/common.h"

namespace mgf {

MGF_HD inline uint64_t mgw_bits(double v) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(v));
#else
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
#endif
}

MGF_HD inline double mgw_from_bits(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
#endif
}

// Natural logarithm of a positive finite v: fdlibm's __ieee754_log (error
// below 1 ulp), written out here so the CPU and the GPU compute the same bits
// (their libm logs differ in the last place, which could tip comparisons).
MGF_HD inline double mgw_log(double v) {
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
               Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
               Lg7 = 1.479819860511658591e-01;
  uint64_t bits = mgw_bits(v);
  int32_t hx = static_cast<int32_t>(bits >> 32);
  int32_t k = 0;
  if (hx < 0x00100000) {  // subnormal: scale by 2^54
    v *= 1.80143985094819840000e+16;
    k -= 54;
    bits = mgw_bits(v);
    hx = static_cast<int32_t>(bits >> 32);
  }
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  const int32_t i = (hx + 0x95f64) & 0x100000;
  // Normalise the mantissa into [sqrt(2)/2, sqrt(2)).
  const uint64_t high = static_cast<uint64_t>(static_cast<uint32_t>(hx | (i ^ 0x3ff00000)));
  v = mgw_from_bits((high << 32) | (bits & 0xffffffffull));
  k += i >> 20;
  const double f = v - 1.0;
  const double dk = double(k);
  if ((0x000fffff & (2 + hx)) < 3) {  // |f| < 2^-20
    if (f == 0.0) return k == 0 ? 0.0 : dk * ln2_hi + dk * ln2_lo;
    const double R = f * f * (0.5 - 0.33333333333333333 * f);
    return k == 0 ? f - R : dk * ln2_hi - ((R - dk * ln2_lo) - f);
  }
  const double s = f / (2.0 + f);
  const double z = s * s;
  const double w = z * z;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  if (((hx - 0x6147a) | (0x6b851 - hx)) > 0) {
    const double hfsq = 0.5 * f * f;
    return k == 0 ? f - (hfsq - s * (hfsq + R)) : dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  }
  return k == 0 ? f - s * (f - R) : dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
}

// Row sum, compensated: rows that sum to 1 up to rounding should not look
// short of mass by the rounding of a naive sum. Entry k goes to lane k mod 8;
// each lane keeps its sum and the exact rounding errors (Knuth's TwoSum, no
// branches), so the lanes run in parallel (SIMD on the CPU); mgw_lanes_total
// then adds the lanes up in a fixed order.
constexpr int kMgwSumLanes = 8;

MGF_HD inline void mgw_two_sum(double& s, double& comp, double v) {
  const double t = s + v;
  const double vp = t - s;
  comp += (s - (t - vp)) + (v - vp);
  s = t;
}

MGF_HD inline double mgw_lanes_total(const double* s, const double* comp) {
  double total = 0.0, c = 0.0;
  for (int j = 0; j < kMgwSumLanes; ++j) mgw_two_sum(total, c, s[j]);
  for (int j = 0; j < kMgwSumLanes; ++j) c += comp[j];
  return total + c;
}

}  // namespace mgf
