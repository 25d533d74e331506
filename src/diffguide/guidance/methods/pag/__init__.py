"""Perturbed-attention guidance (PAG; Ahn et al. 2024, arXiv 2403.17377), declared: the conditional model
guided away from itself with the self-attention map of chosen attention modules replaced by the identity
(each token's attention output its own value). The implementation is wrapper.py, on the shared
diffguide.guidance.attention_perturbation; diffusers ships it as ``PerturbedAttentionGuidance``.
"""

from __future__ import annotations

from diffguide.guidance.methods.slg import ATTENTION_PARTS
from diffguide.registry import Method, Option, Scales

ORDER = 18  # the guiders diffusers ships that the testbed lacked (issue 29): guidance by a perturbed self

PAG_LAYERS = Option(
    "pag_layers",
    "mid_attention",
    "the self-attention modules of the UNet whose attention map PAG replaces by the identity: mid_attention "
    "(the mid block's; Ahn et al. perturb SD's mid block), down_attention, up_attention or all_attention",
    type="string",
    enum=ATTENTION_PARTS,
    fix="choose mid_attention (the default), down_attention, up_attention or all_attention",
)

PAG_CFG_W = Option(
    "pag_cfg_w",
    0.0,
    "PAG's classifier-free part: the w of eps(x, y) - eps(x, null) added to the perturbed-attention term (0: "
    "PAG alone; diffusers' guidance_scale = 1 + this)",
    minimum=0,
    fix="set it to a number >= 0 (0 is perturbed-attention guidance alone)",
)

METHODS = (
    Method(
        "pag",
        "w",
        "perturbed-attention guidance (w)",
        "perturbed-attention guidance of the conditional model, columns: w",
        "Perturbed-attention guidance (Ahn et al. 2024): eps~ = eps(x, y) + w (eps(x, y) - eps_pag(x, y)), "
        "eps_pag the same UNet with the attention map of guidance.pag_layers replaced by the identity, plus "
        "guidance.pag_cfg_w (eps(x, y) - eps(x, null)); w = 0 is the conditional model (at pag_cfg_w 0).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.pag.wrapper:build_pag",
        options=(PAG_LAYERS, PAG_CFG_W),
        scales=Scales((0, 1, 2, 4), "w of perturbed-attention guidance (Ahn et al.'s s; diffusers' "
                      "perturbed_guidance_scale with CFG on)"),
        group="testbed",
    ),
)
