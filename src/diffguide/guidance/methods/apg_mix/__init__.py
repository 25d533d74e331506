"""APG-Mix (diffusers' ``AdaptiveProjectedMixGuidance``), declared: classifier-free guidance for a chain's
first steps, adaptive projected guidance (APG, Sadat et al. 2024) after them, one momentum buffer
running through both. It shares APG's options (guidance.apg_eta, apg_norm_threshold, apg_momentum).
The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.guidance.methods.apg import APG_ETA, APG_MOMENTUM, APG_NORM_THRESHOLD
from diffguide.registry import Method, Option, Scales

ORDER = 15  # the guiders diffusers ships that the testbed lacked (issue 29)

APG_MIX_CFG_W = Option(
    "apg_mix_cfg_w",
    2.5,
    "APG-Mix's w of the classifier-free steps at the start of each chain (diffusers' guidance_scale 3.5 = 1 + w)",
    minimum=0,
    fix="set it to a number >= 0 (diffusers' default guidance_scale 3.5 is w = 2.5)",
)
APG_MIX_START_STEP = Option(
    "apg_mix_start_step",
    5,
    "APG-Mix's last classifier-free step, counted from 0: APG guides from the step after it (diffusers' "
    "adaptive_projected_guidance_start_step)",
    type="integer",
    minimum=0,
    fix="set it to an integer >= 0 (diffusers' default 5: six classifier-free steps)",
)

METHODS = (
    Method(
        "apg_mix",
        "w",
        "APG-Mix (w)",
        "APG-Mix of the conditional model (classifier-free, then adaptive projected guidance), columns: w",
        "APG-Mix (diffusers' AdaptiveProjectedMixGuidance): CFG at guidance.apg_mix_cfg_w through step "
        "guidance.apg_mix_start_step of each chain, then APG at w, the momentum running through both; w = 0 "
        "is the conditional model.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.apg_mix.wrapper:build_apg_mix",
        options=(APG_MIX_CFG_W, APG_MIX_START_STEP, APG_ETA, APG_NORM_THRESHOLD, APG_MOMENTUM),
        scales=Scales((0, 1, 2, 4, 9), "w of APG-Mix's adaptive projected steps (diffusers' default scale 10 = 1 + 9)"),
        group="testbed",
    ),
)
