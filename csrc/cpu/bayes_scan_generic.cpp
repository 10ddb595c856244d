// The Partial Bayes scan for any CPU, with 16-byte vectors (SSE2 on x86-64,
// NEON on 64-bit Arm).
#define MGF_BAYES_NS bayes_generic
#define MGF_BAYES_VECTOR_BYTES 16
#define MGF_BAYES_QUERIES 2
#include "bayes_scan_impl.h"
