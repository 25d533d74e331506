"""Time-step guidance (TSG; Sadat et al., "No Training, No Problem: Rethinking Classifier-Free Guidance
for Diffusion Models", ICLR 2025, arXiv 2407.02687), declared: the model guided away from itself with
its timestep embedding perturbed by Gaussian noise, so it needs no condition and no null class. The
implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Method, Option, Scales

ORDER = 22  # guidance without a null class (issue 29, item 2), after icg

TSG_S = Option(
    "tsg_s",
    0.5,
    "TSG's perturbation scale s: the timestep embedding (the UNet's time MLP output) gets s (t / T)^alpha n, "
    "n ~ N(0, I), in the perturbed rows. 0.5 is about the spread of the default model's embedding entries "
    "(std 0.54 over entries, 0.30 across t); the paper tunes s per model (its values were not read here)",
    minimum=0,
    fix="set it to a number >= 0 (0 leaves the embedding alone: the conditional model)",
)
TSG_ALPHA = Option(
    "tsg_alpha",
    0.0,
    "TSG's exponent alpha of the perturbation's dependence on the noise level, s (t / T)^alpha: 0 the same "
    "scale at every step, above 0 more at high noise",
    minimum=0,
    fix="set it to a number >= 0 (0: the same perturbation scale at every step)",
)

METHODS = (
    Method(
        "tsg",
        "w",
        "time-step guidance, TSG (w)",
        "time-step guidance of the conditional model (its timestep embedding perturbed), columns: w",
        "Time-step guidance (Sadat et al. 2025): eps~ = (1 + w) eps(x, t, y) - w eps(x, t~, y), t~ the timestep "
        "embedding plus s (t / T)^alpha n, n ~ N(0, I) drawn at every step (guidance.tsg_s, guidance.tsg_alpha); "
        "w = 0 is the conditional model. tsg_p0 guides the model trained with p_uncond = 0.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.tsg.wrapper:build_tsg",
        options=(TSG_S, TSG_ALPHA),
        scales=Scales((0, 1, 2, 4), "w of time-step guidance"),
        group="testbed",
        p_uncond_variants=True,
    ),
)
