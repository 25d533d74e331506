"""Adaptive projected guidance (APG; Sadat, Hilliges & Weber 2024, arXiv 2410.02416, sec. 3 and
Algorithm 1; docs/equations.md section 10).

APG rewrites classifier-free guidance on the denoised predictions x0 (the paper's D(x, t)):
CFG is x0 = x0_c + w (x0_c - x0_u) (their eq. with guidance scale w_paper = 1 + w, ours is w), and
APG replaces the update Delta = x0_c - x0_u by

    Delta <- Delta + beta * Delta_prev_running      reverse momentum (sec. 3.3), beta = apg_momentum
    Delta <- Delta * min(1, r / ||Delta||)           norm threshold (sec. 3.2), r = apg_norm_threshold
    Delta_par = (<Delta, x0_c> / ||x0_c||^2) x0_c,  Delta_orth = Delta - Delta_par  (sec. 3.1)
    x0 = x0_c + w (Delta_orth + eta * Delta_par)     eta = apg_eta

with norms and inner products per sample over all of C, H, W. eta = 1, r = infinity, beta = 0 is
CFG. The parallel part is what oversaturates (it rescales x0_c), the orthogonal part is what
sharpens; eta = 0 (the default) keeps only the latter. The projection runs in float64 as in
Algorithm 1. The guided x0 is turned back into eps for the sampler (schedule.eps_from_x0), so APG
works with DDIM (any eta) and the ancestral sampler alike.

Against diffusers' ``AdaptiveProjectedGuidance`` (guiders/adaptive_projected_guidance.py):
- with ``use_original_formulation=True`` it computes x0_c + g * update, so its guidance_scale g is
  our w (the paper's w_paper - 1);
- by default it computes pred_uncond + g * update with g = 1 + w: equal to ours when eta = 1 and
  neither the threshold nor momentum changes Delta, otherwise it differs by update - (x0_c - x0_u)
  (e.g. (eta - 1) Delta_par without threshold and momentum);
- it treats a threshold of 0 as "no threshold"; ours is None (config null) = infinity;
- it applies the update to whatever the model predicts (eps for eps-models) unless the pipeline
  hands it x0; the paper and we use the x0 predictions.

The momentum buffer lives in the wrapper, is reset when a new chain starts and updates once per step
(the sampler announces both: diffguide.diffusion.chain; guidance.parts.StepTracker).
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.apg import APG_ETA, APG_MOMENTUM, APG_NORM_THRESHOLD
from diffguide.guidance.parts import (FollowsSteps, StepTracker, cond_and_null,
                                      per_sample_dot, per_sample_norm)
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


def project(diff: torch.Tensor, onto: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(parallel, orthogonal) parts of ``diff`` with respect to ``onto``, per sample, computed in
    float64 (APG sec. 3.1, Algorithm 1's project) and returned in diff's dtype."""
    d, u = diff.double(), onto.double()
    u = u / per_sample_norm(u).clamp(min=1e-300)  # unit vector; x0_c = 0 has no direction: parallel part 0
    parallel = per_sample_dot(d, u) * u
    return parallel.to(diff.dtype), (d - parallel).to(diff.dtype)


def clip_norm(diff: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """diff * min(1, r / ||diff||) per sample (APG sec. 3.2); r = None is infinity (no change)."""
    if threshold is None:
        return diff
    return diff * torch.clamp(threshold / per_sample_norm(diff), max=1.0)


class AdaptiveProjectedGuidance(FollowsSteps, nn.Module):
    """APG (arXiv 2410.02416, Algorithm 1) of a conditional eps-model at our w (diffusers' /
    the paper's guidance scale = 1 + w); see the module docstring. w = 0 or y = None return the
    conditional model unchanged (nothing to guide, null half skipped)."""

    def __init__(self, model: nn.Module, w: float, schedule: NoiseSchedule, *, eta: float = 0.0,
                 norm_threshold: float | None = 15.0, momentum: float = -0.5):
        super().__init__()
        self.model, self.w, self.schedule = model, float(w), schedule
        self.eta, self.norm_threshold, self.momentum = float(eta), norm_threshold, float(momentum)
        # running: the momentum buffer of the current step; previous: the one the step started from
        # (a corrector call of the same step starts from it again, so it updates once per step).
        self.steps, self.running, self.previous, self.running_step = StepTracker(), None, None, None

    def with_momentum(self, diff: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """running = diff + beta * running (APG sec. 3.3, Algorithm 1's MomentumBuffer), zero at a
        chain's first step; once per step, whatever the number of calls in it."""
        return self.momentum_at(diff, self.steps.position(x, t))

    def momentum_at(self, diff: torch.Tensor, position: tuple[int, int]) -> torch.Tensor:
        """with_momentum at a known (chain, step index): for a subclass that needs the step index too
        (asking the tracker twice would count two steps outside a sampler)."""
        if position != self.running_step:
            self.previous = torch.zeros_like(diff) if position[1] == 0 or self.running is None else self.running
            self.running_step = position
        self.running = diff + self.momentum * self.previous
        return self.running

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        x0_c, x0_u = self.schedule.predict_x0(x, t, eps_c), self.schedule.predict_x0(x, t, eps_u)
        return self.schedule.eps_from_x0(x, t, self.projected_x0(x0_c, self.with_momentum(x0_c - x0_u, x, t)))

    def projected_x0(self, x0_c: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
        """x0_c + w (Delta_orth + eta Delta_par) of the momentum-averaged difference, norm-capped
        (sec. 3.1-3.2)."""
        parallel, orthogonal = project(clip_norm(running, self.norm_threshold), x0_c)
        return x0_c + self.w * (orthogonal + self.eta * parallel)


def apg_options(options: dict) -> dict:
    """The APG constructor's keyword arguments from guidance.apg_*, each validated against its
    declaration (diffguide.guidance.methods.apg), its declared default where absent."""
    return {"eta": APG_ETA.value_in(options), "norm_threshold": APG_NORM_THRESHOLD.value_in(options),
            "momentum": APG_MOMENTUM.value_in(options)}


def build_apg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """apg: APG at w = scale on the conditional model, its guided x0 clipped like cfg's when clip_x0
    (guidance.build_classifier_free); options guidance.apg_eta, apg_norm_threshold (null =
    infinity), apg_momentum."""
    guided = AdaptiveProjectedGuidance(models["eps_model"], scale, schedule, **apg_options(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
