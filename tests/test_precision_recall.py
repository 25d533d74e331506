"""Improved precision and recall against the prdc package (peer oracle) and exact answers."""

import re

import numpy as np
import pytest
from prdc import compute_prdc
from prdc.prdc import compute_nearest_neighbour_distances

from diffguide.evaluation.precision_recall import manifold_radii, precision_recall


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


def concentrated_pair():
    """Equal sizes, generated set on a third of the real support. Real {0, 1, ..., 9}: 3rd-neighbour
    radii 3, 2, ..., 2, 3, so the real manifold is [-3, 12] and holds every generated point:
    precision 1. Generated {0, 0.5, ..., 4.5}: radii 1.5 at the ends, 1 inside, so its manifold is
    [-1.5, 6] and holds the real points 0 .. 6: recall 7/10. The real point 6 lies exactly on the
    radius of the generated point 4.5 (all these numbers are exact in binary): the closed ball
    (guided-diffusion's ``<=``) counts it."""
    real = np.arange(10.0)[:, None]
    fake = np.arange(10.0)[:, None] / 2
    return real, fake


def test_a_generated_set_on_part_of_the_real_support_has_precision_one_and_recall_below():
    real, fake = concentrated_pair()
    np.testing.assert_array_equal(manifold_radii(real), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])
    np.testing.assert_array_equal(manifold_radii(fake), [1.5] + [1.0] * 8 + [1.5])
    assert precision_recall(real, fake) == (1.0, 0.7)
    assert precision_recall(real, fake, batch_size=3) == (1.0, 0.7)
    assert precision_recall(fake, real) == (0.7, 1.0)  # the roles swapped swap the two


def test_equal_size_subset_precision_and_recall_are_not_swapped():
    """metrics.precision_recall_subsets (the first n reference features against n samples) on the
    same case: precision 1 and recall 0.7, and on a subset the generated manifold is the subset's."""
    from diffguide.evaluation.metrics import all_samples, precision_recall_subsets

    real, fake = concentrated_pair()
    reference = np.concatenate([real, np.full((5, 1), 100.0)])  # rows past n are not used
    precision, recall = precision_recall_subsets(fake, reference, all_samples(10))
    assert (precision[0], recall[0]) == (1.0, 0.7)
    # The subset {0, 1, 1.5, 2.5, 3.5} (indices 0, 2, 3, 5, 7) has its own 3rd-neighbour radii
    # 2.5, 1.5, 1.5, 1.5, 2.5, so its manifold is [-2.5, 6]: real 0 .. 6, recall 0.7 (the whole
    # set's radii 1.5, 1, 1, 1, 1 would reach only 4.5: 0.5). The subset {0, 0.5, 1, 1.5, 2}
    # (indices 0 .. 4): radii 1.5, 1, 1, 1, 1.5, manifold [-1.5, 3.5], real 0 .. 3: recall 0.4.
    precision, recall = precision_recall_subsets(fake, reference, np.array([[0, 2, 3, 5, 7], [0, 1, 2, 3, 4]]))
    assert list(precision) == [1.0, 1.0] and list(recall) == [0.7, 0.4]
    # Far generated points: precision counts them out, per subset.
    shifted = fake.copy()
    shifted[[1, 3]] += 20  # 20.5 and 21.5, outside [-3, 12]
    precision, _ = precision_recall_subsets(shifted, reference, np.array([[0, 1, 2, 3, 4], [0, 2, 4, 5, 6]]))
    assert list(precision) == [0.6, 1.0]


@pytest.mark.parametrize("scale", [1 / 8, 8.0])
def test_precision_and_recall_do_not_depend_on_the_units(scale):
    """Scaling both sets by a power of two keeps every comparison exact: the same (1, 0.7), and
    radii scaled by the same factor (squared distances below 1 are kept, not clamped)."""
    real, fake = concentrated_pair()
    np.testing.assert_array_equal(manifold_radii(real * scale), manifold_radii(real) * scale)
    assert precision_recall(real * scale, fake * scale) == (1.0, 0.7)
    assert precision_recall(real * scale, fake * scale, batch_size=4) == (1.0, 0.7)


def test_features_are_compared_in_float64_whatever_their_dtype():
    """Points 10000, 10000.5, ...: exact in float32, but ||a||^2 - 2 a.b + ||b||^2 in float32
    loses everything below 1e8 * 6e-8 ~ 8; in float64 the answers are the unshifted ones."""
    real, fake = concentrated_pair()
    far_real, far_fake = (real + 10000).astype(np.float32), (fake + 10000).astype(np.float32)
    np.testing.assert_array_equal(manifold_radii(far_real), manifold_radii(real))
    assert precision_recall(far_real, far_fake) == (1.0, 0.7)


def test_k_1_is_the_nearest_neighbour():
    real, fake = concentrated_pair()
    np.testing.assert_array_equal(manifold_radii(real, k=1), np.ones(10))
    # Real manifold [-1, 10] holds every generated point; generated radii 0.5: [-0.5, 5], real 0 .. 5.
    assert precision_recall(real, fake, k=1) == (1.0, 0.6)
    with pytest.raises(ValueError, match=r"^need 1 <= k < number of features, got k=0, n=10$"):
        manifold_radii(real, k=0)


def test_bad_inputs_are_named():
    real, fake = concentrated_pair()
    with pytest.raises(ValueError, match=r"^need 1 <= k < number of features, got k=3, n=3$"):
        manifold_radii(np.zeros((3, 2)), k=3)
    with pytest.raises(ValueError, match="^" + re.escape("expected [N, D] features, got shape (10,)") + "$"):
        precision_recall(real[:, 0], fake)
    with pytest.raises(ValueError, match=r"^feature sizes differ: 1 and 2$"):
        precision_recall(real, np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"^real_radii must have one radius per real feature$"):
        precision_recall(real, fake, real_radii=np.ones(9))
