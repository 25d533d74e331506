"""CFG++ (Chung et al. 2024, arXiv 2406.08070), declared: x0 from the lambda-interpolated eps, renoised with
the unconditional eps. The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Scales

ORDER = 6  # its place in the registry, the report and the testbed table

CLAIM = Claim(
    "Chung et al. 2024 (arXiv 2406.08070)", "CFG++ reaches a lower best FID than CFG", finding=15, test="lower_best_fid"
)

METHODS = (
    Method(
        "cfgpp",
        "lambda",
        "CFG++ (lambda)",
        "CFG++ of the conditional model, columns: lambda",
        "CFG++ (Chung et al. 2024): x0 from eps_u + lambda (eps_c - eps_u), renoised with eps_u; "
        "lambda in [0, 1], lambda = 0 is the UNCONDITIONAL model (one CFG++ step is a CFG step at "
        "a w that grows with t).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.cfgpp.wrapper:build_cfgpp",
        scales=Scales(
            (0, 0.2, 0.4, 0.6, 0.8), "lambda of CFG++ in [0, 1] (lambda = 0: the unconditional model)", maximum=1
        ),
        group="testbed",
        claim=CLAIM,
        scale_zero="null_label",  # lambda = 0 interpolates nothing in: the unconditional model
    ),
)
