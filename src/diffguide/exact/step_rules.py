"""Every approximation of the guided reverse step, on the exact mixture, as one Gaussian (issue 28).

The exact guided step at scale s is p(x_{t'} | x_t) p_{t'}(y | x_{t'})^s / Z (seed eq. 1.4, and 1.11
with the classifier raised to s, eq. 1.13); at s = 1 it is p(x_{t'} | x_t, y) (`transition`). Each
rule below replaces it by a Gaussian N(mean, cov), built from the exact eps (Tweedie's E[x_0 given x_t])
and the exact noisy classifier, so what remains is the rule's own error, not a network's. Below,
mu = a x0_hat + b x_t is the unguided mean, g_t = grad log p_t(y given x_t), H its Hessian.

- `unguided` (seed 1.6's p(x_{t'} given x_t)): N(mu, sigma^2 I), x0_hat = E[x_0 given x_t].
- `conditional_model`: N(a E[x_0 given x_t, y] + b x_t, sigma^2 I), a perfect conditional eps-model.
- `mean_shift` (seed 1.10, 1.12): N(mu + s sigma^2 g_t, sigma^2 I).
- `score_form` (seed 1.22-1.24): the step with eps - s sqrt(1 - abar_t) g_t.
- `target_level_gradient` (seed 1.5): the mean shift with g = grad log p_{t'}(y given x) at x_t.
- `gradient_at_mean` (D&N eqs. 5-6, ``grad_at: mean``): the mean shift with that g taken at mu.
- `laplace` (seed 1.5 to second order): N(P^-1 (mu / sigma^2 + s g_t - s H x_t), P^-1), P = I / sigma^2 - s H.
- `tweedie_mean_shift` (DPS), `tweedie_score_form` (UGD eq. 6, forward guidance): the mean shift and
  the score form with training-free guidance's g = grad_{x_t} log p_0(y given E[x_0 given x_t]).
- `exact_base_mean_shift`, `exact_base_laplace`: the first- and second-order rules on the exact
  unguided step's moments (m, C) in place of (mu, sigma^2 I): N(m + s C g_t, C), and
  P = C^-1 - s H. Every other rule keeps sigma^2 I, which is far from the exact step's
  a^2 Cov[x_0 given x_t] + sigma^2 I; these two measure the expansion's order alone.
- `moment_matched` (in `step_errors`): the target's own mean and covariance, the best Gaussian
  under KL(target || rule).

Eq. 1.5's time-derivative term, d/dt log p(y | x_t), does not depend on x_{t'}, so after the square
is completed (eqs. 1.6-1.9) it cancels in the normaliser: kept to the letter it changes nothing.
What the time change does change is the gradient, which belongs to the target's noise level t', not
to t. `target_level_gradient` takes it there, and so keeps eq. 1.5's time dependence to first order.

The second-order rules expand log p_t(y | x) around x_t. Where P is not positive definite (the
classifier's log-density curves up faster than the base Gaussian curves down in some direction) no
Gaussian has that exponent; the rule then falls back to its first-order rule for that row and says
so in ``fallback``. At sigma = 0 (DDIM) the mean shift and the Laplace rule shift nothing: only the
score form guides.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffguide.exact.labelled_mixture import LabelledMixture
from diffguide.exact.transition import GaussianSum, float64_scalar, exact_transition, step_coefficients, x0_posterior


@dataclass(frozen=True)
class GaussianStep:
    """One Gaussian per row: ``mean`` [B, d], ``cov`` [B, d, d] (zero for a deterministic step), and
    ``fallback`` [B], the rows where a rule could not apply and used `mean_shift` instead."""

    mean: torch.Tensor
    cov: torch.Tensor
    fallback: torch.Tensor


@dataclass(frozen=True)
class StepSetting:
    """One step t -> t' of one class: the points x_t [B, d], labels y [B], abar_t, abar_{t'}, the
    step's sigma_t^2 and the guidance scale s."""

    x_t: torch.Tensor
    y: torch.Tensor
    abar_t: float
    abar_next: float
    sigma2: float
    scale: float = 1.0

    @property
    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        return step_coefficients(self.abar_t, self.abar_next, self.sigma2)

    def abar_column(self, level: float) -> torch.Tensor:
        """abar = ``level`` as a [B, 1] column, one row per point (what the mixtures' functions take)."""
        return float64_scalar(level).expand(len(self.x_t), 1)


def tweedie_x0(mixture: LabelledMixture, x_t: torch.Tensor, abar_t, y: torch.Tensor | None = None) -> torch.Tensor:
    """E[x_0 | x_t] (y None) or E[x_0 | x_t, y], [B, d]: what a perfect eps-model predicts (Tweedie)."""
    means, _ = x0_posterior(mixture.components, x_t, abar_t)
    abar = float64_scalar(abar_t).expand(len(x_t), 1)
    log_w = (mixture.component_log_posterior(x_t, abar) if y is None
             else mixture.in_class_log_posterior(x_t, abar, y))
    return (log_w.exp()[..., None] * means).sum(1)


def _isotropic(setting: StepSetting, mean: torch.Tensor, fallback: torch.Tensor | None = None) -> GaussianStep:
    d = mean.shape[-1]
    cov = float64_scalar(setting.sigma2) * torch.eye(d, dtype=torch.float64).expand(len(mean), d, d)
    none = torch.zeros(len(mean), dtype=torch.bool)
    return GaussianStep(mean, cov, none if fallback is None else fallback)


def unguided_mean(mixture: LabelledMixture, setting: StepSetting, y: torch.Tensor | None = None) -> torch.Tensor:
    """a x0_hat + b x_t: DDIM eq. 12 with the exact eps (the posterior mean, DDPM eq. 7, at eta = 1)."""
    a, b = setting.coefficients
    return a * tweedie_x0(mixture, setting.x_t, setting.abar_t, y) + b * setting.x_t


def unguided(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    return _isotropic(setting, unguided_mean(mixture, setting))


def conditional_model(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    return _isotropic(setting, unguided_mean(mixture, setting, setting.y))


def classifier_gradient(mixture: LabelledMixture, setting: StepSetting, level: float | None = None) -> torch.Tensor:
    """g = grad log p(y | x) at x_t for the classifier of noise level ``level`` (abar; abar_t if None)."""
    level = setting.abar_t if level is None else level
    return mixture.class_log_prob_grad(setting.x_t, setting.abar_column(level), setting.y)


def tweedie_gradient(mixture: LabelledMixture, x_t: torch.Tensor, abar_t, y: torch.Tensor) -> torch.Tensor:
    """grad_{x_t} log p_0(y | x0_hat(x_t)) with the exact x0_hat = E[x_0 | x_t] and the exact clean
    classifier, differentiated through x0_hat: training-free guidance's stand-in for grad log p_t(y | x_t)
    (DPS, Chung et al. 2023; FreeDoM; UGD's forward guidance; TFG's rho term)."""
    with torch.enable_grad():
        x = x_t.detach().clone().requires_grad_(True)
        x0_hat = tweedie_x0(mixture, x, abar_t)
        clean = mixture.class_log_prob(x0_hat, torch.ones(len(x), 1, dtype=torch.float64))
        (gradient,) = torch.autograd.grad(clean[torch.arange(len(x)), y].sum(), x)
    return gradient


def mean_shift(mixture: LabelledMixture, setting: StepSetting, gradient: torch.Tensor | None = None) -> GaussianStep:
    """Eq. 1.10 with the scale of eq. 1.12: the mean moves by s Sigma g, g = grad log p_t(y | x_t)
    unless another ``gradient`` is given."""
    gradient = classifier_gradient(mixture, setting) if gradient is None else gradient
    return _isotropic(setting, unguided_mean(mixture, setting) + setting.scale * setting.sigma2 * gradient)


def target_level_gradient(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    return mean_shift(mixture, setting, classifier_gradient(mixture, setting, level=setting.abar_next))


def gradient_at_mean(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """D&N's own expansion point (eqs. 5-6; the pipeline's ``grad_at: mean``): g = grad log p_{t'}(y | x)
    at x = mu, the unguided mean, for the noise level of x_{t'}."""
    mean = unguided_mean(mixture, setting)
    gradient = mixture.class_log_prob_grad(mean, setting.abar_column(setting.abar_next), setting.y)
    return _isotropic(setting, mean + setting.scale * setting.sigma2 * gradient)


def score_form(mixture: LabelledMixture, setting: StepSetting, gradient: torch.Tensor | None = None) -> GaussianStep:
    """Eqs. 1.22-1.24: eps_hat = eps - s sqrt(1 - abar_t) g, then the generalized step with eps_hat;
    g = grad log p_t(y | x_t) unless another ``gradient`` is given."""
    x_t, abar_t, abar_next = setting.x_t, float64_scalar(setting.abar_t), float64_scalar(setting.abar_next)
    eps = (x_t - abar_t.sqrt() * tweedie_x0(mixture, x_t, abar_t)) / (1 - abar_t).sqrt()
    gradient = classifier_gradient(mixture, setting) if gradient is None else gradient
    eps_hat = eps - setting.scale * (1 - abar_t).sqrt() * gradient
    x0_hat = (x_t - (1 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()
    direction = (1 - abar_next - setting.sigma2).clamp(min=0).sqrt()
    return _isotropic(setting, abar_next.sqrt() * x0_hat + direction * eps_hat)


def tweedie_mean_shift(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """The mean shift with training-free guidance's gradient, grad log p_0(y | x0_hat(x_t)): DPS's
    update at the step size s Sigma (TFG's rho term with rho_t = s Sigma sqrt(alpha_t))."""
    return mean_shift(mixture, setting, tweedie_gradient(mixture, setting.x_t, setting.abar_t, setting.y))


def tweedie_score_form(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """The score form with training-free guidance's gradient: UGD's forward guidance (Bansal et al.
    2023, eq. 6), TFG's rho term with rho_t = s (1 - alpha_t) at eta = 1."""
    return score_form(mixture, setting, tweedie_gradient(mixture, setting.x_t, setting.abar_t, setting.y))


def classifier_hessian(mixture: LabelledMixture, x: torch.Tensor, abar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad^2_x log p_t(y | x), [B, d, d]: the Jacobian of the closed-form gradient, row by row (rows
    are independent, so the Jacobian of the summed gradients holds each row's Hessian)."""
    summed = lambda points: mixture.class_log_prob_grad(points, abar, y).sum(0)  # noqa: E731
    jacobian = torch.autograd.functional.jacobian(summed, x)  # [d, B, d]
    return jacobian.permute(1, 0, 2)


def second_order(mixture: LabelledMixture, setting: StepSetting, base_mean: torch.Tensor, base_cov: torch.Tensor,
                 first_order: GaussianStep) -> GaussianStep:
    """N(base_mean, base_cov) times exp(s [g (x - x_t) + (x - x_t)^T H (x - x_t) / 2]), g and H of
    log p_t(y | x) at x_t, completed to one Gaussian: precision P = base_cov^-1 - s H, mean
    P^-1 (base_cov^-1 base_mean + s g - s H x_t), where P is positive definite; ``first_order`` for
    the rows where it is not."""
    x_t, s = setting.x_t, setting.scale
    abar = setting.abar_column(setting.abar_t)
    hessian = s * classifier_hessian(mixture, x_t, abar, setting.y)
    base_precision = torch.linalg.inv(base_cov)
    precision = base_precision - hessian
    chol, info = torch.linalg.cholesky_ex(precision)
    fallback = info != 0
    identity = torch.eye(x_t.shape[-1], dtype=torch.float64).expand_as(precision)
    cov = torch.cholesky_inverse(torch.where(fallback[:, None, None], identity, chol))
    linear = ((base_precision @ base_mean[..., None])[..., 0] + s * classifier_gradient(mixture, setting)
              - (hessian @ x_t[..., None])[..., 0])
    mean = (cov @ linear[..., None])[..., 0]
    return GaussianStep(torch.where(fallback[:, None], first_order.mean, mean),
                        torch.where(fallback[:, None, None], first_order.cov, cov), fallback)


def laplace(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """The second-order expansion of log p_t(y | x)^s around x_t times the unguided Gaussian
    N(mu, sigma^2 I), completed to one Gaussian where P = I / sigma^2 - s H is positive definite."""
    first_order = mean_shift(mixture, setting)
    if setting.sigma2 == 0:
        return first_order
    return second_order(mixture, setting, unguided_mean(mixture, setting), first_order.cov, first_order)


def exact_base(mixture: LabelledMixture, setting: StepSetting) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact unconditional step's mean and covariance: the best Gaussian p(x_{t'} | x_t) has,
    a^2 Cov[x_0 | x_t] + sigma_t^2 I where the rules above keep sigma_t^2 I."""
    unconditional = exact_step(mixture, setting, conditional=False)
    return unconditional.mean(), unconditional.covariance()


def exact_base_mean_shift(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """Eqs. 1.6-1.10 with the exact unguided step's moments (m, C) for N(mu, Sigma): N(m + s C g, C).
    It isolates what the first-order expansion of log p(y | x) costs from what sigma_t^2 I costs."""
    mean, cov = exact_base(mixture, setting)
    none = torch.zeros(len(mean), dtype=torch.bool)
    return GaussianStep(mean + setting.scale * (cov @ classifier_gradient(mixture, setting)[..., None])[..., 0], cov,
                        none)


def exact_base_laplace(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """The second-order rule on the exact unguided step's moments: the seed's "higher-order expansion"
    with nothing else changed from `exact_base_mean_shift`."""
    mean, cov = exact_base(mixture, setting)
    return second_order(mixture, setting, mean, cov, exact_base_mean_shift(mixture, setting))


RULES = {
    "unguided": unguided,
    "conditional_model": conditional_model,
    "mean_shift": mean_shift,
    "target_level_gradient": target_level_gradient,
    "gradient_at_mean": gradient_at_mean,
    "score_form": score_form,
    "laplace": laplace,
    "tweedie_mean_shift": tweedie_mean_shift,
    "tweedie_score_form": tweedie_score_form,
    "exact_base_mean_shift": exact_base_mean_shift,
    "exact_base_laplace": exact_base_laplace,
}

# A second-order rule and the first-order rule it extends (the paired comparison of the verdicts).
FIRST_ORDER_OF = {"laplace": "mean_shift", "exact_base_laplace": "exact_base_mean_shift"}


def exact_step(mixture: LabelledMixture, setting: StepSetting, conditional: bool = True) -> GaussianSum:
    """The exact transition the rules approximate at s = 1: p(x_{t'} | x_t, y), or p(x_{t'} | x_t)."""
    y = setting.y if conditional else None
    return exact_transition(mixture, setting.x_t, setting.abar_t, setting.abar_next, setting.sigma2, y)
