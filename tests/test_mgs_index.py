"""The sublinear codebook search (csrc/include/modelguard_fast/mgs_index.h) gives the linear scan's answers.

Every search of the indexed store is compared, index and distance bit for bit,
with the linear scan of the same codebook (search_packed), and whole streams
with the numpy reference of Algorithm 1, on codebooks large enough to be
indexed (more than 256 centroids per class) and on adversarial queries: rows
at distance exactly eps or one rounding off it, on the faces and corners of
the index's boxes, exact repeats and ties.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelguard_fast as mgf
from modelguard_fast._kernels import C as _C  # the module of the instruction set in use
from reference_mgs import ReferenceModelGuardS, l1_distances
from streams import classifier_like, dirichlet

MODES = {"first": 0, "nearest": 1, "offline": 2}


def store_of(codebook, offsets):
    C = codebook.shape[1]
    store = (_C.Codebooks32 if codebook.dtype == np.float32 else _C.Codebooks64)(C)
    store.append_rows(np.repeat(np.arange(C, dtype=np.int64), np.diff(offsets)), codebook)
    return store


def linear_and_indexed(store, queries, top, eps, mode):
    codebook, offsets = store.pack()
    B = len(queries)
    out = []
    for search in (
        lambda i, d: (_C.search_packed_f32 if queries.dtype == np.float32 else _C.search_packed_f64)(
            queries, top, codebook, offsets, eps, MODES[mode], i, d),
        lambda i, d: store.search(queries, top, eps, MODES[mode], i, d),
    ):
        index, distance = np.empty(B, np.int64), np.empty(B, queries.dtype)
        search(index, distance)
        out.append((index, distance))
    return out


def adversarial_queries(book, eps, rng, dtype):
    """Rows near the codebook: centroids, centroids moved by eps (give or take a rounding),
    mixtures of two centroids' columns (box faces and corners), and random rows."""
    n, C = book.shape
    picks = book[rng.integers(0, n, 400)].astype(np.float64)
    moved = picks.copy()
    cols = rng.integers(1, C, len(moved))
    for row, k in zip(moved, cols):  # move eps/2 of mass between two columns: L1 change eps
        give = min(eps / 2, row[0])
        row[0] -= give
        row[k] += give
    other = book[rng.integers(0, n, 400)].astype(np.float64)
    mask = rng.random(picks.shape) < 0.5
    corners = np.where(mask, picks, other)
    scaled = picks + rng.choice([-1, 1], picks.shape) * rng.choice([0, eps / C, eps / (2 * C)], picks.shape)
    queries = np.concatenate([picks, moved, corners, np.clip(scaled, 0, None)]).astype(dtype)
    nudged = queries.copy()
    nudged[:, 0] = np.nextafter(nudged[:, 0], np.inf if rng.random() < 0.5 else -np.inf)
    return np.concatenate([queries, nudged, dirichlet(400, C, seed=int(rng.integers(1 << 30)), dtype=dtype)])


def served_codebook(C, eps, rows, seed, dtype, order="first"):
    guard = mgf.ModelGuardS(C, eps=eps, order=order, dtype=dtype)
    stream = dirichlet(rows, C, seed=seed, alpha=0.3, dtype=dtype)
    for i in range(0, rows, 2048):
        guard(stream[i : i + 2048])
    return guard


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,eps", [(4, 0.02), (12, 0.25)])
def test_indexed_search_equals_linear_scan_bit_for_bit(C, eps, dtype):
    guard = served_codebook(C, eps, 8000, seed=C, dtype=dtype)
    assert guard.centroid_counts.max() > 512  # indexed segments and a tail
    store = guard._store
    rng = np.random.default_rng(C)
    books = [guard.centroids(c) for c in range(C)]
    big = int(np.argmax(guard.centroid_counts))
    queries = adversarial_queries(books[big], eps, rng, dtype)
    top = np.full(len(queries), big, dtype=np.int64)  # searched in the big class whatever their argmax
    for mode in MODES:
        for search_eps in (eps, eps / 4, 2 * eps):
            (li, ld), (ii, idist) = linear_and_indexed(store, queries, top, search_eps, mode)
            np.testing.assert_array_equal(ii, li, err_msg=f"{mode} eps={search_eps}")
            np.testing.assert_array_equal(idist.view(np.uint8), ld.view(np.uint8), err_msg=mode)
            if mode != "offline":
                assert 0 < (li >= 0).sum() < len(li)  # hits and misses both exercised
    # Queries at exactly the distance eps (in the kernels' arithmetic) of their answer are found.
    (li, ld), _ = linear_and_indexed(store, queries, top, eps, "nearest")
    assert (ld[li >= 0] == dtype(eps)).any() or (ld[li >= 0] > dtype(eps) * 0.999).any()


def test_truncated_and_regrown_store_keeps_exact_answers():
    C, eps = 3, 0.01
    guard = served_codebook(C, eps, 6000, seed=7, dtype=np.float32)
    codebook, offsets = guard._store.pack()
    store = store_of(codebook, offsets)
    counts = np.diff(offsets)
    store.truncate([int(c * 0.37) for c in counts])  # cuts through segments
    store.append_rows(np.zeros(300, np.int64), codebook[offsets[0] + counts[0] - 300 : offsets[0] + counts[0]])
    queries = dirichlet(2000, C, seed=8)
    for mode in MODES:
        (li, ld), (ii, idist) = linear_and_indexed(store, queries, queries.argmax(1), eps * 3, mode)
        np.testing.assert_array_equal(ii, li)
        np.testing.assert_array_equal(idist, ld)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    C=st.sampled_from([3, 5, 8]),
    eps=st.sampled_from([0.01, 0.02, 0.0625, 0.125]) | st.floats(0.01, 0.2),
    order=st.sampled_from(["first", "nearest"]),
    grid=st.sampled_from([0, 16, 64]),
    batch=st.sampled_from([1000, 4096]),
)
def test_streams_on_large_codebooks_equal_the_reference(seed, C, eps, order, grid, batch):
    rng = np.random.default_rng(seed)
    stream = dirichlet(3000, C, seed=seed, alpha=0.5, dtype=np.float64)
    if grid:  # values on a grid: exact ties and distances of exactly eps
        stream = np.round(stream * grid) / grid
        stream[:, -1] = 1 - stream[:, :-1].sum(axis=1)
        stream = stream[(stream >= 0).all(axis=1)]
    stream = stream[rng.permutation(len(stream))].astype(np.float32)
    stream = np.concatenate([stream, stream[rng.integers(0, len(stream), 300)]])  # exact repeats
    reference = ReferenceModelGuardS(C, eps, order, np.float32)
    expected = reference(stream)
    guard = mgf.ModelGuardS(C, eps=eps, order=order)
    got = np.concatenate([guard(stream[i : i + batch]) for i in range(0, len(stream), batch)])
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    probe = classifier_like(500, C, seed=seed)
    offline = np.stack([reference.offline(y) for y in probe])
    np.testing.assert_array_equal(guard.frozen()(probe), offline)


# Codebooks of more than 16 columns: the index sums groups of columns (its sketches),
# and its skips rest on a rounding margin that only such codebooks exercise.


def one_class_rows(n, C, seed, dtype=np.float32):
    """classifier_like rows with their top class moved to column 0 (one class, i.i.d. noise)."""
    p = classifier_like(n, C, seed=seed).astype(dtype)
    top = p.argmax(axis=1)
    p[np.arange(n), top], p[:, 0] = p[:, 0], p[np.arange(n), top].copy()
    return p


def mass_moved(rows, amount, rng):
    """Each row with `amount` of mass moved from column 0 to one other column: its L1 distance to the
    original is 2 * amount in real arithmetic, and so is every column-group sum's distance (the bound is tight)."""
    out = rows.astype(np.float64)
    give = np.minimum(amount, out[:, 0])
    out[:, 0] -= give
    out[np.arange(len(out)), rng.integers(1, out.shape[1], len(out))] += give
    return out.astype(rows.dtype)


def reference_first(book, y, eps):
    """The numpy reference of the first-admissible search (the kernels' summation order)."""
    d = l1_distances(book, y)
    hits = np.flatnonzero(d <= eps)
    return (int(hits[0]), d[hits[0]]) if len(hits) else (-1, None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [24, 100])
def test_grouped_sketches_skip_nothing_the_scan_accepts_at_eps_and_one_ulp_off(C, dtype):
    rng = np.random.default_rng(C)
    book = one_class_rows(3000, C, seed=C, dtype=dtype)
    book = np.concatenate([book, book[rng.integers(0, len(book), 200)]])  # exact duplicates
    store = store_of(book, np.array([0, len(book), *[len(book)] * (C - 1)]))
    eps = 0.1
    queries = np.concatenate([mass_moved(book[rng.integers(0, len(book), 300)], eps / 2, rng),
                              adversarial_queries(book, eps, rng, dtype)])
    queries = queries[queries.argmax(axis=1) == 0]
    top = np.zeros(len(queries), np.int64)
    # The computed distance of each query to its nearest centroid, and searches with eps exactly
    # that distance (a tie at eps), one ulp below it and one ulp above.
    (_, nearest_d), _ = linear_and_indexed(store, queries, top, np.inf, "nearest")
    for shift in (None, -np.inf, np.inf):
        for i in rng.choice(len(queries), 40, replace=False):
            e = nearest_d[i] if shift is None else np.nextafter(nearest_d[i], dtype(shift))
            q = queries[i : i + 1]
            for mode in MODES:
                (li, ld), (ii, idist) = linear_and_indexed(store, q, top[:1], float(e), mode)
                assert ii[0] == li[0] and idist.tobytes() == ld.tobytes(), (mode, e)
                if mode == "first":
                    assert li[0] == reference_first(book, q[0], dtype(e))[0]
    for search_eps in (eps, eps / 3, 3 * eps):
        for mode in MODES:
            (li, ld), (ii, idist) = linear_and_indexed(store, queries, top, search_eps, mode)
            np.testing.assert_array_equal(ii, li, err_msg=f"{mode} eps={search_eps}")
            np.testing.assert_array_equal(idist.view(np.uint8), ld.view(np.uint8), err_msg=mode)
    (li, _), _ = linear_and_indexed(store, queries, top, eps, "first")
    assert 0 < (li >= 0).sum() < len(li)
    for i in rng.choice(len(queries), 30, replace=False):  # and the numpy reference agrees
        assert reference_first(book, queries[i], dtype(eps))[0] == li[i]


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    C=st.sampled_from([17, 40, 100]),
    chunks=st.lists(st.sampled_from([1, 37, 255, 256, 257, 600, 1500]), min_size=3, max_size=8),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=0, max_size=3),
    eps=st.sampled_from([0.05, 0.1, 0.3]),
)
def test_growing_and_truncated_codebooks_interleaved_with_searches(seed, C, chunks, cuts, eps):
    """Appends of every size (tails, one segment, bulk loads that merge), searches after each, and
    truncations through segments, on rows of many columns: the indexed store answers as the scan."""
    rng = np.random.default_rng(seed)
    rows = one_class_rows(sum(chunks) + 64, C, seed=seed)
    store = (_C.Codebooks32)(C)
    queries = np.concatenate([one_class_rows(150, C, seed=seed + 1), mass_moved(rows[rng.integers(0, len(rows), 150)], eps / 2, rng)])
    queries = queries[queries.argmax(axis=1) == 0]
    top = np.zeros(len(queries), np.int64)
    used, cuts = 0, list(cuts)
    for size in chunks:
        store.append_rows(np.zeros(size, np.int64), rows[used : used + size])
        used += size
        if cuts and rng.random() < 0.5:
            store.truncate([int(store.counts()[0] * cuts.pop()), *[0] * (C - 1)])
        for mode in MODES:
            (li, ld), (ii, idist) = linear_and_indexed(store, queries, top, eps, mode)
            np.testing.assert_array_equal(ii, li, err_msg=mode)
            np.testing.assert_array_equal(idist.view(np.uint32), ld.view(np.uint32), err_msg=mode)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), C=st.sampled_from([20, 64]), eps=st.sampled_from([0.05, 0.1, 0.25]),
       order=st.sampled_from(["first", "nearest"]), batch=st.sampled_from([300, 4096]))
def test_one_class_streams_of_many_columns_equal_the_reference(seed, C, eps, order, batch):
    rng = np.random.default_rng(seed)
    stream = one_class_rows(2500, C, seed=seed)
    stream = np.concatenate([stream, mass_moved(stream[rng.integers(0, len(stream), 400)], eps / 2, rng),
                             stream[rng.integers(0, len(stream), 200)]])
    stream = stream[rng.permutation(len(stream))]
    reference = ReferenceModelGuardS(C, eps, order, np.float32)
    expected = reference(stream)
    guard = mgf.ModelGuardS(C, eps=eps, order=order)
    got = np.concatenate([guard(stream[i : i + batch]) for i in range(0, len(stream), batch)])
    assert guard.centroid_counts[0] > 512  # indexed segments and a tail
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("dtype,scales", [(np.float32, [1e-30, 1.0, 1e30, 1e37]),
                                          (np.float64, [1e-300, 1e-30, 1.0, 1e30, 1e200])])
def test_rows_of_extreme_magnitudes_keep_exact_answers(dtype, scales):
    """Rows far from probability rows (the compiled store takes any finite rows): tiny ones whose
    sums are subnormal in float32, huge ones whose sums overflow it; eps from tiny to huge."""
    C = 24
    rng = np.random.default_rng(3)
    base = one_class_rows(1200, C, seed=3, dtype=np.float64)
    book = (base * rng.choice(scales, (len(base), 1))).astype(dtype)
    store = store_of(book, np.array([0, len(book), *[len(book)] * (C - 1)]))
    queries = np.concatenate([book[rng.integers(0, len(book), 200)],
                              mass_moved(book[rng.integers(0, len(book), 200)], 0.05, rng)]).astype(dtype)
    queries = queries[queries.argmax(axis=1) == 0]
    top = np.zeros(len(queries), np.int64)
    for eps in [s * f for s in scales for f in (0.01, 0.3)]:
        for mode in MODES:
            (li, ld), (ii, idist) = linear_and_indexed(store, queries, top, eps, mode)
            np.testing.assert_array_equal(ii, li, err_msg=f"{mode} eps={eps}")
            np.testing.assert_array_equal(idist.tobytes(), ld.tobytes(), err_msg=f"{mode} eps={eps}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_straddling_float32_overflow_skip_nothing(dtype):
    """Rows whose column-group sums lie on both sides of float32's largest value: a rounded sketch
    would be infinite for some rows and finite for others, and a huge eps would accept them."""
    C = 24
    rng = np.random.default_rng(4)
    book = rng.uniform(0.6, 1.4, (1500, C)) * 6.8e37
    book[:, 0] = 1.5 * 6.8e37 * rng.uniform(1.0, 1.1, len(book))
    book = book.astype(dtype)
    store = store_of(book, np.array([0, len(book), *[len(book)] * (C - 1)]))
    queries = book[rng.integers(0, len(book), 300)].astype(np.float64)
    queries *= rng.uniform(0.97, 1.03, queries.shape)
    queries = queries[queries.argmax(axis=1) == 0].astype(dtype)
    top = np.zeros(len(queries), np.int64)
    hits = 0
    for eps in (1e37, 1e38, 3e38):
        for mode in MODES:
            (li, ld), (ii, idist) = linear_and_indexed(store, queries, top, eps, mode)
            np.testing.assert_array_equal(ii, li, err_msg=f"{mode} eps={eps}")
            np.testing.assert_array_equal(idist.tobytes(), ld.tobytes(), err_msg=f"{mode} eps={eps}")
            hits += (li >= 0).sum()
    assert hits > 0
