"""Independent condition guidance (diffguide.guidance.methods.icg) in float64 on exact Gaussian
mixtures: the formula given its draws, CFG when the drawn condition is the null one (eps by eps and
through clipped chains), the draws uniform and independent of y, and what ICG estimates: the uniform
average of the class predictions, which is the unconditional eps only where p_t(y | x_t) is uniform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim, sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.exact.gaussian_mixture import GaussianMixture, MixtureEpsModel, random_mixture
from diffguide.guidance.methods.icg import wrapper as icg
from diffguide.guidance.wrappers import NULL_LABEL, build_classifier_free

F64 = torch.float64
SHAPE = (1, 4, 4)
K = 4
W = 3.0


@pytest.fixture(scope="module")
def setting():
    g = torch.Generator().manual_seed(3)
    schedule = NoiseSchedule.make("cosine", 1000)
    model = MixtureEpsModel(random_mixture(K, 16, g, spread=1.0), schedule)  # num_classes K, as an EpsUNet
    x = 1.5 * torch.randn(12, *SHAPE, generator=g, dtype=F64)
    y = torch.randint(0, K, (12,), generator=g)
    return schedule, model, x, y


def icg_eps(model, w, schedule, clip_x0=False):
    return icg.build_icg({"eps_model": model}, w, schedule, clip_x0=clip_x0, options={}).model


@pytest.mark.parametrize("t", [5, 250, 750, 999])
def test_given_its_draws_icg_is_cfg_with_the_drawn_class_for_the_null_one(setting, t):
    schedule, model, x, y = setting
    tt = torch.full((len(x),), t)
    y_hat = icg.independent_labels(tt, K)
    expected = (1 + W) * model(x, tt, y) - W * model(x, tt, y_hat)
    assert (icg_eps(model, W, schedule)(x, tt, y) - expected).abs().max().item() < 1e-12
    assert torch.equal(icg_eps(model, 0.0, schedule)(x, tt, y), model(x, tt, y))  # w = 0: the conditional model


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_drawing_the_null_label_is_cfg_through_a_clipped_chain(setting, monkeypatch, sampler):
    schedule, model, x, y = setting
    monkeypatch.setattr(icg, "independent_labels", lambda t, k: torch.full((len(t),), NULL_LABEL))
    timesteps = respaced_timesteps(1000, 6, "leading")
    run = sample_ddim if sampler == "ddim" else sample_ddpm

    def chain(guided):
        noise = PerSampleNoise(0, list(range(len(x))))
        return run(guided, noise.initial(SHAPE, dtype=F64), timesteps, schedule=schedule, labels=y, noise=noise)

    cfg = build_classifier_free({"eps_model": model}, W, schedule, clip_x0=True, options={}).model
    assert (chain(icg_eps(model, W, schedule, clip_x0=True)) - chain(cfg)).abs().max().item() < 1e-12


def test_the_draws_are_uniform_independent_of_y_and_reproducible_per_step():
    t = torch.full((500,), 0)
    counts = np.zeros((K, K))
    y = torch.arange(500) % K
    for step in range(0, 1000, 10):
        y_hat = icg.independent_labels(t + step, K)
        assert torch.equal(y_hat, icg.independent_labels(t + step, K))
        np.add.at(counts, (y.numpy(), y_hat.numpy()), 1)
    # a K x K contingency table of (y, y_hat): uniform margins, no association (5% level)
    assert stats.chisquare(counts.sum(0)).pvalue > 0.05
    assert stats.chi2_contingency(counts).pvalue > 0.05
    assert not torch.equal(icg.independent_labels(t + 10, K), icg.independent_labels(t + 20, K))


def test_in_expectation_it_estimates_the_uniform_average_of_the_classes_the_unconditional_eps_at_high_noise():
    """E over y_hat of eps(x, y_hat) = (1 / K) sum_k eps(x, k); the unconditional eps is
    sum_k p_t(k | x) eps(x, k), equal to it where the posterior is uniform: at t = 999 (abar 2e-9)
    for equal class weights, and not at t = 250."""
    g = torch.Generator().manual_seed(5)
    base = random_mixture(K, 16, g, spread=1.0)
    mixture = GaussianMixture(base.means, base.covs, torch.full((K,), 1.0 / K, dtype=F64))
    schedule = NoiseSchedule.make("cosine", 1000)
    model = MixtureEpsModel(mixture, schedule)
    x = torch.randn(6, *SHAPE, generator=g, dtype=F64)

    def gap(t):
        tt = torch.full((len(x),), t)
        average = sum(model(x, tt, torch.full((len(x),), k)) for k in range(K)) / K
        return (average - model(x, tt, torch.full((len(x),), NULL_LABEL))).abs().max().item()

    assert gap(999) < 1e-6 and gap(250) > 1e-2


def test_a_model_without_classes_is_refused_by_name():
    schedule = NoiseSchedule.make("cosine", 1000)
    with pytest.raises(ValueError, match="icg guides a class-conditional eps-model"):
        icg.build_icg({"eps_model": torch.nn.Identity()}, 1.0, schedule, clip_x0=True, options={})
