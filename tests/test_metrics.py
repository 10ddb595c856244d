"""Utility metrics of a defense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import modelguard_fast as mgf


def test_utility_metrics_by_hand():
    clean = np.array([[0.6, 0.4, 0.0], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    defended = np.array([[0.6, 0.4, 0.0], [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]])
    m = mgf.utility_metrics(clean, defended, labels=np.array([0, 2, 0]))
    assert m.num_samples == 3
    assert m.max_l1 == pytest.approx(1.0) and m.mean_l1 == pytest.approx((0 + 0.4 + 1.0) / 3)
    assert m.top1_changed == pytest.approx(2 / 3)  # row 1 moves to class 0; row 2's tie went to 0, now 1
    assert m.protected_accuracy == pytest.approx(1 / 3) and m.clean_accuracy == pytest.approx(1.0)
    no_labels = mgf.utility_metrics(torch.from_numpy(clean), torch.from_numpy(defended))
    assert no_labels.protected_accuracy is None and no_labels.clean_accuracy is None
    assert no_labels.as_dict()["max_l1"] == pytest.approx(1.0)
    one = mgf.utility_metrics(clean[1], defended[1], labels=2)
    assert one.num_samples == 1 and one.protected_accuracy == 0.0


def test_utility_metrics_bad_input():
    y = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"defended must have the shape of clean \(2, 3\), got shape \(2, 4\)"):
        mgf.utility_metrics(y, np.full((2, 4), 0.25))
    with pytest.raises(ValueError, match=r"labels must be integer class indices of shape \(2,\), got float64"):
        mgf.utility_metrics(y, y, labels=np.zeros(2))
    with pytest.raises(ValueError, match="clean must be a non-empty float array"):
        mgf.utility_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(TypeError, match="clean: expected a numpy array, torch tensor or cupy array, got list"):
        mgf.utility_metrics([[1.0]], y)


def test_evaluate_utility_over_a_loader():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4)).eval()
    x = torch.randn(50, 6)
    labels = torch.randint(0, 4, (50,))
    loader = DataLoader(TensorDataset(x, labels), batch_size=16)
    clean = torch.softmax(model(x), dim=1).detach()
    for defense in (mgf.Top1(), mgf.ReverseSigmoid(0.3), mgf.MAD.from_target(model, eps=0.5)):
        got = mgf.evaluate_utility(model, defense, loader)
        if defense.needs_query:
            defended = defense(clean, defense.query_view(x))
        else:
            defended = defense(clean)
        want = mgf.utility_metrics(clean, defended, labels)
        assert got.num_samples == 50
        for field in ("max_l1", "mean_l1", "top1_changed", "protected_accuracy", "clean_accuracy"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-9), field
    top1 = mgf.evaluate_utility(model, mgf.Top1(), loader)
    assert top1.top1_changed == 0.0 and top1.protected_accuracy == top1.clean_accuracy
    with pytest.raises(ValueError, match="no predictions to measure"):
        mgf.evaluate_utility(model, mgf.Top1(), [])
