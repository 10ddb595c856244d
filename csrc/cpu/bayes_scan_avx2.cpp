// The Partial Bayes scan for AVX2 (CMakeLists.txt compiles this file with
// -mavx2 on x86-64; elsewhere it is empty and never called).
#if defined(__AVX2__)
#define MGF_BAYES_NS bayes_avx2
#define MGF_BAYES_VECTOR_BYTES 32
#define MGF_BAYES_QUERIES 4
#include "bayes_scan_impl.h"
#endif
