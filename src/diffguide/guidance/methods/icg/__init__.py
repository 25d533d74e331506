"""Independent condition guidance (ICG; Sadat et al., "No Training, No Problem: Rethinking
Classifier-Free Guidance for Diffusion Models", ICLR 2025, arXiv 2407.02687), declared: CFG whose
unconditional prediction is the conditional model's at a condition drawn independently of the sample,
eps(x, y_hat) with y_hat a uniformly random class, so a model trained without label dropout
(p_uncond = 0) can be guided. The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Method, Scales

ORDER = 21  # guidance without a null class (issue 29, item 2), after the attention guiders

METHODS = (
    Method(
        "icg",
        "w",
        "independent condition guidance, ICG (w)",
        "independent condition guidance of the conditional model (a random class for the null one), columns: w",
        "Independent condition guidance (Sadat et al. 2025): eps~ = (1 + w) eps(x, y) - w eps(x, y_hat), y_hat a "
        "uniformly random class drawn anew at every step, independently of y; w = 0 is the conditional model. "
        "It needs no null class: icg_p0 guides the model trained with p_uncond = 0.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.icg.wrapper:build_icg",
        scales=Scales((0, 1, 2, 4), "w of independent condition guidance"),
        group="testbed",
        p_uncond_variants=True,
    ),
)
