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
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .samplers import DDPM_VARIANCES, ddpm_variance, respaced_timesteps
from .schedules import NoiseSchedule

NULL_LABEL = -1


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

    Both terms come from ONE forward pass over a batch of 2B (conditional half, null half).
    With w = 0 the conditional model is returned unchanged and the null half is skipped, and so it
    is when y is None (there is nothing to guide towards). Rows of y already equal to NULL_LABEL
    give (1 + w) eps(x, null) - w eps(x, null) = eps(x, null).
    """

    def __init__(self, model: nn.Module, w: float):
        super().__init__()
        self.model, self.w = model, float(w)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        null = torch.full_like(y, NULL_LABEL)
        eps_cond, eps_null = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
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

    Why a wrapper, not a sampler hook: without x0 clipping the ancestral mean is affine in eps,
    mu(eps) = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t) (respaced beta_t =
    1 - abar_t / abar_t', alpha_t = 1 - beta_t), so the mean shift is exactly the eps shift

        eps_hat = eps - s * Sigma * g * sqrt(alpha_t) * sqrt(1 - abar_t) / beta_t,

    and the samplers stay guidance-agnostic. The price: the wrapper must know the sampler's
    settings (``steps``, ``variance``, ``v``: pass the ones given to ``sample(sampler="ddpm")``)
    to find t' and Sigma. It is exact when clip_x0 is off. With clipping the shift passes through
    the clamp of x0_hat, whereas guided-diffusion clips first and shifts the clipped mean; the two
    differ only where x0_hat leaves [-1, 1]. Compared with the score form (ClassifierGuidance),
    the factor on g is s*Sigma*sqrt(alpha)*sqrt(1-abar)/beta instead of s*sqrt(1-abar): equal for
    Sigma = beta up to sqrt(alpha_t) = 1 - O(beta_t). At the last step (t' = -1) beta~ = 0, so
    variance="beta_tilde" adds no shift there (guided-diffusion clips that variance to beta~_1).
    Meant for sampler="ddpm"; under DDIM the same eps shift has no mean-shift reading.

    ``grad_at="x_t"`` (default) takes g at (x_t, t) as Algorithm 1 and guided-diffusion's
    condition_mean do. ``grad_at="mean"`` takes it where the seed's Taylor expansion (eqs.
    1.5-1.11) puts it: at the unguided mean mu, for the noise level of x_{t'}, i.e.
    g = grad log p_phi(y | x_{t'})|_{x_{t'} = mu} with classifier timestep max(t', 0).
    """

    GRAD_AT = ("x_t", "mean")

    def __init__(self, model: nn.Module, classifier: nn.Module, scale: float, schedule: NoiseSchedule,
                 steps: int, variance: str = "beta_tilde", v: float = 0.0, condition_model: bool = False,
                 grad_at: str = "x_t"):
        super().__init__()
        if variance not in DDPM_VARIANCES:
            raise ValueError(f"unknown DDPM variance {variance!r}; choose one of {DDPM_VARIANCES}")
        if grad_at not in self.GRAD_AT:
            raise ValueError(f"grad_at must be one of {self.GRAD_AT}, got {grad_at!r}")
        self.model, self.classifier, self.scale = model, classifier, float(scale)
        self.schedule, self.condition_model = schedule, condition_model
        self.variance, self.v, self.grad_at = variance, float(v), grad_at
        self.prev = previous_timestep_table(respaced_timesteps(schedule.timesteps, steps), schedule.timesteps)

    def forward(self, x, t, y):
        with torch.no_grad():
            eps = self.model(x, t, y if self.condition_model else None)
        if self.scale == 0:
            return eps
        t_prev = self.prev.to(t.device)[t.long()]
        if (t_prev < -1).any():
            raise ValueError("a timestep is not in the respaced sequence this wrapper was built for")
        sigma2 = ddpm_variance(self.schedule, x, t, t_prev, self.variance, self.v)
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


def previous_timestep_table(timesteps: Sequence[int], total: int) -> torch.Tensor:
    """table[t] = the timestep after t in a descending respaced sequence (-1 after the last);
    -2 marks timesteps that are not in the sequence."""
    table = torch.full((total,), -2, dtype=torch.long)
    for now, nxt in zip(timesteps, list(timesteps[1:]) + [-1]):
        table[now] = nxt
    return table
