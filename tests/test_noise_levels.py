"""diffguide.diffusion.noise_levels: the torch-free abar_t the config checks read equals the
samplers' tables, and its amplification factor is the one the score-form guidance code applies to
x0, measured on the exact mixture's Bayes classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffguide.diffusion.noise_levels import SATURATING_SHIFT, alphas_cumprod, respaced_timesteps, score_shift_factor
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, three_class_mixture
from diffguide.guidance.wrappers import ClassifierGuidance


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("timesteps", [37, 100, 1000])
def test_abar_equals_the_samplers_table(schedule, timesteps):
    ours = alphas_cumprod(schedule, timesteps)
    theirs = NoiseSchedule.make(schedule, timesteps).alphas_cumprod.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=0)


def test_an_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="'quadratic'.*cosine"):
        alphas_cumprod("quadratic", 10)


@pytest.mark.parametrize("t", [10, 500, 960, 999])
def test_the_factor_is_how_far_the_score_form_moves_x0(t):
    """x0_hat(eps_hat) - x0_hat(eps) = (1 - abar_t) / sqrt(abar_t) * s * grad log p(y | x_t), with
    eps_hat the pipeline's classifier guidance (D&N Alg. 2) of the exact mixture, in float64."""
    schedule = NoiseSchedule.make("cosine", 1000)
    mixture = three_class_mixture()
    model, classifier = MixtureEpsModel(mixture, schedule), MixtureClassifier(mixture, schedule)
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
    steps, labels, scale = torch.full((4,), t), torch.tensor([0, 1, 2, 0]), 3.0
    guided = ClassifierGuidance(model, classifier, scale, schedule)(x, steps, labels)
    shift = schedule.predict_x0(x, steps, guided) - schedule.predict_x0(x, steps, model(x, steps, None))
    gradient = classifier.log_prob_grad(x, steps, labels)
    abar = float(schedule.alphas_cumprod[t])
    # x0_hat divides by sqrt(abar): its rounding grows with 1 / sqrt(abar) (2e4 at t = 999)
    torch.testing.assert_close(shift, score_shift_factor(abar) * scale * gradient, rtol=1e-9, atol=1e-12 / abar**0.5)


def test_the_threshold_flags_cosine_from_t_minus_1_and_not_the_linear_schedule_or_leading_starts():
    def first_factor(schedule, timesteps, steps, spacing):
        return score_shift_factor(alphas_cumprod(schedule, timesteps)[respaced_timesteps(timesteps, steps, spacing)[0]])

    assert first_factor("cosine", 1000, 50, "linspace") > 20_000 > SATURATING_SHIFT  # issue 27's noise
    assert first_factor("cosine", 100, 4, "trailing") > SATURATING_SHIFT
    assert first_factor("linear", 1000, 250, "linspace") < SATURATING_SHIFT  # D&N's ImageNet setting
    assert first_factor("cosine", 1000, 25, "leading") < 20  # the default run's start, t = 960
