"""Magnitude-aware mitigation for boosted guidance (MAMBO-G, arXiv 2508.03442; docs/equations.md
section 10), as diffusers' ``MagnitudeAwareGuidance`` computes it.

Large guidance updates early in the chain push samples off the data manifold; MAMBO-G damps w by the
update's size relative to the unconditional prediction, per sample:

    r      = ||eps_c - eps_u|| / ||eps_u||                 (norms over C, H, W)
    w_t    = w exp(-alpha r)
    eps~   = eps_c + w_t (eps_c - eps_u)

diffusers writes the same as eps_u + (1 + (s - 1) exp(-alpha r)) (eps_c - eps_u) with s = 1 + w (its
default), or eps_c + s exp(-alpha r) (eps_c - eps_u) with s = w (use_original_formulation): in our w
both are the line above. alpha = 0 is CFG.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.mambo_g import MAMBO_ALPHA
from diffguide.guidance.parts import cond_and_null, per_sample_norm
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


def damped_weight(eps_c: torch.Tensor, eps_u: torch.Tensor, w: float, alpha: float) -> torch.Tensor:
    """w exp(-alpha ||eps_c - eps_u|| / ||eps_u||), shaped [B, 1, ...]."""
    return w * torch.exp(-alpha * per_sample_norm(eps_c - eps_u) / per_sample_norm(eps_u))


class MagnitudeAwareGuidance(nn.Module):
    """MAMBO-G at our w with damping alpha (module docstring). w = 0 or y = None return the conditional
    model unchanged."""

    def __init__(self, model: nn.Module, w: float, alpha: float = 8.0):
        super().__init__()
        self.model, self.w, self.alpha = model, float(w), float(alpha)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        return eps_c + damped_weight(eps_c, eps_u, self.w, self.alpha) * (eps_c - eps_u)


def build_mambo_g(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """mambo_g: MAMBO-G at w = scale on the conditional model (guidance.mambo_alpha), its guided x0
    clipped like cfg's when clip_x0."""
    guided = MagnitudeAwareGuidance(models["eps_model"], scale, MAMBO_ALPHA.value_in(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
