// ModelGuard-W: an exact solver for the per-prediction linear program of the
// paper's Eq. (9), in the form its public code states it. Shared by the CPU
// and CUDA kernels. For a prediction y with top-1 class t (first index on ties):
//
//   minimize    sum_k x_k c_k,   c_k = log(y_k + log_shift)
//   subject to  sum_k x_k = 1,  x >= 0,  ||x - y||_1 <= eps,
//               x_t - x_j >= margin  for every j != t.
//
// Method. Fix the level L = x_t; every other class is capped at U = L - margin.
// For fixed L the rest is a greedy transport over the other classes sorted by
// cost (equivalently by y; ties by class index): classes above U are cut to U,
// mass is added to the cheapest classes up to U and taken from the most
// expensive ones down to 0, trading the most expensive mass for the cheapest
// room while that lowers the objective and the budget lasts. With T the total
// mass taken from the other classes, the objective is convex in T and
// minimised at T_free(L), the "water-filling" point (cheapest classes at U,
// one partial class, the rest 0), so the inner optimum is at
// T = min(T_free(L), T_max(L)), T_max(L) = beta - max(0, y_t - L) the budget.
// Exchange arguments show this greedy is optimal for fixed L.
//
// The optimal value V(L) is convex in L (the value function of an LP whose
// right-hand side is affine in L) and piecewise linear, on the interval of
// feasible levels (computed in closed form; empty means infeasible). Its
// right slope V'(L+) is a closed-form sum of costs fixed by a handful of
// integers (classes cut, classes filled, classes drained, whether the budget
// binds, the side of y_t), so a minimiser is where V'(L+) turns >= 0. Every
// point where V'(L+) can change is an event of one of a few families, each
// monotone in its index (so binary searchable): U crossing a y_j; L crossing
// y_t; the water-filling count or its partial class crossing y; the
// budget-bound fill or drain count changing; and the switch between the bound
// and free regimes. Searching the families in turn narrows a bracket
// [lo, hi] around the minimiser until no event is left inside; V is then
// linear on it and the minimiser is lo or hi. An optimum is a vertex of the
// LP, so it sits at such an event or an end of the feasible interval.
//
// Cost: sorting is O(C log C); the search makes O(log C) slope evaluations of
// O(log C) each (prefix sums and binary searches) and computes the logs it
// needs lazily, so the whole solve is O(C log C). Confident rows mostly need
// one slope evaluation: their optimum is the lowest feasible level, where the
// top class gives the whole budget. Exact up to float64 rounding: no iteration
// and no tolerance but the feasibility slack below.
//
// On the CPU, rows of 2 to 256 classes are checked, sorted and summed in one
// AVX-512 pass where the CPU has it (csrc/cpu/mgw_avx512.cpp); it writes the
// same bits as mgw_gather, mgw_heap_sort, mgw_prefix and mgw_row_sum (mgw_row.h),
// which the GPU runs.
//
// Rows that do not sum exactly to 1: the budget is taken as eps + |1 - sum y|,
// the least that lets x be a distribution at all; for float64 rows that is
// within rounding of eps.
//
// This header holds the solver; mgw_math.h the portable arithmetic and
// mgw_row.h the row preparation it starts from.
#pragma once

#include <cstdint>

#include "modelguard_fast/common.h"
#include "modelguard_fast/mgw_math.h"
#include "modelguard_fast/mgw_row.h"

namespace mgf {

// Infeasible only when the level interval is empty by more than this: a few
// roundings of quantities of size 1, so that eps = 0 rows whose margin holds
// exactly are not lost to rounding.
constexpr double kMgwFeasibilitySlack = 1e-14;

// out[q] = mgw_log(ys[q] + shift) for q < count, with mgw_log's bits.
using MgwLogBlock = void (*)(const double* ys, int64_t count, double shift, double* out);

// With a block log, costs are filled this many at a time.
constexpr int64_t kMgwLogBlock = 8;

// The solver for one prepared row (workspace sorted, prefix sums filled);
// solve() may be called for several (eps, margin) pairs.
class MgwRow {
 public:
  MGF_HD MgwRow(const MgwWorkspace& ws, int64_t n, double yt, double log_shift, double row_sum)
      : ws_(ws),
        n_(n),
        yt_(yt),
        ct_(mgw_log(yt + log_shift)),
        rho_(1.0 - row_sum),
        log_shift_(log_shift),
        half_(n / 2),
        bottom_(0),
        top_(n),
        valid_lo_(0),
        valid_hi_(n) {
    ws_.Cc[0] = 0.0;
    ws_.Cc[n + 1] = 0.0;
  }

  // On the CPU, with a contiguous workspace: a function that computes
  // out[q] = mgw_log(ys[q] + shift) for q < count with the same bits (SIMD),
  // used to fill the costs a block at a time.
  void use_log_block(MgwLogBlock fn) { log_block_ = fn; }

  // Finds the optimal level L = x_t; false when the LP is infeasible.
  MGF_HD bool solve(double eps, double margin, double* level) {
    m_ = margin;
    beta_ = 0.5 * eps + (rho_ < 0.0 ? -rho_ : 0.0);
    fixed_u_ = false;
    fixed_p_ = false;
    if (n_ == 0) {  // one class: x = (1)
      *level = 1.0;
      return true;
    }
    double La = 0.0, Lb = 0.0;
    if (!domain(&La, &Lb)) return false;
    if (La >= Lb) {
      *level = La;
      return true;
    }
    // Most often (confident predictions) the lowest level is where the top
    // class gives the whole budget, and V rises from there: one slope (with
    // few costs, the level being high) settles it.
    if (La == yt_ - beta_ && slope(La) >= 0.0) {
      *level = La;
      return true;
    }
    // The minimiser is in (lo, hi]; the search moves lo only to levels where
    // the slope is negative, and finish() settles whether it is lo itself.
    lo_ = La;
    hi_ = Lb;
    *level = search();
    return true;
  }

  // Writes the optimal x for level L (from solve) into x[0..C); y is the row
  // (C entries) and top its top-1 class.
  template <typename T>
  MGF_HD void write(double L, const T* y, int64_t top, T* x) const {
    const int64_t C = n_ + 1;
    if (n_ == 0) {
      x[top] = T(L);
      return;
    }
    const double U = L - m_;
    const int64_t u = upper_count(U);
    const int64_t p = free_count(L);
    const double tmax = t_max(L);
    if (t_free(L, p, u) <= tmax) {  // water-filling: cheapest p at U, one partial, the rest 0
      double r = 1.0 - L - double(p) * U;
      r = r < 0.0 ? 0.0 : (r > U ? U : r);
      for (int64_t k = 0; k < C; ++k) x[k] = T(0);
      for (int64_t q = 0; q < p; ++q) x[ws_.perm[q]] = T(U);
      x[ws_.perm[p]] = T(r);
      x[top] = T(L);
      return;
    }
    double tmin = cut_mass(U, u);
    if (L - yt_ - rho_ > tmin) tmin = L - yt_ - rho_;
    if (tmin < 0.0) tmin = 0.0;
    const double taken = tmax > tmin ? tmax : tmin;
    const double I = taken + rho_ + yt_ - L;
    const int64_t a = fill_count(U, u, I, false);
    const double inc = I - (double(a) * U - ws_.Y[a]);
    const int64_t d = drain_count(U, u, taken);
    const double e = taken - drained(d, U, u);
    // Every class cut to U, then the cheapest a filled to U (a partial one
    // after them) and the d most expensive drained to 0 (a partial one before).
    for (int64_t k = 0; k < C; ++k) {
      const double v = double(y[k]) + 0.0;
      x[k] = T(v < U ? v : U);
    }
    for (int64_t q = 0; q < a; ++q) x[ws_.perm[q]] = T(U);
    const double partial_fill = a < u ? (ws_.ys[a] + inc < U ? ws_.ys[a] + inc : U) : 0.0;
    if (a < u) x[ws_.perm[a]] = T(partial_fill);
    for (int64_t q = n_ - d; q < n_; ++q) x[ws_.perm[q]] = T(0);
    if (d < n_) {
      const int64_t q = n_ - d - 1;
      double v = ws_.ys[q] < U ? ws_.ys[q] : U;
      if (q < a) v = U;
      else if (q == a && a < u) v = partial_fill;
      x[ws_.perm[q]] = T(v - e > 0.0 ? v - e : 0.0);
    }
    x[top] = T(L);
  }

 private:
  // Event families searched for the minimiser (see candidate()).
  enum Family { kCut, kTop, kFreeFill, kFreePartial, kBoundFill, kBoundDrain, kSwitch };

  // Costs are computed only where the search needs them (mostly the few
  // cheapest and most expensive classes): cs[q] holds cost q for q < valid_lo_
  // and q >= valid_hi_. Cc[0..half] holds prefix sums from the bottom, filled
  // up to bottom_ (<= valid_lo_), and Cc[i + 1] for i in [half, n] suffix sums
  // from the top, filled down to top_ (>= valid_hi_). A range sum is always
  // formed the same way from its ends, so its bits do not depend on what was
  // cached. With a block log (CPU SIMD), the ends fill eight costs at a time.
  MGF_HD double cost(int64_t q) const {
    if (q < valid_lo_ || q >= valid_hi_) return ws_.cs[q];
    return mgw_log(ws_.ys[q] + log_shift_);
  }

  // Makes cs[q] valid for every q < i.
  MGF_HD void valid_low(int64_t i) const {
    if (i <= valid_lo_) return;
    int64_t end = i;
#if !defined(__CUDA_ARCH__)
    if (log_block_) {
      end = valid_lo_ + (i - valid_lo_ + kMgwLogBlock - 1) / kMgwLogBlock * kMgwLogBlock;
      if (end > n_) end = n_;
      const int64_t stop = end < valid_hi_ ? end : valid_hi_;
      if (stop > valid_lo_) log_block_(&ws_.ys[valid_lo_], stop - valid_lo_, log_shift_, &ws_.cs[valid_lo_]);
      valid_lo_ = end;
      return;
    }
#endif
    for (; valid_lo_ < end; ++valid_lo_) {
      if (valid_lo_ < valid_hi_) ws_.cs[valid_lo_] = mgw_log(ws_.ys[valid_lo_] + log_shift_);
    }
  }

  // Makes cs[q] valid for every q >= i.
  MGF_HD void valid_high(int64_t i) const {
    if (i >= valid_hi_) return;
    int64_t begin = i;
#if !defined(__CUDA_ARCH__)
    if (log_block_) {
      begin = valid_hi_ - (valid_hi_ - i + kMgwLogBlock - 1) / kMgwLogBlock * kMgwLogBlock;
      if (begin < 0) begin = 0;
      const int64_t start = begin > valid_lo_ ? begin : valid_lo_;
      if (valid_hi_ > start) log_block_(&ws_.ys[start], valid_hi_ - start, log_shift_, &ws_.cs[start]);
      valid_hi_ = begin;
      return;
    }
#endif
    for (; valid_hi_ > begin; --valid_hi_) {
      const int64_t q = valid_hi_ - 1;
      if (q >= valid_lo_) ws_.cs[q] = mgw_log(ws_.ys[q] + log_shift_);
    }
  }

  MGF_HD double prefix_cost(int64_t i) const {  // sum of cs[0, i), i <= half
    valid_low(i);
    for (; bottom_ < i; ++bottom_) ws_.Cc[bottom_ + 1] = ws_.Cc[bottom_] + ws_.cs[bottom_];
    return ws_.Cc[i];
  }

  MGF_HD double suffix_cost(int64_t i) const {  // sum of cs[i, n), i >= half
    valid_high(i);
    for (; top_ > i; --top_) ws_.Cc[top_] = ws_.Cc[top_ + 1] + ws_.cs[top_ - 1];
    return ws_.Cc[i + 1];
  }

  MGF_HD double cost_sum(int64_t i, int64_t j) const {  // sum of cs[i, j)
    if (j <= half_) return prefix_cost(j) - prefix_cost(i);
    if (i >= half_) return suffix_cost(i) - suffix_cost(j);
    return (prefix_cost(half_) - prefix_cost(i)) + (suffix_cost(half_) - suffix_cost(j));
  }

  // Number of other classes with y <= U (not cut at level U + margin).
  MGF_HD int64_t upper_count(double U) const {
    hint_upper_ = last_count(kUpper, n_, hint_upper_, U, 0, 0.0);
    return hint_upper_;
  }

  // What the counts below search for: a property of the first i classes (of
  // the cheapest, or of the most expensive for kDrain) that holds for i = 0
  // and is monotone in i (true, then false).
  enum Count { kUpper, kFill, kFillStrict, kDrain };

  MGF_HD bool holds(Count c, int64_t i, double U, int64_t u, double X) const {
    switch (c) {
      case kUpper:
        return ws_.ys[i - 1] <= U;
      case kFill:
        return fills(i, U, X, false);
      case kFillStrict:
        return fills(i, U, X, true);
      default:
        return drained(i, U, u) < X;
    }
  }

  // The last i in [0, hi] where holds() (true at 0, not evaluated there),
  // searched out from `hint` by galloping, then bisecting. Within a row the
  // levels asked about draw together, so the answer is mostly near the last.
  MGF_HD int64_t last_count(Count c, int64_t hi, int64_t hint, double U, int64_t u, double X) const {
    hint = hint < 0 ? 0 : (hint > hi ? hi : hint);
    int64_t yes = 0, no = hi + 1;  // holds at yes; the answer is below no
    if (hint == 0 || holds(c, hint, U, u, X)) {
      yes = hint;
      for (int64_t step = 1; yes + step < no; step *= 2) {
        if (!holds(c, yes + step, U, u, X)) {
          no = yes + step;
          break;
        }
        yes += step;
      }
    } else {
      no = hint;
      for (int64_t step = 1; no - step > 0; step *= 2) {
        if (holds(c, no - step, U, u, X)) {
          yes = no - step;
          break;
        }
        no -= step;
      }
    }
    for (int64_t len = no - yes; len > 1;) {
      const int64_t half = len / 2;
      yes = holds(c, yes + half, U, u, X) ? yes + half : yes;
      len -= half;
    }
    return yes;
  }

  // Mass the budget lets the other classes give: beta - max(0, y_t - L).
  MGF_HD double t_max(double L) const { return yt_ > L ? beta_ - (yt_ - L) : beta_; }

  // Mass that must be cut from the classes above U (u of them are not).
  MGF_HD double cut_mass(double U, int64_t u) const {
    return (ws_.Y[n_] - ws_.Y[u]) - double(n_ - u) * U;
  }

  // Water-filling at level L: the number p of classes (cheapest first) at U
  // just to the right of L, so the partial class p holds 1 - L - p U in (0, U].
  MGF_HD int64_t free_count(double L) const {
    const double U = L - m_;
    const double R = 1.0 - L;
    double guess = R / U;
    int64_t p = guess >= double(n_ - 1) ? n_ - 1 : (guess > 0.0 ? int64_t(guess) : 0);
    while (p > 0 && double(p) * U >= R) --p;
    while (p + 1 < n_ && double(p + 1) * U < R) ++p;
    return p;
  }

  // Mass the water-filling solution at L takes from the other classes.
  MGF_HD double t_free(double L, int64_t p, int64_t u) const {
    const double U = L - m_;
    const double r = 1.0 - L - double(p) * U;
    double v = ws_.Y[n_] - ws_.Y[p + 1];
    if (p > u) v += (ws_.Y[p] - ws_.Y[u]) - double(p - u) * U;
    if (ws_.ys[p] > r) v += ws_.ys[p] - r;
    return v;
  }

  // Do the a cheapest classes have room for at most I (less than I if strict)?
  MGF_HD bool fills(int64_t a, double U, double I, bool strict) const {
    const double room = double(a) * U - ws_.Y[a];
    return strict ? room < I : room <= I;
  }

  // Number of cheapest classes (among the u uncut) filled to U by mass I: the
  // last a in [0, u] that fills() (room grows with a). The a0 = I / U cheapest
  // have room at most a0 U <= I (values are >= 0), so the search starts at a0
  // or the last answer, whichever is higher.
  MGF_HD int64_t fill_count(double U, int64_t u, double I, bool strict) const {
    int64_t hint = hint_fill_;
    if (U > 0.0) {
      const double guess = I / U;
      const int64_t a0 = guess >= double(u) ? u : (guess > 0.0 ? int64_t(guess) : 0);
      if (a0 > hint) hint = a0;
    }
    hint_fill_ = last_count(strict ? kFillStrict : kFill, u, hint, U, u, I);
    return hint_fill_;
  }

  // Mass taken when the d most expensive classes are drained to 0 and the
  // other cut classes cut to U.
  MGF_HD double drained(int64_t d, double U, int64_t u) const {
    const int64_t k = n_ - u;
    if (d <= k) return ws_.Y[n_] - ws_.Y[u] - double(k - d) * U;
    return ws_.Y[n_] - ws_.Y[n_ - d];
  }

  // Number of classes fully drained to give T: the fewest, so classes with no
  // mass left to give are not counted (they may be receiving).
  MGF_HD int64_t drain_count(double U, int64_t u, double T) const {
    hint_drain_ = last_count(kDrain, n_, hint_drain_, U, u, T);
    return hint_drain_;
  }

  // Right slope V'(L+) of the optimal value as a function of the level.
  MGF_HD double slope(double L) const {
    const double U = L - m_;
    const int64_t u = fixed_u_ ? u_ : upper_count(U);
    const int64_t k = n_ - u;
    const bool below = L < yt_;
    const double dT = below ? 1.0 : 0.0;  // d T_max / dL
    const int64_t p = fixed_p_ ? p_ : free_count(L);
    const double r = 1.0 - L - double(p) * U;
    const double tf = t_free(L, p, u);
    const double tm = t_max(L);
    bool free = tf < tm;
    if (tf == tm) {
      const double tf_slope = -double(p > u ? p - u : 0) + (ws_.ys[p] >= r ? double(p + 1) : 0.0);
      free = tf_slope <= dT;
    }
    if (free) return ct_ + cost_sum(0, p) - double(p + 1) * cost(p);
    const double I = tm + rho_ + yt_ - L;
    const int64_t a = fill_count(U, u, I, true);
    const int64_t d = drain_count(U, u, tm);
    double s = ct_ + cost_sum(0, a);
    if (a < u) s += cost(a) * (dT - 1.0 - double(a));
    if (d < k) s += cost_sum(u, n_ - d);
    if (d < n_) s -= cost(n_ - d - 1) * (dT + double(k > d ? k - d : 0));
    return s;
  }

  // Budget left after the cuts forced at level L; non-decreasing in L.
  MGF_HD double cut_slack(double L) const {
    const double U = L - m_;
    return t_max(L) - cut_mass(U, upper_count(U));
  }

  // The interval [La, Lb] of feasible levels; false when it is empty.
  MGF_HD bool domain(double* La, double* Lb) const {
    const double n = double(n_);
    double l0 = (1.0 + n * m_) / (n + 1.0);  // the others can hold 1 - L below U
    if (l0 < m_) l0 = m_;
    if (yt_ - beta_ > l0) l0 = yt_ - beta_;
    double hi = yt_ + beta_ + rho_;  // the others must not need to gain mass
    if (hi > 1.0) hi = 1.0;
    double lo = l0;
    const double h0 = cut_slack(l0);
    if (h0 < 0.0) {
      // First cut event y_q + margin with enough budget, then y_t; the slack
      // is linear between consecutive events.
      int64_t a = 0, b = n_;
      while (a < b) {
        const int64_t mid = (a + b) / 2;
        if (cut_slack(ws_.ys[mid] + m_) >= 0.0) b = mid;
        else a = mid + 1;
      }
      double left = a > 0 && ws_.ys[a - 1] + m_ > l0 ? ws_.ys[a - 1] + m_ : l0;
      double right = a < n_ ? ws_.ys[a] + m_ : INFINITY;
      if (left < yt_ && yt_ < right) {
        if (cut_slack(yt_) >= 0.0) right = yt_;
        else left = yt_;
      }
      if (right == INFINITY) {
        lo = left;
      } else {
        const double hl = cut_slack(left), hr = cut_slack(right);
        lo = hr > hl ? left + (right - left) * (-hl / (hr - hl)) : right;
        if (lo > right) lo = right;
        if (lo < left) lo = left;
      }
    }
    *La = lo;
    *Lb = hi;
    return lo <= hi + kMgwFeasibilitySlack;
  }

  // Index i of the family's events, ordered so candidate() is non-decreasing
  // in i once clamped to [lo, hi] (see the monotonicity notes in search()).
  MGF_HD double candidate(Family f, int64_t i) const {
    const double m = m_;
    switch (f) {
      case kCut:
        return ws_.ys[i] + m;
      case kTop:
        return yt_;
      case kFreeFill: {  // p = n - i classes exactly fill 1 - L at U
        const double p = double(n_ - i);
        return (1.0 + p * m) / (p + 1.0);
      }
      case kFreePartial:  // the partial class of the water-filling reaches its y
        return (1.0 + double(p_) * m - ws_.ys[p_]) / (double(p_) + 1.0);
      case kBoundFill: {  // a = u - i classes exactly take the mass the budget adds
        const int64_t a = u_ - i;
        const double add = beta_ + rho_;
        if (below_) return m + (add + ws_.Y[a]) / double(a);
        return (add + yt_ + double(a) * m + ws_.Y[a]) / double(a + 1);
      }
      case kBoundDrain: {  // d = i + 1 classes exactly give the mass the budget allows
        const int64_t d = i + 1;
        const int64_t k = n_ - u_;
        const double Yn = ws_.Y[n_];
        if (d <= k) {
          const double cut = Yn - ws_.Y[u_];
          if (below_) return (cut + double(k - d) * m - beta_ + yt_) / double(k - d + 1);
          if (d < k) return m + (cut - beta_) / double(k - d);
          return cut <= beta_ ? -INFINITY : INFINITY;
        }
        const double top = Yn - ws_.Y[n_ - d];
        if (below_) return top - beta_ + yt_;
        return top <= beta_ ? -INFINITY : INFINITY;
      }
      case kSwitch:
        return switch_level_;
    }
    return INFINITY;
  }

  // Is the minimiser at or left of L? Monotone in L; outside (lo, hi) it is
  // known from the bracket. Only levels inside the bracket reach slope(), so
  // the counts fixed over the bracket (fixed_u_, fixed_p_) hold for them.
  MGF_HD bool at_or_right_of_minimiser(double L) const {
    if (L >= hi_) return true;
    if (L <= lo_) return false;
    return slope(L) >= 0.0;
  }

  // Shrinks [lo, hi] so no event of the family lies strictly inside. The
  // search gallops down from the highest events: optima mostly sit at high
  // levels (few classes filled or drained), where slopes need the fewest costs.
  MGF_HD void narrow(Family f, int64_t count) { narrow(f, count, 0, count, true); }

  // The same, knowing that the events below `first` are at or left of lo and
  // those from `last` on at or right of hi; without `gallop`, a plain
  // binary search over [first, last).
  MGF_HD void narrow(Family f, int64_t count, int64_t first, int64_t last, bool gallop) {
    int64_t a = first, b = last;  // the first index whose event is at or right of the minimiser is in [a, b]
    for (int64_t step = 1; gallop && b > a;) {
      const int64_t probe = b - step > a ? b - step : a;
      if (!at_or_right_of_minimiser(candidate(f, probe))) {
        a = probe + 1;
        break;
      }
      b = probe;
      step *= 2;
    }
    while (a < b) {
      const int64_t mid = a + (b - a) / 2;
      if (at_or_right_of_minimiser(candidate(f, mid))) b = mid;
      else a = mid + 1;
    }
    if (a < count) {
      const double c = candidate(f, a);
      if (lo_ < c && c < hi_) hi_ = c;
    }
    if (a > 0) {
      const double c = candidate(f, a - 1);
      if (lo_ < c && c < hi_) lo_ = c;
    }
  }

  // Is the kFreeFill event of p classes above L (at or above, unless strict)?
  MGF_HD bool free_fill_above(int64_t p, double L, bool strict) const {
    const double c = candidate(kFreeFill, n_ - p);
    return strict ? c > L : c >= L;
  }

  // The first index whose kFreeFill event is above L (at or above, unless
  // strict). The events (1 + p m) / (p + 1) fall as p = n - index grows; the
  // largest p above L is about (1 - L) / (L - m), then checked exactly.
  MGF_HD int64_t free_fill_index(double L, bool strict) const {
    int64_t p = n_;
    if (L > m_) {
      const double guess = (1.0 - L) / (L - m_);
      p = guess >= double(n_) ? n_ : (guess > 0.0 ? int64_t(guess) : 0);
    }
    while (p > 0 && !free_fill_above(p, L, strict)) --p;
    while (p < n_ && free_fill_above(p + 1, L, strict)) ++p;
    return n_ - p;
  }

  // A level strictly inside (lo, hi), or false when there is none.
  MGF_HD bool interior(double* mid) const {
    *mid = lo_ + 0.5 * (hi_ - lo_);
    return lo_ < *mid && *mid < hi_;
  }

  // With no event left inside (lo, hi), V is linear there: the minimiser is an end.
  MGF_HD double finish() const {
    double mid;
    if (!interior(&mid)) return hi_;
    return slope(mid) >= 0.0 ? lo_ : hi_;
  }

  // Monotonicity of each family over the bracket, which fixes the cut set and
  // the side of y_t once kCut and kTop are done: kFreeFill is decreasing in p;
  // the bound fill count is non-increasing in L (the mass to add does not grow,
  // the room U - y grows) and the drain count non-decreasing (the mass to take
  // does not shrink, the cut amounts shrink), so their events are ordered in
  // the count; kFreePartial and kSwitch are single roots of functions linear
  // on the bracket once the water-filling count is fixed.
  MGF_HD double search() {
    narrow(kCut, n_);
    narrow(kTop, 1);
    double mid;
    if (!interior(&mid)) return finish();
    u_ = upper_count(mid - m_);
    below_ = mid < yt_;
    fixed_u_ = true;
    // Many events inside when the level is low (many classes filled): bisect.
    narrow(kFreeFill, n_, free_fill_index(lo_, true), free_fill_index(hi_, false), false);
    if (!interior(&mid)) return finish();
    p_ = free_count(mid);
    fixed_p_ = true;
    narrow(kFreePartial, 1);
    narrow(kBoundFill, u_);
    narrow(kBoundDrain, n_);
    if (!interior(&mid)) return finish();
    // T_free - T_max = g0 + g1 L on the bracket; it changes sign at most once.
    const double U = mid - m_;
    const double r = 1.0 - mid - double(p_) * U;
    double g0 = ws_.Y[n_] - ws_.Y[p_ + 1], g1 = 0.0;
    if (p_ > u_) {
      g0 += (ws_.Y[p_] - ws_.Y[u_]) + double(p_ - u_) * m_;
      g1 -= double(p_ - u_);
    }
    if (ws_.ys[p_] > r) {
      g0 += ws_.ys[p_] - 1.0 - double(p_) * m_;
      g1 += double(p_ + 1);
    }
    if (below_) {
      g0 -= beta_ - yt_;
      g1 -= 1.0;
    } else {
      g0 -= beta_;
    }
    if (g1 != 0.0) {
      switch_level_ = -g0 / g1;
      narrow(kSwitch, 1);
    }
    return finish();
  }

  MgwWorkspace ws_;
  int64_t n_;
  double yt_, ct_, rho_, log_shift_;
  int64_t half_;
  mutable int64_t bottom_, top_;  // cost cache frontiers, kept over solve() calls
  mutable int64_t valid_lo_, valid_hi_;
  MgwLogBlock log_block_ = nullptr;
  mutable int64_t hint_upper_ = INT64_MAX, hint_fill_ = 0, hint_drain_ = 0;  // the counts' last answers
  // Per solve.
  double m_ = 0.0, beta_ = 0.0, lo_ = 0.0, hi_ = 0.0;
  // Fixed over the bracket once the search has narrowed it enough.
  int64_t u_ = 0, p_ = 0;
  bool below_ = false, fixed_u_ = false, fixed_p_ = false;
  double switch_level_ = 0.0;
};

}  // namespace mgf
