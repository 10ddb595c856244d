#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "modelguard_fast/bayes_cpu.h"
#include "modelguard_fast/parallel.h"

namespace mgf {

namespace {

// Received rows answered by one task: enough that the blocks of a class,
// read once per task, are reused from cache by every query of it.
constexpr int64_t kQueriesPerTask = 128;

template <typename T>
uint64_t value_bits(T v) {
  v = v + T(0);  // -0 and +0 compare equal, so they must hash alike
  if constexpr (sizeof(T) == 4) {
    uint32_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
  } else {
    uint64_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
  }
}

inline uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

template <typename T>
uint64_t row_hash(const T* x, int64_t C, int64_t part) {
  // Four independent lanes keep the multiply chain short.
  uint64_t h[4] = {mix(uint64_t(part) + 1), 0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL};
  for (int64_t k = 0; k < C; ++k) h[k & 3] = (h[k & 3] ^ value_bits(x[k])) * 0x100000001b3ULL;
  return mix(h[0] ^ mix(h[1] ^ mix(h[2] ^ mix(h[3]))));
}

template <typename T>
bool rows_equal(const T* a, const T* b, int64_t C) {
  for (int64_t k = 0; k < C; ++k) {
    if (!(a[k] == b[k])) return false;
  }
  return true;
}

// Stable counting sort of n items by key in [0, parts): returns the order and
// fills offsets (parts + 1 entries).
std::vector<int64_t> sort_by_part(const int64_t* key, int64_t n, int64_t parts, std::vector<int64_t>* offsets) {
  offsets->assign(static_cast<size_t>(parts + 1), 0);
  for (int64_t i = 0; i < n; ++i) ++(*offsets)[key ? key[i] + 1 : 1];
  for (int64_t p = 0; p < parts; ++p) (*offsets)[p + 1] += (*offsets)[p];
  std::vector<int64_t> next(offsets->begin(), offsets->end() - 1);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[next[key ? key[i] : 0]++] = i;
  return order;
}

// Lays out rows order[offsets[p]..offsets[p + 1]) of x as part p; the source
// of each row is its row index in x.
template <typename T>
void build_blocked(const T* x, int64_t C, const std::vector<int64_t>& order, const std::vector<int64_t>& offsets,
                   BlockedRows<T>* out) {
  constexpr int64_t W = bayes_block_rows<T>();
  const int64_t parts = static_cast<int64_t>(offsets.size()) - 1;
  out->C = C;
  out->part_block.assign(static_cast<size_t>(parts + 1), 0);
  for (int64_t p = 0; p < parts; ++p) {
    out->part_block[p + 1] = out->part_block[p] + (offsets[p + 1] - offsets[p] + W - 1) / W;
  }
  const int64_t blocks = out->part_block[parts];
  out->columns.resize(static_cast<size_t>(blocks * C));
  out->valid.assign(static_cast<size_t>(blocks), 0);
  out->source.assign(static_cast<size_t>(blocks * W), -1);
  const T pad = T(1e30);
  parallel_for(blocks, C * W, [&](int64_t b) {
    const int64_t p = std::upper_bound(out->part_block.begin(), out->part_block.end(), b) - out->part_block.begin() - 1;
    const int64_t first = offsets[p] + (b - out->part_block[p]) * W;
    const int64_t n = std::min(W, offsets[p + 1] - first);
    out->valid[b] = static_cast<int32_t>(n);
    for (int64_t w = 0; w < W; ++w) {
      const int64_t row = w < n ? order[first + w] : -1;
      if (row >= 0) out->source[b * W + w] = row;
      for (int64_t k = 0; k < C; ++k) out->columns[b * C + k].lane[w] = row >= 0 ? x[row * C + k] : pad;
    }
  });
}

template <typename T>
using ScanFn = void (*)(const BayesScan<T>&);

template <typename T>
ScanFn<T> scan_for(int32_t isa) {
  const std::vector<int32_t> isas = bayes_isas();
  if (isa == kIsaAuto) isa = isas.back();
  if (std::find(isas.begin(), isas.end(), isa) == isas.end()) {
    throw std::invalid_argument("isa: instruction set " + std::to_string(isa) + " is not available on this CPU/build");
  }
  switch (isa) {
#if defined(MGF_BAYES_X86_CLONES)
    case kIsaAvx2:
      return bayes_avx2::scan<T>;
    case kIsaAvx512:
      return bayes_avx512::scan<T>;
#endif
    default:
      return bayes_generic::scan<T>;
  }
}

// Scans B queries against a blocked table, class by class (all blocks when
// `part` is null), and writes each query's mean and count.
template <typename T>
void run_scan(const BlockedRows<T>& t, const T* clean_rows, const double* sums, const int64_t* counts,
              const T* const* queries, int64_t B, const int64_t* part, T delta, int32_t isa, double* out,
              int64_t* count_out) {
  const ScanFn<T> scan = scan_for<T>(isa);
  const int64_t C = t.C;
  const int64_t parts = part ? static_cast<int64_t>(t.part_block.size()) - 1 : 1;
  std::vector<int64_t> start;
  const std::vector<int64_t> order = sort_by_part(part, B, parts, &start);
  struct Task {
    int64_t part, begin, end;
  };
  std::vector<Task> tasks;
  for (int64_t p = 0; p < parts; ++p) {
    for (int64_t s = start[p]; s < start[p + 1]; s += kQueriesPerTask) {
      tasks.push_back({p, s, std::min(s + kQueriesPerTask, start[p + 1])});
    }
  }
  const int64_t rows_per_part = t.blocks() * bayes_block_rows<T>() / parts;
  parallel_for(static_cast<int64_t>(tasks.size()), kQueriesPerTask * C * (rows_per_part + 1), [&](int64_t i) {
    const Task& task = tasks[i];
    const int64_t n = task.end - task.begin;
    std::vector<const T*> q(static_cast<size_t>(n));
    std::vector<T> best(static_cast<size_t>(n), std::numeric_limits<T>::infinity());
    std::vector<double> acc(static_cast<size_t>(n * C), 0.0);
    std::vector<int64_t> cnt(static_cast<size_t>(n), 0);
    for (int64_t j = 0; j < n; ++j) q[j] = queries[order[task.begin + j]];
    BayesScan<T> s{t.columns.empty() ? nullptr : t.columns.front().lane,
                   t.valid.data(),
                   t.source.data(),
                   C,
                   part ? t.part_block[task.part] : 0,
                   part ? t.part_block[task.part + 1] : t.blocks(),
                   q.data(),
                   n,
                   delta,
                   clean_rows,
                   sums,
                   counts,
                   best.data(),
                   acc.data(),
                   cnt.data()};
    scan(s);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t id = order[task.begin + j];
      count_out[id] = cnt[j];
      if (cnt[j] == 0) continue;
      const double matched = double(cnt[j]);
      for (int64_t k = 0; k < C; ++k) out[id * C + k] = acc[j * C + k] / matched;
    }
  });
}

}  // namespace

template <typename T>
bool group_rows(const T* x, int64_t N, int64_t C, const int64_t* part, int64_t max_groups, RowGroups* out) {
  const int64_t expected = std::min(N, max_groups + 1);
  uint64_t capacity = 16;
  while (capacity < 2 * static_cast<uint64_t>(expected)) capacity *= 2;
  const uint64_t mask = capacity - 1;
  std::vector<int64_t> slot_group(capacity, -1);
  std::vector<uint64_t> slot_hash(capacity);
  out->of_row.assign(static_cast<size_t>(N), -1);
  out->first_row.clear();
  int64_t groups = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t p = part ? part[i] : 0;
    const T* row = x + i * C;
    const uint64_t h = row_hash(row, C, p);
    for (uint64_t s = h & mask;; s = (s + 1) & mask) {
      const int64_t g = slot_group[s];
      if (g < 0) {
        if (groups == max_groups) return false;
        slot_group[s] = groups;
        slot_hash[s] = h;
        out->first_row.push_back(i);
        out->of_row[i] = groups++;
        break;
      }
      const int64_t r = out->first_row[g];
      if (slot_hash[s] == h && (part ? part[r] : 0) == p && rows_equal(x + r * C, row, C)) {
        out->of_row[i] = g;
        break;
      }
    }
  }
  out->count = groups;
  return true;
}

std::vector<int32_t> bayes_isas() {
  std::vector<int32_t> isas{kIsaGeneric};
#if defined(MGF_BAYES_X86_CLONES)
  if (__builtin_cpu_supports("avx2")) isas.push_back(kIsaAvx2);
  if (__builtin_cpu_supports("avx512f")) isas.push_back(kIsaAvx512);
#endif
  return isas;
}

template <typename T>
BayesIndex<T>::BayesIndex(const T* clean, const T* pert, const int64_t* clean_top, int64_t N, int64_t C)
    : clean_(clean), pert_(pert), top_(clean_top, clean_top + N), N_(N), C_(C) {
  if (N < 1 || C < 1) throw std::invalid_argument("the table must have at least one row and one column");
  for (int64_t j = 0; j < N; ++j) {
    if (top_[j] < 0 || top_[j] >= C) throw std::out_of_range("clean_top: class out of range");
  }
}

template <typename T>
const BlockedRows<T>& BayesIndex<T>::blocked_rows() {
  std::lock_guard<std::mutex> guard(lock_);
  if (!rows_) {
    std::vector<int64_t> offsets;
    const std::vector<int64_t> order = sort_by_part(top_.data(), N_, C_, &offsets);
    auto rows = std::make_unique<BlockedRows<T>>();
    build_blocked(pert_, C_, order, offsets, rows.get());
    rows_ = std::move(rows);
  }
  return *rows_;
}

template <typename T>
std::unique_ptr<typename BayesIndex<T>::GroupedTable> BayesIndex<T>::build_grouped(bool by_class,
                                                                                     int64_t max_groups) const {
  RowGroups groups;
  if (!group_rows(pert_, N_, C_, by_class ? top_.data() : nullptr, max_groups, &groups)) return nullptr;
  const int64_t G = groups.count;
  std::vector<int64_t> group_part(static_cast<size_t>(G), 0);
  if (by_class) {
    for (int64_t g = 0; g < G; ++g) group_part[g] = top_[groups.first_row[g]];
  }
  std::vector<int64_t> offsets;
  const std::vector<int64_t> order = sort_by_part(group_part.data(), G, by_class ? C_ : 1, &offsets);
  std::vector<int64_t> rank(static_cast<size_t>(G));
  for (int64_t i = 0; i < G; ++i) rank[order[i]] = i;

  auto table = std::make_unique<GroupedTable>();
  table->values.resize(static_cast<size_t>(G * C_));
  table->sums.assign(static_cast<size_t>(G * C_), 0.0);
  table->counts.assign(static_cast<size_t>(G), 0);
  table->part.resize(static_cast<size_t>(G));
  for (int64_t i = 0; i < G; ++i) {
    const T* first = pert_ + groups.first_row[order[i]] * C_;
    std::copy(first, first + C_, table->values.begin() + i * C_);
    table->part[i] = group_part[order[i]];
  }
  for (int64_t j = 0; j < N_; ++j) {
    const int64_t g = rank[groups.of_row[j]];
    double* sum = table->sums.data() + g * C_;
    const T* row = clean_ + j * C_;
    for (int64_t k = 0; k < C_; ++k) sum[k] += double(row[k]);
    ++table->counts[g];
  }
  std::vector<int64_t> identity(static_cast<size_t>(G));
  for (int64_t i = 0; i < G; ++i) identity[i] = i;
  build_blocked(table->values.data(), C_, identity, offsets, &table->blocked);
  return table;
}

template <typename T>
int64_t BayesIndex<T>::group_count(bool by_class, int64_t max_groups) {
  std::lock_guard<std::mutex> guard(lock_);
  std::unique_ptr<GroupedTable>& slot = groups_[by_class];
  if (!slot) {
    if (known_above_[by_class] >= max_groups) return -1;
    slot = build_grouped(by_class, max_groups);
    if (!slot) {
      known_above_[by_class] = max_groups;
      return -1;
    }
  }
  return static_cast<int64_t>(slot->counts.size());
}

template <typename T>
const typename BayesIndex<T>::GroupedTable& BayesIndex<T>::grouped(bool by_class) {
  std::lock_guard<std::mutex> guard(lock_);
  std::unique_ptr<GroupedTable>& slot = groups_[by_class];
  if (!slot) slot = build_grouped(by_class, N_);
  return *slot;
}

template <typename T>
void BayesIndex<T>::match(const T* received, int64_t B, const int64_t* top, T delta, bool grouped_path, int32_t isa,
                          double* out, int64_t* count) {
  if (!grouped_path) {
    const BlockedRows<T>& table = blocked_rows();
    std::vector<const T*> queries(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) queries[i] = received + i * C_;
    run_scan(table, clean_, nullptr, nullptr, queries.data(), B, top, delta, isa, out, count);
    return;
  }
  const GroupedTable& table = grouped(top != nullptr);
  RowGroups unique;
  group_rows(received, B, C_, top, B, &unique);
  const int64_t U = unique.count;
  std::vector<const T*> queries(static_cast<size_t>(U));
  std::vector<int64_t> part(static_cast<size_t>(U), 0);
  for (int64_t u = 0; u < U; ++u) {
    queries[u] = received + unique.first_row[u] * C_;
    if (top) part[u] = top[unique.first_row[u]];
  }
  std::vector<double> unique_out(static_cast<size_t>(U * C_));
  std::vector<int64_t> unique_count(static_cast<size_t>(U));
  run_scan(table.blocked, static_cast<const T*>(nullptr), table.sums.data(), table.counts.data(), queries.data(), U,
           top ? part.data() : nullptr, delta, isa, unique_out.data(), unique_count.data());
  for (int64_t i = 0; i < B; ++i) {
    const int64_t u = unique.of_row[i];
    count[i] = unique_count[u];
    if (count[i] > 0) std::copy(unique_out.begin() + u * C_, unique_out.begin() + (u + 1) * C_, out + i * C_);
  }
}

template bool group_rows<float>(const float*, int64_t, int64_t, const int64_t*, int64_t, RowGroups*);
template bool group_rows<double>(const double*, int64_t, int64_t, const int64_t*, int64_t, RowGroups*);
template class BayesIndex<float>;
template class BayesIndex<double>;

}  // namespace mgf
