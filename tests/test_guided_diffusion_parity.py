"""Peer test: diffguide's classifier guidance, in the pipeline's default settings, equals
openai/guided-diffusion's algorithm (tests/guided_diffusion_reference.py) step for step.

On an exact Gaussian mixture (float64, its closed-form eps and classifier gradient), one step and
a whole 10-step chain agree to 1e-8, with x0 clipping on and off, s in {0, 1, 3, 10}:
- the score form under DDIM (``ddim_sample`` + ``condition_score``), eta in {0, 0.5};
- the mean form under ancestral sampling (``p_sample`` + ``condition_mean``), Sigma = beta~
  (fixedsmall) and beta (fixedlarge), including guided-diffusion's last-step variance;
for both timestep spacings (linspace = guided-diffusion's "K", leading = its "ddimK"). The
mixture's means spread beyond [-1, 1], so clipping changes most predictions; a control shows the
other clip order (``cg_clip_order: guided_x0``) of the score form is far from the reference, so the
test can fail (the mean form refuses that order).
"""

from __future__ import annotations

import pytest
import torch
import yaml
from guided_diffusion_reference import GuidedDiffusionReference, space_timesteps

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import SAMPLERS, ddim_step, ddpm_step, ddpm_variance, last_step_shift_variance
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.guidance.wrappers import classifier_guided
from diffguide.pipeline.config_schema import SCHEMA_PATH

F64 = torch.float64
T, STEPS, DIM, BATCH = 1000, 10, 3, 12
TOL = 1e-8
SCALES = [0.0, 1.0, 3.0, 10.0]
GD_SPACING = {"linspace": str(STEPS), "leading": f"ddim{STEPS}"}  # guided-diffusion's names
GD_VARIANCE = {"beta_tilde": "fixedsmall", "beta": "fixedlarge"}
SCHEMA = SCHEMA_PATH


def pipeline_defaults() -> dict:
    """The defaults of the keys that decide how classifier guidance clips, from the schema."""
    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    default = lambda section, key: props[section]["properties"][key]["default"]  # noqa: E731
    return {"clip_order": default("guidance", "cg_clip_order"), "spacing": default("sampling", "timestep_spacing")}


@pytest.fixture(scope="module")
def mixture_setting():
    g = torch.Generator().manual_seed(11)
    mixture = random_mixture(4, DIM, g, spread=1.5)
    schedule = NoiseSchedule.make("cosine", T)
    eps, classifier = MixtureEpsModel(mixture, schedule), MixtureClassifier(mixture, schedule)
    x = 1.5 * torch.randn(BATCH, DIM, generator=g, dtype=F64)
    y = torch.randint(0, 4, (BATCH,), generator=g)
    return schedule, eps, classifier, x, y


def reference_for(schedule, spacing, variance="beta_tilde"):
    use = space_timesteps(T, GD_SPACING[spacing])
    assert sorted(use, reverse=True) == respaced_timesteps(T, STEPS, spacing)  # the two namings agree
    return GuidedDiffusionReference(schedule.betas.numpy(), use, GD_VARIANCE[variance])


def unconditional(eps):
    """guided-diffusion's unconditional model: it ignores the y its model_kwargs carry."""
    return lambda x, t, y: eps(x, t, None)


def cond_fn_of(classifier, scale):
    """guided-diffusion's cond_fn: s * grad log p(y | x_t), here in closed form."""
    return lambda x, t, y: scale * classifier.log_prob_grad(x, t, y)


def ours(eps, classifier, scale, schedule, form, clip, clip_order=None):
    """guidance.Guided: the eps-model and (mean form) the cond_fn hook, as the pipeline builds them."""
    return classifier_guided(eps, classifier, scale, schedule, form=form, clip_x0=clip,
                             clip_order=clip_order or pipeline_defaults()["clip_order"])


def one_step_errors(mixture_setting, form, clip, scale, spacing, eta=0.0, variance="beta_tilde", clip_order=None):
    """Max |ours - reference| of one step from the same x and noise, at every step of the sequence."""
    schedule, eps, classifier, x, y = mixture_setting
    ref, ref_model = reference_for(schedule, spacing, variance), unconditional(eps)
    guided = ours(eps, classifier, scale, schedule, form, clip, clip_order)
    cond_fn = cond_fn_of(classifier, scale) if scale else None
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    steps = schedule.steps(respaced_timesteps(T, STEPS, spacing), like=x)
    worst = 0.0
    for k, step in enumerate(steps):
        i = torch.full((BATCH,), STEPS - 1 - k, dtype=torch.long)  # guided-diffusion's respaced index
        t = torch.full((BATCH,), step.t)
        assert torch.equal(ref.original_t(i), t)
        if form == "score":
            expected = ref.ddim_sample(ref_model, x, i, y, noise, clip, cond_fn, eta)
            got = ddim_step(x, guided.model(x, t, y), step=step, eta=eta, noise=noise)
        else:
            expected = ref.p_sample(ref_model, x, i, y, noise, clip, cond_fn)
            got = ddpm_step(x, guided.model(x, t, y), step=step, sigma2=ddpm_variance(step, variance),
                            noise=None if step.is_last else noise, cond_fn=guided.cond_fn, labels=y,
                            shift_sigma2=last_step_shift_variance(steps, variance) if step.is_last else None)
        worst = max(worst, (got - expected).abs().max().item())
    return worst


def chain_error(mixture_setting, form, clip, scale, spacing, eta=0.0, variance="beta_tilde"):
    """Max |ours - reference| after a 10-step chain: ours is diffguide.diffusion.samplers.SAMPLERS[sampler] as
    stages.generate calls it, the reference gets the same initial noise and per-step draws (sample
    i's generator)."""
    schedule, eps, classifier, _, y = mixture_setting
    ref, ref_model = reference_for(schedule, spacing, variance), unconditional(eps)
    cond_fn = cond_fn_of(classifier, scale) if scale else None
    guided = ours(eps, classifier, scale, schedule, form, clip)
    sampler, options = ("ddim", {"eta": eta}) if form == "score" else ("ddpm", {"variance": variance})
    noise = PerSampleNoise(3, range(BATCH))
    got = SAMPLERS[sampler](guided.model, noise.initial((DIM,), dtype=F64), respaced_timesteps(T, STEPS, spacing),
                            schedule=schedule, labels=y, noise=noise, cond_fn=guided.cond_fn, progress=False, **options)
    ref_noise = PerSampleNoise(3, range(BATCH))
    x = ref_noise.initial((DIM,), dtype=F64)
    for index in range(STEPS - 1, -1, -1):
        i = torch.full((BATCH,), index, dtype=torch.long)
        noise = ref_noise(x) if index > 0 else torch.zeros_like(x)
        if form == "score":
            x = ref.ddim_sample(ref_model, x, i, y, noise, clip, cond_fn, eta)
        else:
            x = ref.p_sample(ref_model, x, i, y, noise, clip, cond_fn)
    return (got - x).abs().max().item()


@pytest.mark.parametrize("spacing", ["linspace", "leading"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("clip", [True, False])
def test_score_form_under_ddim_equals_guided_diffusion(mixture_setting, clip, scale, eta, spacing):
    assert one_step_errors(mixture_setting, "score", clip, scale, spacing, eta) < TOL
    assert chain_error(mixture_setting, "score", clip, scale, spacing, eta) < TOL


@pytest.mark.parametrize("spacing", ["linspace", "leading"])
@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("clip", [True, False])
def test_mean_form_under_ancestral_sampling_equals_guided_diffusion(mixture_setting, clip, scale, variance, spacing):
    assert one_step_errors(mixture_setting, "mean", clip, scale, spacing, variance=variance) < TOL
    assert chain_error(mixture_setting, "mean", clip, scale, spacing, variance=variance) < TOL


def test_the_pipeline_defaults_are_the_reference_order():
    """guided-diffusion's clip order, and its ddimK spacing (leading; parity is tested for both)."""
    assert pipeline_defaults() == {"clip_order": "unguided_x0", "spacing": "leading"}


@pytest.mark.parametrize("form", ["score", "mean"])
def test_the_other_clip_order_is_not_the_reference(mixture_setting, form):
    """Control: clipping the guided x0 (the former order) moves the score form's steps by far more
    than TOL at s = 10, so the parity above is not vacuous; the mean form has no such order (it is
    refused, naming the config keys); without clipping the two orders coincide."""
    if form == "score":
        assert one_step_errors(mixture_setting, form, True, 10.0, "linspace", clip_order="guided_x0") > 1e-2
    else:
        with pytest.raises(ValueError, match="guidance.cg_clip_order"):
            one_step_errors(mixture_setting, form, True, 10.0, "linspace", clip_order="guided_x0")
    assert one_step_errors(mixture_setting, form, False, 10.0, "linspace", clip_order="guided_x0") < TOL
