"""Frequency-decoupled guidance (FDG; Sadat et al. 2025, arXiv 2506.19713), declared: classifier-free
guidance applied separately to the low- and high-frequency bands of a Laplacian pyramid of the two
predictions, with a smaller w for the low band. The implementation is wrapper.py; diffusers ships it
as ``FrequencyDecoupledGuidance`` (guidance_scales, high band first, = 1 + w).
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Option, Scales

ORDER = 16  # the guiders diffusers ships that the testbed lacked (issue 29)

FDG_LOW_RATIO = Option(
    "fdg_low_ratio",
    4 / 9,
    "FDG's w of the low-frequency band as a share of the high band's w (the paper's SDXL pair, guidance "
    "scales 10 and 5, is w = 9 and 4: 4/9)",
    minimum=0,
    fix="set it to a number >= 0 (1: plain CFG; the paper's SDXL setting is 4/9)",
)

# Findings 20-22 are the training-free set's (diffguide.findings.training_free): the testbed's next is 23.
CLAIM = Claim(
    "Sadat et al. 2025 (arXiv 2506.19713)",
    "guiding low frequencies less than high ones lowers FID without lowering recall",
    finding=24,
    test="lower_best_fid_keeping_recall",
)

METHODS = (
    Method(
        "fdg",
        "w",
        "frequency-decoupled CFG (w)",
        "frequency-decoupled guidance of the conditional model, columns: w (the high band's)",
        "FDG (Sadat et al. 2025): CFG on a two-level Laplacian pyramid of eps(x, y) and eps(x, null), w on the "
        "high-frequency band and guidance.fdg_low_ratio * w on the low one, then the pyramid collapsed; w = 0 is "
        "the conditional model.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.fdg.wrapper:build_fdg",
        options=(FDG_LOW_RATIO,),
        scales=Scales((0, 1, 2, 4, 9), "w of frequency-decoupled guidance's high band (diffusers' default 10 = 1 + 9)"),
        group="testbed",
        claim=CLAIM,
    ),
)
