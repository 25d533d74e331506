"""Whole chains on the exact mixture (diffguide.exact.chain_errors): the energy distance, the
sharpened target's draws, and chains whose answer is known.

- the energy distance equals its definition on small sets, its bootstrap multiplicities of one are
  the plain statistic, two exact samples score 0 within the interval and shifted ones do not;
- p(x) p(y | x)^s / Z(x) drawn by rejection has the grid's mean (1-D);
- a chain of exact steps ends at p(x | y) (interval contains 0); so does the score form at s = 1
  (the perfect conditional model) with 100 DDIM steps, while the mean shift under DDIM does not guide.
"""

from __future__ import annotations

import math

import torch

from diffguide.exact.approximation_study import StudySize, chain_steps, study_mixture
from diffguide.exact.chain_errors import (ChainSpec, _distances, _weighted_energy, chain_error, energy_distance,
                                          run_chain, sharpened_draws)
from diffguide.exact.labelled_mixture import two_modes_per_class


def test_the_energy_distance_is_its_definition_on_small_sets():
    a = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    b = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    cross = sum(abs(x - y) for x in (0.0, 1.0, 3.0) for y in (0.5, 2.0)) / 6
    within_a = 2 * (1 + 3 + 2) / 6
    within_b = 2 * 1.5 / 2
    assert math.isclose(float(energy_distance(a, b)), 2 * cross - within_a - within_b, rel_tol=1e-12)
    weights = torch.tensor([[2.0, 0.0, 1.0]], dtype=torch.float64)  # a resample: point 0 twice, point 2 once
    resampled = _weighted_energy(*_distances(a, b), weights, torch.ones(1, 2, dtype=torch.float64))[0]
    # pairs of distinct original points only: (0, 2) twice each way -> within = 3
    assert math.isclose(float(resampled), 2 * (2 * (0.5 + 2.0) + (2.5 + 1.0)) / 6 - 3.0 - within_b, rel_tol=1e-12)


def test_two_exact_samples_score_zero_within_the_interval_and_a_shift_does_not():
    mixture = two_modes_per_class(2, torch.Generator().manual_seed(40))
    gen = torch.Generator().manual_seed(41)
    y = torch.arange(900) % 3
    first, second = mixture.sample(y, generator=gen), mixture.sample(y, generator=gen)
    same = chain_error(mixture, first, second, y, gen)
    assert same.low < 0 < same.high
    shifted = chain_error(mixture, first + 0.3, second, y, gen)
    assert shifted.low > 0


def test_the_sharpened_targets_draws_have_the_grids_mean_in_1d():
    mixture = two_modes_per_class(1, torch.Generator().manual_seed(42))
    y = torch.full((40_000,), 1)
    draws = sharpened_draws(mixture, y, 3.0, torch.Generator().manual_seed(43))
    x = torch.linspace(-8, 8, 16_001, dtype=torch.float64)
    log_p = mixture.components.log_prob(x[:, None])
    log_class = mixture.class_log_prob(x[:, None], torch.ones(len(x), 1, dtype=torch.float64))
    density = (log_p + 3 * log_class[:, 1] - torch.logsumexp(3 * log_class, dim=-1)).exp()
    density = density / torch.trapezoid(density, x)
    mean = torch.trapezoid(x * density, x)
    sd = torch.trapezoid((x - mean) ** 2 * density, x).sqrt()
    assert abs(float(draws.mean() - mean)) < 4 * float(sd) / math.sqrt(40_000)


def test_a_chain_of_exact_steps_and_the_perfect_conditional_model_end_at_the_class():
    mixture = study_mixture(2)
    gen = torch.Generator().manual_seed(44)
    y = torch.arange(900) % 3
    exact_end = sharpened_draws(mixture, y, 1.0, gen)
    ddpm = ChainSpec(chain_steps(StudySize(num_steps=10)), eta=1.0, scale=1.0)
    ddim = ChainSpec(chain_steps(StudySize(num_steps=100)), eta=0.0, scale=1.0)
    exact = chain_error(mixture, run_chain(mixture, "exact", ddpm, y, gen), exact_end, y, gen)
    assert exact.low < 0 < exact.high
    score = chain_error(mixture, run_chain(mixture, "score_form", ddim, y, gen), exact_end, y, gen)
    assert score.low < 0 < score.high
    mean_shift = chain_error(mixture, run_chain(mixture, "mean_shift", ddim, y, gen), exact_end, y, gen)
    assert mean_shift.low > 0.1  # DDIM has no variance for the mean shift to act through
