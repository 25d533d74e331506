"""Guidance-weight schedules (Wang et al. 2024, arXiv 2404.13040), declared: classifier-free (cfg_schedule)
and classifier guidance (cg_schedule) at a weight w(t) = w f(t). The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.guidance.methods.limited_interval import INTERVAL_SIGMA_HI, INTERVAL_SIGMA_LO
from diffguide.guidance.methods.papers import CG_CLIP_ORDER, CLASSIFIER
from diffguide.registry import Claim, Method, Option, Scales

ORDER = 4  # its place in the registry, the report and the testbed table

# The interval's bounds shape the weight only for weight_schedule: interval (f = 1 inside, 0 outside).
BOUNDS_NEED_THE_INTERVAL = (("interval_sigma_lo", "weight_schedule", "interval"),
                            ("interval_sigma_hi", "weight_schedule", "interval"))

WEIGHT_SCHEDULE = Option(
    "weight_schedule",
    "linear_up",
    "cfg_schedule / cg_schedule's f(t): constant 1, linear_up 2 (1 - t/(T-1)) (guidance grows as "
    "the noise falls), linear_down 2 t/(T-1) (both average 1 over t), or the interval's 0/1 (Wang "
    "et al. 2024)",
    type="string",
    enum=("constant", "linear_up", "linear_down", "interval"),
)

CLAIM = Claim(
    "Wang et al. 2024 (arXiv 2404.13040)",
    "a guidance-weight schedule lowers FID at the same mean w",
    finding=13,
    test="lower_fid_at_same_w",
)

METHODS = (
    Method(
        "cfg_schedule",
        "w",
        "CFG with a weight schedule (w)",
        "classifier-free guidance with weight w(t) = w f(t), columns: w",
        "Guidance-weight schedule (Wang et al. 2024): classifier-free guidance at w(t) = w f(t / "
        "(T - 1)), f as guidance.weight_schedule says (constant, linear_up, linear_down: mean w "
        "over t; interval).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.weight_schedules.wrapper:build_cfg_schedule",
        options=(WEIGHT_SCHEDULE, INTERVAL_SIGMA_LO, INTERVAL_SIGMA_HI),
        scales=Scales(
            (0, 1, 2, 4), "w of cfg_schedule: classifier-free guidance at w(t) = w f(t), f = weight_schedule"
        ),
        group="testbed",
        claim=CLAIM,
        inert_unless=BOUNDS_NEED_THE_INTERVAL,
    ),
    Method(
        "cg_schedule",
        "s",
        "classifier guidance with a weight schedule (s)",
        "classifier guidance of the unconditional model with scale s(t) = s f(t), columns: s",
        "Guidance-weight schedule (Wang et al. 2024) applied to classifier guidance: the score "
        "shift at s(t) = s f(t / (T - 1)), f as guidance.weight_schedule says.",
        eps_model="unconditional",
        builder="diffguide.guidance.methods.weight_schedules.wrapper:build_cg_schedule",
        guides=CLASSIFIER,
        options=(WEIGHT_SCHEDULE, CG_CLIP_ORDER, INTERVAL_SIGMA_LO, INTERVAL_SIGMA_HI),
        scales=Scales((0, 1, 3, 10), "s of cg_schedule: classifier guidance at s(t) = s f(t)"),
        group="testbed",
        inert_unless=BOUNDS_NEED_THE_INTERVAL,
    ),
)
