"""Autoguidance by a layer-skipped self (diffusers' ``AutoGuidance``, guiders/auto_guidance.py;
docs/equations.md section 10): Karras et al.'s autoguidance (2024, "Guiding a Diffusion Model with a
Bad Version of Itself", arXiv 2406.02507; diffguide.guidance.methods.autoguidance) with the bad model
made from the good one, chosen layers skipped or dropped out, instead of a smaller, shorter-trained
network:

    eps~ = eps(x, y) + w (eps(x, y) - eps_bad(x, y'))

w the sweep's scale: diffusers computes pred_uncond + g (pred_cond - pred_uncond) with g = 1 + w (g = w
with use_original_formulation=True), Karras et al.'s w_K = 1 + w. Its "pred_uncond" is the bad model run
on the *unconditional* inputs (prepare_inputs' tuple index 1, the hooks set on that batch only), so
y' = null by default (guidance.autoguidance_skip_label: null_label); class_label gives the bad model the
same y, as Karras et al. do. Then, with the modules skipped (dropout 1), this is skip-layer guidance
alone: slg at slg_cfg_w 0 with slg_layers = autoguidance_skip_layers (the tests check they coincide);
with dropout 0 and null_label it is CFG at w.

Deviations, on purpose:
- a "layer" is one self-attention module of the part guidance.autoguidance_skip_layers names (our UNet
  has no transformer blocks), skipped whole (it returns its input) at dropout 1, diffusers' hook on
  that module;
- dropout p < 1: diffusers applies torch.nn.functional.dropout (training mode) to the module's output at
  every call, a fresh random mask each time; we draw one mask per module, seeded, over one sample's
  output shape, and keep it for every row, step and batch, so the bad model is one fixed thinned
  network and samples stay reproducible whatever the batch size (diffusers requires a dropout with
  layers; its LayerSkipConfig default, 1, is ours). As in diffusers, p -> 1 is not p = 1: a dropped
  module outputs (almost) zero, a skipped one its input;
- no guidance window (diffusers' default is every step, as here) and no guidance_rescale.
"""

from __future__ import annotations

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.attention_perturbation import Dropout, perturbed_self_guided
from diffguide.guidance.methods.autoguidance_skip import (AUTOGUIDANCE_SKIP_DROPOUT, AUTOGUIDANCE_SKIP_LABEL,
                                                          AUTOGUIDANCE_SKIP_LAYERS)
from diffguide.guidance.wrappers import Guided


def build_autoguidance_skip(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                            options: dict) -> Guided:
    """autoguidance_skip: autoguidance at w = scale of the conditional UNet by itself with
    guidance.autoguidance_skip_layers skipped (or dropped out at guidance.autoguidance_skip_dropout),
    conditioned as guidance.autoguidance_skip_label says, its guided x0 clipped like cfg's when clip_x0."""
    return perturbed_self_guided("autoguidance_skip", models, scale, schedule, clip_x0=clip_x0,
                                 perturbation=Dropout(AUTOGUIDANCE_SKIP_DROPOUT.value_in(options)),
                                 part=AUTOGUIDANCE_SKIP_LAYERS.value_in(options),
                                 part_key=AUTOGUIDANCE_SKIP_LAYERS.key,
                                 perturbed_label=AUTOGUIDANCE_SKIP_LABEL.value_in(options))
