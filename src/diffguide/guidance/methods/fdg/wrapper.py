"""Frequency-decoupled guidance (FDG; Sadat et al. 2025, arXiv 2506.19713; docs/equations.md section 10).

The two predictions are split by a two-level Laplacian pyramid (Burt & Adelson 1983) into a high band
h(.) = e - up(down(e)) and a low band l(.) = down(e); classifier-free guidance runs on each band with
its own w, and the pyramid collapses back:

    h~ = h(eps_c) + w_high (h(eps_c) - h(eps_u)),     l~ = l(eps_c) + w_low (l(eps_c) - l(eps_u))
    eps~ = up(l~) + h~

with w_high = w and w_low = fdg_low_ratio * w. Every operation is linear and up(l) + h = e exactly,
so equal ratios (fdg_low_ratio = 1) are CFG. down and up are kornia's pyrdown and pyrup, which
diffusers' guider calls: a 5 x 5 binomial blur ([1, 4, 6, 4, 1] / 16 in each direction, reflected at
the border) then bilinear halving; bilinear doubling then the same blur. Written here with torch so
the method needs no kornia; tests/test_diffusers_guiders.py checks it against kornia and diffusers.

Against diffusers' ``FrequencyDecoupledGuidance`` (guidance_scales [1 + w_high, 1 + w_low], high
first; its parallel_weights left at 1): kornia's Laplacian pyramid pads an image whose side is not a
power of two (28 x 28 here) to the next one by reflection, and diffusers returns the padded size; we
pad the same way and crop the result back to the image, so the prediction keeps its shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.fdg import FDG_LOW_RATIO
from diffguide.guidance.parts import cond_and_null
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped

BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # kornia's pyramid kernel is its outer product


def blur(image: torch.Tensor) -> torch.Tensor:
    """The 5 x 5 binomial blur of each channel, borders reflected (kornia's filter2d with the pyramid kernel)."""
    kernel = torch.outer(BINOMIAL, BINOMIAL).to(image)
    channels = image.shape[1]
    padded = F.pad(image, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, kernel.expand(channels, 1, 5, 5), groups=channels)


def down(image: torch.Tensor) -> torch.Tensor:
    """Blur, then bilinear halving (kornia's pyrdown)."""
    height, width = image.shape[-2:]
    return F.interpolate(blur(image), size=(height // 2, width // 2), mode="bilinear", align_corners=False)


def up(image: torch.Tensor) -> torch.Tensor:
    """Bilinear doubling, then blur (kornia's pyrup)."""
    height, width = image.shape[-2:]
    return blur(F.interpolate(image, size=(2 * height, 2 * width), mode="bilinear", align_corners=False))


def padded_to_power_of_two(image: torch.Tensor) -> torch.Tensor:
    """Reflect-pad the bottom and right to the next power of two where kornia's two-level pyramid would:
    when neither side is one, or a side is odd."""
    height, width = image.shape[-2:]
    power = lambda n: n > 0 and n & (n - 1) == 0  # noqa: E731
    if (power(height) or power(width)) and height % 2 == 0 and width % 2 == 0:
        return image
    return F.pad(image, (0, (1 << (width - 1).bit_length()) - width, 0, (1 << (height - 1).bit_length()) - height),
                 mode="reflect")


def frequency_decoupled(eps_c: torch.Tensor, eps_u: torch.Tensor, w_high: float, w_low: float) -> torch.Tensor:
    """CFG per band of the two-level Laplacian pyramid, collapsed and cropped to the input's size."""
    if eps_c.dim() != 4:
        raise ValueError(f"fdg: frequency-decoupled guidance splits image predictions [B, C, H, W] into frequency "
                         f"bands; these have shape {list(eps_c.shape)} (use it on image data sets)")
    c, u = padded_to_power_of_two(eps_c), padded_to_power_of_two(eps_u)
    low_c, low_u = down(c), down(u)
    high_c, high_u = c - up(low_c), u - up(low_u)
    guided = up(low_c + w_low * (low_c - low_u)) + high_c + w_high * (high_c - high_u)
    return guided[..., : eps_c.shape[-2], : eps_c.shape[-1]]


class FrequencyDecoupledGuidance(nn.Module):
    """FDG at our w (the high band's) with the low band at ``low_ratio`` w (module docstring). w = 0 or
    y = None return the conditional model unchanged."""

    def __init__(self, model: nn.Module, w: float, low_ratio: float = 4 / 9):
        super().__init__()
        self.model, self.w, self.low_ratio = model, float(w), float(low_ratio)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        return frequency_decoupled(eps_c, eps_u, self.w, self.low_ratio * self.w)


def build_fdg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """fdg: FDG at w = scale on the conditional model (guidance.fdg_low_ratio), its guided x0 clipped
    like cfg's when clip_x0."""
    guided = FrequencyDecoupledGuidance(models["eps_model"], scale, FDG_LOW_RATIO.value_in(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
