"""Skip-layer guidance (SLG: Stability AI, Stable Diffusion 3.5; the same idea as STG, Hyung et al. 2024,
"Spatiotemporal Skip Guidance for Enhanced Video Diffusion Sampling", arXiv 2411.18664; docs/equations.md
section 10). The conditional model is guided away from a worse version of itself, the same network with
chosen layers skipped:

    eps~ = eps(x, y) + w_cfg (eps(x, y) - eps(x, null)) + w (eps(x, y) - eps_skip(x, y))

w the sweep's scale, w_cfg the option slg_cfg_w (0: SLG alone, the default). diffusers'
``SkipLayerGuidance`` computes pred_uncond + g (pred_cond - pred_uncond) + s (pred_cond - pred_skip):

- with use_original_formulation=True, pred_cond + g (...) + s (...): g = w_cfg and s = w, always;
- by default, with CFG on (g != 1): g = 1 + w_cfg and s = w (the skip scale is NOT 1 + w);
- by default with CFG off (g = 1) it writes pred_skip + s (pred_cond - pred_skip), s = 1 + w, but in
  diffusers 0.42.1 that two-batch path takes its second batch from the unconditional inputs and hooks
  no layer on it (prepare_inputs picks tuple index 1; prepare_models hooks batches 1 and 3 only), so
  it is CFG at s; ours at w_cfg = 0 is SLG alone (tests/test_attention_guiders.py pins both).

Deviations, on purpose:
- our UNet has no transformer blocks; a skipped "layer" is one self-attention module of the part
  guidance.slg_layers names (default the mid block's), which returns its input, its residual branch
  included: diffusers' LayerSkipConfig(skip_attention=True, skip_ff=False) on that module, whose hook
  the tests apply to our UNet as a peer;
- SLG guides at every step: diffusers' window (skip_layer_guidance_start 0.01, stop 0.2 of the steps,
  and never step 0: it tests start < step) is left out, as every testbed method guides every step
  (cfg_interval is the testbed's interval axis); no guidance_rescale.
"""

from __future__ import annotations

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.attention_perturbation import Skip, perturbed_self_guided
from diffguide.guidance.methods.slg import SLG_CFG_W, SLG_LAYERS
from diffguide.guidance.wrappers import Guided


def build_slg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """slg: skip-layer guidance at w = scale of the conditional UNet (guidance.slg_layers skipped), with
    guidance.slg_cfg_w of classifier-free guidance, its guided x0 clipped like cfg's when clip_x0."""
    return perturbed_self_guided("slg", models, scale, schedule, clip_x0=clip_x0, perturbation=Skip(),
                                 part=SLG_LAYERS.value_in(options), part_key=SLG_LAYERS.key,
                                 cfg_w=SLG_CFG_W.value_in(options))
