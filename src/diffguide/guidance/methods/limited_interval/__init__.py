"""Guidance in a limited interval (Kynkaanniemi et al. 2024, arXiv 2404.07724), declared: classifier-free
(cfg_interval) and classifier guidance (cg_interval) only for noise levels sigma_t in
(interval_sigma_lo, interval_sigma_hi]. The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.guidance.methods.papers import CG_CLIP_ORDER, CLASSIFIER
from diffguide.registry import Claim, Method, Option, Scales

ORDER = 3  # its place in the registry, the report and the testbed table

INTERVAL_SIGMA_LO = Option(
    "interval_sigma_lo",
    0.28,
    "cfg_interval / cg_interval (and weight_schedule: interval): no guidance at sigma_t = sqrt((1 "
    "- abar_t) / abar_t) <= this (null: no lower bound). 0.28 and 5.42 are Kynkaanniemi et al.'s "
    "EDM2 ImageNet-512 interval, not tuned here",
    nullable=True,
    minimum=0,
)

INTERVAL_SIGMA_HI = Option(
    "interval_sigma_hi",
    5.42,
    "no guidance above this sigma_t (null: no upper bound)",
    nullable=True,
    exclusive_minimum=0,
)

CLAIM = Claim(
    "Kynkaanniemi et al. 2024 (arXiv 2404.07724)",
    "guidance only in a noise interval lowers FID at the same w",
    finding=12,
    test="lower_fid_at_same_w",
)

METHODS = (
    Method(
        "cfg_interval",
        "w",
        "CFG in a noise interval (w)",
        "classifier-free guidance only for sigma in (lo, hi], columns: w",
        "Guidance interval (Kynkaanniemi et al. 2024): classifier-free guidance at w for noise "
        "levels sigma_t in (guidance.interval_sigma_lo, interval_sigma_hi], the conditional model "
        "elsewhere (their guidance scale = 1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.limited_interval.wrapper:build_cfg_interval",
        options=(INTERVAL_SIGMA_LO, INTERVAL_SIGMA_HI),
        scales=Scales(
            (0, 1, 2, 4),
            "w of cfg_interval: classifier-free guidance only for sigma_t in "
            "(interval_sigma_lo, interval_sigma_hi] (w = 0: the conditional model)",
        ),
        group="testbed",
        claim=CLAIM,
    ),
    Method(
        "cg_interval",
        "s",
        "classifier guidance in a noise interval (s)",
        "classifier guidance of the unconditional model only for sigma in (lo, hi], columns: s",
        "Guidance interval applied to classifier guidance: the score shift at s for sigma_t in "
        "(guidance.interval_sigma_lo, interval_sigma_hi], the unguided unconditional model "
        "elsewhere.",
        eps_model="unconditional",
        builder="diffguide.guidance.methods.limited_interval.wrapper:build_cg_interval",
        guides=CLASSIFIER,
        options=(CG_CLIP_ORDER, INTERVAL_SIGMA_LO, INTERVAL_SIGMA_HI),
        scales=Scales(
            (0, 1, 3, 10),
            "s of cg_interval: classifier guidance of the unconditional model only inside the interval",
        ),
        group="testbed",
    ),
)
