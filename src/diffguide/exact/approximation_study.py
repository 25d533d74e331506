"""The one-step study of issue 28: every rule's error at every step of a sampling chain, on three
mixtures (1-D, 2-D, 8-D; three classes of two components each), for three kinds of step.

    settings     DDPM step (sigma^2 = beta~) at s = 1 and s = 3, DDIM step (sigma = 0) at s = 1
    steps        the 25 leading-spaced timesteps of the cosine schedule, T = 1000 (the default run's)
    per step     `step_errors.rule_errors` on `num_points` points x_t ~ p_t(x_t | y), each with
                 `num_draws` exact draws of the target for the Monte Carlo part of the KL

Whole chains (`chain_rows`): for each dimension, setting and chain length (10, 25 and 100 leading-spaced
steps), `num_chains` chains of every rule, their ends against exact draws of the target
(`chain_errors`).

`study_rows` returns one row per (dimension, setting, step, rule), `tweedie_rows` one per
(dimension, step) and `chain_rows` one per (dimension, setting, chain length, rule): plain dicts,
written as CSV by the report (diffguide.reports.approximation_report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm import tqdm

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.chain_errors import ChainSpec, chain_error, run_chain, sharpened_draws
from diffguide.exact.labelled_mixture import LabelledMixture, two_modes_per_class
from diffguide.exact.step_errors import points_on_the_chain, rule_errors, tweedie_gradient_error
from diffguide.exact.step_rules import StepSetting
from diffguide.exact.transition import ddpm_sigma2


@dataclass(frozen=True)
class StepKind:
    """How a step draws (``eta`` of DDIM eq. 16: 1 is DDPM's beta~, 0 is DDIM) and the scale s."""

    name: str
    eta: float
    scale: float


STEP_KINDS = (StepKind("ddpm s=1", 1.0, 1.0), StepKind("ddpm s=3", 1.0, 3.0), StepKind("ddim s=1", 0.0, 1.0))
DIMENSIONS = (1, 2, 8)


@dataclass(frozen=True)
class StudySize:
    """What the study costs: points x_t per step, target draws per point, and the chain's steps."""

    num_points: int = 128
    num_draws: int = 1000
    num_steps: int = 25
    timesteps: int = 1000
    num_chains: int = 1200
    chain_lengths: tuple[int, ...] = (10, 25, 100)


def study_mixture(dim: int) -> LabelledMixture:
    """The fixed mixture of each dimension: three classes, two components each (seeded by d)."""
    return two_modes_per_class(dim, torch.Generator().manual_seed(2800 + dim))


def chain_steps(size: StudySize) -> list[tuple[int, int, float, float]]:
    """(t, t', abar_t, abar_t') for each step of the chain; t' = -1 after the last (abar = 1)."""
    schedule = NoiseSchedule.make("cosine", size.timesteps)
    table = schedule.alphas_cumprod
    ts = respaced_timesteps(size.timesteps, size.num_steps, "leading")
    nexts = ts[1:] + [-1]
    return [(t, n, float(table[t]), 1.0 if n < 0 else float(table[n])) for t, n in zip(ts, nexts)]


def _settings(size: StudySize) -> Iterator[tuple[int, StepKind, tuple[int, int, float, float]]]:
    for dim in DIMENSIONS:
        for kind in STEP_KINDS:
            for step in chain_steps(size):
                yield dim, kind, step


def study_rows(size: StudySize = StudySize(), seed: int = 0, progress: bool = True) -> list[dict]:
    """Every rule's error at every step, as rows of the study's CSV."""
    rows, generator = [], torch.Generator().manual_seed(seed)
    settings = list(_settings(size))
    for dim, kind, (t, t_next, abar_t, abar_next) in tqdm(settings, desc="one-step errors", disable=not progress):
        mixture = study_mixture(dim)
        x_t, y = points_on_the_chain(mixture, abar_t, size.num_points, generator)
        sigma2 = kind.eta**2 * float(ddpm_sigma2(abar_t, abar_next))
        setting = StepSetting(x_t, y, abar_t, abar_next, sigma2, kind.scale)
        divergence = "kl" if sigma2 > 0 else "w2"
        for rule, parts in rule_errors(mixture, setting, size.num_draws, generator).items():
            for part, estimate in parts.items():
                rows.append({"dim": dim, "setting": kind.name, "t": t, "t_next": t_next, "rule": rule,
                             "divergence": divergence, "part": part, "value": estimate.value, "low": estimate.low,
                             "high": estimate.high, "fallback_share": estimate.fallback_share})
    return rows


def tweedie_rows(size: StudySize = StudySize(), seed: int = 1, progress: bool = True) -> list[dict]:
    """The Tweedie gradient's relative error and its error in eps units against the exact gradient, per step."""
    rows, generator = [], torch.Generator().manual_seed(seed)
    steps = [(dim, step) for dim in DIMENSIONS for step in chain_steps(size)]
    for dim, (t, _, abar_t, _) in tqdm(steps, desc="tweedie gradient", disable=not progress):
        errors = tweedie_gradient_error(study_mixture(dim), abar_t, size.num_points, generator)
        rows.append({"dim": dim, "t": t, "abar": abar_t,
                     **{f"{name}{suffix}": getattr(estimate, field) for name, estimate in errors.items()
                        for suffix, field in (("", "value"), ("_low", "low"), ("_high", "high"))}})
    return rows


CHAIN_RULES = ("exact", "moment_matched", "conditional_model", "mean_shift", "target_level_gradient",
               "gradient_at_mean", "score_form", "laplace", "tweedie_mean_shift", "tweedie_score_form",
               "exact_base_mean_shift", "exact_base_laplace")
# What a chain at scale s is compared with (chain_errors): at s = 1 p(x | y); otherwise both readings.
CHAIN_TARGETS = {"normalised": True, "tilted": False}


def chain_rows(size: StudySize = StudySize(), seed: int = 2, progress: bool = True) -> list[dict]:
    """Every rule's chain against exact draws of its target, per dimension, setting and length. At
    s != 1 there is no exact step to draw or match (`exact`, `moment_matched` are left out)."""
    rows, generator = [], torch.Generator().manual_seed(seed)
    runs = [(dim, kind, length) for dim in DIMENSIONS for kind in STEP_KINDS for length in size.chain_lengths]
    for dim, kind, length in tqdm(runs, desc="chains", disable=not progress):
        mixture = study_mixture(dim)
        y = torch.arange(size.num_chains) % mixture.num_classes
        spec = ChainSpec(chain_steps(StudySize(num_steps=length, timesteps=size.timesteps)), kind.eta, kind.scale)
        readings = {"p(x|y)": True} if kind.scale == 1 else CHAIN_TARGETS  # at s = 1 both readings are p(x | y)
        targets = {name: sharpened_draws(mixture, y, kind.scale, generator, normalised)
                   for name, normalised in readings.items()}
        for rule in CHAIN_RULES:
            if kind.scale != 1 and rule in ("exact", "moment_matched"):
                continue
            samples = run_chain(mixture, rule, spec, y, generator)
            for target, exact in targets.items():
                estimate = chain_error(mixture, samples, exact, y, generator)
                rows.append({"dim": dim, "setting": kind.name, "steps": length, "rule": rule, "target": target,
                             "value": estimate.value, "low": estimate.low, "high": estimate.high})
    return rows
