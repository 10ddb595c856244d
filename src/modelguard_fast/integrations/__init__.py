"""Adapters to other libraries; each one is imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from ..defense import Defense


def _art():
    try:
        art = importlib.import_module(f"{__name__}.art")
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != "art":
            raise
        raise ImportError("the ART adapter needs IBM's Adversarial Robustness Toolbox: "
                          "pip install adversarial-robustness-toolbox (or modelguard_fast[art])") from err
    return art


def art_postprocessor(defense: Defense, outputs: str = "probs", apply_fit: bool = False, apply_predict: bool = True):
    """`defense` as a postprocessor of IBM's Adversarial Robustness Toolbox (numpy in, numpy out).

    Attach it with ``PyTorchClassifier(..., postprocessing_defences=[art_postprocessor(defense)])``,
    where an ART postprocessor such as ``ReverseSigmoid(beta, gamma)`` would go. Accepts
    probability rows (B, C), a binary classifier's one column (B, 1), and logits with
    outputs="logits". Defenses that look at the query (MAD, Adaptive Misinformation) are
    refused, since ART hands postprocessors the predictions alone: use
    art_defended_classifier for them. Needs ART (``pip install adversarial-robustness-toolbox``).
    See modelguard_fast.integrations.art.ArtPostprocessor.
    """
    return _art().ArtPostprocessor(defense, outputs=outputs, apply_fit=apply_fit, apply_predict=apply_predict)


def art_defended_classifier(classifier: Any, defense: Defense, outputs: str = "logits"):
    """A copy of an ART classifier whose predict() answers with `defense`; its gradients stay undefended.

    The route for every defense, and the only one for MAD and Adaptive Misinformation,
    which need the query: ``defended = art_defended_classifier(classifier, mgf.MAD.from_target(model))``.
    loss_gradient and class_gradient are the undefended classifier's, as under ART's
    postprocessors. See modelguard_fast.integrations.art.defended_classifier.
    """
    return _art().defended_classifier(classifier, defense, outputs=outputs)
