"""The divergences of diffguide.exact.step_errors: each estimator against a closed form or a grid.

- KL(target || rule) for a Gaussian target (one component per class) equals the Gaussian KL formula
  within its interval, and is exactly 0 for the moment-matched Gaussian;
- at s != 1 the reweighted target's moments are those of p(x' | x_t) p(y | x')^s normalised on a grid;
- W2 to a point is the root of the mean squared distance of the draws;
- the Tweedie gradient is the finite difference of log p_0(y | E[x_0 | x_t]).
"""

from __future__ import annotations

import math

import pytest
import torch

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import random_mixture
from diffguide.exact.labelled_mixture import LabelledMixture, two_modes_per_class
from diffguide.exact.step_errors import (gaussian_log_prob, guided_target, kl_per_point, non_gaussianity,
                                         points_on_the_chain, rule_errors, tweedie_gradient_error, w2_to_point)
from diffguide.exact.step_rules import RULES, GaussianStep, StepSetting, tweedie_gradient, tweedie_x0
from diffguide.exact.transition import ddpm_sigma2

SCHEDULE = NoiseSchedule.make("cosine", 1000)


def abars(t, t_next):
    return float(SCHEDULE.alphas_cumprod[t]), float(SCHEDULE.alphas_cumprod[t_next])


def test_a_gaussian_targets_kl_is_the_closed_form_and_zero_for_its_own_moments():
    """One component per class: the exact conditional step is Gaussian, so the Monte Carlo part vanishes."""
    gen = torch.Generator().manual_seed(21)
    mixture = LabelledMixture.one_per_class(random_mixture(3, 2, gen))
    abar_t, abar_next = abars(400, 350)
    x_t, y = points_on_the_chain(mixture, abar_t, 8, gen)
    setting = StepSetting(x_t, y, abar_t, abar_next, float(ddpm_sigma2(abar_t, abar_next)), 1.0)
    target = guided_target(mixture, setting, 2_000, gen)
    rule = RULES["mean_shift"](mixture, setting)
    reference = torch.stack([torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(target.mean[i], target.cov[i]),
        torch.distributions.MultivariateNormal(rule.mean[i], rule.cov[i])) for i in range(8)])
    assert (reference > 1e-4).all()
    assert torch.allclose(kl_per_point(target, rule), reference, rtol=1e-9, atol=1e-12)
    assert abs(rule_errors(mixture, setting, 2_000, gen)["moment_matched"]["total"].value) < 1e-10


def test_the_non_gaussianity_is_the_grids_kl_from_the_moment_matched_gaussian_in_1d():
    """KL(p || g_p) of a bimodal one-step target (one long step, so it is far from Gaussian), by the
    trapezoid rule on a fine grid, against the estimate from 200,000 draws: within 4 standard errors
    of the draws' log ratio. Every rule's KL is this term plus closed forms."""
    mixture = two_modes_per_class(1, torch.Generator().manual_seed(29), spread=1.5)
    abar_t, abar_next = abars(600, 0)
    x_t, y = torch.tensor([[0.1]], dtype=torch.float64), torch.tensor([1])
    setting = StepSetting(x_t, y, abar_t, abar_next, float(ddpm_sigma2(abar_t, abar_next)), 1.0)
    target = guided_target(mixture, setting, 200_000, torch.Generator().manual_seed(30))
    from diffguide.exact.step_rules import exact_step

    exact = exact_step(mixture, setting)
    x = torch.linspace(-8, 8, 32_001, dtype=torch.float64)
    log_p = exact.log_prob(x[None, :, None])[0]
    mean, var = exact.mean()[0, 0], exact.covariance()[0, 0, 0]
    log_g = -0.5 * (x - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)
    grid = torch.trapezoid(log_p.exp() * (log_p - log_g), x)
    assert grid > 0.03
    matched = GaussianStep(target.mean, target.cov, torch.zeros(1, dtype=torch.bool))
    ratio = target.log_density - gaussian_log_prob(target.draws, matched)
    se = float(ratio.std() / math.sqrt(ratio.shape[1]))
    assert abs(float(non_gaussianity(target)[0]) - float(grid)) < 4 * se, (non_gaussianity(target), grid, se)


def test_the_reweighted_target_at_scale_two_has_the_grids_moments():
    mixture = two_modes_per_class(1, torch.Generator().manual_seed(22))
    abar_t, abar_next = abars(300, 250)
    sigma2 = float(ddpm_sigma2(abar_t, abar_next))
    setting = StepSetting(torch.tensor([[0.2]], dtype=torch.float64), torch.tensor([1]), abar_t, abar_next, sigma2, 2.0)
    target = guided_target(mixture, setting, 100_000, torch.Generator().manual_seed(23))
    from diffguide.exact.step_rules import exact_step

    x = torch.linspace(-6, 6, 24_001, dtype=torch.float64)
    unconditional = exact_step(mixture, setting, conditional=False)
    log_p = unconditional.log_prob(x[None, :, None])[0]
    log_y = mixture.class_log_prob(x[:, None], torch.full((len(x), 1), abar_next, dtype=torch.float64))[:, 1]
    density = (log_p + 2 * log_y).exp()
    density = density / torch.trapezoid(density, x)
    mean = torch.trapezoid(x * density, x)
    var = torch.trapezoid((x - mean) ** 2 * density, x)
    assert abs(float(target.mean[0, 0] - mean)) < 4 * math.sqrt(float(var) / 1_000_000)  # the moments' 10x draws
    assert abs(float(target.cov[0, 0, 0] / var) - 1) < 0.02
    # the target's log density is the grid's, up to the estimated normaliser (a few per mille)
    inside = target.draws[0, :, 0].abs() < 1e-3
    assert inside.any()
    assert abs(float(target.log_density[0][inside].mean()) - float(density[12_000].log())) < 0.02


def test_a_scale_other_than_one_refuses_a_non_markov_step():
    mixture = two_modes_per_class(1, torch.Generator().manual_seed(24))
    abar_t, abar_next = abars(300, 250)
    setting = StepSetting(torch.zeros(1, 1, dtype=torch.float64), torch.tensor([0]), abar_t, abar_next, 0.0, 2.0)
    with pytest.raises(ValueError, match=r"needs the Markov step sigma_t\^2 = beta~"):
        guided_target(mixture, setting, 10, torch.Generator())


def test_the_w2_to_a_point_is_the_root_mean_square_distance_of_the_draws():
    gen = torch.Generator().manual_seed(25)
    mixture = two_modes_per_class(3, gen)
    abar_t, abar_next = abars(500, 450)
    x_t, y = points_on_the_chain(mixture, abar_t, 4, gen)
    setting = StepSetting(x_t, y, abar_t, abar_next, 0.0, 1.0)
    target = guided_target(mixture, setting, 100_000, gen)
    point = RULES["score_form"](mixture, setting).mean
    by_draws = ((target.draws - point[:, None]) ** 2).sum(-1).mean(1).sqrt()
    assert torch.allclose(w2_to_point(target, point), by_draws, rtol=0.01)


def test_the_tweedie_gradient_is_the_finite_difference_of_the_clean_classifier_at_x0_hat():
    gen = torch.Generator().manual_seed(26)
    mixture = two_modes_per_class(2, gen)
    abar_t = float(SCHEDULE.alphas_cumprod[300])
    x_t, y = points_on_the_chain(mixture, abar_t, 5, gen)
    gradient = tweedie_gradient(mixture, x_t, abar_t, y)
    ones = torch.ones(5, 1, dtype=torch.float64)
    f = lambda x: mixture.class_log_prob(tweedie_x0(mixture, x, abar_t), ones)[torch.arange(5), y]  # noqa: E731
    h = 1e-6
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = h
        assert torch.allclose(gradient[:, i], (f(x_t + e) - f(x_t - e)) / (2 * h), atol=1e-6)


def test_the_tweedie_gradient_is_exact_without_noise_and_wrong_with_much_of_it():
    """At abar -> 1, E[x_0 | x_t] -> x_t and p_t -> p_0: the approximation is exact. At high noise
    the clean classifier at the blurred mean is far from the noisy classifier."""
    mixture = two_modes_per_class(2, torch.Generator().manual_seed(27))
    near = tweedie_gradient_error(mixture, float(SCHEDULE.alphas_cumprod[0]), 200, torch.Generator().manual_seed(1))
    far = tweedie_gradient_error(mixture, float(SCHEDULE.alphas_cumprod[800]), 200, torch.Generator().manual_seed(1))
    assert near["relative_error"].high < 0.05 and near["eps_error"].high < 1e-3
    assert far["relative_error"].low > 0.2 and far["eps_error"].low > 0.05


def test_the_moment_matched_gaussian_is_the_floor_of_every_drawing_rule():
    gen = torch.Generator().manual_seed(28)
    mixture = two_modes_per_class(2, gen)
    abar_t, abar_next = abars(600, 560)
    x_t, y = points_on_the_chain(mixture, abar_t, 32, gen)
    errors = rule_errors(mixture, StepSetting(x_t, y, abar_t, abar_next, float(ddpm_sigma2(abar_t, abar_next)), 1.0),
                         4_000, gen)
    floor = errors["moment_matched"]["total"].value
    assert set(errors) == {*RULES, "moment_matched", "unguided_floor"} - {"unguided"}
    for name, parts in errors.items():
        total, mean = parts["total"], parts["mean_part"]
        assert total.low <= total.value <= total.high
        assert total.value >= floor - 1e-3, name
        assert 0 <= mean.value <= total.value - floor + 1e-9, name  # the split's terms are all >= 0
    assert errors["moment_matched"]["mean_part"].value == 0
    paired = errors["laplace"]["minus_mean_shift"]
    assert math.isclose(paired.value, errors["laplace"]["total"].value - errors["mean_shift"]["total"].value,
                        rel_tol=1e-9, abs_tol=1e-12)
    assert errors["mean_shift"]["minus_mean_shift"].value == 0
