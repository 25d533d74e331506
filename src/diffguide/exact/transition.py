"""The exact reverse transition of a Gaussian-mixture diffusion, in closed form (issue 28).

One step t -> t' (t' < t; abar_{t'} = 1 after the last step) of the generalized sampler (DDIM eq. 12)
with any sigma_t (seed eq. 1.24) draws, given x_0,

    q_sigma(x_{t'} | x_t, x_0) = N(a x_0 + b x_t, sigma_t^2 I),
    a = sqrt(abar_{t'}) - sqrt(1 - abar_{t'} - sigma_t^2) sqrt(abar_t / (1 - abar_t)),
    b = sqrt((1 - abar_{t'} - sigma_t^2) / (1 - abar_t)),

and every such step keeps the marginals p_{t'} (DDIM sec. 4.1). At sigma_t^2 = beta~_t (DDPM eq. 7,
respaced) it is the forward process's own posterior q(x_{t'} | x_t, x_0). The exact reverse step
averages it over the clean data the noisy point can have come from:

    p(x_{t'} | x_t, y) = int q_sigma(x_{t'} | x_t, x_0) p(x_0 | x_t, y) dx_0.

For a mixture, p(x_0 | x_t, y) is a mixture of the components' Gaussian posteriors (Bayes with the
linear-Gaussian forward step). In C_k's eigenbasis (eigenvalues lam, v = abar_t lam + 1 - abar_t):

    p(x_0 | x_t, k) = N(m_k + sqrt(abar_t) C_k S_k^-1 (x_t - sqrt(abar_t) m_k),  (1 - abar_t) C_k S_k^-1),
    weights p_t(k | x_t, y)  (labelled_mixture),

so the exact transition is the Gaussian mixture

    p(x_{t'} | x_t, y) = sum_k p_t(k | x_t, y) N(a mu_k(x_t) + b x_t,  a^2 V_k + sigma_t^2 I).   (GaussianSum)

y = None gives the unconditional twin p(x_{t'} | x_t). Only for the Markov step (sigma_t^2 = beta~_t)
does the seed's identity p(x_{t'} | x_t, y) = p(x_{t'} | x_t) p(y | x_{t'}) / p(y | x_t) hold
(eqs. 1.1-1.4, whose step 1.3 needs the forward step to be Markov); tests/test_exact_transition.py
checks both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffguide.diffusion.schedules import step_coefficients as schedule_coefficients
from diffguide.exact.gaussian_mixture import GaussianMixture
from diffguide.exact.labelled_mixture import LabelledMixture


def float64_scalar(value) -> torch.Tensor:
    """A float, list or tensor as a float64 tensor: the dtype every exact computation keeps."""
    return torch.as_tensor(value, dtype=torch.float64)


def ddpm_sigma2(abar_t, abar_next) -> torch.Tensor:
    """beta~_t = (1 - abar_{t'}) / (1 - abar_t) * (1 - abar_t / abar_{t'}): the Markov posterior's
    variance (DDPM eq. 7 with the respaced beta_t), DDIM eq. 16 at eta = 1."""
    return schedule_coefficients(float64_scalar(abar_t), float64_scalar(abar_next))["beta_tilde"]


def step_coefficients(abar_t, abar_next, sigma2) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of the generalized step's mean a x_0 + b x_t (DDIM eq. 12 with x_0 in place of x0_hat)."""
    abar_t, abar_next, sigma2 = float64_scalar(abar_t), float64_scalar(abar_next), float64_scalar(sigma2)
    if not 0 < abar_t < 1 or not abar_t < abar_next <= 1:
        raise ValueError(f"a step needs 0 < abar_t < abar_t' <= 1, got {float(abar_t)} -> {float(abar_next)}")
    if not 0 <= sigma2 <= 1 - abar_next:
        raise ValueError(f"sigma_t^2 must lie in [0, 1 - abar_t'] = [0, {float(1 - abar_next):.4g}], got "
                         f"{float(sigma2):.4g}")
    direction = (1 - abar_next - sigma2).sqrt()
    return abar_next.sqrt() - direction * (abar_t / (1 - abar_t)).sqrt(), direction / (1 - abar_t).sqrt()


def x0_posterior(mixture: GaussianMixture, x_t: torch.Tensor, abar_t) -> tuple[torch.Tensor, torch.Tensor]:
    """Each component's Gaussian posterior p(x_0 | x_t, k): means [B, K, d] and covariances [K, d, d]
    (the same for every x_t: the forward step is linear-Gaussian)."""
    abar = float64_scalar(abar_t)
    lam, u = mixture.eigvals, mixture.eigvecs                                # [K, d], [K, d, d]
    v = abar * lam + 1 - abar                                                 # eigenvalues of S_k(t)
    centred = x_t[:, None, :] - abar.sqrt() * mixture.means[None]            # [B, K, d]
    z = torch.einsum("bki,kij->bkj", centred, u)
    means = mixture.means[None] + torch.einsum("bkj,kij->bki", abar.sqrt() * lam / v * z, u)
    covs = torch.einsum("kij,kj,klj->kil", u, lam * (1 - abar) / v, u)
    return means, covs


@dataclass(frozen=True)
class GaussianSum:
    """One Gaussian mixture per batch row: ``log_weights`` [B, J] (normalised; -inf allowed),
    ``means`` [B, J, d], ``covs`` [J, d, d] or [B, J, d, d] (positive definite)."""

    log_weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    @property
    def _covs(self) -> torch.Tensor:
        return self.covs.expand(*self.means.shape, self.means.shape[-1])

    def log_prob(self, points: torch.Tensor) -> torch.Tensor:
        """log density at ``points`` [B, N, d] (N points per row), [B, N]."""
        chol = torch.linalg.cholesky(self._covs)                               # [B, J, d, d]
        diff = points[:, :, None, :] - self.means[:, None]                     # [B, N, J, d]
        solved = torch.linalg.solve_triangular(chol[:, None], diff[..., None], upper=False)[..., 0]
        half_logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)     # [B, J]
        d = points.shape[-1]
        log_normal = -0.5 * (solved**2).sum(-1) - half_logdet[:, None] - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(self.log_weights[:, None] + log_normal, dim=-1)

    def mean(self) -> torch.Tensor:
        """E[x], [B, d]."""
        return (self.log_weights.exp()[..., None] * self.means).sum(1)

    def covariance(self) -> torch.Tensor:
        """Cov[x], [B, d, d]: the components' covariances plus the spread of their means."""
        w = self.log_weights.exp()[..., None, None]
        centred = self.means - self.mean()[:, None]
        return (w * (self._covs + centred[..., :, None] * centred[..., None, :])).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact draws per row, [B, n, d]."""
        b, j, d = self.means.shape
        component = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)  # [B, n]
        rows = torch.arange(b)[:, None]
        chol = torch.linalg.cholesky(self._covs)[rows, component]             # [B, n, d, d]
        noise = torch.randn(b, n, d, generator=generator, dtype=torch.float64)
        return self.means[rows, component] + torch.einsum("bnij,bnj->bni", chol, noise)


def exact_transition(mixture: LabelledMixture, x_t: torch.Tensor, abar_t, abar_next, sigma2,
                     y: torch.Tensor | None = None) -> GaussianSum:
    """p(x_{t'} | x_t, y) (y [B] labels) or p(x_{t'} | x_t) (y None), exactly, for x_t [B, d]."""
    a, b = step_coefficients(abar_t, abar_next, sigma2)
    abar = float64_scalar(abar_t).expand(len(x_t), 1)
    post_means, post_covs = x0_posterior(mixture.components, x_t, abar_t)
    log_weights = (mixture.component_log_posterior(x_t, abar) if y is None
                   else mixture.in_class_log_posterior(x_t, abar, y))
    eye = torch.eye(mixture.dim, dtype=torch.float64)
    return GaussianSum(log_weights, a * post_means + b * x_t[:, None], a**2 * post_covs + float64_scalar(sigma2) * eye)
