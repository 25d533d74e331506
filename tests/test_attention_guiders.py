"""Guidance by a perturbed self (issue 29): skip-layer guidance (slg), perturbed-attention guidance (pag),
smoothed energy guidance (seg) and diffusers' layer-skipping autoguidance (autoguidance_skip), on a small
real EpsUNet with seeded random weights, in float64 (docs/equations.md section 10).

- degenerate settings: w = 0 and an empty set of perturbed modules are the conditional model; the
  classifier-free part alone (and autoguidance_skip at dropout 0 on the null label) is CFG, eps by eps
  and through whole clipped DDIM and ancestral chains, to 1e-12; autoguidance_skip on the class label
  with its modules skipped is slg;
- the perturbations act as defined, computed by hand on one module: PAG's attention output is the value
  path, a skipped module returns its input, SEG at sigma -> 0 is the unperturbed model and at the
  infinite blur every query is its spatial mean (so every token's attention output is the same);
- peers: diffusers' own hooks (LayerSkipConfig, the SEG hook) applied to our UNet give our perturbed
  predictions, diffusers' blur gives our blur, and diffusers' SkipLayerGuidance, PerturbedAttentionGuidance,
  SmoothedEnergyGuidance and AutoGuidance called directly on the same three predictions give our
  combination (both formulations, every step: start 0, stop 1, a step > 0);
- the wiring around it: one forward pass per call, the processors restored, the UNet found inside a
  wrapper and a model without it refused, float32 and bf16 autocast.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim, sample_ddpm, sample_heun
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureEpsModel, random_mixture
from diffguide.guidance import attention_perturbation as ap
from diffguide.guidance.wrappers import NULL_LABEL, build_classifier_free
from diffguide.models.networks import EpsUNet
from diffguide.registry import REGISTRY

F64 = torch.float64
SCHEDULE = NoiseSchedule.make("cosine", 1000)
TIMESTEPS = [0, 50, 250, 500, 750, 950, 999]
W, W_CFG = 2.0, 1.5
NAMES = ("slg", "pag", "seg", "autoguidance_skip")
LAYERS = {name: REGISTRY.methods[name].options[0].key for name in NAMES}  # each declares its part first
CFG_KEY = {"slg": "slg_cfg_w", "pag": "pag_cfg_w", "seg": "seg_cfg_w"}

logging.getLogger("diffusers").setLevel(logging.ERROR)  # guiders warn that they are experimental


def small_unet(attention_levels=(1,), seed: int = 0) -> EpsUNet:
    """A float64 EpsUNet on 1 x 8 x 8 images, 3 classes, attention at level 1 (4 x 4 tokens) and in the mid
    block (4 x 4), every weight moved by seeded noise so no layer is at its (partly zero) initialisation."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = EpsUNet(image_size=8, channels=1, widths=[8, 16], attention_levels=list(attention_levels),
                       num_classes=3, norm_groups=4, head_dim=8).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return unet.eval()


UNET = small_unet()
_g = torch.Generator().manual_seed(5)
X = torch.randn(6, 1, 8, 8, generator=_g, dtype=F64)
Y = torch.tensor([0, 1, 2, 0, 1, NULL_LABEL])


def tt(t: int) -> torch.Tensor:
    return torch.full((len(X),), t, dtype=torch.long)


def rel_err(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp(min=1.0)).item()


def build(name: str, scale: float, options: dict | None = None, model: nn.Module = UNET, clip_x0: bool = False):
    return REGISTRY.methods[name].build()({"eps_model": model}, scale, SCHEDULE, clip_x0=clip_x0,
                                          options=options or {}).model


def perturbed(perturbation, part="mid_attention", y=Y, t=500, model=UNET):
    """The model's eps with ``part``'s modules perturbed on every row."""
    with ap.perturbed_rows(ap.attention_modules(model, part), perturbation, 0):
        return model(X, tt(t), y)


PERTURBATION = {"slg": ap.Skip(), "pag": ap.IdentityScores(), "seg": ap.BlurredQueries(None),
                "autoguidance_skip": ap.Skip()}  # each method's default perturbation


# ------------------------------------------------------------------------------------------ the UNet


def test_the_small_unet_has_attention_in_every_part_and_the_declarations_name_the_parts():
    counts = {part: len(ap.attention_modules(UNET, part)) for part in ap.ATTENTION_PARTS}
    assert counts == {"mid_attention": 1, "down_attention": 1, "up_attention": 2, "all_attention": 4}
    for name in NAMES:
        assert REGISTRY.methods[name].option(LAYERS[name]).enum == ap.ATTENTION_PARTS
        assert REGISTRY.methods[name].group == "testbed" and REGISTRY.methods[name].claim is None
    labels = REGISTRY.methods["autoguidance_skip"].option("autoguidance_skip_label").enum
    assert set(labels) == set(ap.PERTURBED_LABELS)


@pytest.mark.parametrize("part", ap.ATTENTION_PARTS)
@pytest.mark.parametrize("name", ["slg", "pag", "seg"])
def test_each_perturbation_of_each_part_changes_the_prediction(name, part):
    assert rel_err(perturbed(PERTURBATION[name], part), UNET(X, tt(500), Y)) > 1e-3


# ----------------------------------------------------------------------------------- degenerate settings


@pytest.mark.parametrize("name", NAMES)
def test_w_zero_and_no_perturbed_module_are_the_conditional_model(name):
    for t in (50, 500, 950):
        conditional = UNET(X, tt(t), Y)
        assert build(name, 0.0)(X, tt(t), Y).equal(conditional)
        guided = ap.PerturbedSelfGuidance(UNET, W, PERTURBATION[name], [])  # w > 0, nothing perturbed
        assert rel_err(guided(X, tt(t), Y), conditional) < 1e-12, t
        # the same through the three-row batch with a classifier-free part: CFG at that part's w
        guided = ap.PerturbedSelfGuidance(UNET, W, PERTURBATION[name], [], cfg_w=W_CFG)
        cfg = build_classifier_free({"eps_model": UNET}, W_CFG, SCHEDULE, clip_x0=False, options={}).model
        assert rel_err(guided(X, tt(t), Y), cfg(X, tt(t), Y)) < 1e-12, t


DEGENERATE_CFG = {  # (scale, options) that are CFG at W: the classifier-free part alone, or autoguidance_skip
    "slg": (0.0, {"slg_cfg_w": W}), "pag": (0.0, {"pag_cfg_w": W}), "seg": (0.0, {"seg_cfg_w": W}),
    "autoguidance_skip": (W, {"autoguidance_skip_dropout": 0.0}),  # at dropout 0: its bad model is eps(x, null)
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("clip_x0", [False, True])
def test_the_classifier_free_part_alone_is_cfg_eps_by_eps(name, clip_x0):
    scale, options = DEGENERATE_CFG[name]
    ours = build(name, scale, options, clip_x0=clip_x0)
    cfg = build_classifier_free({"eps_model": UNET}, W, SCHEDULE, clip_x0=clip_x0, options={}).model
    for t in TIMESTEPS:
        assert rel_err(ours(X, tt(t), Y), cfg(X, tt(t), Y)) < 1e-12, t


def chain(model, sampler: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    run = sample_ddim if sampler == "ddim" else sample_ddpm
    extra = {"eta": 0.5} if sampler == "ddim" else {}
    return run(model, X, respaced_timesteps(1000, 6, "leading"), schedule=SCHEDULE, labels=Y, progress=False,
               noise=lambda v: torch.randn(v.shape, generator=gen, dtype=v.dtype), **extra)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_the_classifier_free_part_alone_is_cfg_through_whole_clipped_chains(name, sampler):
    scale, options = DEGENERATE_CFG[name]
    cfg = build_classifier_free({"eps_model": UNET}, W, SCHEDULE, clip_x0=True, options={}).model
    assert rel_err(chain(build(name, scale, options, clip_x0=True), sampler), chain(cfg, sampler)) < 1e-12


@pytest.mark.parametrize("part", ap.ATTENTION_PARTS)
def test_autoguidance_skip_on_the_class_label_with_its_modules_skipped_is_slg(part):
    slg = build("slg", W, {"slg_layers": part})
    skip = build("autoguidance_skip", W, {"autoguidance_skip_layers": part, "autoguidance_skip_label": "class_label"})
    for t in (50, 500, 950):
        assert rel_err(skip(X, tt(t), Y), slg(X, tt(t), Y)) < 1e-12
    assert rel_err(build("autoguidance_skip", W, {"autoguidance_skip_layers": part})(X, tt(500), Y),
                   slg(X, tt(500), Y)) > 1e-3  # on the null label (diffusers') they differ


# ------------------------------------------------------------------------------- the perturbations by hand


def module_io(module: nn.Module, perturbation, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output of ``module`` during one call of the UNet with ``part`` perturbed."""
    seen = {}
    handle = module.register_forward_hook(lambda m, args, out: seen.update(input=args[0], output=out))
    try:
        if perturbation is None:
            UNET(X, tt(500), Y)
        else:
            perturbed(perturbation, part)
    finally:
        handle.remove()
    return seen["input"], seen["output"]


HAND_MODULES = {"mid_attention": lambda: UNET.unet.mid_block.attentions[0],  # no group norm (scale-shift mid block)
                "down_attention": lambda: UNET.unet.down_blocks[1].attentions[0]}  # with its group norm


def tokens_of(attn, hidden):
    """[B, C, H, W] -> the normalised tokens [B, HW, C] the projections see."""
    tokens = hidden.flatten(2).transpose(1, 2)
    if attn.group_norm is not None:
        tokens = attn.group_norm(tokens.transpose(1, 2)).transpose(1, 2)
    return tokens


def linear(layer, tokens):
    return tokens @ layer.weight.T + layer.bias


@pytest.mark.parametrize("part", sorted(HAND_MODULES))
def test_pag_attention_output_is_the_value_path(part):
    attn = HAND_MODULES[part]()
    hidden, out = module_io(attn, ap.IdentityScores(), part)
    value_path = linear(attn.to_out[0], linear(attn.to_v, tokens_of(attn, hidden)))  # to_out(to_v(x))
    expected = (value_path.transpose(1, 2).reshape(hidden.shape) + hidden) / attn.rescale_output_factor
    assert rel_err(out, expected) < 1e-12
    _, own = module_io(attn, None, part)
    assert rel_err(own, expected) > 1e-3  # the real attention map is not the identity


@pytest.mark.parametrize("part", sorted(HAND_MODULES))
def test_a_skipped_module_returns_its_input(part):
    attn = HAND_MODULES[part]()
    hidden, out = module_io(attn, ap.Skip(), part)
    assert out is hidden or out.equal(hidden)
    hidden, out = module_io(attn, ap.Dropout(1.0), part)  # diffusers' dropout 1 is the skip
    assert out.equal(hidden)


@pytest.mark.parametrize("sigma", [0.0, 0.1, 1 / 6])
def test_seg_with_sigma_to_zero_is_the_unperturbed_model(sigma):
    assert ap.seg_kernel_size(sigma) == 1 or sigma == 0
    for t in (50, 500, 950):
        seg = build("seg", W, {"seg_sigma": sigma, "seg_layers": "all_attention"})
        assert rel_err(seg(X, tt(t), Y), UNET(X, tt(t), Y)) < 1e-12, t
    assert rel_err(build("seg", W, {"seg_sigma": 0.5})(X, tt(500), Y), UNET(X, tt(500), Y)) > 1e-6  # 3 taps blur


@pytest.mark.parametrize("part", sorted(HAND_MODULES))
def test_seg_infinite_blur_makes_every_query_its_spatial_mean(part):
    queries = torch.randn(2, 16, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    blurred = ap.blur_queries(queries, (4, 4), None)
    assert rel_err(blurred, queries.mean(1, keepdim=True).expand_as(queries)) < 1e-15
    # in the module: equal queries give every token the same attention output, so the output minus the
    # residual is constant over the grid, channel by channel, and it is softmax(q_mean K^T / sqrt(d)) V
    attn = HAND_MODULES[part]()
    hidden, out = module_io(attn, ap.BlurredQueries(None), part)
    tokens = tokens_of(attn, hidden)
    q, k, v = linear(attn.to_q, tokens).mean(1, keepdim=True), linear(attn.to_k, tokens), linear(attn.to_v, tokens)
    heads, d = attn.heads, q.shape[-1] // attn.heads
    split = lambda z: z.reshape(len(z), z.shape[1], heads, d).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / d ** 0.5, dim=-1)  # [B, heads, 1, HW]
    mixed = (weights @ split(v)).transpose(1, 2).reshape(len(q), 1, heads * d)
    delta = linear(attn.to_out[0], mixed).transpose(1, 2)[..., None]  # [B, C, 1, 1]
    assert rel_err(out * attn.rescale_output_factor - hidden, delta.expand_as(hidden)) < 1e-12


def test_seg_gaussian_window_is_seg_sdxls_rule():
    assert [ap.seg_kernel_size(s) for s in (0.1, 0.5, 1.0, 1.1, 2.0, 100.0)] == [1, 3, 7, 7, 13, 601]
    bell = torch.exp(-0.5 * (torch.arange(-3.0, 4.0, dtype=F64) / 1.5) ** 2)
    assert rel_err(ap.gaussian_window(7, 1.5), bell / bell.sum()) < 1e-15


# ---------------------------------------------------------------------------- peers: diffusers' hooks


def with_diffusers_hook(apply, part: str, t: int = 500):
    """Our UNet's eps with diffusers' own hook applied to the attention modules of ``part``."""
    from diffusers.hooks import HookRegistry

    fqns = {"mid_attention": ["mid_block.attentions"], "down_attention": ["down_blocks.1.attentions"],
            "up_attention": ["up_blocks.0.attentions"]}[part]
    for i, fqn in enumerate(fqns):
        apply(UNET.unet, fqn, f"peer_{i}")
    try:
        return UNET(X, tt(t), Y)
    finally:
        registry = HookRegistry.check_if_exists_or_initialize(UNET.unet)
        for i in range(len(fqns)):
            registry.remove_hook(f"peer_{i}", recurse=True)


@pytest.mark.parametrize("part", ["mid_attention", "down_attention", "up_attention"])
def test_diffusers_layer_skip_and_attention_score_skip_hooks_are_our_skip_and_pag(part):
    from diffusers.hooks import LayerSkipConfig
    from diffusers.hooks.layer_skip import _apply_layer_skip_hook
    indices = [0, 1] if part == "up_attention" else [0]

    def hook(**flags):
        return lambda unet, fqn, name: _apply_layer_skip_hook(
            unet, LayerSkipConfig(indices=indices, fqn=fqn, skip_ff=False, **flags), name=name)

    for t in (50, 500, 950):
        skip = with_diffusers_hook(hook(skip_attention=True), part, t)
        assert rel_err(perturbed(ap.Skip(), part, t=t), skip) < 1e-12
        pag = with_diffusers_hook(hook(skip_attention=False, skip_attention_scores=True), part, t)
        assert rel_err(perturbed(ap.IdentityScores(), part, t=t), pag) < 1e-12
    assert rel_err(UNET(X, tt(500), Y), skip) > 1e-3  # the hooks are off again and acted while on


@pytest.mark.parametrize("part", ["mid_attention", "down_attention"])
def test_diffusers_seg_hook_at_a_sigma_below_its_threshold_is_our_infinite_blur(part):
    """diffusers 0.42.1's SEG hook takes the mean branch for sigma <= 9999.9 (its branches are the other way
    round from SEG-SDXL's: the module docstring of guidance.methods.seg.wrapper)."""
    from diffusers.hooks.smoothed_energy_guidance_utils import (SmoothedEnergyGuidanceConfig,
                                                                _apply_smoothed_energy_guidance_hook)
    theirs = with_diffusers_hook(lambda unet, fqn, name: _apply_smoothed_energy_guidance_hook(
        unet, SmoothedEnergyGuidanceConfig(indices=[0], fqn=fqn), 2.0, name=name), part)
    assert rel_err(perturbed(ap.BlurredQueries(None), part), theirs) < 1e-12


@pytest.mark.parametrize("side", [4, 5, 7])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 100.0])
def test_our_gaussian_blur_is_diffusers_gaussian_branch(side, sigma):
    """diffusers' _gaussian_blur_2d with its infinite-blur threshold at 0 takes its Gaussian branch (SEG-SDXL's
    gaussian_blur_2d with its window cut); its window comes from torch.linspace in the default dtype, so
    float64 is made the default for the call."""
    from diffusers.hooks.smoothed_energy_guidance_utils import _gaussian_blur_2d
    queries = torch.randn(2, side * side, 6, generator=torch.Generator().manual_seed(side), dtype=F64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        theirs = _gaussian_blur_2d(queries.clone(), ap.seg_kernel_size(sigma), sigma, 0.0)
    finally:
        torch.set_default_dtype(default)
    ours = ap.blur_queries(queries, (side, side), sigma)
    assert rel_err(ours, theirs) < 1e-12 and rel_err(ours, queries) > 1e-3


# -------------------------------------------------------------------------- peers: diffusers' guiders


def predictions(name: str, t: int, part: str = "mid_attention"):
    """(eps(x, y), eps(x, null), the perturbed prediction) as three separate calls: the perturbed one on y,
    or for autoguidance_skip on the null label."""
    null = torch.full_like(Y, NULL_LABEL)
    bad_label = null if name == "autoguidance_skip" else Y
    return UNET(X, tt(t), Y), UNET(X, tt(t), null), perturbed(PERTURBATION[name], part, y=bad_label, t=t)


def diffusers_guider(name: str, w: float, cfg_w: float, original: bool):
    from diffusers import guiders
    g = cfg_w if original else 1 + cfg_w
    window = {"start": 0.0, "stop": 1.0}
    if name == "slg":
        return guiders.SkipLayerGuidance(guidance_scale=g, skip_layer_guidance_scale=w, skip_layer_guidance_start=0.0,
                                         skip_layer_guidance_stop=1.0, skip_layer_guidance_layers=[0],
                                         use_original_formulation=original, **window)
    if name == "pag":
        return guiders.PerturbedAttentionGuidance(guidance_scale=g, perturbed_guidance_scale=w,
                                                  perturbed_guidance_start=0.0, perturbed_guidance_stop=1.0,
                                                  perturbed_guidance_layers=[0], use_original_formulation=original,
                                                  **window)
    if name == "seg":
        return guiders.SmoothedEnergyGuidance(guidance_scale=g, seg_guidance_scale=w, seg_guidance_start=0.0,
                                              seg_guidance_stop=1.0, seg_guidance_layers=[0],
                                              use_original_formulation=original, **window)
    return guiders.AutoGuidance(guidance_scale=w if original else 1 + w, auto_guidance_layers=[0], dropout=1.0,
                                use_original_formulation=original, **window)


@pytest.mark.parametrize("name", ["slg", "pag", "seg"])
@pytest.mark.parametrize("original", [False, True])
@pytest.mark.parametrize("cfg_w", [0.0, W_CFG])
def test_the_combination_is_diffusers_guider_on_the_same_predictions(name, original, cfg_w):
    """With CFG on, diffusers' skip / perturbed / seg scale is our w and its guidance_scale 1 + w_cfg
    (w_cfg with use_original_formulation); with CFG off (guidance_scale 1, or 0 in the original form) its
    default form writes pred_skip + s (pred_cond - pred_skip): s = 1 + w there."""
    guider = diffusers_guider(name, W + (1 if cfg_w == 0 and not original else 0), cfg_w, original)
    ours = build(name, W, {CFG_KEY[name]: cfg_w})
    for t in (50, 500, 950):
        c, u, p = predictions(name, t)
        guider.set_state(1, 2, tt(t))  # step 1 of 2: inside start 0 / stop 1 for both tests of the window
        assert guider.num_conditions == (3 if cfg_w else 2)
        theirs = guider.forward(c, u, p).pred
        assert rel_err(ours(X, tt(t), Y), theirs) < 1e-12, t


@pytest.mark.parametrize("original", [False, True])
def test_autoguidance_skip_is_diffusers_autoguidance_on_the_same_predictions(original):
    guider = diffusers_guider("autoguidance_skip", W, 0.0, original)
    ours = build("autoguidance_skip", W)
    for t in (50, 500, 950):
        c, _, bad = predictions("autoguidance_skip", t)
        guider.set_state(0, 1, tt(t))  # AutoGuidance's window includes step 0
        assert rel_err(ours(X, tt(t), Y), guider.forward(c, bad).pred) < 1e-12, t


def diffusers_step(guider, t: int, step: int = 1, steps: int = 2) -> torch.Tensor:
    """One step of diffusers' guider protocol on our UNet, the order its modular pipelines follow: set_state,
    prepare_inputs (the label is the guider's input field, (y, null)), then for each batch prepare_models, the
    model, cleanup_models, and the guider on the batches' predictions."""
    guider.set_state(step, steps, tt(t))
    batches = guider.prepare_inputs({"labels": (Y, torch.full_like(Y, NULL_LABEL))})
    for batch in batches:
        guider.prepare_models(UNET.unet)
        batch.noise_pred = UNET(X, tt(t), batch.labels)
        guider.cleanup_models(UNET.unet)
    return guider(batches).pred


def mid_block_guider(name: str, g: float, s: float):
    """diffusers' guider of ``name`` with its hooks aimed at our UNet's mid-block attention (fqn given:
    "auto" finds transformer blocks only), every step in its window."""
    from diffusers import guiders
    from diffusers.hooks import LayerSkipConfig, SmoothedEnergyGuidanceConfig
    skip = dict(indices=[0], fqn="mid_block.attentions", skip_ff=False)
    window = dict(start=0.0, stop=1.0)
    if name == "slg":
        return guiders.SkipLayerGuidance(guidance_scale=g, skip_layer_guidance_scale=s, skip_layer_guidance_start=0.0,
                                         skip_layer_guidance_stop=1.0, skip_layer_config=LayerSkipConfig(
                                             skip_attention=True, **skip), **window)
    if name == "pag":
        return guiders.PerturbedAttentionGuidance(guidance_scale=g, perturbed_guidance_scale=s,
                                                  perturbed_guidance_start=0.0, perturbed_guidance_stop=1.0,
                                                  perturbed_guidance_config=LayerSkipConfig(
                                                      skip_attention=False, skip_attention_scores=True, **skip),
                                                  **window)
    if name == "seg":
        return guiders.SmoothedEnergyGuidance(guidance_scale=g, seg_guidance_scale=s, seg_blur_sigma=2.0,
                                              seg_guidance_config=SmoothedEnergyGuidanceConfig(
                                                  indices=[0], fqn="mid_block.attentions"), **window)
    return guiders.AutoGuidance(guidance_scale=g, auto_guidance_config=LayerSkipConfig(
        skip_attention=True, dropout=1.0, **skip), **window)


@pytest.mark.parametrize("name", ["slg", "pag", "autoguidance_skip"])
def test_diffusers_guider_run_on_our_unet_with_its_own_hooks_is_ours(name):
    """The whole of diffusers' step, hooks included, on our UNet: SLG and PAG with CFG on (guidance_scale
    1 + w_cfg, their scale w), AutoGuidance (guidance_scale 1 + w, its bad model on the null label)."""
    before = UNET(X, tt(500), Y)
    cfg_w = 0.0 if name == "autoguidance_skip" else W_CFG
    guider = mid_block_guider(name, 1 + (W if name == "autoguidance_skip" else cfg_w), W)
    ours = build(name, W, {CFG_KEY[name]: cfg_w} if name in CFG_KEY else {})
    for t in (50, 500, 950):
        step = 0 if name == "autoguidance_skip" else 1  # AutoGuidance's window includes step 0
        assert rel_err(diffusers_step(guider, t, step), ours(X, tt(t), Y)) < 1e-12, t
    assert UNET(X, tt(500), Y).equal(before)  # its hooks are gone


def test_diffusers_0_42_guiders_do_what_our_docstrings_say_they_do():
    """The differences the wrappers' docstrings state, pinned on diffusers 0.42.1 (rewrite the docstrings if
    this fails after an upgrade): with CFG off (guidance_scale 1) SLG's and PAG's two-batch step runs the
    'skip' batch on the null label and unhooked, so it is CFG at their scale s (w = s - 1); at step 0 their
    window never opens (start < step), so a step is CFG at w_cfg; SEG's guider never counts its batches in
    prepare_models, so it never hooks a module and its step is CFG at w_cfg whatever its scale."""
    cfg = {w: build_classifier_free({"eps_model": UNET}, w, SCHEDULE, clip_x0=False, options={}).model
           for w in (W - 1, W_CFG)}
    for name in ("slg", "pag"):
        assert rel_err(diffusers_step(mid_block_guider(name, 1.0, W), 500), cfg[W - 1](X, tt(500), Y)) < 1e-12
        assert rel_err(diffusers_step(mid_block_guider(name, 1 + W_CFG, W), 500, step=0),
                       cfg[W_CFG](X, tt(500), Y)) < 1e-12
    assert rel_err(diffusers_step(mid_block_guider("seg", 1 + W_CFG, W), 500), cfg[W_CFG](X, tt(500), Y)) < 1e-12
    assert rel_err(build("seg", W, {"seg_cfg_w": W_CFG})(X, tt(500), Y), cfg[W_CFG](X, tt(500), Y)) > 1e-3


# ------------------------------------------------------------------------------------------- the wiring


class Counting(nn.Module):
    """Wraps a model: counts its forward calls (the UNet inside is found by the builders)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x, t, y=None):
        self.calls += 1
        return self.model(x, t, y)


@pytest.mark.parametrize("name", NAMES)
def test_one_forward_pass_per_call_the_unet_found_inside_a_wrapper_and_the_processors_restored(name):
    counting = Counting(UNET)
    options = {CFG_KEY[name]: W_CFG} if name in CFG_KEY else {}
    before = [m.processor for m in ap.attention_modules(UNET, "all_attention")]
    guided = build(name, W, options | {LAYERS[name]: "all_attention"}, model=counting)
    assert rel_err(guided(X, tt(500), Y), build(name, W, options | {LAYERS[name]: "all_attention"})(X, tt(500), Y)) \
        < 1e-12
    assert counting.calls == 1
    assert [m.processor for m in ap.attention_modules(UNET, "all_attention")] == before


def test_the_processors_are_restored_when_the_forward_pass_fails():
    modules = ap.attention_modules(UNET, "all_attention")
    before = [m.processor for m in modules]
    with pytest.raises(RuntimeError):
        with ap.perturbed_rows(modules, ap.Skip(), 0):
            UNET(torch.zeros(2, 3, 8, 8, dtype=F64), tt(500)[:2], Y[:2])  # 3 channels: the conv refuses
    assert [m.processor for m in modules] == before


@pytest.mark.parametrize("name", NAMES)
def test_a_model_without_the_unet_is_refused_naming_the_method_except_at_scale_zero(name):
    mixture = MixtureEpsModel(random_mixture(3, 64, torch.Generator().manual_seed(0)), SCHEDULE)
    with pytest.raises(ValueError, match=rf"^{name}: .*EpsUNet.*MixtureEpsModel"):
        build(name, W, model=mixture)
    assert build(name, 0.0, model=mixture)(X, tt(500), Y).equal(mixture(X, tt(500), Y))


def test_a_part_without_attention_is_refused_naming_the_option():
    no_levels = small_unet(attention_levels=())
    assert len(ap.attention_modules(no_levels, "mid_attention")) == 1  # the mid block always has one
    with pytest.raises(ValueError, match=r"guidance\.pag_layers: down_attention selects no attention module"):
        build("pag", W, {"pag_layers": "down_attention"}, model=no_levels)


def test_autoguidance_skip_dropout_keeps_one_fixed_mask_whatever_the_batch():
    guided = build("autoguidance_skip", W, {"autoguidance_skip_dropout": 0.3})
    whole = guided(X, tt(500), Y)
    assert guided(X, tt(500), Y).equal(whole)  # the same mask on the next call
    assert rel_err(guided(X[:2], tt(500)[:2], Y[:2]), whole[:2]) < 1e-12  # and in a smaller batch
    mask = ap.Dropout(0.3).mask((16, 4, 4), 0)
    assert set(mask.unique().tolist()) == {0.0, 1 / 0.7} and 0.5 < (mask > 0).double().mean() < 0.9
    for p in (0.0, 1.0):
        assert not build("autoguidance_skip", W, {"autoguidance_skip_dropout": p})(X, tt(500), Y).equal(whole)


def test_unconditional_rows_are_guided_by_their_perturbed_self():
    guided = build("pag", W, {"pag_cfg_w": W_CFG})
    null = torch.full_like(Y, NULL_LABEL)
    own = UNET(X, tt(500), null)
    expected = own + W * (own - perturbed(ap.IdentityScores(), y=null))
    assert rel_err(guided(X, tt(500), None), expected) < 1e-12
    assert rel_err(guided(X, tt(500), null), expected) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_bf16_autocast(name):
    exact = build(name, W)(X, tt(500), Y)
    unet32, x32 = small_unet().float(), X.float()
    ours32 = build(name, W, model=unet32)(x32, tt(500), Y)
    assert ours32.dtype == torch.float32 and rel_err(ours32.double(), exact) < 1e-4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = build(name, W, model=unet32, clip_x0=True)(x32, tt(500), Y)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()


@pytest.mark.parametrize("name", NAMES)
def test_each_method_samples_on_heun(name):
    """Heun's corrector calls the model twice a step: the wrappers hold no state, so it samples as the
    mixture methods do (tests/test_heun.py, whose mixture has no attention to perturb)."""
    steps = respaced_timesteps(1000, 6, "leading")
    run = lambda model: sample_heun(model, X, steps, schedule=SCHEDULE, labels=Y, noise=torch.randn_like,  # noqa: E731
                                    progress=False)
    guided, unguided = run(build(name, W, clip_x0=True)), run(build(name, 0.0, clip_x0=True))
    assert torch.isfinite(guided).all() and rel_err(guided, unguided) > 1e-3
