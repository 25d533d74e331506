"""Guidance-weight schedules and the guidance interval, proved on the exact mixture in float64
(diffguide.guidance.methods.weight_schedules, diffguide.guidance.methods.limited_interval; docs/equations.md section 10).

- degenerate settings are the plain methods: an interval covering every t is CFG / CG, an interval
  holding no sampled t is the unguided model, the constant schedule is CFG / CG, each as eps and
  through whole DDIM chains with x0 clipping on and off (both clip orders for CG);
- linear_up / linear_down are CFG / CG at the w(t) computed by hand, per sample, and average w;
- sigma(t) is EDM's noise level of the VP process;
- a peer test runs the official guidance-interval sampler loop (kynkaat/guidance-interval), its
  step-index interval, its G = 1 + w and its EDM sigma, against our interval under DDIM;
- bad options are refused with the guidance.<key> named.
"""

import math

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.guidance.methods.limited_interval.wrapper import build_cfg_interval, build_cg_interval, guided_steps
from diffguide.guidance.methods.weight_schedules.wrapper import (WEIGHT_SCHEDULES, ScheduledClassifierFreeGuidance,
                                                         ScheduledClassifierGuidance, WeightSchedule,
                                                         build_cfg_schedule, build_cg_schedule, noise_level)
from diffguide.guidance.wrappers import (NULL_LABEL, ClassifierFreeGuidance, ClassifierGuidance, build_classifier_free,
                                         build_classifier_guided)

F64 = torch.float64
TOL = 1e-12
T = 1000
TIMESTEPS = [0, 1, 50, 250, 500, 750, 998, 999]
STEPS = 12
ALL = {"interval_sigma_lo": 0.0, "interval_sigma_hi": None}      # (0, inf]: every t >= 0 has sigma > 0
NONE = {"interval_sigma_lo": 1e-4, "interval_sigma_hi": 1e-3}    # below sigma(0) = 0.0064 (cosine), 0.01 (linear)


def setting(kind="cosine", dim=3, seed=0, batch=32):
    """A random K = 4 mixture, its exact eps and Bayes classifier, test points and labels."""
    g = torch.Generator().manual_seed(seed)
    mixture = random_mixture(4, dim, g)
    schedule = NoiseSchedule.make(kind, T)
    x = 2.0 * torch.randn(batch, dim, generator=g, dtype=F64)
    y = torch.randint(0, 4, (batch,), generator=g)
    models = {"eps_model": MixtureEpsModel(mixture, schedule), "classifier": MixtureClassifier(mixture, schedule)}
    return schedule, models, x, y


def t_full(x, t):
    return torch.full((len(x),), t, dtype=torch.long)


def max_err(a, b):
    return (a - b).abs().max().item()


def ddim(guided, schedule, x, y, eta=0.0):
    """A whole DDIM chain of STEPS respaced steps from x, noise seeded the same for every call."""
    g = torch.Generator().manual_seed(7)
    noise = lambda like: torch.randn(like.shape, generator=g, dtype=like.dtype)  # noqa: E731
    return sample_ddim(guided.model, x, respaced_timesteps(T, STEPS), schedule=schedule, labels=y, noise=noise,
                       progress=False, eta=eta)


def cg_options(order, **extra):
    return {"cg_form": "score", "cg_clip_order": order, **extra}


# --------------------------------------------------------------------------- sigma(t) and the weights


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_noise_level_is_edm_sigma_of_the_vp_process(kind):
    """sigma(t) = sqrt((1 - abar) / abar), and x_t / sqrt(abar_t) = x_0 + sigma(t) eps (EDM's variables)."""
    schedule, _, x0, _ = setting(kind)
    abar = schedule.alphas_cumprod
    for t in TIMESTEPS:
        sigma = noise_level(schedule, t_full(x0, t), x0)
        assert sigma.shape == (len(x0), 1)
        assert max_err(sigma, math.sqrt((1 - abar[t].item()) / abar[t].item())) < TOL * max(1.0, sigma.max().item())
        eps = torch.randn_like(x0)
        x_edm = schedule.q_sample(x0, t_full(x0, t), eps) / abar[t].sqrt()
        assert max_err(x_edm, x0 + sigma * eps) < 1e-10 * max(1.0, sigma.max().item())


@pytest.mark.parametrize("name", ["constant", "linear_up", "linear_down"])
def test_schedule_averages_w_over_t(name):
    schedule, _, _, _ = setting()
    w = 2.7
    t = torch.arange(T)
    weights = WeightSchedule(name, w, schedule)(t, torch.zeros(T, 3, dtype=F64))
    assert abs(weights.mean().item() - w) < TOL


def test_linear_schedules_by_hand():
    """w(t) = 2 w (1 - t/(T-1)) rising, 2 w t/(T-1) falling, per sample of one batch."""
    schedule, _, _, _ = setting()
    t = torch.tensor(TIMESTEPS)
    like = torch.zeros(len(t), 2, dtype=F64)
    up = WeightSchedule("linear_up", 1.5, schedule)(t, like).flatten().tolist()
    down = WeightSchedule("linear_down", 1.5, schedule)(t, like).flatten().tolist()
    for k, tk in enumerate(TIMESTEPS):
        assert abs(up[k] - 1.5 * 2 * (1 - tk / (T - 1))) < TOL
        assert abs(down[k] - 1.5 * 2 * tk / (T - 1)) < TOL
    assert up[0] == 3.0 and up[-1] == 0.0 and down[0] == 0.0 and down[-1] == 3.0


def test_interval_is_half_open():
    """(sigma_lo, sigma_hi]: a step at sigma_hi exactly is guided, one at sigma_lo exactly is not."""
    schedule, _, _, _ = setting()
    timesteps = respaced_timesteps(T, STEPS)
    sigmas = noise_level(schedule, torch.tensor(timesteps), torch.zeros(STEPS, dtype=F64)).flatten().tolist()
    assert guided_steps(schedule, timesteps, sigmas[8], sigmas[3]) == [3, 4, 5, 6, 7]
    factor = WeightSchedule("interval", 1.0, schedule, sigmas[8], sigmas[3]).factor(torch.tensor(timesteps),
                                                                                   torch.zeros(STEPS, 1, dtype=F64))
    assert factor.flatten().tolist() == [0.0] * 3 + [1.0] * 5 + [0.0] * 4


# --------------------------------------------------------------------------- classifier-free: eps level


def cfg_eps(models, schedule, builder, w, options, x, y, t, clip):
    return builder(models, w, schedule, clip_x0=clip, options=options).model(x, t_full(x, t), y)


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("builder,options", [(build_cfg_interval, ALL),
                                             (build_cfg_interval, {"interval_sigma_lo": 0.0, "interval_sigma_hi": 1e9}),
                                             (build_cfg_schedule, {"weight_schedule": "constant"})])
def test_cfg_interval_covering_all_t_and_constant_schedule_are_cfg(builder, options, clip):
    schedule, models, x, y = setting()
    worst = max(max_err(cfg_eps(models, schedule, builder, 2.5, options, x, y, t, clip),
                        cfg_eps(models, schedule, build_classifier_free, 2.5, {}, x, y, t, clip)) for t in TIMESTEPS)
    assert worst < TOL


@pytest.mark.parametrize("clip", [False, True])
def test_empty_cfg_interval_is_the_conditional_model(clip):
    schedule, models, x, y = setting()
    worst = max(max_err(cfg_eps(models, schedule, build_cfg_interval, 2.5, NONE, x, y, t, clip),
                        cfg_eps(models, schedule, build_classifier_free, 0.0, {}, x, y, t, clip)) for t in TIMESTEPS)
    assert worst < TOL


@pytest.mark.parametrize("name", ["linear_up", "linear_down"])
def test_linear_cfg_is_cfg_at_the_hand_computed_w_per_sample(name):
    """One batch whose rows sit at different timesteps: row b is CFG at w(t_b) computed by hand."""
    schedule, models, x, y = setting(batch=len(TIMESTEPS) * 4)
    t = torch.tensor(TIMESTEPS).repeat(4)
    guided = ScheduledClassifierFreeGuidance(models["eps_model"], WeightSchedule(name, 1.5, schedule))(x, t, y)
    for b in range(len(x)):
        tau = t[b].item() / (T - 1)
        w = 1.5 * 2 * ((1 - tau) if name == "linear_up" else tau)
        expect = ClassifierFreeGuidance(models["eps_model"], w)(x[b:b + 1], t[b:b + 1], y[b:b + 1])
        assert max_err(guided[b:b + 1], expect) < TOL


def test_scheduled_cfg_keeps_null_rows_and_no_labels_unconditional():
    schedule, models, x, y = setting()
    wrapper = ScheduledClassifierFreeGuidance(models["eps_model"], WeightSchedule("constant", 3.0, schedule))
    t = t_full(x, 500)
    null = torch.full_like(y, NULL_LABEL)
    uncond = models["eps_model"](x, t, None)
    assert max_err(wrapper(x, t, null), uncond) < TOL
    assert max_err(wrapper(x, t, None), uncond) < TOL


def test_outside_the_interval_the_null_half_is_not_run():
    """The interval's saving: no 2B batch (no null rows) at a step outside it."""
    schedule, models, x, y = setting()
    batches = []
    model = models["eps_model"]
    counting = lambda xx, tt, yy: (batches.append(len(xx)), model(xx, tt, yy))[1]  # noqa: E731
    guided = build_cfg_interval({"eps_model": counting}, 2.0, schedule, clip_x0=False,
                                options={"interval_sigma_lo": 0.5, "interval_sigma_hi": 2.0})
    sigmas = noise_level(schedule, torch.tensor(TIMESTEPS), torch.zeros(len(TIMESTEPS), dtype=F64)).flatten()
    for t, sigma in zip(TIMESTEPS, sigmas.tolist()):
        batches.clear()
        guided.model(x, t_full(x, t), y)
        assert batches == ([2 * len(x)] if 0.5 < sigma <= 2.0 else [len(x)])


# --------------------------------------------------------------------------- classifier guidance: eps level


def cg_eps(models, schedule, builder, s, options, x, y, t, clip):
    return builder(models, s, schedule, clip_x0=clip, options=options).model(x, t_full(x, t), y)


@pytest.mark.parametrize("order", ["unguided_x0", "guided_x0"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("builder,extra", [(build_cg_interval, ALL),
                                           (build_cg_schedule, {"weight_schedule": "constant"})])
def test_cg_interval_covering_all_t_and_constant_schedule_are_cg(builder, extra, clip, order):
    schedule, models, x, y = setting()
    worst = max(max_err(cg_eps(models, schedule, builder, 1.7, cg_options(order, **extra), x, y, t, clip),
                        cg_eps(models, schedule, build_classifier_guided, 1.7, cg_options(order), x, y, t, clip))
                for t in TIMESTEPS)
    assert worst < TOL


@pytest.mark.parametrize("order", ["unguided_x0", "guided_x0"])
@pytest.mark.parametrize("clip", [False, True])
def test_empty_cg_interval_is_the_unguided_model_and_never_asks_the_classifier(clip, order):
    schedule, models, x, y = setting()
    without_classifier = {"eps_model": models["eps_model"]}
    worst = max(max_err(cg_eps(without_classifier, schedule, build_cg_interval, 1.7, cg_options(order, **NONE),
                               x, y, t, clip),
                        cg_eps(models, schedule, build_classifier_guided, 0.0, cg_options(order), x, y, t, clip))
                for t in TIMESTEPS)
    assert worst < TOL


@pytest.mark.parametrize("name", ["linear_up", "linear_down"])
def test_linear_cg_is_cg_at_the_hand_computed_s_per_sample(name):
    schedule, models, x, y = setting(batch=len(TIMESTEPS) * 2)
    t = torch.tensor(TIMESTEPS).repeat(2)
    weight = WeightSchedule(name, 1.2, schedule)
    guided = ScheduledClassifierGuidance(models["eps_model"], models["classifier"], weight, schedule)(x, t, y)
    for b in range(len(x)):
        tau = t[b].item() / (T - 1)
        s = 1.2 * 2 * ((1 - tau) if name == "linear_up" else tau)
        expect = ClassifierGuidance(models["eps_model"], models["classifier"], s, schedule)(x[b:b + 1], t[b:b + 1],
                                                                                            y[b:b + 1])
        assert max_err(guided[b:b + 1], expect) < TOL


# --------------------------------------------------------------------------- whole DDIM chains


@pytest.mark.parametrize("clip", [False, True])
def test_cfg_chains(clip):
    """Interval over all t = CFG, empty interval = conditional model, through whole DDIM chains (eta 0
    and 1); and a real interval differs from both (the test can fail)."""
    schedule, models, x, y = setting(batch=16)
    for eta in (0.0, 1.0):
        run = lambda builder, w, options: ddim(builder(models, w, schedule, clip_x0=clip, options=options),  # noqa
                                                schedule, x, y, eta)
        cfg, cond = run(build_classifier_free, 3.0, {}), run(build_classifier_free, 0.0, {})
        assert max_err(run(build_cfg_interval, 3.0, ALL), cfg) < TOL
        assert max_err(run(build_cfg_schedule, 3.0, {"weight_schedule": "constant"}), cfg) < TOL
        assert max_err(run(build_cfg_interval, 3.0, NONE), cond) < TOL
        middle = run(build_cfg_interval, 3.0, {"interval_sigma_lo": 0.3, "interval_sigma_hi": 3.0})
        assert min(max_err(middle, cfg), max_err(middle, cond)) > 1e-3


@pytest.mark.parametrize("order", ["unguided_x0", "guided_x0"])
@pytest.mark.parametrize("clip", [False, True])
def test_cg_chains(clip, order):
    schedule, models, x, y = setting(batch=16)
    run = lambda builder, s, extra: ddim(builder(models, s, schedule, clip_x0=clip,  # noqa: E731
                                                 options=cg_options(order, **extra)), schedule, x, y)
    cg, unguided = run(build_classifier_guided, 2.0, {}), run(build_classifier_guided, 0.0, {})
    assert max_err(run(build_cg_interval, 2.0, ALL), cg) < TOL
    assert max_err(run(build_cg_schedule, 2.0, {"weight_schedule": "constant"}), cg) < TOL
    assert max_err(run(build_cg_interval, 2.0, NONE), unguided) < TOL
    middle = run(build_cg_interval, 2.0, {"interval_sigma_lo": 0.3, "interval_sigma_hi": 3.0})
    assert min(max_err(middle, cg), max_err(middle, unguided)) > 1e-3


# --------------------------------------------------------------------------- peer: the official sampler loop


def official_guidance_interval_sampler(cond_net, uncond_net, x_start, class_labels, G, guidance_interval, t_steps,
                                       heun=False):
    """The sampling loop of kynkaat/guidance-interval sampling/edm_sampler.py (``edm_sampler``), with its
    S_churn = 0 default, written from that file: D-space nets net(x, sigma, labels), guidance chosen per
    step INDEX i by ``i >= guidance_start and i <= guidance_stop``, guided D = uncond.lerp(cond, G), an
    Euler step in EDM's variables and, if ``heun``, its second-order correction (for i < N - 1) with the
    same step's denoiser. Two things are handed in instead of computed: ``t_steps`` (the sigma grid, here
    our VP timesteps' sigmas with sigma_N = 0, instead of EDM's rho = 7 grid) and ``x_start`` (x at
    t_steps[0], where EDM scales unit noise by sigma_max)."""
    guidance_start, guidance_stop = guidance_interval
    num_steps = len(t_steps) - 1
    x_next = x_start
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_hat, t_hat = x_next, t_cur
        if guidance_start <= i <= guidance_stop:
            denoise_fn = lambda *args: uncond_net(*args).lerp(cond_net(*args), G)  # noqa: E731
        else:
            denoise_fn = lambda *args: cond_net(*args)  # noqa: E731
        d_cur = (x_hat - denoise_fn(x_hat, t_hat, class_labels)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if heun and i < num_steps - 1:
            d_prime = (x_next - denoise_fn(x_next, t_next, class_labels)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def edm_denoiser(eps_model, schedule, timesteps, sigmas, conditional):
    """Our mixture's eps-model as an EDM denoiser D(x; sigma) = x - sigma eps(sqrt(abar) x, t) at the grid's
    sigmas (EDM's VP preconditioning: c_in = 1 / sqrt(sigma^2 + 1) = sqrt(abar))."""
    by_sigma = dict(zip(sigmas, timesteps))

    def net(x, sigma, labels):
        t = torch.full((len(x),), by_sigma[float(sigma)], dtype=torch.long)
        abar = schedule.abar(t, x)
        return x - sigma * eps_model(abar.sqrt() * x, t, labels if conditional else None)
    return net


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("index_interval", [(3, 7), (0, STEPS - 1), (5, 5), (9, 11)])
def test_official_index_interval_equals_our_sigma_interval_under_ddim(kind, index_interval):
    """The official loop with [start, stop] and G = 1 + w (Euler: one evaluation per step, which is DDIM
    eta = 0 in EDM variables) equals our DDIM chain with (sigma_lo, sigma_hi] placed between the grid's
    sigmas: sigma_hi = sigma_start (inclusive end), sigma_lo = sigma_{stop+1} (exclusive end)."""
    schedule, models, x_T, y = setting(kind, batch=16)
    w = 2.0
    timesteps = respaced_timesteps(T, STEPS)
    sigmas = noise_level(schedule, torch.tensor(timesteps), torch.zeros(STEPS, dtype=F64)).flatten().tolist()
    start, stop = index_interval
    lo = sigmas[stop + 1] if stop + 1 < STEPS else 0.0
    options = {"interval_sigma_lo": lo, "interval_sigma_hi": sigmas[start]}
    assert guided_steps(schedule, timesteps, lo, sigmas[start]) == list(range(start, stop + 1))

    ours = ddim(build_cfg_interval(models, w, schedule, clip_x0=False, options=options), schedule, x_T, y)
    eps_model = models["eps_model"]
    cond = edm_denoiser(eps_model, schedule, timesteps, sigmas, conditional=True)
    uncond = edm_denoiser(eps_model, schedule, timesteps, sigmas, conditional=False)
    x_start = x_T / schedule.alphas_cumprod[timesteps[0]].sqrt()        # x_T / sqrt(abar_T): EDM's x at sigma_0
    theirs = official_guidance_interval_sampler(cond, uncond, x_start, y, 1 + w, index_interval, sigmas + [0.0])
    assert max_err(ours, theirs) < 1e-10
    # the peer is sensitive to the interval: one guided step more changes the result
    if start > 0 or stop < STEPS - 1:
        wider = (max(start - 1, 0), min(stop + 1, STEPS - 1))
        other = official_guidance_interval_sampler(cond, uncond, x_start, y, 1 + w, wider, sigmas + [0.0])
        assert max_err(ours, other) > 1e-6


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("builder", [build_cfg_schedule, build_cg_schedule])
def test_unknown_schedule_is_refused(builder):
    schedule, models, _, _ = setting()
    with pytest.raises(ValueError, match=r"guidance\.weight_schedule.*choose one of constant"):
        builder(models, 1.0, schedule, clip_x0=True,
                options={"weight_schedule": "cosine", **ALL, **cg_options("guided_x0")})


@pytest.mark.parametrize("builder", [build_cfg_interval, build_cg_interval])
@pytest.mark.parametrize("lo,hi,key", [(2.0, 1.0, r"guidance\.interval_sigma_hi.*swap"),
                                       (1.0, 1.0, r"guidance\.interval_sigma_hi.*swap"),
                                       (-0.1, 1.0, r"guidance\.interval_sigma_lo.*>= 0.*set it to 0"),
                                       (float("nan"), 1.0, r"guidance\.interval_sigma_lo")])
def test_bad_interval_is_refused(builder, lo, hi, key):
    schedule, models, _, _ = setting()
    options = {"interval_sigma_lo": lo, "interval_sigma_hi": hi, **cg_options("unguided_x0")}
    with pytest.raises(ValueError, match=key):
        builder(models, 1.0, schedule, clip_x0=True, options=options)


def test_unknown_clip_order_is_refused():
    schedule, models, _, _ = setting()
    with pytest.raises(ValueError, match=r"guidance\.cg_clip_order.*unguided_x0"):
        build_cg_interval(models, 1.0, schedule, clip_x0=True, options=cg_options("after", **ALL))


def test_every_schedule_name_builds():
    schedule, models, x, y = setting()
    for name in WEIGHT_SCHEDULES:
        guided = build_cfg_schedule(models, 1.0, schedule, clip_x0=True,
                                    options={"weight_schedule": name, "interval_sigma_lo": 0.28,
                                             "interval_sigma_hi": 5.42})
        assert torch.isfinite(guided.model(x, t_full(x, 400), y)).all()
