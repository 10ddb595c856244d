"""The one training loop (training.loop.train_loop) against the loops it replaced, written out here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelguard_fast.training import fit, soft_cross_entropy, train_loop
from modelguard_fast.training.losses import outlier_exposure_loss
from modelguard_fast.training.target import train_with_outlier_exposure


def net(seed=0, batch_norm=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 12)] + ([nn.BatchNorm1d(12)] if batch_norm else []) + [nn.ReLU(), nn.Linear(12, 4)]
    return nn.Sequential(*layers)


def data(rows=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 6, generator=g), torch.randint(0, 4, (rows,), generator=g)


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_fit_is_the_reference_loop_bit_for_bit():
    x, y = data()
    targets = F.one_hot(y, 4).float()
    ours = fit(net(), x, targets, epochs=3, lr=1e-2, batch_size=8, seed=5, weight_decay=1e-4)
    model = net()  # the former fit(), step for step
    generator = torch.Generator().manual_seed(5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    model.train()
    for _ in range(3):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 8):
            idx = order[start:start + 8]
            loss = soft_cross_entropy(model(x[idx]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    assert same_weights(ours, model.eval()) and not ours.training


def test_outlier_exposure_draws_the_outlier_order_before_each_epoch_as_before():
    x, y = data()
    outliers = torch.randn(11, 6, generator=torch.Generator().manual_seed(9))
    ours = train_with_outlier_exposure(net(), x, y, outliers, epochs=2, lr=1e-2, batch_size=8, oe_weight=0.5, seed=3)
    model = net()
    generator = torch.Generator().manual_seed(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(2):
        outlier_order = torch.randperm(len(outliers), generator=generator)
        order = torch.randperm(len(x), generator=generator)
        for step, start in enumerate(range(0, len(x), 8)):
            idx = order[start:start + 8]
            out_idx = outlier_order[(torch.arange(len(idx)) + step * 8) % len(outliers)]
            logits = model(torch.cat([x[idx], outliers[out_idx]]))
            loss = outlier_exposure_loss(logits[:len(idx)], y[idx], logits[len(idx):], 0.5)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    assert same_weights(ours, model.eval())


def test_short_batches_are_skipped_and_the_schedule_steps_once_per_epoch():
    x, y = data(rows=17)  # batches of 8: 8, 8, 1 -> the last one is skipped with min_batch=2
    model = net(batch_norm=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    seen = []

    def batch_loss(idx, step, state):
        seen.append((len(idx), step))
        return F.cross_entropy(model(x[idx]), y[idx])

    trained = train_loop(model, optimizer, len(x), 8, torch.Generator(), batch_loss, epochs=3, schedule=schedule,
                         min_batch=2)
    assert seen == [(8, 0), (8, 1)] * 3  # a batch of one row never reaches batch normalisation
    assert optimizer.param_groups[0]["lr"] == 0.1 * 0.5 ** 3 and not trained.training
