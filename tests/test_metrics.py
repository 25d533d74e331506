"""Metric definitions against exact answers and peer implementations (clean-fid, scikit-learn,
diffguide.evaluation.precision_recall, itself tested against prdc), on all samples and on subsets."""

import numpy as np
import pytest
from cleanfid.fid import frechet_distance, kernel_distance
from sklearn.metrics.pairwise import polynomial_kernel

from diffguide.evaluation import intervals, metrics
from diffguide.evaluation.precision_recall import precision_recall


def test_inception_score_of_a_uniform_predictor_is_one():
    assert metrics.inception_score(np.zeros((50, 10))) == pytest.approx(1.0, abs=1e-12)


def test_inception_score_of_a_perfect_balanced_predictor_is_the_class_count():
    logits = np.full((40, 10), -1e4)
    logits[np.arange(40), np.arange(40) % 10] = 0.0
    assert metrics.inception_score(logits) == pytest.approx(10.0, rel=1e-9)


def test_inception_score_of_a_confident_single_class_predictor_is_one():
    logits = np.full((30, 5), -1e4)
    logits[:, 2] = 0.0
    assert metrics.inception_score(logits) == pytest.approx(1.0, abs=1e-9)


def test_inception_score_of_a_subset_is_the_score_of_its_rows():
    logits = np.random.default_rng(0).normal(size=(30, 6)) * 2
    subsets = np.array([[0, 3, 4, 9, 10], [1, 2, 5, 6, 29]])
    expected = [metrics.inception_score(logits[s]) for s in subsets]
    np.testing.assert_allclose(metrics.inception_scores(logits, subsets), expected, rtol=1e-12)


def test_fid_of_a_set_against_itself_is_zero_and_against_shifted_set_is_the_squared_shift():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 8))
    mu, sigma = metrics.feature_statistics(features)
    assert metrics.fid_from_features(features, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean moved by 3 in every coordinate: FID = ||delta mu||^2 = 8 * 9.
    assert metrics.fid_from_features(features + 3.0, mu, sigma) == pytest.approx(72.0, rel=1e-6)


def _gaussian_pair(n, d, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    reference = rng.normal(size=(4 * d + 100, d)) @ mix + 0.1
    return rng.normal(size=(n, d)) * 1.2 + 0.3, reference


# n > d takes the d x d path, n < d the n x n Gram path. scipy's sqrtm of the singular product
# S_1 S_2 (rank n - 1 < d) is itself only accurate to ~1e-8 relative (an mpmath check at 40
# digits put ours 10x closer), hence the looser tolerance there.
@pytest.mark.parametrize("n, d, rel", [(300, 16, 1e-10), (500, 128, 1e-10), (40, 64, 1e-7), (90, 200, 1e-7)])
def test_fast_fid_equals_clean_fids_frechet_distance(n, d, rel):
    x, reference = _gaussian_pair(n, d)
    mu2, sigma2 = metrics.feature_statistics(reference)
    expected = frechet_distance(*metrics.feature_statistics(x), mu2, sigma2)
    assert metrics.fid_from_features(x, mu2, sigma2) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize("n, d", [(60, 8), (30, 40)])
def test_fid_of_each_subset_equals_clean_fid_on_its_rows(n, d):
    x, reference = _gaussian_pair(n, d, seed=1)
    mu2, sigma2 = metrics.feature_statistics(reference)
    subsets = np.sort(np.random.default_rng(2).permuted(np.tile(np.arange(n), (3, 1)), axis=1)[:, : n // 2], axis=1)
    expected = [frechet_distance(*metrics.feature_statistics(x[s]), mu2, sigma2) for s in subsets]
    np.testing.assert_allclose(metrics.FrechetDistance(x, mu2, sigma2)(subsets), expected, rtol=1e-7)


def test_fid_rejects_features_of_another_dimension():
    with pytest.raises(ValueError, match=r"do not match 4-d reference"):
        metrics.fid_from_features(np.zeros((10, 3)), np.zeros(4), np.eye(4))


@pytest.mark.parametrize("n, n_ref", [(40, 300), (300, 120)])
def test_kid_equals_clean_fids_kernel_distance_given_the_same_subsets(n, n_ref):
    rng = np.random.default_rng(3)
    x, reference = rng.normal(size=(n, 12)) + 0.2, rng.normal(size=(n_ref, 12))
    np.random.seed(7)  # clean-fid draws its subsets from numpy's global generator
    expected = kernel_distance(x, reference, num_subsets=20, max_subset_size=1000)
    ours = metrics.kid_from_features(x, reference, np.random.RandomState(7), num_subsets=20)
    assert ours == pytest.approx(expected, rel=1e-12)


def test_kid_is_repeatable_with_a_seed_and_separates_shifted_features():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))

    def kid(x, seed):
        return metrics.kid_from_features(x, b, np.random.default_rng(seed), num_subsets=20, max_subset_size=150)

    first = kid(a, 5)
    assert kid(a, 5) == first and kid(a, 6) != first
    assert abs(first) < 0.05
    assert kid(a + 2.0, 5) > 1.0


def test_kid_of_subsets_is_the_unbiased_mmd_of_its_rows():
    rng = np.random.default_rng(4)
    x, reference = rng.normal(size=(50, 6)) + 0.5, rng.normal(size=(80, 6))
    subsets = np.array([np.arange(0, 50, 2), np.arange(1, 50, 2)])

    def mmd2(a, b):  # scikit-learn's kernel: (gamma x.y + coef0)^degree
        k = lambda u, v: polynomial_kernel(u, v, degree=3, gamma=1 / u.shape[1], coef0=1)  # noqa: E731
        m, n = len(a), len(b)
        kaa, kbb = k(a, a), k(b, b)
        return ((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                - 2 * k(a, b).mean())

    expected = [mmd2(x[s], reference[:60]) for s in subsets]
    np.testing.assert_allclose(metrics.kid_subsets(x, reference, subsets, max_reference=60), expected, rtol=1e-10)


def test_precision_and_recall_of_subsets_equal_the_k_nn_definition_on_their_rows():
    rng = np.random.default_rng(5)
    reference, x = rng.normal(size=(120, 16)), rng.normal(size=(60, 16)) * 1.1 + 0.4
    everything = metrics.precision_recall_subsets(x, reference, metrics.all_samples(60))
    assert (everything[0][0], everything[1][0]) == tuple(precision_recall(reference[:60], x))
    subsets = np.array([np.arange(30), np.arange(30, 60), np.arange(0, 60, 2)])
    precision, recall = metrics.precision_recall_subsets(x, reference, subsets)
    for b, s in enumerate(subsets):  # the real manifold stays the first 60 reference features
        expected = precision_recall(reference[:60], x[s])
        assert (precision[b], recall[b]) == pytest.approx(tuple(expected), abs=1e-12)
        assert 0 < expected.precision < 1 and 0 < expected.recall < 1  # a case that discriminates


def test_halves_too_small_for_k_nn_radii_say_which_keys_to_raise():
    x = np.random.default_rng(0).normal(size=(7, 4))
    with pytest.raises(ValueError, match=r"more than k = 3 samples .* \(halves of 7 samples\).*at least 8"):
        metrics.precision_recall_subsets(x, x, np.array([[0, 1, 2]]))


def test_sample_accuracy_counts_requested_classes():
    logits = np.eye(4)[[0, 1, 2, 3, 0]]
    assert metrics.sample_accuracy(logits, np.array([0, 1, 2, 0, 0])) == pytest.approx(0.8)


def test_estimates_are_the_metric_on_all_samples_with_its_halves():
    x, reference = _gaussian_pair(40, 6, seed=6)
    mu2, sigma2 = metrics.feature_statistics(reference)
    estimates = metrics.feature_estimates(x, reference, mu2, sigma2, seed=3)
    assert list(estimates) == ["fid", "kid", "precision", "recall"]
    assert estimates["fid"].value == pytest.approx(metrics.fid_from_features(x, mu2, sigma2), rel=1e-12)
    assert estimates["fid"].replicates.shape == (200,) and estimates["precision"].proportion
    assert estimates["fid"].replicates.std() > 0  # halves differ
    again = metrics.feature_estimates(x, reference, mu2, sigma2, seed=3)
    for name in estimates:  # seeded: identical to the last bit
        assert again[name].value == estimates[name].value
        np.testing.assert_array_equal(again[name].replicates, estimates[name].replicates)
    logits = np.eye(4)[np.arange(40) % 4] * 5
    by_logits = metrics.logit_estimates(logits, np.arange(40) % 4, seed=3)
    assert by_logits["accuracy"].value == 1.0 and by_logits["accuracy"].interval()[0] > 0.9
    assert by_logits["is"].value == pytest.approx(metrics.inception_score(logits))


def test_fid_estimate_is_clean_fids_distance_on_all_samples_and_on_each_seeded_half():
    """sFID's estimate: the Frechet distance of all rows, and of each half-sample's rows, to the
    reference statistics (clean-fid's frechet_distance as the oracle), lower bound 0."""
    x, reference = _gaussian_pair(24, 3, seed=9)
    mu2, sigma2 = metrics.feature_statistics(reference)
    estimate = metrics.fid_estimate(x, mu2, sigma2, seed=5)
    assert estimate.value == pytest.approx(frechet_distance(*metrics.feature_statistics(x), mu2, sigma2), rel=1e-9)
    halves = intervals.half_samples(24, 5)
    for row, half in zip(estimate.replicates[:5], halves[:5]):
        assert row == pytest.approx(frechet_distance(*metrics.feature_statistics(x[half]), mu2, sigma2), rel=1e-9)
    assert estimate.n == 24 and estimate.lower == 0.0 and len(estimate.replicates) == len(halves)


def test_each_estimate_carries_its_own_replicates_and_the_bounds_of_its_interval():
    """What the intervals are made from: FID and IS bounded below (0 and 1), KID unbounded (its
    unbiased estimate can be negative), precision and accuracy fractions of the samples (Wilson),
    recall in [0, 1]; each with the metric on every seeded half."""
    x, reference = _gaussian_pair(30, 4, seed=11)
    mu2, sigma2 = metrics.feature_statistics(reference)
    est = metrics.feature_estimates(x, reference, mu2, sigma2, seed=2)
    halves = intervals.half_samples(30, 2)
    kid_rng = intervals.generator(2, 30, intervals.KID_SUBSETS)
    assert est["kid"].value == metrics.kid_from_features(x, reference, kid_rng)
    np.testing.assert_array_equal(est["kid"].replicates, metrics.kid_subsets(x, reference, halves))
    precision, recall = metrics.precision_recall_subsets(x, reference, halves)
    np.testing.assert_array_equal(est["precision"].replicates, precision)
    np.testing.assert_array_equal(est["recall"].replicates, recall)
    whole = metrics.precision_recall_subsets(x, reference, metrics.all_samples(30))
    assert (est["precision"].value, est["recall"].value) == (whole[0][0], whole[1][0])
    kinds = {name: (e.proportion, e.lower, e.upper, e.n) for name, e in est.items()}
    assert kinds == {"fid": (False, 0.0, np.inf, 30), "kid": (False, -np.inf, np.inf, 30),
                     "precision": (True, -np.inf, np.inf, 30), "recall": (False, 0.0, 1.0, 30)}
    logits = np.random.default_rng(4).normal(size=(30, 3))
    labels = np.arange(30) % 3
    by_logits = metrics.logit_estimates(logits, labels, seed=2)
    correct = np.argmax(logits, axis=1) == labels
    assert by_logits["accuracy"].value == correct.mean()
    np.testing.assert_allclose(by_logits["accuracy"].replicates, correct[halves].mean(axis=1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(by_logits["is"].replicates, metrics.inception_scores(logits, halves), rtol=1e-12)
    assert (by_logits["is"].lower, by_logits["is"].proportion, by_logits["accuracy"].proportion) == (1.0, False, True)
    assert list(metrics.logit_estimates(logits, None, seed=2)) == ["is"]


@pytest.mark.parametrize("scale, offset, dtype, k", [(1e-3, 0.0, np.float64, 3), (1.0, 1e4, np.float32, 3),
                                                     (1.0, 0.0, np.float64, 1)])
def test_precision_recall_of_subsets_agree_with_the_reference_at_any_scale_offset_dtype_and_k(scale, offset, dtype, k):
    """Distances below 1 (no floor above 0, the self-distance 0), float32 features far from the
    origin (computed in float64) and k = 1 (not the default 3) give diffguide.evaluation.precision_recall's
    numbers (itself checked against prdc), computed in float64 on the same rows."""
    rng = np.random.default_rng(8)
    reference, x = rng.normal(size=(80, 6)), rng.normal(size=(40, 6)) * 1.2 + 0.3
    reference, x = (reference * scale + offset).astype(dtype), (x * scale + offset).astype(dtype)
    subsets = np.array([np.arange(20), np.arange(20, 40)])
    precision, recall = metrics.precision_recall_subsets(x, reference, subsets, k=k)
    for b, s in enumerate(subsets):
        expected = precision_recall(reference[:40].astype(np.float64), x[s].astype(np.float64), k=k)
        assert (precision[b], recall[b]) == pytest.approx(tuple(expected), abs=1e-12)
    assert 0 < precision.mean() < 1 and 0 < recall.mean() < 1


def test_a_sample_exactly_on_a_real_points_radius_is_inside_the_real_manifold():
    """Improved precision counts closed balls: distance == radius is inside."""
    reference = np.array([[0.0], [1.0], [3.0], [7.0]])  # k = 1 radii: 1, 1, 2, 4
    samples = np.array([[5.0], [11.0], [12.0], [20.0]])  # 5 is exactly radius 2 from 3; 11 exactly 4 from 7
    precision, _ = metrics.precision_recall_subsets(samples, reference, metrics.all_samples(4), k=1)
    assert precision[0] == 0.5


def test_kid_defaults_are_clean_fids_and_large_sets_use_subsets_of_max_subset_size():
    import inspect

    from cleanfid.fid import kernel_distance

    ours = inspect.signature(metrics.kid_from_features).parameters
    theirs = inspect.signature(kernel_distance).parameters
    for name in ("num_subsets", "max_subset_size"):
        assert ours[name].default == theirs[name].default, name
    rng = np.random.default_rng(1)
    x, reference = rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + 0.5
    np.random.seed(4)  # clean-fid draws its subsets from numpy's global generator, reference first
    expected = kernel_distance(x, reference, num_subsets=7, max_subset_size=10)
    np.random.seed(4)
    got = metrics.kid_from_features(x, reference, np.random.mtrand._rand, num_subsets=7, max_subset_size=10)
    assert got == pytest.approx(expected, rel=1e-12)


def test_saturation_is_the_fraction_of_pixels_at_the_clip_bounds_with_a_mean_interval():
    """Per image: pixels at 0 or 255 over all pixels; the estimate is their mean over images, whose
    half-sample interval is a mean's (roughly mean -+ 1.96 sd / sqrt(n))."""
    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, size=(400, 4, 4, 1)).astype(np.uint8)  # no pixel at a bound
    saturated = rng.random((400, 4, 4, 1)) < rng.random((400, 1, 1, 1))  # each image its own rate
    images[saturated & (rng.random(saturated.shape) < 0.5)] = 0
    images[saturated & (images != 0)] = 255
    per_image = metrics.saturated_fraction(images)
    assert np.allclose(per_image, saturated.reshape(400, -1).mean(axis=1))
    estimate = metrics.saturation_estimate(images, seed=0)
    assert estimate.value == pytest.approx(per_image.mean())
    lo, hi = estimate.interval()
    half_width = 1.96 * per_image.std(ddof=1) / np.sqrt(len(per_image))
    assert lo < estimate.value < hi
    assert (hi - lo) / 2 == pytest.approx(half_width, rel=0.25)
