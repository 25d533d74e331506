"""Perturbed-attention guidance (PAG; Ahn et al. 2024, "Self-Rectifying Diffusion Sampling with
Perturbed-Attention Guidance", arXiv 2403.17377; docs/equations.md section 10). The weak prediction is
the same network with the self-attention map of chosen modules replaced by the identity,
softmax(Q K^T / sqrt(d)) -> I, so each token's attention output is its own value, to_out(to_v(x)):

    eps~ = eps(x, y) + w_cfg (eps(x, y) - eps(x, null)) + w (eps(x, y) - eps_pag(x, y))

w the sweep's scale (Ahn et al.'s s, diffusers' PAG pipelines' pag_scale: noise_pred_text + pag_scale
(text - perturb), and with CFG uncond + g (text - uncond) + pag_scale (text - perturb), g = 1 + w_cfg),
w_cfg the option pag_cfg_w (0: PAG alone, the default). diffusers' ``PerturbedAttentionGuidance`` guider
is SkipLayerGuidance's code with the attention scores skipped (an SDPA that returns V); its scales read
as SLG's (diffguide.guidance.methods.slg.wrapper): perturbed_guidance_scale = w and guidance_scale =
1 + w_cfg with CFG on, both as ours with use_original_formulation=True; with CFG off (guidance_scale 1)
its two-batch path is CFG at perturbed_guidance_scale, unlike the paper and the PAG pipelines.

Deviations, on purpose:
- the perturbed modules are the self-attention modules of the part guidance.pag_layers names (default
  the mid block's, as Ahn et al. perturb SD's mid block and diffusers' PAG pipelines default to "mid");
  the residual and the output projection stay, as diffusers' perturbation keeps them;
- PAG guides at every step (the guider's default window, 0.01 to 0.2 of the steps and never step 0,
  is left out; no adaptive pag scale, no guidance_rescale).
"""

from __future__ import annotations

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.attention_perturbation import IdentityScores, perturbed_self_guided
from diffguide.guidance.methods.pag import PAG_CFG_W, PAG_LAYERS
from diffguide.guidance.wrappers import Guided


def build_pag(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """pag: perturbed-attention guidance at w = scale of the conditional UNet (the attention maps of
    guidance.pag_layers the identity), with guidance.pag_cfg_w of classifier-free guidance, its guided x0
    clipped like cfg's when clip_x0."""
    return perturbed_self_guided("pag", models, scale, schedule, clip_x0=clip_x0, perturbation=IdentityScores(),
                                 part=PAG_LAYERS.value_in(options), part_key=PAG_LAYERS.key,
                                 cfg_w=PAG_CFG_W.value_in(options))
