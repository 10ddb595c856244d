// Partial Bayes matching on the CPU: a lookup table of (clean, perturbed)
// prediction pairs, prepared once, answering batches of received predictions.
//
// Rule (Section 3.4 / Appendix B.1 of the paper, as the public code applies
// it): the candidates of a received row r are the table rows whose clean top-1
// class is r's top-1 class (or every row without the class filter); with d_j
// the L1 distance from r to row j's perturbed value, the answer is the mean
// clean row over {j : d_j <= max(delta, min_j d_j)}. Distances are summed in T
// over columns in order (see bayes_scan_impl.h); means are float64.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "modelguard_fast/bayes_scan.h"

namespace mgf {

// Rows in the scan's blocked layout, grouped by part (class): part p owns
// blocks [part_block[p], part_block[p + 1]). Padding lanes hold a huge value so
// that they never keep a block from being skipped.
template <typename T>
struct BlockedRows {
  struct alignas(kBayesBlockBytes) Column {
    T lane[bayes_block_rows<T>()];
  };
  int64_t C = 0;
  std::vector<Column> columns;  // blocks x C
  std::vector<int32_t> valid;   // rows per block
  std::vector<int64_t> source;  // blocks x W; -1 for padding
  std::vector<int64_t> part_block;

  int64_t blocks() const { return static_cast<int64_t>(valid.size()); }
};

// Rows that are equal (same part and every value comparing equal) share a group.
struct RowGroups {
  int64_t count = 0;
  std::vector<int64_t> of_row;     // group of each row
  std::vector<int64_t> first_row;  // a representative row of each group
};

// Groups the N rows of x (with their parts, or all in one part when `part` is
// null) by hashing, in one pass. Returns false as soon as more than
// `max_groups` groups appear.
template <typename T>
bool group_rows(const T* x, int64_t N, int64_t C, const int64_t* part, int64_t max_groups, RowGroups* out);

// The instruction sets whose scan this build has and this CPU runs, best last.
std::vector<int32_t> bayes_isas();

template <typename T>
class BayesIndex {
 public:
  // The index keeps pointers to both tables (N x C, row-major); they must
  // outlive it unchanged. clean_top[j] is the top-1 class of clean row j.
  BayesIndex(const T* clean, const T* pert, const int64_t* clean_top, int64_t N, int64_t C);

  int64_t rows() const { return N_; }
  int64_t classes() const { return C_; }

  // Answers B received rows. `top` holds their top-1 classes, or is null for
  // no class filter. Writes the float64 mean and the number of rows matched
  // (0 when the row's class has no table row; `out` is then left as is).
  // `grouped`: match against the distinct perturbed values (the same answer,
  // as every row of a group has the same distance); received rows with the
  // same class and value are answered once.
  void match(const T* received, int64_t B, const int64_t* top, T delta, bool grouped, int32_t isa, double* out,
             int64_t* count);

  // Number of distinct (class, perturbed value) pairs (or distinct values
  // without the class filter), or -1 when there are more than max_groups.
  // Builds and keeps the grouped table when there are not.
  int64_t group_count(bool by_class, int64_t max_groups);

  // The grouped table sorted by class: values (G x C), clean sums (G x C,
  // float64), row counts (G) and class (G). Builds it when needed.
  struct GroupedTable {
    std::vector<T> values;
    std::vector<double> sums;
    std::vector<int64_t> counts;
    std::vector<int64_t> part;
    BlockedRows<T> blocked;
  };
  const GroupedTable& grouped(bool by_class);

 private:
  const BlockedRows<T>& blocked_rows();
  std::unique_ptr<GroupedTable> build_grouped(bool by_class, int64_t max_groups) const;

  const T* clean_;
  const T* pert_;
  std::vector<int64_t> top_;
  int64_t N_;
  int64_t C_;
  std::mutex lock_;
  std::unique_ptr<BlockedRows<T>> rows_;
  std::unique_ptr<GroupedTable> groups_[2];  // [by_class]
  int64_t known_above_[2] = {-1, -1};        // group counts already found too large
};

}  // namespace mgf
