"""Intervals of the experiment tables (experiments/stats.py) and the findings built on them, on synthetic records."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from modelguard_fast.experiments.findings import paper_findings
from modelguard_fast.experiments.report import grid_interval_table, grid_table
from modelguard_fast.experiments.stats import (BOOTSTRAP, T_OVER_SEEDS, bits, bootstrap_interval, cell_interval,
                                               difference_interval, interval_method, unbits, verdict)


def record(accuracy=None, seed=0, correct=None, defense="none", query="knockoff", strategy="naive", fidelity=None):
    r = {"defense": defense, "query": query, "strategy": strategy, "eps": 1.0, "seed": seed}
    if correct is not None:
        correct = np.asarray(correct, dtype=bool)
        r.update(correct=bits(correct), agree=bits(correct), test_images=len(correct))
        accuracy = float(correct.mean())
    r.update(accuracy=accuracy, fidelity=accuracy if fidelity is None else fidelity)
    return r


def test_bits_round_trip_any_length():
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 359):
        mask = rng.random(n) < 0.5
        assert np.array_equal(unbits(bits(mask), n), mask)


def test_t_interval_over_seeds_is_students():
    values = [0.90, 0.94, 0.92]
    iv = cell_interval([record(v, seed=s) for s, v in enumerate(values)])
    half = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert iv.method == T_OVER_SEEDS and iv.values == tuple(values)
    assert iv.mean == pytest.approx(0.92) and iv.low == pytest.approx(0.92 - half) and iv.high == pytest.approx(
        0.92 + half)
    same = cell_interval([record(0.5, seed=s) for s in range(3)])
    assert (same.low, same.high) == (0.5, 0.5)


def test_one_seed_bootstraps_the_test_images():
    correct = np.r_[np.ones(300), np.zeros(59)]  # 359 images, accuracy 0.8357
    iv = cell_interval([record(correct=correct)])
    assert iv.method == BOOTSTRAP and iv.mean == pytest.approx(300 / 359)
    se = np.sqrt(iv.mean * (1 - iv.mean) / 359)  # the binomial standard error the bootstrap estimates
    assert iv.low < iv.mean < iv.high
    assert (iv.high - iv.low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert cell_interval([record(correct=correct)]) == iv  # seeded: the same interval every time
    old = cell_interval([record(0.8)])  # cached by an older version: no per-image results, no interval
    assert old.low is None and old.format() == "0.8000"


def test_bootstrap_matches_scipys_resampling():
    rng = np.random.default_rng(2)
    a = rng.random(359) < 0.85
    b = np.where(rng.random(359) < 0.1, ~a, a)  # b disagrees with a on about 36 images
    for samples, statistic in (((a,), lambda x, axis: x.mean(axis=axis)),
                               ((a, b), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis))):
        ours = bootstrap_interval(*samples)
        ref = scipy_stats.bootstrap(tuple(s.astype(float) for s in samples), statistic, n_resamples=20_000,
                                    method="percentile", paired=len(samples) > 1, vectorized=True,
                                    random_state=np.random.default_rng(0)).confidence_interval
        assert ours == pytest.approx((ref.low, ref.high), abs=3 / 359)
    with pytest.raises(ValueError, match=r"sample a must be a non-empty 1-D array of 0/1 values \(per test image\), "
                                         r"got shape \(2, 2\)"):
        bootstrap_interval(np.ones((2, 2)))


def test_paired_difference_is_tighter_than_two_intervals():
    rng = np.random.default_rng(0)
    a = rng.random(359) < 0.9
    b = a.copy()
    b[np.flatnonzero(a)[:5]] = False  # b misses 5 images a gets and gets 2 that a misses: a - b = 3/359
    b[np.flatnonzero(~a)[:2]] = True
    d = difference_interval([record(correct=a)], [record(correct=b)])
    assert d.mean == pytest.approx(3 / 359) and d.method == BOOTSTRAP
    assert d.low < 0 < d.mean < d.high < 0.03  # tighter than a's own interval alone (about +-0.03)
    assert verdict(d, 0.0) == "not resolved at this size"  # 3 images are not a result
    with pytest.raises(ValueError, match=r"a and b must hold records of the same seeds in the same order, got "
                                         r"\[0, 1\] and \[1, 0\]"):
        difference_interval([record(0.9, seed=0), record(0.9, seed=1)], [record(0.9, seed=1), record(0.9, seed=0)])


def test_verdicts():
    iv = cell_interval([record(v, seed=s) for s, v in enumerate([0.30, 0.32, 0.31])])
    assert verdict(iv, 0.0) == "holds" and verdict(iv, 0.5) == "does not hold"
    assert verdict(iv, 0.31) == "not resolved at this size"
    assert verdict(cell_interval([record(0.3)]), 0.0) == "not resolved at this size"


def grid(values):
    """A grid of {(defense, strategy): [accuracy per seed]}, KnockoffNets only."""
    cells = [record(v, seed=s, defense=d, strategy=st) for (d, st), vs in values.items() for s, v in enumerate(vs)]
    defenses = dict.fromkeys(d for d, _ in values)
    utility = [{"seed": s, "defense": d, "max_l1": 0.5 + s, "protected_accuracy": 0.9 + 0.01 * s}
               for d in defenses for s in range(len(next(iter(values.values()))))]
    return {"cells": cells, "utility": utility}


def test_max_over_attacks_takes_the_largest_mean_not_the_luckiest_seed():
    g = grid({("mgs", "naive"): [0.80, 0.80, 0.80], ("mgs", "pbayes"): [0.60, 0.99, 0.62]})
    header, rows = grid_table(g)
    assert header[-4:] == ["max acc.", "max fidelity", "max L1", "protected acc."]
    assert rows[0][1:3] == [pytest.approx(0.80), pytest.approx(0.7366666)]
    assert rows[0][3] == pytest.approx(0.80)  # naive's mean, though one pbayes seed reached 0.99
    assert rows[0][5:] == [2.5, pytest.approx(0.91)]  # the largest max L1 over seeds, the mean protected accuracy
    _, ci = grid_interval_table(g)
    assert ci[0][3] == "0.8000 [0.8000, 0.8000]" and ci[0][2].startswith("0.7367 [")
    assert interval_method(g["cells"]) == T_OVER_SEEDS


def test_findings_follow_their_intervals():
    g = grid({("none", "naive"): [0.95, 0.96, 0.95], ("mad", "naive"): [0.90, 0.91, 0.90],
              ("mgw", "naive"): [0.55, 0.60, 0.58], ("none", "pbayes"): [0.95, 0.95, 0.96],
              ("mad", "pbayes"): [0.80, 0.81, 0.80], ("mgw", "pbayes"): [0.90, 0.96, 0.93],
              ("mgs", "naive"): [0.90, 0.95, 0.92], ("mgs", "pbayes"): [0.95, 0.95, 0.96]})
    findings = {f.statement.split(" ")[0]: f for f in paper_findings(g)}
    assert findings["ModelGuard-W"].verdict == "holds"
    lifted = findings["Partial"]
    assert [c[0] for c in lifted.checks] == ["MAD pBayes - None Naive, KnockoffNets",
                                             "ModelGuard-W pBayes - None Naive, KnockoffNets"]
    assert [c[3] for c in lifted.checks] == ["does not hold", "not resolved at this size"]  # MGW: -0.023 +- 0.07
    assert lifted.verdict == "does not hold"
    assert findings["ModelGuard-S's"].verdict == "does not hold"  # MAD's worst case (0.903) is below ModelGuard-S's
    assert findings["ModelGuard-S's"].checks[0][3] == "not resolved at this size"  # None's: 0.957 vs 0.953


def test_a_finding_on_a_subset_of_defenses_names_the_ones_it_could_not_test():
    g = grid({("none", "naive"): [0.95, 0.96, 0.95], ("mgw", "naive"): [0.55, 0.60, 0.58],
              ("mgw", "pbayes"): [0.94, 0.95, 0.95], ("mgs", "naive"): [0.90, 0.95, 0.92]})
    findings = {f.statement.split(" ")[0]: f for f in paper_findings(g)}
    lifted = findings["Partial"]
    assert lifted.verdict == "holds" and lifted.untested == ("MAD", "RevSig")
    assert "(tested without MAD, RevSig: not in this grid)" in lifted.markdown()
    assert lifted.as_dict()["untested"] == ["MAD", "RevSig"]
    assert findings["ModelGuard-W"].untested == ("RevSig", "MAD", "AM", "Top-1", "Rounding")
    full = grid({(d, s): [0.9, 0.9, 0.9] for d in ("none", "revsig", "mad", "am", "top1", "rounding", "mgw", "mgs")
                 for s in ("naive", "pbayes")})
    assert all(f.untested == () and "untested" not in f.as_dict() for f in paper_findings(full))
