"""Magnitude-aware mitigation for boosted guidance (MAMBO-G; arXiv 2508.03442), declared: CFG whose w is
damped per sample by exp(-alpha r), r = ||eps(x, y) - eps(x, null)|| / ||eps(x, null)||, so the steps
where guidance would move the prediction most are guided least. The implementation is wrapper.py;
diffusers ships it as ``MagnitudeAwareGuidance`` (guidance_scale = 1 + w).
"""

from __future__ import annotations

from diffguide.registry import Method, Option, Scales

ORDER = 14  # the guiders diffusers ships that the testbed lacked (issue 29)

MAMBO_ALPHA = Option(
    "mambo_alpha",
    8.0,
    "MAMBO-G's damping alpha: w_t = w exp(-alpha ||eps_c - eps_u|| / ||eps_u||) per sample (diffusers' default 8; "
    "0 is CFG)",
    minimum=0,
    fix="set it to a number >= 0 (0: plain CFG; diffusers' default 8)",
)

METHODS = (
    Method(
        "mambo_g",
        "w",
        "magnitude-aware CFG, MAMBO-G (w)",
        "magnitude-aware classifier-free guidance (MAMBO-G) of the conditional model, columns: w",
        "MAMBO-G: eps~ = eps(x, y) + w exp(-alpha r) (eps(x, y) - eps(x, null)), r = ||eps(x, y) - eps(x, null)|| "
        "/ ||eps(x, null)|| per sample, alpha = guidance.mambo_alpha; w = 0 is the conditional model.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.mambo_g.wrapper:build_mambo_g",
        options=(MAMBO_ALPHA,),
        scales=Scales((0, 1, 2, 4), "w of magnitude-aware classifier-free guidance (MAMBO-G)"),
        group="testbed",
    ),
)
