"""Sample-quality metrics, each computable on many subsets of one sample set at once.

Which network produced a number is part of its name: ``fid_classifier`` is the Frechet distance
between the evaluation classifier's penultimate features of samples and of the test split, not
Inception FID. Every sample metric here takes ``subsets`` ([B, m] sample indices) and returns
B values, so the value on all n samples (``all_samples(n)``) and on the half-samples of
``diffguide.evaluation.intervals`` come from one code path. The reference side is always held fixed.

- FID: Heusel et al. 2017, ||mu_1 - mu_2||^2 + tr S_1 + tr S_2 - 2 tr (S_1 S_2)^{1/2}, equal to
  clean-fid's ``frechet_distance`` without its per-call ``sqrtm`` (see ``FrechetDistance``).
- KID: Binkowski et al. 2018, unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, as
  clean-fid's ``kernel_distance`` but with the subsets drawn from a seeded generator.
- IS: Salimans et al. 2016, exp(E_x KL(p(y | x) || p(y))) over the whole set (one split).
- Precision / recall: Kynkaenniemi et al. 2019, k = 3, against as many reference features as
  samples (``diffguide.evaluation.precision_recall`` defines them and is tested against prdc).

One metric measures a classifier rather than samples: ``accuracy_by_t``, the noisy classifier's
test accuracy on x_t per band of t (guidance leans on it at large t).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diffguide.base.runtime import autocast
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.evaluation import intervals
from diffguide.evaluation.intervals import Estimate
from diffguide.evaluation.precision_recall import manifold_radii


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


def all_samples(n: int) -> np.ndarray:
    """The one subset that is the whole set: [[0, 1, ..., n-1]]."""
    return np.arange(n)[None, :]


def _indicator(subsets: np.ndarray, n: int) -> np.ndarray:
    """[B, n] 0/1 matrix, row b marking the samples of subset b (sums over subsets as matmuls)."""
    w = np.zeros((len(subsets), n))
    np.put_along_axis(w, subsets, 1.0, axis=1)
    return w


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples), as clean-fid computes them."""
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance (eigenvalues rounded below zero clipped to 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


class FrechetDistance:
    """FID of subsets of one feature set against fixed reference statistics (mu_2, S_2).

    tr (S_1 S_2)^{1/2} is the sum of the square roots of the eigenvalues of S_1 S_2. With Xc the
    m centred features of a subset and S_1 = Xc^T Xc / (m - 1), those nonzero eigenvalues are
    the eigenvalues of the m x m matrix Xc S_2 Xc^T / (m - 1), and also of the d x d matrix
    S_2^{1/2} S_1 S_2^{1/2}. So each subset costs one symmetric eigendecomposition of size
    min(m, d), not a d x d ``sqrtm``: the m x m form when m < d (Inception's 2048-d features of
    a few hundred samples; X S_2 X^T is computed once, and centring a subset is J G J), the
    d x d form otherwise (S_2^{1/2} computed once).
    """

    CHUNK_BYTES = 1 << 26  # matrices decomposed per batched eigvalsh call

    def __init__(self, features: np.ndarray, reference_mu: np.ndarray, reference_sigma: np.ndarray):
        self.x = np.asarray(features, dtype=np.float64)
        if self.x.ndim != 2 or self.x.shape[1] != len(reference_mu):
            raise ValueError(f"features of shape {self.x.shape} do not match "
                             f"{len(reference_mu)}-d reference statistics")
        self.sigma2 = np.asarray(reference_sigma, dtype=np.float64)
        self.mu2 = np.asarray(reference_mu, dtype=np.float64)
        self._gram = self._z = None

    def _matrices(self, subsets: np.ndarray) -> np.ndarray:
        """[b, k, k], k = min(m, d): matrices whose eigenvalues / (m - 1) are those of S_1 S_2."""
        if subsets.shape[1] < self.x.shape[1]:
            if self._gram is None:
                self._gram = (self.x @ self.sigma2) @ self.x.T
            g = self._gram[subsets[:, :, None], subsets[:, None, :]]
            return g - g.mean(1, keepdims=True) - g.mean(2, keepdims=True) + g.mean((1, 2), keepdims=True)
        if self._z is None:
            self._z = self.x @ _psd_sqrt(self.sigma2)
        z = self._z[subsets]
        z = z - z.mean(1, keepdims=True)
        return np.matmul(z.transpose(0, 2, 1), z)

    def _sqrt_traces(self, subsets: np.ndarray) -> np.ndarray:
        """tr (S_1 S_2)^{1/2} of each subset, in batches of bounded memory."""
        m, d = subsets.shape[1], self.x.shape[1]
        per_call = max(1, self.CHUNK_BYTES // (8 * max(m * d, m * m)))
        out = []
        for start in range(0, len(subsets), per_call):
            eigenvalues = np.linalg.eigvalsh(self._matrices(subsets[start:start + per_call])) / (m - 1)
            out.append(np.sqrt(np.clip(eigenvalues, 0, None)).sum(-1))
        return np.concatenate(out)

    def __call__(self, subsets: np.ndarray) -> np.ndarray:
        m = subsets.shape[1]
        if m < 2:
            raise ValueError("FID needs at least 2 samples per subset (a covariance)")
        w = _indicator(subsets, len(self.x))
        mu1 = w @ self.x / m
        trace1 = (w @ (self.x ** 2).sum(1) - m * (mu1 ** 2).sum(1)) / (m - 1)
        return ((mu1 - self.mu2) ** 2).sum(1) + trace1 + np.trace(self.sigma2) - 2 * self._sqrt_traces(subsets)


def fid_from_features(features: np.ndarray, reference_mu: np.ndarray, reference_sigma: np.ndarray) -> float:
    return float(FrechetDistance(features, reference_mu, reference_sigma)(all_samples(len(features)))[0])


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kid_from_features(features: np.ndarray, reference_features: np.ndarray, rng: np.random.Generator,
                      num_subsets: int = 100, max_subset_size: int = 1000) -> float:
    """KID as clean-fid's ``kernel_distance``: the unbiased MMD^2 averaged over ``num_subsets``
    pairs of subsets of m = min(n, n_ref, max_subset_size) rows each, reference subset drawn
    first. The subsets come from ``rng`` (clean-fid draws them from numpy's global generator,
    so two identical runs differ)."""
    m = min(len(features), len(reference_features), max_subset_size)
    total = 0.0
    for _ in range(num_subsets):
        x = reference_features[rng.choice(len(reference_features), m, replace=False)]
        y = features[rng.choice(len(features), m, replace=False)]
        a = _polynomial_kernel(x, x) + _polynomial_kernel(y, y)
        b = _polynomial_kernel(x, y)
        total += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(total / num_subsets / m)


def kid_subsets(features: np.ndarray, reference_features: np.ndarray, subsets: np.ndarray,
                max_reference: int = 1000) -> np.ndarray:
    """Unbiased MMD^2 of each subset of the samples against the first ``max_reference`` reference
    rows (a seeded random order, so an unbiased subset), from kernels computed once:
    mean_{i != j in S} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i in S, j} k(x_i, y_j)."""
    y = reference_features[:max_reference]
    kxx = _polynomial_kernel(features, features)
    kyy = _polynomial_kernel(y, y)
    yy = (kyy.sum() - np.trace(kyy)) / (len(y) * (len(y) - 1))
    xy = _polynomial_kernel(features, y).mean(1)
    w = _indicator(subsets, len(features))
    m = subsets.shape[1]
    xx = (((w @ kxx) * w).sum(1) - w @ np.diag(kxx)) / (m * (m - 1))
    return xx + yy - 2 * (w @ xy) / m


def inception_scores(logits: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """IS of each subset: exp(mean_i sum_y p(y|x_i) log p(y|x_i) - sum_y p(y) log p(y)), with
    p(y) the subset's mean prediction (the two forms of E KL(p(y|x) || p(y)) agree)."""
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    p = np.exp(log_p)
    w = _indicator(subsets, len(logits)) / subsets.shape[1]
    marginal = w @ p
    neg_entropy = w @ (p * log_p).sum(1)
    return np.exp(neg_entropy - (marginal * np.log(marginal + 1e-30)).sum(1))


def inception_score(logits: np.ndarray) -> float:
    return float(inception_scores(logits, all_samples(len(logits)))[0])


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """As ``precision_recall._squared_distances``: ||a||^2 - 2 a.b + ||b||^2, clamped at 0."""
    return np.maximum((a * a).sum(1)[:, None] - 2.0 * (a @ b.T) + (b * b).sum(1)[None, :], 0.0)


def precision_recall_subsets(features: np.ndarray, reference_features: np.ndarray, subsets: np.ndarray,
                             k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Improved precision and recall (k-NN manifolds) of each subset against the first n reference
    features, n the number of samples, since both manifolds grow with their set's size.

    The real manifold is fixed, so precision is a mean of per-sample indicators. The generated
    manifold is rebuilt from each subset's own k-NN radii: its samples are distinct, so no radius
    collapses to zero as it would for a resample with repeated points."""
    if subsets.shape[1] <= k:
        raise ValueError(f"precision and recall need more than k = {k} samples per subset for their k-NN radii, "
                         f"got {subsets.shape[1]} (halves of {len(features)} samples): raise sampling.num_samples "
                         f"and evaluation.inception_samples to at least {2 * k + 2}")
    real = np.asarray(reference_features[:len(features)], dtype=np.float64)
    fake = np.asarray(features, dtype=np.float64)
    d_real_fake = _squared_distances(real, fake)
    inside_real = (d_real_fake <= manifold_radii(real, k)[:, None] ** 2).any(0).astype(np.float64)
    d_fake = _squared_distances(fake, fake)
    np.fill_diagonal(d_fake, 0.0)
    precision = _indicator(subsets, len(fake)) @ inside_real / subsets.shape[1]
    recall = np.empty(len(subsets))
    for b, s in enumerate(subsets):
        radii2 = np.partition(d_fake[np.ix_(s, s)], k, axis=1)[:, k]  # k-th neighbour, itself the 0-th
        recall[b] = (d_real_fake[:, s] <= radii2[None, :]).any(1).mean()
    return precision, recall


def sample_accuracy(logits: np.ndarray, requested_labels: np.ndarray) -> float:
    """Fraction of samples that the evaluation classifier assigns to the class they were asked for."""
    return float(np.mean(np.argmax(logits, axis=1) == requested_labels))


def _estimate(values_of, n: int, halves: np.ndarray, **kind) -> Estimate:
    """A metric on all n samples and on every half, from one function of subsets."""
    return Estimate(float(values_of(all_samples(n))[0]), values_of(halves), n, **kind)


def feature_estimates(features: np.ndarray, reference_features: np.ndarray, reference_mu: np.ndarray,
                      reference_sigma: np.ndarray, seed: int) -> dict[str, Estimate]:
    """FID, KID, precision and recall of one sample set's features, each with its half-samples."""
    n = len(features)
    halves = intervals.half_samples(n, seed)
    kid_rng = intervals.generator(seed, n, intervals.KID_SUBSETS)
    pr_all = precision_recall_subsets(features, reference_features, all_samples(n))
    pr_halves = precision_recall_subsets(features, reference_features, halves)
    return {
        "fid": _estimate(FrechetDistance(features, reference_mu, reference_sigma), n, halves, lower=0.0),
        "kid": Estimate(kid_from_features(features, reference_features, kid_rng),
                        kid_subsets(features, reference_features, halves), n),
        "precision": Estimate(float(pr_all[0][0]), pr_halves[0], n, proportion=True),
        "recall": Estimate(float(pr_all[1][0]), pr_halves[1], n, lower=0.0, upper=1.0),
    }


def fid_estimate(features: np.ndarray, reference_mu: np.ndarray, reference_sigma: np.ndarray, seed: int) -> Estimate:
    """FID alone with its half-samples (sFID's spatial features have no other metric)."""
    n = len(features)
    return _estimate(FrechetDistance(features, reference_mu, reference_sigma), n, intervals.half_samples(n, seed),
                     lower=0.0)


def logit_estimates(logits: np.ndarray, labels: np.ndarray | None, seed: int) -> dict[str, Estimate]:
    """IS (and, given the requested labels, sample accuracy) with their half-samples."""
    n = len(logits)
    halves = intervals.half_samples(n, seed)
    out = {"is": _estimate(lambda s: inception_scores(logits, s), n, halves, lower=1.0)}
    if labels is not None:
        correct = (np.argmax(logits, axis=1) == np.asarray(labels)).astype(np.float64)
        out["accuracy"] = _estimate(lambda s: _indicator(s, n) @ correct / s.shape[1], n, halves, proportion=True)
    return out


def saturated_fraction(images_uint8: np.ndarray) -> np.ndarray:
    """Per image, the fraction of its pixels at the clip bounds, 0 or 255 (x0 at -1 or 1 before
    quantisation): the oversaturation that strong guidance causes (Sadat et al. 2024, sec. 1; Lin et
    al. 2023, sec. 3.4), measured on the samples themselves. Real images have some (Fashion-MNIST's
    black background): compare with the test split's value, not with 0."""
    flat = np.asarray(images_uint8).reshape(len(images_uint8), -1)
    return ((flat == 0) | (flat == 255)).mean(axis=1)


def saturation_estimate(images_uint8: np.ndarray, seed: int) -> Estimate:
    """Mean saturated fraction of the samples (``saturated_fraction``), with its half-samples: a
    sample mean, so its interval is the standard error of a mean (diffguide.evaluation.intervals), paired
    with every other row's by sample index like the other metrics."""
    return sample_mean_estimate(saturated_fraction(images_uint8), seed, lower=0.0, upper=1.0)


def sample_mean_estimate(values: np.ndarray, seed: int, **bounds) -> Estimate:
    """The mean of one number per sample, with its half-samples (so its interval is the standard
    error of a mean, diffguide.evaluation.intervals), paired with every other row's by sample index.
    ``bounds``: the range the interval is kept in (lower=, upper=)."""
    n = len(values)
    values = np.asarray(values, dtype=np.float64)
    return _estimate(lambda s: _indicator(s, n) @ values / s.shape[1], n, intervals.half_samples(n, seed), **bounds)


def displacement_estimate(displacement: np.ndarray, seed: int) -> Estimate:
    """Mean guidance displacement of the samples (diffguide.guidance.displacement: each sample's RMS
    of eps_guided - eps(x_t, y) over its chain), with its half-samples: how strongly a method guided,
    whatever its scale is called; the testbed matches methods by it (issue 29)."""
    return sample_mean_estimate(displacement, seed, lower=0.0)


def cosine_to_reference(features: np.ndarray, reference_features: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's features with its own reference's (row i with row i)."""
    a = features / np.linalg.norm(features, axis=1, keepdims=True)
    b = reference_features / np.linalg.norm(reference_features, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def reference_similarity_estimate(features: np.ndarray, reference_features: np.ndarray, seed: int) -> Estimate:
    """Mean cosine similarity of the samples to their references (similarity guidance by image,
    issue 14), in [-1, 1], with its half-samples: a sample mean, so its interval is the usual
    standard error of a mean (see diffguide.evaluation.intervals)."""
    return sample_mean_estimate(cosine_to_reference(features, reference_features), seed, lower=-1.0, upper=1.0)


def t_bands(timesteps: int, bands: int = 4) -> list[tuple[int, int]]:
    """[lo, hi) bands splitting {0..T-1} into equal parts: [0,250), [250,500), ... for T = 1000."""
    edges = [round(i * timesteps / bands) for i in range(bands + 1)]
    return list(zip(edges[:-1], edges[1:]))


@torch.no_grad()
def accuracy_by_t(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule,
                  device: torch.device, *, bands: int = 4, per_band: int = 2000, seed: int = 0,
                  batch_size: int = 500, precision: str = "fp32") -> dict[str, float]:
    """Accuracy of p_phi(y | x_t, t) on x_t = q_sample(x_0, t), t uniform within each band, keyed
    "lo-hi" (inclusive). Guidance leans on the classifier at large t, where the mean accuracy over
    all t hides how close to chance it is. Up to ``per_band`` images per band; the subset, t and
    noise come from a CPU generator seeded by ``seed``, so the numbers repeat on any device."""
    classifier.eval()
    generator = torch.Generator().manual_seed(seed)
    n = min(per_band, len(images))
    result = {}
    for lo, hi in t_bands(schedule.timesteps, bands):
        pick = torch.randperm(len(images), generator=generator)[:n]
        t = torch.randint(lo, hi, (n,), generator=generator)
        noise = torch.randn((n, *images.shape[1:]), generator=generator)
        correct = 0
        for s in range(0, n, batch_size):
            x0, t_b = images[pick[s:s + batch_size]].to(device), t[s:s + batch_size].to(device)
            with autocast(device, precision):
                logits = classifier(schedule.q_sample(x0, t_b, noise[s:s + batch_size].to(device)), t_b)
            correct += (logits.argmax(1).cpu() == labels[pick[s:s + batch_size]]).sum().item()
        result[f"{lo}-{hi - 1}"] = correct / n
    return result
