"""Guidance in a limited interval of noise levels (Kynkaanniemi et al. 2024, "Applying Guidance in a
Limited Interval Improves Sample and Distribution Quality in Diffusion Models", arXiv 2404.07724).
docs/equations.md section 10.

The paper guides only in the middle of the chain, the conditional model elsewhere (their eq. 2, on
the denoiser D, with their guidance scale G on the unconditional D_0 and conditional D_1):

    D_G(x; sigma, c) = G D_1(x; sigma, c) + (1 - G) D_0(x; sigma)   if sigma in (sigma_lo, sigma_hi],
                       D_1(x; sigma, c)                                otherwise.

Their G is our 1 + w (G = 1 is the conditional model, as our w = 0), and the combination is linear in
D and in eps alike (D = x - sigma eps at fixed x and sigma), so on eps it is H&S eq. 6 at w inside the
interval and w = 0 outside: the ``interval`` weight schedule of diffguide.guidance.methods.weight_schedules,
w(t) = w 1[sigma_lo < sigma(t) <= sigma_hi], sigma(t) = sqrt((1 - abar_t) / abar_t) the EDM noise
level of our VP timestep (the paper's sigma). Classifier guidance gets the same interval on its s.

Which steps are guided, in the official code (kynkaat/guidance-interval, sampling/edm_sampler.py):
it does not test sigma. ``guidance_interval`` is a pair of STEP INDICES [start, stop] of its 32-step
EDM Heun sampler, inclusive at both ends (``i >= guidance_start and i <= guidance_stop``, i = 0 the
noisiest step), and guided steps use ``uncond.lerp(cond, G)`` = D_0 + G (D_1 - D_0). The choice made
for step i also covers that step's second-order correction, which evaluates D at the next noise
level t_{i+1}; so an index interval [start, stop] guides the Euler evaluations at sigma_start ..
sigma_stop and the corrections at sigma_{start+1} .. sigma_{stop+1}. Ours decides per evaluation by
its own sigma, half-open as the paper's eq. 2. For samplers with one evaluation per step (DDIM, the
ancestral sampler; EDM's Euler step is DDIM eta = 0 in EDM variables) the two agree whenever
sigma_hi is in [sigma_start, sigma_{start-1}) and sigma_lo in [sigma_{stop+1}, sigma_stop)
(``guided_steps`` lists the steps a setting guides); tests/test_guidance_schedules.py runs the
official loop against ours. The repository's README setting, [17, 22] with G = 2 on EDM's 32-step
grid (sigma_max 80, sigma_min 0.002, rho 7), guides sigma 1.61 .. 0.283 (corrections down to 0.189);
our default (0.28, 5.42] picks indices 13 .. 22 of that grid.
"""

from __future__ import annotations

from typing import Sequence

import torch

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.weight_schedules.wrapper import (build_cfg_schedule, build_cg_schedule, check_interval,
                                                         noise_level)
from diffguide.guidance.wrappers import Guided


def interval_options(options: dict) -> dict:
    """The schedule builders' options for the interval: guidance.interval_sigma_lo / _hi, the rest kept."""
    return {**options, "weight_schedule": "interval"}


def guided_steps(schedule: NoiseSchedule, timesteps: Sequence[int], sigma_lo: float | None,
                 sigma_hi: float | None) -> list[int]:
    """Indices k (0 = the first, noisiest step) of the descending ``timesteps`` whose sigma(t) lies in
    (sigma_lo, sigma_hi]: the steps the interval guides, comparable with the official code's
    [start, stop] step indices."""
    lo, hi = check_interval(sigma_lo, sigma_hi)
    t = torch.as_tensor(list(timesteps), dtype=torch.long)
    sigma = noise_level(schedule, t, torch.zeros(len(t), dtype=torch.float64))
    return [k for k, s in enumerate(sigma.tolist()) if lo < s <= hi]


def build_cfg_interval(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                       options: dict) -> Guided:
    """cfg_interval: classifier-free guidance at w for sigma_lo < sigma(t) <= sigma_hi, the conditional
    model elsewhere (Kynkaanniemi et al. eq. 2 with G = 1 + w), clipped as build_classifier_free."""
    return build_cfg_schedule(models, scale, schedule, clip_x0=clip_x0, options=interval_options(options))


def build_cg_interval(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                      options: dict) -> Guided:
    """cg_interval: classifier guidance (score form, D&N Alg. 2) of the unconditional model at s inside
    the interval, the unguided model elsewhere, clipped where guidance.cg_clip_order says."""
    return build_cg_schedule(models, scale, schedule, clip_x0=clip_x0, options=interval_options(options))
