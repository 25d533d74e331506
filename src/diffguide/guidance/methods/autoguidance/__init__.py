"""Autoguidance (Karras et al. 2024, arXiv 2406.02507), declared: the conditional model guided away from a
smaller, shorter-trained version of itself (the network weak_conditional). The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Scales

ORDER = 5  # its place in the registry, the report and the testbed table

CLAIM = Claim(
    "Karras et al. 2024 (arXiv 2406.02507)",
    "guiding by a weaker model lowers the best FID without lowering recall",
    finding=14,
    test="lower_best_fid_keeping_recall",
)

METHODS = (
    Method(
        "autoguidance",
        "w",
        "autoguidance by a weak model (w)",
        "autoguidance of the conditional model by the weak one, columns: w",
        "Autoguidance (Karras et al. 2024): eps = (1 + w) eps_1(x, y) - w eps_0(x, y), eps_0 the "
        "smaller, shorter-trained conditional model weak_conditional (their w = 1 + ours); w = 0 "
        "is the conditional model.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.autoguidance.wrapper:build_autoguidance",
        guides=(("weak_model", "weak_conditional"),),
        scales=Scales((0, 0.5, 1, 2), "w of autoguidance (Karras et al.'s w = 1 + ours; w = 0: the conditional model)"),
        group="testbed",
        claim=CLAIM,
    ),
)
