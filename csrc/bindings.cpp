// Python bindings of the private module modelguard_fast._C. The public API is
// the Python package; these functions expect arrays it has already validated
// and check only what would otherwise corrupt memory.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "modelguard_fast/bayes_cpu.h"
#include "modelguard_fast/cuda_api.h"
#include "modelguard_fast/mgs_cpu.h"
#include "modelguard_fast/mgw_cpu.h"
#include "modelguard_fast/mgw_solver.h"
#include "modelguard_fast/parallel.h"
#include "modelguard_fast/rows_cpu.h"

namespace py = pybind11;

namespace {

template <typename T>
void require(const py::array& a, int64_t size, const char* name, bool writable) {
  // Equality, not identity: an unpickled array carries an equal dtype object that is not numpy's
  // canonical one. Equality also tells byte orders apart ('>f4' != '<f4').
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().equal(py::dtype::of<T>())) {
    throw std::invalid_argument(std::string(name) + ": wrong dtype");
  }
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": not C-contiguous");
  if (writable && !a.writeable()) throw std::invalid_argument(std::string(name) + ": read-only");
  if (size >= 0 && a.size() != size) throw std::invalid_argument(std::string(name) + ": wrong size");
}

template <typename T>
const T* in_ptr(const py::array& a, int64_t size, const char* name) {
  require<T>(a, size, name, false);
  return static_cast<const T*>(a.data());
}

template <typename T>
T* out_ptr(py::array& a, int64_t size, const char* name) {
  require<T>(a, size, name, true);
  return static_cast<T*>(a.mutable_data());
}

std::tuple<int64_t, int64_t> rows_cols(const py::array& x) {
  if (x.ndim() != 2) throw std::invalid_argument("expected a 2-D array");
  return {x.shape(0), x.shape(1)};
}

py::array_t<int64_t> as_array(const std::vector<int64_t>& v) {
  py::array_t<int64_t> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// The fields of the DLPack ABI (dlpack.h; the unversioned "dltensor" capsule of
// torch.utils.dlpack.to_dlpack) that quantize_array reads.
struct DLDevice {
  int32_t device_type;  // 1: kDLCPU
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // 2: kDLFloat
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; NULL: C-contiguous
  uint64_t byte_offset;
};

// The rows of a "dltensor" capsule (which keeps its tensor alive) if they are host memory of
// type T, C-contiguous, of shape (C,) or (B >= 1, C); else nullptr.
template <typename T>
const T* dlpack_rows(PyObject* capsule, int64_t C, int64_t* B, py::ssize_t* nd) {
  if (!PyCapsule_IsValid(capsule, "dltensor")) return nullptr;
  const auto* t = static_cast<const DLTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (t->device.device_type != 1 || t->dtype.code != 2 || t->dtype.bits != 8 * sizeof(T) || t->dtype.lanes != 1 ||
      t->ndim < 1 || t->ndim > 2 || t->shape[t->ndim - 1] != C) {
    return nullptr;
  }
  *nd = t->ndim;
  *B = t->ndim == 2 ? t->shape[0] : 1;
  if (*B < 1) return nullptr;
  if (t->strides != nullptr) {  // a dimension of size 1 may have any stride
    if (C > 1 && t->strides[t->ndim - 1] != 1) return nullptr;
    if (t->ndim == 2 && *B > 1 && t->strides[0] != C) return nullptr;
  }
  return reinterpret_cast<const T*>(static_cast<const char*>(t->data) + t->byte_offset);
}

py::tuple check_tuple(const mgf::BatchCheck& c) { return py::make_tuple(c.row, c.code, c.col, c.value); }

// Codebooks::quantize on validated pointers, for Python: (rows, None or the check of the
// first bad row, distortion sum, distortion max, None or (classes, rows) of the centroids
// appended, as the codebooks hold them), with `out` first when given. With `tally` (rows,
// distortion sum, largest distortion), a call whose rows were all valid and all hits is
// counted there, with the GIL held (so each count is one atomic update for Python readers),
// and only `answers` is returned.
template <typename T>
py::object run_quantize(mgf::Codebooks<T>& cb, const T* x, int64_t B, int64_t C, double eps, int32_t mode,
                        double sum_tol, T* out, py::object answers = py::object(), double* tally = nullptr) {
  mgf::QuantizeResult r;
  if (B * C >= 4096 || cb.total() >= 4096) {
    py::gil_scoped_release release;
    r = cb.quantize(x, B, C, static_cast<T>(eps), mode, sum_tol, out);
  } else {  // a small call on small codebooks: releasing the GIL would cost more than it frees
    r = cb.quantize(x, B, C, static_cast<T>(eps), mode, sum_tol, out);
  }
  if (tally != nullptr && answers && r.check.row < 0 && r.appended.empty()) {
    tally[0] += static_cast<double>(B);
    tally[1] += r.distortion_sum;
    tally[2] = std::max(tally[2], r.distortion_max);
    return answers;
  }
  py::object appended = py::none();
  if (!r.appended.empty()) {  // never re-read from x, which a caller may be rewriting
    const int64_t n = static_cast<int64_t>(r.appended.size());
    py::array_t<int64_t> classes(n);
    py::array_t<T> rows({n, C});
    for (int64_t i = 0; i < n; ++i) {
      const mgf::Appended& a = r.appended[i];
      classes.mutable_data()[i] = a.cls;
      const T* src = cb.class_rows(a.cls).data() + a.index * C;
      std::copy(src, src + C, rows.mutable_data() + i * C);
    }
    appended = py::make_tuple(classes, rows);
  }
  py::object check = r.check.row < 0 ? py::object(py::none()) : py::object(check_tuple(r.check));
  if (answers) return py::make_tuple(answers, B, check, r.distortion_sum, r.distortion_max, appended);
  return py::make_tuple(B, check, r.distortion_sum, r.distortion_max, appended);
}

template <typename T>
void bind_codebooks(py::module_& m, const char* name) {
  using CB = mgf::Codebooks<T>;
  py::class_<CB>(m, name, py::module_local())
      .def(py::init<int64_t>(), py::arg("num_classes"))
      .def_property_readonly("num_classes", &CB::num_classes)
      .def("counts", &CB::counts)
      .def("total", &CB::total)
      .def("clear", &CB::clear)
      .def("truncate", &CB::truncate, py::arg("counts"))
      .def(
          "quantize",
          [](CB& cb, const py::array& x, double eps, int32_t mode, double sum_tol, py::array& out) {
            auto [B, C] = rows_cols(x);
            const T* xp = in_ptr<T>(x, -1, "x");
            T* op = out_ptr<T>(out, B * C, "out");
            return run_quantize(cb, xp, B, C, eps, mode, sum_tol, op);
          },
          py::arg("x"), py::arg("eps"), py::arg("mode"), py::arg("sum_tol"), py::arg("out"))
      .def(
          "quantize_array",
          [](CB& cb, const py::handle& obj, double eps, int32_t mode, double sum_tol,
             const py::object& tally) -> py::object {
            // The common case read in place, without the general conversion layer: a numpy
            // ndarray (not a subclass) of this dtype (byte order included), C-contiguous, of
            // shape (C,) or (B >= 1, C), or a DLPack capsule of such host rows (a CPU tensor).
            // Anything else gives None (the caller takes the general path).
            const int64_t C = cb.num_classes();
            int64_t B = 0;
            py::ssize_t nd = 0;
            const T* xp = nullptr;
            if (Py_TYPE(obj.ptr()) == reinterpret_cast<PyTypeObject*>(py::detail::npy_api::get().PyArray_Type_)) {
              const auto x = py::reinterpret_borrow<py::array>(obj);
              const py::dtype want = py::dtype::of<T>();
              nd = x.ndim();
              if (!(want.is(x.dtype()) || want.equal(x.dtype())) || nd < 1 || nd > 2 || x.shape(nd - 1) != C ||
                  (nd == 2 && x.shape(0) < 1) || !(x.flags() & py::array::c_style)) {
                return py::none();
              }
              B = nd == 2 ? x.shape(0) : 1;
              xp = static_cast<const T*>(x.data());
            } else if ((xp = dlpack_rows<T>(obj.ptr(), C, &B, &nd)) == nullptr) {
              return py::none();
            }
            double* tp = nullptr;
            if (!tally.is_none()) {
              if (!py::isinstance<py::array>(tally)) throw std::invalid_argument("tally: not an array");
              py::array t = py::reinterpret_borrow<py::array>(tally);
              tp = out_ptr<double>(t, 3, "tally");
            }
            py::array_t<T> out = nd == 2 ? py::array_t<T>({B, C}) : py::array_t<T>(C);
            return run_quantize(cb, xp, B, C, eps, mode, sum_tol, out.mutable_data(), out, tp);
          },
          py::arg("x"), py::arg("eps"), py::arg("mode"), py::arg("sum_tol"), py::arg("tally") = py::none())
      .def(
          "settle",
          [](CB& cb, const py::array& rows, const py::array& top, double eps, int32_t mode, double sum_tol,
             const std::vector<int64_t>& counts_before, py::array& index, py::array& distance) {
            auto [n, C] = rows_cols(rows);
            const T* rp = in_ptr<T>(rows, -1, "rows");
            const int64_t* tp = in_ptr<int64_t>(top, n, "top");
            int64_t* ip = out_ptr<int64_t>(index, n, "index");
            T* dp = out_ptr<T>(distance, n, "distance");
            // `rows` is a host copy that nothing else writes; it must still be
            // what the device checked (a caller may rewrite its tensor meanwhile).
            for (int64_t i = 0; i < n; ++i) {
              if (tp[i] < 0 || tp[i] >= cb.num_classes()) throw std::out_of_range("top: class out of range");
              int64_t t = -1, col = -1;
              double value = 0.0;
              if (mgf::check_probability_row(rp + i * C, C, sum_tol, &t, &col, &value) != mgf::kRowOk || t != tp[i]) {
                throw std::invalid_argument("probs changed while the call read it (row " + std::to_string(i) +
                                            " of the rows to settle); pass an array nobody writes during the call");
              }
            }
            std::vector<int64_t> appended;
            {
              py::gil_scoped_release release;
              cb.settle(rp, n, C, tp, static_cast<T>(eps), mode, counts_before, ip, dp, &appended);
            }
            return as_array(appended);
          },
          py::arg("rows"), py::arg("top"), py::arg("eps"), py::arg("mode"), py::arg("sum_tol"), py::arg("counts_before"),
          py::arg("index"), py::arg("distance"))
      .def(
          "search",
          [](const CB& cb, const py::array& x, const py::array& top, double eps, int32_t mode, py::array& index,
             py::array& distance) {
            auto [B, C] = rows_cols(x);
            if (C != cb.num_classes()) throw std::invalid_argument("x: wrong number of columns");
            const T* xp = in_ptr<T>(x, -1, "x");
            const int64_t* tp = in_ptr<int64_t>(top, B, "top");
            int64_t* ip = out_ptr<int64_t>(index, B, "index");
            T* dp = out_ptr<T>(distance, B, "distance");
            if (mode < mgf::kSearchFirst || mode > mgf::kSearchOffline) throw std::invalid_argument("mode: unknown");
            for (int64_t i = 0; i < B; ++i) {
              if (tp[i] < 0 || tp[i] >= C) throw std::out_of_range("top: class out of range");
            }
            py::gil_scoped_release release;
            mgf::parallel_for(B, C * 64, [&](int64_t i) {
              const mgf::SearchHit<T> hit = cb.search(tp[i], xp + i * C, 0, cb.count(tp[i]), static_cast<T>(eps), mode);
              ip[i] = hit.index;
              dp[i] = hit.distance;
            });
          },
          py::arg("x"), py::arg("top"), py::arg("eps"), py::arg("mode"), py::arg("index"), py::arg("distance"))
      .def(
          "append_rows",
          [](CB& cb, const py::array& classes, const py::array& rows) {
            auto [n, C] = rows_cols(rows);
            const int64_t* cp = in_ptr<int64_t>(classes, n, "classes");
            const T* rp = in_ptr<T>(rows, -1, "rows");
            py::gil_scoped_release release;
            cb.append_rows(cp, rp, n, C);
          },
          py::arg("classes"), py::arg("rows"))
      .def("pack",
           [](const CB& cb) {
             py::array_t<T> codebook({cb.total(), cb.num_classes()});
             py::array_t<int64_t> offsets(cb.num_classes() + 1);
             cb.pack(codebook.mutable_data(), offsets.mutable_data());
             return py::make_tuple(codebook, offsets);
           })
      .def(
          "class_rows",
          [](const CB& cb, int64_t cls, int64_t begin, std::optional<int64_t> end) {
            if (cls < 0 || cls >= cb.num_classes()) throw std::out_of_range("class out of range");
            const int64_t stop = end ? *end : cb.count(cls);
            if (begin < 0 || begin > stop || stop > cb.count(cls)) throw std::out_of_range("rows out of range");
            const int64_t C = cb.num_classes();
            const T* rows = cb.class_rows(cls).data();
            py::array_t<T> a({stop - begin, C});
            std::copy(rows + begin * C, rows + stop * C, a.mutable_data());
            return a;
          },
          py::arg("cls"), py::arg("begin") = 0, py::arg("end") = py::none())
      .def_property_readonly("generation", &CB::generation);
}

template <typename T>
py::tuple check_rows(const py::array& x, double sum_tol, py::array& top) {
  auto [B, C] = rows_cols(x);
  const T* xp = in_ptr<T>(x, -1, "x");
  int64_t* tp = out_ptr<int64_t>(top, B, "top");
  mgf::BatchCheck c;
  {
    py::gil_scoped_release release;
    c = mgf::check_probability_rows(xp, B, C, sum_tol, tp);
  }
  return check_tuple(c);
}

template <typename T>
py::tuple check_copy_rows(const py::array& x, double sum_tol, py::array& out) {
  auto [B, C] = rows_cols(x);
  const T* xp = in_ptr<T>(x, -1, "x");
  T* op = out_ptr<T>(out, B * C, "out");
  mgf::BatchCheck c;
  {
    py::gil_scoped_release release;
    c = mgf::check_copy_rows(xp, B, C, sum_tol, op);
  }
  return check_tuple(c);
}

template <typename T>
void search_packed(const py::array& x, const py::array& top, const py::array& codebook, const py::array& offsets,
                   double eps, int32_t mode, py::array& index, py::array& distance) {
  auto [B, C] = rows_cols(x);
  const T* xp = in_ptr<T>(x, -1, "x");
  const int64_t* tp = in_ptr<int64_t>(top, B, "top");
  const int64_t* op = in_ptr<int64_t>(offsets, C + 1, "offsets");
  const T* cp = in_ptr<T>(codebook, op[C] * C, "codebook");
  int64_t* ip = out_ptr<int64_t>(index, B, "index");
  T* dp = out_ptr<T>(distance, B, "distance");
  for (int64_t i = 0; i < B; ++i) {
    if (tp[i] < 0 || tp[i] >= C) throw std::out_of_range("top: class out of range");
  }
  py::gil_scoped_release release;
  mgf::search_packed(xp, B, C, tp, cp, op, static_cast<T>(eps), mode, ip, dp);
}

// ----------------------------------------------------------------- partial Bayes matcher

template <typename T>
void bind_bayes_index(py::module_& m, const char* name) {
  using Index = mgf::BayesIndex<T>;
  py::class_<Index>(m, name, py::module_local())
      .def(py::init([](const py::array& clean, const py::array& pert, const py::array& clean_top) {
             auto [N, C] = rows_cols(clean);
             const T* cp = in_ptr<T>(clean, -1, "clean");
             if (pert.ndim() != 2 || pert.shape(0) != N || pert.shape(1) != C) {
               throw std::invalid_argument("pert: shape differs from clean");
             }
             return std::make_unique<Index>(cp, in_ptr<T>(pert, N * C, "pert"),
                                            in_ptr<int64_t>(clean_top, N, "clean_top"), N, C);
           }),
           py::arg("clean"), py::arg("pert"), py::arg("clean_top"), py::keep_alive<1, 2>(), py::keep_alive<1, 3>())
      .def_property_readonly("rows", &Index::rows)
      .def_property_readonly("classes", &Index::classes)
      .def(
          "match",
          [](Index& index, const py::array& received, const std::optional<py::array>& top, double delta,
             bool grouped, int32_t isa, py::array& out, py::array& count) {
            auto [B, C] = rows_cols(received);
            if (C != index.classes()) throw std::invalid_argument("received: wrong number of columns");
            const T* rp = in_ptr<T>(received, -1, "received");
            const int64_t* tp = nullptr;
            if (top) {
              tp = in_ptr<int64_t>(*top, B, "top");
              for (int64_t i = 0; i < B; ++i) {
                if (tp[i] < 0 || tp[i] >= C) throw std::out_of_range("top: class out of range");
              }
            }
            double* op = out_ptr<double>(out, B * C, "out");
            int64_t* np = out_ptr<int64_t>(count, B, "count");
            py::gil_scoped_release release;
            index.match(rp, B, tp, static_cast<T>(delta), grouped, isa, op, np);
          },
          py::arg("received"), py::arg("top"), py::arg("delta"), py::arg("grouped"), py::arg("isa"), py::arg("out"),
          py::arg("count"))
      .def("group_count", &Index::group_count, py::arg("by_class"), py::arg("max_groups"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "grouped_arrays",
          [](Index& index, bool by_class) {
            const typename Index::GroupedTable* g;
            {
              py::gil_scoped_release release;
              g = &index.grouped(by_class);
            }
            const int64_t G = static_cast<int64_t>(g->counts.size());
            const int64_t C = index.classes();
            py::array_t<T> values({G, C});
            py::array_t<double> sums({G, C});
            py::array_t<int64_t> counts(G);
            py::array_t<int64_t> part(G);
            std::copy(g->values.begin(), g->values.end(), values.mutable_data());
            std::copy(g->sums.begin(), g->sums.end(), sums.mutable_data());
            std::copy(g->counts.begin(), g->counts.end(), counts.mutable_data());
            std::copy(g->part.begin(), g->part.end(), part.mutable_data());
            return py::make_tuple(values, sums, counts, part);
          },
          py::arg("by_class"));
}

// ----------------------------------------------------------------- ModelGuard-W

// Checks and solves every row; returns the first bad row's check, like check_rows.
template <typename T>
py::tuple mgw_solve(const py::array& x, const py::array& eps, double margin, double log_shift, double sum_tol,
                    py::array& out, py::array& feasible, bool simd) {
  auto [B, C] = rows_cols(x);
  if (C < 1) throw std::invalid_argument("x: needs at least one column");
  const T* xp = in_ptr<T>(x, -1, "x");
  const int64_t E = eps.size();
  const double* ep = in_ptr<double>(eps, E, "eps");
  T* op = out_ptr<T>(out, B * E * C, "out");
  bool* fp = out_ptr<bool>(feasible, B * E, "feasible");
  mgf::BatchCheck c;
  {
    py::gil_scoped_release release;
    c = mgf::mgw_solve(xp, B, C, sum_tol, ep, E, margin, log_shift, op, fp, simd);
  }
  return check_tuple(c);
}

// The per-row sort of the CUDA kernel (the CPU sorts large rows another way),
// exposed so the CPU tests can check it: y's indices ascending by (y, index).
py::array_t<int32_t> mgw_heap_sort_order(const py::array& y) {
  const int64_t n = y.size();
  const double* yp = in_ptr<double>(y, n, "y");
  std::vector<double> keys(yp, yp + n);
  py::array_t<int32_t> order(n);
  int32_t* op = order.mutable_data();
  for (int64_t i = 0; i < n; ++i) op[i] = static_cast<int32_t>(i);
  mgf::mgw_heap_sort(mgf::StridedSpan<double>{keys.data(), 1}, mgf::StridedSpan<int32_t>{op, 1}, n);
  return order;
}

// mgw_log of each value, by the portable function or the CPU's SIMD block
// log (for the tests: both must give the same bits).
py::array_t<double> mgw_logs(const py::array& values, bool simd) {
  const int64_t n = values.size();
  const double* vp = in_ptr<double>(values, n, "values");
  py::array_t<double> out(n);
  double* op = out.mutable_data();
  if (simd) {
    if (!mgf::mgw_cpu_simd()) throw std::invalid_argument("simd: this CPU/build has no SIMD block log");
    mgf::mgw_cpu_logs(vp, n, 0.0, op);
  } else {
    for (int64_t i = 0; i < n; ++i) op[i] = mgf::mgw_log(vp[i] + 0.0);
  }
  return out;
}

void bind_mgw(py::module_& m) {
  m.def("mgw_solve_f32", &mgw_solve<float>, py::arg("x"), py::arg("eps"), py::arg("margin"), py::arg("log_shift"),
        py::arg("sum_tol"), py::arg("out"), py::arg("feasible"), py::arg("simd") = true);
  m.def("mgw_solve_f64", &mgw_solve<double>, py::arg("x"), py::arg("eps"), py::arg("margin"), py::arg("log_shift"),
        py::arg("sum_tol"), py::arg("out"), py::arg("feasible"), py::arg("simd") = true);
  m.def("mgw_cpu_simd", &mgf::mgw_cpu_simd);
  m.def(
      "mgw_cuda_workspace",
      [](int64_t B, int64_t C) {
        const mgf::MgwCudaWorkspace w = mgf::mgw_cuda_workspace(B, C);
        return py::make_tuple(w.threads, w.f64, w.i32);
      },
      py::arg("B"), py::arg("C"));
  m.def("mgw_solve_cuda", &mgf::mgw_solve_cuda, py::call_guard<py::gil_scoped_release>());
}

// Hooks for the tests only (modelguard_fast._C._testing): not part of the package's surface.
void bind_testing(py::module_& m) {
  py::module_ t = m.def_submodule("_testing", "Test-only hooks of the kernels; not a public API.");
  t.def("mgw_heap_sort_order", &mgw_heap_sort_order, py::arg("y"));
  t.def("mgw_logs", &mgw_logs, py::arg("values"), py::arg("simd"));
  t.def(
      "mgw_cuda_threads", [](int64_t B, int64_t C) { return mgf::mgw_cuda_workspace(B, C).threads; },
      py::arg("B"), py::arg("C"));
}

// Whether this CPU runs code built for `isa` ("baseline" or "x86-64-v3": AVX2, FMA, BMI1/2,
// F16C, LZCNT, MOVBE, with the OS saving the AVX registers), for the choice of module.
bool cpu_runs(const std::string& isa) {
  if (isa == "baseline") return true;
  if (isa != "x86-64-v3") throw std::invalid_argument("isa: expected 'baseline' or 'x86-64-v3', got '" + isa + "'");
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  return __builtin_cpu_supports("x86-64-v3");
#else
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
         __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c");
#endif
#else
  return false;
#endif
}

}  // namespace

#if !defined(MGF_MODULE_NAME)
#define MGF_MODULE_NAME _C
#define MGF_MODULE_ISA "baseline"
#endif

// One module per instruction-set level (CMakeLists.txt): _C, and _C_avx2 on x86-64.
PYBIND11_MODULE(MGF_MODULE_NAME, m) {
  m.doc() = "Compiled kernels of modelguard_fast (private; use the Python API).";
  m.def("isa", [] { return std::string(MGF_MODULE_ISA); });
  m.def("cpu_runs", &cpu_runs, py::arg("isa"));
  m.def("cuda_built", &mgf::cuda_built);
  m.def("cuda_device_count", &mgf::cuda_device_count);
  m.def("max_threads", &mgf::max_threads);
  m.def("set_thread_limit", &mgf::set_thread_limit, py::arg("threads"));

  bind_codebooks<float>(m, "Codebooks32");
  bind_codebooks<double>(m, "Codebooks64");
  m.def("check_rows_f32", &check_rows<float>);
  m.def("check_rows_f64", &check_rows<double>);
  m.def("check_copy_rows_f32", &check_copy_rows<float>);
  m.def("check_copy_rows_f64", &check_copy_rows<double>);
  m.def("check_rows_cuda", &mgf::check_rows_cuda, py::call_guard<py::gil_scoped_release>());
  m.def("search_packed_f32", &search_packed<float>);
  m.def("search_packed_f64", &search_packed<double>);
  m.def("mgs_search_cuda", &mgf::mgs_search_cuda, py::call_guard<py::gil_scoped_release>());

  bind_bayes_index<float>(m, "BayesIndex32");
  bind_bayes_index<double>(m, "BayesIndex64");
  m.def("bayes_isas", &mgf::bayes_isas);
  m.def("bayes_match_cuda", &mgf::bayes_match_cuda, py::call_guard<py::gil_scoped_release>());
  bind_mgw(m);
  bind_testing(m);
}
