"""Inception FID between the default data set's train and test splits: the floor every sample
set is measured against. With 64 images a side the 2048-d covariances have rank 63, so FID is
dominated by its small-sample bias; what must hold is that same-distribution FID is far below
the FID to another data set and barely moves with the subset drawn."""

import numpy as np
import pytest
from cleanfid.fid import frechet_distance

from diffguide.data import prepare_dataset
from diffguide.evaluation.inception import load_inception
from diffguide.evaluation.metrics import feature_statistics

# Inception on a few hundred images: minutes on an AVX2-only CPU, so `make test-slow` runs it.
pytestmark = pytest.mark.slow

N = 64


def fid(a, b):
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


@pytest.fixture(scope="module")
def features():
    inception = load_inception(device="cpu")
    rng = np.random.default_rng(0)
    pools = {}
    for split in ("train", "test"):
        images = prepare_dataset("fashion_mnist", split, 32).images
        pools[split] = inception.features(images[rng.choice(len(images), 2 * N, replace=False)], progress=False)
    digits = prepare_dataset("digits", "train", 32, fit="resize").images
    pools["digits"] = inception.features(digits[rng.choice(len(digits), N, replace=False)], progress=False)
    return pools


def test_fid_train_vs_test_is_small_and_stable_across_seeds(features):
    fids = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        train = features["train"][rng.choice(2 * N, N, replace=False)]
        test = features["test"][rng.choice(2 * N, N, replace=False)]
        fids.append(fid(train, test))
    to_other_data_set = fid(features["train"][:N], features["digits"])
    assert max(fids) < 0.5 * to_other_data_set, (fids, to_other_data_set)
    assert np.std(fids) < 0.1 * np.mean(fids), fids
