"""Adaptive projected guidance (Sadat et al. 2024, arXiv 2410.02416), declared: the x0 guidance difference
with reverse momentum and a norm cap, its part parallel to the conditional x0 down-weighted. The
implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Option, Scales

ORDER = 7  # its place in the registry, the report and the testbed table

APG_ETA = Option(
    "apg_eta",
    0.0,
    "APG's weight of the guidance difference's part parallel to the conditional x0 (Sadat et al.: "
    "0; 1 with no threshold and no momentum is CFG)",
    minimum=0,
    maximum=1,
    fix="set it in [0, 1]: 0 drops the parallel part (the paper's choice), 1 keeps it as CFG",
)

APG_NORM_THRESHOLD = Option(
    "apg_norm_threshold",
    15.0,
    "APG's cap r on the per-sample norm of the x0 guidance difference (null: no cap)",
    nullable=True,
    exclusive_minimum=0,
    fix="give a positive norm r (default 15) or null for no threshold",
)

APG_MOMENTUM = Option(
    "apg_momentum",
    -0.5,
    "APG's momentum beta (negative: each step's difference minus a share of the running one; 0: none)",
    maximum=0,
    exclusive_minimum=-1,
    fix="set beta in (-1, 0] (reverse momentum is negative, e.g. -0.5; 0 turns it off)",
)

CLAIM = Claim(
    "Sadat et al. 2024 (arXiv 2410.02416)",
    "APG reduces saturation at large w without raising FID",
    finding=16,
    test="less_saturation",
)

METHODS = (
    Method(
        "apg",
        "w",
        "adaptive projected guidance (w)",
        "adaptive projected guidance of the conditional model, columns: w",
        "Adaptive projected guidance (Sadat et al. 2024): the x0 guidance difference, with "
        "momentum guidance.apg_momentum and norm cap apg_norm_threshold, split into parts parallel "
        "and orthogonal to the conditional x0, the parallel part weighted by apg_eta (their scale "
        "= 1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.apg.wrapper:build_apg",
        options=(APG_ETA, APG_NORM_THRESHOLD, APG_MOMENTUM),
        scales=Scales((0, 1, 2, 4), "w of adaptive projected guidance (their scale = 1 + w)"),
        group="testbed",
        claim=CLAIM,
    ),
)
