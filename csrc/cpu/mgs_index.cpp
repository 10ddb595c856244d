#include "modelguard_fast/mgs_index.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#if defined(MGF_INDEX_STATS)
// A benchmark build's counters (see benchmarks/index_stats.cpp): nodes whose
// box was tested, rows whose sketch was, rows whose full distance was computed.
namespace mgf {
IndexStats index_stats;
}
#define MGF_COUNT(field) (++::mgf::index_stats.field)
#else
#define MGF_COUNT(field) ((void)0)
#endif

namespace mgf {

// Spreads `mass.size()` items over `groups` groups, heaviest first, each to the group of least mass so far.
static std::vector<int32_t> spread(const std::vector<double>& mass, int groups) {
  const int64_t n = static_cast<int64_t>(mass.size());
  std::vector<int64_t> items(static_cast<size_t>(n));
  std::iota(items.begin(), items.end(), 0);
  std::stable_sort(items.begin(), items.end(), [&](int64_t a, int64_t b) { return mass[a] > mass[b]; });
  std::vector<int32_t> out(static_cast<size_t>(n));
  std::vector<double> load(static_cast<size_t>(groups), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int g = i < groups ? static_cast<int>(i)
                             : static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    out[items[i]] = g;
    load[g] += mass[items[i]];
  }
  return out;
}

template <typename T>
void ClassIndex<T>::choose_groups(const T* rows, int64_t n, int64_t C) {
  D_ = static_cast<int>(std::min<int64_t>(C, kSketch));
  G_ = std::min(D_, kCoarse);
  std::vector<double> mass(static_cast<size_t>(C), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t k = 0; k < C; ++k) mass[k] += std::fabs(double(rows[j * C + k]));
  }
  group_ = spread(mass, D_);
  std::vector<double> group_mass(static_cast<size_t>(D_), 0.0);
  for (int64_t k = 0; k < C; ++k) group_mass[group_[k]] += mass[k];
  coarse_ = spread(group_mass, G_);
}

template <typename T>
void ClassIndex<T>::sketch_of(const T* row, int64_t C, double* out, double* norm) const {
  std::fill(out, out + D_, 0.0);
  double total = 0.0;
  for (int64_t k = 0; k < C; ++k) {
    out[group_[k]] += double(row[k]);
    total += std::fabs(double(row[k]));
  }
  *norm = total;
}

template <typename T>
void ClassIndex<T>::coarse_of(const double* sketch, double* out) const {
  std::fill(out, out + G_, 0.0);
  for (int g = 0; g < D_; ++g) out[coarse_[g]] += sketch[g];
}

template <typename T>
void ClassIndex<T>::round_sketch(const double* sketch, float* fine, float* coarse) const {
  double c[kSketch];
  coarse_of(sketch, c);
  for (int k = 0; k < D_; ++k) fine[k] = static_cast<float>(sketch[k]);
  for (int k = 0; k < G_; ++k) coarse[k] = static_cast<float>(c[k]);
}

template <typename T>
int32_t ClassIndex<T>::build_node(Segment* s, const float* coarse, int64_t begin, int64_t end) const {
  const int G = G_;
  const int64_t first = s->first;
  const int32_t id = static_cast<int32_t>(s->nodes.size());
  s->nodes.push_back(Node{begin, end, 0, 0});
  s->boxes.resize(static_cast<size_t>(id + 1) * 2 * G);
  float* lo = s->boxes.data() + static_cast<int64_t>(id) * 2 * G;
  float* hi = lo + G;
  std::fill(lo, lo + G, INFINITY);
  std::fill(hi, hi + G, -INFINITY);
  int64_t* order = s->order.data();
  int64_t min_row = order[begin], max_row = order[begin];
  for (int64_t p = begin; p < end; ++p) {
    const float* c = coarse + (order[p] - first) * G;
    for (int k = 0; k < G; ++k) {
      lo[k] = std::min(lo[k], c[k]);
      hi[k] = std::max(hi[k], c[k]);
    }
    min_row = std::min(min_row, order[p]);
    max_row = std::max(max_row, order[p]);
  }
  s->nodes[id].min_row = min_row;
  s->nodes[id].max_row = max_row;
  if (end - begin <= kLeafRows) {
    std::sort(order + begin, order + end);
    return id;
  }
  // Split at the median of the widest coarse group: the boxes shrink where
  // the rows spread most, in few dimensions, so they part as the tree deepens.
  int widest = 0;
  for (int k = 1; k < G; ++k) {
    if (hi[k] - lo[k] > hi[widest] - lo[widest]) widest = k;
  }
  auto key = [&](int64_t row) {  // NaN last: a strict weak order
    const float v = coarse[(row - first) * G + widest];
    return std::isnan(v) ? INFINITY : v;
  };
  const int64_t mid = begin + (end - begin) / 2;
  std::nth_element(order + begin, order + mid, order + end, [&](int64_t a, int64_t b) {
    const float ka = key(a), kb = key(b);
    return ka < kb || (ka == kb && a < b);
  });
  const int32_t left = build_node(s, coarse, begin, mid);
  const int32_t right = build_node(s, coarse, mid, end);
  s->nodes[id].left = left;
  s->nodes[id].right = right;
  return id;
}

template <typename T>
typename ClassIndex<T>::Segment ClassIndex<T>::build(int64_t first, int64_t last, const double* sketches,
                                                     double norm) const {
  const int64_t n = last - first;
  Segment s;
  s.first = first;
  s.last = last;
  s.norm = norm;
  // Each row's rounded sketch and coarse sketch, once, in row order.
  std::vector<float> fine(static_cast<size_t>(n * D_)), coarse(static_cast<size_t>(n * G_));
  for (int64_t j = 0; j < n; ++j) round_sketch(sketches + j * D_, fine.data() + j * D_, coarse.data() + j * G_);
  s.order.resize(static_cast<size_t>(n));
  std::iota(s.order.begin(), s.order.end(), first);
  s.nodes.reserve(static_cast<size_t>(4 * n / kLeafRows + 1));
  build_node(&s, coarse.data(), 0, n);
  s.sketch.resize(static_cast<size_t>(n * D_));
  for (int64_t p = 0; p < n; ++p) std::copy_n(fine.data() + (s.order[p] - first) * D_, D_, s.sketch.data() + p * D_);
  return s;
}

template <typename T>
void ClassIndex<T>::update(const T* rows, int64_t n, int64_t C) {
  std::vector<double> sketches;
  while (n - indexed_ >= kTailRows) {
    if (D_ == 0) choose_groups(rows, n, C);
    // The largest segment the counter allows (many rows at once: a bulk load).
    int64_t size = kTailRows;
    while (size * 2 <= n - indexed_ &&
           (segments_.empty() || size * 2 <= segments_.back().last - segments_.back().first)) {
      size *= 2;
    }
    sketches.resize(static_cast<size_t>(size * D_));
    double norm = 0.0;
    for (int64_t j = 0; j < size; ++j) {
      double row_norm;
      sketch_of(rows + (indexed_ + j) * C, C, sketches.data() + j * D_, &row_norm);
      norm = std::max(norm, row_norm);
    }
    segments_.push_back(build(indexed_, indexed_ + size, sketches.data(), norm));
    indexed_ += size;
    while (segments_.size() >= 2) {
      const Segment& b = segments_[segments_.size() - 1];
      const Segment& a = segments_[segments_.size() - 2];
      if (a.last - a.first != b.last - b.first) break;
      // The two segments' (rounded) sketches, back in row order.
      sketches.resize(static_cast<size_t>((b.last - a.first) * D_));
      for (const Segment* s : {&a, &b}) {
        for (int64_t p = 0; p < s->last - s->first; ++p) {
          std::copy_n(s->sketch.data() + p * D_, D_, sketches.data() + (s->order[p] - a.first) * D_);
        }
      }
      Segment merged = build(a.first, b.last, sketches.data(), std::max(a.norm, b.norm));
      segments_.pop_back();
      segments_.back() = std::move(merged);
    }
  }
}

template <typename T>
void ClassIndex<T>::truncate(int64_t n) {
  while (!segments_.empty() && segments_.back().last > n) segments_.pop_back();
  if (segments_.empty()) {
    clear();
    return;
  }
  indexed_ = segments_.back().last;
}

template <typename T>
void ClassIndex<T>::clear() {
  segments_.clear();
  group_.clear();
  coarse_.clear();
  D_ = G_ = 0;
  indexed_ = 0;
}

// The largest L1 norm of a query and a row for which a sketch is skipped: their sums then stay far below
// float32's largest value (3.4e38), so rounding them to float32 is off by a relative uf at most.
constexpr double kMaxNorm = 1e30;

template <typename T>
double ClassIndex<T>::prune_threshold(T bound, const Query& q, const Segment& s, int64_t C) const {
  const double u = std::numeric_limits<T>::epsilon() / 2;        // unit roundoff of the scan
  const double ud = std::numeric_limits<double>::epsilon() / 2;  // of the sums
  const double uf = std::numeric_limits<float>::epsilon() / 2;   // of the stored sketches
  // The scan's distance is >= (1 - u)^m times the real L1 distance, m the
  // roundings a term goes through: its subtraction and its additions, at most
  // C in any order of summation (l1.h's: ceil(C / 8) in its lane and 3 in the
  // lane tree); 1 - 2mu is below that.
  const double m = double(C + 8);
  const double real_bound = double(bound) / (1.0 - 2.0 * m * u);
  // A float64 sum of n values is off by at most (n - 1) ud times the sum of
  // their magnitudes: a sketch, and a coarse sketch (a sum of a sketch's
  // sums), by at most (C + D) ud times the row's L1 norm; rounding it to
  // float32 (once, or twice for a coarse sketch summed from a merged
  // segment's rounded sketches) adds at most 2 uf times that norm. The
  // query's and a row's together, with a factor 2 for margin; and an absolute
  // term for the roundings of float32 subnormals (2^-150 each, a few dozen).
  const double norms = q.norm + s.norm;
  // Rows or a query of norm beyond float32's reach (or not finite): nothing is skipped.
  if (!(norms <= kMaxNorm)) return INFINITY;
  const double sketch_error = 2.0 * (double(C + D_) * ud + 2.0 * uf) * norms + 1e-35;
  // The float32 sketch distance's own roundings (D subtractions, D additions)
  // and those of this computation, with margin.
  return (real_bound + sketch_error) * (1.0 + 4.0 * double(D_ + 8) * uf);
}

// The L1 distance from q to the box lo <= x <= hi in n dimensions.
static inline float box_distance(const float* q, const float* lo, const float* hi, int n) {
  float d = 0.0f;
  for (int k = 0; k < n; ++k) {
    const float below = lo[k] - q[k];
    const float above = q[k] - hi[k];
    const float gap = below > above ? below : above;
    d += gap > 0.0f ? gap : 0.0f;
  }
  return d;
}

// The L1 distance between two sketches of n <= kSketch sums, in four
// interleaved partial sums (the bound on its rounding holds in any order).
static inline float sketch_distance(const float* q, const float* r, int n) {
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int k = 0;
  for (; k + 4 <= n; k += 4) {
    for (int j = 0; j < 4; ++j) acc[j] += std::fabs(q[k + j] - r[k + j]);
  }
  for (int j = 0; k + j < n; ++j) acc[j] += std::fabs(q[k + j] - r[k + j]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

template <typename T>
void ClassIndex<T>::first(const Segment& s, const Query& q, const T* y, const T* rows, int64_t begin,
                          int64_t end, int64_t C, T eps, SearchHit<T>* best) const {
  const double threshold = prune_threshold(eps, q, s, C);
  int32_t stack[64];
  int depth = 0;
  stack[depth++] = 0;
  while (depth > 0) {
    const Node& node = s.nodes[stack[--depth]];
    if (node.max_row < begin || node.min_row >= end) continue;
    if (best->index >= 0 && node.min_row >= best->index) continue;
    const float* lo = s.boxes.data() + (&node - s.nodes.data()) * 2 * G_;
    MGF_COUNT(nodes);
    if (box_distance(q.coarse, lo, lo + G_, G_) > threshold) continue;
    if (node.left < 0) {
      for (int64_t p = node.begin; p < node.end; ++p) {
        const int64_t j = s.order[p];
        if (j < begin) continue;
        if (j >= end || (best->index >= 0 && j >= best->index)) break;
        MGF_COUNT(sketches);
        if (sketch_distance(q.sketch, s.sketch.data() + p * D_, D_) > threshold) continue;
        MGF_COUNT(rows);
        const T d = l1_distance_bounded(y, rows + j * C, C, eps);
        if (d <= eps) {
          *best = SearchHit<T>{j, d};
          break;
        }
      }
      continue;
    }
    // The child holding the lower indices first: its hit prunes more.
    const Node& l = s.nodes[node.left];
    const Node& r = s.nodes[node.right];
    const bool left_first = l.min_row < r.min_row;
    stack[depth++] = left_first ? node.right : node.left;
    stack[depth++] = left_first ? node.left : node.right;
  }
}

template <typename T>
void ClassIndex<T>::nearest(const Segment& s, const Query& q, const T* y, const T* rows, int64_t begin,
                            int64_t end, int64_t C, T limit, SearchHit<T>* best) const {
  T bound = best->index < 0 ? limit : best->distance;
  double threshold = prune_threshold(bound, q, s, C);
  int32_t stack[64];
  int depth = 0;
  stack[depth++] = 0;
  while (depth > 0) {
    const Node& node = s.nodes[stack[--depth]];
    if (node.max_row < begin || node.min_row >= end) continue;
    const float* lo = s.boxes.data() + (&node - s.nodes.data()) * 2 * G_;
    if (box_distance(q.coarse, lo, lo + G_, G_) > threshold) continue;
    if (node.left < 0) {
      for (int64_t p = node.begin; p < node.end; ++p) {
        const int64_t j = s.order[p];
        if (j < begin) continue;
        if (j >= end) break;
        if (sketch_distance(q.sketch, s.sketch.data() + p * D_, D_) > threshold) continue;
        const T d = l1_distance_bounded(y, rows + j * C, C, bound);
        if (d <= limit && (best->index < 0 || d < best->distance || (d == best->distance && j < best->index))) {
          *best = SearchHit<T>{j, d};
          bound = d;
          threshold = prune_threshold(bound, q, s, C);
        }
      }
      continue;
    }
    stack[depth++] = node.right;
    stack[depth++] = node.left;
  }
}

template <typename T>
SearchHit<T> ClassIndex<T>::search(const T* y, const T* rows, int64_t begin, int64_t end, int64_t C, T eps,
                                   int32_t mode) const {
  SearchHit<T> hit{-1, T(0)};
  if (begin >= end) return hit;
  const int64_t tail = std::max(begin, std::min(indexed_, end));
  Query q;
  if (begin < indexed_) {
    double sketch[kSketch];
    sketch_of(y, C, sketch, &q.norm);
    round_sketch(sketch, q.sketch, q.coarse);
  }
  if (mode == kSearchFirst || mode == kSearchOffline) {
    for (const Segment& s : segments_) {
      if (s.last <= begin) continue;
      if (s.first >= end || hit.index >= 0) break;  // later segments hold only higher indices
      first(s, q, y, rows, begin, end, C, eps, &hit);
    }
    if (hit.index < 0 && tail < end) hit = search_codebook(y, rows, tail, end, C, eps, kSearchFirst);
    if (hit.index >= 0 || mode == kSearchFirst) return hit;
  }
  const T limit = mode == kSearchNearest ? eps : T(INFINITY);
  for (const Segment& s : segments_) {
    if (s.last <= begin) continue;
    if (s.first >= end) break;
    nearest(s, q, y, rows, begin, end, C, limit, &hit);
  }
  // The tail's indices follow every segment's: a strictly nearer row wins, as in the linear scan.
  for (int64_t j = tail; j < end; ++j) {
    const T bound = hit.index < 0 ? limit : hit.distance;
    const T d = l1_distance_bounded(y, rows + j * C, C, bound);
    if (d <= limit && (hit.index < 0 || d < hit.distance)) hit = SearchHit<T>{j, d};
  }
  return hit;
}

template class ClassIndex<float>;
template class ClassIndex<double>;

}  // namespace mgf
