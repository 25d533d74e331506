"""Whole chains: where each rule's samples end up, against exact draws of what they aim at (issue 28).

A chain starts from exact draws of p_{t_1}(x | y) at its first timestep t_1 (so the start adds no
error of its own) and takes every step with one rule of `step_rules`, drawing from the rule's
Gaussian (or moving to its mean, for DDIM). Its end is compared with exact draws of the target:

    s = 1:  p(x_0 | y)
    s > 1:  (b) p(x_0) p(y | x_0)^s / Z(x_0),  Z(x_0) = sum_y' p(y' | x_0)^s   (D&N sec. 4.3's reading of s)
            (c) p(x_0) p(y | x_0)^s / const, the unnormalised tilt, whose scores guidance follows at
            every noise level (docs/equations.md parts 8-9; the sharpening figure draws both),
            each drawn by rejection from p(x_0). Where the classes barely overlap, (b) is close to
            p(x_0 | y) itself; (c) is sharper.

by the energy distance (Szekely & Rizzo 2013), per class and averaged over the classes:

    E(P, Q) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|,

zero only for equal distributions, with unbiased within-sample terms (pairs i != j), so two exact
samples score 0 on average. Its interval: a 95% percentile bootstrap that resamples both sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffguide.exact.labelled_mixture import LabelledMixture
from diffguide.exact.step_errors import Estimate
from diffguide.exact.step_rules import RULES, GaussianStep, StepSetting, exact_step
from diffguide.exact.transition import ddpm_sigma2, float64_scalar

CHAIN_BOOTSTRAP_RESAMPLES = 200


@dataclass(frozen=True)
class ChainSpec:
    """A chain: its steps (t, t', abar_t, abar_t') from `approximation_study.chain_steps`, its eta
    (1 is DDPM's beta~, 0 is DDIM) and its scale s."""

    steps: list[tuple[int, int, float, float]]
    eta: float
    scale: float


def _draw(step: GaussianStep, generator: torch.Generator) -> torch.Tensor:
    """One draw per row from N(mean, cov); the mean itself where cov is zero (DDIM, the last step)."""
    if not step.cov.abs().sum():
        return step.mean
    noise = torch.randn(step.mean.shape, generator=generator, dtype=torch.float64)
    chol = torch.linalg.cholesky(step.cov)
    return step.mean + torch.einsum("bij,bj->bi", chol, noise)


def moment_matched(mixture: LabelledMixture, setting: StepSetting) -> GaussianStep:
    """The exact conditional transition's mean and covariance (the best Gaussian at s = 1)."""
    target = exact_step(mixture, setting)
    return GaussianStep(target.mean(), target.covariance(), torch.zeros(len(setting.x_t), dtype=torch.bool))


def exact_draw(mixture: LabelledMixture, setting: StepSetting, generator: torch.Generator) -> torch.Tensor:
    """One exact draw of p(x_{t'} | x_t, y) per row: the chain with no rule error (at s = 1)."""
    return exact_step(mixture, setting).sample(1, generator=generator)[:, 0]


def run_chain(mixture: LabelledMixture, rule: str, spec: ChainSpec, y: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """x_0 of one chain per label, every step taken by ``rule`` (a `step_rules.RULES` name,
    ``moment_matched`` or ``exact``)."""
    x = mixture.sample_noised(y, spec.steps[0][2], generator)  # x_{t_1} ~ p_{t_1}(x | y): the start adds no error
    for _, _, abar_t, abar_next in spec.steps:
        sigma2 = spec.eta**2 * float(ddpm_sigma2(abar_t, abar_next))
        setting = StepSetting(x, y, abar_t, abar_next, sigma2, spec.scale)
        if rule == "exact":
            x = exact_draw(mixture, setting, generator)
            continue
        step = moment_matched(mixture, setting) if rule == "moment_matched" else RULES[rule](mixture, setting)
        x = _draw(step, generator)
    return x


def sharpened_draws(mixture: LabelledMixture, y: torch.Tensor, scale: float,
                    generator: torch.Generator, normalised: bool = True) -> torch.Tensor:
    """Exact draws of p(x_0) p(y | x_0)^s / Z(x_0) (``normalised``) or of p(x_0) p(y | x_0)^s / const,
    one per label, by rejection from p(x_0): a draw is kept with probability p(y | x_0)^s / Z(x_0),
    or p(y | x_0)^s (both <= 1). At s = 1 both are p(x_0 | y)."""
    if scale == 1:
        return mixture.sample(y, generator=generator)
    out = torch.empty(len(y), mixture.dim, dtype=torch.float64)
    missing = torch.ones(len(y), dtype=torch.bool)
    components = mixture.components
    while missing.any():
        index = missing.nonzero()[:, 0]
        proposal = components.sample(torch.multinomial(components.weights, len(index), replacement=True,
                                                       generator=generator), generator=generator)
        log_class = mixture.class_log_prob(proposal, torch.ones(len(index), 1, dtype=torch.float64))
        log_keep = scale * log_class[torch.arange(len(index)), y[index]]
        if normalised:
            log_keep = log_keep - torch.logsumexp(scale * log_class, dim=-1)
        keep = torch.rand(len(index), generator=generator, dtype=torch.float64).log() < log_keep
        out[index[keep]] = proposal[keep]
        missing[index[keep]] = False
    return out


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| with the within-sample means over pairs i != j."""
    ones = lambda x: torch.ones(1, len(x), dtype=torch.float64)  # noqa: E731
    return _weighted_energy(*_distances(a, b), ones(a), ones(b))[0]


def _distances(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.cdist(a, b), torch.cdist(a, a), torch.cdist(b, b)


def _weighted_energy(cross, within_a, within_b, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """The energy distance with each point counted w times, for R rows of multiplicities at once
    (``wa`` [R, n_a], ``wb`` [R, n_b]: a bootstrap's resamples), [R]. Pairs of one point with itself
    (or its copies) are left out of the within-sample means, so a resample's duplicates do not pull
    them down."""
    def within(d, w):
        return ((w @ d) * w).sum(1) / (w.sum(1) ** 2 - (w**2).sum(1))

    between = ((wa @ cross) * wb).sum(1) / (wa.sum(1) * wb.sum(1))
    return 2 * between - within(within_a, wa) - within(within_b, wb)


def chain_error(mixture: LabelledMixture, samples: torch.Tensor, exact: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator) -> Estimate:
    """The class-averaged energy distance between a chain's samples and exact draws (same labels),
    with a 95% percentile bootstrap that resamples both sets within each class (the distance
    matrices computed once, every resample's multiplicities at once)."""
    def multiplicities(n: int, rows: int) -> torch.Tensor:
        picks = torch.randint(n, (rows, n), generator=generator)
        counts = torch.zeros(rows, n, dtype=torch.float64)
        return counts.scatter_add_(1, picks, torch.ones(rows, n, dtype=torch.float64))

    values, resampled = [], []
    for c in range(mixture.num_classes):
        distances = _distances(samples[y == c], exact[y == c])
        n_a, n_b = len(distances[1]), len(distances[2])
        once = lambda n: torch.ones(1, n, dtype=torch.float64)  # noqa: E731
        values.append(_weighted_energy(*distances, once(n_a), once(n_b)))
        resampled.append(_weighted_energy(*distances, multiplicities(n_a, CHAIN_BOOTSTRAP_RESAMPLES),
                                          multiplicities(n_b, CHAIN_BOOTSTRAP_RESAMPLES)))
    low, high = torch.quantile(torch.stack(resampled).mean(0), float64_scalar([0.025, 0.975])).tolist()
    return Estimate(float(torch.stack(values).mean()), low, high)
