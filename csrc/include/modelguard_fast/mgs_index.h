// Exact search of one class codebook, skipping the parts of it that no row
// within the bound can be in (CPU).
//
// Sketches. Each row is summarised by D <= kSketch sums over a fixed
// partition of its columns into groups (its sketch: summed in float64, kept
// in float32, so a leaf's sketches are a few cache lines), and by
// G <= kCoarse sums over a coarser partition (unions of groups: its coarse
// sketch). For any partition, L1(x, c) >= sum_k |sum_{j in S_k} (x_j - c_j)|:
// either sketch's L1 distance is a lower bound on the rows'. Groups are chosen
// once, from the rows present when the first segment is built, by spreading
// the columns (heaviest first) over the group of least mass so far (and the
// groups, likewise, over the coarse groups): the class's own column, which
// carries most of the mass, gets a group to itself, and the many small columns
// are summed in groups whose sums concentrate where single columns do not (a
// sum of many small independent terms). With C <= kSketch every column is its
// own group.
//
// Segments. The codebook is append-only. Its rows [0, indexed) are covered by
// segments of consecutive rows, each with a tree over the rows' coarse
// sketches (a node's box: their per-coarse-group minima and maxima; a node's
// rows are split at the median of its widest coarse group, so in a few
// dimensions the boxes part as the tree deepens; leaves hold at most kLeafRows
// rows, whose sketches the segment stores contiguously); rows [indexed, n)
// form a short tail scanned linearly. When the tail reaches kTailRows rows it
// becomes a segment, and two segments of equal size merge into one (a binary
// counter), so a codebook of n rows has at most log2(n / kTailRows) + 1
// segments and each row is re-indexed O(log n) times; a row's sketch is
// computed once. A search walks a tree, skipping nodes whose coarse box is
// beyond the bound, and in the leaves it reaches skips rows whose sketch is.
//
// Exactness under rounding. A node (or a row) is skipped only when the
// sketch distance from the query's (coarse) sketch to its box (or sketch)
// exceeds prune_threshold(bound): that threshold adds to the bound every
// rounding the computations can make, in the sketches (float64 sums of the
// rows' values, rounded to float32), in the sketch and box distances
// (float32), and in the linear scan's own
// distance (each term passes through one rounded subtraction and at most C
// rounded additions of non-negative terms, in any summation order, so the
// computed distance is >= the real one times (1 - u)^(C + 1), u the unit
// roundoff of T). A skipped row's distance as l1_distance_bounded computes it
// therefore exceeds the bound, bit for bit, so no row the linear scan would
// accept is skipped. Rows that are reached get their distance from
// l1_distance_bounded, as in the linear scan, and ties are broken by index
// exactly as there: every search returns the index and distance
// search_codebook (mgs_search.h) returns. A sum that overflows gives an
// infinite or NaN threshold or distance, which skips nothing.
//
// Cost: the nodes whose coarse boxes come within the bound of the query and
// the rows of the leaves among them (a sketch each), plus a full distance per
// row whose sketch comes within it. Few when the codebook's rows near a query
// are few, as on a low-dimensional set (a classifier's outputs over a few
// input features). When rows spread over many dimensions (i.i.d. noise in the
// logits), the rows whose sketch (a fraction of their distance) comes within
// the bound grow in proportion to the codebook, as do the rows truly within a
// small multiple of it: the search then stays linear in the codebook, with a
// constant several times smaller than the scan's (benchmarks/index_stats.cpp
// counts nodes, sketches and rows reached).
#pragma once

#include <cstdint>
#include <vector>

#include "modelguard_fast/mgs_search.h"

namespace mgf {

#if defined(MGF_INDEX_STATS)
struct IndexStats {
  int64_t nodes = 0, sketches = 0, rows = 0;
};
extern IndexStats index_stats;
#endif

template <typename T>
class ClassIndex {
 public:
  static constexpr int64_t kTailRows = 256;
  static constexpr int64_t kLeafRows = 16;
  static constexpr int kSketch = 16;
  static constexpr int kCoarse = 5;

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
    int64_t begin, end;             // its rows: order[begin, end) of the segment
    int64_t min_row, max_row;       // smallest and largest codebook index below it
    int32_t left = -1, right = -1;  // children (-1 for a leaf)
  };
  struct Segment {
    int64_t first = 0, last = 0;  // codebook rows [first, last)
    double norm = 0.0;            // the largest L1 norm of its rows (as summed in float64)
    std::vector<int64_t> order;   // those rows, leaves contiguous, ascending within a leaf
    std::vector<float> sketch;    // row order[p]'s sketch at [pD, pD + D), rounded to float32
    std::vector<Node> nodes;      // nodes[0] is the root
    std::vector<float> boxes;     // node i's coarse box (of the float32 coarse sketches): lo at [2iG, 2iG + G), hi at [2iG + G, 2iG + 2G)
  };
  // The query's sketch, coarse sketch and L1 norm, computed once per search.
  struct Query {
    float sketch[kSketch];
    float coarse[kSketch];
    double norm = 0.0;
  };

  void choose_groups(const T* rows, int64_t n, int64_t C);
  void sketch_of(const T* row, int64_t C, double* out, double* norm) const;
  void coarse_of(const double* sketch, double* out) const;
  void round_sketch(const double* sketch, float* fine, float* coarse) const;
  // A segment of rows [first, last) whose sketches are sketches[(j - first) * D] and largest norm `norm`.
  Segment build(int64_t first, int64_t last, const double* sketches, double norm) const;
  // The node over order[begin, end) and those below it; coarse[(j - first) * G] is row j's coarse sketch.
  int32_t build_node(Segment* s, const float* coarse, int64_t begin, int64_t end) const;
  // The smallest sketch distance that proves a row's computed distance exceeds `bound`.
  double prune_threshold(T bound, const Query& q, const Segment& s, int64_t C) const;

  // Lexicographic (distance, index) minimum over rows of [begin, end) within
  // `limit` (eps for the nearest order, infinity for the offline map's fallback).
  void nearest(const Segment& s, const Query& q, const T* y, const T* rows, int64_t begin, int64_t end,
               int64_t C, T limit, SearchHit<T>* best) const;
  // The lowest index in [begin, end) within eps, if lower than best->index.
  void first(const Segment& s, const Query& q, const T* y, const T* rows, int64_t begin, int64_t end,
             int64_t C, T eps, SearchHit<T>* best) const;

  int D_ = 0;                    // sketch length (0 until the first segment is built)
  int G_ = 0;                    // coarse sketch length
  std::vector<int32_t> group_;   // column k's group
  std::vector<int32_t> coarse_;  // group g's coarse group
  std::vector<Segment> segments_;
  int64_t indexed_ = 0;
};

}  // namespace mgf
