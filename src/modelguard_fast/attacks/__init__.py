"""Model-extraction attacks (ModelGuard paper, Sections 2, 3.4, 4.1, Appendix B.1): the attacker's side.

run_attack is the entry point: a query strategy (KnockoffNets random,
JBDA-TR; optionally m-QPI) against an Oracle, a recovery strategy (Naive,
Top-1, S4L, Smoothing, D-DAE, D-DAE+, partial Bayes), one substitute-training
routine, and the metrics (extraction accuracy, fidelity, recovery distance).
The building blocks are public for experiments that need them one by one.
"""

from .config import BAYES_MEANS, AttackConfig
from .ddae import Restorer, restore, restorer_hidden_sizes, shadow_pairs, train_restorer, train_shadow_models
from .metrics import extraction_accuracy, fidelity, recovery_distance, recovery_distances
from .oracle import BudgetExceededError, Oracle, Referee
from .pbayes import LookupTable, draw_table, recover
from .querying import (Answers, JbdaSettings, QueryPlan, jbda_tr, knockoff_indices, pool_order, random_crop_flip,
                       targeted_ifgsm)
from .run import AttackResult, Transcript, run_attack, train_attack_shadows
from .strategies import QUERY_STRATEGIES, RECOVERY_STRATEGIES, QueryStrategy, Recovery, RecoveryStrategy
from .substitute import TrainSettings, rotated, train_substitute

__all__ = [
    "BAYES_MEANS", "QUERY_STRATEGIES", "RECOVERY_STRATEGIES",
    "Answers", "AttackConfig", "AttackResult", "BudgetExceededError", "JbdaSettings", "LookupTable",
    "Oracle", "QueryPlan", "QueryStrategy", "Recovery", "RecoveryStrategy", "Referee", "Restorer",
    "TrainSettings", "Transcript",
    "draw_table", "extraction_accuracy", "fidelity", "jbda_tr", "knockoff_indices", "pool_order",
    "random_crop_flip", "recover", "recovery_distance", "recovery_distances", "restore", "restorer_hidden_sizes",
    "rotated", "run_attack", "shadow_pairs", "targeted_ifgsm", "train_attack_shadows", "train_restorer",
    "train_shadow_models", "train_substitute",
]
