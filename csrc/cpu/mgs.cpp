#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "modelguard_fast/mgs_cpu.h"
#include "modelguard_fast/parallel.h"

namespace mgf {

template <typename T>
BatchCheck check_probability_rows(const T* x, int64_t B, int64_t C, double sum_tol, int64_t* top) {
  // The first bad row is recorded as it is read, not read again: another
  // thread may be rewriting x.
  BatchCheck check;
  std::mutex bad_mutex;
  parallel_for(B, C, [&](int64_t i) {
    int64_t col = -1;
    double value = 0.0;
    const int32_t code = check_probability_row(x + i * C, C, sum_tol, &top[i], &col, &value);
    if (code != kRowOk) {
      std::lock_guard<std::mutex> lock(bad_mutex);
      if (check.row < 0 || i < check.row) check = BatchCheck{i, code, col, value};
    }
  });
  return check;
}

template <typename T>
void search_packed(const T* x, int64_t B, int64_t C, const int64_t* top, const T* codebook,
                   const int64_t* offsets, T eps, int32_t mode, int64_t* index, T* distance) {
  parallel_for(B, C * 64, [&](int64_t i) {
    const int64_t t = top[i];
    const T* base = codebook + offsets[t] * C;
    const SearchHit<T> hit =
        search_codebook(x + i * C, base, 0, offsets[t + 1] - offsets[t], C, eps, mode);
    index[i] = hit.index;
    distance[i] = hit.distance;
  });
}

template <typename T>
Codebooks<T>::Codebooks(int64_t num_classes)
    : rows_(static_cast<size_t>(num_classes)), index_(static_cast<size_t>(num_classes)) {
  if (num_classes < 1) throw std::invalid_argument("num_classes must be >= 1");
}

template <typename T>
int64_t Codebooks<T>::count(int64_t cls) const {
  return static_cast<int64_t>(rows_[cls].size()) / num_classes();
}

template <typename T>
int64_t Codebooks<T>::total() const {
  int64_t n = 0;
  for (int64_t t = 0; t < num_classes(); ++t) n += count(t);
  return n;
}

template <typename T>
std::vector<int64_t> Codebooks<T>::counts() const {
  std::vector<int64_t> c(static_cast<size_t>(num_classes()));
  for (int64_t t = 0; t < num_classes(); ++t) c[t] = count(t);
  return c;
}

template <typename T>
void Codebooks<T>::append(int64_t cls, const T* row, int64_t C) {
  if (C != num_classes()) throw std::invalid_argument("centroid has the wrong number of columns");
  if (cls < 0 || cls >= num_classes()) throw std::out_of_range("class index out of range");
  rows_[cls].insert(rows_[cls].end(), row, row + C);
  index_[cls].update(rows_[cls].data(), count(cls), C);
}

template <typename T>
void Codebooks<T>::append_rows(const int64_t* classes, const T* rows, int64_t n, int64_t C) {
  if (C != num_classes()) throw std::invalid_argument("centroids have the wrong number of columns");
  for (int64_t i = 0; i < n; ++i) {
    if (classes[i] < 0 || classes[i] >= num_classes()) throw std::out_of_range("class index out of range");
  }
  for (int64_t i = 0; i < n; ++i) rows_[classes[i]].insert(rows_[classes[i]].end(), rows + i * C, rows + i * C + C);
  for (int64_t t = 0; t < num_classes(); ++t) index_[t].update(rows_[t].data(), count(t), C);
}

template <typename T>
void Codebooks<T>::truncate(const std::vector<int64_t>& counts) {
  if (static_cast<int64_t>(counts.size()) != num_classes()) throw std::invalid_argument("one count per class expected");
  for (int64_t t = 0; t < num_classes(); ++t) {
    if (counts[t] < 0 || counts[t] > count(t)) throw std::invalid_argument("truncate can only shrink a codebook");
  }
  ++generation_;
  for (int64_t t = 0; t < num_classes(); ++t) {
    rows_[t].resize(static_cast<size_t>(counts[t] * num_classes()));
    index_[t].truncate(counts[t]);
    index_[t].update(rows_[t].data(), counts[t], num_classes());
  }
}

template <typename T>
void Codebooks<T>::clear() {
  ++generation_;
  for (auto& r : rows_) r.clear();
  for (auto& i : index_) i.clear();
}

template <typename T>
void Codebooks<T>::pack(T* codebook, int64_t* offsets) const {
  int64_t n = 0;
  for (int64_t t = 0; t < num_classes(); ++t) {
    offsets[t] = n;
    std::copy(rows_[t].begin(), rows_[t].end(), codebook + n * num_classes());
    n += count(t);
  }
  offsets[num_classes()] = n;
}

template <typename T>
void Codebooks<T>::settle(const T* rows, int64_t n, int64_t C, const int64_t* top, T eps, int32_t mode,
                          const std::vector<int64_t>& counts_before, int64_t* index, T* distance,
                          std::vector<int64_t>* appended_rows) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = top[i];
    if (mode == kSearchFirst && index[i] >= 0) continue;
    const T* y = rows + i * C;
    // Only centroids appended earlier in this batch remain to be searched.
    const int64_t begin = counts_before[t];
    const int64_t end = count(t);
    if (end > begin) {
      const SearchHit<T> fresh = search(t, y, begin, end, eps, mode);
      if (fresh.index >= 0 && (index[i] < 0 || fresh.distance < distance[i])) {
        index[i] = fresh.index;
        distance[i] = fresh.distance;
      }
    }
    if (index[i] < 0) {
      append(t, y, C);
      index[i] = count(t) - 1;
      distance[i] = T(0);
      appended_rows->push_back(i);
    }
  }
}

template <typename T>
QuantizeResult Codebooks<T>::quantize(const T* x, int64_t B, int64_t C, T eps, int32_t mode, double sum_tol,
                                      T* out) {
  if (mode != kSearchFirst && mode != kSearchNearest) throw std::invalid_argument("quantize mode must be first or nearest");
  if (C != num_classes()) throw std::invalid_argument("rows must have num_classes columns");
  QuantizeResult result;
  // Per-call arrays live in members reused across calls (calls on one Codebooks are
  // serialised by its owner): a batch-1 call then allocates nothing here.
  Scratch& w = scratch_;
  w.top.resize(static_cast<size_t>(B));
  w.index.resize(static_cast<size_t>(B));
  w.distance.resize(static_cast<size_t>(B));
  if (w.copies.size() < static_cast<size_t>(B * C)) w.copies.resize(static_cast<size_t>(B * C));
  if (w.local.size() < static_cast<size_t>(C)) w.local.resize(static_cast<size_t>(C));
  w.before.resize(static_cast<size_t>(num_classes()));
  for (int64_t t = 0; t < num_classes(); ++t) w.before[t] = count(t);
  int64_t* top = w.top.data();
  int64_t* index = w.index.data();
  T* distance = w.distance.data();
  T* copies = w.copies.data();
  const std::vector<int64_t>& before = w.before;
  std::mutex bad_mutex;
  BatchCheck& bad = result.check;
  // One pass validates each row and searches the codebooks as they stood
  // before the batch; it reads only, so a bad row leaves nothing to undo.
  parallel_chunks(B, C * 8, [&](int64_t begin, int64_t end) {
    // Each row is read once, into a private copy that everything below works
    // on: a buffer reused for rows answered at once (one per chunk of rows), the
    // scratch row for rows that settle reads (misses; every row in the nearest order).
    std::vector<T> chunk_local;
    T* local = w.local.data();
    if (begin != 0 || end != B) {  // on the pool: chunks run concurrently
      chunk_local.resize(static_cast<size_t>(C));
      local = chunk_local.data();
    }
    for (int64_t i = begin; i < end; ++i) {
      T* copy = mode == kSearchNearest ? copies + i * C : local;
      int64_t col = -1;
      double value = 0.0;
      const int32_t code = check_probability_row(x + i * C, C, sum_tol, &top[i], &col, &value, copy);
      if (code != kRowOk) {
        std::lock_guard<std::mutex> lock(bad_mutex);
        if (bad.row < 0 || i < bad.row) bad = BatchCheck{i, code, col, value};
        continue;
      }
      const SearchHit<T> hit = search(top[i], copy, 0, before[top[i]], eps, mode);
      index[i] = hit.index;
      distance[i] = hit.distance;
      if (mode != kSearchFirst) continue;
      if (hit.index >= 0) {  // final: answer it while the row is in cache
        const T* c = rows_[top[i]].data() + hit.index * C;
        std::memcpy(out + i * C, c, sizeof(T) * C);
      } else {
        std::memcpy(copies + i * C, copy, sizeof(T) * C);  // a miss may become a centroid: settle reads this
      }
    }
  });
  if (bad.row >= 0) return result;
  std::vector<int64_t>& pending = w.pending;  // rows whose answer settle gives
  pending.clear();
  for (int64_t i = 0; i < B; ++i) {
    if (mode != kSearchFirst || index[i] < 0) pending.push_back(i);
  }
  std::vector<int64_t> appended_rows;
  if (!pending.empty()) {
    settle(copies, B, C, top, eps, mode, before, index, distance, &appended_rows);
  }
  result.appended.reserve(appended_rows.size());
  for (const int64_t i : appended_rows) result.appended.push_back(Appended{top[i], index[i]});
  for (const int64_t i : pending) {
    const T* c = rows_[top[i]].data() + index[i] * C;
    std::copy(c, c + C, out + i * C);
  }
  for (int64_t i = 0; i < B; ++i) {
    const double d = double(distance[i]);
    result.distortion_sum += d;
    if (d > result.distortion_max) result.distortion_max = d;
  }
  return result;
}

#define MGF_INSTANTIATE(T)                                                                                   \
  template BatchCheck check_probability_rows<T>(const T*, int64_t, int64_t, double, int64_t*);              \
  template void search_packed<T>(const T*, int64_t, int64_t, const int64_t*, const T*, const int64_t*, T,    \
                                 int32_t, int64_t*, T*);                                                     \
  template class Codebooks<T>;

MGF_INSTANTIATE(float)
MGF_INSTANTIATE(double)

}  // namespace mgf
