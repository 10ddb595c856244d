"""Studies of the defenses behind `modelguard-fast timing | ood | growth | qpi`.

- response_times: Figure 6 of the paper, the time to answer a query under each defense.
- ood_auroc: Figure 5 (left), how well the maximum softmax probability of the
  defended answers still tells test images from out-of-distribution ones.
- centroid_growth: Figure 5 (right), ModelGuard-S's centroids along the attacker's queries.
- qpi_study: Table 6, what a second pass over the same queries (2-QPI) learns from
  ordered (Algorithm 1) versus non-ordered ("nearest") incremental quantization.

Each returns (header, rows), ready for report.write_outputs; plots.py draws them.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import params
from ..attacks import AttackConfig, run_attack
from ..attacks.querying import knockoff_indices
from ..data.bundled import BUNDLED
from ..data.outliers import sample_image_patches, sample_ood_patches
from ..defense import Defense
from ..training import predict_proba
from .cache import Cache
from ..defenses.registry import DEFENSES
from .setup import Setup, build_defense
from .threads import single_threaded

#: OOD test sets of ood_auroc (see its docstring).
OOD_SETS = ("photos", "oe-photos")
#: The defenses ood_auroc sweeps over eps; None and Top-1 are the reference lines.
OOD_DEFENSES = ("mgs", "mgw", "mad")
QPI_ORDERS = {"first": "ordered (Algorithm 1)", "nearest": "non-ordered (nearest)"}
DEFAULT_EPS_VALUES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
# Offset of the "oe-photos" OOD seed from the Outlier Exposure seed: other crops of the same photographs.
_OE_PHOTOS_SEED_OFFSET = 1_000_003


class StudyError(ValueError):
    """A bad argument of a study: names the argument, the value and what is allowed."""


# ---------------------------------------------------------------- argument checks
def check_eps(value: Any, name: str = "eps") -> float:
    """An L1 budget, as modelguard_fast.params.eps rules (a StudyError otherwise)."""
    try:
        return params.eps(value, name)
    except (TypeError, ValueError) as err:
        raise StudyError(str(err)) from None


def check_eps_values(values: Any, name: str = "eps_values") -> tuple[float, ...]:
    try:
        return params.eps_values(values, name)
    except (TypeError, ValueError) as err:
        raise StudyError(str(err)) from None


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise StudyError(f"{name} = {value!r} is not allowed; use an integer >= {minimum}")
    return int(value)


def check_batch_sizes(values: Any, name: str = "batch_sizes") -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise StudyError(f"{name} = {values!r} is not allowed; use a non-empty list of positive integers")
    return tuple(check_int(v, f"{name}[{i}]") for i, v in enumerate(values))


def check_budget(budget: int | None, pool_size: int, name: str = "budget") -> int:
    """`budget` images of the attacker's pool; None or 0: the whole pool."""
    if budget is None or (not isinstance(budget, bool) and budget == 0):
        return pool_size
    budget = check_int(budget, name)
    if budget > pool_size:
        raise StudyError(f"{name} = {budget} is not allowed; the attacker's pool has {pool_size} images "
                         f"(use at most {pool_size}, or 0 for all of them)")
    return budget


# ---------------------------------------------------------------- helpers
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _on_device(setup: Setup, device: torch.device) -> Setup:
    """A copy of `setup` whose models are copies on `device` (the setup's own models are not moved)."""
    return dataclasses.replace(setup, target=copy.deepcopy(setup.target).to(device),
                               misinformation=None if setup.misinformation is None
                               else copy.deepcopy(setup.misinformation).to(device))


# ---------------------------------------------------------------- Figure 6
def response_times(setup: Setup, batch_sizes: Sequence[int] = (1, 256), eps: float = 1.0, repeats: int = 30,
                   warmup: int = 3, device: str = "cpu", threads: int | None = None,
                   ) -> tuple[list[str], list[list[Any]]]:
    """Median seconds per query of each of the 8 defenses (Figure 6; AM only where the setup has it), at each
    batch size.

    A timed call is what a server does for a batch of queries: the target's
    forward pass and softmax, then the defense (for MAD and Adaptive
    Misinformation including their own model's forward pass on the queries).
    Both parts are clocked in the same call: "target" is the forward pass
    and softmax, "defense" the defense's part alone (its overhead over the
    bare target), "total" their sum. Note that None is not free: like every
    defense it validates its input and returns a copy. On a GPU the device
    is synchronised before every reading of the clock. Each of `warmup` +
    `repeats` rounds gets its own batch of test images (cycling through the
    test set), which every defense answers in turn, starting with a
    different defense each round, so that a busy machine slows all defenses
    alike; the first `warmup` rounds are not counted. ModelGuard-S is timed
    in a served state: its codebooks are first grown on the target's
    predictions of the whole attacker pool. With `threads`, torch's CPU
    thread count is set to it for the study and restored afterwards (one
    thread avoids the stalls of a thread team on an oversubscribed machine).

    Columns: defense, batch, total, target and defense s/query, and total /
    None (the total relative to None's at the same batch size, measured in
    the same run). The setup's models are not moved; copies go to `device`.
    """
    batch_sizes = check_batch_sizes(batch_sizes)
    eps = check_eps(eps)
    repeats = check_int(repeats, "repeats")
    warmup = check_int(warmup, "warmup", minimum=0)
    threads = None if threads is None else check_int(threads, "threads")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise StudyError(f"device = {device!r} is not a torch device: {err}") from None
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        local = _on_device(setup, dev)
        defenses = {name: build_defense(name, local, eps=eps) for name in setup.defenses}
        with torch.no_grad():
            defenses["mgs"](predict_proba(local.target, local.splits.pool_x.to(dev)))
        medians = {}
        for batch in batch_sizes:
            medians.update(_round_robin(defenses, local.target.eval(), local.splits.test_x.to(dev), batch,
                                        warmup, repeats, dev))
    finally:
        torch.set_num_threads(previous_threads)
    header = ["defense", "batch", "total s/query", "target s/query", "defense s/query", "total / None"]
    rows = [[DEFENSES[name].label, batch, *medians[name, batch], medians[name, batch][0] / medians["none", batch][0]]
            for name in setup.defenses for batch in batch_sizes]
    return header, rows


def _round_robin(defenses: dict[str, Defense], target: torch.nn.Module, test_x: torch.Tensor, batch: int,
                 warmup: int, repeats: int, dev: torch.device) -> dict[tuple[str, int], tuple[float, ...]]:
    """{(defense, batch): median (total, target, defense) seconds per query}; see response_times."""
    names = list(defenses)
    index = torch.arange(batch, device=dev)
    times = {name: ([], [], []) for name in names}
    for r in range(warmup + repeats):
        x = test_x[(index + r * batch) % len(test_x)]
        for name in names[r % len(names):] + names[:r % len(names)]:
            with torch.no_grad():
                _synchronize(dev)
                t0 = time.perf_counter()
                probs = torch.softmax(target(x), dim=1)
                _synchronize(dev)
                t1 = time.perf_counter()
                defenses[name].defend(probs, x)
                _synchronize(dev)
                t2 = time.perf_counter()
            if r >= warmup:
                for series, value in zip(times[name], (t2 - t0, t1 - t0, t2 - t1)):
                    series.append(value)
    return {(name, batch): tuple(float(np.median(series)) / batch for series in times[name]) for name in names}


# ---------------------------------------------------------------- Figure 5, left
def ood_images(ood: str, n: int, size: int, seed: int = 0) -> torch.Tensor:
    """The OOD test images of ood_auroc: (n, 1, size, size) in [0, 1]."""
    if ood == "photos":
        return sample_ood_patches(n, size, seed=seed)
    if ood == "oe-photos":
        return sample_image_patches(n, size, seed=seed + _OE_PHOTOS_SEED_OFFSET)
    raise StudyError(f"ood = {ood!r} is not allowed; choose from {', '.join(map(repr, OOD_SETS))}")


def ood_auroc(setup: Setup, eps_values: Sequence[float] = DEFAULT_EPS_VALUES, ood: str = "photos",
              ood_count: int = 1000, seed: int = 0) -> tuple[list[str], list[list[Any]]]:
    """AUROC of an OOD detector on defended answers (Figure 5, left).

    The detector scores a query by the maximum probability of the answer it
    receives (the maximum softmax probability of Hendrycks and Gimpel); ID =
    the target's test set, OOD = `ood_count` images of the set `ood`;
    AUROC by sklearn's roc_auc_score, ID as the positive class.

    The OOD set. The paper tests on a set never used in training (DTD or
    GTSRB, while Outlier Exposure used SVHN or Indoor67). The bundled targets
    were trained with Outlier Exposure on patches of scikit-learn's two sample
    photographs (setup.outliers), so testing on those patches, or on other
    crops of the same photographs, would measure the detector on the very
    distribution it was trained to flag: an optimistic figure. Nor is the other
    bundled dataset resized an OOD set: it holds digits too. The default,
    "photos", is therefore patches of the images that ship with matplotlib (a
    portrait photograph and a terrain elevation map; see
    modelguard_fast.data.outliers.sample_ood_patches), disjoint from the
    Outlier Exposure photographs. "oe-photos" (fresh crops of the Outlier
    Exposure photographs, another seed) is there for comparison only.

    Queries are answered in one stream, ID and OOD images shuffled together
    (seeded by `seed`), so that a stateful defense (ModelGuard-S, fresh for
    each eps) favours neither set. MAD's surrogate is drawn with `seed`.

    Rows: None, Top-1 (the reference lines, eps has no effect on them) and
    ModelGuard-S, ModelGuard-W and MAD; a column per eps.
    """
    eps_values = check_eps_values(eps_values)
    if setup.dataset not in BUNDLED:
        raise StudyError(f"dataset = {setup.dataset!r}: the OOD study's images are grey-scale patches for the "
                         f"bundled datasets ({', '.join(BUNDLED)}); pass your own OOD set to a defense directly")
    if ood not in OOD_SETS:
        raise StudyError(f"ood = {ood!r} is not allowed; choose from {', '.join(map(repr, OOD_SETS))}")
    ood_count = check_int(ood_count, "ood_count")
    seed = check_int(seed, "seed", minimum=0)
    from sklearn.metrics import roc_auc_score

    id_x = setup.splits.test_x
    x = torch.cat([id_x, ood_images(ood, ood_count, id_x.shape[-1], seed=seed)])
    is_id = np.r_[np.ones(len(id_x)), np.zeros(ood_count)]
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    x, is_id = x[order], is_id[order.numpy()]
    with torch.no_grad():
        clean = predict_proba(setup.target, x).cpu()

    def auroc(name: str, eps: float) -> float:
        defended = build_defense(name, setup, eps=eps, seed=seed).defend(clean, x, batch_size=512)
        return float(roc_auc_score(is_id, defended.double().max(dim=1).values.numpy()))

    header = ["defense", *[f"eps={e:g}" for e in eps_values]]
    rows = []
    for name in ("none", "top1"):
        value = auroc(name, 1.0)
        rows.append([DEFENSES[name].label, *[value] * len(eps_values)])
    for name in OOD_DEFENSES:
        rows.append([DEFENSES[name].label, *[auroc(name, eps) for eps in eps_values]])
    return header, rows


# ---------------------------------------------------------------- Figure 5, right
def centroid_growth(setup: Setup, eps_values: Sequence[float] = (0.5, 1.0, 1.5), checkpoints: int = 20,
                    budget: int | None = None, query_seed: int = AttackConfig.query_seed,
                    ) -> tuple[list[str], list[list[Any]]]:
    """Number of ModelGuard-S centroids after each prefix of the attacker's query stream (Figure 5, right).

    The stream is the KnockoffNets one: the first `budget` images (default:
    all) of the attacker's pool in the seeded order
    attacks.querying.knockoff_indices(pool size, budget, query_seed), the
    order every attack of the pipeline queries in. A fresh ModelGuard-S per
    eps answers it; the count is read at `checkpoints` evenly spaced prefix
    lengths, the last being the whole stream.

    Rows: queries answered, then the number of centroids for each eps.
    """
    eps_values = check_eps_values(eps_values)
    checkpoints = check_int(checkpoints, "checkpoints")
    budget = check_budget(budget, len(setup.splits.pool_x))
    if isinstance(query_seed, bool) or not isinstance(query_seed, numbers.Integral):
        raise StudyError(f"query_seed = {query_seed!r} is not allowed; use an integer")
    stream = setup.splits.pool_x[knockoff_indices(len(setup.splits.pool_x), budget, int(query_seed))]
    with torch.no_grad():
        probs = predict_proba(setup.target, stream).cpu()
    marks = [int(m) for m in np.unique(np.round(np.linspace(0, budget, min(checkpoints, budget) + 1)))[1:]]
    counts = {}
    for eps in eps_values:
        guard = build_defense("mgs", setup, eps=eps)
        done = 0
        for mark in marks:
            guard(probs[done:mark])
            done = mark
            counts[eps, mark] = guard.num_centroids
    header = ["queries", *[f"eps={e:g}" for e in eps_values]]
    return header, [[mark, *[counts[eps, mark] for eps in eps_values]] for mark in marks]


# ---------------------------------------------------------------- Table 6
def qpi_study(setup: Setup, cache: Cache | None = None, config: AttackConfig | None = None,
              budget: int | None = None, eps: float = 1.0, seed: int = 0, device: str = "cpu",
              ) -> tuple[list[str], list[list[Any]]]:
    """Ordered versus non-ordered ModelGuard-S under the 2-QPI attack (Table 6).

    For each order ("first": Algorithm 1; "nearest": answer with the nearest
    admissible centroid, the non-ordered incremental quantization of Section
    3.5), a fresh ModelGuard-S is attacked with KnockoffNets 1-QPI (the naive
    attack, config.replace(qpi=1)) and another with 2-QPI (config.replace(qpi=2):
    every image asked twice, in two passes, the answers averaged). Columns:
    the number of images whose second answer differs from the first; the mean
    recovery distance ||y~ - y||_2 to the clean predictions on those images of
    the first pass's answers (1-QPI) and of the averaged answers (2-QPI) (None
    when no answer changed); the extraction accuracy of 1-QPI and of 2-QPI.
    The first pass of 2-QPI asks exactly what 1-QPI asks, of a guard in the
    same state, so it gets the same answers.

    `config` defaults to AttackConfig.small(); `budget` (images; default: the
    whole pool) and `seed` are run_attack's. With a `cache`, finished attacks
    are read from it instead of being run again.
    """
    config = AttackConfig.small() if config is None else config
    if not isinstance(config, AttackConfig):
        raise StudyError(f"config = {config!r} is not allowed; use an AttackConfig")
    budget = check_budget(budget, len(setup.splits.pool_x))
    eps = check_eps(eps)
    seed = check_int(seed, "seed", minimum=0)
    results = {}
    for order in QPI_ORDERS:
        for qpi in (1, 2):
            attack = config.replace(qpi=qpi)
            spec = {**setup.spec, "params": setup.params, "study": "qpi", "order": order, "eps": eps,
                    "budget": budget, "config": attack.as_dict(), "seed": seed}
            record = cache.get_json("qpi", spec) if cache is not None else None
            if record is None:
                with single_threaded():
                    result = run_attack(setup.target, build_defense("mgs", setup, eps=eps, seed=seed, order=order),
                                        setup.splits.pool_x, setup.splits.test_x, setup.splits.test_y,
                                        query="knockoff", strategy="naive", budget=budget, config=attack,
                                        device=device, seed=seed)
                record = {key: getattr(result, key) for key in
                          ("accuracy", "recovery_distance", "qpi_changed", "qpi_distance_first",
                           "qpi_distance_mean", "seconds")}
                if cache is not None:
                    cache.put_json("qpi", spec, record)
            results[order, qpi] = record
    header = ["order", "changed predictions", "1-QPI distance (changed)", "2-QPI distance (changed)",
              "1-QPI accuracy", "2-QPI accuracy"]
    rows = []
    for order, label in QPI_ORDERS.items():
        two = results[order, 2]
        rows.append([f"{order}: {label}", int(two["qpi_changed"]), two["qpi_distance_first"],
                     two["qpi_distance_mean"], float(results[order, 1]["accuracy"]), float(two["accuracy"])])
    return header, rows
