"""An exact diffusion model: a Gaussian mixture with one component per class, in closed form.

Data: p(x_0 | y = k) = N(m_k, C_k), p(y = k) = pi_k, in any dimension d, float64 throughout.
Under the forward process x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM eq. 4) every
component stays Gaussian:

    p_t(x | y = k) = N(sqrt(abar_t) m_k,  S_k(t)),   S_k(t) = abar_t C_k + (1 - abar_t) I,

so the score, the optimal noise predictor (D&N eq. 11, exact here)

    eps*(x_t, t, y) = -sqrt(1 - abar_t) grad_x log p_t(x_t | y)      (y = None / NULL_LABEL: p_t(x_t))

and the Bayes classifier log p_t(y | x_t) = log pi_y + log p_t(x_t | y) - log p_t(x_t) are all
known exactly. With C_k = U_k diag(lam_k) U_k^T (eigendecomposition, once), S_k(t) has the same
eigenvectors and eigenvalues abar_t lam_k + 1 - abar_t, so no per-timestep factorisation is needed
and every operation is elementwise or a small d x d product: cheap, batch-size invariant, and
differentiable by torch autograd (the classifier gradient of guidance.classifier_log_prob_grad).

These are the ground truth against which guidance identities (D&N eqs. 11-14, H&S eq. 6)
and samplers are tested, and the model of the 2-D figure (H&S Figure 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.wrappers import NULL_LABEL


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Clean data distribution: ``means`` [K, d], ``covs`` [K, d, d] (symmetric positive definite),
    ``weights`` [K] (class prior p(y), normalised on construction). All float64."""

    means: torch.Tensor
    covs: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        means = torch.as_tensor(self.means, dtype=torch.float64)
        covs = torch.as_tensor(self.covs, dtype=torch.float64)
        weights = torch.as_tensor(self.weights, dtype=torch.float64)
        k, d = means.shape
        if covs.shape != (k, d, d) or weights.shape != (k,):
            raise ValueError(f"expected covs [{k}, {d}, {d}] and weights [{k}], got {tuple(covs.shape)} "
                             f"and {tuple(weights.shape)}")
        eigvals, eigvecs = torch.linalg.eigh(0.5 * (covs + covs.transpose(-1, -2)))
        if (eigvals <= 0).any():
            raise ValueError("every component covariance must be positive definite")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)
        object.__setattr__(self, "weights", weights / weights.sum())
        object.__setattr__(self, "eigvals", eigvals)  # [K, d]
        object.__setattr__(self, "eigvecs", eigvecs)  # [K, d, d], columns are eigenvectors

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # ------------------------------------------------------------------ noised components

    def component_log_prob_and_score(self, x: torch.Tensor, abar: torch.Tensor):
        """log N(x; sqrt(abar) m_k, S_k) [B, K] and its score -S_k^{-1}(x - sqrt(abar) m_k) [B, K, d]
        for x [B, d] and abar [B, 1] (abar = 1 is the clean data)."""
        centred = x[:, None, :] - abar.sqrt()[:, :, None] * self.means[None]  # [B, K, d]
        var = abar[:, :, None] * self.eigvals[None] + (1 - abar[:, :, None])  # [B, K, d]
        z = torch.einsum("bki,kij->bkj", centred, self.eigvecs)  # coordinates in the eigenbasis
        log_prob = -0.5 * ((z**2 / var).sum(-1) + var.log().sum(-1) + self.dim * math.log(2 * math.pi))
        score = -torch.einsum("bkj,kij->bki", z / var, self.eigvecs)
        return log_prob, score

    def log_joint(self, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p_t(x | k), [B, K]: the classifier's logits up to a per-row constant."""
        log_prob, _ = self.component_log_prob_and_score(x, abar)
        return self.weights.log()[None] + log_prob

    def score(self, x: torch.Tensor, abar: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """grad_x log p_t(x | y) [B, d]; rows with y = None or NULL_LABEL get the marginal score
        sum_k p_t(k | x) grad_x log p_t(x | k)."""
        log_prob, scores = self.component_log_prob_and_score(x, abar)
        resp = torch.softmax(self.weights.log()[None] + log_prob, dim=-1)  # p_t(k | x)
        marginal = (resp[:, :, None] * scores).sum(1)
        if y is None:
            return marginal
        y = y.to(x.device).long()
        conditional = scores[torch.arange(len(x), device=x.device), y.clamp(min=0)]
        return torch.where((y == NULL_LABEL)[:, None], marginal, conditional)

    # ------------------------------------------------------------------ clean data

    def log_prob(self, x: torch.Tensor, y: int | None = None) -> torch.Tensor:
        """Clean log density log p(x_0) (y None) or log p(x_0 | y) at points x [..., d]: for contours."""
        flat = x.reshape(-1, self.dim).to(torch.float64)
        abar = torch.ones(len(flat), 1, dtype=torch.float64)
        log_prob, _ = self.component_log_prob_and_score(flat, abar)
        out = torch.logsumexp(self.weights.log()[None] + log_prob, -1) if y is None else log_prob[:, y]
        return out.reshape(x.shape[:-1])

    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact draws x_0 ~ N(m_y, C_y), one per label."""
        labels = labels.long()
        noise = torch.randn(len(labels), self.dim, generator=generator, dtype=torch.float64)
        root = self.eigvecs * self.eigvals.sqrt()[:, None, :]  # U diag(sqrt(lam)): root root^T = C
        return self.means[labels] + torch.einsum("bij,bj->bi", root[labels], noise)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> [B, d] in float64 on the CPU, where the mixture's tables live (differentiable)."""
    return x.reshape(len(x), -1).to(device="cpu", dtype=torch.float64)


class MixtureEpsModel(nn.Module):
    """The optimal noise predictor of a GaussianMixture (D&N eq. 11), under the project contract
    ``eps = model(x_t, t, y)``: t holds integer timesteps of ``schedule`` (t = -1 is clean data),
    y = None or NULL_LABEL rows are unconditional, so ClassifierFreeGuidance's batched [y, null]
    call works row by row:

        eps*(x_t, t, y) = -sqrt(1 - abar_t) grad_x log p_t(x_t | y).

    Computed in float64 on the CPU and returned in x's dtype, device and shape (x is [B, d] or
    [B, ...] with d entries).
    """

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule):
        super().__init__()
        self.mixture, self.schedule = mixture, schedule
        self.num_classes = len(mixture.weights)  # its classes, as a class-conditional EpsUNet carries them

    def forward(self, x, t, y=None):
        flat = _flat(x)
        abar = self.schedule.abar(t, flat)
        eps = -(1 - abar).sqrt() * self.mixture.score(flat, abar, y)
        return eps.reshape(x.shape).to(device=x.device, dtype=x.dtype)


class MixtureClassifier(nn.Module):
    """The Bayes classifier of a GaussianMixture at noise level t: ``logits = classifier(x_t, t)``
    with log_softmax(logits) = log p_t(y | x_t) exactly (logits = log pi_y + log p_t(x_t | y)).
    Differentiable by autograd, in float64, so guidance.classifier_log_prob_grad gives
    grad_x log p_t(y | x_t) = grad log p_t(x_t | y) - grad log p_t(x_t) (D&N eq. 12)."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule):
        super().__init__()
        self.mixture, self.schedule = mixture, schedule

    def forward(self, x, t):
        flat = _flat(x)
        return self.mixture.log_joint(flat, self.schedule.abar(t, flat)).to(x.device)

    def log_prob_grad(self, x, t, y):
        """Closed-form grad_x log p_t(y | x_t) in x's shape (an autograd-free reference)."""
        flat = _flat(x)
        abar = self.schedule.abar(t, flat)
        grad = self.mixture.score(flat, abar, y) - self.mixture.score(flat, abar, None)
        return grad.reshape(x.shape).to(device=x.device, dtype=x.dtype)



class CleanMixtureClassifier(MixtureClassifier):
    """The Bayes classifier of the clean data, ``logits = classifier(x_0)`` with log_softmax(logits)
    = log p(y | x_0): what training-free guidance's clean guide classifier f(y | x_0) is, exactly
    (the schedule's abar at t = -1 is 1: no noise)."""

    def forward(self, x, t=None):
        return super().forward(x, torch.full((len(x),), -1, device=x.device))

def random_mixture(num_classes: int, dim: int, generator: torch.Generator, spread: float = 1.5,
                   min_var: float = 0.05) -> GaussianMixture:
    """A random well-conditioned mixture for tests: means ~ N(0, spread^2 I), covariances
    A A^T / d + min_var I, weights ~ U(0.5, 1.5) (normalised)."""
    means = spread * torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
    a = torch.randn(num_classes, dim, dim, generator=generator, dtype=torch.float64) * 0.6
    covs = a @ a.transpose(-1, -2) / dim + min_var * torch.eye(dim, dtype=torch.float64)
    weights = 0.5 + torch.rand(num_classes, generator=generator, dtype=torch.float64)
    return GaussianMixture(means, covs, weights)


def three_class_mixture() -> GaussianMixture:
    """The 2-D mixture of the H&S Figure 2 replication: three overlapping anisotropic Gaussians,
    one per class, at the corners of a triangle, equal weights."""
    means = torch.tensor([[-1.0, -0.6], [1.0, -0.6], [0.0, 1.0]], dtype=torch.float64)
    covs = torch.tensor([[[0.45, 0.15], [0.15, 0.30]],
                         [[0.45, -0.15], [-0.15, 0.30]],
                         [[0.30, 0.0], [0.0, 0.45]]], dtype=torch.float64)
    return GaussianMixture(means, covs, torch.ones(3, dtype=torch.float64))
