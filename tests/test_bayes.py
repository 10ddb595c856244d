"""Partial Bayes matcher (modelguard_fast.ops.bayes_recover / BayesTable)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference_bayes import reference_bayes

import modelguard_fast as mgf
from modelguard_fast.ops import BayesTable, bayes_recover
from modelguard_fast.ops.bayes import cpu_instruction_sets

DTYPES = (np.float32, np.float64)


def continuous_table(rng, N, C, dtype=np.float32):
    """A top-1 preserving continuous defense: mix with the uniform distribution."""
    clean = rng.dirichlet(np.full(C, 0.5), N)
    pert = 0.7 * clean + 0.3 / C
    return clean.astype(dtype), pert.astype(dtype)


def received_near(rng, clean, B, dtype=np.float32):
    """Perturbed fresh predictions close to some table rows (as in the attack)."""
    C = clean.shape[1]
    base = clean[rng.integers(0, len(clean), B)].astype(np.float64)
    gamma = rng.standard_gamma(base * 8 * C + 1e-3)
    fresh = gamma / gamma.sum(axis=1, keepdims=True)
    return (0.7 * fresh + 0.3 / C).astype(dtype)


def discrete_table(rng, N, C, per_class, dtype=np.float32, close_pairs=False):
    """A quantizing defense: each row maps to one of `per_class` codewords of its top-1 class.

    With close_pairs, every other codeword lies 0.005 (< delta) from the one before it.
    """
    codewords = []
    for t in range(C):
        for j in range(per_class):
            w = rng.dirichlet(np.full(C, 0.5))
            w[t] = w.max() + 0.5
            w /= w.sum()
            if close_pairs and j % 2 == 1:
                w = codewords[-1].copy()
                other = (t + 1) % C
                w[other] += 0.0025
                w[t] -= 0.0025
            codewords.append(w)
    codewords = np.array(codewords).astype(dtype)
    clean = rng.dirichlet(np.full(C, 0.5), N).astype(dtype)
    top = clean.argmax(axis=1)
    pert = codewords[top * per_class + rng.integers(0, per_class, N)]
    return clean, pert, codewords


# --------------------------------------------------------------- the reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 3, 10, 37, 70])
@pytest.mark.parametrize("top1_filter", [True, False])
@pytest.mark.parametrize("delta", [0.01, 0.3])
def test_matches_numpy_reference(dtype, C, top1_filter, delta):
    rng = np.random.default_rng(C)
    clean, pert = continuous_table(rng, 301, C, dtype)
    received = received_near(rng, clean, 45, dtype)
    table = BayesTable(clean, pert)
    expected = reference_bayes(received, clean, pert, delta, top1_filter)
    for method in ("general", "grouped"):
        got = table.recover(received, delta=delta, top1_filter=top1_filter, method=method)
        assert got.dtype == dtype and got.shape == received.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_instruction_set_gives_the_same_bits(dtype):
    rng = np.random.default_rng(7)
    clean, pert = continuous_table(rng, 2000, 45, dtype)
    received = received_near(rng, clean, 70, dtype)
    table = BayesTable(clean, pert)
    isas = cpu_instruction_sets()
    assert isas[0] == "generic"
    results = [table._recover_cpu(received, 0.01, True, False, isa) for isa in isas]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    np.testing.assert_allclose(results[0], reference_bayes(received, clean, pert, 0.01, True), rtol=0, atol=1e-6)


def test_large_classes_cross_scan_chunks():
    # C = 3 puts ~1,400 blocks in one 256 KB chunk: 30,000 unfiltered rows span several.
    rng = np.random.default_rng(3)
    clean, pert = continuous_table(rng, 30_000, 3)
    received = received_near(rng, clean, 40)
    got = bayes_recover(received, clean, pert, top1_filter=False, method="general")
    np.testing.assert_allclose(got, reference_bayes(received, clean, pert, 0.01, False), rtol=0, atol=1e-6)


# ------------------------------------------------------------------- the rule

def tie_table(dtype):
    """Four rows at L1 distance exactly 0.25 from `received`, one at 0.5 (dyadic values: exact sums)."""
    received = np.array([0.5, 0.25, 0.125, 0.125], dtype=dtype)
    pert = np.array([
        [0.5, 0.375, 0.0, 0.125],
        [0.5, 0.125, 0.25, 0.125],
        [0.5, 0.25, 0.25, 0.0],
        [0.625, 0.125, 0.125, 0.125],
        [0.5, 0.5, 0.0, 0.0],
    ], dtype=dtype)
    clean = np.array([
        [0.75, 0.25, 0.0, 0.0],
        [0.5, 0.0, 0.5, 0.0],
        [0.5, 0.0, 0.0, 0.5],
        [1.0, 0.0, 0.0, 0.0],
        [0.25, 0.25, 0.25, 0.25],
    ], dtype=dtype)
    return received, clean, pert


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["general", "grouped"])
@pytest.mark.parametrize("top1_filter", [True, False])
def test_ties_at_tolerance_are_included(dtype, method, top1_filter):
    received, clean, pert = tie_table(dtype)
    four = clean[:4].astype(np.float64).mean(axis=0)
    kw = dict(top1_filter=top1_filter, method=method)
    # delta exactly at the tied distance: all four rows at 0.25, not the one at 0.5.
    np.testing.assert_allclose(bayes_recover(received, clean, pert, delta=0.25, **kw), four, atol=1e-7)
    # delta below it: tol is the nearest distance, shared by the same four rows.
    np.testing.assert_allclose(bayes_recover(received, clean, pert, delta=0.01, **kw), four, atol=1e-7)
    np.testing.assert_allclose(bayes_recover(received, clean, pert, delta=0.0, **kw), four, atol=1e-7)
    # delta reaching the far row takes all five.
    everything = clean.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(bayes_recover(received, clean, pert, delta=0.5, **kw), everything, atol=1e-7)


def test_rows_within_delta_replace_a_nearer_tie():
    # The nearest row comes first and alone; a later row within delta must still count.
    received = np.array([0.75, 0.25], dtype=np.float32)
    pert = np.array([[0.875, 0.125], [0.75, 0.25], [0.5, 0.5]], dtype=np.float32)
    clean = np.array([[1.0, 0.0], [0.5, 0.5], [0.625, 0.375]], dtype=np.float32)
    got = bayes_recover(received, clean, pert, delta=0.25, method="general")
    np.testing.assert_allclose(got, clean[:2].mean(axis=0), atol=1e-7)
    got = bayes_recover(received, clean, pert, delta=0.125, method="general")
    np.testing.assert_allclose(got, clean[1], atol=1e-7)


@pytest.mark.parametrize("method", ["general", "grouped"])
def test_empty_class_returns_the_received_row_unchanged(method):
    rng = np.random.default_rng(5)
    clean, pert = continuous_table(rng, 200, 4, np.float64)
    keep = clean.argmax(axis=1) != 2
    clean, pert = clean[keep], pert[keep]
    received = np.array([[0.1, 0.2, 0.6, 0.1], [0.6, 0.2, 0.1, 0.1]])
    got = bayes_recover(received, clean, pert, method=method)
    np.testing.assert_array_equal(got[0], received[0])
    np.testing.assert_allclose(got[1], reference_bayes(received[1:], clean, pert, 0.01, True)[0], atol=1e-12)
    # Without the filter every row is a candidate, so the row is matched.
    got = bayes_recover(received, clean, pert, top1_filter=False, method=method)
    np.testing.assert_allclose(got, reference_bayes(received, clean, pert, 0.01, False), atol=1e-12)


def test_empty_class_keeps_float64_received_bits_with_a_float32_table():
    clean = np.array([[0.9, 0.1, 0.0]], dtype=np.float32)
    received = np.array([0.1 + 1e-12, 0.2, 0.7 - 1e-12])
    got = bayes_recover(received, clean, clean)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, received)


def test_top1_filter_changes_the_candidates():
    # The nearest perturbed row has another clean class: only the unfiltered match finds it.
    received = np.array([0.5, 0.5], dtype=np.float32)
    pert = np.array([[0.5, 0.5], [0.75, 0.25]], dtype=np.float32)
    clean = np.array([[0.25, 0.75], [0.75, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(bayes_recover(received, clean, pert, top1_filter=True), clean[1])
    np.testing.assert_allclose(bayes_recover(received, clean, pert, top1_filter=False), clean[0])


# ---------------------------------------------------------- the grouped path

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top1_filter", [True, False])
@pytest.mark.parametrize("close_pairs", [False, True])
def test_grouped_path_equals_general_path(dtype, top1_filter, close_pairs):
    rng = np.random.default_rng(11)
    clean, pert, codewords = discrete_table(rng, 3000, 6, 5, dtype, close_pairs)
    table = BayesTable(clean, pert)
    assert table.num_groups(top1_filter) <= len(codewords)
    in_table = pert[rng.integers(0, len(pert), 60)]
    absent = received_near(rng, clean, 30, dtype)  # continuous values: not in the table
    unused = codewords[~np.isin(np.arange(len(codewords)), np.unique(pert, axis=0, return_index=True)[1])]
    received = np.concatenate([in_table, absent, codewords, unused]).astype(dtype)
    general = table.recover(received, top1_filter=top1_filter, method="general")
    grouped = table.recover(received, top1_filter=top1_filter, method="grouped")
    auto = table.recover(received, top1_filter=top1_filter, method="auto")
    np.testing.assert_allclose(grouped, general, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-7)
    np.testing.assert_array_equal(auto, grouped)
    np.testing.assert_allclose(general, reference_bayes(received, clean, pert, 0.01, top1_filter), atol=1e-6)


def test_grouped_path_equates_signed_zeros():
    clean = np.array([[0.5, 0.5, 0.0], [0.75, 0.25, 0.0]], dtype=np.float32)
    pert = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, -0.0]], dtype=np.float32)
    table = BayesTable(clean, pert)
    assert table.num_groups(False) == 1
    received = np.array([[0.5, 0.5, -0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    expected = clean.astype(np.float64).mean(axis=0)
    for method in ("general", "grouped"):
        np.testing.assert_allclose(table.recover(received, top1_filter=False, method=method), [expected] * 2)


def test_auto_picks_groups_only_for_repeated_values():
    rng = np.random.default_rng(2)
    clean, pert = continuous_table(rng, 500, 5)
    assert not BayesTable(clean, pert)._use_groups("auto", True)
    clean, pert, _ = discrete_table(rng, 500, 5, 3)
    assert BayesTable(clean, pert)._use_groups("auto", True)


# ------------------------------------------------------------------ properties

dyadic = st.integers(0, 16).map(lambda v: v / 16)


@st.composite
def dyadic_problem(draw):
    C = draw(st.integers(1, 6))
    N = draw(st.integers(1, 40))
    B = draw(st.integers(1, 8))
    rows = hnp.arrays(np.float64, st.tuples(st.just(N), st.just(C)), elements=dyadic)
    clean = draw(rows)
    pert = draw(rows)
    received = draw(hnp.arrays(np.float64, (B, C), elements=dyadic))
    delta = draw(st.sampled_from([0.0, 1 / 16, 0.25, 1.0]))
    return clean, pert, received, delta


@settings(max_examples=60, deadline=None)
@given(dyadic_problem(), st.booleans(), st.sampled_from(DTYPES))
def test_property_exact_distances_match_the_reference(problem, top1_filter, dtype):
    # Dyadic values make every distance exact, so ties abound and are all decided the same way.
    clean, pert, received, delta = (a.astype(dtype) if isinstance(a, np.ndarray) else a for a in problem)
    expected = reference_bayes(received, clean, pert, delta, top1_filter)
    table = BayesTable(clean, pert)
    for method in ("general", "grouped"):
        got = table.recover(received, delta=delta, top1_filter=top1_filter, method=method)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-7)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_property_batch_and_table_order_do_not_matter(seed, top1_filter):
    rng = np.random.default_rng(seed)
    clean, pert, _ = discrete_table(rng, 120, 4, 3, np.float64)
    received = np.concatenate([pert[:10], received_near(rng, clean, 10, np.float64)])
    table = BayesTable(clean, pert)
    batched = table.recover(received, top1_filter=top1_filter, method="general")
    one_by_one = np.array([table.recover(r, top1_filter=top1_filter, method="general") for r in received])
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-15)
    perm = rng.permutation(len(clean))
    shuffled = bayes_recover(received, clean[perm], pert[perm], top1_filter=top1_filter, method="general")
    np.testing.assert_allclose(shuffled, batched, rtol=0, atol=1e-12)


# --------------------------------------------------------------- conventions

def test_torch_in_torch_out_and_single_rows():
    rng = np.random.default_rng(9)
    clean, pert = continuous_table(rng, 300, 5)
    received = received_near(rng, clean, 12)
    expected = reference_bayes(received, clean, pert, 0.01, True)
    table = BayesTable(torch.from_numpy(clean), torch.from_numpy(pert))
    for dtype in (torch.float32, torch.float64):
        got = table.recover(torch.from_numpy(received).to(dtype))
        assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == (12, 5)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    single = table.recover(received[3])
    assert single.shape == (5,) and single.dtype == np.float32
    np.testing.assert_allclose(single, expected[3], atol=1e-6)
    single_t = table.recover(torch.from_numpy(received[3]))
    assert isinstance(single_t, torch.Tensor) and single_t.shape == (5,)


def test_strided_read_only_inputs_are_accepted_and_left_alone():
    rng = np.random.default_rng(4)
    clean, pert = continuous_table(rng, 200, 6, np.float64)
    wide = np.zeros((20, 12))
    wide[:, ::2] = received_near(rng, clean, 20, np.float64)
    received = wide[:, ::2]
    before = received.copy()
    clean_ro, pert_ro = np.asfortranarray(clean), pert.copy()
    clean_ro.setflags(write=False)
    pert_ro.setflags(write=False)
    got = bayes_recover(received, clean_ro, pert_ro)
    np.testing.assert_array_equal(received, before)
    np.testing.assert_allclose(got, reference_bayes(before, clean, pert, 0.01, True), atol=1e-12)


def test_mixed_table_dtypes_compute_in_float64():
    rng = np.random.default_rng(6)
    clean, pert = continuous_table(rng, 100, 4, np.float64)
    table = BayesTable(clean.astype(np.float32), pert)
    assert table.dtype == np.float64
    received = received_near(rng, clean, 5, np.float32)
    got = table.recover(received)
    assert got.dtype == np.float32
    expected = reference_bayes(received, clean.astype(np.float32), pert, 0.01, True)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_one_table_serves_concurrent_calls():
    rng = np.random.default_rng(8)
    clean, pert, _ = discrete_table(rng, 4000, 8, 4)
    table = BayesTable(clean, pert)
    received = np.concatenate([pert[:100], received_near(rng, clean, 100)])
    expected = reference_bayes(received, clean, pert, 0.01, True)
    results = {}

    def work(i):
        results[i] = table.recover(received, method=("general", "grouped", "auto")[i % 3])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert "BayesTable(num_rows=4000, num_classes=8" in repr(table)


# ---------------------------------------------------------------- bad inputs

@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    clean, pert = continuous_table(rng, 20, 5)
    return clean, pert, received_near(rng, clean, 3)


def test_received_errors_name_the_argument(small):
    clean, pert, received = small
    table = BayesTable(clean, pert)
    with pytest.raises(ValueError, match=r"received must have 5 columns \(num_classes\), got shape \(3, 4\)"):
        table.recover(received[:, :4])
    with pytest.raises(ValueError, match=r"received must be 1-D \(C,\) or 2-D \(B, C\), got shape \(1, 3, 5\)"):
        table.recover(received[None])
    with pytest.raises(ValueError, match=r"received must hold at least one prediction"):
        table.recover(received[:0])
    with pytest.raises(TypeError, match=r"received must have dtype float32 or float64, got int64"):
        table.recover(np.ones((2, 5), dtype=np.int64))
    with pytest.raises(TypeError, match=r"received: expected a numpy array, torch tensor or cupy array, got list"):
        table.recover(received.tolist())
    bad = received.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"received must be finite, got nan at row 1, column 2"):
        table.recover(bad)
    bad[1, 2] = -0.5
    with pytest.raises(ValueError, match=r"received must be non-negative probabilities, got -0.5 at row 1, column 2"):
        table.recover(bad)


def test_option_errors_list_what_is_allowed(small):
    clean, pert, received = small
    table = BayesTable(clean, pert)
    with pytest.raises(ValueError, match=r"delta must be >= 0, got -0.1"):
        table.recover(received, delta=-0.1)
    with pytest.raises(ValueError, match=r"delta must be finite, got nan"):
        table.recover(received, delta=float("nan"))
    with pytest.raises(TypeError, match=r"delta must be a real number, got True of type bool"):
        table.recover(received, delta=True)
    with pytest.raises(TypeError, match=r"top1_filter must be a bool, got 1"):
        table.recover(received, top1_filter=1)
    with pytest.raises(ValueError, match=r"method must be one of 'auto', 'general', 'grouped'; got 'fast'"):
        table.recover(received, method="fast")


def test_table_errors_name_the_argument(small):
    clean, pert, _ = small
    with pytest.raises(ValueError, match=r"table_clean and table_pert must have the same shape, got \(20, 5\) and "
                                         r"\(19, 5\)"):
        BayesTable(clean, pert[:19])
    with pytest.raises(ValueError, match=r"the table must have at least one row, got shape \(0, 5\)"):
        BayesTable(clean[:0], pert[:0])
    with pytest.raises(ValueError, match=r"table_clean must be 2-D \(N, C\), got shape \(5,\)"):
        BayesTable(clean[0], pert)
    with pytest.raises(TypeError, match=r"table_pert must have dtype float32 or float64, got float16"):
        BayesTable(clean, pert.astype(np.float16))
    with pytest.raises(TypeError, match=r"table_pert must have dtype float32 or float64, got torch.bfloat16"):
        BayesTable(clean, torch.from_numpy(pert).to(torch.bfloat16))
    with pytest.raises(TypeError, match=r"table_clean: expected a numpy array, torch tensor or cupy array, got list"):
        BayesTable(clean.tolist(), pert)
    bad = clean.copy()
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"table_clean must be finite, got inf at row 4, column 1"):
        BayesTable(bad, pert)
    bad = pert.copy()
    bad[7, 0] = np.nan
    with pytest.raises(ValueError, match=r"table_pert must be finite, got nan at row 7, column 0"):
        BayesTable(clean, bad)


# ------------------------------------------------------------------------ CUDA

cuda_only = pytest.mark.skipif(not mgf.cuda_available(), reason="needs a CUDA GPU and a CUDA build")


@cuda_only
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top1_filter", [True, False])
def test_cuda_matches_cpu(dtype, top1_filter):
    rng = np.random.default_rng(12)
    clean, pert = continuous_table(rng, 5000, 37, dtype)
    received = received_near(rng, clean, 300, dtype)
    table = BayesTable(clean, pert)
    cpu = table.recover(received, top1_filter=top1_filter, method="general")
    gpu = table.recover(torch.from_numpy(received).cuda(), top1_filter=top1_filter, method="general")
    assert gpu.is_cuda and gpu.dtype == torch.from_numpy(received).dtype
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


@cuda_only
@pytest.mark.cuda
@pytest.mark.parametrize("top1_filter", [True, False])
def test_cuda_grouped_ties_and_empty_classes(top1_filter):
    rng = np.random.default_rng(13)
    clean, pert, codewords = discrete_table(rng, 3000, 6, 4, np.float64, close_pairs=True)
    keep = clean.argmax(axis=1) != 5
    table = BayesTable(clean[keep], pert[keep])
    received = np.concatenate([codewords, received_near(rng, clean, 40, np.float64)])
    for method in ("general", "grouped"):
        cpu = table.recover(received, top1_filter=top1_filter, method=method)
        gpu = table.recover(torch.from_numpy(received).cuda(), top1_filter=top1_filter, method=method)
        np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=0, atol=1e-12)
    r, c, p = tie_table(np.float32)
    got = bayes_recover(torch.from_numpy(r).cuda(), c, p, delta=0.01, top1_filter=top1_filter)
    np.testing.assert_allclose(got.cpu().numpy(), c[:4].astype(np.float64).mean(axis=0), atol=1e-7)


@cuda_only
@pytest.mark.cuda
def test_cuda_rejects_bad_rows():
    rng = np.random.default_rng(14)
    clean, pert = continuous_table(rng, 50, 5)
    bad = torch.from_numpy(received_near(rng, clean, 4)).cuda()
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"received must be finite, got nan at row 2, column 3"):
        bayes_recover(bad, clean, pert)
