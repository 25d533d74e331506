"""The half-sample intervals: the seeded halves, the variance formula, the Wilson interval, and
their coverage on synthetic cases with a known answer."""

import numpy as np
import pytest

from diffguide.evaluation import intervals, metrics
from diffguide.evaluation.intervals import Estimate


def test_halves_are_distinct_sorted_indices_that_depend_on_seed_and_count_only():
    halves = intervals.half_samples(11, seed=3)
    assert halves.shape == (intervals.REPLICATES, 5)
    assert all(len(set(h)) == 5 and list(h) == sorted(h) and h.max() < 11 for h in halves)
    np.testing.assert_array_equal(intervals.half_samples(11, seed=3), halves)  # every row of a run alike
    assert not np.array_equal(intervals.half_samples(11, seed=4), halves)
    assert not np.array_equal(intervals.half_samples(12, seed=3)[:, :5], halves)
    assert len({tuple(h) for h in halves}) > 150  # 462 possible halves: mostly different ones


def test_too_few_samples_for_halves_says_so():
    with pytest.raises(ValueError, match="at least 4 samples"):
        intervals.half_samples(3, seed=0)


@pytest.mark.parametrize("n", [40, 41])
def test_half_sample_se_of_a_mean_is_the_usual_standard_error(n):
    """Without replacement a half's mean has variance s^2/r (n-r)/(n-1); times r/d it is
    s^2/(n-1), s^2 the set's variance: exactly the textbook SE of a mean, sd(ddof=1)/sqrt(n)."""
    x = np.random.default_rng(0).exponential(size=n)
    halves = intervals.half_samples(n, seed=1, replicates=40000)
    se = intervals.jackknife_se(x[halves].mean(1), n)
    assert se == pytest.approx(x.std(ddof=1) / np.sqrt(n), rel=0.02)  # MC error of 40000 halves: 0.7%


def test_wilson_interval_solves_the_score_equation():
    # Wilson's bounds are the p at which |p_hat - p| = z sqrt(p (1 - p) / n).
    for p_hat, n in [(0.3, 50), (0.95, 500), (1.0, 40)]:
        lo, hi = intervals.wilson_interval(p_hat, n)
        for p in (lo, hi):
            assert abs(p_hat - p) == pytest.approx(intervals.Z95 * np.sqrt(p * (1 - p) / n), abs=1e-12)
        assert lo <= p_hat <= hi
    assert intervals.wilson_interval(1.0, 40)[0] < 0.95  # not the degenerate [1, 1] of p_hat -+ z se


def test_an_estimates_interval_is_normal_clipped_or_wilson():
    reps = np.array([1.0, 3.0] * 50)  # var 1, so se = 1 for even n
    assert Estimate(10.0, reps, 100).interval() == pytest.approx((10 - intervals.Z95, 10 + intervals.Z95))
    assert Estimate(1.0, reps, 100, lower=0.0).interval()[0] == 0.0
    assert Estimate(0.5, reps, 100, proportion=True).interval() == intervals.wilson_interval(0.5, 100)
    assert all(np.isnan(Estimate.missing(10).interval()))


def test_row_columns_put_each_interval_beside_its_metric():
    reps = np.zeros(4)
    row = intervals.row_columns({"fid_x": Estimate(2.0, reps, 10), "is_x": Estimate(3.0, reps, 10)})
    assert list(row) == ["fid_x", "fid_x_lo", "fid_x_hi", "is_x", "is_x_lo", "is_x_hi"]
    assert row["fid_x_lo"] == row["fid_x_hi"] == 2.0


# --- coverage on cases with a known answer --------------------------------------------------------
# R repetitions estimate a coverage with binomial standard error sqrt(0.95 * 0.05 / R) = 0.0109 at
# R = 400; the tests accept 0.95 -+ 3 SE, so a correct 95% interval fails them 0.3% of the time
# (and, seeded, never fails twice).
REPETITIONS = 400
TOLERANCE = 3 * np.sqrt(0.95 * 0.05 / REPETITIONS)


def gaussian_case(d: int):
    """Generated features N(mu_1, S_1) against exact reference statistics (mu_2 = 0, S_2 = I)."""
    rng = np.random.default_rng(5)
    mix = np.eye(d) * 0.8 + rng.normal(size=(d, d)) / np.sqrt(d) * 0.5
    return np.full(d, 0.3), mix, np.zeros(d), np.eye(d)


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_fid_interval_covers_the_expected_fid_at_this_sample_size():
    """The interval is for E[FID_n], the FID a set of n samples gives on average against the
    fixed reference (FID_n is biased up from the infinite-sample Frechet distance, roughly like
    1/n; that bias is part of the target, and equal n makes it comparable across rows).
    E[FID_n] comes from 4000 independent sets: its Monte Carlo SE (sd / 63) is 1/120 of the
    interval's width, far too small to move the coverage."""
    n, d = 200, 16
    mu1, mix, mu2, sigma2 = gaussian_case(d)
    rng = np.random.default_rng(0)

    def draw():
        return mu1 + rng.normal(size=(n, d)) @ mix.T

    fids = np.array([metrics.fid_from_features(draw(), mu2, sigma2) for _ in range(4000)])
    target = fids.mean()
    frechet_infinity = float(mu1 @ mu1 + np.trace(mix @ mix.T) + d
                             - 2 * np.sqrt(np.linalg.eigvalsh(mix @ mix.T)).sum())
    assert target - frechet_infinity > 0.5 * fids.std()  # a case where the small-sample bias matters

    covered = naive = 0
    for rep in range(REPETITIONS):
        estimate = metrics.fid_estimate(draw(), mu2, sigma2, seed=rep)
        lo, hi = estimate.interval()
        covered += lo <= target <= hi
        q_lo, q_hi = np.quantile(estimate.replicates, [0.025, 0.975])
        naive += q_lo <= target <= q_hi
    assert abs(covered / REPETITIONS - 0.95) < TOLERANCE, covered / REPETITIONS
    # The halves' own percentiles sit where FID at n/2 lands, further up the bias: they miss.
    assert naive / REPETITIONS < 0.95 - TOLERANCE, naive / REPETITIONS


def test_accuracy_interval_covers_a_known_accuracy():
    """Each sample's class is right with probability p = 0.8 (a Bernoulli with known p)."""
    n, p = 500, 0.8
    rng = np.random.default_rng(1)
    labels = np.arange(n) % 10
    covered = 0
    for rep in range(REPETITIONS):
        predicted = np.where(rng.random(n) < p, labels, (labels + 1) % 10)
        logits = np.eye(10)[predicted]
        if rep == 0:  # the pipeline's accuracy interval is the Wilson interval of its value
            estimate = metrics.logit_estimates(logits, labels, seed=rep)["accuracy"]
            assert estimate.interval() == intervals.wilson_interval(metrics.sample_accuracy(logits, labels), n)
        lo, hi = intervals.wilson_interval(metrics.sample_accuracy(logits, labels), n)
        covered += lo <= p <= hi
    assert abs(covered / REPETITIONS - 0.95) < TOLERANCE, covered / REPETITIONS
