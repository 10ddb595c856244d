"""Adapters to other libraries; each one is imported only when used."""

from __future__ import annotations

from ..defenses.base import Defense


def art_postprocessor(defense: Defense, apply_fit: bool = False, apply_predict: bool = True):
    """`defense` as a postprocessor of IBM's Adversarial Robustness Toolbox (numpy in, numpy out).

    Attach it with ``PyTorchClassifier(..., postprocessing_defences=[art_postprocessor(defense)])``.
    Needs ART (``pip install adversarial-robustness-toolbox``). Defenses that
    look at the query (MAD, Adaptive Misinformation) are refused, since ART
    hands postprocessors the predictions alone: wrap the model in
    GuardedModel instead.
    """
    try:
        from .art import ArtPostprocessor
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != "art":
            raise
        raise ImportError("art_postprocessor needs IBM's Adversarial Robustness Toolbox: "
                          "pip install adversarial-robustness-toolbox") from err
    return ArtPostprocessor(defense, apply_fit=apply_fit, apply_predict=apply_predict)
