"""APG-Mix (diffusers' ``AdaptiveProjectedMixGuidance``, guiders/adaptive_projected_guidance_mix.py;
docs/equations.md section 10): classifier-free guidance early in the chain, APG (Sadat et al. 2024,
diffguide.guidance.methods.apg) after it.

At step i of a chain (0 at its first), with Delta = x0_c - x0_u and APG's momentum buffer updated at
every step, both phases included:

    i <= start:  x0 = x0_c + w_cfg Delta                                    (CFG, diffusers' guidance_scale = 1 + w_cfg)
    i >  start:  x0 = x0_c + w (Delta_orth + eta Delta_par) of the capped running Delta   (APG at w)

Against diffusers, on purpose:
- our scale is APG's w (its adaptive_projected_guidance_scale = 1 + w), and w = 0 is the conditional
  model at every step, as in every testbed sweep; diffusers, when that scale is 1, runs CFG at
  guidance_scale through the whole chain instead;
- the options are APG's, so the norm cap defaults to APG's 15 (diffusers' APG-Mix default is 10) and
  the eta to APG's 0 (the same as diffusers');
- as in our APG, Delta is the difference of the x0 predictions (the paper's), where diffusers takes
  whatever its model predicts (tests/test_diffusers_guiders.py hands it our x0 predictions).
"""

from __future__ import annotations

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.apg.wrapper import AdaptiveProjectedGuidance, apg_options
from diffguide.guidance.methods.apg_mix import APG_MIX_CFG_W, APG_MIX_START_STEP
from diffguide.guidance.parts import cond_and_null
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


class AdaptiveProjectedMixGuidance(AdaptiveProjectedGuidance):
    """APG-Mix at our w (module docstring); ``cfg_w`` and ``start_step`` set the classifier-free
    phase, the rest is AdaptiveProjectedGuidance's. w = 0 or y = None return the conditional model."""

    def __init__(self, model, w: float, schedule: NoiseSchedule, *, cfg_w: float = 2.5, start_step: int = 5, **apg):
        super().__init__(model, w, schedule, **apg)
        self.cfg_w, self.start_step = float(cfg_w), int(start_step)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        position = self.steps.position(x, t)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        x0_c, x0_u = self.schedule.predict_x0(x, t, eps_c), self.schedule.predict_x0(x, t, eps_u)
        running = self.momentum_at(x0_c - x0_u, position)  # updated in both phases, as diffusers' buffer
        if position[1] <= self.start_step:
            x0 = x0_c + self.cfg_w * (x0_c - x0_u)
        else:
            x0 = self.projected_x0(x0_c, running)
        return self.schedule.eps_from_x0(x, t, x0)


def build_apg_mix(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """apg_mix: APG-Mix at w = scale on the conditional model, its guided x0 clipped like cfg's when
    clip_x0; options guidance.apg_mix_cfg_w, apg_mix_start_step and APG's."""
    guided = AdaptiveProjectedMixGuidance(models["eps_model"], scale, schedule, cfg_w=APG_MIX_CFG_W.value_in(options),
                                          start_step=APG_MIX_START_STEP.value_in(options), **apg_options(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
