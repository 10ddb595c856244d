// The Partial Bayes scan for AVX-512 (CMakeLists.txt compiles this file with
// -mavx512f on x86-64; elsewhere it is empty and never called).
#if defined(__AVX512F__)
#define MGF_BAYES_NS bayes_avx512
#define MGF_BAYES_VECTOR_BYTES 64
#define MGF_BAYES_QUERIES 8
#include "bayes_scan_impl.h"
#endif
