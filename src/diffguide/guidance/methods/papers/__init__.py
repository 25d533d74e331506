"""The papers' own methods, declared: classifier-free guidance (Ho & Salimans 2022, eq. 6) and
classifier guidance of the unconditional and the conditional model (Dhariwal & Nichol 2021,
Algorithms 1 and 2). Their rules are the eps-wrapper contract itself, in diffguide.guidance.wrappers;
this unit holds only their declarations (torch-free, read by diffguide.registry).
"""

from __future__ import annotations

from diffguide.registry import Method, Option, Scales

ORDER = 1  # its place in the registry, the report and the testbed table

# Classifier guidance's guide: the noisy classifier p_phi(y | x_t, t), loaded in the role "classifier".
CLASSIFIER = (("classifier", "noisy_classifier"),)

CG_FORM = Option(
    "cg_form",
    "score",
    "classifier guidance as the score shift (D&N Algorithm 2, any sampler) or the mean shift "
    "(Algorithm 1, needs sampling.sampler: ddpm)",
    type="string",
    enum=("score", "mean"),
)

CG_CLIP_ORDER = Option(
    "cg_clip_order",
    "unguided_x0",
    "with sampling.clip_x0, classifier guidance clips the unguided x0 and shifts eps (or the "
    "mean) after it, clipping nothing again (unguided_x0: guided-diffusion's order, so s is "
    "Dhariwal & Nichol's s), or clips the guided x0 (guided_x0: keeps every x0 in [-1, 1], which "
    "tames very large s but absorbs part of the guidance where x0 saturates)",
    type="string",
    enum=("unguided_x0", "guided_x0"),
)

COND_CG_W = Option(
    "cond_cg_w",
    0,
    "classifier-free strength w of the model that cond_cg guides (0: the plain conditional model)",
    minimum=0,
)

METHODS = (
    Method(
        "cfg",
        "w",
        "classifier-free, conditional model (w)",
        "classifier-free guidance of the conditional model, columns: w",
        "Classifier-free guidance (H&S eq. 6): eps~ = (1 + w) eps(x, y) - w eps(x, null) on the "
        "conditional model; w = 0 is the conditional model itself.",
        eps_model="conditional",
        builder="diffguide.guidance.wrappers:build_classifier_free",
        scales=Scales((0, 0.5, 1, 2, 4), "classifier-free guidance strengths w (w = 0: the conditional model)"),
        p_uncond_variants=True,
    ),
    Method(
        "cg",
        "s",
        "classifier guidance, unconditional model (s)",
        "classifier guidance of the unconditional model, columns: s",
        "Classifier guidance (D&N Algorithms 1 and 2) of the unconditional model by the noisy "
        "classifier's gradient at scale s; s = 0 is the unguided model.",
        eps_model="unconditional",
        builder="diffguide.guidance.wrappers:build_classifier_guided",
        guides=CLASSIFIER,
        options=(CG_FORM, CG_CLIP_ORDER),
        scales=Scales((0, 1, 2, 5, 10), "classifier scales s on the unconditional model (s = 0: unguided)"),
    ),
    Method(
        "cond_cg",
        "s",
        "classifier guidance, conditional model (s)",
        "classifier guidance of the conditional model, columns: s",
        "Classifier guidance at scale s of the conditional model, itself guided at w = "
        "guidance.cond_cg_w (D&N Table 4's conditional rows when w = 0).",
        eps_model="conditional",
        builder="diffguide.guidance.wrappers:build_conditional_classifier_guided",
        guides=CLASSIFIER,
        options=(CG_FORM, CG_CLIP_ORDER, COND_CG_W),
        scales=Scales((0, 1, 5), "classifier scales s on the conditional model (D&N Table 4's conditional rows)"),
    ),
)
