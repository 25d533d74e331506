"""Guidance by a perturbed version of the model itself (issue 29): skip-layer guidance (SLG / STG),
perturbed-attention guidance (PAG, Ahn et al. 2024), smoothed energy guidance (SEG, Hong 2024) and
diffusers' layer-skipping ``AutoGuidance`` all guide the conditional eps-model away from the same
network with some of its self-attention modules perturbed (docs/equations.md section 10):

    eps~ = eps(x, y) + w_cfg (eps(x, y) - eps(x, null)) + w (eps(x, y) - eps_pert(x, y'))

with y' = y (SLG, PAG, SEG) or the null label (diffusers' AutoGuidance). Here live the parts the
four units of ``guidance.methods`` share:

- ``find_eps_unet`` (guidance.parts, shared with TSG): diffguide's UNet inside the eps-model a builder
  is given; a method that perturbs attention has nothing to perturb in any other network, and says so.
- ``attention_modules``: the diffusers ``Attention`` modules of a named part of that UNet
  (``ATTENTION_PARTS``: the mid block's, the down blocks', the up blocks', all of them). Our UNet
  has no transformer blocks: a "layer" of the papers is one attention module here, its residual
  connection included.
- the perturbations, each applied to the rows of a batch from ``first_row`` on, in ONE forward pass
  (the other rows run the module's own processor untouched):
  ``Skip`` (the module returns its input: diffusers' LayerSkipConfig(skip_attention=True) on an
  attention module), ``IdentityScores`` (the attention map softmax(QK^T / sqrt(d)) replaced by the
  identity, so the attention output is V: PAG), ``BlurredQueries(sigma)`` (the queries blurred by a
  2-D Gaussian over the token grid before the attention, sigma None the infinite blur, every query
  its spatial mean: SEG), ``Dropout(p)`` (the module's output times a fixed Bernoulli(1 - p) mask
  / (1 - p), p = 1 the skip: diffusers' LayerSkipConfig(dropout=p)).
- ``PerturbedSelfGuidance``: the eps-model wrapper of the equation above.

The processors are swapped in for the duration of one call (``perturbed_rows``) and restored after
it, so the UNet itself is never edited and the rows outside the perturbed block see the module's
own processor. Everything runs in the model's dtype (bf16 autocast included); the guided
combination is taken in x's dtype.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.parts import find_eps_unet
from diffguide.guidance.wrappers import ClassifierFreeGuidance, Guided, with_guided_x0_clipped
from diffguide.models.networks import NULL_LABEL, EpsUNet

# The parts of the UNet whose self-attention a method may perturb (the string enum of its option).
ATTENTION_PARTS = ("mid_attention", "down_attention", "up_attention", "all_attention")
PERTURBED_LABELS = ("class_label", "null_label")  # what the perturbed rows are conditioned on


def attention_modules(unet: EpsUNet, part: str) -> list[Attention]:
    """The diffusers Attention modules of ``part`` (one of ATTENTION_PARTS) of ``unet``, in forward order
    (down blocks, mid block, up blocks)."""
    if part not in ATTENTION_PARTS:
        raise ValueError(f"unknown attention part {part!r}; choose one of {ATTENTION_PARTS}")
    inner = unet.unet

    def of(blocks) -> list[Attention]:
        return [attn for block in blocks for attn in (getattr(block, "attentions", None) or []) if attn is not None]

    down, mid, up = of(inner.down_blocks), of([inner.mid_block]), of(inner.up_blocks)
    return {"down_attention": down, "mid_attention": mid, "up_attention": up, "all_attention": down + mid + up}[part]


# ------------------------------------------------------------------------------------------ attention


def self_attention(attn: Attention, hidden: torch.Tensor, temb: torch.Tensor | None = None, *,
                   queries=None, identity_scores: bool = False) -> torch.Tensor:
    """What a diffusers Attention module computes on ``hidden`` as its own self-attention, with two
    ways in: ``queries`` (a function of the query tokens [B, HW, C] and the grid (H, W), applied
    after the query projection) and ``identity_scores`` (the attention map replaced by the identity,
    so each token's attention output is its own value). Module parts it has are applied in order:
    spatial norm, group norm, q / k / v projections, per-head q / k norms, softmax(QK^T scale) V,
    output projection (and its dropout layer), residual, division by rescale_output_factor."""
    residual = hidden
    if attn.spatial_norm is not None:
        hidden = attn.spatial_norm(hidden, temb)
    grid = None
    if hidden.dim() == 4:
        batch, channels, height, width = hidden.shape
        grid = (height, width)
        hidden = hidden.reshape(batch, channels, height * width).transpose(1, 2)
    batch = hidden.shape[0]
    if attn.group_norm is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    query, key, value = attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)
    if queries is not None:
        if grid is None:
            raise ValueError("the queries can be blurred only on a 2-D token grid (a [B, C, H, W] input)")
        query = queries(query, grid)
    heads = attn.heads

    def split(tokens):  # [B, N, heads * d] -> [B, heads, N, d]
        return tokens.reshape(batch, tokens.shape[1], heads, tokens.shape[2] // heads).transpose(1, 2)

    query, key, value = split(query), split(key), split(value)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    mixed = value if identity_scores else F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    mixed = mixed.transpose(1, 2).reshape(batch, -1, heads * value.shape[-1]).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](mixed))
    if grid is not None:
        out = out.transpose(1, 2).reshape(batch, -1, *grid)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def seg_kernel_size(sigma: float) -> int:
    """SEG's odd Gaussian window: ceil(6 sigma), plus one where that is even (SusungHong/SEG-SDXL's
    rule, which diffusers keeps); 1 (no blur) for sigma <= 1/6."""
    span = math.ceil(6 * sigma)
    return span + 1 - span % 2


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``sigma`` at the integer offsets -(size-1)/2 .. (size-1)/2, float64."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def blur_queries(query: torch.Tensor, grid: tuple[int, int], sigma: float | None) -> torch.Tensor:
    """The query tokens [B, H*W, C] blurred over their H x W grid, channel by channel: by a 2-D Gaussian
    of ``sigma`` (window seg_kernel_size(sigma), cut on each side to the largest odd size the reflected
    border allows: the side itself if odd, one more if even, as SEG-SDXL does), borders reflected; by
    the infinite blur where sigma is None: every query the mean of its channel over the grid. A window
    of one (sigma <= 1/6, sigma = 0 included) leaves the queries as they are."""
    if sigma is None:
        return query.mean(dim=1, keepdim=True).expand_as(query)
    size = seg_kernel_size(sigma) if sigma > 0 else 1
    height, width = grid
    sizes = [min(size, side - (side % 2 - 1)) for side in grid]
    if sizes == [1, 1]:
        return query
    batch, tokens, channels = query.shape
    image = query.transpose(1, 2).reshape(batch, channels, height, width)
    kernel = torch.outer(gaussian_window(sizes[0], sigma), gaussian_window(sizes[1], sigma)).to(query)
    pad_h, pad_w = sizes[0] // 2, sizes[1] // 2
    image = F.pad(image, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    image = F.conv2d(image, kernel.expand(channels, 1, *sizes), groups=channels)
    return image.reshape(batch, channels, tokens).transpose(1, 2)


# -------------------------------------------------------------------------------------- perturbations


@dataclass(frozen=True)
class Skip:
    """The module returns its input: the attention and its residual branch are skipped (SLG, STG)."""

    def __call__(self, attn, hidden, temb, own, index):
        return hidden


@dataclass(frozen=True)
class IdentityScores:
    """The self-attention map replaced by the identity: each token's attention output is its own
    value projection (PAG's perturbation)."""

    def __call__(self, attn, hidden, temb, own, index):
        return self_attention(attn, hidden, temb, identity_scores=True)


@dataclass(frozen=True)
class BlurredQueries:
    """The queries blurred by a 2-D Gaussian of ``sigma`` over the token grid, None the infinite blur
    (SEG's perturbation: blurring the queries blurs the attention weights, Hong 2024's query blurring)."""

    sigma: float | None

    def __call__(self, attn, hidden, temb, own, index):
        return self_attention(attn, hidden, temb, queries=lambda q, grid: blur_queries(q, grid, self.sigma))


@dataclass(frozen=True)
class Dropout:
    """The module's output, entry by entry, kept with probability 1 - p and scaled by 1 / (1 - p), the
    mask fixed: drawn once per module (seed ``seed`` + its index among the perturbed modules) over one
    sample's output shape, the same for every row and every call; p = 1 is ``Skip`` and p = 0 the
    module as it is (diffusers' LayerSkipConfig(dropout=p))."""

    p: float
    seed: int = 0

    def mask(self, shape, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + index)
        return (torch.rand(shape, generator=generator, dtype=torch.float64) >= self.p).double() / (1 - self.p)

    def __call__(self, attn, hidden, temb, own, index):
        if self.p >= 1:
            return hidden
        out = own(hidden, temb)
        if self.p <= 0:
            return out
        return out * self.mask(out.shape[1:], index).to(device=out.device, dtype=out.dtype)


class RowPerturbation:
    """An attention processor: rows [0, first_row) run the module's own processor, the rest the
    perturbation (one call of the module for both)."""

    def __init__(self, own, perturbation, first_row: int, index: int):
        self.own, self.perturbation, self.first_row, self.index = own, perturbation, first_row, index

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("attention perturbation is defined for unmasked self-attention only")
        n = self.first_row

        def own(hidden, emb):
            return self.own(attn, hidden, temb=emb, **kwargs)

        perturbed = self.perturbation(attn, hidden_states[n:], None if temb is None else temb[n:], own, self.index)
        if n == 0:
            return perturbed
        clean = own(hidden_states[:n], None if temb is None else temb[:n])
        return torch.cat([clean, perturbed.to(clean.dtype)])


@contextmanager
def perturbed_rows(modules: list[Attention], perturbation, first_row: int):
    """Within the block, each of ``modules`` applies ``perturbation`` to the rows of its batch from
    ``first_row`` on; its own processor is restored after, whatever happens."""
    saved = [module.processor for module in modules]
    try:
        for index, (module, own) in enumerate(zip(modules, saved)):
            module.processor = RowPerturbation(own, perturbation, first_row, index)
        yield
    finally:
        for module, own in zip(modules, saved):
            module.processor = own


# ---------------------------------------------------------------------------------------------- guidance


class PerturbedSelfGuidance(nn.Module):
    """eps~ = eps(x, y) + cfg_w (eps(x, y) - eps(x, null)) + w (eps(x, y) - eps_pert(x, y')):

    the conditional model guided away from itself with ``modules`` perturbed by ``perturbation``
    (given y' = y for ``perturbed_label="class_label"``, the null label for ``"null_label"``), plus an
    optional classifier-free part. All rows come from ONE forward pass: [x | y], then [x | null] where
    cfg_w != 0, then the perturbed [x | y'] where w != 0. At w = 0 it is ClassifierFreeGuidance at
    cfg_w (the conditional model at cfg_w = 0) and nothing is perturbed. y = None asks for the
    unconditional model, guided by its perturbed self (the papers' unconditional setting); a row of y
    that is NULL_LABEL is asked for its unconditional prediction in every part, so its classifier-free
    part vanishes and its perturbation part does not."""

    def __init__(self, model: nn.Module, w: float, perturbation, modules: list[Attention], *, cfg_w: float = 0.0,
                 perturbed_label: str = "class_label"):
        super().__init__()
        if perturbed_label not in PERTURBED_LABELS:
            raise ValueError(f"unknown perturbed label {perturbed_label!r}; choose one of {PERTURBED_LABELS}")
        self.model, self.w, self.cfg_w = model, float(w), float(cfg_w)
        self.classifier_free = ClassifierFreeGuidance(model, cfg_w)
        self.perturbation, self.perturbed, self.perturbed_label = perturbation, list(modules), perturbed_label

    def forward(self, x, t, y):
        if self.w == 0:  # no perturbed prediction: classifier-free guidance at cfg_w, as guidance.wrappers computes it
            return self.classifier_free(x, t, y)
        labels = torch.full((len(x),), NULL_LABEL, device=x.device, dtype=torch.long) if y is None else y
        null = torch.full_like(labels, NULL_LABEL)
        rows = [labels] + ([null] if self.cfg_w != 0 and y is not None else [])
        rows.append(labels if self.perturbed_label == "class_label" else null)
        count = len(rows)
        with perturbed_rows(self.perturbed, self.perturbation, first_row=(count - 1) * len(x)):
            out = self.model(torch.cat([x] * count), torch.cat([t] * count), torch.cat(rows))
        parts = [part.to(x.dtype) for part in out.chunk(count)]
        eps_c, eps_p = parts[0], parts[-1]
        guided = eps_c + self.w * (eps_c - eps_p)
        if count == 3:
            guided = guided + self.cfg_w * (eps_c - parts[1])
        return guided


def perturbed_self_guided(method: str, models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                          perturbation, part: str, part_key: str, cfg_w: float = 0.0,
                          perturbed_label: str = "class_label") -> Guided:
    """The builders' common body: PerturbedSelfGuidance at w = scale of models["eps_model"], the
    attention modules of ``part`` (the option guidance.<part_key>) of the UNet inside it perturbed, its
    guided x0 clipped as classifier-free guidance's when ``clip_x0``. At scale 0 nothing is perturbed
    and no UNet is needed; otherwise a model without diffguide's UNet, or a part of the UNet without
    attention, is refused with a ValueError naming ``method`` or the option."""
    model, scale = models["eps_model"], float(scale)
    modules = []
    if scale != 0:
        unet = find_eps_unet(model, method)
        modules = attention_modules(unet, part)
        if not modules:
            raise ValueError(f"guidance.{part_key}: {part} selects no attention module of this UNet (its attention "
                             "levels are networks.unet.attention_levels, and the mid block has one unless it was "
                             f"built without); choose another of {', '.join(ATTENTION_PARTS)}")
    guided = PerturbedSelfGuidance(model, scale, perturbation, modules, cfg_w=cfg_w, perturbed_label=perturbed_label)
    return with_guided_x0_clipped(guided, schedule, clip_x0)
