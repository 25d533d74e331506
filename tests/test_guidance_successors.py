"""Exact float64 checks of the successors of classifier-free guidance on Gaussian mixtures
(docs/equations.md section 10): APG (diffguide.guidance.methods.apg), guidance rescale (diffguide.guidance.methods.rescale),
dynamic thresholding (diffguide.guidance.methods.dynamic_thresholding) and CFG-Zero* (diffguide.guidance.methods.cfg_zero_star).

- degenerate settings equal CFG (clipped as build_classifier_free) to 1e-12, eps by eps and
  through whole DDIM / ancestral chains;
- each method's formula against its closed form on the exact mixture eps;
- peer tests: diffusers' guiders and DDIMScheduler._threshold_sample called directly, and the
  official CFG-Zero* algorithm written from its code;
- bad options raise ValueError naming guidance.<key>.
Samples are image-shaped ([B, 1, 4, 4]: norms, std and quantiles are per sample over C, H, W).
"""

import logging
import math

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import ddim_step, sample_ddim, sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureEpsModel, random_mixture
from diffguide.guidance.methods.apg.wrapper import AdaptiveProjectedGuidance, build_apg, project
from diffguide.guidance.methods.cfg_zero_star.wrapper import CFGZeroStar, build_cfg_zero_star, optimized_scale
from diffguide.guidance.methods.dynamic_thresholding.wrapper import build_dynamic_threshold, dynamic_threshold
from diffguide.guidance.methods.rescale.wrapper import RescaledClassifierFreeGuidance, build_cfg_rescale
from diffguide.guidance.wrappers import NULL_LABEL, ClipDenoised, build_classifier_free

F64 = torch.float64
SHAPE = (1, 4, 4)
TIMESTEPS = [0, 5, 50, 250, 500, 750, 950, 999]
TOL = 1e-12
W = 3.0

logging.getLogger("diffusers").setLevel(logging.ERROR)  # guiders warn that they are experimental


@pytest.fixture(scope="module")
def setting():
    """A random K = 4 mixture on 16 = 1 x 4 x 4 pixels (pixels around [-1, 1] and beyond), its exact
    eps-model, the cosine schedule, image-shaped test points and labels."""
    g = torch.Generator().manual_seed(0)
    mixture = random_mixture(4, 16, g, spread=1.0)
    schedule = NoiseSchedule.make("cosine", 1000)
    x = 1.5 * torch.randn(12, *SHAPE, generator=g, dtype=F64)
    y = torch.randint(0, 4, (12,), generator=g)
    return schedule, MixtureEpsModel(mixture, schedule), x, y


def t_full(x, t):
    return torch.full((len(x),), t, dtype=torch.long)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1.0)).item()


def per_sample(v):
    return v.reshape(len(v), -1)


def exact_parts(setting, t):
    schedule, model, x, y = setting
    tt = t_full(x, t)
    return model(x, tt, y), model(x, tt, torch.full_like(y, NULL_LABEL)), tt


def cfg(models, w, schedule, clip_x0):
    return build_classifier_free(models, w, schedule, clip_x0=clip_x0, options={}).model


DEGENERATE = {
    "apg": lambda m, w, s, c: build_apg(m, w, s, clip_x0=c, options={
        "apg_eta": 1.0, "apg_norm_threshold": None, "apg_momentum": 0.0}).model,
    "cfg_rescale": lambda m, w, s, c: build_cfg_rescale(m, w, s, clip_x0=c, options={"rescale_phi": 0.0}).model,
    "cfg_zero_star": lambda m, w, s, c: _unit_zero_star(m, w, s, c),
}


def _unit_zero_star(models, w, schedule, clip_x0):
    guided = CFGZeroStar(models["eps_model"], w, schedule, zero_init_steps=0, unit_scale=True)
    return ClipDenoised(guided, schedule) if clip_x0 else guided


def threshold_one(models, w, schedule, clip_x0):
    """Dynamic thresholding with s capped at 1: static clipping (compared with CFG clipped)."""
    return build_dynamic_threshold(models, w, schedule, clip_x0=clip_x0, options={
        "threshold_percentile": 0.995, "threshold_max": 1.0}).model


# --------------------------------------------------------------------------- degenerate settings = CFG


@pytest.mark.parametrize("clip_x0", [True, False])
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_degenerate_settings_equal_cfg_eps(setting, name, clip_x0):
    """APG (eta 1, r inf, beta 0), rescale (phi 0), CFG-Zero* (s* = 1, no zeroed step) equal CFG at
    every t, clipped or not."""
    schedule, model, x, y = setting
    models = {"eps_model": model}
    ours, ref = DEGENERATE[name](models, W, schedule, clip_x0), cfg(models, W, schedule, clip_x0)
    worst = max(rel_err(ours(x, t_full(x, t), y), ref(x, t_full(x, t), y)) for t in TIMESTEPS)
    assert worst < TOL, f"{name}: {worst:.1e}"


def test_threshold_max_one_is_static_clipping(setting):
    schedule, model, x, y = setting
    models = {"eps_model": model}
    ours, ref = threshold_one(models, W, schedule, False), cfg(models, W, schedule, True)
    worst = max(rel_err(ours(x, t_full(x, t), y), ref(x, t_full(x, t), y)) for t in TIMESTEPS)
    assert worst < TOL


CHAIN_METHODS = {**DEGENERATE, "dynamic_threshold": threshold_one}


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("name", sorted(CHAIN_METHODS))
def test_degenerate_settings_equal_cfg_through_a_chain(setting, name, sampler):
    """Whole chains (25 steps, clipped as the pipeline) from the same x_T and noise end at the same x_0."""
    schedule, model, _, y = setting
    models = {"eps_model": model}
    timesteps = respaced_timesteps(1000, 25)
    x_T = torch.randn(len(y), *SHAPE, generator=torch.Generator().manual_seed(1), dtype=F64)

    def run(guided):
        g = torch.Generator().manual_seed(2)
        noise = lambda v: torch.randn(v.shape, generator=g, dtype=v.dtype)  # noqa: E731
        sample = sample_ddim if sampler == "ddim" else sample_ddpm
        kwargs = {"eta": 0.5} if sampler == "ddim" else {}
        return sample(guided, x_T, timesteps, schedule=schedule, labels=y, noise=noise, progress=False, **kwargs)

    ours = run(CHAIN_METHODS[name](models, W, schedule, name != "dynamic_threshold"))
    ref = run(cfg(models, W, schedule, True))
    assert rel_err(ours, ref) < TOL


# --------------------------------------------------------------------------- CFG-Zero*


@pytest.mark.parametrize("t", [50, 500, 950])
def test_optimized_scale_is_the_least_squares_scale(setting, t):
    """s* = <c, u> / ||u||^2 per sample, it zeroes d/ds ||c - s u||^2 = -2 <c - s u, u>, no other s
    does better, and the guided eps is (1 + w) c - w s* u."""
    schedule, model, x, y = setting
    c, u, tt = exact_parts(setting, t)
    s = optimized_scale(c, u)
    hand = (per_sample(c) * per_sample(u)).sum(1) / (per_sample(u) ** 2).sum(1)
    assert rel_err(s.flatten(), hand) < TOL and s.shape == (len(x), 1, 1, 1)
    residual = per_sample(c - s * u)
    assert (residual * per_sample(u)).sum(1).abs().max() < 1e-12 * (per_sample(u) ** 2).sum(1).max()
    for delta in (-1e-3, 1e-3, 0.1):
        assert ((per_sample(c - (s + delta) * u) ** 2).sum(1) > (residual**2).sum(1)).all()
    ours = CFGZeroStar(model, W, schedule, zero_init_steps=0)(x, tt, y)
    assert rel_err(ours, (1 + W) * c - W * s * u) < TOL


def run_calls(guided, x, y, timesteps):
    return [guided(x, t_full(x, t), y) for t in timesteps]


def test_zero_init_zeroes_the_first_steps_of_each_chain(setting):
    schedule, model, x, y = setting
    timesteps = [999, 958, 917, 876, 835]
    guided = CFGZeroStar(model, W, schedule, zero_init_steps=2)
    plain = CFGZeroStar(model, W, schedule, zero_init_steps=0)
    for _ in range(2):  # the second chain starts again at t = 999 and is zeroed again
        outs, refs = run_calls(guided, x, y, timesteps), run_calls(plain, x, y, timesteps)
        assert all((o == 0).all() for o in outs[:2])
        assert all(rel_err(o, r) < TOL and o.abs().max() > 0 for o, r in zip(outs[2:], refs[2:]))
    guided(x, t_full(x, 999), y)
    assert (guided(x[:5], t_full(x[:5], 958), y[:5]) == 0).all()  # new batch size: new chain


def test_zero_velocity_step_keeps_the_flow_coordinate(setting):
    """zero_init="velocity": eps = x0, so a DDIM step keeps x / (sqrt(abar) + sqrt(1 - abar)) fixed (the
    rectified flow's x standing still), where eps = 0 keeps x / sqrt(abar) fixed instead."""
    schedule, model, x, y = setting
    step = schedule.steps([700, 600], like=x)[0]
    for zero_init, coordinate in (("velocity", lambda v, a: v / (a.sqrt() + (1 - a).sqrt())),
                                  ("eps", lambda v, a: v / a.sqrt())):
        eps = CFGZeroStar(model, W, schedule, zero_init=zero_init)(x, t_full(x, 700), y)
        x_prev = ddim_step(x, eps, step=step)
        assert rel_err(coordinate(x_prev, step.abar_prev), coordinate(x, step.abar)) < TOL


def official_cfg_zero_star(noise_pred_text, noise_pred_uncond, i, guidance_scale, zero_steps, use_zero_init=True):
    """The official algorithm, written from WeichenFan/CFG-Zero-star models/sd/sd3_pipeline.py
    (optimized_scale and the guidance branch of __call__): s* with 1e-8 added to ||u||^2, and
    zero-init when i <= zero_steps."""
    batch_size = noise_pred_text.shape[0]
    positive_flat, negative_flat = noise_pred_text.view(batch_size, -1), noise_pred_uncond.view(batch_size, -1)
    dot_product = torch.sum(positive_flat * negative_flat, dim=1, keepdim=True)
    squared_norm = torch.sum(negative_flat**2, dim=1, keepdim=True) + 1e-8
    alpha = (dot_product / squared_norm).view(batch_size, *([1] * (len(noise_pred_text.shape) - 1)))
    if (i <= zero_steps) and use_zero_init:
        return noise_pred_text * 0.0
    return noise_pred_uncond * alpha + guidance_scale * (noise_pred_text - noise_pred_uncond * alpha)


@pytest.mark.parametrize("zero_steps", [0, 1, 2])
def test_cfg_zero_star_against_the_official_algorithm(setting, zero_steps):
    """Their guidance_scale is 1 + w and their zero_steps = K zeroes K + 1 steps (i <= zero_steps): ours
    with zero_init_steps = K + 1 matches step by step. The only other difference is their 1e-8 in
    ||u||^2: a relative change of s* by 1e-8 / ||u||^2, bounded here."""
    schedule, model, x, y = setting
    ours = CFGZeroStar(model, W, schedule, zero_init_steps=zero_steps + 1)
    for i, t in enumerate([999, 958, 917, 876, 835]):
        c, u, tt = exact_parts(setting, t)
        theirs = official_cfg_zero_star(c, u, i, 1 + W, zero_steps)
        bound = W * u.abs().max() * optimized_scale(c, u).abs().max() * 1e-8 / (per_sample(u) ** 2).sum(1).min()
        assert (ours(x, tt, y) - theirs).abs().max() <= 2 * bound + 1e-14


def test_cfg_zero_star_against_diffusers(setting):
    """diffusers' CFGZeroStarGuidance (guidance_scale = 1 + w, its zero_init_steps counts zeroed steps
    as ours) computes s* in float32 with 1e-8 added: equal to ours to float32 precision."""
    from diffusers.guiders import ClassifierFreeZeroStarGuidance
    schedule, model, x, y = setting
    theirs = ClassifierFreeZeroStarGuidance(guidance_scale=1 + W, zero_init_steps=2)
    ours = CFGZeroStar(model, W, schedule, zero_init_steps=2)
    timesteps = [999, 958, 917, 876]
    for i, t in enumerate(timesteps):
        c, u, tt = exact_parts(setting, t)
        theirs.set_state(i, len(timesteps), tt)
        pred = theirs.forward(c, u).pred
        assert rel_err(ours(x, tt, y), pred) < 1e-6 and ((pred == 0).all() == (i < 2))


# --------------------------------------------------------------------------- APG


@pytest.mark.parametrize("t", [50, 500, 950])
def test_apg_projection_and_eta_zero(setting, t):
    """Parallel part = a multiple of x0_c, orthogonal part orthogonal to it, their sum the difference;
    with eta = 0 (r inf, beta 0) the guided x0 moves only orthogonally to x0_c, by w times the
    orthogonal part."""
    schedule, model, x, y = setting
    c, u, tt = exact_parts(setting, t)
    x0_c, x0_u = schedule.predict_x0(x, tt, c), schedule.predict_x0(x, tt, u)
    diff = x0_c - x0_u
    par, orth = project(diff, x0_c)
    pc, po, px = per_sample(par), per_sample(orth), per_sample(x0_c)
    coef = (pc * px).sum(1, keepdim=True) / (px * px).sum(1, keepdim=True)
    assert rel_err(pc, coef * px) < TOL and rel_err(par + orth, diff) < TOL
    assert ((po * px).sum(1).abs() <= TOL * per_sample(diff).norm(dim=1) * px.norm(dim=1)).all()
    guided = AdaptiveProjectedGuidance(model, W, schedule, eta=0.0, norm_threshold=None, momentum=0.0)
    moved = schedule.predict_x0(x, tt, guided(x, tt, y)) - x0_c
    assert rel_err(moved, W * orth) < 1e-10  # through eps and back: x0 ~ 1/sqrt(abar) amplifies rounding
    assert rel_err(moved, W * diff) > 1e-3  # the parallel part is really gone


def test_apg_norm_threshold(setting):
    """The update is diff * min(1, r / ||diff||) per sample: norms capped at r, small ones untouched."""
    schedule, model, x, y = setting
    c, u, tt = exact_parts(setting, 950)
    x0_c, x0_u = schedule.predict_x0(x, tt, c), schedule.predict_x0(x, tt, u)
    norms = per_sample(x0_c - x0_u).norm(dim=1)
    r = norms.median().item()
    guided = AdaptiveProjectedGuidance(model, W, schedule, eta=1.0, norm_threshold=r, momentum=0.0)
    update = per_sample(schedule.predict_x0(x, tt, guided(x, tt, y)) - x0_c) / W
    expected = torch.minimum(norms, torch.full_like(norms, r))
    assert rel_err(update.norm(dim=1), expected) < 1e-9


def test_apg_momentum_is_the_hand_recursion_and_resets(setting):
    """running_k = diff_k + beta running_{k-1} across the steps of a chain (eta 1, r inf, so x0 =
    x0_c + w running_k), restarted at a new chain."""
    schedule, model, x, y = setting
    beta, timesteps = -0.5, [999, 917, 835, 500]
    guided = AdaptiveProjectedGuidance(model, W, schedule, eta=1.0, norm_threshold=None, momentum=beta)
    for _ in range(2):
        running = torch.zeros_like(x)
        for t in timesteps:
            c, u, tt = exact_parts(setting, t)
            x0_c = schedule.predict_x0(x, tt, c)
            running = (x0_c - schedule.predict_x0(x, tt, u)) + beta * running
            got = schedule.predict_x0(x, tt, guided(x, tt, y))
            assert rel_err(got, x0_c + W * running) < 1e-10


def test_apg_against_diffusers_original_formulation(setting):
    """diffusers' AdaptiveProjectedGuidance with use_original_formulation=True on the x0 predictions,
    guidance_scale = our w (it adds g * update to pred_cond), eta, threshold r and momentum beta,
    over the steps of a chain: equal to ours."""
    from diffusers.guiders import AdaptiveProjectedGuidance as DiffusersAPG
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer
    schedule, model, x, y = setting
    eta, r, beta, timesteps = 0.3, 40.0, -0.5, [999, 917, 835, 500, 50]
    theirs = DiffusersAPG(guidance_scale=W, adaptive_projected_guidance_momentum=beta,
                          adaptive_projected_guidance_rescale=r, eta=eta, use_original_formulation=True)
    ours = AdaptiveProjectedGuidance(model, W, schedule, eta=eta, norm_threshold=r, momentum=beta)
    for i, t in enumerate(timesteps):
        c, u, tt = exact_parts(setting, t)
        theirs.set_state(i, len(timesteps), tt)
        if i == 0:  # what its prepare_inputs does at step 0 (a fresh buffer per generation)
            theirs.momentum_buffer = MomentumBuffer(beta)
        pred = theirs.forward(schedule.predict_x0(x, tt, c), schedule.predict_x0(x, tt, u)).pred
        assert rel_err(schedule.predict_x0(x, tt, ours(x, tt, y)), pred) < 1e-10


def test_apg_diffusers_default_formulation_differs_by_the_parallel_part(setting):
    """diffusers' default adds (1 + w) * update to pred_uncond, not w * update to pred_cond: equal to
    ours at eta = 1, and otherwise off by (1 - eta) times the parallel part (no threshold, no momentum)."""
    from diffusers.guiders import AdaptiveProjectedGuidance as DiffusersAPG
    schedule, model, x, y = setting
    c, u, tt = exact_parts(setting, 500)
    x0_c, x0_u = schedule.predict_x0(x, tt, c), schedule.predict_x0(x, tt, u)
    par, _ = project(x0_c - x0_u, x0_c)
    for eta in (1.0, 0.0):
        theirs = DiffusersAPG(guidance_scale=1 + W, adaptive_projected_guidance_rescale=0.0, eta=eta)
        theirs.set_state(0, 1, tt)
        ours = AdaptiveProjectedGuidance(model, W, schedule, eta=eta, norm_threshold=None, momentum=0.0)
        gap = schedule.predict_x0(x, tt, ours(x, tt, y)) - theirs.forward(x0_c, x0_u).pred
        assert rel_err(gap, (1 - eta) * par) < 1e-10
    assert par.abs().max() > 1e-2


# --------------------------------------------------------------------------- guidance rescale


@pytest.mark.parametrize("t", [50, 500, 950])
def test_rescale_phi_one_matches_the_conditional_std(setting, t):
    """phi = 1: each sample's std is the conditional prediction's exactly; phi = 0.4 mixes by hand."""
    schedule, model, x, y = setting
    c, u, tt = exact_parts(setting, t)
    full = RescaledClassifierFreeGuidance(model, W, phi=1.0)(x, tt, y)
    assert rel_err(per_sample(full).std(1), per_sample(c).std(1)) < TOL
    eps_cfg = (1 + W) * c - W * u
    ratio = (per_sample(c).std(1) / per_sample(eps_cfg).std(1)).view(-1, 1, 1, 1)
    mixed = RescaledClassifierFreeGuidance(model, W, phi=0.4)(x, tt, y)
    assert rel_err(mixed, 0.4 * ratio * eps_cfg + 0.6 * eps_cfg) < TOL and (ratio - 1).abs().max() > 1e-2


def test_rescale_against_diffusers(setting):
    """diffusers' ClassifierFreeGuidance(guidance_scale = 1 + w, guidance_rescale = phi)."""
    from diffusers.guiders import ClassifierFreeGuidance as DiffusersCFG
    schedule, model, x, y = setting
    theirs = DiffusersCFG(guidance_scale=1 + W, guidance_rescale=0.7)
    ours = RescaledClassifierFreeGuidance(model, W, phi=0.7)
    for t in TIMESTEPS:
        c, u, tt = exact_parts(setting, t)
        theirs.set_state(0, 1, tt)
        assert rel_err(ours(x, tt, y), theirs.forward(c, u).pred) < TOL


# --------------------------------------------------------------------------- dynamic thresholding


@pytest.mark.parametrize("t", [250, 750, 950])
def test_dynamic_threshold_puts_the_quantile_at_one(setting, t):
    """Where the p-quantile of |x0| exceeds 1 it becomes 1 after thresholding; elsewhere x0 is statically
    clipped; nothing leaves [-1, 1]; a cap s_max limits the divisor. p = 0.8 puts the quantile on the
    13th of 16 order statistics (0.8 * 15 = 12), so it is an entry of |x0|, not an interpolation
    between two entries (which thresholding would not map to 1 exactly)."""
    schedule, model, x, y = setting
    p = 0.8
    c, u, tt = exact_parts(setting, t)
    x0 = schedule.predict_x0(x, tt, (1 + W) * c - W * u)
    q = torch.quantile(per_sample(x0).abs(), p, dim=1)
    guided = build_dynamic_threshold({"eps_model": model}, W, schedule, clip_x0=True, options={
        "threshold_percentile": p, "threshold_max": None}).model
    out = per_sample(schedule.predict_x0(x, tt, guided(x, tt, y)))
    above = q > 1
    assert above.any() and out.abs().max() <= 1 + 1e-12
    assert (torch.quantile(out.abs(), p, dim=1)[above] - 1).abs().max() < 1e-10
    assert rel_err(out[~above], per_sample(x0).clamp(-1, 1)[~above]) < 1e-10 if (~above).any() else True
    capped = dynamic_threshold(x0, p, 1.5)
    s = q.clamp(1, 1.5).view(-1, 1, 1, 1)
    assert rel_err(capped, torch.maximum(torch.minimum(x0, s), -s) / s) < TOL


@pytest.mark.parametrize("threshold_max", [None, 1.0, 2.5])
def test_dynamic_threshold_against_diffusers(setting, threshold_max):
    """diffusers' DDIMScheduler._threshold_sample (dynamic_thresholding_ratio = p, sample_max_value = the
    cap, infinity for none) on the guided x0, float64: the same numbers."""
    from diffusers import DDIMScheduler
    schedule, model, x, y = setting
    cap = math.inf if threshold_max is None else threshold_max
    scheduler = DDIMScheduler(thresholding=True, dynamic_thresholding_ratio=0.995, sample_max_value=cap)
    guided = build_dynamic_threshold({"eps_model": model}, W, schedule, clip_x0=True, options={
        "threshold_percentile": 0.995, "threshold_max": threshold_max}).model
    for t in TIMESTEPS:
        c, u, tt = exact_parts(setting, t)
        theirs = scheduler._threshold_sample(schedule.predict_x0(x, tt, (1 + W) * c - W * u))
        assert rel_err(schedule.predict_x0(x, tt, guided(x, tt, y)), theirs) < 1e-10


# --------------------------------------------------------------------------- options


BAD_OPTIONS = [
    (build_apg, "apg_eta", 1.5), (build_apg, "apg_eta", float("nan")), (build_apg, "apg_norm_threshold", 0.0),
    (build_apg, "apg_momentum", -1.0), (build_apg, "apg_momentum", 0.5), (build_apg, "apg_momentum", "x"),
    (build_cfg_rescale, "rescale_phi", -0.1), (build_cfg_rescale, "rescale_phi", 1.2),
    (build_dynamic_threshold, "threshold_percentile", 99.5), (build_dynamic_threshold, "threshold_percentile", 0.0),
    (build_dynamic_threshold, "threshold_max", 0.5),
    (build_cfg_zero_star, "zero_init_steps", -1), (build_cfg_zero_star, "zero_init_steps", 1.5),
]


@pytest.mark.parametrize("builder,key,value", BAD_OPTIONS, ids=[f"{k}={v}" for _, k, v in BAD_OPTIONS])
def test_bad_options_name_the_key_and_the_fix(setting, builder, key, value):
    schedule, model, _, _ = setting
    with pytest.raises(ValueError, match=rf"guidance\.{key} must be .*; (set|give)"):
        builder({"eps_model": model}, W, schedule, clip_x0=True, options={key: value})


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_w_zero_is_the_conditional_model_and_null_rows_stay_unconditional(setting, name):
    """At w = 0 APG, rescale and CFG-Zero* (default options, zeroed steps included) are the conditional
    model; at w > 0 rows whose label is NULL_LABEL get the unconditional eps (nothing to guide)."""
    schedule, model, x, y = setting
    build = {"apg": build_apg, "cfg_rescale": build_cfg_rescale, "cfg_zero_star": build_cfg_zero_star}[name]
    tt = t_full(x, 500)
    unguided = build({"eps_model": model}, 0.0, schedule, clip_x0=False, options={}).model
    assert rel_err(unguided(x, tt, y), model(x, tt, y)) < TOL
    guided = build({"eps_model": model}, W, schedule, clip_x0=False, options={"zero_init_steps": 0}).model
    labels = y.clone()
    labels[::2] = NULL_LABEL
    out, null = guided(x, tt, labels), model(x, tt, torch.full_like(y, NULL_LABEL))
    assert rel_err(out[::2], null[::2]) < 1e-10 and rel_err(out[1::2], null[1::2]) > 1e-3
