"""Samplers: one loop over a respaced timestep sequence, one step function per kind.

Every sampler has the same leading signature, as k-diffusion's (k_diffusion/sampling.py):

    sample_<kind>(model, x, timesteps, *, schedule, labels=None, noise, cond_fn=None, progress=True, ...)

- ``model``: an eps-model, ``eps = model(x_t, t, y)``; guidance that changes eps (classifier-free,
  the score form of classifier guidance) and x0 clipping are wrappers of it (diffguide.guidance.wrappers),
  so the sampler takes eps as it is and never clips;
- ``x``: the initial noise x_T, drawn by the caller; ``timesteps``: the descending respaced sequence
  (``noise_levels.respaced_timesteps``), whose last step goes to t' = -1 (abar = 1, the clean data);
- ``noise``: a callable ``noise(x)`` returning a standard normal draw shaped like x (EDM's
  ``randn_like``, k-diffusion's ``noise_sampler``); seeding lives with the caller
  (diffguide.diffusion.seeding.PerSampleNoise);
- ``cond_fn``: guided-diffusion's hook for guidance that shifts the ancestral mean (D&N Alg. 1):
  mu <- mu + Sigma * cond_fn(x_t, t, y, mean=mu, t_prev=t'). Only ancestral steps have that mean;
  DDIM refuses it.
- the direction eps (CFG++, diffguide.guidance.methods.cfgpp): a model may return, beside its eps,
  the eps of the *direction* term of the step (DDIM eq. 12's second term), distinct from the eps
  whose x0 the step keeps (diffguide.diffusion.chain.eps_and_direction); every other model has
  none, and its steps take the eps for both.
- the chain: each sampler announces the chain, its noise levels and each step to its model
  (diffguide.diffusion.chain), so stateful guidance counts steps, not calls; a model that asks for
  time travel (``recurrences``) has each DDIM or ancestral step taken that many times, renoised
  back in between (``with_time_travel``).

Equation labels are those of docs/equations.md.

The step coefficients are computed once per run by the schedule (NoiseSchedule.steps) and each step
function reads its row (schedules.Step) with keyword-only arguments.
"""

from __future__ import annotations

from typing import Callable

import torch

from diffguide.base.runtime import progress_bar
from diffguide.diffusion.chain import (announce_levels, enter_step, eps_and_direction, recurrences,
                                       renoises_own_direction, start_chain)
from diffguide.diffusion.schedules import NoiseSchedule, Step

EpsModel = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
Noise = Callable[[torch.Tensor], torch.Tensor]
CondFn = Callable[..., torch.Tensor]

DDPM_VARIANCES = ("beta", "beta_tilde", "interpolated")
LAST_STEP_VARIANCES = ("guided_diffusion", "posterior")


def clip_denoised(schedule: NoiseSchedule, x, t, eps):
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) clipped to [-1, 1], and the eps it implies
    (guided-diffusion's ``clip_denoised`` in p_mean_variance, then _predict_eps_from_xstart)."""
    x0 = schedule.predict_x0(x, t, eps).clamp(-1, 1)
    return x0, schedule.eps_from_x0(x, t, x0)


def _batch_timestep(step: Step, x: torch.Tensor) -> torch.Tensor:
    return torch.full((len(x),), step.t, device=x.device, dtype=torch.long)


def ddim_step(x, eps, *, step: Step, eta: float = 0.0, noise: torch.Tensor | None = None,
              direction_eps: torch.Tensor | None = None):
    """One step t -> t' of DDIM (DDIM eq. 12, the generalized step with a free sigma_t):

        x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma_t^2) eps + sigma_t z,       (eq. 12)
        sigma_t = eta * sqrt((1 - abar_{t'}) / (1 - abar_t)) * sqrt(1 - abar_t / abar_{t'}),   (eq. 16)

    with x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t). eta = 0 is DDIM (deterministic, no
    ``noise`` needed); eta = 1 gives DDPM's posterior variance beta~_t. At the last step (t' = -1,
    abar = 1) sigma is 0 and the result is x0_hat. eps is taken as it is: x0 clipping is the model's
    wrapper (guidance.ClipDenoised, which also recomputes eps from the clipped x0, as guided-diffusion's
    ddim_sample). With it, this equals diffusers' DDIMScheduler.step with clip_sample,
    use_clipped_model_output=True and set_alpha_to_one=True, which tests/test_samplers.py checks.

    ``direction_eps``, when given, replaces eps in the second term only (x0_hat keeps eps): CFG++
    renoises its guided x0 with the unconditional eps (diffguide.guidance.methods.cfgpp). None is plain DDIM.
    """
    x0 = step.predict_x0(x, eps)
    sigma = eta * ((1 - step.abar_prev) / (1 - step.abar)).sqrt() * step.beta.sqrt()   # eq. 16
    renoise = eps if direction_eps is None else direction_eps
    direction = (1 - step.abar_prev - sigma**2).clamp(min=0).sqrt() * renoise            # eq. 12, 2nd term
    x_prev = step.abar_prev.sqrt() * x0 + direction
    return x_prev if noise is None else x_prev + sigma * noise


def ddpm_variance(step: Step, variance: str = "beta_tilde", v: float = 0.0) -> torch.Tensor:
    """Sigma_t of an ancestral step (respaced beta_t = 1 - abar_t / abar_t'): 'beta' is beta_t,
    'beta_tilde' the posterior variance beta~_t (DDPM sec. 3.2: sigma_t^2 = beta_t or beta~_t),
    'interpolated' Ho & Salimans' (beta~_t)^(1-v) (beta_t)^v (Nichol & Dhariwal's eq. 15 with a fixed
    v). In diffusers' DDPMScheduler these are fixed_large, fixed_small and learned_range with a
    variance output of 2v - 1."""
    if variance == "beta":
        return step.beta
    if variance == "beta_tilde":
        return step.beta_tilde
    if variance == "interpolated":
        return step.beta_tilde.clamp(min=1e-20) ** (1 - v) * step.beta**v
    raise ValueError(f"unknown DDPM variance {variance!r}; choose one of {DDPM_VARIANCES}")


def last_step_shift_variance(steps: tuple[Step, ...], variance: str = "beta_tilde", v: float = 0.0,
                             convention: str = "guided_diffusion") -> torch.Tensor:
    """The Sigma that sizes the mean shift (cond_fn) at the last step, which adds no noise.

    ``"guided_diffusion"`` takes guided-diffusion's value (the ``variance`` p_mean_variance hands to
    condition_mean): for Sigma = beta the posterior variance beta~ of the step before (its
    "fixedlarge" table starts with posterior_variance[1]), for the interpolated variance beta~ of
    that step in place of the zero beta~ of the last one (its posterior_log_variance_clipped), and 0
    for Sigma = beta~. ``"posterior"`` takes the last step's own Sigma, which for beta~ and the
    interpolation is 0 (no shift) and for beta is 1 - abar_{t0}, tiny.
    """
    if convention not in LAST_STEP_VARIANCES:
        raise ValueError(f"last_step_variance must be one of {LAST_STEP_VARIANCES}, got {convention!r}")
    last = steps[-1]
    if convention == "posterior" or len(steps) < 2:
        return ddpm_variance(last, variance, v)
    beta_tilde_before = steps[-2].beta_tilde  # guided-diffusion's posterior_variance[1]
    return {"beta": beta_tilde_before, "beta_tilde": torch.zeros_like(last.beta),
            "interpolated": beta_tilde_before ** (1 - v) * last.beta**v}[variance]


def ddpm_step(x, eps, *, step: Step, sigma2: torch.Tensor, noise: torch.Tensor | None,
              cond_fn: CondFn | None = None, labels: torch.Tensor | None = None,
              shift_sigma2: torch.Tensor | None = None, direction_eps: torch.Tensor | None = None):
    """One ancestral step t -> t' (DDPM Alg. 2, line 4, with x_0 predicted):

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)              (DDPM eq. 4 solved for x_0)
        mu = mu~_t(x_t, x0_hat)                                           (DDPM eq. 7, respaced)
        mu <- mu + Sigma' * cond_fn(x_t, t, y, mean=mu, t_prev=t')        (D&N Alg. 1; condition_mean)   
        x_{t'} = mu + sqrt(Sigma_t) z                                     (no z at the last step: x_0 = mu)

    ``sigma2`` is Sigma_t (``ddpm_variance``); ``shift_sigma2`` the Sigma' that sizes the mean shift,
    Sigma_t unless given (the last step's convention: ``last_step_shift_variance``). ``noise`` is z,
    None at the last step. x0_hat is not clipped here (ClipDenoised wraps the model), and nothing is
    clipped after the shift, as in guided-diffusion's p_sample.

    A ``cond_fn`` with a ``draw_step(x, t, y, *, mean, t_prev, sigma2, noise)`` method replaces the
    last two lines: it returns x_{t'} from the unguided mean, Sigma' and z (None at the last step),
    for a rule whose covariance is not Sigma I (the Laplace rule, diffguide.guidance.methods.second_order).

    ``direction_eps`` (CFG++, diffguide.guidance.methods.cfgpp): the mean is written as DDIM eq. 12 at eta = 1, whose
    sigma^2 is beta~_t and which equals mu~_t when both eps agree (docs/equations.md part 8),

        mu = sqrt(abar_{t'}) x0_hat(eps) + sqrt(1 - abar_{t'} - beta~_t) direction_eps,

    whatever Sigma_t the step draws with. None is the posterior mean above, unchanged.
    """
    x0 = step.predict_x0(x, eps)
    mean = step.posterior_mean(x0, x) if direction_eps is None else _ddim_eta1_mean(step, x0, direction_eps)
    if cond_fn is not None:
        t = _batch_timestep(step, x)
        t_prev = torch.full_like(t, step.t_prev)
        shift = sigma2 if shift_sigma2 is None else shift_sigma2
        draw_step = getattr(cond_fn, "draw_step", None)
        if draw_step is not None:  # a rule that shapes the step's noise too (cg_laplace): it draws x_{t'} itself
            return draw_step(x, t, labels, mean=mean, t_prev=t_prev, sigma2=shift, noise=noise)
        mean = mean + shift * cond_fn(x, t, labels, mean=mean, t_prev=t_prev)
    return mean if noise is None else mean + sigma2.sqrt() * noise


def _ddim_eta1_mean(step: Step, x0: torch.Tensor, direction_eps: torch.Tensor) -> torch.Tensor:
    """sqrt(abar_{t'}) x0 + sqrt(1 - abar_{t'} - beta~_t) eps: mu~_t in DDIM eq. 12's form at eta = 1."""
    return step.abar_prev.sqrt() * x0 + (1 - step.abar_prev - step.beta_tilde).clamp(min=0).sqrt() * direction_eps


def announced_steps(model, steps: list[Step], x: torch.Tensor, kind: str, progress: bool):
    """The run's steps under a progress bar, each announced to the model before its first call
    (diffguide.diffusion.chain): the chain's start, then each step's index and timestep."""
    start_chain(model, len(steps))
    announce_levels(model, torch.stack([s.abar for s in steps]), torch.stack([s.abar_prev for s in steps]))
    for index, step in enumerate(progress_bar(steps, desc=f"{kind} x{len(x)}", disable=not progress, leave=False)):
        enter_step(model, index, step.t)
        yield step


def refuse_mean_shift(cond_fn: CondFn | None, sampler: str) -> None:
    """A mean shift (D&N Alg. 1) needs an ancestral step's mean and variance, which ``sampler`` lacks."""
    if cond_fn is not None:
        raise ValueError(f"cond_fn shifts the mean of an ancestral step (D&N Alg. 1); {sampler} has no such mean: use "
                         "sample_ddpm, or the score form of classifier guidance (guidance.ClassifierGuidance)")


@torch.no_grad()
def sample_ddim(model: EpsModel, x: torch.Tensor, timesteps, *, schedule: NoiseSchedule, labels=None, noise: Noise,
                cond_fn: CondFn | None = None, progress: bool = True, eta: float = 0.0) -> torch.Tensor:
    """DDIM sampling (DDIM eq. 12 at every step of ``timesteps``), from x = x_T to x_0.

    ``eta`` = 0 is deterministic and draws no noise; eta > 0 draws ``noise(x)`` at every step but
    the last. ``cond_fn`` must be None: a mean shift needs an ancestral step's mean and variance
    (use the score form of classifier guidance, an eps wrapper, under DDIM)."""
    refuse_mean_shift(cond_fn, "DDIM")
    y = None if labels is None else labels.to(x.device)
    tries = recurrences(model)  # read once: it walks the model's parts
    for step in announced_steps(model, schedule.steps(timesteps, like=x), x, "ddim", progress):
        def take(x_t):
            eps, direction = eps_and_direction(model, x_t, _batch_timestep(step, x_t), y)
            z = noise(x_t) if eta > 0 and not step.is_last else None
            return ddim_step(x_t, eps, step=step, eta=eta, noise=z, direction_eps=direction)
        x = with_time_travel(take, x, step, tries, noise)
    return x


def with_time_travel(take: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: Step, times: int,
                     noise: Noise) -> torch.Tensor:
    """x_{t'} of ``take`` (one step from x_t), taken ``times`` times: between tries x_{t'} is renoised
    back to t (Step.renoise) with a fresh draw of ``noise`` (FreeDoM's, UGD's and TFG's time travel,
    TFG's N_recur). times = 1 is the plain step."""
    x_next = take(x)
    for _ in range(times - 1):
        x_next = take(step.renoise(x_next, noise(x_next)))
    return x_next


@torch.no_grad()
def sample_ddpm(model: EpsModel, x: torch.Tensor, timesteps, *, schedule: NoiseSchedule, labels=None, noise: Noise,
                cond_fn: CondFn | None = None, progress: bool = True, variance: str = "beta_tilde", v: float = 0.0,
                last_step_variance: str = "guided_diffusion") -> torch.Tensor:
    """Ancestral sampling (DDPM Alg. 2 over the respaced ``timesteps``), from x = x_T to x_0,
    with Sigma_t = ``variance`` (``ddpm_variance``) and an optional mean shift ``cond_fn`` (see
    ``ddpm_step``; its Sigma at the last step follows ``last_step_variance``, see
    ``last_step_shift_variance``). Draws ``noise(x)`` at every step but the last, which returns the
    mean."""
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"unknown DDPM variance {variance!r}; choose one of {DDPM_VARIANCES}")
    y = None if labels is None else labels.to(x.device)
    steps = schedule.steps(timesteps, like=x)
    last_shift = last_step_shift_variance(steps, variance, v, last_step_variance)
    tries = recurrences(model)
    for step in announced_steps(model, steps, x, "ddpm", progress):
        def take(x_t):
            eps, direction = eps_and_direction(model, x_t, _batch_timestep(step, x_t), y)
            z = None if step.is_last else noise(x_t)
            return ddpm_step(x_t, eps, step=step, sigma2=ddpm_variance(step, variance, v), noise=z, cond_fn=cond_fn,
                             labels=y, shift_sigma2=last_shift if step.is_last else None, direction_eps=direction)
        x = with_time_travel(take, x, step, tries, noise)
    return x


@torch.no_grad()
def sample_heun(model: EpsModel, x: torch.Tensor, timesteps, *, schedule: NoiseSchedule, labels=None, noise: Noise,
                cond_fn: CondFn | None = None, progress: bool = True) -> torch.Tensor:
    """Heun's second-order method on DDIM's ODE (DDIM eq. 14; Karras et al. 2022, Algorithm 1 with
    no churn), from x = x_T to x_0. In x~ = x / sqrt(abar_t) and sigma_t = sqrt((1 - abar_t) / abar_t),
    the ODE is dx~/dsigma = eps(x, t); a DDIM step (eta = 0) is its Euler step. Heun averages the
    slope at both ends:

        x~_E = x~_t + (sigma_{t'} - sigma_t) eps_t                       (the DDIM step)
        x~_{t'} = x~_t + (sigma_{t'} - sigma_t) (eps_t + eps(x_E, t')) / 2

    The corrector's call belongs to the same step (``enter_step`` is announced once), so stateful
    guidance counts steps, not calls. The last step (to t' = -1, sigma = 0) is Euler's, as Karras et
    al.'s. Deterministic (``noise`` is not drawn); ``cond_fn`` is refused, as under DDIM, and so is a
    model with a direction eps (CFG++): the ODE has one slope."""
    refuse_mean_shift(cond_fn, "the Heun ODE sampler")
    if renoises_own_direction(model):
        raise ValueError("this model renoises with its own direction eps (CFG++; training-free guidance's unguided eps), "
                         "the second term of a DDIM or DDPM "
                         "step; Heun's ODE step has one slope: sample it with sample_ddim or sample_ddpm")
    if recurrences(model) > 1:
        raise ValueError("this model takes each step more than once with renoising in between (time travel); "
                         "Heun's ODE sampler is deterministic: sample it with sample_ddim or sample_ddpm")
    y = None if labels is None else labels.to(x.device)
    for step in announced_steps(model, schedule.steps(timesteps, like=x), x, "heun", progress):
        eps = model(x, _batch_timestep(step, x), y).to(x.dtype)
        euler = ddim_step(x, eps, step=step, eta=0.0, noise=None)
        if step.is_last:
            x = euler
            continue
        eps_next = model(euler, torch.full((len(x),), step.t_prev, device=x.device, dtype=torch.long), y).to(x.dtype)
        x = heun_step(x, eps, eps_next, step=step)
    return x


def heun_step(x: torch.Tensor, eps: torch.Tensor, eps_next: torch.Tensor, *, step: Step) -> torch.Tensor:
    """x_{t'} from the two slopes of Heun's step (see sample_heun), in x = sqrt(abar) x~."""
    sigma = ((1 - step.abar) / step.abar).sqrt()
    sigma_next = ((1 - step.abar_prev) / step.abar_prev).sqrt()
    x_tilde = x / step.sqrt_abar + (sigma_next - sigma) * (eps + eps_next) / 2
    return step.abar_prev.sqrt() * x_tilde


SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "heun": sample_heun}
