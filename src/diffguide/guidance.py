"""Guidance as eps-model wrappers and a mean-shift hook. Each wrapper takes a model with the contract
``eps = model(x_t, t, y)`` and returns one, so the samplers never know which guidance is active (as
k-diffusion's wrappers); guidance that moves the ancestral mean instead is guided-diffusion's
``cond_fn``, a hook the ancestral step calls where its mean and variance exist. Every method is
built as the same pair, ``Guided(model, cond_fn)``, which the samplers take as their ``model`` and
``cond_fn`` arguments.

Conventions:
- ``w`` is Ho & Salimans' guidance strength: w = 0 is the plain conditional model. diffusers'
  and Imagen's ``guidance_scale`` equals 1 + w.
- ``s`` is Dhariwal & Nichol's classifier scale. D&N read scaling the gradient by s as guiding with
  the sharper classifier p(y | x)^s / Z (D&N sec. 4.3), but only approximately: Z(x) = sum_y
  p(y | x)^s depends on x and guidance drops its gradient, so it follows p_t(x) p_t(y | x)^s
  (docs/equations.md, part 8).
- ``NULL_LABEL`` (-1) asks a conditional model for its unconditional output eps(x, null).

Two forms of classifier guidance live here:
- ``ClassifierGuidance``: the score shift (D&N Alg. 2, D&N eqs. 13-14), an eps-model
  wrapper valid for any sampler (DDIM with any eta, ancestral DDPM); guided-diffusion's
  ``condition_score``.
- ``ClassifierCondFn``: the mean shift of an ancestral step (D&N Alg. 1, D&N eqs. 7-10),
  the hook ``cond_fn`` of samplers.sample_ddpm, which adds Sigma * cond_fn to the mean
  (guided-diffusion's ``condition_mean``).

x0 clipping is a wrapper too (``ClipDenoised``), so where it sits in the chain is explicit:
- classifier-free guidance clips the *guided* prediction: ClipDenoised(ClassifierFreeGuidance(m)),
  as diffusers' pipelines do (the scheduler clips what the guided eps implies);
- classifier guidance, by default (``clip_order="unguided_x0"``), clips the *unguided* x0 and then
  shifts eps (or the mean) with nothing clipped again: ClassifierGuidance(ClipDenoised(m)), or
  ClipDenoised(m) with the cond_fn hook. This is guided-diffusion's order (``p_mean_variance``
  clips, then ``condition_score`` / ``condition_mean`` shift), so our s is Dhariwal & Nichol's s.
  ``clip_order="guided_x0"`` clips after the score shift instead, ClipDenoised(ClassifierGuidance(m)):
  every x0 the sampler sees stays in [-1, 1], which tames very large s, but where x0 saturates it
  absorbs part of the guidance displacement (on the mixtures a DDIM step keeps a median 60%, 34%
  and 11% of it at s = 1, 3 and 10), so s means less. The mean shift has no such order: it is added
  to the mean after x0 is clipped, and clipping the x0 the shifted mean implies is not a shift by
  Sigma * cond_fn (it moves the mean even where Sigma = 0), so ``classifier_guided`` refuses it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from .samplers import clip_denoised
from .schedules import NoiseSchedule

NULL_LABEL = -1
CLIP_ORDERS = ("unguided_x0", "guided_x0")
CG_FORMS = ("score", "mean")


class Guided(NamedTuple):
    """What every guidance method builds: the eps-model the sampler calls, and the mean-shift hook
    of ancestral steps (None unless the method shifts the mean: classifier guidance's mean form)."""

    model: nn.Module
    cond_fn: Callable[..., torch.Tensor] | None = None


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
    """The score shift of D&N Alg. 2 (D&N eqs. 13-14):

        eps_hat(x_t) = eps(x_t) - s * sqrt(1 - abar_t) * grad_{x_t} log p_phi(y | x_t).

    ``eps`` is the unconditional model (``condition_model=False``, D&N's main setting) or the
    conditional / classifier-free guided model given y (the conditional rows of D&N Table 4).
    It is evaluated under no-grad: only the classifier is differentiated. Valid for any DDIM eta.

    With the exact eps and classifier, s = 1 on the unconditional model is the exact conditional
    eps (D&N eqs. 12-14), and s on top of ClassifierFreeGuidance(model, w) with condition_model=True
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


class WithoutLabels(nn.Module):
    """eps(x_t, t, None): the model asked for its unconditional prediction whatever y is (the mean
    form's model when classifier guidance guides an unconditional model: y is for the classifier)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, t, y):
        return self.model(x, t, None)


class ClassifierCondFn:
    """The mean shift of D&N Alg. 1 (D&N eqs. 7-10), as guided-diffusion's
    ``cond_fn``: the ancestral step (samplers.ddpm_step) moves its mean by Sigma times this,

        x_{t'} ~ N(mu + Sigma * cond_fn,  Sigma),   cond_fn = s * grad log p_phi(y | x_t)  at (x_t, t),

    as guided-diffusion's ``condition_mean`` (mean + variance * cond_fn). The sampler supplies mu and
    Sigma where they already exist, so the hook needs none of the sampler's settings. Compared with the
    score form, the shift of the mean is s * Sigma * g instead of s * (beta_t / sqrt(alpha_t)) * g:
    equal for Sigma = beta up to sqrt(alpha_t) = 1 - O(beta_t).

    ``grad_at="x_t"`` (default) takes g at (x_t, t) as Algorithm 1 and guided-diffusion's
    condition_mean do. ``grad_at="mean"`` takes it where the Taylor expansion of D&N eqs. 5-6
    puts it: at the unguided mean mu, for the noise level of x_{t'}, i.e.
    g = grad log p_phi(y | x_{t'})|_{x_{t'} = mu} with classifier timestep max(t', 0).
    """

    GRAD_AT = ("x_t", "mean")

    def __init__(self, classifier: nn.Module, scale: float, grad_at: str = "x_t"):
        if grad_at not in self.GRAD_AT:
            raise ValueError(f"grad_at must be one of {self.GRAD_AT}, got {grad_at!r}")
        self.classifier, self.scale, self.grad_at = classifier, float(scale), grad_at

    def __call__(self, x, t, y, *, mean, t_prev):
        if self.grad_at == "x_t":
            return self.scale * classifier_log_prob_grad(self.classifier, x, t, y)
        return self.scale * classifier_log_prob_grad(self.classifier, mean, t_prev.clamp(min=0), y)


def classifier_guided(model: nn.Module, classifier: nn.Module | None, scale: float, schedule: NoiseSchedule, *,
                      form: str = "score", clip_x0: bool = True, clip_order: str = "unguided_x0",
                      condition_model: bool = False, grad_at: str = "x_t") -> Guided:
    """Classifier guidance of ``model`` at scale s as the pipeline samples it: the score shift
    (``form="score"``, any sampler: an eps wrapper, cond_fn None) or the mean shift (``form="mean"``,
    ancestral sampling only: the model, x0-clipped, and a ClassifierCondFn), with x0 clipping
    (``clip_x0``) placed by ``clip_order`` (see the module docstring). The eps is the unguided
    model's (given y only when ``condition_model``). At scale 0 the result is that unguided model
    with no hook and the classifier, which may be None, is never called."""
    if form not in CG_FORMS:
        raise ValueError(f"unknown classifier-guidance form {form!r}; choose one of {CG_FORMS}")
    if clip_order not in CLIP_ORDERS:
        raise ValueError(f"unknown clip order {clip_order!r}; choose one of {CLIP_ORDERS}")
    if form == "mean" and clip_x0 and clip_order == "guided_x0":
        raise ValueError("guidance.cg_form: mean with guidance.cg_clip_order: guided_x0 has no mean-shift reading: the "
                         "mean shift is added after the unguided x0 is clipped, and nothing is clipped after it "
                         "(guided-diffusion's condition_mean); set guidance.cg_clip_order: unguided_x0, or "
                         "guidance.cg_form: score (or sampling.clip_x0: false)")
    clip = (lambda m: ClipDenoised(m, schedule)) if clip_x0 else (lambda m: m)
    if form == "mean":
        inner = clip(model if condition_model else WithoutLabels(model))
        return Guided(inner, ClassifierCondFn(classifier, scale, grad_at) if scale != 0 else None)
    inner = clip(model) if clip_order == "unguided_x0" else model
    guided = ClassifierGuidance(inner, classifier, scale, schedule, condition_model=condition_model)
    return Guided(guided if clip_order == "unguided_x0" else clip(guided))


# The builders the registry's rows name (diffguide.registry): each takes the loaded models by role
# (eps_model, and classifier where the row needs one; absent at scale 0), the scale, the schedule,
# sampling.clip_x0 and the row's guidance options, and returns the Guided pair a sampler runs.

def build_classifier_free(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                          options: dict) -> Guided:
    """cfg: H&S eq. 6 on the conditional model at w = scale, its guided x0 clipped (as diffusers'
    pipelines do: the scheduler clips what the guided eps implies)."""
    guided = ClassifierFreeGuidance(models["eps_model"], w=scale)
    return Guided(ClipDenoised(guided, schedule) if clip_x0 else guided)


def build_classifier_guided(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                            options: dict) -> Guided:
    """cg: classifier guidance of the unconditional model at s = scale (D&N Alg. 1 or 2, as
    guidance.cg_form says; clipped where guidance.cg_clip_order says)."""
    return classifier_guided(models["eps_model"], models.get("classifier"), scale, schedule, form=options["cg_form"],
                             clip_x0=clip_x0, clip_order=options["cg_clip_order"])


def build_conditional_classifier_guided(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                                        options: dict) -> Guided:
    """cond_cg: classifier guidance at s = scale of the conditional model, itself guided at
    w = guidance.cond_cg_w (D&N Table 4's conditional rows when w = 0)."""
    conditional = ClassifierFreeGuidance(models["eps_model"], w=options["cond_cg_w"])
    return classifier_guided(conditional, models.get("classifier"), scale, schedule, form=options["cg_form"],
                             clip_x0=clip_x0, clip_order=options["cg_clip_order"], condition_model=True)
