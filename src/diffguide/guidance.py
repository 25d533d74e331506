"""Guidance as eps-model wrappers: each takes a model with the contract ``eps = model(x_t, t, y)``
and returns one, so the samplers never know which guidance is active (as k-diffusion's wrappers).

Conventions:
- ``w`` is Ho & Salimans' guidance strength: w = 0 is the plain conditional model. diffusers'
  and Imagen's ``guidance_scale`` equals 1 + w.
- ``s`` is Dhariwal & Nichol's classifier scale. Scaling the gradient by s is sampling from
  p(y | x)^s / Z (seed eq. 1.13): a sharper classifier distribution, normalised only approximately
  because Z depends on x.
- ``NULL_LABEL`` (-1) asks a conditional model for its unconditional output eps(x, null).

Two forms of classifier guidance live here, both as eps-model wrappers:
- ``ClassifierGuidance``: the score shift (D&N Algorithm 2, seed eqs. 1.20-1.23), valid for
  any sampler (DDIM with any eta, ancestral DDPM).
- ``ClassifierMeanGuidance``: the mean shift of an ancestral step (D&N Algorithm 1, seed eqs.
  1.10/1.12), rewritten as the eps shift that moves the DDPM mean by exactly s * Sigma * g.

x0 clipping is a wrapper too (``ClipDenoised``), so where it sits in the chain is explicit:
- classifier-free guidance clips the *guided* prediction: ClipDenoised(ClassifierFreeGuidance(m)),
  as diffusers' pipelines do (the scheduler clips what the guided eps implies);
- classifier guidance, by default (``clip_order="unguided_x0"``), clips the *unguided* x0 and then
  shifts eps (or the mean) with nothing clipped again: ClassifierGuidance(ClipDenoised(m)). This is
  guided-diffusion's order (``p_mean_variance`` clips, then ``condition_score`` /
  ``condition_mean`` shift), so our s is Dhariwal & Nichol's s. ``clip_order="guided_x0"`` clips
  after the shift instead, ClipDenoised(ClassifierGuidance(m)): every x0 the sampler sees stays in
  [-1, 1], which tames very large s, but where x0 saturates it absorbs part of the guidance
  displacement (on the mixtures a DDIM step keeps a median 60%, 34% and 11% of it at s = 1, 3
  and 10), so s means less.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .samplers import DDPM_VARIANCES, clip_denoised, ddpm_variance
from .schedules import NoiseSchedule

NULL_LABEL = -1
CLIP_ORDERS = ("unguided_x0", "guided_x0")
CG_FORMS = ("score", "mean")
LAST_STEP_VARIANCES = ("guided_diffusion", "posterior")


class ClipDenoised(nn.Module):
    """The model's eps, replaced by the eps of its x0 prediction clipped to [-1, 1]
    (samplers.clip_denoised). Images live in [-1, 1], so a prediction outside cannot be right;
    clipping it keeps the early, noisy steps from saturating. Computed in x's dtype (autocast may
    hand back bf16 eps)."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule):
        super().__init__()
        self.model, self.schedule = model, schedule

    def forward(self, x, t, y):
        return clip_denoised(self.schedule, x, t, self.model(x, t, y).to(x.dtype))[1]


def classifier_log_prob_grad(classifier: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                             y: torch.Tensor) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t): one forward and one backward of the classifier only.
    Low-precision logits (bf16 / fp16 autocast) are promoted to float32; float64 logits stay float64."""
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        logits = classifier(x_in, t)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        log_probs = torch.log_softmax(logits, dim=-1)
        selected = log_probs[torch.arange(len(y), device=y.device), y]
        (grad,) = torch.autograd.grad(selected.sum(), x_in)
    return grad.to(x_t.dtype)


class ClassifierFreeGuidance(nn.Module):
    """Ho & Salimans eq. 6:  eps~(x, y) = (1 + w) eps(x, y) - w eps(x, null).

    Both terms come from ONE forward pass over a batch of 2B (conditional half, null half); with
    ``batched=False`` from two forwards of B (the same numbers; `make bench` times both). With
    w = 0 the conditional model is returned unchanged and the null half is skipped, and so it is
    when y is None (there is nothing to guide towards). Rows of y already equal to NULL_LABEL give
    (1 + w) eps(x, null) - w eps(x, null) = eps(x, null).
    """

    def __init__(self, model: nn.Module, w: float, batched: bool = True):
        super().__init__()
        self.model, self.w, self.batched = model, float(w), batched

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        null = torch.full_like(y, NULL_LABEL)
        if self.batched:
            eps_cond, eps_null = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        else:
            eps_cond, eps_null = self.model(x, t, y), self.model(x, t, null)
        return (1 + self.w) * eps_cond - self.w * eps_null


class ClassifierGuidance(nn.Module):
    """Dhariwal & Nichol Algorithm 2, the score shift of seed eqs. 1.20-1.23:

        eps_hat(x_t) = eps(x_t) - s * sqrt(1 - abar_t) * grad_{x_t} log p_phi(y | x_t).

    ``eps`` is the unconditional model (``condition_model=False``, D&N's main setting) or the
    conditional / classifier-free guided model given y (the conditional rows of D&N Table 4).
    It is evaluated under no-grad: only the classifier is differentiated. Valid for any DDIM eta.

    With the exact eps and classifier, s = 1 on the unconditional model is the exact conditional
    eps (seed eq. 1.20), and s on top of ClassifierFreeGuidance(model, w) with condition_model=True
    is classifier-free guidance at w + s (both are shifts along grad log p(y | x_t)).
    """

    def __init__(self, model: nn.Module, classifier: nn.Module, scale: float, schedule: NoiseSchedule,
                 condition_model: bool = False):
        super().__init__()
        self.model, self.classifier, self.scale = model, classifier, float(scale)
        self.schedule, self.condition_model = schedule, condition_model

    def forward(self, x, t, y):
        with torch.no_grad():
            eps = self.model(x, t, y if self.condition_model else None)
        if self.scale == 0:
            return eps
        grad = classifier_log_prob_grad(self.classifier, x, t, y)
        return eps - self.scale * (1 - self.schedule.abar(t, x)).sqrt() * grad


class ClassifierMeanGuidance(nn.Module):
    """Dhariwal & Nichol Algorithm 1, the mean shift of seed eqs. 1.10 / 1.12, for ancestral steps:

        x_{t'} ~ N(mu + s * Sigma * g, Sigma),   g = grad log p_phi(y | x_t)  at (x_t, t),

    with mu, Sigma the DDPM step's mean and variance between t and the next respaced timestep t'.

    Why a wrapper, not a sampler hook: the ancestral mean is affine in eps,
    mu(eps) = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t) (respaced beta_t =
    1 - abar_t / abar_t', alpha_t = 1 - beta_t), so the mean shift is exactly the eps shift

        eps_hat = eps - s * Sigma * g * sqrt(alpha_t) * sqrt(1 - abar_t) / beta_t,

    and the samplers stay guidance-agnostic. The price: the wrapper must know the sampler's
    ``timesteps`` (the respaced sequence), ``variance`` and ``v`` to find t' and Sigma. Wrapped
    around ClipDenoised(model) it is guided-diffusion's p_sample + condition_mean exactly: the
    posterior mean of the clipped x0, plus s Sigma g, clipped no further (the sampler does not
    clip). Compared with the score form, the factor on g is s*Sigma*sqrt(alpha)*sqrt(1-abar)/beta
    instead of s*sqrt(1-abar): equal for Sigma = beta up to sqrt(alpha_t) = 1 - O(beta_t).
    Meant for sampler="ddpm"; under DDIM the same eps shift has no mean-shift reading.

    The last step (t' = -1) adds no noise, so its Sigma only sizes the shift there.
    ``last_step_variance="guided_diffusion"`` (default) takes guided-diffusion's value: for
    Sigma = beta the posterior variance beta~ of the step before (its "fixedlarge" table starts
    with posterior_variance[1]), for the interpolated variance beta~ of that step in place of the
    zero beta~ of the last one (its posterior_log_variance_clipped), and 0 for Sigma = beta~.
    ``"posterior"`` takes the last step's own beta / beta~ / interpolation, which for beta~ and the
    interpolation is 0 (no shift) and for beta is 1 - abar_{t0}, tiny.

    ``grad_at="x_t"`` (default) takes g at (x_t, t) as Algorithm 1 and guided-diffusion's
    condition_mean do. ``grad_at="mean"`` takes it where the seed's Taylor expansion (eqs.
    1.5-1.11) puts it: at the unguided mean mu, for the noise level of x_{t'}, i.e.
    g = grad log p_phi(y | x_{t'})|_{x_{t'} = mu} with classifier timestep max(t', 0).
    """

    GRAD_AT = ("x_t", "mean")

    def __init__(self, model: nn.Module, classifier: nn.Module, scale: float, schedule: NoiseSchedule,
                 timesteps: Sequence[int], variance: str = "beta_tilde", v: float = 0.0,
                 condition_model: bool = False, grad_at: str = "x_t", last_step_variance: str = "guided_diffusion"):
        super().__init__()
        if variance not in DDPM_VARIANCES:
            raise ValueError(f"unknown DDPM variance {variance!r}; choose one of {DDPM_VARIANCES}")
        if grad_at not in self.GRAD_AT:
            raise ValueError(f"grad_at must be one of {self.GRAD_AT}, got {grad_at!r}")
        if last_step_variance not in LAST_STEP_VARIANCES:
            raise ValueError(f"last_step_variance must be one of {LAST_STEP_VARIANCES}, got {last_step_variance!r}")
        self.model, self.classifier, self.scale = model, classifier, float(scale)
        self.schedule, self.condition_model = schedule, condition_model
        self.variance, self.v, self.grad_at = variance, float(v), grad_at
        self.last_step_variance = last_step_variance
        self.timesteps = sorted(timesteps, reverse=True)
        self.prev = previous_timestep_table(self.timesteps, schedule.timesteps)

    def forward(self, x, t, y):
        with torch.no_grad():
            eps = self.model(x, t, y if self.condition_model else None)
        if self.scale == 0:
            return eps
        t_prev = self.prev.to(t.device)[t.long()]
        if (t_prev < -1).any():
            raise ValueError("a timestep is not in the respaced sequence this wrapper was built for")
        sigma2 = self.step_variance(x, t, t_prev)
        abar_t, abar_prev = self.schedule.abar(t, x), self.schedule.abar(t_prev, x)
        alpha = abar_t / abar_prev
        beta = 1 - alpha
        if self.grad_at == "x_t":
            grad = classifier_log_prob_grad(self.classifier, x, t, y)
        else:
            mean = (x - beta / (1 - abar_t).sqrt() * eps) / alpha.sqrt()
            grad = classifier_log_prob_grad(self.classifier, mean, t_prev.clamp(min=0), y)
        shift = self.scale * sigma2 * grad  # the mean shift s * Sigma * g (seed eq. 1.12)
        return eps - shift * alpha.sqrt() * (1 - abar_t).sqrt() / beta

    def step_variance(self, x, t, t_prev):
        """Sigma of the step t -> t', with guided-diffusion's last-step convention when chosen."""
        sigma2 = ddpm_variance(self.schedule, x, t, t_prev, self.variance, self.v)
        is_last = t_prev < 0
        if self.last_step_variance == "posterior" or not is_last.any() or len(self.timesteps) < 2:
            return sigma2
        # guided-diffusion's first entries: beta~ of the step t1 -> t0 (t1 the timestep before t0).
        t0 = torch.full_like(t, self.timesteps[-1])
        t1 = torch.full_like(t, self.timesteps[-2])
        beta_tilde_1 = ddpm_variance(self.schedule, x, t1, t0, "beta_tilde")
        beta_0 = ddpm_variance(self.schedule, x, t0, torch.full_like(t, -1), "beta")
        last = {"beta": beta_tilde_1, "beta_tilde": torch.zeros_like(beta_0),
                "interpolated": beta_tilde_1 ** (1 - self.v) * beta_0 ** self.v}[self.variance]
        mask = is_last.reshape(-1, *([1] * (x.dim() - 1)))
        return torch.where(mask, last, sigma2)


def classifier_guided(model: nn.Module, classifier: nn.Module | None, scale: float, schedule: NoiseSchedule, *,
                      form: str = "score", clip_x0: bool = True, clip_order: str = "unguided_x0",
                      condition_model: bool = False, timesteps: Sequence[int] | None = None,
                      variance: str = "beta_tilde", v: float = 0.0) -> nn.Module:
    """Classifier guidance of ``model`` at scale s as the pipeline samples it: the score shift
    (``form="score"``, any sampler) or the mean shift (``form="mean"``, ancestral; needs the
    sampler's ``timesteps``, ``variance`` and ``v``), with x0 clipping (``clip_x0``) placed by
    ``clip_order`` (see the module docstring). At scale 0 the wrappers return the unguided eps
    (given y only when ``condition_model``) and never call the classifier, which may be None."""
    if form not in CG_FORMS:
        raise ValueError(f"unknown classifier-guidance form {form!r}; choose one of {CG_FORMS}")
    if clip_order not in CLIP_ORDERS:
        raise ValueError(f"unknown clip order {clip_order!r}; choose one of {CLIP_ORDERS}")
    clip = (lambda m: ClipDenoised(m, schedule)) if clip_x0 else (lambda m: m)
    inner = clip(model) if clip_order == "unguided_x0" else model
    if form == "score":
        guided = ClassifierGuidance(inner, classifier, scale, schedule, condition_model=condition_model)
    else:
        if timesteps is None:
            raise ValueError("the mean shift needs the sampler's respaced timesteps")
        guided = ClassifierMeanGuidance(inner, classifier, scale, schedule, timesteps, variance, v,
                                        condition_model=condition_model)
    return guided if clip_order == "unguided_x0" else clip(guided)


def previous_timestep_table(timesteps: Sequence[int], total: int) -> torch.Tensor:
    """table[t] = the timestep after t in a descending respaced sequence (-1 after the last);
    -2 marks timesteps that are not in the sequence."""
    table = torch.full((total,), -2, dtype=torch.long)
    for now, nxt in zip(timesteps, list(timesteps[1:]) + [-1]):
        table[now] = nxt
    return table
