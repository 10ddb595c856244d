"""The ART adapter against IBM's Adversarial Robustness Toolbox itself: postprocessor and defended classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import modelguard_fast as mgf

pytest.importorskip("art")
from art.defences.postprocessor import Postprocessor  # noqa: E402
from art.defences.postprocessor import ReverseSigmoid as ArtReverseSigmoid  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402


def art_reverse_sigmoid(preds, beta, gamma):
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # ART's own log(0) at exact 0 and 1
        return ArtReverseSigmoid(beta=beta, gamma=gamma)(preds)


def rows(n=200, classes=5, dtype=np.float32, seed=0):
    preds = np.random.default_rng(seed).dirichlet(np.full(classes, 0.3), size=n).astype(dtype)
    preds[0] = np.eye(classes, dtype=dtype)[0]  # an exact 1.0 (and exact zeros)
    return preds


def logits_model(classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, classes)).eval()


def queries(n=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


# ------------------------------------------------------------------ Reverse Sigmoid, variant="art"
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta, gamma", [(0.7, 0.1), (0.21, 0.2), (1.0, 0.5)])
def test_reverse_sigmoid_art_variant_is_arts_bit_for_bit(dtype, beta, gamma):
    preds = rows(dtype=dtype)
    ours = mgf.ReverseSigmoid(beta, gamma, variant="art")(preds)
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, art_reverse_sigmoid(preds, beta, gamma))
    np.testing.assert_array_equal(mgf.art_postprocessor(mgf.ReverseSigmoid(beta, gamma, variant="art"))(preds),
                                  art_reverse_sigmoid(preds, beta, gamma))


def test_reverse_sigmoid_art_variant_on_an_exact_one_in_float32():
    one = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    got = mgf.ReverseSigmoid(1.0, 0.1, variant="art")(one)
    np.testing.assert_allclose(got, [[0.3917, 0.3041, 0.3041]], atol=1e-4)  # ART's, where 1 - 1e-9 rounds to 1
    np.testing.assert_allclose(mgf.ReverseSigmoid(1.0, 0.1, variant="art")(one.astype(np.float64)),
                               [[0.4407, 0.2796, 0.2796]], atol=1e-4)


# ------------------------------------------------------------------ binary, logits, params
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_one_column_outputs_are_defended_as_two_class_rows(dtype):
    p = np.random.default_rng(1).random((300, 1)).astype(dtype)
    p[:2, 0] = [0.0, 0.5]
    two = np.concatenate([1 - p, p], axis=1)
    guard = mgf.art_postprocessor(mgf.ModelGuardS(2, eps=0.5))
    got = guard(p)
    assert got.shape == (300, 1) and got.dtype == dtype
    np.testing.assert_array_equal(got, mgf.ModelGuardS(2, eps=0.5)(two)[:, 1:])
    assert ((got > 0.5) == (p > 0.5)).all()  # ModelGuard-S keeps the label
    # ART's own binary Reverse Sigmoid: the same values, but at p = 1 exactly (see the README)
    revsig = mgf.art_postprocessor(mgf.ReverseSigmoid(0.7, 0.1, variant="art"))(p)
    np.testing.assert_allclose(revsig, art_reverse_sigmoid(p, 0.7, 0.1), rtol=0, atol=1e-9)


def test_logits_outputs_and_the_hint_when_they_are_not_declared():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]], dtype=np.float32)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_array_equal(mgf.art_postprocessor(mgf.Top1(), outputs="logits")(logits), mgf.Top1()(probs))
    one_column = np.array([[0.3], [-2.0]], dtype=np.float32)
    p = torch.sigmoid(torch.from_numpy(one_column)).numpy()
    np.testing.assert_array_equal(mgf.art_postprocessor(mgf.NoDefense(), outputs="logits")(one_column), p)
    with pytest.raises(ValueError, match=r"probs must be non-negative probabilities, got -1.0 at row 0, column 1; "
                                         r"if the estimator returns logits, pass outputs='logits'"):
        mgf.art_postprocessor(mgf.ModelGuardS(3, eps=0.5))(logits)
    with pytest.raises(ValueError, match="outputs must be one of 'probs', 'logits'; got 'scores'"):
        mgf.art_postprocessor(mgf.Top1(), outputs="scores")


def test_params_expose_the_defense_and_set_params_rebuilds_it():
    post = mgf.art_postprocessor(mgf.ReverseSigmoid(0.2, 0.1, variant="art"))
    assert isinstance(post, Postprocessor)
    assert post.params == ["beta", "gamma", "variant", "num_classes", "sum_tol"]
    assert (post.beta, post.gamma, post.variant) == (0.2, 0.1, "art")
    post.set_params(beta=0.5)
    assert post.beta == 0.5 and post.defense.beta == 0.5
    preds = rows()
    np.testing.assert_array_equal(post(preds), art_reverse_sigmoid(preds, 0.5, 0.1))
    with pytest.raises(ValueError, match="beta must be >= 0, got -1.0"):
        post.set_params(beta=-1.0, gamma=0.3)
    assert (post.beta, post.gamma) == (0.5, 0.1)  # nothing changed
    with pytest.raises(ValueError, match="unknown parameter.*'eps' of ReverseSigmoid; its parameters are: beta, "
                                         "gamma, variant, num_classes, sum_tol"):
        post.set_params(eps=1.0)
    rounding = mgf.art_postprocessor(mgf.Rounding())
    rounding.set_params(decimals=2)
    np.testing.assert_array_equal(rounding(preds), mgf.Rounding(2)(preds))
    guard = mgf.art_postprocessor(mgf.ModelGuardS(5, eps=0.5))
    assert guard.params == ["num_classes", "eps", "order", "dtype", "sum_tol", "renormalize", "max_centroids",
                            "centroid_warning"] and guard.eps == 0.5
    with pytest.raises(TypeError, match="ModelGuardS keeps state .* build a new defense"):
        guard.set_params(eps=1.0)
    with pytest.raises(AttributeError):
        post.missing  # noqa: B018


# ------------------------------------------------------------------ MAD and AM: the defended classifier
@pytest.mark.parametrize("make", [
    lambda model: mgf.MAD.from_target(model, eps=1.0),
    lambda model: mgf.AdaptiveMisinformation(0.6, misinformation_model=logits_model(seed=1)),
    lambda model: mgf.ModelGuardS(4, eps=0.5),
], ids=["MAD", "AM", "ModelGuard-S"])
def test_defended_classifier_answers_like_guarded_model_and_keeps_the_undefended_gradients(make):
    model = logits_model()
    classifier = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(8,), nb_classes=4)
    defended = mgf.art_defended_classifier(classifier, make(model))
    assert isinstance(defended, PyTorchClassifier)
    x = queries(10)
    want = mgf.GuardedModel(model, make(model))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(defended.predict(x, batch_size=3), want, rtol=0, atol=1e-6)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3, 0, 1]]
    np.testing.assert_array_equal(defended.loss_gradient(x, y), classifier.loss_gradient(x, y))
    np.testing.assert_array_equal(defended.class_gradient(x, label=1), classifier.class_gradient(x, label=1))
    np.testing.assert_array_equal(classifier.predict(x), model(torch.from_numpy(x)).detach().numpy())  # untouched


def test_defended_classifier_bad_arguments():
    classifier = PyTorchClassifier(logits_model(), loss=nn.CrossEntropyLoss(), input_shape=(8,), nb_classes=4)
    with pytest.raises(TypeError, match="classifier must be an ART classifier"):
        mgf.art_defended_classifier(logits_model(), mgf.Top1())
    with pytest.raises(TypeError, match="defense must be a modelguard_fast Defense, got str"):
        mgf.art_defended_classifier(classifier, "mad")
    with pytest.raises(ValueError, match="outputs must be one of 'probs', 'logits'; got 'softmax'"):
        mgf.art_defended_classifier(classifier, mgf.Top1(), outputs="softmax")
    with pytest.raises(TypeError, match="MAD needs the query itself.*art_defended_classifier"):
        mgf.art_postprocessor(mgf.MAD())


def test_knockoffnets_from_art_attacks_a_mad_defended_classifier():
    from art.attacks.extraction import KnockoffNets

    model = logits_model()
    classifier = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(8,), nb_classes=4)
    defended = mgf.art_defended_classifier(classifier, mgf.MAD.from_target(model, eps=1.0))
    thief_model = logits_model(seed=2)
    thief = PyTorchClassifier(thief_model, loss=nn.CrossEntropyLoss(), input_shape=(8,), nb_classes=4,
                              optimizer=torch.optim.SGD(thief_model.parameters(), lr=0.01))
    attack = KnockoffNets(defended, batch_size_fit=16, batch_size_query=16, nb_epochs=1, nb_stolen=32,
                          sampling_strategy="random", use_probability=True, verbose=False)
    stolen = attack.extract(queries(64), thieved_classifier=thief)
    assert stolen.predict(queries(5)).shape == (5, 4)
