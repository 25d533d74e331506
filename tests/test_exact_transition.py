"""The exact reverse transition p(x_{t'} | x_t, y) of a Gaussian mixture (diffguide.exact.transition),
proved three ways in float64:

- against numerical integration of int q_sigma(x_{t'} | x_t, x_0) p(x_0 | x_t, y) dx_0 on a grid,
  which uses nothing but Gaussian densities and Bayes' rule (1-D, two components per class);
- it integrates to one and its moments are those of its draws and of the grid;
- the seed's eqs. 1.1-1.4: p(x_{t'} | x_t, y) = p(x_{t'} | x_t) p(y | x_{t'}) / p(y | x_t) pointwise,
  for the Markov step (sigma^2 = beta~), and not for DDIM's (sigma = 0 or eta = 0.5), whose step is
  not Markov (eq. 1.3 fails).
"""

from __future__ import annotations

import math

import pytest
import torch

from diffguide.diffusion.samplers import ddim_step
from diffguide.diffusion.schedules import NoiseSchedule, step_coefficients as schedule_coefficients
from diffguide.exact.gaussian_mixture import GaussianMixture, MixtureClassifier, random_mixture
from diffguide.exact.labelled_mixture import LabelledMixture, two_modes_per_class
from diffguide.exact.transition import (GaussianSum, ddpm_sigma2, exact_transition, step_coefficients,
                                        x0_posterior)

SCHEDULE = NoiseSchedule.make("cosine", 1000)
# (t, t'): early, middle and late steps of a respaced chain, and the last step (t' = -1: abar = 1).
STEPS = [(999, 899), (500, 450), (60, 40), (20, -1)]


def abars(t: int, t_next: int) -> tuple[float, float]:
    table = SCHEDULE.alphas_cumprod
    return float(table[t]), (1.0 if t_next < 0 else float(table[t_next]))


def sigma2_of(kind: str, abar_t: float, abar_next: float) -> float:
    """DDPM's beta~ (eta = 1), DDIM's 0, and eta = 0.5 between them (DDIM eq. 16)."""
    return {"ddpm": 1.0, "ddim": 0.0, "eta0.5": 0.25}[kind] * float(ddpm_sigma2(abar_t, abar_next))


def bimodal_1d() -> LabelledMixture:
    """Two classes of two 1-D components each: class 0 at -2 and +0.5, class 1 at -0.5 and +2."""
    components = GaussianMixture(torch.tensor([[-2.0], [-0.5], [0.5], [2.0]]),
                                 torch.tensor([[[0.3]], [[0.2]], [[0.25]], [[0.4]]]),
                                 torch.tensor([1.0, 1.5, 0.7, 1.2]))
    return LabelledMixture(components, torch.tensor([0, 1, 0, 1]))


def normal_pdf(x, mean, var):
    var = torch.as_tensor(var, dtype=torch.float64)
    return torch.exp(-0.5 * (x - mean) ** 2 / var) / torch.sqrt(2 * math.pi * var)


def grid_transition_density(mixture: LabelledMixture, x_t: float, y: int | None, abar_t: float,
                            abar_next: float, sigma2: float, x_next: torch.Tensor) -> torch.Tensor:
    """int q_sigma(x' | x_t, x_0) p(x_0 | x_t, y) dx_0 by the trapezoid rule on a fine x_0 grid, with
    p(x_0 | x_t, y) from Bayes' rule: p(x_0 | y) q(x_t | x_0), normalised on the grid."""
    x0 = torch.linspace(-9, 9, 12_001, dtype=torch.float64)
    comps = mixture.components
    keep = torch.ones(len(comps.weights), dtype=torch.bool) if y is None else mixture.classes == y
    prior = sum(comps.weights[k] * normal_pdf(x0, comps.means[k, 0], comps.covs[k, 0, 0])
                for k in range(len(keep)) if keep[k])
    posterior = prior * normal_pdf(torch.tensor(x_t, dtype=torch.float64), math.sqrt(abar_t) * x0, 1 - abar_t)
    posterior = posterior / torch.trapezoid(posterior, x0)
    a, b = step_coefficients(abar_t, abar_next, sigma2)
    kernel = normal_pdf(x_next[:, None], a * x0[None] + b * x_t, torch.tensor(sigma2, dtype=torch.float64))
    return torch.trapezoid(kernel * posterior[None], x0, dim=1)


# --------------------------------------------------------------------------- the step itself


@pytest.mark.parametrize("t,t_next", STEPS)
def test_the_markov_steps_coefficients_are_the_forward_posteriors(t, t_next):
    """At sigma^2 = beta~ the step is q(x_{t'} | x_t, x_0) of DDPM eq. 7 (the samplers' table). rtol 1e-8:
    at t = 999, 1 - abar_{t'} - beta~ is 1e-7 of its terms, and the subtraction loses that much."""
    abar_t, abar_next = abars(t, t_next)
    a, b = step_coefficients(abar_t, abar_next, ddpm_sigma2(abar_t, abar_next))
    table = schedule_coefficients(torch.tensor(abar_t, dtype=torch.float64), torch.tensor(abar_next, dtype=torch.float64))
    assert torch.allclose(a, table["mean_x0"], rtol=1e-8, atol=0)
    assert torch.allclose(b, table["mean_xt"], rtol=1e-8, atol=0)
    assert torch.allclose(ddpm_sigma2(abar_t, abar_next), table["beta_tilde"], rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_the_steps_mean_is_the_samplers_ddim_step_given_the_true_x0(eta):
    """a x_0 + b x_t is what the pipeline's DDIM step (eq. 12) computes from the eps that x_0 implies."""
    t, t_next = 500, 450
    step = SCHEDULE.steps([t, t_next], torch.zeros(1, dtype=torch.float64))[0]
    gen = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(5, 3, generator=gen, dtype=torch.float64)
    eps = (x_t - step.sqrt_abar * x0) / step.sqrt_one_minus_abar
    a, b = step_coefficients(step.abar, step.abar_prev, eta**2 * ddpm_sigma2(step.abar, step.abar_prev))
    assert torch.allclose(ddim_step(x_t, eps, step=step, eta=eta), a * x0 + b * x_t, rtol=0, atol=1e-12)


def test_a_step_outside_the_schedule_or_with_too_much_noise_is_refused():
    with pytest.raises(ValueError, match="0 < abar_t < abar_t'"):
        step_coefficients(0.5, 0.4, 0.0)
    with pytest.raises(ValueError, match=r"sigma_t\^2 must lie in \[0, 1 - abar_t'\]"):
        step_coefficients(0.5, 0.6, 0.5)


# --------------------------------------------------------------------------- against integration


@pytest.mark.parametrize("kind", ["ddpm", "eta0.5"])
@pytest.mark.parametrize("t,t_next", STEPS[:3])
@pytest.mark.parametrize("y", [None, 0, 1])
def test_the_transition_density_equals_numerical_integration_over_x0(kind, t, t_next, y):
    mixture = bimodal_1d()
    abar_t, abar_next = abars(t, t_next)
    sigma2 = sigma2_of(kind, abar_t, abar_next)
    x_next = torch.linspace(-5, 5, 201, dtype=torch.float64)
    for x_t in (-1.3, 0.2, 2.4):
        labels = None if y is None else torch.tensor([y])
        exact = exact_transition(mixture, torch.tensor([[x_t]], dtype=torch.float64), abar_t, abar_next, sigma2, labels)
        density = exact.log_prob(x_next[None, :, None])[0].exp()
        reference = grid_transition_density(mixture, x_t, y, abar_t, abar_next, sigma2, x_next)
        assert torch.allclose(density, reference, rtol=1e-7, atol=1e-10), (x_t, (density - reference).abs().max())


@pytest.mark.parametrize("t,t_next", STEPS)
def test_the_deterministic_step_moves_the_x0_posterior_by_its_change_of_variables(t, t_next):
    """DDIM's sigma = 0 has no noise to integrate against: x' = a x_0 + b x_t, so its density is
    p(x_0 | x_t, y) at (x' - b x_t) / a, divided by a, with the posterior from Bayes' rule on a grid."""
    mixture, x_t, y = bimodal_1d(), 0.7, 1
    abar_t, abar_next = abars(t, t_next)
    a, b = step_coefficients(abar_t, abar_next, 0.0)
    x_next = torch.linspace(-4, 4, 161, dtype=torch.float64)
    exact = exact_transition(mixture, torch.tensor([[x_t]], dtype=torch.float64), abar_t, abar_next, 0.0, torch.tensor([y]))
    x0 = (x_next - b * x_t) / a
    comps = mixture.components
    prior = sum(comps.weights[k] * normal_pdf(x0, comps.means[k, 0], comps.covs[k, 0, 0]) for k in (1, 3))
    unnormalised = prior * normal_pdf(torch.tensor(x_t, dtype=torch.float64), math.sqrt(abar_t) * x0, 1 - abar_t)
    fine = torch.linspace(-12, 12, 48_001, dtype=torch.float64)
    fine_prior = sum(comps.weights[k] * normal_pdf(fine, comps.means[k, 0], comps.covs[k, 0, 0]) for k in (1, 3))
    evidence = torch.trapezoid(fine_prior * normal_pdf(torch.tensor(x_t, dtype=torch.float64), math.sqrt(abar_t) * fine,
                                                      1 - abar_t), fine)
    reference = unnormalised / evidence / a
    density = exact.log_prob(x_next[None, :, None])[0].exp()
    assert torch.allclose(density, reference, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_the_transition_integrates_to_one_on_a_grid(dim, kind):
    gen = torch.Generator().manual_seed(1)
    mixture = two_modes_per_class(dim, gen)
    abar_t, abar_next = abars(400, 300)
    x_t = torch.randn(3, dim, generator=gen, dtype=torch.float64)
    exact = exact_transition(mixture, x_t, abar_t, abar_next, sigma2_of(kind, abar_t, abar_next), torch.tensor([0, 1, 2]))
    axis = torch.linspace(-7, 7, 1401 if dim == 1 else 401, dtype=torch.float64)
    points = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    density = exact.log_prob(points[None].expand(3, -1, -1)).exp()
    if dim == 1:
        mass = torch.trapezoid(density, axis, dim=1)
    else:
        mass = torch.trapezoid(torch.trapezoid(density.reshape(3, len(axis), len(axis)), axis, dim=2), axis, dim=1)
    assert torch.allclose(mass, torch.ones(3, dtype=torch.float64), atol=1e-8), mass


def test_the_moments_are_the_grids_in_1d():
    mixture = bimodal_1d()
    abar_t, abar_next = abars(300, 250)
    sigma2 = sigma2_of("ddpm", abar_t, abar_next)
    exact = exact_transition(mixture, torch.tensor([[0.4]], dtype=torch.float64), abar_t, abar_next, sigma2,
                             torch.tensor([0]))
    x = torch.linspace(-9, 9, 1_801, dtype=torch.float64)
    density = grid_transition_density(mixture, 0.4, 0, abar_t, abar_next, sigma2, x)
    mean = torch.trapezoid(x * density, x)
    variance = torch.trapezoid((x - mean) ** 2 * density, x)
    assert torch.allclose(exact.mean()[0, 0], mean, atol=1e-8)
    assert torch.allclose(exact.covariance()[0, 0, 0], variance, atol=1e-8)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_the_moments_are_those_of_the_draws_in_5d(kind):
    """Mean and covariance against 200,000 exact draws: every entry within 5 standard errors."""
    gen = torch.Generator().manual_seed(2)
    mixture = two_modes_per_class(5, gen)
    abar_t, abar_next = abars(700, 600)
    x_t = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    exact = exact_transition(mixture, x_t, abar_t, abar_next, sigma2_of(kind, abar_t, abar_next), torch.tensor([2, 0]))
    draws = exact.sample(200_000, generator=gen)
    n = draws.shape[1]
    centred = draws - draws.mean(1, keepdim=True)
    sample_cov = centred.transpose(1, 2) @ centred / (n - 1)
    cov = exact.covariance()
    mean_se = (torch.diagonal(cov, dim1=1, dim2=2) / n).sqrt()
    assert ((draws.mean(1) - exact.mean()).abs() < 5 * mean_se).all()
    cov_se = ((torch.diagonal(cov, dim1=1, dim2=2)[:, :, None] * torch.diagonal(cov, dim1=1, dim2=2)[:, None, :]
               + cov**2) / n).sqrt()  # the Gaussian formula; the mixture is close enough for a 5-SE band
    assert ((sample_cov - cov).abs() < 5 * cov_se).all()


# --------------------------------------------------------------------------- the seed's identity


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("t,t_next", STEPS[:3])
def test_the_markov_transition_is_the_unconditional_one_reweighted_by_the_classifier(dim, t, t_next):
    """Seed eqs. 1.1-1.4: p(x' | x_t, y) = p(x' | x_t) p_{t'}(y | x') / p_t(y | x_t), pointwise."""
    gen = torch.Generator().manual_seed(3 + dim)
    mixture = two_modes_per_class(dim, gen)
    abar_t, abar_next = abars(t, t_next)
    x_t = torch.randn(4, dim, generator=gen, dtype=torch.float64) * 1.5
    y = torch.tensor([0, 1, 2, 1])
    sigma2 = ddpm_sigma2(abar_t, abar_next)
    conditional = exact_transition(mixture, x_t, abar_t, abar_next, sigma2, y)
    unconditional = exact_transition(mixture, x_t, abar_t, abar_next, sigma2)
    points = x_t[:, None] + torch.randn(4, 50, dim, generator=gen, dtype=torch.float64)
    rows = torch.arange(4)
    classify = lambda x, abar: mixture.class_log_prob(x.reshape(-1, dim), torch.full((x.numel() // dim, 1), abar,
                                                                                      dtype=torch.float64))
    log_py_next = classify(points, abar_next).reshape(4, 50, -1)[rows, :, y]
    log_py_t = classify(x_t, abar_t)[rows, y]
    rhs = unconditional.log_prob(points) + log_py_next - log_py_t[:, None]
    assert torch.allclose(conditional.log_prob(points), rhs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["ddim", "eta0.5"])
def test_the_identity_fails_for_a_non_markov_step(kind):
    """DDIM's q_sigma(x_{t'} | x_t, x_0) with sigma^2 < beta~ is not the forward process's posterior,
    so p(y | x', x_t) != p(y | x') (eq. 1.3) and the reweighted unconditional step is another density."""
    gen = torch.Generator().manual_seed(9)
    mixture = two_modes_per_class(2, gen)
    abar_t, abar_next = abars(500, 400)
    x_t, y = torch.randn(1, 2, generator=gen, dtype=torch.float64), torch.tensor([1])
    sigma2 = sigma2_of(kind, abar_t, abar_next)
    conditional = exact_transition(mixture, x_t, abar_t, abar_next, sigma2, y)
    unconditional = exact_transition(mixture, x_t, abar_t, abar_next, sigma2)
    points = conditional.sample(50, generator=gen)
    log_py_next = mixture.class_log_prob(points[0], torch.full((50, 1), abar_next, dtype=torch.float64))[:, 1]
    log_py_t = mixture.class_log_prob(x_t, torch.full((1, 1), abar_t, dtype=torch.float64))[0, 1]
    rhs = unconditional.log_prob(points)[0] + log_py_next - log_py_t
    assert (conditional.log_prob(points)[0] - rhs).abs().max() > 1e-2


# --------------------------------------------------------------------------- the labelled mixture


def test_one_component_per_class_is_the_bayes_classifier_of_the_mixture():
    gen = torch.Generator().manual_seed(4)
    mixture = random_mixture(4, 3, gen)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    t = torch.full((6,), 300)
    expected = torch.log_softmax(MixtureClassifier(mixture, SCHEDULE)(x, t), dim=-1)
    labelled = LabelledMixture.one_per_class(mixture)
    assert torch.allclose(labelled.class_log_prob(x, SCHEDULE.abar(t, x)), expected, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 3])
def test_the_closed_form_classifier_gradient_is_autograds(dim):
    gen = torch.Generator().manual_seed(5)
    mixture = two_modes_per_class(dim, gen)
    x = torch.randn(7, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    abar = torch.full((7, 1), 0.4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    log_p = mixture.class_log_prob(x, abar)[torch.arange(7), y]
    (autograd,) = torch.autograd.grad(log_p.sum(), x)
    assert torch.allclose(mixture.class_log_prob_grad(x.detach(), abar, y), autograd, atol=1e-12)


def test_class_draws_come_from_the_class_components_by_weight():
    mixture = bimodal_1d()
    draws = mixture.sample(torch.ones(100_000, dtype=torch.long), generator=torch.Generator().manual_seed(6))
    share_right = (draws[:, 0] > 0.75).double().mean()  # class 1: components at -0.5 (w 1.5) and +2 (w 1.2)
    assert abs(float(share_right) - 1.2 / 2.7) < 0.01


def test_the_x0_posterior_is_one_component_per_row():
    """Bayes for one Gaussian component: the posterior mean at abar -> 0 is the prior mean, and
    at abar -> 1 the point itself, with a covariance that vanishes."""
    mixture = bimodal_1d().components
    x_t = torch.tensor([[1.7]], dtype=torch.float64)
    means, covs = x0_posterior(mixture, x_t, 1e-12)
    assert torch.allclose(means[0, :, 0], mixture.means[:, 0], atol=1e-5)
    assert torch.allclose(covs[:, 0, 0], mixture.covs[:, 0, 0], atol=1e-10)
    means, covs = x0_posterior(mixture, x_t, 1 - 1e-12)
    assert torch.allclose(means[0, :, 0], torch.full((4,), 1.7, dtype=torch.float64), atol=1e-5)
    assert (covs < 1e-10).all()


def test_a_labelling_that_leaves_a_class_empty_is_refused():
    with pytest.raises(ValueError, match="every class owning a component"):
        LabelledMixture(bimodal_1d().components, torch.tensor([0, 2, 0, 2]))
    with pytest.raises(ValueError, match="every class owning a component"):
        LabelledMixture(bimodal_1d().components, torch.tensor([0, -1, 1, 1]))
    with pytest.raises(ValueError, match="one class per component"):
        LabelledMixture(bimodal_1d().components, torch.tensor([0, 1]))


def test_a_gaussian_sum_with_one_component_is_that_gaussian():
    mean, cov = torch.tensor([[0.3, -0.2]], dtype=torch.float64), torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=torch.float64)
    one = GaussianSum(torch.zeros(1, 1, dtype=torch.float64), mean[:, None], cov[None])
    x = torch.tensor([[[0.1, 0.4], [-1.0, 0.0]]], dtype=torch.float64)
    reference = torch.distributions.MultivariateNormal(mean[0], cov).log_prob(x[0])
    assert torch.allclose(one.log_prob(x)[0], reference, atol=1e-12)
