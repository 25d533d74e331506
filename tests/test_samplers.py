"""Samplers against an exact model and against diffusers as a peer oracle.

- one DDIM step and one DDPM step equal diffusers' DDIMScheduler / DDPMScheduler steps;
- the exact law of the discretised chain (affine for a Gaussian target) converges to the target;
- ancestral (DDPM) and DDIM sampling of the exact conditional model of a 2-D Gaussian mixture
  reproduce the class component within a tolerance derived from the sample count;
- the batch size never changes a sample; the same seed reproduces samples bit for bit;
- deterministic DDIM equals DDIM eq. 12 computed independently in float64, its last step lands on
  t' = -1 (the x0 prediction), and the cond_fn hook moves the ancestral mean by Sigma * cond_fn.
"""

import math

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import (SAMPLERS, clip_denoised, ddim_step, ddpm_step, ddpm_variance, sample_ddim,
                                          sample_ddpm)
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, three_class_mixture
from diffguide.guidance.wrappers import ClassifierFreeGuidance, ClassifierGuidance, ClipDenoised, classifier_guided

T = 1000
F64 = torch.float64



def schedule_of(kind):
    return NoiseSchedule.make(kind, T)


def sample(model, schedule, labels, indices, shape, *, seed, sampler="ddim", steps=50, dtype=torch.float32,
           cond_fn=None, **options):
    """Sample as stages.generate does: x_T and the step noise from PerSampleNoise(seed, indices)."""
    noise = PerSampleNoise(seed, indices)
    return SAMPLERS[sampler](model, noise.initial(shape, dtype=dtype), respaced_timesteps(schedule.timesteps, steps),
                             schedule=schedule, labels=labels, noise=noise, cond_fn=cond_fn, progress=False, **options)


def step_of(schedule, t_now, t_prev, like):
    """The coefficients of the step t_now -> t_prev (t_prev = -1: the last step)."""
    return schedule.steps([t_now] if t_prev < 0 else [t_now, t_prev], like=like)[0]


def inputs(seed, batch=16, dim=3, x_scale=1.0):
    """x_t, eps and noise for one step; eps is large enough that x0_hat leaves [-1, 1] often."""
    g = torch.Generator().manual_seed(seed)
    x = x_scale * torch.randn(batch, dim, generator=g, dtype=F64)
    eps = torch.randn(batch, dim, generator=g, dtype=F64)
    return x, eps


# --------------------------------------------------------------------------- diffusers oracle
# diffusers keeps its tables in float32 (trained_betas is cast to float32). At the cosine schedule's
# t = 999, abar ~ 1e-8 and x0_hat = (x - sqrt(1 - abar) eps) / sqrt(abar) ~ 1e4, so float32
# rounding of abar alone moves a step by ~3e-2 (and by ~2e-4 at t = 20 with clipping, where eps
# is recomputed through 1 / sqrt(1 - abar)). To compare conventions, not precisions, the
# scheduler's alphas_cumprod is replaced by our float64 table (the same numbers, unrounded);
# the steps then agree to ~1e-13.

STEP_PAIRS = [(999, 979), (500, 480), (20, 0), (19, -1)]  # DDIM: t' = t - T // 50


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(kind, clip, eta):
    from diffusers import DDIMScheduler

    schedule = schedule_of(kind)
    ref = DDIMScheduler(num_train_timesteps=T, trained_betas=schedule.betas.numpy(), clip_sample=clip,
                        set_alpha_to_one=True, prediction_type="epsilon", timestep_spacing="leading")
    ref.alphas_cumprod = schedule.alphas_cumprod  # float64 tables on both sides (see float64_tables)
    ref.set_timesteps(50)  # diffusers' DDIM step goes from t to t - T // num_inference_steps
    worst = 0.0
    for t_now, t_prev in STEP_PAIRS:
        x, eps = inputs(t_now, x_scale=2.0)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7 + t_now), dtype=F64)
        t = torch.full((len(x),), t_now)
        eps_in = clip_denoised(schedule, x, t, eps)[1] if clip else eps  # what ClipDenoised hands the step
        ours = ddim_step(x, eps_in, step=step_of(schedule, t_now, t_prev, x), eta=eta, noise=noise)
        theirs = ref.step(eps, t_now, x, eta=eta, use_clipped_model_output=True,
                          variance_noise=noise if eta > 0 else None).prev_sample
        worst = max(worst, (ours - theirs).abs().max().item())
    assert worst < 1e-5, f"max abs difference to diffusers DDIM: {worst:.2e}"


DDPM_VARIANCE_TYPES = [("beta_tilde", 0.0, "fixed_small"), ("beta", 0.0, "fixed_large"),
                       ("interpolated", 0.3, "learned_range")]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("variance,v,variance_type", DDPM_VARIANCE_TYPES)
def test_ddpm_step_matches_diffusers(kind, clip, variance, v, variance_type):
    """diffusers draws its own noise from a generator: we draw the same noise from a twin generator.
    Ho & Salimans' interpolation (beta~)^(1-v) beta^v is diffusers' learned_range with a
    'predicted variance' channel equal to 2v - 1."""
    from diffusers import DDPMScheduler

    schedule = schedule_of(kind)
    worst = 0.0
    for t_now, t_prev in [(999, 979), (600, 333), (20, 0), (0, -1)]:
        ref = DDPMScheduler(num_train_timesteps=T, trained_betas=schedule.betas.numpy(), clip_sample=clip,
                            variance_type=variance_type, prediction_type="epsilon")
        ref.alphas_cumprod = schedule.alphas_cumprod
        ref.set_timesteps(timesteps=[t_now] if t_prev < 0 else [t_now, t_prev])
        x, eps = inputs(t_now, x_scale=2.0)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(11 + t_now), dtype=F64)
        t, step = torch.full((len(x),), t_now), step_of(schedule, t_now, t_prev, x)
        eps_in = clip_denoised(schedule, x, t, eps)[1] if clip else eps  # what ClipDenoised hands the step
        ours = ddpm_step(x, eps_in, step=step, sigma2=ddpm_variance(step, variance, v),
                         noise=None if step.is_last else noise)
        output = torch.cat([eps, torch.full_like(eps, 2 * v - 1)], 1) if variance_type == "learned_range" else eps
        theirs = ref.step(output, t_now, x, generator=torch.Generator().manual_seed(11 + t_now)).prev_sample
        worst = max(worst, (ours - theirs).abs().max().item())
    assert worst < 1e-5, f"max abs difference to diffusers DDPM: {worst:.2e}"


# --------------------------------------------------------------------------- exact laws


def chain_law(model, schedule, dim, num_classes, sampler, steps, variance="beta_tilde"):
    """The exact output law N(mean_y, cov_y) of the discretised sampler from x_{T-1} ~ N(0, I),
    for every class y at once, when the class's eps is affine in x (a Gaussian target): each step
    is x' = A x + c + sigma z, with A and c read off the step function itself on 0, e_1, .., e_d."""
    basis = torch.cat([torch.zeros(1, dim, dtype=F64), torch.eye(dim, dtype=F64)])
    points = basis.repeat(num_classes, 1)
    labels = torch.arange(num_classes).repeat_interleave(dim + 1)
    mean = torch.zeros(num_classes, dim, dtype=F64)
    cov = torch.eye(dim, dtype=F64).repeat(num_classes, 1, 1)
    for step in schedule.steps(respaced_timesteps(schedule.timesteps, steps), like=points):
        eps = model(points, torch.full((len(points),), step.t), labels)
        if sampler == "ddpm":
            out = ddpm_step(points, eps, step=step, sigma2=ddpm_variance(step, variance), noise=None)
            noise_var = ddpm_variance(step, variance).item() if not step.is_last else 0.0
        else:
            out = ddim_step(points, eps, step=step, eta=0.0)
            noise_var = 0.0
        out = out.reshape(num_classes, dim + 1, dim)
        shift, a = out[:, 0], (out[:, 1:] - out[:, :1]).transpose(1, 2)  # a[y][:, i] = A_y e_i
        mean = torch.einsum("yij,yj->yi", a, mean) + shift
        cov = a @ cov @ a.transpose(1, 2) + noise_var * torch.eye(dim, dtype=F64)
    return mean, cov


@pytest.mark.parametrize("sampler,steps,variance", [("ddpm", 1000, "beta_tilde"), ("ddpm", 200, "beta_tilde"),
                                                    ("ddpm", 200, "beta"), ("ddim", 100, "beta_tilde")])
def test_discretised_chain_converges_to_the_component(sampler, steps, variance):
    """Deterministic, no sampling noise: the law the sampler actually draws from, for the exact
    conditional eps of each component, is within 4 / steps of N(m_y, C_y) in every mean and
    covariance entry (first-order samplers; a wrong coefficient gives O(1) errors). The error is
    all in the covariance: beta~ under-disperses (-2.8e-3 at 1000 steps, -1.3e-2 at 200), beta
    over-disperses (+2.1e-3 at 200), DDIM under-disperses (-1.2e-2 at 100)."""
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    model = MixtureEpsModel(mixture, schedule)
    mean, cov = chain_law(model, schedule, 2, mixture.num_classes, sampler, steps, variance)
    mean_err = (mean - mixture.means).abs().max().item()
    cov_err = (cov - mixture.covs).abs().max().item()
    assert mean_err < 1e-3 and cov_err < 4 / steps, f"law error: mean {mean_err:.2e}, covariance {cov_err:.2e}"


def standard_errors(cov, n):
    """SE of the sample mean, sqrt(C_ii / n), and of the sample covariance,
    sqrt((C_ii C_jj + C_ij^2) / n), for n Gaussian draws."""
    diag = cov.diagonal()
    return (diag / n).sqrt(), ((diag[:, None] * diag[None, :] + cov**2) / n).sqrt()


# ddpm at 200 steps takes 8 s: make test-slow (the ancestral step stays exact-tested in make test by the
# guidance chains of test_guidance_successors / test_cfgpp_autoguidance and guided-diffusion parity).
@pytest.mark.parametrize("sampler,steps,y", [pytest.param("ddpm", 200, 0, marks=pytest.mark.slow), ("ddim", 100, 2)])
def test_sampling_the_exact_conditional_model_recovers_the_component(sampler, steps, y):
    """n = 4000 samples of one class: every mean coordinate and covariance entry lies within
    4 standard errors (SE(mean) <= 1.1e-2, SE(cov) <= 1.0e-2, from the component's covariance and n)
    plus the discretisation bias (computed exactly by chain_law: ~1e-9 for means, <= 1.3e-2 for
    covariances) of the component N(m_y, C_y). The bias must itself stay below 2 SE, so the band
    cannot hide a wrong sampler. Measured: max |error| / SE = 0.90 (mean), 1.56 (cov) for DDPM;
    0.65, 1.73 for DDIM."""
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    model = MixtureEpsModel(mixture, schedule)
    n = 4000
    samples = sample(model, schedule, torch.full((n,), y), range(n), (2,), seed=3, sampler=sampler,
                     steps=steps, dtype=F64)
    law_mean, law_cov = chain_law(model, schedule, 2, mixture.num_classes, sampler, steps)
    se_mean, se_cov = standard_errors(mixture.covs[y], n)
    bias_mean, bias_cov = (law_mean[y] - mixture.means[y]).abs(), (law_cov[y] - mixture.covs[y]).abs()
    assert (bias_mean < 2 * se_mean).all() and (bias_cov < 2 * se_cov).all()
    err_mean = (samples.mean(0) - mixture.means[y]).abs()
    err_cov = (torch.cov(samples.T) - mixture.covs[y]).abs()
    assert (err_mean < 4 * se_mean + bias_mean).all(), f"mean errors {err_mean} / SE {se_mean}"
    assert (err_cov < 4 * se_cov + bias_cov).all(), f"covariance errors {err_cov} / SE {se_cov}"


# --------------------------------------------------------------------------- seeding


def guided_model():
    mixture, schedule = three_class_mixture(), schedule_of("linear")
    eps, clf = MixtureEpsModel(mixture, schedule), MixtureClassifier(mixture, schedule)
    return ClassifierGuidance(ClassifierFreeGuidance(eps, 1.0), clf, 0.5, schedule, condition_model=True), schedule


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 0.7)])
def test_batch_size_never_changes_a_sample(sampler, eta):
    model, schedule = guided_model()
    labels = torch.arange(8) % 3
    model = ClipDenoised(model, schedule)
    kwargs = dict(seed=5, sampler=sampler, steps=20, dtype=F64, **({"eta": eta} if sampler == "ddim" else {}))
    whole = sample(model, schedule, labels, range(8), (2,), **kwargs)
    halves = torch.cat([sample(model, schedule, labels[:4], range(4), (2,), **kwargs),
                        sample(model, schedule, labels[4:], range(4, 8), (2,), **kwargs)])
    assert torch.equal(whole, halves)


def test_mean_guidance_batch_size_invariant():
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    model, cond_fn = classifier_guided(MixtureEpsModel(mixture, schedule), MixtureClassifier(mixture, schedule),
                                       2.0, schedule, form="mean", clip_x0=False)
    labels = torch.arange(8) % 3
    kwargs = dict(seed=1, sampler="ddpm", steps=25, variance="beta", dtype=F64, cond_fn=cond_fn)
    whole = sample(model, schedule, labels, range(8), (2,), **kwargs)
    halves = torch.cat([sample(model, schedule, labels[:4], range(4), (2,), **kwargs),
                        sample(model, schedule, labels[4:], range(4, 8), (2,), **kwargs)])
    assert torch.equal(whole, halves)


def test_same_seed_reproduces_and_different_seeds_differ():
    model, schedule = guided_model()
    labels = torch.arange(6) % 3
    kwargs = dict(sampler="ddpm", steps=15, dtype=F64)
    first = sample(model, schedule, labels, range(6), (2,), seed=9, **kwargs)
    again = sample(model, schedule, labels, range(6), (2,), seed=9, **kwargs)
    other = sample(model, schedule, labels, range(6), (2,), seed=10, **kwargs)
    assert torch.equal(first, again)
    assert (first - other).abs().min() > 0  # every coordinate of every sample moved


def test_float32_sampling_matches_float64():
    """The default float32 sampler path agrees with float64 to single precision."""
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    model = MixtureEpsModel(mixture, schedule)
    labels = torch.arange(6) % 3
    kwargs = dict(seed=2, sampler="ddim", steps=50)
    x32 = sample(model, schedule, labels, range(6), (2,), dtype=torch.float32, **kwargs)
    x64 = sample(model, schedule, labels, range(6), (2,), dtype=F64, **kwargs)
    assert x32.dtype == torch.float32
    assert (x32.double() - x64).abs().max() < 1e-4


# --------------------------------------------------------------------------- closed forms


def cosine_abar(t, timesteps=T, offset=0.008):
    """Nichol & Dhariwal eq. 17 in closed form: abar_t = f(t + 1) / f(0), f(u) = cos^2(((u / T + s) /
    (1 + s)) pi / 2), so abar_{-1} = 1. Equal to the schedule's cumulative product except at t = T - 1,
    where the schedule clips beta at 0.999."""
    f = lambda u: math.cos((u / timesteps + offset) / (1 + offset) * math.pi / 2) ** 2  # noqa: E731
    return f(t + 1) / f(0)


def no_noise(x):
    raise AssertionError("a deterministic step drew noise")


def test_deterministic_ddim_is_eq_12_in_closed_form():
    """DDIM with eta = 0 from a given x_T equals a float64 loop of DDIM eq. 12 (sigma_t = 0),
    x_{t'} = sqrt(abar_{t'}) (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) + sqrt(1 - abar_{t'}) eps,
    with abar from the cosine closed form rather than the schedule's tables, down to t' = -1; it
    draws no noise."""
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    model = MixtureEpsModel(mixture, schedule)
    timesteps = list(range(990, -1, -45))  # any descending sequence (t = 999 has the clipped beta)
    labels = torch.arange(9) % 3
    x = torch.randn(9, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    got = sample_ddim(model, x, timesteps, schedule=schedule, labels=labels, noise=no_noise, progress=False)
    for t_now, t_next in zip(timesteps, timesteps[1:] + [-1]):
        a, a_next = cosine_abar(t_now), cosine_abar(t_next)
        eps = model(x, torch.full((len(x),), t_now), labels)
        x = math.sqrt(a_next) * (x - math.sqrt(1 - a) * eps) / math.sqrt(a) + math.sqrt(1 - a_next) * eps
    assert (got - x).abs().max() < 1e-12, (got - x).abs().max()  # measured 3e-15


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_last_step_goes_to_t_minus_1(kind, sampler):
    """The last step goes to t' = -1, where abar = 1, so both samplers return the x0 prediction of
    their last model call (at t = 0), x0_hat = (x - sqrt(1 - abar_0) eps) / sqrt(abar_0), adding no
    noise. A last step to t' = 0 would return sqrt(abar_0) x0_hat + sqrt(1 - abar_0) eps = x, which
    the test tells apart: the model's eps is the exact one plus 1, so x0_hat - x is about
    sqrt(1 - abar_0) = 1e-2 (linear), 6e-3 (cosine)."""
    mixture, schedule = three_class_mixture(), schedule_of(kind)
    exact = MixtureEpsModel(mixture, schedule)
    calls = []

    def model(x, t, y):
        calls.append((x, t, exact(x, t, y) + 1.0))
        return calls[-1][2]

    labels = torch.arange(6) % 3
    got = sample(model, schedule, labels, range(6), (2,), seed=8, sampler=sampler, steps=10, dtype=F64)
    x, t, eps = calls[-1]
    assert (t == 0).all()
    abar0 = schedule.alphas_cumprod[0]
    x0_hat = (x - (1 - abar0).sqrt() * eps) / abar0.sqrt()
    to_zero = abar0.sqrt() * x0_hat + (1 - abar0).sqrt() * eps
    assert (got - x0_hat).abs().max() < 1e-12
    assert (got - to_zero).abs().max() > 1e-3


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_cond_fn_shifts_the_ancestral_mean_by_sigma_times_cond_fn(variance):
    """guided-diffusion's condition_mean: the ancestral step's mean becomes mu + Sigma * cond_fn, and
    nothing else changes. (1) One step with and without the hook differs by exactly Sigma * cond_fn.
    (2) A two-step chain (t = 700 -> 300 -> -1) equals an independent float64 computation from the
    cosine closed form: x0_hat (DDPM eq. 4), the posterior mean (DDPM eq. 7), + Sigma * cond_fn, +
    sqrt(Sigma) z; the last step adds no noise and sizes its shift by guided-diffusion's Sigma
    (beta~ of the step before for Sigma = beta, 0 for beta~). The hook gets x_t, t, y, the unguided
    mean and t', all of which the test's cond_fn mixes, so a wrong argument fails."""
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    model = MixtureEpsModel(mixture, schedule)
    labels = torch.arange(5) % 3
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=F64)

    def cond_fn(x, t, y, *, mean, t_prev):
        return torch.sin(x + 0.5 * mean) * (t + 1)[:, None] / 1000 + (y + t_prev)[:, None] / 10

    def noise(x):
        return z

    # (1) one (last) step with its own Sigma: the shift alone is Sigma * cond_fn
    kwargs = dict(schedule=schedule, labels=labels, noise=no_noise, progress=False, variance="beta",
                  last_step_variance="posterior")
    plain = sample_ddpm(model, x_T, [500], **kwargs)
    hooked = sample_ddpm(model, x_T, [500], cond_fn=cond_fn, **kwargs)
    t500, t_end = torch.full((5,), 500), torch.full((5,), -1)
    sigma = 1 - cosine_abar(500)  # beta of the step 500 -> -1
    expected = sigma * cond_fn(x_T, t500, labels, mean=plain, t_prev=t_end)
    assert (hooked - plain - expected).abs().max() < 1e-14  # measured 3e-16

    # (2) a two-step chain against the closed form
    got = sample_ddpm(model, x_T, [700, 300], schedule=schedule, labels=labels, noise=noise, cond_fn=cond_fn,
                      progress=False, variance=variance)
    x, sigmas = x_T, []
    for t_now, t_next in [(700, 300), (300, -1)]:
        a, a_next = cosine_abar(t_now), cosine_abar(t_next)
        beta = 1 - a / a_next
        beta_tilde = beta * (1 - a_next) / (1 - a)
        sigmas.append(beta if variance == "beta" else beta_tilde)
        tt, tp = torch.full((5,), t_now), torch.full((5,), t_next)
        x0_hat = (x - math.sqrt(1 - a) * model(x, tt, labels)) / math.sqrt(a)
        mean = math.sqrt(a_next) * beta / (1 - a) * x0_hat + math.sqrt(1 - beta) * (1 - a_next) / (1 - a) * x
        if t_next >= 0:
            x = mean + sigmas[-1] * cond_fn(x, tt, labels, mean=mean, t_prev=tp) + math.sqrt(sigmas[-1]) * z
        else:  # guided-diffusion's last-step Sigma: beta~ of the step before (fixedlarge), 0 (fixedsmall)
            shift = beta_tilde_before if variance == "beta" else 0.0
            x = mean + shift * cond_fn(x, tt, labels, mean=mean, t_prev=tp)
        beta_tilde_before = beta_tilde
    assert (got - x).abs().max() < 1e-12, (got - x).abs().max()  # measured 2e-14


def test_ddim_refuses_a_mean_shift():
    mixture, schedule = three_class_mixture(), schedule_of("cosine")
    with pytest.raises(ValueError, match="ancestral"):
        sample_ddim(MixtureEpsModel(mixture, schedule), torch.zeros(2, 2, dtype=F64), [500, 0], schedule=schedule,
                    noise=no_noise, cond_fn=lambda x, t, y, **_: x, progress=False)


def test_steps_must_descend_within_the_schedule():
    schedule = schedule_of("cosine")
    for bad in ([], [10, 10], [0, 10], [T, 0], [5, -1]):
        with pytest.raises(ValueError, match="descend"):
            schedule.steps(bad, like=torch.zeros(1))


def test_respaced_timesteps_endpoints():
    ts = respaced_timesteps(T, 50)
    assert ts[0] == T - 1 and ts[-1] == 0 and len(ts) == 50 and ts == sorted(ts, reverse=True)
    assert respaced_timesteps(T, T) == list(range(T - 1, -1, -1))
    assert len(respaced_timesteps(T, 200)) == 200


@pytest.mark.parametrize("steps", [1, 10, 25, 30, 50, 999])
def test_timestep_spacings_match_diffusers(steps):
    """linspace / leading / trailing are diffusers' DDIMScheduler.set_timesteps of those names
    (steps_offset 0), descending, and each has exactly K distinct timesteps in [0, T)."""
    from diffusers import DDIMScheduler

    for spacing in ("linspace", "leading", "trailing"):
        ours = respaced_timesteps(T, steps, spacing)
        scheduler = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
        scheduler.set_timesteps(steps)
        theirs = scheduler.timesteps.tolist()
        assert ours == theirs, f"{spacing}, K = {steps}"
        assert len(ours) == steps and min(ours) >= 0 and max(ours) < T


def test_trailing_spacing_never_yields_timestep_minus_1():
    """diffusers' float arange gives T = 100, K = 29 thirty values, the last -1 (0/0 in the final
    step); ours keeps its first K, so it agrees with diffusers wherever diffusers is valid."""
    from diffusers import DDIMScheduler

    for timesteps, steps in [(100, 29), (100, 31), (1000, 61), (1000, 103)]:
        ours = respaced_timesteps(timesteps, steps, "trailing")
        assert len(ours) == steps and min(ours) >= 0 and ours[0] == timesteps - 1
        scheduler = DDIMScheduler(num_train_timesteps=timesteps, timestep_spacing="trailing")
        scheduler.set_timesteps(steps)
        assert scheduler.timesteps.tolist()[:steps] == ours


def test_leading_spacing_is_guided_diffusions_ddim_stride():
    assert respaced_timesteps(T, 25, "leading") == list(range(0, 1000, 40))[::-1]
    with pytest.raises(ValueError, match="spacing"):
        respaced_timesteps(T, 25, "uniform")
