"""How far each rule's Gaussian step is from the exact guided step (issue 28, item 2).

The divergence. For a rule that draws (sigma_t > 0): KL(target || rule), in nats,

    KL = E_target[log target(x') - log N(x'; mean, cov)],

estimated from exact draws of the target. Why this direction: its minimiser over all Gaussians is
the target's own mean and covariance (moment matching), so the best any Gaussian rule can do is a
well-defined floor (`moment_matched`, the variational bound the seed asks about), and it is finite
for every rule. For a deterministic rule (DDIM, sigma_t = 0) every KL is infinite; there the error is
the 2-Wasserstein distance from the target to the rule's point, exact from the target's moments:

    W2(target, delta_m)^2 = |E[x'] - m|^2 + tr Cov[x'].

The target at scale s is p(x' | x_t) p_{t'}(y | x')^s / Z (seed eqs. 1.4, 1.13). At s = 1 it is the
exact conditional transition, drawn directly. At s != 1 it is that transition reweighted by
p_{t'}(y | x')^(s - 1) (self-normalised importance sampling); the reweighting needs the Markov step
(eq. 1.3), so s != 1 is measured at sigma_t^2 = beta~ only.

An error is averaged over points x_t ~ p_t(x_t | y) (where an exact conditional chain is at t),
with a 95% percentile-bootstrap interval over those points; each point's own Monte Carlo error is
inside that spread. `tweedie_gradient_error` measures the training-free approximation
grad log p_0(y | E[x_0 | x_t]) against the exact grad log p_t(y | x_t) the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffguide.exact.labelled_mixture import LabelledMixture
from diffguide.exact.step_rules import FIRST_ORDER_OF, RULES, GaussianStep, StepSetting, exact_step, tweedie_gradient
from diffguide.exact.transition import GaussianSum, ddpm_sigma2, float64_scalar

BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Target:
    """Draws of the exact guided step per row ([B, n, d]), their log density, their normalised
    importance weights (uniform at s = 1), and the target's mean and covariance."""

    draws: torch.Tensor
    log_density: torch.Tensor
    weights: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor


@dataclass(frozen=True)
class Estimate:
    """A mean over points with its 95% bootstrap interval, and the share of points a rule fell back on."""

    value: float
    low: float
    high: float
    fallback_share: float = 0.0


def points_on_the_chain(mixture: LabelledMixture, abar_t: float, num_points: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t ~ p_t(x_t | y) for labels cycling through the classes: q_sample of exact clean draws."""
    y = torch.arange(num_points) % mixture.num_classes
    return mixture.sample_noised(y, abar_t, generator), y


MOMENT_DRAWS_FACTOR = 10


def guided_target(mixture: LabelledMixture, setting: StepSetting, num_draws: int,
                  generator: torch.Generator) -> Target:
    """The exact guided step's draws and density: the conditional transition at s = 1, reweighted by
    p_{t'}(y | x')^(s - 1) otherwise. At s != 1 the mean and covariance come from another, ten times
    larger set of draws: fitted on the draws they are then scored on, a Gaussian's log-determinant is
    biased low by about d(d + 1) / (2n) per point (-0.02 nats at d = 8, n = 1000), which made the
    moment-matched floor negative."""
    conditional = exact_step(mixture, setting)
    draws = conditional.sample(num_draws, generator=generator)
    log_density = conditional.log_prob(draws)
    if setting.scale == 1:
        weights = torch.full(log_density.shape, 1 / num_draws, dtype=torch.float64)
        return Target(draws, log_density, weights, conditional.mean(), conditional.covariance())
    _require_markov(setting)
    log_tilt = _log_tilt(mixture, setting, draws)
    log_z = torch.logsumexp(log_tilt, dim=1, keepdim=True) - math.log(num_draws)   # Z / p_t(y | x_t), estimated
    moment_draws = conditional.sample(MOMENT_DRAWS_FACTOR * num_draws, generator=generator)
    moment_weights = torch.softmax(_log_tilt(mixture, setting, moment_draws), dim=1)
    mean = (moment_weights[..., None] * moment_draws).sum(1)
    centred = moment_draws - mean[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", moment_weights, centred, centred)
    return Target(draws, log_density + log_tilt - log_z, torch.softmax(log_tilt, dim=1), mean, cov)


def _log_tilt(mixture: LabelledMixture, setting: StepSetting, draws: torch.Tensor) -> torch.Tensor:
    """(s - 1) log p_{t'}(y | x') at the draws [B, n, d], [B, n]."""
    b, n, d = draws.shape
    abar = float64_scalar(setting.abar_next).expand(b * n, 1)
    log_classifier = mixture.class_log_prob(draws.reshape(b * n, d), abar).reshape(b, n, -1)
    return (setting.scale - 1) * log_classifier[torch.arange(b), :, setting.y]


def _require_markov(setting: StepSetting) -> None:
    markov = float(ddpm_sigma2(setting.abar_t, setting.abar_next))
    if not math.isclose(setting.sigma2, markov, rel_tol=1e-9):
        raise ValueError(f"a scale s != 1 reweights the transition by p(y | x')^(s - 1), which needs the Markov "
                         f"step sigma_t^2 = beta~ = {markov:.4g}, got {setting.sigma2:.4g} (seed eq. 1.3)")


def gaussian_log_prob(points: torch.Tensor, step: GaussianStep) -> torch.Tensor:
    """log N(points; mean, cov) for points [B, n, d], [B, n]."""
    return GaussianSum(torch.zeros(len(step.mean), 1, dtype=torch.float64), step.mean[:, None],
                       step.cov[:, None]).log_prob(points)


def gaussian_kl(mean0: torch.Tensor, cov0: torch.Tensor, mean1: torch.Tensor, cov1: torch.Tensor) -> torch.Tensor:
    """KL(N(mean0, cov0) || N(mean1, cov1)) per row, [B], in closed form."""
    chol1 = torch.linalg.cholesky(cov1)
    diff = (mean1 - mean0)[..., None]
    trace = torch.diagonal(torch.cholesky_solve(cov0, chol1), dim1=-2, dim2=-1).sum(-1)
    mahalanobis = (diff * torch.cholesky_solve(diff, chol1)).sum((-1, -2))
    logdet1 = 2 * torch.diagonal(chol1, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mahalanobis - mean0.shape[-1] + logdet1 - torch.logdet(cov0))


def non_gaussianity(target: Target) -> torch.Tensor:
    """KL(target || its moment-matched Gaussian) per row, [B]: the only Monte Carlo part of every KL."""
    matched = GaussianStep(target.mean, target.cov, torch.zeros(len(target.mean), dtype=torch.bool))
    return (target.weights * (target.log_density - gaussian_log_prob(target.draws, matched))).sum(1)


def kl_per_point(target: Target, step: GaussianStep) -> torch.Tensor:
    """KL(target || N(mean, cov)) per row, [B], by the exponential family's Pythagorean identity:

        KL(p || q) = KL(p || g_p) + KL(g_p || q),   g_p = N(E_p[x], Cov_p[x]),

    exact because E_p[log q] and E_p[log g_p] depend on p only through its first two moments. The
    first term is estimated from the draws, where log p - log g_p varies little; the second is closed
    form. (Averaging log p - log q over draws directly is unbiased too, but its noise is of the order
    of the small KLs being compared.)"""
    return non_gaussianity(target) + gaussian_kl(target.mean, target.cov, step.mean, step.cov)


def w2_to_point(target: Target, point: torch.Tensor) -> torch.Tensor:
    """W2(target, delta_point) per row, [B], from the target's moments."""
    bias = ((target.mean - point) ** 2).sum(-1)
    return (bias + torch.diagonal(target.cov, dim1=-2, dim2=-1).sum(-1)).sqrt()


def bootstrap_mean(values: torch.Tensor, generator: torch.Generator, fallback_share: float = 0.0) -> Estimate:
    """The mean of per-point values with a 95% percentile-bootstrap interval over the points."""
    return bootstrap_ratio(values, torch.ones_like(values), generator, fallback_share)


def bootstrap_ratio(numerator: torch.Tensor, denominator: torch.Tensor, generator: torch.Generator,
                    fallback_share: float = 0.0) -> Estimate:
    """sum(numerator) / sum(denominator) over the points, with a 95% percentile-bootstrap interval
    (the same resampled points for both sums)."""
    index = torch.randint(len(numerator), (BOOTSTRAP_RESAMPLES, len(numerator)), generator=generator)
    ratios = numerator[index].sum(1) / denominator[index].sum(1)
    low, high = torch.quantile(ratios, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Estimate(float(numerator.sum() / denominator.sum()), low, high, fallback_share)


def mean_part(target: Target, step: GaussianStep, divergence: str) -> torch.Tensor:
    """The part of a rule's error its mean alone makes, per row: for KL, (1/2) |E[x'] - m|^2 in the
    rule's own metric Sigma^-1 (the Pythagorean split's last term, which guidance moves); for W2,
    |E[x'] - m|, the distance from the rule's point to the target's mean."""
    diff = target.mean - step.mean
    if divergence == "w2":
        return diff.norm(dim=-1)
    solved = torch.cholesky_solve(diff[..., None], torch.linalg.cholesky(step.cov))
    return 0.5 * (diff[..., None] * solved).sum((-1, -2))


FIRST_ORDER = "mean_shift"  # the rule every other one is compared with, point by point


def rule_errors(mixture: LabelledMixture, setting: StepSetting, num_draws: int,
                generator: torch.Generator) -> dict[str, dict[str, Estimate]]:
    """Every rule's error against the guided target at this setting, as its ``total``, its
    ``mean_part`` and ``minus_mean_shift`` (its total minus the first-order rule's at the same points:
    a paired difference, whose interval decides "better than eq. 1.10"; for a second-order rule also
    ``minus_first_order``, against the first-order rule on the same base), and `moment_matched`'s floor;
    at s = 1 also `unguided_floor`: the unguided Gaussian step against the exact unconditional
    transition, the error every Gaussian step shares before any guidance."""
    target = guided_target(mixture, setting, num_draws, generator)
    steps = {name: rule(mixture, setting) for name, rule in RULES.items() if name != "unguided"}
    steps["moment_matched"] = GaussianStep(target.mean, target.cov if setting.sigma2 > 0 else 0 * target.cov,
                                           torch.zeros(len(target.mean), dtype=torch.bool))
    divergence = "kl" if setting.sigma2 > 0 else "w2"
    totals = {name: _total(target, step, divergence) for name, step in steps.items()}
    errors = {}
    for name, step in steps.items():
        fallback = float(step.fallback.double().mean())
        errors[name] = {"total": bootstrap_mean(totals[name], generator, fallback),
                        "mean_part": bootstrap_mean(mean_part(target, step, divergence), generator, fallback),
                        "minus_mean_shift": bootstrap_mean(totals[name] - totals[FIRST_ORDER], generator, fallback)}
        if name in FIRST_ORDER_OF:  # a second-order rule against the first-order rule it extends
            paired = totals[name] - totals[FIRST_ORDER_OF[name]]
            errors[name]["minus_first_order"] = bootstrap_mean(paired, generator, fallback)
    if setting.scale == 1:
        unconditional = exact_step(mixture, setting, conditional=False)
        draws = unconditional.sample(num_draws, generator=generator)
        floor = Target(draws, unconditional.log_prob(draws), torch.full(draws.shape[:2], 1 / num_draws,
                       dtype=torch.float64), unconditional.mean(), unconditional.covariance())
        step = RULES["unguided"](mixture, setting)
        errors["unguided_floor"] = {"total": bootstrap_mean(_total(floor, step, divergence), generator),
                                    "mean_part": bootstrap_mean(mean_part(floor, step, divergence), generator)}
    return errors


def _total(target: Target, step: GaussianStep, divergence: str) -> torch.Tensor:
    return kl_per_point(target, step) if divergence == "kl" else w2_to_point(target, step.mean)


def tweedie_gradient_error(mixture: LabelledMixture, abar_t: float, num_points: int,
                           generator: torch.Generator) -> dict[str, Estimate]:
    """The Tweedie gradient against the exact one at points of the chain, each with its bootstrap
    interval over the points:

    - ``relative_error``: E|g_tweedie - g| / E|g| (a ratio of means: where the classes are far apart
      both gradients are ~1e-40, and a mean of per-point ratios would average rounding);
    - ``eps_error``: E[sqrt(1 - abar_t) |g_tweedie - g|], the error in the eps shift the score form
      makes at s = 1 (D&N eq. 14), in the units of eps."""
    x_t, y = points_on_the_chain(mixture, abar_t, num_points, generator)
    exact = mixture.class_log_prob_grad(x_t, float64_scalar(abar_t).expand(len(x_t), 1), y)
    error = (tweedie_gradient(mixture, x_t, abar_t, y) - exact).norm(dim=-1)
    return {"relative_error": bootstrap_ratio(error, exact.norm(dim=-1), generator),
            "eps_error": bootstrap_mean(math.sqrt(1 - abar_t) * error, generator)}
