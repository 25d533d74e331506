"""CFG-Zero* (Fan, Zheng, Yeh & Liu 2025, arXiv 2503.18886, sec. 4 and Algorithm 1;
docs/equations.md section 10).

Two changes to classifier-free guidance, for models whose unconditional prediction is off early on:
- optimized scale (sec. 4.1): the unconditional prediction is scaled by the s that minimises
  ||eps_c - s eps_u||^2 per sample, s* = <eps_c, eps_u> / ||eps_u||^2 (over all of C, H, W), and
      eps = (1 + w) eps_c - w s* eps_u          (the paper's guidance scale = 1 + w; s* = 1 is CFG);
- zero-init (sec. 4.2): the first ``zero_init_steps`` steps of each chain output a zero prediction.

Differences from the references, stated:
- The paper's predictions are flow-matching velocities; like diffusers' ``CFGZeroStarGuidance``
  (which scales whatever the model predicts) we compute s* on our eps. s* of the velocity is not
  s* of eps (the velocity is eps plus an x-dependent offset), so this is the method transcribed to
  eps-models, not the same number.
- ||eps_u||^2: the official code (WeichenFan/CFG-Zero-star, every pipeline's ``optimized_scale``)
  and diffusers' ``cfg_zero_star_scale`` add 1e-8 and compute in float32; we follow the paper's
  formula with no epsilon, in x's dtype (float32 at least), and take s* = 0 where eps_u = 0
  exactly (then s* eps_u = 0 whatever s*). The 1e-8 changes s* by a relative 1e-8 / ||eps_u||^2.
- Step count: ``zero_init_steps`` = K zeroes exactly K steps, as the paper's text and diffusers'
  (``_step < zero_init_steps``). The official pipelines test ``i <= zero_steps``, so their
  zero_steps = K zeroes K + 1 steps (their README: "zero-steps ... set to 1 (first 2 steps)");
  our K = their zero_steps + 1. Our default 1 is their default 0.
- What "zero" means: ``zero_init="eps"`` (default, as diffusers with an eps-model) returns eps = 0:
  a DDIM step then keeps x_t / sqrt(abar_t) fixed (x0_hat = x_t / sqrt(abar_t)), which is the
  paper's zero velocity only in the variance-exploding coordinates; unclipped at a cosine
  schedule's t = 999 (abar 2.4e-9) it multiplies x by sqrt(abar_t' / abar_t), hundreds of times.
  ``zero_init="velocity"`` returns the eps whose rectified-flow velocity (eps - x0) is zero,
  eps = x0 = x_t / (sqrt(abar_t) + sqrt(1 - abar_t)): a DDIM step then keeps
  x_t / (sqrt(abar_t) + sqrt(1 - abar_t)) fixed, the paper's standing-still ODE step.
- At w = 0 (the paper's scale 1) it is the conditional model, no step zeroed: the official code
  applies both changes only when guidance is on (guidance_scale > 1); diffusers zeroes anyway.
The zeroed steps are counted by the step index the sampler announces (diffguide.diffusion.chain;
guidance.parts.StepTracker), so a corrector call does not count as a step.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.cfg_zero_star import ZERO_INIT_STEPS
from diffguide.guidance.parts import FollowsSteps, StepTracker, cond_and_null, per_sample_dot
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


DEFAULTS = {"zero_init_steps": 1}
ZERO_INITS = ("eps", "velocity")


def optimized_scale(cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
    """s* = <cond, uncond> / ||uncond||^2 per sample, shaped [B, 1, ...] (sec. 4.1); 0 where uncond = 0."""
    dot, norm2 = per_sample_dot(cond, uncond), per_sample_dot(uncond, uncond)
    return torch.where(norm2 > 0, dot / torch.where(norm2 > 0, norm2, torch.ones_like(norm2)), torch.zeros_like(dot))


class CFGZeroStar(FollowsSteps, nn.Module):
    """CFG-Zero* at our w (the paper's / diffusers' guidance_scale = 1 + w); see the module docstring.
    ``unit_scale=True`` forces s* = 1 (then, with no zeroed steps, it is CFG)."""

    def __init__(self, model: nn.Module, w: float, schedule: NoiseSchedule, *, zero_init_steps: int = 1,
                 unit_scale: bool = False, zero_init: str = "eps"):
        super().__init__()
        if zero_init not in ZERO_INITS:
            raise ValueError(f"zero_init must be one of {ZERO_INITS}, got {zero_init!r}")
        self.model, self.w, self.schedule = model, float(w), schedule
        self.zero_init_steps, self.unit_scale, self.zero_init = int(zero_init_steps), unit_scale, zero_init
        self.steps = StepTracker()

    def zero_prediction(self, x, t):
        """The zeroed step's eps: 0, or the eps of zero flow velocity (see ``zero_init``)."""
        if self.zero_init == "eps":
            return torch.zeros_like(x)
        abar = self.schedule.abar(t, x)
        return x / (abar.sqrt() + (1 - abar).sqrt())

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        if self.steps.position(x, t)[1] < self.zero_init_steps:  # counts steps, not calls (Heun calls twice)
            return self.zero_prediction(x, t)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        scale = 1.0 if self.unit_scale else optimized_scale(eps_c, eps_u)
        return (1 + self.w) * eps_c - self.w * scale * eps_u


def zero_star_options(options: dict) -> dict:
    """guidance.zero_init_steps, validated against its declaration (its default where absent)."""
    return {"zero_init_steps": ZERO_INIT_STEPS.value_in(options)}


def build_cfg_zero_star(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                        options: dict) -> Guided:
    """cfg_zero_star: CFG-Zero* at w = scale on the conditional model, its guided x0 clipped like
    cfg's when clip_x0; option guidance.zero_init_steps (steps zeroed, diffusers' count)."""
    guided = CFGZeroStar(models["eps_model"], scale, schedule, **zero_star_options(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
