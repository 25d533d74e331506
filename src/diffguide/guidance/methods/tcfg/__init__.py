"""Tangential classifier-free guidance (TCFG; Kwon et al. 2025, arXiv 2503.18137), declared: CFG with the
unconditional prediction reduced to its component along the first singular direction of the pair
(eps(x, y), eps(x, null)). The implementation is wrapper.py; diffusers ships it as
``TangentialClassifierFreeGuidance`` (guidance_scale = 1 + w).
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Scales

ORDER = 13  # the guiders diffusers ships that the testbed lacked (issue 29), after issue 28's units

# Findings 20-22 are the training-free set's (diffguide.findings.training_free): the testbed's next is 23.
CLAIM = Claim(
    "Kwon et al. 2025 (arXiv 2503.18137)",
    "tangential damping of the unconditional prediction lowers FID at the same w",
    finding=23,
    test="lower_fid_at_same_w",
)

METHODS = (
    Method(
        "tcfg",
        "w",
        "tangential CFG (w)",
        "tangential classifier-free guidance of the conditional model, columns: w",
        "Tangential CFG (Kwon et al. 2025): eps~ = (1 + w) eps(x, y) - w P eps(x, null), P the projection "
        "onto the first right-singular vector of the 2 x d matrix of both predictions (per sample); w = 0 "
        "is the conditional model (diffusers' guidance_scale = 1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.tcfg.wrapper:build_tcfg",
        scales=Scales((0, 1, 2, 4), "w of tangential classifier-free guidance"),
        group="testbed",
        claim=CLAIM,
    ),
)
