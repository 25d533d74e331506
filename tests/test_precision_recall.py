"""Improved precision and recall against the prdc package (peer oracle) and exact answers."""

import numpy as np
import pytest
from prdc import compute_prdc
from prdc.prdc import compute_nearest_neighbour_distances

from diffguide.precision_recall import manifold_radii, precision_recall


def _pair(seed, n_real, n_fake, dim, shift, scale):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(size=(n_fake, dim)) * scale + shift
    return real, fake


CASES = [  # (seed, n_real, n_fake, dim, shift, scale): precision and recall strictly between 0 and 1
    (8, 300, 250, 8, 0.7, 1.0),
    (32, 200, 320, 32, 0.3, 1.1),
    (256, 150, 150, 256, 0.3, 1.0),
    (2048, 257, 131, 2048, 0.1, 1.0),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch_size", [4096, 37])
def test_precision_and_recall_equal_prdc(case, batch_size, capsys):
    real, fake = _pair(*case)
    expected = compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    ours = precision_recall(real, fake, k=3, batch_size=batch_size)
    assert 0.0 < ours.precision < 1.0 and 0.0 < ours.recall < 1.0  # a case that discriminates
    assert ours.precision == pytest.approx(expected["precision"], abs=1e-9)
    assert ours.recall == pytest.approx(expected["recall"], abs=1e-9)


@pytest.mark.parametrize("batch_size", [4096, 7, 2])
def test_radii_are_the_kth_neighbour_distance_as_in_prdc(batch_size):
    real, _ = _pair(4, 101, 1, 16, 0.0, 1.0)
    expected = compute_nearest_neighbour_distances(real, nearest_k=3)
    np.testing.assert_allclose(manifold_radii(real, k=3, batch_size=batch_size), expected, rtol=1e-9)


def test_passing_the_real_radii_gives_the_same_answer():
    real, fake = _pair(5, 120, 90, 16, 0.5, 1.0)
    radii = manifold_radii(real, k=3)
    assert precision_recall(real, fake, real_radii=radii) == precision_recall(real, fake)


def test_hand_computed_one_dimensional_case():
    # Real {0,1,2,3,4}: 3rd-neighbour distances 3,2,2,2,3, so the real manifold is [-3, 7].
    # Fake {-5,-2.5,6.5,7.5,10}: -2.5 and 6.5 are inside -> precision 2/5. The fake radii
    # (12.5, 10, 9, 10, 12.5) cover every real point -> recall 1.
    real = np.array([0.0, 1, 2, 3, 4])[:, None]
    fake = np.array([-5.0, -2.5, 6.5, 7.5, 10])[:, None]
    np.testing.assert_allclose(manifold_radii(real), [3, 2, 2, 2, 3])
    np.testing.assert_allclose(manifold_radii(fake), [12.5, 10, 9, 10, 12.5])
    assert precision_recall(real, fake) == (pytest.approx(0.4), pytest.approx(1.0))
    # Swapping the roles swaps precision and recall.
    assert precision_recall(fake, real) == (pytest.approx(1.0), pytest.approx(0.4))


def test_identical_sets_have_precision_and_recall_one():
    real, _ = _pair(6, 200, 1, 64, 0.0, 1.0)
    assert precision_recall(real, real.copy(), batch_size=33) == (1.0, 1.0)


def test_far_apart_sets_have_precision_and_recall_zero():
    real, fake = _pair(7, 200, 180, 64, 100.0, 1.0)
    assert precision_recall(real, fake, batch_size=50) == (0.0, 0.0)


def test_k_must_be_smaller_than_the_set():
    with pytest.raises(ValueError):
        manifold_radii(np.zeros((3, 2)), k=3)
