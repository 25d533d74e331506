"""Time-step guidance (diffguide.guidance.methods.tsg) in float64 on a small real UNet with fixed
weights: the conditional model where nothing is perturbed, the formula against a hand-perturbed
forward pass, the perturbation's scale and seeding, and its hook removed after every call."""

from __future__ import annotations

import pytest
import torch
from test_attention_guiders import small_unet

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim, sample_heun
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.methods.tsg import wrapper as tsg

F64 = torch.float64
SCHEDULE = NoiseSchedule.make("cosine", 1000)
UNET = small_unet()
g = torch.Generator().manual_seed(7)
X = torch.randn(5, 1, 8, 8, generator=g, dtype=F64)
Y = torch.tensor([0, 1, 2, 0, 1])
W = 2.0


def tsg_model(w=W, s=0.5, alpha=0.0, clip_x0=False):
    return tsg.build_tsg({"eps_model": UNET}, w, SCHEDULE, clip_x0=clip_x0,
                         options={"tsg_s": s, "tsg_alpha": alpha}).model


def perturbed_by_hand(x, t, y, delta):
    """The UNet's eps with ``delta`` added to its time-MLP output, in one batch of its own."""
    handle = UNET.unet.time_embedding.register_forward_hook(lambda m, i, out: out + delta.to(out.dtype))
    try:
        return UNET(x, t, y)
    finally:
        handle.remove()


@pytest.mark.parametrize("t", [10, 500, 990])
@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_tsg_is_cfg_shaped_with_the_perturbed_timestep_prediction_in_place_of_the_unconditional(t, alpha):
    tt = torch.full((len(X),), t)
    noise = tsg.embedding_noise(tt, UNET.unet.time_embedding.linear_2.out_features, 1000, 0.5, alpha)
    expected = (1 + W) * UNET(X, tt, Y) - W * perturbed_by_hand(X, tt, Y, noise)
    assert (tsg_model(alpha=alpha)(X, tt, Y) - expected).abs().max().item() < 1e-12


def test_nothing_perturbed_is_the_conditional_model_and_the_hook_is_removed():
    tt = torch.full((len(X),), 400)
    plain = UNET(X, tt, Y)
    assert (tsg_model(s=0.0)(X, tt, Y) - plain).abs().max().item() < 1e-12  # s = 0: eps - w (eps - eps)
    assert torch.equal(tsg_model(w=0.0)(X, tt, Y), plain)  # w = 0: the model itself, nothing hooked
    tsg_model()(X, tt, Y)
    assert not UNET.unet.time_embedding._forward_hooks and torch.equal(UNET(X, tt, Y), plain)


def test_the_perturbation_scales_as_s_times_t_over_T_to_the_alpha_and_is_seeded_by_the_step():
    tt = torch.full((4,), 250)
    n = tsg.embedding_noise(tt, 32, 1000, 1.0, 0.0)
    assert torch.equal(n, tsg.embedding_noise(tt, 32, 1000, 1.0, 0.0))
    assert torch.allclose(tsg.embedding_noise(tt, 32, 1000, 0.3, 2.0), 0.3 * 0.25 ** 2 * n, rtol=0, atol=1e-15)
    assert not torch.equal(n, tsg.embedding_noise(tt + 1, 32, 1000, 1.0, 0.0))
    many = tsg.embedding_noise(torch.full((400,), 10), 64, 1000, 1.0, 0.0)
    assert abs(many.mean().item()) < 0.02 and abs(many.std().item() - 1) < 0.02


def test_a_perturbation_moves_the_prediction_and_whole_chains_run_clipped_on_ddim_and_heun():
    tt = torch.full((len(X),), 600)
    assert (UNET(X, tt, Y) - perturbed_by_hand(X, tt, Y, torch.full((len(X), 32), 0.5, dtype=F64))).abs().max() > 1e-3
    timesteps = respaced_timesteps(1000, 4, "leading")
    for run in (sample_ddim, sample_heun):
        noise = PerSampleNoise(0, list(range(len(X))))
        out = run(tsg_model(clip_x0=True), noise.initial((1, 8, 8), dtype=F64), timesteps, schedule=SCHEDULE,
                  labels=Y, noise=noise)
        assert torch.isfinite(out).all()


def test_a_model_without_diffguides_unet_is_refused_by_name():
    with pytest.raises(ValueError, match="^tsg: it perturbs the timestep embedding of diffguide's UNet"):
        tsg.build_tsg({"eps_model": torch.nn.Linear(2, 2)}, 1.0, SCHEDULE, clip_x0=True, options={})
