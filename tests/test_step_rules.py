"""The one-step rules of diffguide.exact.step_rules are the pipeline's own steps, and their algebra holds.

- unguided, mean_shift, gradient_at_mean and score_form are, on the exact model, what the samplers
  compute with the pipeline's wrappers (ddpm_step with ClassifierCondFn, ddim_step with
  ClassifierGuidance): the study measures the code that samples, not a re-derivation of it;
- score_form at s = 1 is the perfect conditional model (D&N eqs. 12-14);
- the Laplace rule is the normalised product it claims (a 1-D grid), with a Hessian equal to finite
  differences, and falls back to the mean shift where its precision is not positive definite.
"""

from __future__ import annotations

import pytest
import torch

from diffguide.diffusion.samplers import ddim_step, ddpm_step
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.exact.labelled_mixture import LabelledMixture, two_modes_per_class
from diffguide.exact.step_rules import (RULES, StepSetting, classifier_hessian, conditional_model, gradient_at_mean,
                                        laplace, mean_shift, score_form, unguided)
from diffguide.exact.transition import ddpm_sigma2
from diffguide.guidance.wrappers import ClassifierCondFn, ClassifierGuidance

SCHEDULE = NoiseSchedule.make("cosine", 1000)


def one_per_class_setup(dim: int = 3, t: int = 400, t_next: int = 360, scale: float = 2.5, eta: float = 1.0):
    gen = torch.Generator().manual_seed(11)
    mixture = random_mixture(4, dim, gen)
    step = SCHEDULE.steps([t, t_next], torch.zeros(1, dtype=torch.float64))[0]
    x_t = torch.randn(6, dim, generator=gen, dtype=torch.float64) * 1.3
    y = torch.tensor([0, 1, 2, 3, 1, 2])
    sigma2 = eta**2 * float(ddpm_sigma2(step.abar, step.abar_prev))
    setting = StepSetting(x_t, y, float(step.abar), float(step.abar_prev), sigma2, scale)
    return mixture, LabelledMixture.one_per_class(mixture), step, setting


@pytest.mark.parametrize("grad_at,rule", [("x_t", mean_shift), ("mean", gradient_at_mean)])
def test_the_mean_shift_rules_are_the_ancestral_samplers_step(grad_at, rule):
    mixture, labelled, step, setting = one_per_class_setup()
    eps = MixtureEpsModel(mixture, SCHEDULE)(setting.x_t, torch.full((6,), step.t), None)
    cond_fn = ClassifierCondFn(MixtureClassifier(mixture, SCHEDULE), setting.scale, grad_at=grad_at)
    sampled = ddpm_step(setting.x_t, eps, step=step, sigma2=step.beta_tilde, noise=None, cond_fn=cond_fn,
                        labels=setting.y)
    assert torch.allclose(rule(labelled, setting).mean, sampled, rtol=0, atol=1e-12)
    unguided_sample = ddpm_step(setting.x_t, eps, step=step, sigma2=step.beta_tilde, noise=None)
    assert torch.allclose(unguided(labelled, setting).mean, unguided_sample, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_the_score_form_is_ddim_with_the_classifier_guided_eps(eta):
    mixture, labelled, step, setting = one_per_class_setup(eta=eta)
    guided = ClassifierGuidance(MixtureEpsModel(mixture, SCHEDULE), MixtureClassifier(mixture, SCHEDULE),
                                setting.scale, SCHEDULE)
    eps_hat = guided(setting.x_t, torch.full((6,), step.t), setting.y)
    sampled = ddim_step(setting.x_t, eps_hat, step=step, eta=eta)
    rule = score_form(labelled, setting)
    assert torch.allclose(rule.mean, sampled, rtol=0, atol=1e-12)
    assert torch.allclose(rule.cov, setting.sigma2 * torch.eye(3, dtype=torch.float64).expand(6, 3, 3))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_the_score_form_at_scale_one_is_the_perfect_conditional_model(eta):
    gen = torch.Generator().manual_seed(12)
    mixture = two_modes_per_class(2, gen)
    abar_t, abar_next = float(SCHEDULE.alphas_cumprod[300]), float(SCHEDULE.alphas_cumprod[250])
    setting = StepSetting(torch.randn(5, 2, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1]),
                          abar_t, abar_next, eta**2 * float(ddpm_sigma2(abar_t, abar_next)), 1.0)
    assert torch.allclose(score_form(mixture, setting).mean, conditional_model(mixture, setting).mean, atol=1e-12)


def test_the_hessian_is_the_finite_difference_of_the_gradient():
    gen = torch.Generator().manual_seed(13)
    mixture = two_modes_per_class(3, gen)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    abar, y = torch.full((4, 1), 0.3, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    hessian = classifier_hessian(mixture, x, abar, y)
    h = 1e-6
    for i in range(3):
        shift = torch.zeros(3, dtype=torch.float64)
        shift[i] = h
        column = (mixture.class_log_prob_grad(x + shift, abar, y) - mixture.class_log_prob_grad(x - shift, abar, y)) / (2 * h)
        assert torch.allclose(hessian[:, :, i], column, atol=1e-7)
    assert torch.allclose(hessian, hessian.transpose(1, 2), atol=1e-12)


def test_the_laplace_rule_is_the_normalised_product_of_its_two_factors_in_1d():
    """N(mu, sigma^2) exp(s [g (x - x_t) + H (x - x_t)^2 / 2]) normalised on a grid: its mean and variance."""
    gen = torch.Generator().manual_seed(14)
    mixture = two_modes_per_class(1, gen)
    abar_t, abar_next = float(SCHEDULE.alphas_cumprod[200]), float(SCHEDULE.alphas_cumprod[150])
    setting = StepSetting(torch.tensor([[0.3], [-1.1]], dtype=torch.float64), torch.tensor([1, 2]), abar_t, abar_next,
                          float(ddpm_sigma2(abar_t, abar_next)), 3.0)
    rule = laplace(mixture, setting)
    assert not rule.fallback.any()
    mu = unguided(mixture, setting).mean
    abar = setting.abar_column(abar_t)
    g = mixture.class_log_prob_grad(setting.x_t, abar, setting.y)
    hess = classifier_hessian(mixture, setting.x_t, abar, setting.y)[:, 0, 0]
    for row in range(2):
        x = torch.linspace(float(mu[row, 0]) - 3, float(mu[row, 0]) + 3, 60_001, dtype=torch.float64)
        d = x - setting.x_t[row, 0]
        log_density = (-0.5 * (x - mu[row, 0]) ** 2 / setting.sigma2
                       + setting.scale * (g[row, 0] * d + 0.5 * hess[row] * d**2))
        density = (log_density - log_density.max()).exp()
        density = density / torch.trapezoid(density, x)
        mean = torch.trapezoid(x * density, x)
        assert torch.allclose(rule.mean[row, 0], mean, atol=1e-9)
        assert torch.allclose(rule.cov[row, 0, 0], torch.trapezoid((x - mean) ** 2 * density, x), atol=1e-9)
    assert not torch.allclose(rule.mean, mean_shift(mixture, setting).mean, atol=1e-6)  # the Hessian matters here


def test_where_the_laplace_precision_is_not_positive_definite_the_rule_is_the_mean_shift():
    """At a large scale and a long step (t = 700 -> 600), log p(y | x)^s curves up faster than 1 / sigma^2
    in places: those rows fall back, the others do not."""
    gen = torch.Generator().manual_seed(15)
    mixture = two_modes_per_class(2, gen)
    abar_t, abar_next = float(SCHEDULE.alphas_cumprod[700]), float(SCHEDULE.alphas_cumprod[600])
    x_t = torch.randn(400, 2, generator=gen, dtype=torch.float64) * 2 * abar_t**0.5
    setting = StepSetting(x_t, torch.arange(400) % 3,
                          abar_t, abar_next, float(ddpm_sigma2(abar_t, abar_next)), 20.0)
    rule, first_order = laplace(mixture, setting), mean_shift(mixture, setting)
    assert 0 < int(rule.fallback.sum()) < 400
    assert torch.equal(rule.mean[rule.fallback], first_order.mean[rule.fallback])
    assert not torch.allclose(rule.mean[~rule.fallback], first_order.mean[~rule.fallback])


def test_without_step_noise_only_the_score_form_guides():
    """DDIM (sigma = 0): Sigma g is zero, so the mean shift and the Laplace rule are the unguided step."""
    gen = torch.Generator().manual_seed(16)
    mixture = two_modes_per_class(2, gen)
    setting = StepSetting(torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2]),
                          float(SCHEDULE.alphas_cumprod[500]), float(SCHEDULE.alphas_cumprod[450]), 0.0, 4.0)
    plain = unguided(mixture, setting).mean
    for name in ("mean_shift", "target_level_gradient", "gradient_at_mean", "laplace"):
        assert torch.equal(RULES[name](mixture, setting).mean, plain), name
    assert not torch.allclose(score_form(mixture, setting).mean, plain)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_the_tweedie_rules_are_the_first_order_rules_with_training_free_guidances_gradient(eta):
    """tweedie_mean_shift and tweedie_score_form are the mean shift and the score form with
    grad log p_0(y | E[x_0 | x_t]) for g; at eta = 1 the score-form one is TFG's step with
    rho_t = s (1 - alpha_t) (UGD's forward guidance, guidance.training_free)."""
    from diffguide.exact.step_rules import tweedie_gradient, tweedie_mean_shift, tweedie_score_form, tweedie_x0
    from diffguide.guidance.training_free import guided_eps_and_direction

    gen = torch.Generator().manual_seed(17)
    mixture = two_modes_per_class(2, gen)
    step = SCHEDULE.steps([300, 260], torch.zeros(1, dtype=torch.float64))[0]
    x_t, y = torch.randn(4, 2, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    setting = StepSetting(x_t, y, float(step.abar), float(step.abar_prev),
                          eta**2 * float(ddpm_sigma2(step.abar, step.abar_prev)), 2.0)
    g = tweedie_gradient(mixture, x_t, setting.abar_t, y)
    assert torch.allclose(tweedie_mean_shift(mixture, setting).mean,
                          unguided(mixture, setting).mean + 2.0 * setting.sigma2 * g, atol=1e-12)
    assert not torch.allclose(g, mixture.class_log_prob_grad(x_t, setting.abar_column(setting.abar_t), y), atol=1e-3)
    if eta == 1.0:
        x0 = tweedie_x0(mixture, x_t, setting.abar_t)
        alpha = step.abar / step.abar_prev
        eps, direction = guided_eps_and_direction(x_t, x0, 2.0 * (1 - alpha) * g, torch.zeros_like(x0), step.abar)
        assert torch.allclose(tweedie_score_form(mixture, setting).mean,
                              ddim_step(x_t, eps, step=step, eta=1.0, direction_eps=direction), atol=1e-12)


def test_the_exact_base_rules_are_the_expansions_times_the_exact_unguided_step_in_1d():
    """exact_base_mean_shift is N(m + s C g, C) with (m, C) the exact unconditional step's moments;
    exact_base_laplace normalises N(m, C) exp(s [g (x - x_t) + H (x - x_t)^2 / 2]) (a 1-D grid)."""
    from diffguide.exact.step_rules import exact_base, exact_base_laplace, exact_base_mean_shift

    gen = torch.Generator().manual_seed(18)
    mixture = two_modes_per_class(1, gen)
    abar_t, abar_next = float(SCHEDULE.alphas_cumprod[300]), float(SCHEDULE.alphas_cumprod[200])
    setting = StepSetting(torch.tensor([[0.4], [-0.9]], dtype=torch.float64), torch.tensor([0, 2]), abar_t, abar_next,
                          float(ddpm_sigma2(abar_t, abar_next)), 2.0)
    m, c = exact_base(mixture, setting)
    assert (c[:, 0, 0] > setting.sigma2).all()  # the exact step is wider than sigma^2 I
    abar = setting.abar_column(abar_t)
    g = mixture.class_log_prob_grad(setting.x_t, abar, setting.y)
    hess = classifier_hessian(mixture, setting.x_t, abar, setting.y)[:, 0, 0]
    first = exact_base_mean_shift(mixture, setting)
    assert torch.allclose(first.mean, m + 2.0 * c[:, :, 0] * g, atol=1e-12) and torch.allclose(first.cov, c)
    second = exact_base_laplace(mixture, setting)
    assert not second.fallback.any()
    for row in range(2):
        x = torch.linspace(float(m[row, 0]) - 4, float(m[row, 0]) + 4, 80_001, dtype=torch.float64)
        d = x - setting.x_t[row, 0]
        log_density = -0.5 * (x - m[row, 0]) ** 2 / c[row, 0, 0] + 2.0 * (g[row, 0] * d + 0.5 * hess[row] * d**2)
        density = (log_density - log_density.max()).exp()
        density = density / torch.trapezoid(density, x)
        mean = torch.trapezoid(x * density, x)
        assert torch.allclose(second.mean[row, 0], mean, atol=1e-9)
        assert torch.allclose(second.cov[row, 0, 0], torch.trapezoid((x - mean) ** 2 * density, x), atol=1e-9)
