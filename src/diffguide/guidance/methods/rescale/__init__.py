"""Guidance rescale (Lin et al. 2023, arXiv 2305.08891, sec. 3.4), declared: the CFG eps rescaled to the
conditional eps's per-sample std. The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.registry import Claim, Method, Option, Scales

ORDER = 8  # its place in the registry, the report and the testbed table

RESCALE_PHI = Option(
    "rescale_phi",
    0.7,
    "guidance rescale's mix phi (Lin et al. 2023: 0.7; 0 is CFG)",
    minimum=0,
    maximum=1,
    fix="set it in [0, 1]: 0 is plain CFG, 1 the full rescale (Lin et al. use 0.7)",
)

CLAIM = Claim(
    "Lin et al. 2023 (arXiv 2305.08891, sec. 3.4)",
    "guidance rescale reduces saturation at large w without raising FID",
    finding=17,
    test="less_saturation",
)

METHODS = (
    Method(
        "cfg_rescale",
        "w",
        "CFG with guidance rescale (w)",
        "classifier-free guidance rescaled to the conditional std, columns: w",
        "Guidance rescale (Lin et al. 2023, sec. 3.4): the CFG eps rescaled to the conditional "
        "eps's per-sample std and mixed by guidance.rescale_phi (diffusers' guidance_rescale; "
        "scale = 1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.rescale.wrapper:build_cfg_rescale",
        options=(RESCALE_PHI,),
        scales=Scales((0, 1, 2, 4), "w of classifier-free guidance with guidance rescale"),
        group="testbed",
        claim=CLAIM,
    ),
)
