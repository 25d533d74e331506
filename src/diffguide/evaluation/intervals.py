"""95% intervals for sample metrics: seeded half-samples, their spread, and the interval arithmetic.

The scheme is the delete-d jackknife with d = n/2 (Shao & Wu 1989), i.e. half-sampling: each
replicate recomputes a metric on r = floor(n/2) of the n generated samples, drawn *without*
replacement, with the reference statistics held fixed. Its variance estimate is

    v = r / (d * B) * sum_b (theta_b - mean theta)^2,     d = n - r,       (Shao & Wu eq. 2.2)

over B random halves. Why halves, and not the bootstrap:

- no point is duplicated, so k-NN radii (recall) and sample covariances (FID) stay what they are
  for a real sample of distinct images; with-replacement resamples give zero distances and
  rank-deficient covariances;
- for a sample mean v is exactly s^2 / (n - 1), the usual variance of the mean (a half of n
  drawn without replacement has variance s^2 / r * (n - r) / (n - 1)), so no rescaling is needed;
- one scheme serves every metric, so any statistic of several rows (a slope over a sweep, a
  difference of two rows) has replicates too.

The halves depend only on (seed, n): every (method, scale) row of a run uses the same ones, and
sample i has the same label and initial noise in every row, so replicates are paired across rows.

The interval is estimate +- z * sqrt(v), z = 1.96: it uses the halves' spread only, never their
centre, because a half of the samples shifts biased metrics (FID rises like 1/n). It covers the
metric's expected value at this sample size n against the fixed reference (see config/README.md).
Proportions over the n samples (sample accuracy, precision) get the Wilson score interval, the
same variance at p-hat with a shape that stays inside [0, 1] near 0 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REPLICATES = 200
Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
# Streams of numpy's SeedSequence((seed, n, purpose)): one per use, so no two share draws.
HALVES, KID_SUBSETS = 1, 2


def generator(seed: int, n: int, purpose: int) -> np.random.Generator:
    """A generator that depends on the config seed, the sample count and the purpose only, so a
    rerun draws the same numbers and every row of a run draws the same ones."""
    return np.random.default_rng([int(seed), int(n), int(purpose)])


def half_samples(n: int, seed: int, replicates: int = REPLICATES) -> np.ndarray:
    """[replicates, n // 2] sorted sample indices, each row a half drawn without replacement."""
    if n < 4:
        raise ValueError(f"intervals need at least 4 samples per set (halves of 2), got {n}")
    rng = generator(seed, n, HALVES)
    keys = rng.random((replicates, n))
    return np.sort(np.argsort(keys, axis=1)[:, : n // 2], axis=1)


def jackknife_se(replicates: np.ndarray, n: int) -> np.ndarray:
    """Standard error from half-sample replicates (last axis), Shao & Wu's delete-d formula."""
    r = n // 2
    d = n - r
    return np.sqrt(r / d * np.var(replicates, axis=-1))


def normal_interval(estimate: float, se: float, lower: float = -np.inf, upper: float = np.inf) -> tuple[float, float]:
    """estimate -+ z * se, clipped to the metric's range (FID >= 0, IS >= 1, fractions in [0, 1])."""
    return float(max(estimate - Z95 * se, lower)), float(min(estimate + Z95 * se, upper))


def wilson_interval(p_hat: float, n: int) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927), z = 1.96."""
    z2 = Z95 ** 2
    centre = (p_hat + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * np.sqrt(p_hat * (1 - p_hat) / n + z2 / (4 * n * n))
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


@dataclass(frozen=True)
class Estimate:
    """One metric of one sample set: its value on all n samples and on each half.

    ``proportion`` marks a fraction of the n samples (Wilson interval); ``lower`` and ``upper``
    are the metric's range, to which the normal interval is clipped."""

    value: float
    replicates: np.ndarray
    n: int
    proportion: bool = False
    lower: float = -np.inf
    upper: float = np.inf

    def interval(self) -> tuple[float, float]:
        if not np.isfinite(self.value):
            return float("nan"), float("nan")
        if self.proportion:
            return wilson_interval(self.value, self.n)
        return normal_interval(self.value, float(jackknife_se(self.replicates, self.n)), self.lower, self.upper)

    @classmethod
    def missing(cls, n: int, replicates: int = REPLICATES) -> "Estimate":
        """A metric that could not be computed (e.g. Inception IS without a logits head)."""
        return cls(float("nan"), np.full(replicates, np.nan), n)


BOUNDS = ("lo", "hi")  # metrics.csv's interval columns: <metric>_lo, <metric>_hi


def row_columns(estimates: dict[str, Estimate]) -> dict[str, float]:
    """``name``, ``name_lo``, ``name_hi`` for each metric, in order: the columns of metrics.csv."""
    row = {}
    for name, estimate in estimates.items():
        lo, hi = estimate.interval()
        row |= {name: float(estimate.value), f"{name}_lo": lo, f"{name}_hi": hi}
    return row


def bound_column(columns, column: str, bound: str) -> str:
    """``<column>_<bound>``, the ``lo`` or ``hi`` end of ``column``'s 95% interval, checked to be
    among ``columns`` (a metrics.csv written before the intervals lacks it)."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    name = f"{column}_{bound}"
    if name not in columns:
        raise ValueError(f"metrics.csv has no {name} column (the 95% interval of {column}): it predates the "
                         "intervals; rerun the evaluation (snakemake reruns it)")
    return name


def replicate_rows(estimates: dict[str, Estimate]) -> list[dict]:
    """One row per metric: its name, n, value and the B half-sample replicates r0..r{B-1}."""
    rows = []
    for name, estimate in estimates.items():
        reps = {f"r{b}": float(v) for b, v in enumerate(estimate.replicates)}
        rows.append({"metric": name, "num_samples": estimate.n, "estimate": float(estimate.value)} | reps)
    return rows
