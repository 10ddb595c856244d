"""GuardedModel and the ART postprocessor adapter."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import modelguard_fast as mgf


def net(num_classes=5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes)).eval()


def inputs(rows=12, seed=0):
    return torch.randn(rows, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("defense", [mgf.NoDefense(), mgf.Top1(), mgf.Rounding(), mgf.ReverseSigmoid(0.2),
                                     mgf.ModelGuardS(5, eps=0.5)], ids=lambda d: d.name)
def test_forward_is_the_defense_of_the_softmax(defense):
    model, x = net(), inputs()
    guarded = mgf.GuardedModel(model, defense)
    assert isinstance(guarded, nn.Module)
    probs = torch.softmax(model(x), dim=1).detach()
    reference = mgf.ModelGuardS(5, eps=0.5) if isinstance(defense, mgf.ModelGuardS) else defense
    out = guarded(x)
    assert out.dtype == torch.float32 and out.shape == (12, 5) and not out.requires_grad
    torch.testing.assert_close(out, reference(probs), rtol=0, atol=0)


def test_mad_from_target_and_device_moves():
    model, x = net(), inputs()
    mad = mgf.MAD.from_target(model, seed=4, eps=0.7)
    guarded = mgf.GuardedModel(model, mad)
    assert guarded.query_model is mad.surrogate
    assert any(m is mad.surrogate for m in guarded.modules())
    want = mad(torch.softmax(model(x), dim=1).detach(), torch.softmax(mad.surrogate(x), dim=1))
    torch.testing.assert_close(guarded(x), want, rtol=0, atol=0)
    guarded.double()  # moves (here: casts) the surrogate with the target
    assert mad.surrogate[0].weight.dtype == torch.float64
    assert guarded(x.double()).dtype == torch.float64


def test_query_model_stays_in_eval_mode():
    model = net()
    misinformation = net(seed=1)
    am = mgf.AdaptiveMisinformation(0.6, misinformation_model=misinformation.train())
    guarded = mgf.GuardedModel(model, am)
    assert not misinformation.training
    guarded.train()
    assert model.training and not misinformation.training
    guarded.eval()
    x = inputs(9)
    rows = torch.cat([guarded(x[i:i + 1]) for i in range(9)])
    torch.testing.assert_close(guarded(x), rows, rtol=0, atol=1e-7)


def test_probability_outputs_and_half_precision_models():
    model, x = net(), inputs()
    as_probs = nn.Sequential(model, nn.Softmax(dim=1))
    torch.testing.assert_close(mgf.GuardedModel(as_probs, mgf.Top1(), outputs="probs")(x),
                               mgf.GuardedModel(model, mgf.Top1())(x), rtol=0, atol=0)
    half = nn.Sequential(model, nn.Softmax(dim=1)).to(torch.bfloat16)
    assert mgf.GuardedModel(half, mgf.Top1(), outputs="probs")(x.to(torch.bfloat16)).dtype == torch.float32
    logits_half = net().to(torch.bfloat16)
    assert mgf.GuardedModel(logits_half, mgf.NoDefense())(x.to(torch.bfloat16)).dtype == torch.float32


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        mgf.GuardedModel(lambda x: x, mgf.Top1())
    with pytest.raises(TypeError, match="defense must be a modelguard_fast Defense, got function"):
        mgf.GuardedModel(net(), lambda y: y)
    with pytest.raises(ValueError, match="outputs must be one of 'logits', 'probs'; got 'scores'"):
        mgf.GuardedModel(net(), mgf.Top1(), outputs="scores")
    with pytest.raises(ValueError, match="this MAD has no surrogate model"):
        mgf.GuardedModel(net(), mgf.MAD())(inputs())
    assert "defense=Top1(" in repr(mgf.GuardedModel(net(), mgf.Top1()))


# ------------------------------------------------------------------------ ART
def test_art_missing_gives_a_clear_error(monkeypatch):
    for name in [name for name in sys.modules if name.startswith("art.")] + ["art"]:  # ART absent, even if imported
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "modelguard_fast.integrations.art", raising=False)
    with pytest.raises(ImportError, match="pip install adversarial-robustness-toolbox"):
        mgf.art_postprocessor(mgf.Top1())


def test_art_postprocessor():
    pytest.importorskip("art")
    from art.defences.postprocessor import Postprocessor
    from art.estimators.classification import PyTorchClassifier

    post = mgf.art_postprocessor(mgf.Rounding())
    assert isinstance(post, Postprocessor) and post.apply_predict and not post.apply_fit and post.is_fitted
    preds = np.array([[0.12, 0.31, 0.26, 0.31], [0.9, 0.05, 0.05, 0.0]], dtype=np.float32)
    out = post(preds)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, mgf.Rounding()(preds))

    model = nn.Sequential(nn.Linear(8, 4), nn.Softmax(dim=1)).eval()
    x = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    classifier = PyTorchClassifier(model, loss=nn.NLLLoss(), input_shape=(8,), nb_classes=4,
                                   postprocessing_defences=[mgf.art_postprocessor(mgf.Top1())])
    answers = classifier.predict(x)
    clean = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_array_equal(answers, mgf.Top1()(clean))

    with pytest.raises(TypeError, match="MAD needs the query itself, but ART postprocessors see only predictions"):
        mgf.art_postprocessor(mgf.MAD())
    with pytest.raises(TypeError, match="defense must be a modelguard_fast Defense, got str"):
        mgf.art_postprocessor("top1")


# ------------------------------------------------------------------ serving never changes the model
def training_net(num_classes=5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, num_classes))
    with torch.no_grad():  # running statistics unlike any batch's, so batch statistics would show
        model[1].running_mean.fill_(0.3)
        model[1].running_var.fill_(2.0)
    return model.train()


@pytest.mark.parametrize("defense", [mgf.NoDefense(), mgf.ModelGuardS(5, eps=0.5)], ids=lambda d: d.name)
def test_serving_a_model_in_training_mode_neither_changes_it_nor_depends_on_the_batch(defense):
    model = training_net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    guarded = mgf.GuardedModel(model, defense)
    x = inputs(8)
    batch = guarded(x)
    rows = torch.cat([guarded(x[i:i + 1]) for i in range(8)])  # one-row requests work
    torch.testing.assert_close(batch, rows, rtol=0, atol=1e-6)
    neighbours = guarded(torch.cat([x[:4], inputs(4, seed=1)]))
    torch.testing.assert_close(neighbours[:4], batch[:4], rtol=0, atol=1e-6)
    torch.testing.assert_close(guarded(x), batch, rtol=0, atol=0)  # an identical repeat is identical
    for key, value in model.state_dict().items():  # BatchNorm statistics (and the step count) unchanged
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert model.training and all(m.training for m in model.modules())  # the caller's mode is left as it was
    with torch.no_grad():
        eval_answer = torch.softmax(model.eval()(x), dim=1)
    model.train()
    if defense.name == "None":
        torch.testing.assert_close(batch, eval_answer, rtol=0, atol=0)


def test_served_answers_are_ordinary_tensors_usable_as_training_targets():
    guarded = mgf.GuardedModel(training_net(), mgf.NoDefense())
    answers = guarded(inputs(4))
    assert not answers.is_inference() and not answers.requires_grad
    logits = nn.Linear(8, 5)(inputs(4))
    (-(answers * torch.log_softmax(logits, dim=1)).sum()).backward()
    answers.mul_(1.0)


def test_a_model_returning_the_wrong_shape_is_refused():
    class Squeezing(nn.Module):
        def forward(self, x):
            return net()(x).squeeze()

    with pytest.raises(ValueError, match=r"model output must have shape \(B, C\) = \(1, num_classes\) for a batch "
                                         r"of 1 queries, got shape \(5,\)"):
        mgf.GuardedModel(Squeezing(), mgf.Top1())(inputs(1))


def test_guarded_models_copy_and_pickle():
    import copy
    import pickle

    guarded = mgf.GuardedModel(net(), mgf.Top1())
    for twin in (copy.deepcopy(guarded), pickle.loads(pickle.dumps(guarded))):
        torch.testing.assert_close(twin(inputs()), guarded(inputs()), rtol=0, atol=0)
