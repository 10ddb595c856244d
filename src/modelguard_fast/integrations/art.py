"""modelguard_fast defenses inside IBM's Adversarial Robustness Toolbox (ART). Importing this module needs ART.

Two routes, both numpy in and numpy out like ART itself:

- ArtPostprocessor: a Postprocessor for ``postprocessing_defences=[...]``, for
  the defenses that see the predictions alone (ModelGuard-S, ModelGuard-W,
  Reverse Sigmoid, Rounding, Top-1, None).
- defended_classifier: a copy of an ART classifier whose predict() answers with
  the defense, for every defense, including those that look at the query (MAD,
  Adaptive Misinformation); like ART's postprocessors, it leaves
  loss_gradient/class_gradient to the undefended model.

Both accept what ART estimators return: probability rows (B, C) with C >= 2,
a binary classifier's one column (B, 1) holding the probability of class 1
(defended as the rows [1 - p, p], answered as the defended p, as ART's own
postprocessors treat it), or logits with outputs="logits" (softmax; a
sigmoid for one column).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from art.defences.postprocessor import Postprocessor
from art.estimators.classification import ClassifierMixin

from .._validation import choice
from ..defense import Defense

OUTPUTS = ("probs", "logits")
_LOGITS_HINT = "; if the estimator returns logits, pass outputs='logits'"


def _probabilities(preds: Any, outputs: str) -> np.ndarray:
    """The estimator's output as probability rows (B, C), C >= 2, in float32 (float64 for float64 input)."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] < 1:
        raise ValueError(f"preds must have shape (batch, classes), got shape {preds.shape}")
    if not np.issubdtype(preds.dtype, np.floating):
        raise TypeError(f"preds must be floating-point, got {preds.dtype}")
    dtype = np.float64 if preds.dtype == np.float64 else np.float32
    values = torch.from_numpy(np.ascontiguousarray(preds, dtype=dtype))
    if outputs == "logits":
        if values.shape[1] == 1:
            values = torch.sigmoid(values)
        else:
            return torch.softmax(values, dim=1).numpy()
    if values.shape[1] == 1:
        return torch.cat([1.0 - values, values], dim=1).numpy()
    return values.numpy()


def _defend(defense: Defense, preds: Any, outputs: str, view: Any = None) -> np.ndarray:
    """The defense's answers in the estimator's layout: (B, C), or (B, 1) for a one-column binary estimator."""
    probs = _probabilities(preds, outputs)
    try:
        answers = defense.defend(probs, view=view)
    except ValueError as err:
        raise ValueError(f"{err}{_LOGITS_HINT if outputs == 'probs' else ''}") from err
    answers = np.asarray(answers)
    return answers[:, 1:] if np.asarray(preds).shape[1] == 1 else answers


def defense_params(defense: Defense) -> list[str]:
    """The defense's constructor arguments that it keeps as attributes of the same name (its parameters)."""
    names = list(inspect.signature(type(defense).__init__).parameters)[1:]
    return [name for name in names if hasattr(defense, name) and not name.startswith("_")]


class ArtPostprocessor(Postprocessor):
    """Applies a modelguard_fast defense to the predictions an ART estimator returns.

    Args:
        defense: a defense that sees the predictions alone (not MAD or AM: use
            defended_classifier for those).
        outputs: "probs" (default: the estimator returns probabilities) or "logits".
        apply_fit, apply_predict: as for every ART postprocessor.

    `params` lists the defense's parameters (e.g. ["beta", "gamma", "variant",
    "num_classes", "sum_tol"] for ReverseSigmoid); they read as attributes of
    the postprocessor, and set_params(...) replaces the defense with one built
    with the changed values (validated by its constructor; nothing changes on
    an error). ModelGuard-S refuses set_params: its codebooks belong to its
    settings, so build a new guard instead.
    """

    def __init__(self, defense: Defense, outputs: str = "probs", apply_fit: bool = False,
                 apply_predict: bool = True):
        if not isinstance(defense, Defense):
            raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
        if defense.needs_query:
            raise TypeError(f"{type(defense).__name__} needs the query itself, but ART postprocessors see only "
                            "predictions; use modelguard_fast.integrations.art_defended_classifier(classifier, "
                            "defense) instead, which also keeps the undefended model's gradients")
        super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.defense = defense
        self.outputs = choice(outputs, "outputs", OUTPUTS)
        self.params = defense_params(defense)

    def __getattr__(self, name: str) -> Any:
        # only reached for names not found the normal way: the defense's parameters
        if name != "defense" and name in self.__dict__.get("params", ()):
            return getattr(self.__dict__["defense"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def set_params(self, **kwargs: Any) -> None:
        """Rebuilds the defense with some parameters changed; unknown names are refused."""
        unknown = [key for key in kwargs if key not in self.params]
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} of {type(self.defense).__name__}; "
                             f"its parameters are: {', '.join(self.params)}")
        if hasattr(self.defense, "state_dict"):
            raise TypeError(f"{type(self.defense).__name__} keeps state (its codebooks) built under its current "
                            "parameters; build a new defense and a new postprocessor instead of set_params")
        values = {name: getattr(self.defense, name) for name in self.params}
        self.defense = type(self.defense)(**{**values, **kwargs})

    def __call__(self, preds: np.ndarray) -> np.ndarray:
        return _defend(self.defense, preds, self.outputs)

    def __repr__(self) -> str:
        return f"ArtPostprocessor({self.defense!r}, outputs={self.outputs!r})"


class _DefendedPredictions:
    """Mixed into a copy of an ART classifier's class: predict() answers with the defense."""

    _mgf_defense: Defense
    _mgf_outputs: str

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs: Any) -> np.ndarray:
        preds = super().predict(x, batch_size=batch_size, **kwargs)
        view = None
        if self._mgf_defense.needs_query:
            view = _query_view(self._mgf_defense, self._apply_preprocessing(x, y=None, fit=False)[0], batch_size)
            if np.asarray(preds).shape[1] == 1:
                raise ValueError(f"{type(self._mgf_defense).__name__} needs a query model with the estimator's "
                                 "classes; a one-column (binary) estimator is not supported, give it two columns")
        return _defend(self._mgf_defense, preds, self._mgf_outputs, view)


def _query_view(defense: Defense, x: np.ndarray, batch_size: int) -> torch.Tensor:
    """The defense's view of the preprocessed queries x, in batches, on the CPU (Defense.query_views)."""
    return defense.query_views(torch.from_numpy(np.asarray(x)), batch_size)


_DEFENDED_CLASSES: dict[type, type] = {}


def defended_classifier(classifier: Any, defense: Defense, outputs: str = "logits") -> Any:
    """A copy of the ART classifier whose predict() returns the defense's answers; gradients stay undefended.

    The copy shares the classifier's model (nothing is trained or copied
    deeply), is an instance of a subclass of the classifier's own class (so
    ART attacks accept it where they accept the classifier), and differs only
    in predict(): the classifier's predictions (after its own postprocessors,
    if any) go through `defense`; MAD and Adaptive Misinformation also get their
    view of the preprocessed query x, computed by their query model in
    batches of predict's batch_size. loss_gradient and class_gradient are the
    classifier's, computed on the undefended model, as they are under ART's
    postprocessors.

    Args:
        classifier: an ART classifier (e.g. PyTorchClassifier).
        defense: any modelguard_fast Defense.
        outputs: what the classifier's predict returns: "logits" (default, as a
            PyTorchClassifier on a model without a softmax) or "probs".
    """
    if not isinstance(classifier, ClassifierMixin):
        raise TypeError(f"classifier must be an ART classifier (ClassifierMixin), got {type(classifier).__name__}")
    if not isinstance(defense, Defense):
        raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
    outputs = choice(outputs, "outputs", OUTPUTS)
    base = type(classifier)
    if isinstance(classifier, _DefendedPredictions):
        raise TypeError("classifier is already defended by defended_classifier; pass the undefended one")
    cls = _DEFENDED_CLASSES.get(base)
    if cls is None:
        cls = _DEFENDED_CLASSES[base] = type(f"Defended{base.__name__}", (_DefendedPredictions, base), {})
    defended = object.__new__(cls)
    defended.__dict__.update(classifier.__dict__)
    defended._mgf_defense = defense
    defended._mgf_outputs = outputs
    return defended
