"""95% intervals for extraction accuracy, and for differences between two cells, over seeds or test images.

Which interval, and why:

- With two or more seeds, a Student-t interval over the seeds' values (mean
  +- t_{0.975, n-1} * s / sqrt(n)). The seeds are the independent replicates:
  each re-draws the attacker's query order, the substitute's initialisation
  and training order, the shadow models and the partial Bayes table (and,
  with vary_target, the data split and the target), so their spread is the
  run-to-run variation a reviewer asks about. With 3 seeds t is 4.30: wide,
  as it should be.
- With one seed there is no run-to-run spread to measure; the only honest
  interval is over the test images: a percentile bootstrap of the mean of the
  per-image 0/1 correctness (see bootstrap_interval). It covers the test
  set's sampling only, not training randomness.

A difference between two cells (a finding such as "ModelGuard-W is below MAD")
is paired: per seed (same seed, same query order) for the t-interval, per test
image for the bootstrap, which is much tighter than two separate intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
T_OVER_SEEDS = "t over seeds"
BOOTSTRAP = "bootstrap over test images"


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval [low, high] (None when it cannot be computed: one seed and no per-image
    results); `values`: the per-seed values; `method`: T_OVER_SEEDS, BOOTSTRAP or None."""

    mean: float
    low: float | None
    high: float | None
    values: tuple[float, ...]
    method: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "values": list(self.values),
                "method": self.method, "level": LEVEL}

    def format(self, spec: str = ".4f") -> str:
        """"mean [low, high]", or the mean alone when there is no interval."""
        if self.low is None:
            return format(self.mean, spec)
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def bits(mask: np.ndarray) -> str:
    """A boolean vector as a hex string (packed bits), for JSON records."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes().hex()


def unbits(text: str, length: int) -> np.ndarray:
    """The boolean vector of `length` entries that `bits` packed into `text`."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:length].astype(bool)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Student-t 95% interval of the mean of `values` (at least 2)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean, sem = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(LEVEL, len(x) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def bootstrap_interval(*samples: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of mean(a) (one sample) or of mean(a) - mean(b) (two paired samples,
    resampled together), for per-image 0/1 samples (right or wrong on each test image).

    A resample of n images from 0/1 values only counts how many of each kind it drew, so it is drawn as such:
    one sample, Binomial(n, mean) / n, whose 2.5% and 97.5% quantiles are taken exactly (the limit of
    infinitely many resamples; scipy.stats.binom); two paired samples, a Multinomial(n, ·) over the images
    only a got right, only b got right, and the rest, RESAMPLES times (seeded), and the percentiles of
    (only a - only b) / n. This is what scipy.stats.bootstrap(method="percentile") computes, without
    materialising n x RESAMPLES resampled images.
    """
    from scipy import stats

    arrays = [np.asarray(x) for x in samples]
    for name, x in zip("ab", arrays):
        if x.ndim != 1 or len(x) == 0 or not np.isin(x, (0, 1)).all():
            raise ValueError(f"sample {name} must be a non-empty 1-D array of 0/1 values (per test image), got "
                             f"shape {x.shape}")
    n = len(arrays[0])
    alpha = (1 - LEVEL) / 2
    if len(arrays) == 1:
        low, high = stats.binom.ppf([alpha, 1 - alpha], n, arrays[0].mean())
        return float(low / n), float(high / n)
    a, b = (x.astype(bool) for x in arrays)
    if len(b) != n:
        raise ValueError(f"paired samples must have the same length, got {n} and {len(b)}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    counts = np.random.default_rng(seed).multinomial(n, [only_a / n, only_b / n, 1 - (only_a + only_b) / n],
                                                     size=RESAMPLES)
    low, high = np.percentile((counts[:, 0] - counts[:, 1]) / n, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _per_image(records: Sequence[Mapping[str, Any]], key: str) -> np.ndarray | None:
    """The one record's per-image results under `key` ("correct" or "agree"), None when it has none (cells
    cached by an older version)."""
    if len(records) != 1 or not records[0].get(key) or "test_images" not in records[0]:
        return None
    return unbits(records[0][key], records[0]["test_images"])


def cell_interval(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> Interval:
    """Mean and 95% interval of one cell's `metric` ("accuracy" or "fidelity") over its records, one per seed:
    t over seeds with two or more, else a bootstrap over the test images of the record's
    per-image results ("correct" or "agree"), when it has them (grid.CellRunner.run records them)."""
    values = tuple(float(r[metric]) for r in records)
    mean = float(np.mean(values))
    if len(values) >= 2:
        return Interval(mean, *t_interval(values), values, T_OVER_SEEDS)
    image = _per_image(records, "correct" if metric == "accuracy" else "agree")
    if image is None:
        return Interval(mean, None, None, values, None)
    return Interval(mean, *bootstrap_interval(image), values, BOOTSTRAP)


def difference_interval(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]],
                        metric: str = "accuracy") -> Interval:
    """Mean and 95% interval of `metric`(a) - `metric`(b) for two cells' records of the same seeds (paired by
    seed; with one seed, paired by test image)."""
    seeds_a, seeds_b = [r.get("seed") for r in a], [r.get("seed") for r in b]
    if seeds_a != seeds_b:
        raise ValueError(f"a and b must hold records of the same seeds in the same order, got {seeds_a} and {seeds_b}")
    values = tuple(float(x[metric]) - float(y[metric]) for x, y in zip(a, b))
    mean = float(np.mean(values))
    if len(values) >= 2:
        return Interval(mean, *t_interval(values), values, T_OVER_SEEDS)
    key = "correct" if metric == "accuracy" else "agree"
    x, y = _per_image(a, key), _per_image(b, key)
    if x is None or y is None:
        return Interval(mean, None, None, values, None)
    return Interval(mean, *bootstrap_interval(x, y), values, BOOTSTRAP)


def interval_method(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The method cell_interval uses for cells of these records (all seeds of a grid): T_OVER_SEEDS with two
    or more seeds, BOOTSTRAP with one when every record has per-image results, else None."""
    if len({r.get("seed") for r in records}) >= 2:
        return T_OVER_SEEDS
    return BOOTSTRAP if all(r.get("correct") and "test_images" in r for r in records) else None


def verdict(interval: Interval, above: float) -> str:
    """"holds" when the whole interval lies above `above`, "does not hold" when it lies at or below it,
    else "not resolved at this size" (also when there is no interval)."""
    if interval.low is None:
        return "not resolved at this size"
    if interval.low > above:
        return "holds"
    if interval.high <= above:
        return "does not hold"
    return "not resolved at this size"
