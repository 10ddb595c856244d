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

#if defined(__SSE2__)
#include <immintrin.h>
#endif

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

// Makes the compiler hold v[0..N) in registers as loaded: it may not fold the
// load into each instruction that uses it (x86 AVX encodings take unaligned
// memory operands), which would read the memory once per use. Rows that
// another thread may rewrite meanwhile (a caller's buffer) must be read once,
// so the row checked is the row copied (check_probability_row). No
// instruction is emitted.
template <typename V>
MGF_LANES_INLINE void pin(V* v, int n) {
  for (int i = 0; i < n; ++i) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm volatile("" : "+x"(v[i]));
#elif defined(__GNUC__) && defined(__aarch64__)
    asm volatile("" : "+w"(v[i]));
#elif defined(__GNUC__)
    asm volatile("" : "+m"(v[i]));
#endif
  }
}

template <typename V, typename T, size_t... I>
MGF_LANES_INLINE V gather(const T* p, int64_t first, int64_t n, T fill, std::index_sequence<I...>) {
  return V{(first + int64_t(I) < n ? p[first + int64_t(I)] : fill)...};
}

template <typename K, size_t... I>
MGF_LANES_INLINE K iota(std::index_sequence<I...>) {
  return K{typename std::remove_reference<decltype(K{}[0])>::type(I)...};
}

// The n < 8 values at p, the other lanes set to `fill`: with AVX2, one masked
// load per vector (lanes past n are not read); else each vector is built from
// its elements in registers (element stores to a vector in memory, reloaded
// whole, would stall the load).
template <typename T>
MGF_LANES_INLINE void load_tail(const T* p, int64_t n, T fill, typename Lanes<T>::V* v) {
  using L = Lanes<T>;
#if defined(__AVX2__)
  if constexpr (kBytes == 32) {
    using K = typename L::K;
    const K index = iota<K>(std::make_index_sequence<L::W>{});
    const typename L::V fills = typename L::V{} + fill;
    for (int i = 0; i < L::N; ++i) {
      const K in = index < typename L::Key(n - int64_t(i) * L::W);
      typename L::V loaded;
      if constexpr (sizeof(T) == 4) {
        loaded = (typename L::V)_mm256_maskload_ps(reinterpret_cast<const float*>(p) + i * L::W, (__m256i)in);
      } else {
        loaded = (typename L::V)_mm256_maskload_pd(reinterpret_cast<const double*>(p) + i * L::W, (__m256i)in);
      }
      v[i] = (typename L::V)(((K)loaded & in) | ((K)fills & ~in));
    }
    return;
  }
#endif
  for (int i = 0; i < L::N; ++i) {
    v[i] = gather<typename L::V>(p, int64_t(i) * L::W, n, fill, std::make_index_sequence<L::W>{});
  }
}

// Stores the first n < 8 lanes of v[0..N) at out. For float32 with AVX2, in
// at most three stores of 4, 2 and 1 lanes (a masked store, vmaskmovps, is
// microcoded and slow on AMD cores).
template <typename T>
MGF_LANES_INLINE void store_tail(const typename Lanes<T>::V* v, int64_t n, T* out) {
  using L = Lanes<T>;
#if defined(__AVX2__)
  if constexpr (kBytes == 32 && sizeof(T) == 4) {
    float* o = reinterpret_cast<float*>(out);
    __m128 part = _mm256_castps256_ps128((__m256)v[0]);
    if (n & 4) {
      _mm_storeu_ps(o, part);
      part = _mm256_extractf128_ps((__m256)v[0], 1);
      o += 4;
    }
    if (n & 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(o), part);
      part = _mm_movehl_ps(part, part);
      o += 2;
    }
    if (n & 1) _mm_store_ss(o, part);
    return;
  }
#endif
  for (int64_t j = 0; j < n; ++j) out[j] = v[j / L::W][j % L::W];
}

// True when any bit of the integer vector m is set.
template <typename K>
MGF_LANES_INLINE bool any_set(K m) {
#if defined(__AVX__)
  if constexpr (sizeof(K) == 32) return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#endif
#if defined(__SSE2__)
  if constexpr (sizeof(K) == 16) return _mm_movemask_epi8((__m128i)m) != 0;
#endif
  uint64_t words[sizeof(K) / 8];
  std::memcpy(words, &m, sizeof(K));
  uint64_t bits = 0;
  for (uint64_t w : words) bits |= w;
  return bits != 0;
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
// With the eight lanes in one vector, the same tree by shuffles (an IEEE sum
// is commutative, so lane j + lane j ^ 1 is s_j + s_(j^1) in either order).
template <typename T>
MGF_LANES_INLINE T combine(const typename Lanes<T>::V* v) {
#if defined(__GNUC__) && !defined(__clang__)
  if constexpr (Lanes<T>::N == 1) {
    using K = typename Lanes<T>::K;
    typename Lanes<T>::V s = v[0];
    s += __builtin_shuffle(s, K{1, 0, 3, 2, 5, 4, 7, 6});
    s += __builtin_shuffle(s, K{2, 3, 0, 1, 6, 7, 4, 5});
    return s[0] + s[4];
  }
#endif
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

// The lexicographic best of the lanes of (key, at): the largest key, and of
// the lanes holding it the smallest at (any order of comparisons gives it).
template <typename K>
MGF_LANES_INLINE void best_lane(K key, K at, typename std::remove_reference<decltype(K{}[0])>::type* best_key,
                                typename std::remove_reference<decltype(K{}[0])>::type* best_at) {
  using Key = typename std::remove_reference<decltype(K{}[0])>::type;
  constexpr int W = sizeof(K) / sizeof(Key);
#if defined(__GNUC__) && !defined(__clang__)
  const K index = iota<K>(std::make_index_sequence<W>{});
  for (int half = W / 2; half >= 1; half /= 2) {  // unrolled: constant shuffles
    const K partner = index ^ Key(half);
    const K k2 = __builtin_shuffle(key, partner);
    const K a2 = __builtin_shuffle(at, partner);
    const K up = (k2 > key) | ((k2 == key) & (a2 < at));
    key = select(up, k2, key);
    at = select(up, a2, at);
  }
  *best_key = key[0];
  *best_at = at[0];
#else
  Key k = key[0], a = at[0];
  for (int j = 1; j < W; ++j) {
    if (key[j] > k || (key[j] == k && at[j] < a)) {
      k = key[j];
      a = at[j];
    }
  }
  *best_key = k;
  *best_at = a;
#endif
}

}  // namespace lanes
}  // namespace mgf

#endif  // !__CUDACC__
