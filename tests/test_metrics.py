"""Metric definitions against exact answers."""

import numpy as np
import pytest

from diffguide import metrics


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


def test_fid_of_a_set_against_itself_is_zero_and_against_shifted_set_is_the_squared_shift():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 8))
    mu, sigma = metrics.feature_statistics(features)
    assert metrics.fid_from_features(features, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean moved by 3 in every coordinate: FID = ||delta mu||^2 = 8 * 9.
    assert metrics.fid_from_features(features + 3.0, mu, sigma) == pytest.approx(72.0, rel=1e-6)


def test_kid_separates_matching_from_shifted_features():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    assert abs(metrics.kid_from_features(a, b)) < 0.05
    assert metrics.kid_from_features(a + 2.0, b) > 1.0


def test_sample_accuracy_counts_requested_classes():
    logits = np.eye(4)[[0, 1, 2, 3, 0]]
    assert metrics.sample_accuracy(logits, np.array([0, 1, 2, 0, 0])) == pytest.approx(0.8)
