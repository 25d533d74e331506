"""Smoothed energy guidance (SEG; Hong 2024, "Smoothed Energy Guidance: Guiding Diffusion Models with
Reduced Energy Curvature of Attention", arXiv 2408.00760; docs/equations.md section 10). Self-attention
is the gradient step of an energy whose curvature the attention weights set; blurring the weights with a
Gaussian keeps their mean and lowers their variance, which flattens that energy. Blurring the queries over
the token grid blurs the weights the same way (Hong's query blurring), so the weak prediction is the same
network with the queries of chosen modules blurred by a 2-D Gaussian of sigma (None: the infinite blur,
every query its channel's spatial mean):

    eps~ = eps(x, y) + w_cfg (eps(x, y) - eps(x, null)) + w (eps(x, y) - eps_seg(x, y))

w the sweep's scale (Hong's gamma_seg, SEG-SDXL's seg_scale, 3 in their examples), w_cfg the option
seg_cfg_w (0: SEG alone, the default). diffusers' ``SmoothedEnergyGuidance`` combines as SkipLayerGuidance
(diffguide.guidance.methods.slg.wrapper): seg_guidance_scale = w, guidance_scale = 1 + w_cfg with CFG on,
both as ours with use_original_formulation=True, and CFG at seg_guidance_scale with CFG off.

The blur is SEG-SDXL's (SusungHong/SEG-SDXL, pipeline_seg.py): a Gaussian window of ceil(6 sigma) taps,
one more where that is even, cut to the grid's side (one more where the side is even), borders reflected.

Deviations, on purpose:
- the default is the infinite blur (guidance.seg_sigma null), what diffusers' default seg_blur_sigma
  9999999 stands for (its docstring: above 9999 "infinite blur, which means uniform queries"); on our
  7 x 7 attention grid any sigma above about 3 spans the grid. diffusers 0.42.1's ``_gaussian_blur_2d``
  has the two branches the other way round (it blurs by the Gaussian when sigma exceeds the threshold
  and takes the mean otherwise; the guider's seg_blur_threshold_inf never reaches the hook), so its
  default blurs by a nearly flat window while any sigma <= 9999.9 gives the mean: we follow SEG-SDXL's
  processor, and the tests compare each of our branches with the diffusers branch that computes it;
- the token grid is the module's own H x W (SEG-SDXL and diffusers assume a square grid);
- the perturbed modules are the part guidance.seg_layers names (default the mid block's, SEG-SDXL's
  default ['mid']); SEG guides at every step, as diffusers' default seg_guidance_start 0 / stop 1
  does except at step 0 (its window test is start < step).
"""

from __future__ import annotations

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.attention_perturbation import BlurredQueries, perturbed_self_guided
from diffguide.guidance.methods.seg import SEG_CFG_W, SEG_LAYERS, SEG_SIGMA
from diffguide.guidance.wrappers import Guided


def build_seg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """seg: smoothed energy guidance at w = scale of the conditional UNet (the queries of
    guidance.seg_layers blurred at guidance.seg_sigma), with guidance.seg_cfg_w of classifier-free
    guidance, its guided x0 clipped like cfg's when clip_x0."""
    return perturbed_self_guided("seg", models, scale, schedule, clip_x0=clip_x0,
                                 perturbation=BlurredQueries(SEG_SIGMA.value_in(options)),
                                 part=SEG_LAYERS.value_in(options), part_key=SEG_LAYERS.key,
                                 cfg_w=SEG_CFG_W.value_in(options))
