"""The evaluation pipeline on a user's own data and classifier (experiments.user.user_setup)."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from modelguard_fast.data import load_bundled
from modelguard_fast.experiments.config import RunConfig
from modelguard_fast.experiments.main import run_experiment, run_sweep_experiment
from modelguard_fast.experiments.studies import centroid_growth, response_times
from modelguard_fast.experiments.user import user_setup
from modelguard_fast.models import SmallCNN
from modelguard_fast.training.fit import fit


class TinyNet(torch.nn.Module):
    """A user's own architecture (module-level, so it pickles for worker processes)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def digits():
    splits = load_bundled("digits", seed=3)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    classifier = fit(TinyNet(), splits.train_x, splits.train_y, epochs=8)
    return splits, classifier


def test_own_classifier_without_outliers_leaves_am_out(digits, tmp_path):
    splits, classifier = digits
    setup = user_setup(test=(splits.test_x.numpy(), splits.test_y.numpy()), pool=splits.pool_x, target=classifier,
                       model=TinyNet, name="mine")
    assert setup.defenses == ("none", "revsig", "mad", "top1", "rounding", "mgw", "mgs")
    config = RunConfig(results_dir=str(tmp_path), budget=200, workers=2, defenses=["none", "am", "mgw"],
                       queries=["knockoff"], strategies=["naive", "ddae", "pbayes"], attack={"epochs": 5})
    text = run_experiment(config, setup=setup, progress=False)
    assert "AM is left out" in text and "D-DAE is left out" in text
    record = json.loads((tmp_path / "mine" / "table.json").read_text())
    assert [row[0] for row in record["rows"]] == ["None", "ModelGuard-W"]
    assert record["header"][1:3] == ["KnockoffNets Naive", "KnockoffNets pBayes"]
    assert len(record["notes"]) == 2 and record["intervals"]["method"] == "bootstrap over test images"
    accuracy = float((classifier(splits.test_x).argmax(1) == splits.test_y).float().mean())
    assert record["target_test_accuracy"] == pytest.approx(accuracy)
    assert all(0 <= c["accuracy"] <= 1 and c["test_images"] == len(splits.test_y) for c in record["cells"])
    none, mgw = record["rows"]
    assert none[-2:] == [0.0, pytest.approx(accuracy)]  # max L1 and protected accuracy on the user's test set
    assert mgw[-2] <= 1.0 + 1e-6 and mgw[-1] == pytest.approx(accuracy)  # ModelGuard-W keeps the top-1 label
    # the same data under another name and a retrained classifier are other cache entries, never shared
    torch.manual_seed(1)
    other = fit(TinyNet(), splits.train_x, splits.train_y, epochs=1)
    assert user_setup(test=(splits.test_x, splits.test_y), pool=splits.pool_x, target=other,
                      model=TinyNet).spec["target"] != setup.spec["target"]


def test_datasets_outliers_and_a_trained_target(digits, tmp_path):
    splits, _ = digits
    outliers = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    setup = user_setup(test=TensorDataset(splits.test_x, splits.test_y),
                       pool=TensorDataset(splits.pool_x, splits.pool_y), train=(splits.train_x, splits.train_y),
                       outliers=TensorDataset(outliers), model=TinyNet, target_epochs=3, name="trained")
    assert setup.misinformation is not None and 0 <= setup.params["am_tau"] <= 1 and "am" in setup.defenses
    assert torch.equal(setup.splits.pool_y, splits.pool_y)
    config = RunConfig(results_dir=str(tmp_path), budget=100, workers=1, seeds=[0, 1], queries=["knockoff"],
                       attack={"epochs": 2})
    text = run_sweep_experiment(config, eps_values=[1.0], defenses=["mgs"], strategies=["naive"], setup=setup,
                                progress=False)
    assert "2 seeds" in text
    rows = json.loads((tmp_path / "trained" / "sweep.json").read_text())["rows"]
    assert [row[:2] for row in rows] == [["None", None], ["ModelGuard-S", 1.0]]
    header, growth = centroid_growth(setup, eps_values=[1.0], checkpoints=2)  # the studies take it too
    assert growth[-1][0] == len(splits.pool_x) and growth[-1][1] > 0


def test_studies_take_a_setup_without_am(digits):
    splits, classifier = digits
    setup = user_setup(test=(splits.test_x, splits.test_y), pool=splits.pool_x, target=classifier, model=TinyNet)
    _, rows = response_times(setup, batch_sizes=[16], repeats=2, warmup=0)
    assert [row[0] for row in rows] == ["None", "RevSig", "MAD", "Top-1", "Rounding", "ModelGuard-W", "ModelGuard-S"]


def test_bad_user_inputs_are_named(digits, tmp_path):
    splits, classifier = digits
    test = (splits.test_x, splits.test_y)
    with pytest.raises(ValueError, match=r"pool inputs must have the test inputs' shape \(1, 8, 8\), got \(64,\)"):
        user_setup(test=test, pool=splits.pool_x.reshape(len(splits.pool_x), -1), target=classifier)
    with pytest.raises(ValueError, match=r"test labels must be one per input: 359 inputs, got 10 labels"):
        user_setup(test=(splits.test_x, splits.test_y[:10]), pool=splits.pool_x, target=classifier)
    with pytest.raises(TypeError, match=r"test must be \(inputs, labels\) or a torch Dataset of \(x, y\), got Tensor"):
        user_setup(test=splits.test_x, pool=splits.pool_x, target=classifier)
    with pytest.raises(ValueError, match=r"without target, pass model \(a factory\) and train"):
        user_setup(test=test, pool=splits.pool_x)
    with pytest.raises(ValueError, match=r"test labels must be a 1-D integer tensor of labels, got torch.float32 of shape \(359,\)"):
        user_setup(test=(splits.test_x, splits.test_y.float()), pool=splits.pool_x, target=classifier)
    with pytest.raises(ValueError, match=r"the default model \(SmallCNN\) needs images"):
        user_setup(test=(splits.test_x.flatten(1), splits.test_y), pool=splits.pool_x.flatten(1), target=classifier)
    with pytest.raises(TypeError, match=r"setup must be an experiments Setup \(from user_setup\), got dict"):
        run_experiment(RunConfig(results_dir=str(tmp_path), workers=1), setup={}, progress=False)
    setup = user_setup(test=test, pool=splits.pool_x, target=classifier, model=lambda: SmallCNN(10))
    with pytest.raises(ValueError, match=r"run.budget = 5000 is not allowed; the attacker's pool has 720 images"):
        run_experiment(RunConfig(results_dir=str(tmp_path), workers=1, budget=5000), setup=setup, progress=False)
    assert np.isfinite(setup.clean_test).all()
    config = RunConfig(results_dir=str(tmp_path), workers=2, budget=50, defenses=["none"], queries=["knockoff"],
                       strategies=["naive", "top1"])
    with pytest.raises(TypeError, match=r"with workers > 1 the setup travels to other processes and must pickle, "
                                        r"but it does not .*; use a module-level model factory"):
        run_experiment(config, setup=setup, progress=False)
    assert not (tmp_path / "cache").exists()  # refused before anything was written
