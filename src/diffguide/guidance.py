"""Guidance as eps-model wrappers: each takes a model with the contract ``eps = model(x_t, t, y)``
and returns one, so the samplers never know which guidance is active (as k-diffusion's wrappers).

Conventions:
- ``w`` is Ho & Salimans' guidance strength: w = 0 is the plain conditional model. diffusers'
  and Imagen's ``guidance_scale`` equals 1 + w.
- ``s`` is Dhariwal & Nichol's classifier scale. Scaling the gradient by s is sampling from
  p(y | x)^s / Z (seed eq. 1.13): a sharper classifier distribution, normalised only approximately
  because Z depends on x.
- ``NULL_LABEL`` (-1) asks a conditional model for its unconditional output eps(x, null).
"""

from __future__ import annotations

import torch
from torch import nn

from .schedules import NoiseSchedule

NULL_LABEL = -1


def classifier_log_prob_grad(classifier: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                             y: torch.Tensor) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t): one forward and one backward of the classifier only."""
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        log_probs = torch.log_softmax(classifier(x_in, t).float(), dim=-1)
        selected = log_probs[torch.arange(len(y), device=y.device), y]
        (grad,) = torch.autograd.grad(selected.sum(), x_in)
    return grad.to(x_t.dtype)


class ClassifierFreeGuidance(nn.Module):
    """Ho & Salimans eq. 6:  eps~(x, y) = (1 + w) eps(x, y) - w eps(x, null).

    Both terms come from ONE forward pass over a batch of 2B (conditional half, null half).
    With w = 0 the conditional model is returned unchanged and the null half is skipped.
    """

    def __init__(self, model: nn.Module, w: float):
        super().__init__()
        self.model, self.w = model, float(w)

    def forward(self, x, t, y):
        if self.w == 0:
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
