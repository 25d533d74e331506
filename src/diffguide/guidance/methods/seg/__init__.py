"""Smoothed energy guidance (SEG; Hong 2024, arXiv 2408.00760), declared: the conditional model guided
away from itself with the attention queries of chosen attention modules blurred by a 2-D Gaussian over
the token grid (which blurs the attention weights and flattens the energy landscape). The
implementation is wrapper.py, on the shared diffguide.guidance.attention_perturbation; diffusers ships
it as ``SmoothedEnergyGuidance``.
"""

from __future__ import annotations

from diffguide.guidance.methods.slg import ATTENTION_PARTS
from diffguide.registry import Method, Option, Scales

ORDER = 19  # the guiders diffusers ships that the testbed lacked (issue 29): guidance by a perturbed self

SEG_LAYERS = Option(
    "seg_layers",
    "mid_attention",
    "the self-attention modules of the UNet whose queries SEG blurs: mid_attention (the mid block's; SEG's "
    "default for SDXL), down_attention, up_attention or all_attention",
    type="string",
    enum=ATTENTION_PARTS,
    fix="choose mid_attention (the default), down_attention, up_attention or all_attention",
)

SEG_SIGMA = Option(
    "seg_sigma",
    None,
    "SEG's Gaussian blur of the queries, its sigma in tokens (null: the infinite blur, every query its spatial "
    "mean, what diffusers' default 9999999 means; 0: no blur)",
    nullable=True,
    minimum=0,
    fix="give a sigma >= 0 in tokens (the window is cut to the attention grid's side) or null for the infinite blur",
)

SEG_CFG_W = Option(
    "seg_cfg_w",
    0.0,
    "SEG's classifier-free part: the w of eps(x, y) - eps(x, null) added to the smoothed-energy term (0: SEG "
    "alone; diffusers' guidance_scale = 1 + this)",
    minimum=0,
    fix="set it to a number >= 0 (0 is smoothed energy guidance alone)",
)

METHODS = (
    Method(
        "seg",
        "w",
        "smoothed energy guidance (w)",
        "smoothed energy guidance of the conditional model, columns: w",
        "Smoothed energy guidance (Hong 2024): eps~ = eps(x, y) + w (eps(x, y) - eps_seg(x, y)), eps_seg the "
        "same UNet with the queries of guidance.seg_layers blurred by a Gaussian of guidance.seg_sigma (null: "
        "their mean), plus guidance.seg_cfg_w (eps(x, y) - eps(x, null)); w = 0 is the conditional model.",
        eps_model="conditional",
        builder="diffguide.guidance.methods.seg.wrapper:build_seg",
        options=(SEG_LAYERS, SEG_SIGMA, SEG_CFG_W),
        scales=Scales((0, 1, 2, 4), "w of smoothed energy guidance (Hong's gamma_seg; diffusers' "
                      "seg_guidance_scale with CFG on)"),
        group="testbed",
    ),
)
