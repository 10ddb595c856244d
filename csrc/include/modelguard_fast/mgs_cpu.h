// ModelGuard-S on the CPU: the per-class codebooks and the batched quantizer.
#pragma once

#include <cstdint>
#include <vector>

#include "modelguard_fast/mgs_search.h"

namespace mgf {

// Validates every row and writes its top-1 class; parallel over rows.
template <typename T>
BatchCheck check_probability_rows(const T* x, int64_t B, int64_t C, double sum_tol, int64_t* top);

// Stateless search of B rows against packed codebooks: class t owns rows
// [offsets[t], offsets[t + 1]) of `codebook`. Indices returned are within the
// class. Parallel over rows.
template <typename T>
void search_packed(const T* x, int64_t B, int64_t C, const int64_t* top, const T* codebook,
                   const int64_t* offsets, T eps, int32_t mode, int64_t* index, T* distance);

struct QuantizeResult {
  BatchCheck check;
  double distortion_sum = 0.0;  // of the batch's answers, in float64
  double distortion_max = 0.0;
};

// Append-only codebooks, one per class. Not synchronised: the Python guard
// serialises every call that reads or changes it.
template <typename T>
class Codebooks {
 public:
  explicit Codebooks(int64_t num_classes);

  int64_t num_classes() const { return static_cast<int64_t>(rows_.size()); }
  int64_t count(int64_t cls) const;
  int64_t total() const;
  const std::vector<T>& class_rows(int64_t cls) const { return rows_[cls]; }

  // Algorithm 1 over a batch, exactly as if its rows arrived one at a time.
  // Rows are validated first; on an invalid row nothing changes and the check
  // is returned. Writes the answers to `out` and appends to `appended_rows`
  // the index of each row that became a centroid, in order.
  QuantizeResult quantize(const T* x, int64_t B, int64_t C, T eps, int32_t mode, double sum_tol, T* out,
                          std::vector<int64_t>* appended_rows);

  // The sequential phase of quantize, for rows already searched against the
  // codebooks as they stood before the batch (index -1 where none was within
  // eps). `rows` holds the rows to settle, in stream order. For kSearchFirst
  // only rows with index -1 need passing; kSearchNearest needs every row.
  // Appends to `appended_rows` the index (into `rows`) of each new centroid.
  void settle(const T* rows, int64_t n, int64_t C, const int64_t* top, T eps, int32_t mode,
              const std::vector<int64_t>& counts_before, int64_t* index, T* distance,
              std::vector<int64_t>* appended_rows);

  // Packed copy of all codebooks (see search_packed) and per-class offsets.
  void pack(T* codebook, int64_t* offsets) const;

  void append(int64_t cls, const T* row, int64_t C);
  void truncate(const std::vector<int64_t>& counts);
  void clear();
  std::vector<int64_t> counts() const;

 private:
  std::vector<std::vector<T>> rows_;  // class t: count(t) rows of num_classes() columns
};

}  // namespace mgf
