"""Skip-layer guidance (SLG; Stability AI's SD 3.5, and STG, Hyung et al. 2024, arXiv 2411.18664),
declared: the conditional model guided away from itself with chosen self-attention modules of the UNet
skipped (each returns its input). The implementation is wrapper.py, on the shared
diffguide.guidance.attention_perturbation; diffusers ships it as ``SkipLayerGuidance``.
"""

from __future__ import annotations

from diffguide.registry import Method, Option, Scales

ORDER = 17  # the guiders diffusers ships that the testbed lacked (issue 29): guidance by a perturbed self

# The parts of diffguide's UNet whose self-attention a method of this family perturbs (the same names
# as guidance.attention_perturbation.ATTENTION_PARTS; tests/test_attention_guiders.py checks it).
ATTENTION_PARTS = ("mid_attention", "down_attention", "up_attention", "all_attention")

SLG_LAYERS = Option(
    "slg_layers",
    "mid_attention",
    "the self-attention modules of the UNet that SLG skips (each returns its input, its residual branch "
    "included): mid_attention (the mid block's), down_attention, up_attention (those of the attention levels' "
    "down or up blocks) or all_attention",
    type="string",
    enum=ATTENTION_PARTS,
    fix="choose mid_attention (the default), down_attention, up_attention or all_attention",
)

SLG_CFG_W = Option(
    "slg_cfg_w",
    0.0,
    "SLG's classifier-free part: the w of eps(x, y) - eps(x, null) added to the skip-layer term (0: SLG "
    "alone; diffusers' guidance_scale = 1 + this)",
    minimum=0,
    fix="set it to a number >= 0 (0 is skip-layer guidance alone; diffusers' default guidance_scale 7.5 is 6.5)",
)

METHODS = (
    Method(
        "slg",
        "w",
        "skip-layer guidance (w)",
        "skip-layer guidance of the conditional model by itself with attention skipped, columns: w",
        "Skip-layer guidance (SD 3.5's SLG; STG, Hyung et al. 2024): eps~ = eps(x, y) + w (eps(x, y) - "
        "eps_skip(x, y)), eps_skip the same UNet with the attention modules of guidance.slg_layers skipped, "
        "plus guidance.slg_cfg_w (eps(x, y) - eps(x, null)); w = 0 is the conditional model (at slg_cfg_w 0).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.slg.wrapper:build_slg",
        options=(SLG_LAYERS, SLG_CFG_W),
        scales=Scales((0, 1, 2, 4), "w of skip-layer guidance (diffusers' skip_layer_guidance_scale with "
                      "CFG on; 1 + w with CFG off)"),
        group="testbed",
    ),
)
