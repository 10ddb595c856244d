// Where the indexed codebook search spends its work: counters over a stream of
// queries, in a benchmark build of csrc/cpu/mgs_index.cpp (MGF_INDEX_STATS).
// benchmarks/index_stats.py writes the streams, builds this and runs it:
//
//   index_stats BOOK.f32 QUERIES.f32 C eps size...
//
// BOOK and QUERIES hold float32 rows of C columns. For each size, the first
// `size` rows are indexed at once and every query is searched in the
// first-admissible order; it prints the mean per query of coarse nodes tested,
// row sketches tested and full distances computed, and the time per query,
// against the linear scan of the same rows (whose answers must match).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "modelguard_fast/mgs_index.h"

namespace {

std::vector<float> read_rows(const char* path) {
  std::vector<float> v;
  FILE* f = std::fopen(path, "rb");
  if (!f) {
    std::perror(path);
    std::exit(1);
  }
  float buf[4096];
  size_t n;
  while ((n = std::fread(buf, sizeof(float), 4096, f)) > 0) v.insert(v.end(), buf, buf + n);
  std::fclose(f);
  return v;
}

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s BOOK.f32 QUERIES.f32 C eps size...\n", argv[0]);
    return 2;
  }
  const std::vector<float> book = read_rows(argv[1]);
  const std::vector<float> queries = read_rows(argv[2]);
  const int64_t C = std::atoll(argv[3]);
  const float eps = static_cast<float>(std::atof(argv[4]));
  const int64_t Q = static_cast<int64_t>(queries.size()) / C;
  for (int a = 5; a < argc; ++a) {
    const int64_t n = std::atoll(argv[a]);
    mgf::ClassIndex<float> index;
    double t0 = seconds();
    index.update(book.data(), n, C);
    const double t_build = seconds() - t0;
    mgf::index_stats = mgf::IndexStats{};
    int64_t hits = 0, mismatches = 0;
    t0 = seconds();
    std::vector<int64_t> got(Q);
    for (int64_t i = 0; i < Q; ++i) got[i] = index.search(&queries[i * C], book.data(), 0, n, C, eps, mgf::kSearchFirst).index;
    const double t_index = seconds() - t0;
    t0 = seconds();
    for (int64_t i = 0; i < Q; ++i) {
      const int64_t want = mgf::search_codebook(&queries[i * C], book.data(), 0, n, C, eps, mgf::kSearchFirst).index;
      hits += want >= 0;
      mismatches += want != got[i];
    }
    const double t_linear = seconds() - t0;
    std::printf("n=%lld build %.1f ms | per query: %.1f nodes, %.1f sketches, %.1f rows | %.2f us indexed, "
                "%.2f us linear | hits %.3f mismatches %lld\n",
                (long long)n, t_build * 1e3, double(mgf::index_stats.nodes) / Q, double(mgf::index_stats.sketches) / Q,
                double(mgf::index_stats.rows) / Q, t_index / Q * 1e6, t_linear / Q * 1e6, double(hits) / Q,
                (long long)mismatches);
  }
  return 0;
}
