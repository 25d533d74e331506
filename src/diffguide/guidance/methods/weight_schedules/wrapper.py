"""Guidance weights that vary with the timestep: w(t) for classifier-free guidance, s(t) for classifier
guidance (Wang et al. 2024, "Analysis of Classifier-Free Guidance Weight Schedulers", arXiv 2404.13040;
the interval of Kynkaanniemi et al. 2024, arXiv 2404.07724, is one of them, see
diffguide.guidance.methods.limited_interval). docs/equations.md section 10.

A schedule multiplies the row's scale by a factor f of the timestep t (``WeightSchedule``):

    w(t) = w f(t),   tau = t / (T - 1)  (tau = 1 at the noisiest timestep, 0 at the cleanest),
    constant     f = 1
    linear_up    f = 2 (1 - tau)     guidance grows as sampling proceeds (Wang et al.'s increasing linear
                                     scheduler, the one they recommend)
    linear_down  f = 2 tau           guidance shrinks as sampling proceeds
    interval     f = 1 if sigma_lo < sigma(t) <= sigma_hi else 0   (Kynkaanniemi et al.)

The factor 2 makes both linear schedules average w over the T timesteps (mean of tau over t = 0..T-1
is exactly 1/2), so a linear schedule at w spends the same total guidance as the constant one: a sweep
over w compares shapes, not amounts. sigma(t) = sqrt((1 - abar_t) / abar_t) is EDM's noise level of
the VP process (x_t / sqrt(abar_t) = x_0 + sigma(t) eps), in which the interval's bounds are stated.

The wrappers are the project's two guidance forms with the constant replaced by the per-sample w(t):
- ``ScheduledClassifierFreeGuidance``: H&S eq. 6, eps~ = (1 + w(t)) eps(x, y) - w(t) eps(x, null);
- ``ScheduledClassifierGuidance``: D&N Alg. 2 (D&N eqs. 13-14), the score form only,
  eps^ = eps(x) - s(t) sqrt(1 - abar_t) grad_x log p_phi(y | x_t).
Where a batch's weights are all 0 (outside the interval) the null half / the classifier is not run:
that is the interval's saving in compute (Kynkaanniemi et al.'s abstract: "improving both the
inference speed and result quality").
Convention: w = 0 is the unguided (conditional) model; diffusers' guidance_scale = 1 + w.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.wrappers import (CLIP_ORDERS, ClassifierLogProb, ClipDenoised, Guide, Guided,
                                         conditional_and_null, guide_gradient, with_guided_x0_clipped)

WEIGHT_SCHEDULES = ("constant", "linear_up", "linear_down", "interval")


def noise_level(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """sigma(t) = sqrt((1 - abar_t) / abar_t), broadcast against ``like`` (EDM's sigma of the VP
    process: x_t / sqrt(abar_t) = x_0 + sigma eps, Karras et al. 2022 Table 1)."""
    abar = schedule.abar(t, like)
    return ((1 - abar) / abar).sqrt()


def check_interval(sigma_lo, sigma_hi) -> tuple[float, float]:
    """The interval (sigma_lo, sigma_hi] as floats, None meaning unbounded (0 below, infinity above).
    Refuses what cannot be an interval of noise levels, naming the guidance.* key and the fix."""
    lo = 0.0 if sigma_lo is None else float(sigma_lo)
    hi = math.inf if sigma_hi is None else float(sigma_hi)
    if math.isnan(lo) or lo < 0:
        raise ValueError(f"guidance.interval_sigma_lo must be a noise level >= 0 (sigma(t) = sqrt((1 - abar) / abar) "
                         f"is never negative), got {sigma_lo!r}; set it to 0 (or null) for no lower bound")
    if math.isnan(hi) or hi <= lo:
        raise ValueError(f"guidance.interval_sigma_hi ({sigma_hi!r}) must be above guidance.interval_sigma_lo "
                         f"({sigma_lo!r}): guidance acts for sigma_lo < sigma(t) <= sigma_hi, empty otherwise; "
                         f"swap them or widen the interval (null sigma_hi = no upper bound)")
    return lo, hi


def check_schedule_name(name: str) -> str:
    if name not in WEIGHT_SCHEDULES:
        raise ValueError(f"guidance.weight_schedule: unknown schedule {name!r}; choose one of "
                         f"{', '.join(WEIGHT_SCHEDULES)}")
    return name


class WeightSchedule:
    """w(t) = scale * f(t) per sample (see the module docstring for f), for a batch of timesteps t [B],
    returned shaped [B, 1, ...] to broadcast against x, in x's dtype. ``sigma_lo`` / ``sigma_hi`` are
    used by the interval only (None = unbounded)."""

    def __init__(self, name: str, scale: float, schedule: NoiseSchedule, sigma_lo: float | None = None,
                 sigma_hi: float | None = None):
        self.name, self.scale, self.schedule = check_schedule_name(name), float(scale), schedule
        self.sigma_lo, self.sigma_hi = check_interval(sigma_lo, sigma_hi) if name == "interval" else (None, None)

    def factor(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.name == "interval":
            sigma = noise_level(self.schedule, t, like)
            return ((sigma > self.sigma_lo) & (sigma <= self.sigma_hi)).to(like.dtype)   # half-open (lo, hi]
        # tau in float64 then cast: t / (T - 1) is exact for the timesteps a sampler uses
        tau = (t.to(device=like.device, dtype=torch.float64) / max(self.schedule.timesteps - 1, 1))
        tau = tau.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
        if self.name == "linear_up":
            return 2 * (1 - tau)
        if self.name == "linear_down":
            return 2 * tau
        return torch.ones_like(tau)

    def __call__(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.scale * self.factor(t, like)


class ScheduledClassifierFreeGuidance(nn.Module):
    """H&S eq. 6 with a per-sample weight: eps~ = (1 + w(t)) eps(x, y) - w(t) eps(x, null), written in
    ClassifierFreeGuidance's form so a constant schedule gives its very numbers. One forward over
    [y, null] (2B rows) when any row's w(t) is nonzero; the conditional model alone otherwise, or when
    y is None. NULL_LABEL rows give eps(x, null)."""

    def __init__(self, model: nn.Module, weight: WeightSchedule):
        super().__init__()
        self.model, self.weight = model, weight

    def forward(self, x, t, y):
        w = self.weight(t, x) if y is not None else None
        if w is None or not bool((w != 0).any()):
            return self.model(x, t, y)
        eps_cond, eps_null = conditional_and_null(self.model, x, t, y)
        return (1 + w) * eps_cond - w * eps_null


class ScheduledGradientGuidance(nn.Module):
    """GradientGuidance's score shift (D&N Alg. 2, eqs. 13-14) with a per-sample scale s(t):
    eps^ = eps(x_t) - s(t) sqrt(1 - abar_t) grad_{x_t} guide(x_t, t)[y], the eps evaluated under
    no-grad (given y only when ``condition_model``). When every s(t) of the batch is 0 the guide,
    which may then be None, is not called."""

    def __init__(self, model: nn.Module, guide: Guide | None, weight: WeightSchedule, schedule: NoiseSchedule,
                 condition_model: bool = False):
        super().__init__()
        self.model, self.guide, self.weight = model, guide, weight
        self.schedule, self.condition_model = schedule, condition_model

    def forward(self, x, t, y):
        with torch.no_grad():
            eps = self.model(x, t, y if self.condition_model else None)
        s = self.weight(t, x)
        if not bool((s != 0).any()):
            return eps
        grad = guide_gradient(self.guide, x, t, y)
        return eps - s * (1 - self.schedule.abar(t, x)).sqrt() * grad


class ScheduledClassifierGuidance(ScheduledGradientGuidance):
    """Classifier guidance's score shift at s(t): the guide is log p_phi(y | x_t) (``ClassifierLogProb``)."""

    def __init__(self, model: nn.Module, classifier: nn.Module | None, weight: WeightSchedule,
                 schedule: NoiseSchedule, condition_model: bool = False):
        guide = None if classifier is None else ClassifierLogProb(classifier)
        super().__init__(model, guide, weight, schedule, condition_model)


def scheduled_classifier_guided(model: nn.Module, classifier: nn.Module | None, weight: WeightSchedule,
                                schedule: NoiseSchedule, *, clip_x0: bool = True,
                                clip_order: str = "unguided_x0") -> Guided:
    """Classifier guidance of the unconditional ``model`` at s(t), clipped as guidance.gradient_guided
    clips the score form: ``unguided_x0`` clips the unguided model and shifts after (guided-diffusion's
    order, so s means D&N's s), ``guided_x0`` clips the shifted prediction."""
    if clip_order not in CLIP_ORDERS:
        raise ValueError(f"guidance.cg_clip_order: unknown clip order {clip_order!r}; choose one of "
                         f"{', '.join(CLIP_ORDERS)}")
    clip = (lambda m: ClipDenoised(m, schedule)) if clip_x0 else (lambda m: m)
    inner = clip(model) if clip_order == "unguided_x0" else model
    guided = ScheduledClassifierGuidance(inner, classifier, weight, schedule)
    return Guided(guided if clip_order == "unguided_x0" else clip(guided))


def weight_from_options(scale: float, schedule: NoiseSchedule, options: dict) -> WeightSchedule:
    """The row's WeightSchedule from guidance.weight_schedule and, for the interval only,
    guidance.interval_sigma_lo / interval_sigma_hi (ignored by the other schedules)."""
    name = check_schedule_name(options["weight_schedule"])
    if name != "interval":
        return WeightSchedule(name, scale, schedule)
    return WeightSchedule(name, scale, schedule, options["interval_sigma_lo"], options["interval_sigma_hi"])


# The builders of the registry's rows cfg_schedule and cg_schedule (diffguide.registry).

def build_cfg_schedule(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                       options: dict) -> Guided:
    """cfg_schedule: H&S eq. 6 on the conditional model at w(t) = w f(t), f from guidance.weight_schedule;
    the guided x0 clipped as build_classifier_free clips it."""
    guided = ScheduledClassifierFreeGuidance(models["eps_model"], weight_from_options(scale, schedule, options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)


def build_cg_schedule(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                      options: dict) -> Guided:
    """cg_schedule: classifier guidance (score form, D&N Alg. 2) of the unconditional model at
    s(t) = s f(t), clipped where guidance.cg_clip_order says."""
    weight = weight_from_options(scale, schedule, options)
    return scheduled_classifier_guided(models["eps_model"], models.get("classifier"), weight, schedule,
                                       clip_x0=clip_x0, clip_order=options["cg_clip_order"])
