"""Classifier-free guidance with dynamic thresholding (Saharia et al. 2022, Imagen, arXiv 2205.11487,
sec. 2.3 and its pseudocode; docs/equations.md section 10).

Large w pushes the predicted x0 far outside [-1, 1]; static clipping then saturates pixels at the
bounds. Imagen instead, at every step, takes s = the p-th percentile of |x0| of each sample and, when
s > 1, thresholds x0 to [-s, s] and divides by s, pulling saturated pixels inwards:

    x0 = predict_x0(eps_cfg),  eps_cfg = (1 + w) eps_c - w eps_u   (Imagen's guidance weight = 1 + w)
    s  = clamp(quantile_p(|x0|), 1, s_max)                         p = threshold_percentile, s_max = threshold_max
    x0 = clamp(x0, -s, s) / s,  eps = eps_from_x0(x0)

quantile per sample over all of C, H, W with linear interpolation (numpy's percentile, as Imagen's
pseudocode and torch.quantile in diffusers' ``DDIMScheduler._threshold_sample``). s_max = None
(config null) is Imagen's uncapped threshold; diffusers caps s at ``sample_max_value`` (default 1,
i.e. static clipping). With s_max = 1 it is static clipping exactly.

Clipping: the thresholded x0 already lies in [-1, 1], so it *replaces* the static clip. With
clip_x0 off it still thresholds: thresholding is the method, not a clipping option (the same
samples either way). At w = 0 it thresholds the conditional model's x0 (Imagen thresholds every
step whatever its guidance weight), and y = None thresholds the unconditional x0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.dynamic_thresholding import THRESHOLD_MAX, THRESHOLD_PERCENTILE
from diffguide.guidance.parts import per_sample_quantile
from diffguide.guidance.wrappers import ClassifierFreeGuidance, Guided


def dynamic_threshold(x0: torch.Tensor, percentile: float, threshold_max: float | None) -> torch.Tensor:
    """clamp(x0, -s, s) / s with s = clamp(quantile_p(|x0|), 1, s_max) per sample (Imagen sec. 2.3)."""
    cap = math.inf if threshold_max is None else threshold_max
    s = per_sample_quantile(x0.abs(), percentile).clamp(min=1.0, max=cap)
    return torch.maximum(torch.minimum(x0, s), -s) / s


class DynamicThresholding(nn.Module):
    """Replaces a model's eps by the eps of its dynamically thresholded x0 (``dynamic_threshold``),
    in x's dtype (the quantile in float32 at least, as diffusers upcasts half precision)."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule, percentile: float = 0.995,
                 threshold_max: float | None = None):
        super().__init__()
        self.model, self.schedule = model, schedule
        self.percentile, self.threshold_max = float(percentile), threshold_max

    def forward(self, x, t, y):
        eps = self.model(x, t, y).to(x.dtype)
        x0 = self.schedule.predict_x0(x, t, eps)
        wide = x0.to(torch.promote_types(x0.dtype, torch.float32))
        x0 = dynamic_threshold(wide, self.percentile, self.threshold_max).to(x.dtype)
        return self.schedule.eps_from_x0(x, t, x0)


def threshold_options(options: dict) -> dict:
    """guidance.threshold_percentile and threshold_max, validated against their declarations."""
    return {"percentile": THRESHOLD_PERCENTILE.value_in(options), "threshold_max": THRESHOLD_MAX.value_in(options)}


def build_dynamic_threshold(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                            options: dict) -> Guided:
    """dynamic_threshold: CFG at w = scale on the conditional model with Imagen's dynamic
    thresholding of its x0, which replaces the static clip; clip_x0 changes nothing (see the module
    docstring). Options guidance.threshold_percentile, threshold_max (null = no cap)."""
    del clip_x0  # thresholded x0 lies in [-1, 1] already; thresholding is the method, applied either way
    guided = ClassifierFreeGuidance(models["eps_model"], w=scale)
    return Guided(DynamicThresholding(guided, schedule, **threshold_options(options)))
