"""Dynamic thresholding (Saharia et al. 2022, Imagen sec. 2.3), declared: the CFG x0 clipped at a quantile
of |x0| in place of the static clip. The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Option, Scales

ORDER = 9  # its place in the registry, the report and the testbed table

THRESHOLD_PERCENTILE = Option(
    "threshold_percentile",
    0.995,
    "dynamic thresholding's percentile p of |x0| (Imagen: 0.995)",
    maximum=1,
    exclusive_minimum=0,
    fix="give a fraction in (0, 1], e.g. 0.995 (Imagen's 99.5th percentile), not 99.5",
)

THRESHOLD_MAX = Option(
    "threshold_max",
    None,
    "cap on the dynamic threshold s (null: none, Imagen; 1: static clipping, diffusers' default sample_max_value)",
    nullable=True,
    minimum=1,
    fix="give a cap >= 1 on the threshold s (1 is static clipping) or null for no cap (Imagen)",
)

CLAIM = Claim(
    "Saharia et al. 2022 (Imagen, sec. 2.3)",
    "dynamic thresholding lowers FID against static clipping at large w",
    finding=18,
    test="lower_fid_at_same_w",
)

METHODS = (
    Method(
        "dynamic_threshold",
        "w",
        "CFG with dynamic thresholding (w)",
        "classifier-free guidance with Imagen's dynamic thresholding, columns: w",
        "Dynamic thresholding (Saharia et al. 2022): the CFG x0 clipped at its "
        "guidance.threshold_percentile quantile of |x0| (at least 1) and divided by it, in place "
        "of the static clip (scale = 1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.dynamic_thresholding.wrapper:build_dynamic_threshold",
        options=(THRESHOLD_PERCENTILE, THRESHOLD_MAX),
        scales=Scales((0, 1, 2, 4), "w of classifier-free guidance with dynamic thresholding"),
        group="testbed",
        claim=CLAIM,
        scale_zero="own_clip",  # Imagen thresholds every step, whatever its guidance weight
    ),
)
