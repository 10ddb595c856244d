"""ModelGuard-S against the numpy reference of Algorithm 1, bit for bit, and its invariants."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modelguard_fast as mgf
from reference_mgs import ReferenceModelGuardS, l1_distances
from streams import classifier_like, dirichlet

STREAM = 5000


def run_batched(guard, stream, batch):
    return np.concatenate([guard(stream[i : i + batch]) for i in range(0, len(stream), batch)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["first", "nearest"])
@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("C", [2, 10, 100, 256])
def test_batches_equal_reference_bit_for_bit(C, eps, order, dtype):
    rows = STREAM if C <= 100 else 2000
    stream = classifier_like(rows, C, seed=C * 7 + int(eps * 10), dtype=dtype)
    expected = ReferenceModelGuardS(C, eps, order, dtype)(stream)
    for batch in (1, 7, 256, 4096):
        guard = mgf.ModelGuardS(C, eps=eps, order=order, dtype=dtype)
        got = run_batched(guard, stream, batch)
        np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8), err_msg=f"batch {batch}")
        assert guard.num_centroids == len(np.unique(expected, axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dirichlet_stream_matches_reference(dtype):
    stream = dirichlet(3000, 10, seed=3, alpha=0.2, dtype=dtype)
    for order in ("first", "nearest"):
        expected = ReferenceModelGuardS(10, 0.5, order, dtype)(stream)
        got = run_batched(mgf.ModelGuardS(10, eps=0.5, order=order, dtype=dtype), stream, 500)
        np.testing.assert_array_equal(got, expected)


def test_rows_of_a_batch_serve_later_rows_of_the_same_batch():
    y = np.array([0.7, 0.2, 0.1], dtype=np.float32)
    z = np.array([0.6, 0.3, 0.1], dtype=np.float32)  # within eps of y
    guard = mgf.ModelGuardS(3, eps=0.5)
    out = guard(np.stack([y, z]))
    np.testing.assert_array_equal(out, np.stack([y, y]))
    assert guard.num_centroids == 1


def test_first_order_is_stable_nearest_order_leaks():
    # y0 creates centroid a; y1 (far from a) creates b; q lies within eps of both, nearer b.
    a = np.array([0.90, 0.05, 0.05], dtype=np.float64)
    q = np.array([0.62, 0.33, 0.05], dtype=np.float64)
    b = np.array([0.52, 0.47, 0.01], dtype=np.float64)
    for order, changes in (("first", False), ("nearest", True)):
        guard = mgf.ModelGuardS(3, eps=0.6, order=order, dtype=np.float64)
        guard(a)
        before = guard(q)
        guard(b)
        after = guard(q)
        assert guard.num_centroids == 2
        assert (not np.array_equal(before, after)) == changes, order


def test_answers_are_stable_members_within_budget_and_keep_top1():
    C, eps = 10, 1.0
    stream = classifier_like(4000, C, seed=11)
    guard = mgf.ModelGuardS(C, eps=eps)
    first = run_batched(guard, stream, 64)
    again = run_batched(guard, stream[::-1].copy(), 128)[::-1]
    np.testing.assert_array_equal(first, again)
    assert (first.argmax(1) == stream.argmax(1)).all()
    assert (np.abs(first.astype(np.float64) - stream).sum(1) <= eps + 1e-6).all()
    members = {row.tobytes() for c in range(C) for row in guard.centroids(c)}
    assert all(row.tobytes() in members for row in first)
    assert guard.max_distortion <= eps
    assert guard.mean_distortion == pytest.approx(np.mean(l1_rows(first, stream)), rel=1e-5)


def l1_rows(a, b):
    return np.array([l1_distances(x[None], y)[0] for x, y in zip(a, b)], dtype=np.float64)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    C=st.sampled_from([2, 3, 10, 33]),
    eps=st.floats(0.05, 2.0),
    order=st.sampled_from(["first", "nearest"]),
    cuts=st.lists(st.integers(1, 299), max_size=8),
)
def test_any_split_of_the_stream_gives_the_sequential_answers(seed, C, eps, order, cuts):
    stream = classifier_like(300, C, seed=seed)
    sequential = mgf.ModelGuardS(C, eps=eps, order=order)
    expected = np.stack([sequential(row) for row in stream])
    guard = mgf.ModelGuardS(C, eps=eps, order=order)
    bounds = [0, *sorted(set(cuts)), len(stream)]
    got = np.concatenate([guard(stream[a:b]) for a, b in zip(bounds, bounds[1:])])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(guard.centroid_counts, sequential.centroid_counts)


def test_offline_map_matches_reference_and_never_inserts():
    C, eps = 10, 0.8
    ref = ReferenceModelGuardS(C, eps)
    guard = mgf.ModelGuardS(C, eps=eps)
    train = classifier_like(2000, C, seed=5)
    ref(train)
    guard(train)
    frozen = guard.frozen()
    probe = dirichlet(1500, C, seed=6, alpha=0.5)
    expected = np.stack([ref.offline(y) for y in probe])
    np.testing.assert_array_equal(frozen(probe), expected)
    assert frozen.codebook.shape[0] == guard.num_centroids
    guard(probe)  # the frozen view is a snapshot: later growth does not reach it
    np.testing.assert_array_equal(frozen(probe), expected)
    top, index, distance = frozen.assign(probe)
    assert (index >= 0).all() or (frozen.offsets[top + 1] == frozen.offsets[top]).any()


def test_frozen_view_of_an_empty_class_returns_the_row():
    guard = mgf.ModelGuardS(3, eps=0.5)
    guard(np.array([0.8, 0.1, 0.1], dtype=np.float32))
    row = np.array([0.1, 0.8, 0.1], dtype=np.float32)
    np.testing.assert_array_equal(guard.frozen()(row), row)
    assert guard.frozen().assign(row)[1][0] == -1


def test_ops_search_modes():
    codebook = np.array([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1], [0.1, 0.7, 0.1, 0.1]], dtype=np.float64)
    offsets = np.array([0, 2, 3, 3, 3], dtype=np.int64)
    y = np.array([[0.45, 0.35, 0.1, 0.1]])
    for mode, expect in (("first", 0), ("nearest", 1), ("offline", 0)):
        _, index, _ = mgf.ops.mgs_search(y, codebook, offsets, eps=0.6, mode=mode)
        assert index[0] == expect, mode
    _, index, distance = mgf.ops.mgs_search(y, codebook, offsets, eps=0.05, mode="offline")
    assert index[0] == 1 and distance[0] == pytest.approx(0.2)
    _, index, _ = mgf.ops.mgs_search(y, codebook, offsets, eps=0.05, mode="first")
    assert index[0] == -1
    with pytest.raises(ValueError, match="mode must be one of"):
        mgf.ops.mgs_search(y, codebook, offsets, eps=0.5, mode="closest")
    with pytest.raises(ValueError, match="offsets must rise"):
        mgf.ops.mgs_search(y, codebook, offsets[::-1].copy(), eps=0.5)


def test_types_devices_dtypes_and_shapes_round_trip():
    stream = classifier_like(50, 5, seed=2, dtype=np.float64)
    guard = mgf.ModelGuardS(5, eps=0.7)  # float32 codebooks
    out = guard(stream)
    assert out.dtype == np.float64 and out.shape == stream.shape
    t = torch.from_numpy(stream.astype(np.float32))
    out_t = guard(t)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32 and out_t.device == t.device
    np.testing.assert_array_equal(out_t.numpy(), out.astype(np.float32))
    single = guard(t[3])
    assert single.shape == (5,)
    np.testing.assert_array_equal(single.numpy(), out_t[3].numpy())


def test_input_is_never_modified_and_readonly_strided_inputs_work():
    stream = classifier_like(200, 6, seed=4)
    wide = np.zeros((200, 12), dtype=np.float32)
    wide[:, ::2] = stream
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    frozen_copy = strided.copy()
    readonly = stream.copy()
    readonly.setflags(write=False)
    a = mgf.ModelGuardS(6, eps=0.5)(strided)
    b = mgf.ModelGuardS(6, eps=0.5)(readonly)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(strided, frozen_copy)
    t = torch.from_numpy(wide)[:, ::2]
    np.testing.assert_array_equal(mgf.ModelGuardS(6, eps=0.5)(t).numpy(), a)


def test_renormalize_option():
    rows = classifier_like(100, 4, seed=8, dtype=np.float64) * 3.0
    with pytest.raises(ValueError, match="renormalize=True"):
        mgf.ModelGuardS(4, eps=0.5)(rows)
    out = mgf.ModelGuardS(4, eps=0.5, renormalize=True, dtype=np.float64)(rows)
    expected = mgf.ModelGuardS(4, eps=0.5, dtype=np.float64)(rows / rows.sum(1, keepdims=True))
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="sums to 0"):
        mgf.ModelGuardS(4, eps=0.5, renormalize=True)(np.zeros((2, 4), dtype=np.float32))


def test_sum_tolerance_is_documented_default():
    row = np.array([0.5, 0.4995, 0.0], dtype=np.float64)  # sums to 0.9995, within 1e-3
    mgf.ModelGuardS(3, eps=0.5)(row)
    with pytest.raises(ValueError, match=r"sum_tol=1e-05"):
        mgf.ModelGuardS(3, eps=0.5, sum_tol=1e-5)(row)


def test_reset_and_counts():
    guard = mgf.ModelGuardS(10, eps=0.5)
    guard(classifier_like(500, 10, seed=1))
    counts = guard.centroid_counts
    assert counts.sum() == guard.num_centroids > 0 and counts.shape == (10,)
    assert guard.num_queries == 500
    guard.reset()
    assert guard.num_centroids == 0 and guard.num_queries == 0 and guard.mean_distortion == 0.0
