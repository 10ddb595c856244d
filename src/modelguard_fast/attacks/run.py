"""run_attack: one model-extraction attack against a defended target, from querying to metrics."""

from __future__ import annotations

import copy
import itertools
import logging
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from .._validation import choice, positive_int
from ..defense import Defense, check_replayable
from ..guarded import OUTPUTS
from ..models.small_cnn import SmallCNN
from . import ddae
from ._seeding import ModelSource, build_model, derive_seed, torch_generator
from .config import AttackConfig
from .metrics import extraction_accuracy, fidelity, recovery_distance, recovery_distances
from .oracle import Oracle, Referee
from .querying import Answers, JbdaSettings, QueryPlan, jbda_tr, knockoff_indices, pool_order, random_crop_flip
from .strategies import QUERY_STRATEGIES, RECOVERY_STRATEGIES, Recovery, one_hot_top1
from .substitute import TrainSettings, check_s4l_model, has_batch_norm, train_substitute

logger = logging.getLogger(__name__)


@dataclass
class Transcript:
    """What the attacker trained its final substitute on.

    images: (N, ...) the queried images (synthetic ones included for JBDA-TR);
    received: (N, C) the (averaged) answers of the oracle for them;
    labels: (N, C) the targets after the strategy's recovery.
    """

    images: torch.Tensor
    received: torch.Tensor
    labels: torch.Tensor


@dataclass
class AttackResult:
    """Outcome of one attack.

    accuracy: extraction accuracy, the substitute's top-1 accuracy on the target's test set.
    fidelity: agreement of the substitute's top-1 with the undefended target's on the test set.
    recovery_distance: mean ||y~ - y||_2 between the labels the substitute was trained on
        (recovered ones, or the received answers for attacks without recovery) and the
        target's clean predictions of the same images.
    queries_used: predictions the oracle returned (images x qpi x smoothing copies).
    num_images: images the substitute was trained on (the budget, in images).
    seconds: wall time of the whole attack.
    target_accuracy: the undefended target's test accuracy, for reference.
    table_rows: partial Bayes table rows kept (pbayes, ddae+), or D-DAE training pairs (ddae).
    qpi_changed: with qpi > 1, images whose answers differed between passes;
    qpi_distance_first / qpi_distance_mean: recovery distance over those images of the
        first pass's answers and of the averaged answers (Table 6 of the paper); None when
        no answer changed or qpi = 1.
    config: the AttackConfig as a dict.
    substitute: the trained substitute (eval mode); transcript: see Transcript.
    """

    query: str
    strategy: str
    defense: str
    budget: int
    seed: int
    accuracy: float
    fidelity: float
    recovery_distance: float
    queries_used: int
    num_images: int
    seconds: float
    target_accuracy: float
    table_rows: Optional[int] = None
    qpi_changed: Optional[int] = None
    qpi_distance_first: Optional[float] = None
    qpi_distance_mean: Optional[float] = None
    config: dict[str, Any] = field(default_factory=dict)
    substitute: Optional[nn.Module] = field(default=None, repr=False)
    transcript: Optional[Transcript] = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Every metric and setting (not the substitute or the transcript), ready for JSON."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__
                if name not in ("substitute", "transcript")}


def _tensor(value: Any, name: str, min_dims: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim < min_dims or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty tensor with at least {min_dims} dimension(s) (batch first), "
                         f"got shape {tuple(value.shape)}")
    return value


def _labels(value: Any, name: str, length: int) -> torch.Tensor:
    value = _tensor(value, name, 1)
    if value.ndim != 1 or value.dtype not in (torch.int64, torch.int32) or len(value) != length:
        raise ValueError(f"{name} must be a 1-D integer tensor of {length} labels, got {value.dtype} of shape "
                         f"{tuple(value.shape)}")
    return value.long().cpu()


def _default_substitute(pool_x: torch.Tensor, num_classes: int) -> Callable[[], nn.Module]:
    if pool_x.ndim != 4:
        raise ValueError("the default substitute (SmallCNN) needs images (N, channels, H, W); pass substitute= "
                         f"for inputs of shape {tuple(pool_x.shape[1:])}")
    return lambda: SmallCNN(num_classes, in_channels=pool_x.shape[1])


def run_attack(target: nn.Module, defense: Defense, pool_x: torch.Tensor, test_x: torch.Tensor,
               test_y: torch.Tensor, *, query: str = "knockoff", strategy: str = "naive", budget: int,
               config: Optional[AttackConfig] = None, substitute: Optional[ModelSource] = None,
               shadow: Optional[ModelSource] = None, shadow_models: Optional[Sequence[nn.Module]] = None,
               pool_y: Optional[torch.Tensor] = None, outputs: str = "logits",
               device: Union[str, torch.device] = "cpu", seed: int = 0, verbose: bool = False) -> AttackResult:
    """Runs one model-extraction attack and measures it.

    The attacker queries an Oracle (target + defense, counted), recovers
    labels with `strategy`, and trains a substitute with the one training
    routine; the harness measures the substitute against the undefended
    target through a Referee the attack code never sees.

    Args:
        target: the target model (logits out, or probabilities with outputs="probs").
            It answers on its own device, in eval mode (its own mode is left as it is).
        defense: the defense behind the oracle, used as it is: a stateful one
            (ModelGuard-S) keeps the centroids the attack's queries create, so pass a
            fresh one per attack unless that is what you want to measure.
        pool_x: the attacker's natural images (N, ...).
        test_x, test_y: the target's test set, for accuracy and fidelity.
        query: a key of QUERY_STRATEGIES: "knockoff" (KnockoffNets random) or "jbda" (JBDA-TR).
        strategy: a key of RECOVERY_STRATEGIES: "naive", "top1", "s4l", "smoothing", "ddae", "ddae+" or
            "pbayes" (modelguard_fast.attacks.strategies).
        budget: images the attacker queries (the paper's 50,000). Each is asked
            config.qpi times, and config.smoothing_copies times more with "smoothing";
            the oracle's budget in predictions is the product.
        config: an AttackConfig (default: the paper's settings, AttackConfig()).
        substitute: the substitute, as a module whose weights are the initial ones
            (copied; e.g. a pretrained model, as in the paper) or a factory called
            under a seed fixed by `seed`; default SmallCNN(C, channels).
        shadow: the D-DAE shadow models' module or factory; default: as `substitute`.
        shadow_models: D-DAE's shadow models, already trained by train_attack_shadows
            with the same pool, config, seed and device; they depend on nothing else,
            so a grid of attacks trains them once. None: "ddae" trains them.
        pool_y: the pool's own labels (N,), needed by "ddae" unless shadow_models are
            given (its shadow models learn random class subsets of the pool).
        outputs: "logits" or "probs", what the target returns.
        device: where the attacker's models train (substitute, shadows, restorer).
        seed: seed of everything random in the attack except which pool images are
            queried (config.query_seed fixes those, for every attack alike).
        verbose: tqdm progress bars.

    Intermediate JBDA-TR substitutes train on the received answers (one-hot
    ones for "top1", with the rotation loss for "s4l"); the D-DAE and partial
    Bayes recoveries need the whole query set and apply to the final one.
    """
    started = time.perf_counter()
    query = choice(query, "query", QUERY_STRATEGIES)
    strategy = choice(strategy, "strategy", RECOVERY_STRATEGIES)
    recovery = RECOVERY_STRATEGIES[strategy]
    budget = positive_int(budget, "budget")
    config = AttackConfig() if config is None else config
    if not isinstance(config, AttackConfig):
        raise TypeError(f"config must be an AttackConfig or None, got {type(config).__name__}")
    if not isinstance(target, nn.Module):
        raise TypeError(f"target must be a torch.nn.Module, got {type(target).__name__}")
    if not isinstance(defense, Defense):
        raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    outputs = choice(outputs, "outputs", OUTPUTS)
    device = torch.device(device)
    pool_x = _tensor(pool_x, "pool_x", 2)
    test_x = _tensor(test_x, "test_x", 2)
    if tuple(test_x.shape[1:]) != tuple(pool_x.shape[1:]):
        raise ValueError(f"test_x must have pool_x's item shape {tuple(pool_x.shape[1:])}, got "
                         f"{tuple(test_x.shape[1:])}")
    test_y = _labels(test_y, "test_y", len(test_x))
    if recovery.needs_pool_labels and shadow_models is None:
        if pool_y is None:
            raise ValueError(f"strategy {strategy!r} needs pool_y, the pool's own labels: its shadow models learn "
                             "random class subsets of the pool")
        pool_y = _labels(pool_y, "pool_y", len(pool_x))
    if shadow_models is not None and (isinstance(shadow_models, nn.Module) or not shadow_models
                                      or not all(isinstance(m, nn.Module) for m in shadow_models)):
        raise TypeError(f"shadow_models must be a non-empty sequence of torch.nn.Module (see train_attack_shadows), "
                        f"got {type(shadow_models).__name__}")
    if recovery.needs_offline_map:
        check_replayable(defense)  # before spending any query

    referee = Referee(target, test_x, test_y, outputs, config.query_batch_size)
    num_classes = referee.num_classes
    source = substitute if substitute is not None else _default_substitute(pool_x, num_classes)
    initial = build_model(source, derive_seed(seed, "substitute"), device, "substitute")
    rotation_weight = config.s4l_weight if strategy == "s4l" else 0.0
    if rotation_weight > 0:
        check_s4l_model(initial)
    first_round = min(budget, config.jbda_seed_size, len(pool_x)) if query == "jbda" else budget
    if first_round < 2 and has_batch_norm(initial):  # before any query is spent
        raise ValueError(f"the substitute ({type(initial).__name__}) has batch normalisation, which cannot train on "
                         f"a single image, but the attack would train it on {first_round} (budget={budget}"
                         + (f", jbda_seed_size={config.jbda_seed_size})" if query == "jbda" else ")")
                         + "; query at least 2 images")
    round_labels = one_hot_top1 if strategy == "top1" else (lambda answers: answers)

    def train(x: torch.Tensor, labels: torch.Tensor, name: str, epochs: Optional[int] = None) -> nn.Module:
        return train_substitute(copy.deepcopy(initial), x, labels, TrainSettings.from_config(config, epochs, query),
                                seed=derive_seed(seed, name), device=device, rotation_weight=rotation_weight,
                                verbose=verbose, desc=name)

    smoothing = strategy == "smoothing"
    padding = config.crop_padding(pool_x.shape[-2]) if smoothing else 0
    plan = QueryPlan(config.query_batch_size, repeats=config.qpi,
                     copies=config.smoothing_copies if smoothing else 1,
                     augment=(lambda x, g: random_crop_flip(x, padding, config.smoothing_flip, g)) if smoothing
                     else None)
    oracle = Oracle(target, defense, budget * plan.cost_per_image, outputs, config.query_batch_size)
    ask_gen = torch_generator(seed, "ask")
    if query == "knockoff":
        images = pool_x[knockoff_indices(len(pool_x), budget, config.query_seed)]
        answers = plan.ask(oracle, images, ask_gen)
    else:
        rounds = itertools.count()
        seeds = pool_x[pool_order(len(pool_x), config.query_seed)[:config.jbda_seed_size]]
        settings = JbdaSettings(config.jbda_new_per_sample, config.jbda_steps, config.jbda_eps, config.step_size,
                                config.jbda_input_range)
        images, answers = jbda_tr(
            oracle, seeds, budget, plan,
            lambda x, received: train(x, round_labels(received), f"jbda round {next(rounds)}",
                                      config.jbda_round_epochs),
            settings, num_classes, (torch_generator(seed, "jbda targets"), ask_gen), device, verbose)
    received = answers.labels.cpu()
    clean = referee.clean(images).float().cpu()  # evaluation only, and the paper's partial Bayes table means

    inputs = Recovery(received, clean, images, num_classes, config, seed, device, verbose)
    if recovery.needs_offline_map:
        inputs.offline = defense.offline_map()  # after the queries: ModelGuard-S's frozen view holds their centroids
        inputs.views = inputs.offline.query_views(images, config.query_batch_size)
        inputs.shadows = lambda: shadow_models if shadow_models is not None else train_attack_shadows(
            pool_x, pool_y, num_classes, config, seed=seed, device=device,
            shadow=shadow if shadow is not None else source, verbose=verbose)
    labels, table_rows = recovery.recover(inputs)

    model = train(images, labels.float(), "substitute")
    result = AttackResult(
        query=query, strategy=strategy, defense=defense.name, budget=budget, seed=int(seed),
        accuracy=extraction_accuracy(model, test_x, test_y),
        fidelity=fidelity(model, test_x, referee.target_test_top1),
        recovery_distance=recovery_distance(labels, clean), queries_used=oracle.queries_used,
        num_images=len(images), seconds=0.0, target_accuracy=referee.target_accuracy(), table_rows=table_rows,
        config=config.as_dict(), substitute=model, transcript=Transcript(images, received, labels))
    if answers.passes is not None:
        _qpi_diagnostics(result, answers, clean)
    result.seconds = time.perf_counter() - started
    logger.info("%s + %s against %s: accuracy %.4f, fidelity %.4f, recovery distance %.4f, %d queries, %.1f s",
                query, strategy, defense.name, result.accuracy, result.fidelity, result.recovery_distance,
                result.queries_used, result.seconds)
    return result


def train_attack_shadows(pool_x: torch.Tensor, pool_y: torch.Tensor, num_classes: int, config: AttackConfig, *,
                         seed: int = 0, device: Union[str, torch.device] = "cpu",
                         shadow: Optional[ModelSource] = None, verbose: bool = False) -> list[nn.Module]:
    """The shadow models run_attack(strategy="ddae", seed=seed) trains, for passing to it as shadow_models.

    shadow: as run_attack's (default: SmallCNN(num_classes, channels), as run_attack's default substitute).
    """
    source = shadow if shadow is not None else _default_substitute(pool_x, num_classes)
    pool_y = _labels(pool_y, "pool_y", len(pool_x))
    return ddae.train_shadow_models(pool_x, pool_y, num_classes, source, config, seed=derive_seed(seed, "shadows"),
                                    device=torch.device(device), verbose=verbose)


def _qpi_diagnostics(result: AttackResult, answers: Answers, clean: torch.Tensor) -> None:
    passes = answers.passes.cpu()
    changed = (passes != passes[0]).any(dim=2).any(dim=0)
    result.qpi_changed = int(changed.sum())
    if result.qpi_changed:
        result.qpi_distance_first = float(recovery_distances(passes[0][changed], clean[changed]).mean())
        result.qpi_distance_mean = float(recovery_distances(answers.labels.cpu()[changed], clean[changed]).mean())
