"""Classifier-free guidance with rescale (Lin, Liu, Li & Yang 2023, "Common Diffusion Noise Schedules
and Sample Steps are Flawed", arXiv 2305.08891, sec. 3.4, eqs. 15-16; docs/equations.md section 10).

Large w inflates the guided prediction's magnitude, which oversaturates images. Lin et al. rescale
the guided prediction back to the conditional prediction's standard deviation and mix:

    eps_cfg = (1 + w) eps_c - w eps_u                         (H&S eq. 6; Lin et al.'s guidance scale = 1 + w)
    eps_r   = eps_cfg * std(eps_c) / std(eps_cfg)             (eq. 15)
    eps     = phi * eps_r + (1 - phi) * eps_cfg               (eq. 16), phi = rescale_phi

std per sample over all of C, H, W (unbiased; the correction cancels in the ratio). phi = 0 is CFG,
phi = 1 matches std(eps_c) exactly. Lin et al.'s models predict v; like diffusers'
``rescale_noise_cfg`` (used by its ClassifierFreeGuidance guider with guidance_rescale = phi) we
rescale the eps of our eps-models, which is what the samplers take.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.rescale import RESCALE_PHI
from diffguide.guidance.parts import cond_and_null, per_sample_std
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


def rescale(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """phi * guided * std(cond) / std(guided) + (1 - phi) * guided, per sample (eqs. 15-16)."""
    rescaled = guided * (per_sample_std(cond) / per_sample_std(guided))
    return phi * rescaled + (1 - phi) * guided


class RescaledClassifierFreeGuidance(nn.Module):
    """CFG at our w (diffusers' guidance_scale = 1 + w) rescaled by phi (Lin et al. eqs. 15-16).
    w = 0 or y = None return the conditional model unchanged (eps_cfg = eps_c: the ratio is 1)."""

    def __init__(self, model: nn.Module, w: float, phi: float = 0.7):
        super().__init__()
        self.model, self.w, self.phi = model, float(w), float(phi)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        return rescale((1 + self.w) * eps_c - self.w * eps_u, eps_c, self.phi)


def rescale_options(options: dict) -> dict:
    """guidance.rescale_phi, validated against its declaration (its default where absent)."""
    return {"phi": RESCALE_PHI.value_in(options)}


def build_cfg_rescale(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                      options: dict) -> Guided:
    """cfg_rescale: rescaled CFG at w = scale on the conditional model, its guided x0 clipped like
    cfg's when clip_x0; option guidance.rescale_phi."""
    guided = RescaledClassifierFreeGuidance(models["eps_model"], scale, **rescale_options(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
