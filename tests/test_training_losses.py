"""Losses for Adaptive Misinformation's models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modelguard_fast.training import misinformation_loss, outlier_exposure_loss


def test_outlier_exposure_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    logits, outliers = torch.randn(6, 5, generator=g), torch.randn(4, 5, generator=g)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    ce = F.cross_entropy(logits, targets)
    to_uniform = torch.stack([-(F.log_softmax(o, dim=0) / 5).sum() for o in outliers]).mean()
    torch.testing.assert_close(outlier_exposure_loss(logits, targets, outliers), ce + to_uniform)
    torch.testing.assert_close(outlier_exposure_loss(logits, targets, outliers, weight=0.5), ce + 0.5 * to_uniform)
    # uniform outputs on outliers are the optimum of the outlier term: log C
    flat = torch.zeros(3, 5)
    torch.testing.assert_close(outlier_exposure_loss(logits, targets, flat) - ce, torch.log(torch.tensor(5.0)))


def test_misinformation_loss_by_hand_and_stable():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 4, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 3, 2, 1])
    p_y = torch.softmax(logits, dim=1).gather(1, targets[:, None])[:, 0]
    want = -torch.log(1 - p_y)
    torch.testing.assert_close(misinformation_loss(logits, targets, reduction="none"), want)
    torch.testing.assert_close(misinformation_loss(logits, targets), want.mean())
    torch.testing.assert_close(misinformation_loss(logits, targets, reduction="sum"), want.sum())
    # where 1 - p_y underflows the loss stays finite (about the logit gap) and has a gradient
    sure = torch.tensor([[200.0, 0.0, -5.0]], requires_grad=True)
    loss = misinformation_loss(sure, torch.tensor([0]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0 - math.log1p(math.exp(-5.0)), rel=1e-6)
    loss.backward()
    assert torch.isfinite(sure.grad).all() and sure.grad[0, 0] > 0


@pytest.mark.parametrize("call,error,match", [
    (lambda: misinformation_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int64)), ValueError,
     r"logits must have at least 2 columns"),
    (lambda: misinformation_loss(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64)), ValueError,
     r"targets must be an int64 tensor of shape \(3,\), got torch.int64 of shape \(2,\)"),
    (lambda: misinformation_loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), "avg"), ValueError,
     "reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
    (lambda: misinformation_loss([[0.0, 1.0]], torch.zeros(1, dtype=torch.int64)), TypeError,
     "logits must be a torch tensor, got list"),
    (lambda: misinformation_loss(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)),
     TypeError, "logits must be a floating-point tensor, got torch.int64"),
    (lambda: outlier_exposure_loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 3)),
     ValueError, r"outlier_logits must have 2 columns like logits, got shape \(2, 3\)"),
    (lambda: outlier_exposure_loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 2), -1),
     ValueError, "weight must be >= 0, got -1.0"),
    (lambda: outlier_exposure_loss(torch.zeros(3), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 2)),
     ValueError, r"logits must be 2-D \(B, C\) logits, got shape \(3,\)"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
