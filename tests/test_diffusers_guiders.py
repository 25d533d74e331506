"""The guiders diffusers ships that the testbed lacked (issue 29): tangential CFG (tcfg), MAMBO-G
(mambo_g), APG-Mix (apg_mix) and frequency-decoupled guidance (fdg), in float64 on a Gaussian mixture's exact eps (docs/equations.md
section 10).

- degenerate settings are CFG (clipped as build_classifier_free) to 1e-12, eps by eps and through
  whole DDIM and ancestral chains: TCFG where eps(x, null) is parallel to eps(x, y), MAMBO-G at alpha = 0,
  APG-Mix whose classifier-free phase outlasts the chain (at w_cfg = w), FDG with both bands at w;
  APG-Mix after its start step is APG with the same momentum history; FDG's pyramid is kornia's;
- each formula against its closed form (TCFG: the SVD of the 2 x d matrix of both predictions);
- peer tests: diffusers' TangentialClassifierFreeGuidance, MagnitudeAwareGuidance,
  AdaptiveProjectedMixGuidance and FrequencyDecoupledGuidance called directly on the same predictions, guidance_scale = 1 + w (TCFG's
  SVD runs in float32 there: 1e-5 relative), step by step for APG-Mix's momentum.
"""

import logging

import pytest
import torch
# the same mixture (K = 4 on 1 x 4 x 4 pixels), exact eps-model, points and labels as the other successors'
from test_guidance_successors import rel_err, setting  # noqa: F401 (setting is a fixture)
from torch import nn

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim, sample_ddpm
from diffguide.guidance.methods.apg.wrapper import AdaptiveProjectedGuidance
from diffguide.guidance.methods.apg_mix.wrapper import AdaptiveProjectedMixGuidance, build_apg_mix
from diffguide.guidance.methods.fdg.wrapper import (FrequencyDecoupledGuidance, build_fdg, down,
                                                  frequency_decoupled, padded_to_power_of_two, up)
from diffguide.guidance.methods.mambo_g.wrapper import MagnitudeAwareGuidance, build_mambo_g, damped_weight
from diffguide.guidance.methods.tcfg.wrapper import TangentialClassifierFreeGuidance, build_tcfg, tangential_unconditional
from diffguide.guidance.wrappers import NULL_LABEL, build_classifier_free
from diffguide.registry import REGISTRY

F64 = torch.float64
TIMESTEPS = [0, 50, 250, 500, 750, 950, 999]
W = 3.0

logging.getLogger("diffusers").setLevel(logging.ERROR)  # guiders warn that they are experimental


def parts(setting, t):
    schedule, model, x, y = setting
    tt = torch.full((len(x),), t, dtype=torch.long)
    return model(x, tt, y), model(x, tt, torch.full_like(y, NULL_LABEL)), tt


class ParallelNull(nn.Module):
    """eps(x, y) = the mixture's unconditional eps for every y, and eps(x, null) = 0.4 times it: the
    two predictions are parallel, so TCFG's projection keeps all of eps(x, null) and TCFG is CFG."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, y):
        own = self.model(x, t, None)
        return own if y is None else torch.where((y == NULL_LABEL).view(-1, 1, 1, 1), 0.4 * own, own)


def cfg(models, schedule, clip_x0):
    return build_classifier_free(models, W, schedule, clip_x0=clip_x0, options={}).model


DEGENERATE = {
    "tcfg": (lambda m: {"eps_model": ParallelNull(m)},
             lambda models, s, c: build_tcfg(models, W, s, clip_x0=c, options={}).model),
    "mambo_g": (lambda m: {"eps_model": m},
                lambda models, s, c: build_mambo_g(models, W, s, clip_x0=c, options={"mambo_alpha": 0.0}).model),
    "fdg": (lambda m: {"eps_model": m},
            lambda models, s, c: build_fdg(models, W, s, clip_x0=c, options={"fdg_low_ratio": 1.0}).model),
    "apg_mix": (lambda m: {"eps_model": m},
                lambda models, s, c: build_apg_mix(models, W, s, clip_x0=c, options={
                    "apg_mix_cfg_w": W, "apg_mix_start_step": 1000}).model),
}


@pytest.mark.parametrize("method", sorted(DEGENERATE))
@pytest.mark.parametrize("clip_x0", [False, True])
def test_degenerate_settings_are_cfg_eps_by_eps(setting, method, clip_x0):
    schedule, model, x, y = setting
    wrap, build = DEGENERATE[method]
    models = wrap(model)
    ours, reference = build(models, schedule, clip_x0), cfg(models, schedule, clip_x0)
    for t in TIMESTEPS:
        tt = torch.full((len(x),), t, dtype=torch.long)
        assert rel_err(ours(x, tt, y), reference(x, tt, y)) < 1e-12, t


@pytest.mark.parametrize("method", sorted(DEGENERATE))
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_degenerate_settings_are_cfg_through_whole_clipped_chains(setting, method, sampler):
    schedule, model, x, y = setting
    wrap, build = DEGENERATE[method]
    models = wrap(model)
    timesteps = respaced_timesteps(1000, 8, "leading")
    chains = []
    for guided in (build(models, schedule, True), cfg(models, schedule, True)):
        gen = torch.Generator().manual_seed(3)
        noise = lambda v: torch.randn(v.shape, generator=gen, dtype=v.dtype)  # noqa: E731
        run = sample_ddim if sampler == "ddim" else sample_ddpm
        chains.append(run(guided, x, timesteps, schedule=schedule, labels=y, noise=noise, progress=False))
    assert rel_err(chains[0], chains[1]) < 1e-12


def test_tcfg_keeps_the_unconditional_prediction_along_the_first_singular_direction(setting):
    schedule, model, x, y = setting
    for t in (50, 500, 950):
        c, u, tt = parts(setting, t)
        matrix = torch.stack([c.flatten(1), u.flatten(1)], 1)  # [B, 2, d]
        v1 = torch.linalg.svd(matrix, full_matrices=False).Vh[:, 0]  # [B, d]
        projected = ((u.flatten(1) * v1).sum(1, keepdim=True) * v1).view_as(u)
        assert rel_err(tangential_unconditional(c, u), projected) < 1e-12
        ours = TangentialClassifierFreeGuidance(model, W)(x, tt, y)
        assert rel_err(ours, (1 + W) * c - W * projected) < 1e-12
        assert rel_err(ours, (1 + W) * c - W * u) > 1e-3  # not CFG: the predictions are not parallel
    assert TangentialClassifierFreeGuidance(model, 0.0)(x, tt, y).equal(model(x, tt, y))


def test_mambo_g_damps_w_by_the_relative_size_of_the_guidance_update(setting):
    schedule, model, x, y = setting
    c, u, tt = parts(setting, 500)
    ratio = (c - u).flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1)
    weight = damped_weight(c, u, W, 8.0)
    assert rel_err(weight.flatten(), W * torch.exp(-8.0 * ratio)) < 1e-12 and (weight < W).all()
    ours = MagnitudeAwareGuidance(model, W, alpha=8.0)(x, tt, y)
    assert rel_err(ours, c + weight * (c - u)) < 1e-12
    assert MagnitudeAwareGuidance(model, 0.0)(x, tt, y).equal(model(x, tt, y))


@pytest.mark.parametrize("original", [False, True])
def test_tcfg_against_diffusers(setting, original):
    """diffusers' TangentialClassifierFreeGuidance, guidance_scale = 1 + w (w with
    use_original_formulation): its float32 SVD against our float64 Gram eigenvector, 1e-5 relative
    (float32's 1.2e-7 times the 2 x 2 problem's conditioning)."""
    from diffusers.guiders import TangentialClassifierFreeGuidance as DiffusersTCFG
    schedule, model, x, y = setting
    theirs = DiffusersTCFG(guidance_scale=W if original else 1 + W, use_original_formulation=original)
    ours = TangentialClassifierFreeGuidance(model, W)
    for t in TIMESTEPS:
        c, u, tt = parts(setting, t)
        theirs.set_state(0, 1, tt)
        assert rel_err(ours(x, tt, y), theirs.forward(c, u).pred.double()) < 1e-5, t


@pytest.mark.parametrize("original", [False, True])
def test_mambo_g_against_diffusers(setting, original):
    """diffusers' MagnitudeAwareGuidance(guidance_scale = 1 + w, alpha), or guidance_scale = w with
    use_original_formulation: both are our eps_c + w exp(-alpha r) (eps_c - eps_u). Its predictions go
    in flattened to [B, d]: diffusers 0.42.1 takes torch.norm over dims (1, 2, 3), which torch 2.14
    refuses for an image batch (a 2-tuple is required); over one dim it is the same norm."""
    from diffusers.guiders import MagnitudeAwareGuidance as DiffusersMambo
    schedule, model, x, y = setting
    theirs = DiffusersMambo(guidance_scale=W if original else 1 + W, alpha=5.0, use_original_formulation=original)
    ours = MagnitudeAwareGuidance(model, W, alpha=5.0)
    for t in TIMESTEPS:
        c, u, tt = parts(setting, t)
        theirs.set_state(0, 1, tt)
        assert rel_err(ours(x, tt, y), theirs.forward(c.flatten(1), u.flatten(1)).pred.view_as(c)) < 1e-12, t


MIX = {"eta": 0.3, "norm_threshold": 2.0, "momentum": -0.5}
MIX_STEPS = [950, 850, 750, 650, 550, 450, 350, 250, 150, 50]  # one chain, 10 steps: indices 0 .. 9 (from 950:
# at t = 999 the eps -> x0 round trip divides by sqrt(abar) = 5e-5: 1e-12 of round-off)


def mix_x0s(setting, guider):
    """Our guider's x0 at each step of one chain on fixed points (a call at a higher t starts a chain)."""
    schedule, model, x, y = setting
    out = []
    for t in MIX_STEPS:
        tt = torch.full((len(x),), t, dtype=torch.long)
        out.append(schedule.predict_x0(x, tt, guider(x, tt, y)))
    return out


def test_apg_mix_is_cfg_through_its_start_step_then_apg_with_the_momentum_of_every_step(setting):
    schedule, model, x, y = setting
    mix = mix_x0s(setting, AdaptiveProjectedMixGuidance(model, W, schedule, cfg_w=1.5, start_step=3, **MIX))
    apg = mix_x0s(setting, AdaptiveProjectedGuidance(model, W, schedule, **MIX))
    for i, t in enumerate(MIX_STEPS):
        c, u, tt = parts(setting, t)
        x0_c, x0_u = schedule.predict_x0(x, tt, c), schedule.predict_x0(x, tt, u)
        if i <= 3:
            assert rel_err(mix[i], x0_c + 1.5 * (x0_c - x0_u)) < 1e-12, i
        else:
            assert rel_err(mix[i], apg[i]) < 1e-12, i  # the same buffer: momentum ran through the CFG steps
    assert AdaptiveProjectedMixGuidance(model, 0.0, schedule)(x, tt, y).equal(model(x, tt, y))


def test_apg_mix_against_diffusers(setting):
    """diffusers' AdaptiveProjectedMixGuidance with use_original_formulation=True (pred_cond + scale *
    update: its guidance_scale is our w_cfg, its adaptive scale our w), fed our x0 predictions step by
    step with its momentum buffer set at the chain's start, as its prepare_inputs does."""
    from diffusers.guiders import AdaptiveProjectedMixGuidance as DiffusersMix
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer
    schedule, model, x, y = setting
    theirs = DiffusersMix(guidance_scale=1.5, adaptive_projected_guidance_scale=W,
                          adaptive_projected_guidance_momentum=MIX["momentum"], adaptive_projected_guidance_rescale=2.0,
                          eta=MIX["eta"], use_original_formulation=True, adaptive_projected_guidance_start_step=3)
    theirs.momentum_buffer = MomentumBuffer(MIX["momentum"])
    ours = mix_x0s(setting, AdaptiveProjectedMixGuidance(model, W, schedule, cfg_w=1.5, start_step=3, **MIX))
    for i, t in enumerate(MIX_STEPS):
        c, u, tt = parts(setting, t)
        theirs.set_state(i, len(MIX_STEPS), tt)
        pred = theirs.forward(schedule.predict_x0(x, tt, c), schedule.predict_x0(x, tt, u)).pred
        assert rel_err(ours[i], pred) < 1e-12, i


@pytest.mark.parametrize("size", [4, 16, 28, 7])
def test_fdg_pyramid_is_kornias(size):
    """pyrdown, pyrup and the two-level Laplacian pyramid, with kornia's padding of sides that are not a
    power of two (28 -> 32) or odd (7 -> 8)."""
    from kornia.geometry.transform import build_laplacian_pyramid, pyrdown, pyrup
    image = torch.randn(3, 2, size, size, generator=torch.Generator().manual_seed(size), dtype=F64)
    padded = padded_to_power_of_two(image)
    assert padded.shape[-1] == (32 if size == 28 else 8 if size == 7 else size)
    theirs = build_laplacian_pyramid(image, 2)
    assert rel_err(padded - up(down(padded)), theirs[0]) < 1e-12 and rel_err(down(padded), theirs[1]) < 1e-12
    assert rel_err(down(padded), pyrdown(padded)) < 1e-12 and rel_err(up(down(padded)), pyrup(pyrdown(padded))) < 1e-12


def test_fdg_against_diffusers(setting):
    """diffusers' FrequencyDecoupledGuidance(guidance_scales = [1 + w_high, 1 + w_low], high band first) on
    the same predictions; for a 28 x 28 image diffusers returns kornia's padded 32 x 32, whose top-left
    28 x 28 is ours."""
    from diffusers.guiders import FrequencyDecoupledGuidance as DiffusersFDG
    schedule, model, x, y = setting
    ratio = 4 / 9
    theirs = DiffusersFDG(guidance_scales=[1 + W, 1 + ratio * W])
    ours = FrequencyDecoupledGuidance(model, W, low_ratio=ratio)
    for t in TIMESTEPS:
        c, u, tt = parts(setting, t)
        theirs.set_state(0, 1, tt)
        assert rel_err(ours(x, tt, y), theirs.forward(c, u).pred) < 1e-12, t
        if t <= 500:  # where the two predictions differ (at t = 999 they nearly agree), FDG is not CFG
            assert rel_err(ours(x, tt, y), (1 + W) * c - W * u) > 1e-3, t
    g = torch.Generator().manual_seed(28)
    c28, u28 = torch.randn(2, 1, 28, 28, generator=g, dtype=F64), torch.randn(2, 1, 28, 28, generator=g, dtype=F64)
    padded = theirs.forward(c28, u28).pred
    assert padded.shape[-2:] == (32, 32)
    assert rel_err(frequency_decoupled(c28, u28, W, ratio * W), padded[..., :28, :28]) < 1e-12


def test_fdg_refuses_predictions_that_are_not_images():
    vectors = torch.zeros(3, 16, dtype=F64)
    with pytest.raises(ValueError, match=r"fdg: .* image predictions \[B, C, H, W\].* shape \[3, 16\]"):
        frequency_decoupled(vectors, vectors, W, W)


def test_the_new_guiders_are_registered_testbed_methods_on_the_conditional_model():
    for name, option in (("tcfg", None), ("mambo_g", "mambo_alpha"), ("apg_mix", "apg_mix_start_step"),
                         ("fdg", "fdg_low_ratio")):
        row = REGISTRY.methods[name]
        assert row.group == "testbed" and row.eps_model == "conditional" and row.symbol == "w"
        assert (option in row.option_keys) if option else not row.option_keys
