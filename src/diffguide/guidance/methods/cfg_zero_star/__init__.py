"""CFG-Zero* (Fan et al. 2025, arXiv 2503.18886), declared: CFG with the unconditional eps scaled by the
least-squares s* and the first steps zeroed. The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Option, Scales

ORDER = 10  # its place in the registry, the report and the testbed table

ZERO_INIT_STEPS = Option(
    "zero_init_steps",
    1,
    "CFG-Zero*: guided steps whose eps is zeroed at the start of each chain (the official code's "
    "zero_steps = K zeroes K + 1)",
    type="integer",
    minimum=0,
    fix="give how many first steps to zero, e.g. 1 (about 4% of the steps, as the paper suggests), 0 for none",
)

CLAIM = Claim(
    "Fan et al. 2025 (arXiv 2503.18886)", "CFG-Zero* lowers FID at the same w", finding=19, test="lower_fid_at_same_w"
)

METHODS = (
    Method(
        "cfg_zero_star",
        "w",
        "CFG-Zero* (w)",
        "CFG-Zero* of the conditional model, columns: w",
        "CFG-Zero* (Fan et al. 2025): eps = (1 + w) eps_c - w s* eps_u with s* = <eps_c, eps_u> / "
        "||eps_u||^2, and the first guidance.zero_init_steps steps zeroed (their guidance scale = "
        "1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.cfg_zero_star.wrapper:build_cfg_zero_star",
        options=(ZERO_INIT_STEPS,),
        scales=Scales((0, 1, 2, 4), "w of CFG-Zero* (their scale = 1 + w)"),
        group="testbed",
        claim=CLAIM,
    ),
)
