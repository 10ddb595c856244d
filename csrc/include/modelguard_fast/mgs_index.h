// Exact search of one class codebook, skipping the parts of it that no row
// within the bound can be in (CPU).
//
// The codebook is append-only. Its rows [0, indexed) are covered by segments
// of consecutive rows, each with a tree of boxes (per-column minima and
// maxima of the rows below a node; a node's rows are split in halves by which
// of two far-apart rows they are nearer to; leaves hold at most kLeafRows
// rows); rows [indexed, n) form a short tail scanned linearly. When the tail
// reaches kTailRows rows it becomes a segment, and two segments of equal size
// merge into one (a binary counter), so a codebook of n rows has at most
// log2(n / kTailRows) + 1 segments and each row is re-indexed O(log n) times.
//
// A node is skipped when l1_box_distance_bounded (l1.h) exceeds the bound;
// that bound is <= the distance the linear scan computes for every row below
// the node, bit for bit, so no row the linear scan would accept is skipped.
// Rows that are reached get their distance from l1_distance_bounded, as in the
// linear scan, and ties are broken by index exactly as there: every search
// returns the index and distance search_codebook (mgs_search.h) returns.
//
// Cost: the rows of the nodes whose boxes come within the bound of the query.
// That is few when the codebook's rows lie on a low-dimensional set (a
// classifier's outputs over a few input features); when they spread over
// many dimensions (i.i.d. noise in the logits), the rows near any query grow
// with the codebook and the search stays linear, with a smaller constant.
#pragma once

#include <cstdint>
#include <vector>

#include "modelguard_fast/mgs_search.h"

namespace mgf {

template <typename T>
class ClassIndex {
 public:
  static constexpr int64_t kTailRows = 256;
  static constexpr int64_t kLeafRows = 16;

  // Indexes rows appended since the last call; `rows` holds n rows of C columns.
  void update(const T* rows, int64_t n, int64_t C);
  // Forgets every segment that covers a row at or past n (the codebook shrank to n rows).
  void truncate(int64_t n);
  void clear();

  // search_codebook(y, rows, begin, end, C, eps, mode), answered with the index.
  SearchHit<T> search(const T* y, const T* rows, int64_t begin, int64_t end, int64_t C, T eps,
                      int32_t mode) const;

 private:
  struct Node {
    int64_t begin, end;          // its rows: order[begin, end) of the segment
    int64_t min_row, max_row;    // smallest and largest codebook index below it
    int32_t left = -1, right = -1;  // children (-1 for a leaf)
  };
  struct Segment {
    int64_t first = 0, last = 0;  // codebook rows [first, last)
    std::vector<int64_t> order;   // those rows, leaves contiguous, ascending within a leaf
    std::vector<Node> nodes;      // nodes[0] is the root
    std::vector<T> boxes;         // node i: lo at [2iC, 2iC + C), hi at [2iC + C, 2iC + 2C)
  };

  static Segment build(const T* rows, int64_t first, int64_t last, int64_t C);
  static int32_t build_node(Segment* s, const T* rows, int64_t begin, int64_t end, int64_t C);

  // Lexicographic (distance, index) minimum over rows of [begin, end) within
  // `limit` (eps for the nearest order, infinity for the offline map's fallback).
  void nearest(const Segment& s, const T* y, const T* rows, int64_t begin, int64_t end, int64_t C, T limit,
               SearchHit<T>* best) const;
  // The lowest index in [begin, end) within eps, if lower than best->index.
  void first(const Segment& s, const T* y, const T* rows, int64_t begin, int64_t end, int64_t C, T eps,
             SearchHit<T>* best) const;

  std::vector<Segment> segments_;
  int64_t indexed_ = 0;
};

}  // namespace mgf
