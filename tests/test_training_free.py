"""TFG's unified step (diffguide.guidance.training_free) on the exact mixture, in float64:

- peer: our sampler step with `guided_eps_and_direction` equals the reference code's update,
  x_{t'} = step(x_t; x0_hat, eps) + Delta_t / sqrt(alpha_t) + sqrt(abar_{t'}) Delta_0 (TFG's
  methods/tfg.py, written out below as that code computes it), for DDIM and DDPM, clipping on;
- the special cases, each in its own paper's form, equal TFG at the matching weights (1e-12):
  DPS's x_{t'} + zeta grad log f(x0_hat) is rho_t = zeta sqrt(alpha_t); UGD's forward guidance
  (the eps shifted by s sqrt(1 - abar_t) grad) at eta = 1 is rho_t = s (1 - alpha_t); MPGD's
  x_0-space step is mu with one inner step;
- the parts: the mean guidance is the exact Tweedie gradient times rho, the variance guidance the
  closed form of gradient ascent on a Gaussian log f, the schedules and smoothing TFG's formulas.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import ddim_step, sample_ddim, sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import CleanMixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.exact.labelled_mixture import two_modes_per_class
from diffguide.exact.step_rules import tweedie_gradient, tweedie_x0
from diffguide.guidance.training_free import (TrainingFreeGuidance, TrainingFreeSettings, guided_eps_and_direction,
                                              mean_guidance, schedule_weights, smoothed, smoothing_std,
                                              variance_guidance)

SCHEDULE = NoiseSchedule.make("cosine", 1000)


def setup(t: int = 400, t_next: int = 360, clip: bool = False):
    """The exact mixture (2-D, three classes of two components), its Tweedie x0 (clipped to [-1, 1]
    as TFG's code does when ``clip``), the exact clean classifier's log f, points and one step."""
    mixture = two_modes_per_class(2, torch.Generator().manual_seed(50), spread=0.8)
    step = SCHEDULE.steps([t, t_next], torch.zeros(1, dtype=torch.float64))[0]
    gen = torch.Generator().manual_seed(51)
    x_t = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])

    def predict_x0(x):
        x0 = tweedie_x0(mixture, x, step.abar)
        return x0.clamp(-1, 1) if clip else x0

    def log_f(x0):
        ones = torch.ones(len(x0), 1, dtype=torch.float64)
        return mixture.class_log_prob(x0, ones)[torch.arange(len(x0)), y]

    return mixture, step, x_t, y, predict_x0, log_f, gen


def reference_tfg_step(x_t, x0, delta_t, delta_0, step, eta, z):
    """TFG's code (methods/base.py _predict_x_prev_from_zero, then tfg.py's guide_step): eps
    recomputed from the (clamped) x0, DDIM eq. 12, noise at eta > 0 except at the last step, then
    + Delta_t / sqrt(alpha_t) + Delta_0 sqrt(abar_prev)."""
    abar, abar_prev = step.abar, step.abar_prev
    eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).sqrt() * eps
    if eta > 0 and not step.is_last:
        prev = prev + sigma * z
    alpha = abar / abar_prev
    return prev + delta_t / alpha.sqrt() + delta_0 * abar_prev.sqrt()


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("t,t_next", [(400, 360), (40, -1)])
def test_our_step_is_the_reference_codes_update(eta, clip, t, t_next):
    _, step, x_t, _, predict_x0, log_f, gen = setup(t, t_next if t_next >= 0 else 0, clip)
    if t_next < 0:
        step = SCHEDULE.steps([t], torch.zeros(1, dtype=torch.float64))[0]
    x0, delta_t = mean_guidance(x_t, predict_x0, log_f, rho=0.7)
    delta_0 = variance_guidance(x0, log_f, mu=0.3, inner_steps=2)
    eps, direction = guided_eps_and_direction(x_t, x0, delta_t, delta_0, step.abar)
    z = torch.randn(x_t.shape, generator=gen, dtype=torch.float64)
    ours = ddim_step(x_t, eps, step=step, eta=eta, noise=None if step.is_last else z, direction_eps=direction)
    reference = reference_tfg_step(x_t, x0, delta_t, delta_0, step, eta, z)
    assert delta_t.abs().max() > 1e-3 and delta_0.abs().max() > 1e-3
    assert torch.allclose(ours, reference, rtol=0, atol=1e-12)


def test_the_mean_guidance_is_rho_times_the_exact_tweedie_gradient():
    mixture, step, x_t, y, predict_x0, log_f, _ = setup()
    _, delta_t = mean_guidance(x_t, predict_x0, log_f, rho=2.5)
    assert torch.allclose(delta_t, 2.5 * tweedie_gradient(mixture, x_t, float(step.abar), y), atol=1e-12)
    x0, none = mean_guidance(x_t, predict_x0, log_f, rho=0.0)
    assert torch.equal(none, torch.zeros_like(x_t)) and torch.allclose(x0, predict_x0(x_t))


def test_the_variance_guidance_is_gradient_ascent_in_closed_form_on_a_gaussian():
    """log f = -|x - c|^2 / 2: each step moves x_0 by mu (c - x_0), so after n steps
    Delta_0 = (1 - (1 - mu)^n) (c - x0_hat)."""
    centre = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    log_f = lambda x: -0.5 * ((x - centre) ** 2).sum(-1)  # noqa: E731
    x0 = torch.tensor([[2.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    for n in (1, 3):
        expected = (1 - (1 - 0.2) ** n) * (centre - x0)
        assert torch.allclose(variance_guidance(x0, log_f, mu=0.2, inner_steps=n), expected, atol=1e-14)
    assert torch.equal(variance_guidance(x0, log_f, mu=0.0, inner_steps=3), torch.zeros_like(x0))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dps_in_its_own_form_is_tfg_with_rho_zeta_sqrt_alpha(eta):
    """DPS (Chung et al. 2023, Alg. 1 with log f in place of -|y - A(x0_hat)|^2): the unguided step,
    then + zeta grad_{x_t} log f(x0_hat(x_t))."""
    _, step, x_t, _, predict_x0, log_f, gen = setup()
    zeta = 0.4
    z = torch.randn(x_t.shape, generator=gen, dtype=torch.float64)
    x0, gradient = mean_guidance(x_t, predict_x0, log_f, rho=1.0)
    plain_eps = (x_t - step.sqrt_abar * x0) / step.sqrt_one_minus_abar
    dps = ddim_step(x_t, plain_eps, step=step, eta=eta, noise=z) + zeta * gradient
    alpha = step.abar / step.abar_prev
    _, delta_t = mean_guidance(x_t, predict_x0, log_f, rho=float(zeta * alpha.sqrt()))
    eps, direction = guided_eps_and_direction(x_t, x0, delta_t, torch.zeros_like(x0), step.abar)
    assert torch.allclose(ddim_step(x_t, eps, step=step, eta=eta, noise=z, direction_eps=direction), dps,
                          rtol=0, atol=1e-12)


def test_ugds_forward_guidance_at_eta_one_is_tfg_with_rho_s_times_one_minus_alpha():
    """UGD (Bansal et al. 2023, eq. 6): eps_hat = eps - s sqrt(1 - abar_t) grad_{x_t} log f(x0_hat),
    taken by the step in both places. At eta = 1 its shift of x_{t'} is s (1 - alpha_t) / sqrt(alpha_t)
    grad: TFG's Delta_t / sqrt(alpha_t) with rho_t = s (1 - alpha_t)."""
    _, step, x_t, _, predict_x0, log_f, gen = setup()
    s = 3.0
    z = torch.randn(x_t.shape, generator=gen, dtype=torch.float64)
    x0, gradient = mean_guidance(x_t, predict_x0, log_f, rho=1.0)
    eps = (x_t - step.sqrt_abar * x0) / step.sqrt_one_minus_abar
    ugd = ddim_step(x_t, eps - s * step.sqrt_one_minus_abar * gradient, step=step, eta=1.0, noise=z)
    alpha = step.abar / step.abar_prev
    tfg_eps, direction = guided_eps_and_direction(x_t, x0, s * (1 - alpha) * gradient, torch.zeros_like(x0), step.abar)
    tfg = ddim_step(x_t, tfg_eps, step=step, eta=1.0, noise=z, direction_eps=direction)
    assert torch.allclose(tfg, ugd, rtol=0, atol=1e-12)
    at_ddim = ddim_step(x_t, eps - s * step.sqrt_one_minus_abar * gradient, step=step, eta=0.0)
    assert not torch.allclose(ddim_step(x_t, tfg_eps, step=step, eta=0.0, direction_eps=direction), at_ddim,
                              atol=1e-6)  # the identity needs eta = 1: at eta = 0 the shifts differ


def test_mpgd_in_its_own_form_is_tfg_with_mu_and_one_inner_step():
    """MPGD (He et al. 2024, Alg. 1): x0' = x0_hat + c grad_{x_0} log f(x0_hat), no Jacobian of the
    model, then the DDIM step from x0' with the eps of x0_hat."""
    _, step, x_t, _, predict_x0, log_f, gen = setup()
    c = 0.25
    x0 = predict_x0(x_t)
    point = x0.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(log_f(point).sum(), point)
    eps = (x_t - step.sqrt_abar * x0) / step.sqrt_one_minus_abar
    z = torch.randn(x_t.shape, generator=gen, dtype=torch.float64)
    sigma = ((1 - step.abar_prev) / (1 - step.abar) * step.beta).sqrt()
    mpgd = step.abar_prev.sqrt() * (x0 + c * gradient) + (1 - step.abar_prev - sigma**2).sqrt() * eps + sigma * z
    delta_0 = variance_guidance(x0, log_f, mu=c, inner_steps=1)
    tfg_eps, direction = guided_eps_and_direction(x_t, x0, torch.zeros_like(x0), delta_0, step.abar)
    assert torch.allclose(ddim_step(x_t, tfg_eps, step=step, eta=1.0, noise=z, direction_eps=direction), mpgd,
                          rtol=0, atol=1e-12)


def test_the_schedules_are_tfgs_normalised_weights():
    """rho_t = rho s_t S / sum(s): s = alpha_t (increase), 1 - alpha_t (decrease), 1 (constant)."""
    abar = SCHEDULE.alphas_cumprod[torch.tensor([960, 720, 480, 240, 0])]
    abar_next = torch.cat([SCHEDULE.alphas_cumprod[torch.tensor([720, 480, 240, 0])], torch.ones(1, dtype=torch.float64)])
    alpha = abar / abar_next
    for kind, shape in (("increase", alpha), ("decrease", 1 - alpha), ("constant", torch.ones(5, dtype=torch.float64))):
        weights = schedule_weights(kind, abar, abar_next)
        assert torch.allclose(weights, shape * 5 / shape.sum(), atol=1e-15)
        assert math.isclose(float(weights.mean()), 1.0, rel_tol=1e-12)
    assert (schedule_weights("increase", abar, abar_next).diff() > 0).all()  # alpha_t grows as t falls
    assert torch.allclose(smoothing_std("decrease", 0.01, abar), 0.01 * (1 - abar).sqrt())
    with pytest.raises(ValueError, match="unknown training-free schedule 'rising'"):
        schedule_weights("rising", abar, abar_next)


def test_smoothing_is_the_log_of_the_mean_probability_over_the_draws():
    log_f = lambda x: -((x - 1.0) ** 2).sum(-1)  # noqa: E731
    x0 = torch.tensor([[0.2], [1.5]], dtype=torch.float64)
    draws = torch.randn(4, 2, 1, generator=torch.Generator().manual_seed(52), dtype=torch.float64)
    expected = torch.log(torch.stack([log_f(x0 + 0.3 * e).exp() for e in draws]).mean(0))
    assert torch.allclose(smoothed(log_f, 0.3, draws)(x0), expected, atol=1e-14)
    assert smoothed(log_f, 0.0, draws) is log_f


def test_time_travel_renoises_with_the_forward_step_from_t_next_to_t():
    """Step.renoise is the reference's _predict_xt: sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) z,
    alpha_t = abar_t / abar_{t-1}."""
    step = SCHEDULE.steps([400, 360], torch.zeros(1, dtype=torch.float64))[0]
    x, z = torch.tensor([[0.3, -0.2]], dtype=torch.float64), torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    alpha = step.abar / step.abar_prev
    assert torch.allclose(step.renoise(x, z), alpha.sqrt() * x + (1 - alpha).sqrt() * z, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- the wrapper, whole chains


def reference_tfg_chain(eps_model, classifier, x, y, settings, eta, draws, clip):
    """TFG's sampling loop as its code runs it (methods/tfg.py guide_step per step, the weights of
    its schedules normalised over the chain, x0_hat clamped, recurrences with renoising), written
    with nothing of ours but the plain DDIM step."""
    steps = SCHEDULE.steps(TIMESTEPS, like=x)
    abar = torch.stack([s.abar for s in steps])
    abar_prev = torch.stack([s.abar_prev for s in steps])
    alpha = abar / abar_prev
    shapes = {"increase": alpha, "decrease": 1 - alpha, "constant": torch.ones_like(alpha)}
    rho_w = settings.rho * shapes[settings.rho_schedule] * len(alpha) / shapes[settings.rho_schedule].sum()
    mu_w = settings.mu * shapes[settings.mu_schedule] * len(alpha) / shapes[settings.mu_schedule].sum()

    def log_f(x0):
        return torch.log_softmax(classifier(x0), dim=-1)[torch.arange(len(x0)), y]

    for i, step in enumerate(steps):
        t = torch.full((len(x),), step.t)
        for attempt in range(settings.recurrences):
            x_g = x.detach().requires_grad_(True)
            x0 = (x_g - step.sqrt_one_minus_abar * eps_model(x_g, t, None)) / step.sqrt_abar
            x0 = x0.clamp(-1, 1) if clip else x0
            (g,) = torch.autograd.grad(log_f(x0).sum(), x_g)
            delta_t, x0 = rho_w[i] * g, x0.detach()
            new_x0 = x0.clone()
            for _ in range(settings.inner_steps):
                point = new_x0.requires_grad_(True)
                (g0,) = torch.autograd.grad(log_f(point).sum(), point)
                new_x0 = (point + mu_w[i] * g0).detach()
            eps = (x - step.sqrt_abar * x0) / step.sqrt_one_minus_abar
            z = draws(x) if eta > 0 and not step.is_last else None
            x_prev = ddim_step(x, eps, step=step, eta=eta, noise=z)
            x_prev = x_prev + delta_t / alpha[i].sqrt() + (new_x0 - x0) * abar_prev[i].sqrt()
            if attempt < settings.recurrences - 1:
                x = alpha[i].sqrt() * x_prev + (1 - alpha[i]).sqrt() * draws(x)
        x = x_prev.detach()
    return x


TIMESTEPS = respaced_timesteps(1000, 6, "leading")


@pytest.mark.parametrize("sampler,eta", [(sample_ddim, 0.0), (sample_ddim, 1.0), (sample_ddpm, 1.0)])
@pytest.mark.parametrize("settings", [
    TrainingFreeSettings(rho=0.5, mu=0.3, inner_steps=2, recurrences=2, rho_schedule="increase", mu_schedule="increase"),
    TrainingFreeSettings(rho=1.0, recurrences=3, rho_schedule="decrease"),
    TrainingFreeSettings(mu=0.5, inner_steps=1),
], ids=["tfg", "freedom_like", "mpgd_like"])
def test_a_whole_chain_is_the_reference_codes_loop(sampler, eta, settings):
    mixture = random_mixture(3, 2, torch.Generator().manual_seed(53), spread=0.8)
    eps_model, classifier = MixtureEpsModel(mixture, SCHEDULE), CleanMixtureClassifier(mixture, SCHEDULE)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(54), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    guided = TrainingFreeGuidance(eps_model, classifier, settings, SCHEDULE, clip_x0=True)
    options = {"eta": eta} if sampler is sample_ddim else {}
    ours = sampler(guided, x_T, TIMESTEPS, schedule=SCHEDULE, labels=y, noise=SequenceOfDraws(x_T.shape),
                   progress=False, **options)
    reference = reference_tfg_chain(eps_model, classifier, x_T, y, settings, eta, SequenceOfDraws(x_T.shape), clip=True)
    unguided = sampler(eps_model, x_T, TIMESTEPS, schedule=SCHEDULE, labels=y, noise=SequenceOfDraws(x_T.shape),
                       progress=False, **options)
    assert torch.allclose(ours, reference, rtol=0, atol=1e-10)  # 6 steps x 2 tries of gradient steps: 5e-12 seen
    assert (ours - unguided).abs().max() > 1e-3  # the guidance acted


class SequenceOfDraws:
    """A noise source handing out one fixed sequence of draws (the same for every sampler given it)."""

    def __init__(self, shape):
        gen = torch.Generator().manual_seed(55)
        self.draws = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(100)]
        self.used = 0

    def __call__(self, x):
        self.used += 1
        return self.draws[self.used - 1]


def test_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="rho and mu must be >= 0"):
        TrainingFreeSettings(rho=-1.0)
    with pytest.raises(ValueError, match="inner_steps and recurrences must be >= 1"):
        TrainingFreeSettings(recurrences=0)
    with pytest.raises(ValueError, match="unknown training-free schedule 'up'"):
        TrainingFreeSettings(mu_schedule="up")


def test_outside_a_sampler_every_step_gets_the_mean_weights():
    mixture = random_mixture(3, 2, torch.Generator().manual_seed(56), spread=0.8)
    guided = TrainingFreeGuidance(MixtureEpsModel(mixture, SCHEDULE), CleanMixtureClassifier(mixture, SCHEDULE),
                                  TrainingFreeSettings(rho=0.7, mu=0.2, rho_schedule="increase"), SCHEDULE, clip_x0=False)
    x = torch.zeros(2, 2, dtype=torch.float64)
    assert guided.step_weights(x, torch.full((2,), 500)) == (0.7, 0.2)
