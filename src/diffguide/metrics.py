"""Sample-quality metrics on the evaluation classifier's outputs.

Which network produced a number is part of its name: ``fid_classifier`` is the Frechet distance
between the evaluation classifier's penultimate features of samples and of the test split, not
Inception FID. The Frechet and kernel distances are clean-fid's own functions.
"""

from __future__ import annotations

import numpy as np
import torch
from cleanfid.fid import frechet_distance, kernel_distance
from torch import nn


@torch.no_grad()
def classifier_outputs(classifier: nn.Module, images_uint8: np.ndarray, device, batch_size: int = 500):
    """Penultimate features (float64) and logits of uint8 NHWC images, fed in [-1, 1] NCHW."""
    features, logits = [], []
    for start in range(0, len(images_uint8), batch_size):
        batch = torch.from_numpy(images_uint8[start:start + batch_size]).to(device)
        x = batch.permute(0, 3, 1, 2).float() / 127.5 - 1
        feats = classifier.features(x)
        features.append(feats.double().cpu())
        logits.append(classifier.fc(feats).double().cpu())
    return torch.cat(features).numpy(), torch.cat(logits).numpy()


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples), as clean-fid computes them."""
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def fid_from_features(features: np.ndarray, reference_mu: np.ndarray, reference_sigma: np.ndarray) -> float:
    mu, sigma = feature_statistics(features)
    return float(frechet_distance(mu, sigma, reference_mu, reference_sigma))


def kid_from_features(features: np.ndarray, reference_features: np.ndarray) -> float:
    """Kernel distance (Binkowski et al. 2018), unbiased for small sample counts."""
    return float(kernel_distance(features, reference_features, num_subsets=100,
                                 max_subset_size=min(1000, len(features), len(reference_features))))


def inception_score(logits: np.ndarray) -> float:
    """IS = exp(E_x KL(p(y | x) || p(y))) over the whole set (one split)."""
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    p = np.exp(log_p)
    log_marginal = np.log(p.mean(axis=0) + 1e-30)
    return float(np.exp(np.mean(np.sum(p * (log_p - log_marginal), axis=1))))


def precision_recall_equal_sizes(features: np.ndarray, reference_features: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision / recall (k-NN manifolds, k = 3 as guided-diffusion's evaluator) against
    as many reference features as samples, since both manifolds grow with their set's size."""
    from .precision_recall import precision_recall

    n = min(len(features), len(reference_features))
    result = precision_recall(reference_features[:n], features[:n], k=k)
    return result.precision, result.recall


def sample_accuracy(logits: np.ndarray, requested_labels: np.ndarray) -> float:
    """Fraction of samples that the evaluation classifier assigns to the class they were asked for."""
    return float(np.mean(np.argmax(logits, axis=1) == requested_labels))
