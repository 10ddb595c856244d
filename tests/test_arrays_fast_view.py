"""The common-case reading of user arrays (_arrays._plain_view) gives exactly the batch the general
path (_arrays._general_view) gives, and leaves everything else, errors included, to it."""

import pickle

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from modelguard_fast import _arrays

C = 6
ROWS = np.random.default_rng(0).dirichlet(np.ones(C), size=8)


def inputs():
    for dtype in (np.float32, np.float64, np.float16):
        a = ROWS.astype(dtype)
        yield from (a, a[3], a[2:3], a[::-1][:1], a[::-1], a[::2], np.asfortranarray(a), a[:, :4], a[:0],
                    a.reshape(2, 4, C), pickle.loads(pickle.dumps(a)), a.astype(a.dtype.newbyteorder(">")))
        t = torch.from_numpy(a)
        yield from (t, t[3], t[2:3], t[::2], t.t().contiguous().t(), t.clone().requires_grad_(True),
                    torch._neg_view(t), t[:0])
    yield from (ROWS.astype(np.int64), torch.zeros(2, C, dtype=torch.bfloat16), [[1.0]], np.float32(1.0))


@pytest.mark.parametrize("num_classes", [None, C, C + 1])
def test_the_fast_view_is_the_general_view_wherever_it_answers(num_classes):
    answered = 0
    for x in inputs():
        plain = _arrays._plain_view(x, num_classes)
        if plain is None:
            continue
        answered += 1
        batch, given = plain
        general, general_given = _arrays._general_view(x, "probs", num_classes, allow_half=True)
        assert given == general_given
        assert (batch.kind, batch.on_cuda, batch.dtype, batch.was_1d) == \
               (general.kind, general.on_cuda, general.dtype, general.was_1d)
        assert batch.data.flags.c_contiguous and batch.data.dtype == general.data.dtype
        np.testing.assert_array_equal(batch.data, general.data)
        assert batch.data.strides[0] >= 0
    assert answered >= (0 if num_classes == C + 1 else 12)


def test_what_the_fast_view_leaves_gets_the_general_errors():
    defense = mgf.NoDefense(num_classes=C)
    a = ROWS.astype(np.float32)
    with pytest.raises(ValueError, match=r"probs must have 6 columns \(num_classes\), got shape \(8, 4\)"):
        defense(a[:, :4])
    with pytest.raises(ValueError, match="probs must hold at least one prediction, got an empty batch"):
        defense(torch.from_numpy(a[:0]))
    with pytest.raises(ValueError, match=r"probs must be 1-D \(C,\) or 2-D \(B, C\), got shape \(2, 4, 6\)"):
        defense(a.reshape(2, 4, C))
    with pytest.raises(TypeError, match="probs must have dtype float32 or float64, got int64"):
        defense(ROWS.astype(np.int64))
    for x in (a[::-1][:1], np.asfortranarray(a), torch._neg_view(torch.from_numpy(-a))):
        expected = x.resolve_neg().numpy() if isinstance(x, torch.Tensor) else x
        np.testing.assert_array_equal(np.asarray(defense(x)), expected)
