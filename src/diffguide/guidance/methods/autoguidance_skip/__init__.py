"""Autoguidance by a layer-skipped self (diffusers' ``AutoGuidance``), declared: Karras et al.'s
autoguidance (arXiv 2406.02507) with the bad model made from the model itself, chosen self-attention
modules of the UNet skipped or dropped out, instead of a separately trained weak network. The
implementation is wrapper.py, on the shared diffguide.guidance.attention_perturbation.
"""

from __future__ import annotations

from diffguide.guidance.methods.slg import ATTENTION_PARTS
from diffguide.registry import Method, Option, Scales

ORDER = 20  # the guiders diffusers ships that the testbed lacked (issue 29): guidance by a perturbed self

AUTOGUIDANCE_SKIP_LAYERS = Option(
    "autoguidance_skip_layers",
    "mid_attention",
    "the self-attention modules of the UNet that the bad model of autoguidance_skip skips or drops out: "
    "mid_attention (the mid block's), down_attention, up_attention or all_attention",
    type="string",
    enum=ATTENTION_PARTS,
    fix="choose mid_attention (the default), down_attention, up_attention or all_attention",
)

AUTOGUIDANCE_SKIP_DROPOUT = Option(
    "autoguidance_skip_dropout",
    1.0,
    "the bad model's dropout p of those modules' outputs (diffusers' dropout): 1 skips them (each returns its "
    "input), p < 1 keeps each output entry with probability 1 - p (scaled by 1 / (1 - p)) under one fixed "
    "seeded mask, 0 keeps the module",
    minimum=0,
    maximum=1,
    fix="set p in [0, 1]: 1 (the default) skips the modules, 0 leaves them as they are",
)

AUTOGUIDANCE_SKIP_LABEL = Option(
    "autoguidance_skip_label",
    "null_label",
    "what the bad model is conditioned on: null_label (diffusers' AutoGuidance, which runs it on the "
    "unconditional inputs) or class_label (Karras et al.'s autoguidance: the same y as the good model)",
    type="string",
    enum=("null_label", "class_label"),
    fix="choose null_label (diffusers' AutoGuidance) or class_label (Karras et al.'s same-condition bad model)",
)

METHODS = (
    Method(
        "autoguidance_skip",
        "w",
        "autoguidance by a layer-skipped self (w)",
        "autoguidance of the conditional model by itself with attention skipped, columns: w",
        "Autoguidance by a layer-skipped self (diffusers' AutoGuidance): eps~ = eps(x, y) + w (eps(x, y) - "
        "eps_bad(x, y')), eps_bad the same UNet with guidance.autoguidance_skip_layers skipped (or dropped out "
        "at guidance.autoguidance_skip_dropout), y' the null label (diffusers') or y; w = 0 is the conditional "
        "model (diffusers' guidance_scale = 1 + w).",
        eps_model="conditional",
        builder="diffguide.guidance.methods.autoguidance_skip.wrapper:build_autoguidance_skip",
        options=(AUTOGUIDANCE_SKIP_LAYERS, AUTOGUIDANCE_SKIP_DROPOUT, AUTOGUIDANCE_SKIP_LABEL),
        scales=Scales((0, 1, 2, 4), "w of autoguidance by a layer-skipped self (diffusers' guidance_scale = 1 + w)"),
        group="testbed",
    ),
)
