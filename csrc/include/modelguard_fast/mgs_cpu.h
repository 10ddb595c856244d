// ModelGuard-S on the CPU: the per-class codebooks and the batched quantizer.
#pragma once

#include <cstdint>
#include <vector>

#include "modelguard_fast/mgs_index.h"
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

// A centroid a quantize call appended: its class and its index in that class.
struct Appended {
  int64_t cls;
  int64_t index;
};

struct QuantizeResult {
  BatchCheck check;
  std::vector<Appended> appended;  // in stream order
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
  // is returned. Writes the answers to `out` and lists the centroids appended.
  // `x` may be a caller's buffer that another thread rewrites meanwhile: each
  // row is read once, into a private copy that is validated and searched (and
  // kept for settling when it missed), so a centroid is always a row that
  // passed the check, filed under the top-1 class computed from the same bits.
  QuantizeResult quantize(const T* x, int64_t B, int64_t C, T eps, int32_t mode, double sum_tol, T* out);

  // The first-admissible / nearest / offline search of class `cls`'s rows
  // [begin, end), as search_codebook gives it, in time sublinear in the size
  // of the codebook (see mgs_index.h).
  SearchHit<T> search(int64_t cls, const T* y, int64_t begin, int64_t end, T eps, int32_t mode) const {
    return index_[cls].search(y, rows_[cls].data(), begin, end, num_classes(), eps, mode);
  }

  // The sequential phase of quantize, for rows already searched against the
  // codebooks as they stood before the batch (index -1 where none was within
  // eps). `rows` holds the rows to settle, in stream order. For kSearchFirst
  // only rows with index -1 need passing; kSearchNearest needs every row.
  // Appends to `appended_rows` the index (into `rows`) of each new centroid.
  // `rows` must be the caller's private memory: centroids are copied from it.
  void settle(const T* rows, int64_t n, int64_t C, const int64_t* top, T eps, int32_t mode,
              const std::vector<int64_t>& counts_before, int64_t* index, T* distance,
              std::vector<int64_t>* appended_rows);

  // Packed copy of all codebooks (see search_packed) and per-class offsets.
  void pack(T* codebook, int64_t* offsets) const;

  void append(int64_t cls, const T* row, int64_t C);
  // Appends n rows, row i to class classes[i], in order (classes already checked).
  void append_rows(const int64_t* classes, const T* rows, int64_t n, int64_t C);
  void truncate(const std::vector<int64_t>& counts);
  void clear();
  std::vector<int64_t> counts() const;
  // Changes whenever rows are removed (truncate, clear): a copy that holds
  // the first count(t) rows of each class stays valid while it is unchanged.
  int64_t generation() const { return generation_; }

 private:
  std::vector<std::vector<T>> rows_;  // class t: count(t) rows of num_classes() columns
  std::vector<ClassIndex<T>> index_;  // one per class, over rows_
  struct Scratch {                    // quantize's per-call arrays, reused across calls
    std::vector<int64_t> top, index, before, pending;
    std::vector<T> distance;
    std::vector<T> copies;  // private copies of the rows settle reads
    std::vector<T> local;   // the private copy of a row answered at once
  };
  Scratch scratch_;
  int64_t generation_ = 0;
};

}  // namespace mgf
