// Eight-lane sums on the host, in explicit SIMD vectors.
//
// The row check (common.h) and the L1 distances (l1.h) keep eight
// independent lanes (column k goes to lane k % 8) so that their summation
// order is fixed. Written as arrays of eight scalars, GCC leaves those loops
// scalar (measured: 100 ns to check a 100-column float32 row); here the lanes
// live in GCC/Clang vector types of 16 bytes (the x86-64 baseline, SSE2), two
// float32 or four float64 vectors per eight lanes, or of 32 bytes in the
// x86-64-v3 module (MGF_WIDE_LANES, set for every file of that module only, so
// that one module never holds both widths: CMakeLists.txt). Each lane still adds its
// own columns left to right with the same IEEE operations, so every result is
// bit for bit that of the scalar form, which the CUDA kernels compile.
#pragma once

#if !defined(__CUDACC__)
#define MGF_HOST_LANES 1

#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

namespace mgf {
namespace lanes {

#if defined(MGF_WIDE_LANES)
#if !defined(__AVX2__)
#error "MGF_WIDE_LANES needs AVX2"
#endif
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif

template <typename T>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = int32_t;
};
template <>
struct KeyOf<double> {
  using type = int64_t;
};

// Eight lanes of T (or of its same-width integer) as N vectors of W lanes each.
template <typename T>
struct Lanes {
  using Key = typename KeyOf<T>::type;
  static constexpr int W = kBytes / static_cast<int>(sizeof(T));
  static constexpr int N = 8 / W;
  typedef T V __attribute__((vector_size(kBytes)));
  typedef Key K __attribute__((vector_size(kBytes)));
};

#define MGF_LANES_INLINE inline __attribute__((always_inline))

// The eight values at p (unaligned), into v[0..N). Vectors are filled one
// by one and read back by element, never through memory as a block, so that
// they stay in registers.
template <typename T>
MGF_LANES_INLINE void load(const T* p, typename Lanes<T>::V* v) {
  using L = Lanes<T>;
  for (int n = 0; n < L::N; ++n) std::memcpy(&v[n], p + n * L::W, sizeof(typename L::V));
}

template <typename V, typename T, size_t... I>
MGF_LANES_INLINE V gather(const T* p, int64_t first, int64_t n, T fill, std::index_sequence<I...>) {
  return V{(first + int64_t(I) < n ? p[first + int64_t(I)] : fill)...};
}

// The n < 8 values at p, the other lanes set to `fill`. Each vector is built
// from its elements in registers (element stores to a vector in memory,
// reloaded whole, would stall the load).
template <typename T>
MGF_LANES_INLINE void load_tail(const T* p, int64_t n, T fill, typename Lanes<T>::V* v) {
  using L = Lanes<T>;
  for (int i = 0; i < L::N; ++i) {
    v[i] = gather<typename L::V>(p, int64_t(i) * L::W, n, fill, std::make_index_sequence<L::W>{});
  }
}

// Stores the eight lanes at out (unaligned), vector by vector.
template <typename T, typename Vec>
MGF_LANES_INLINE void store_row(const Vec* v, T* out) {
  constexpr int W = kBytes / static_cast<int>(sizeof(T));
  for (int n = 0; n < 8 / W; ++n) std::memcpy(out + n * W, &v[n], sizeof(Vec));
}

// Lane j of the eight held in v[0..N).
template <typename T, typename Vec>
MGF_LANES_INLINE T lane(const Vec* v, int j) {
  constexpr int W = kBytes / static_cast<int>(sizeof(T));
  return v[j / W][j % W];
}

// combine_lanes of l1.h: ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)).
template <typename T>
MGF_LANES_INLINE T combine(const typename Lanes<T>::V* v) {
  return ((lane<T>(v, 0) + lane<T>(v, 1)) + (lane<T>(v, 2) + lane<T>(v, 3))) +
         ((lane<T>(v, 4) + lane<T>(v, 5)) + (lane<T>(v, 6) + lane<T>(v, 7)));
}

// |v| lane by lane: the sign bit cleared, as fabs does.
template <typename T>
MGF_LANES_INLINE typename Lanes<T>::V magnitude(typename Lanes<T>::V v) {
  using L = Lanes<T>;
  const typename L::K mask = typename L::K{} + std::numeric_limits<typename L::Key>::max();
  return (typename L::V)((typename L::K)v & mask);
}

// The lane-wise select m ? a : b for masks of all ones / all zeros.
template <typename K>
MGF_LANES_INLINE K select(K m, K a, K b) {
  return (a & m) | (b & ~m);
}

}  // namespace lanes
}  // namespace mgf

#endif  // !__CUDACC__
