#include "modelguard_fast/mgs_index.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace mgf {

template <typename T>
int32_t ClassIndex<T>::build_node(Segment* s, const T* rows, int64_t begin, int64_t end, int64_t C) {
  const int32_t id = static_cast<int32_t>(s->nodes.size());
  s->nodes.push_back(Node{begin, end, 0, 0});
  s->boxes.resize(static_cast<size_t>(id + 1) * 2 * C);
  T* lo = s->boxes.data() + static_cast<int64_t>(id) * 2 * C;
  T* hi = lo + C;
  int64_t* order = s->order.data();
  std::copy(rows + order[begin] * C, rows + order[begin] * C + C, lo);
  std::copy(lo, lo + C, hi);
  int64_t min_row = order[begin], max_row = order[begin];
  for (int64_t p = begin + 1; p < end; ++p) {
    const T* r = rows + order[p] * C;
    for (int64_t k = 0; k < C; ++k) {
      lo[k] = std::min(lo[k], r[k]);
      hi[k] = std::max(hi[k], r[k]);
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
  // Split by which of two far-apart rows (a rough 2-means) each row is nearer
  // to, at the median, so both halves are compact in every column: prediction
  // rows are sparse (a few large entries), and a split on one column at a time
  // leaves boxes wide in the others.
  auto dist = [rows, C](int64_t a, int64_t b) {
    double d = 0.0;
    for (int64_t k = 0; k < C; ++k) d += std::fabs(double(rows[a * C + k]) - double(rows[b * C + k]));
    return d;
  };
  auto farthest = [&](int64_t from) {
    int64_t best = order[begin];
    double best_d = -1.0;
    for (int64_t p = begin; p < end; ++p) {
      const double d = dist(order[p], from);
      if (d > best_d) {
        best_d = d;
        best = order[p];
      }
    }
    return best;
  };
  const int64_t a = farthest(order[begin]);
  const int64_t b = farthest(a);
  std::vector<std::pair<double, int64_t>> keys(static_cast<size_t>(end - begin));
  for (int64_t p = begin; p < end; ++p) keys[p - begin] = {dist(order[p], a) - dist(order[p], b), order[p]};
  const int64_t mid = begin + (end - begin) / 2;
  std::nth_element(keys.begin(), keys.begin() + (mid - begin), keys.end());
  for (int64_t p = begin; p < end; ++p) order[p] = keys[p - begin].second;
  const int32_t left = build_node(s, rows, begin, mid, C);
  const int32_t right = build_node(s, rows, mid, end, C);
  s->nodes[id].left = left;
  s->nodes[id].right = right;
  return id;
}

template <typename T>
typename ClassIndex<T>::Segment ClassIndex<T>::build(const T* rows, int64_t first, int64_t last, int64_t C) {
  Segment s;
  s.first = first;
  s.last = last;
  s.order.resize(static_cast<size_t>(last - first));
  std::iota(s.order.begin(), s.order.end(), first);
  s.nodes.reserve(static_cast<size_t>(4 * (last - first) / kLeafRows + 1));
  build_node(&s, rows, 0, last - first, C);
  return s;
}

template <typename T>
void ClassIndex<T>::update(const T* rows, int64_t n, int64_t C) {
  while (n - indexed_ >= kTailRows) {
    // The largest segment the counter allows (many rows at once: a bulk load).
    int64_t size = kTailRows;
    while (size * 2 <= n - indexed_ &&
           (segments_.empty() || size * 2 <= segments_.back().last - segments_.back().first)) {
      size *= 2;
    }
    segments_.push_back(build(rows, indexed_, indexed_ + size, C));
    indexed_ += size;
    while (segments_.size() >= 2) {
      const Segment& b = segments_[segments_.size() - 1];
      const Segment& a = segments_[segments_.size() - 2];
      if (a.last - a.first != b.last - b.first) break;
      Segment merged = build(rows, a.first, b.last, C);
      segments_.pop_back();
      segments_.back() = std::move(merged);
    }
  }
}

template <typename T>
void ClassIndex<T>::truncate(int64_t n) {
  while (!segments_.empty() && segments_.back().last > n) segments_.pop_back();
  indexed_ = segments_.empty() ? 0 : segments_.back().last;
}

template <typename T>
void ClassIndex<T>::clear() {
  segments_.clear();
  indexed_ = 0;
}

template <typename T>
void ClassIndex<T>::first(const Segment& s, const T* y, const T* rows, int64_t begin, int64_t end, int64_t C,
                          T eps, SearchHit<T>* best) const {
  int32_t stack[64];
  int depth = 0;
  stack[depth++] = 0;
  while (depth > 0) {
    const Node& node = s.nodes[stack[--depth]];
    if (node.max_row < begin || node.min_row >= end) continue;
    if (best->index >= 0 && node.min_row >= best->index) continue;
    const T* lo = s.boxes.data() + (&node - s.nodes.data()) * 2 * C;
    if (l1_box_distance_bounded(y, lo, lo + C, C, eps) > eps) continue;
    if (node.left < 0) {
      for (int64_t p = node.begin; p < node.end; ++p) {
        const int64_t j = s.order[p];
        if (j < begin) continue;
        if (j >= end || (best->index >= 0 && j >= best->index)) break;
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
void ClassIndex<T>::nearest(const Segment& s, const T* y, const T* rows, int64_t begin, int64_t end, int64_t C,
                            T limit, SearchHit<T>* best) const {
  int32_t stack[64];
  int depth = 0;
  stack[depth++] = 0;
  while (depth > 0) {
    const Node& node = s.nodes[stack[--depth]];
    if (node.max_row < begin || node.min_row >= end) continue;
    const T bound = best->index < 0 ? limit : best->distance;
    const T* lo = s.boxes.data() + (&node - s.nodes.data()) * 2 * C;
    if (l1_box_distance_bounded(y, lo, lo + C, C, bound) > bound) continue;
    if (node.left < 0) {
      for (int64_t p = node.begin; p < node.end; ++p) {
        const int64_t j = s.order[p];
        if (j < begin) continue;
        if (j >= end) break;
        const T b = best->index < 0 ? limit : best->distance;
        const T d = l1_distance_bounded(y, rows + j * C, C, b);
        if (d <= limit && (best->index < 0 || d < best->distance || (d == best->distance && j < best->index))) {
          *best = SearchHit<T>{j, d};
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
  if (mode == kSearchFirst || mode == kSearchOffline) {
    for (const Segment& s : segments_) {
      if (s.last <= begin) continue;
      if (s.first >= end || hit.index >= 0) break;  // later segments hold only higher indices
      first(s, y, rows, begin, end, C, eps, &hit);
    }
    if (hit.index < 0 && tail < end) hit = search_codebook(y, rows, tail, end, C, eps, kSearchFirst);
    if (hit.index >= 0 || mode == kSearchFirst) return hit;
  }
  const T limit = mode == kSearchNearest ? eps : T(INFINITY);
  for (const Segment& s : segments_) {
    if (s.last <= begin) continue;
    if (s.first >= end) break;
    nearest(s, y, rows, begin, end, C, limit, &hit);
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
