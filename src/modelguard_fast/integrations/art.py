"""A modelguard_fast defense as an ART postprocessor. Importing this module needs ART."""

from __future__ import annotations

import numpy as np
from art.defences.postprocessor import Postprocessor

from ..defenses.base import Defense


class ArtPostprocessor(Postprocessor):
    """Applies a modelguard_fast defense to the predictions an ART estimator returns."""

    params: list[str] = []

    def __init__(self, defense: Defense, apply_fit: bool = False, apply_predict: bool = True):
        if not isinstance(defense, Defense):
            raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
        if defense.needs_query:
            raise TypeError(f"{type(defense).__name__} needs the query itself, but ART postprocessors see only "
                            "predictions; wrap the model in modelguard_fast.GuardedModel instead")
        super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.defense = defense

    def __call__(self, preds: np.ndarray) -> np.ndarray:
        return self.defense(np.asarray(preds))

    def __repr__(self) -> str:
        return f"ArtPostprocessor({self.defense!r})"
