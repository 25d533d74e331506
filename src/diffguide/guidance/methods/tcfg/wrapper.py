"""Tangential classifier-free guidance (Kwon et al. 2025, "TCFG: Tangential Damping Classifier-free
Guidance", arXiv 2503.18137; docs/equations.md section 10).

Per sample, stack the two predictions as the rows of M = [eps_c; eps_u] (2 x d) and keep, of eps_u,
only its component along v_1, M's first right-singular vector (the direction both predictions share
most); CFG then runs with that in place of eps_u:

    eps_u' = (eps_u . v_1) v_1
    eps~   = (1 + w) eps_c - w eps_u'          (diffusers: eps_u' + guidance_scale (eps_c - eps_u'), scale = 1 + w)

v_1 = M^T a / sqrt(lambda_1), with (lambda_1, a) the top eigenpair of the 2 x 2 Gram matrix G = M M^T,
so eps_u' = a_2 (a_1 eps_c + a_2 eps_u): no SVD over the d pixels (diffusers takes
torch.linalg.svd of M in float32; the result is the same, tests/test_diffusers_guiders.py). Where
eps_u is parallel to eps_c, eps_u' = eps_u and TCFG is CFG.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.parts import cond_and_null, per_sample_dot
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


def tangential_unconditional(eps_c: torch.Tensor, eps_u: torch.Tensor) -> torch.Tensor:
    """eps_u' = (eps_u . v_1) v_1 per sample, v_1 the first right-singular vector of [eps_c; eps_u],
    from the top eigenvector a of their 2 x 2 Gram matrix (module docstring), in float64."""
    c, u = eps_c.double(), eps_u.double()
    cc, cu, uu = per_sample_dot(c, c).flatten(), per_sample_dot(c, u).flatten(), per_sample_dot(u, u).flatten()
    gram = torch.stack([torch.stack([cc, cu], -1), torch.stack([cu, uu], -1)], -2)  # [B, 2, 2]
    top = torch.linalg.eigh(gram).eigenvectors[..., -1]  # eigenvalues ascend: the last is lambda_1's
    shape = (-1,) + (1,) * (eps_c.dim() - 1)
    a1, a2 = top[:, 0].reshape(shape), top[:, 1].reshape(shape)
    return (a2 * (a1 * c + a2 * u)).to(eps_u.dtype)


class TangentialClassifierFreeGuidance(nn.Module):
    """TCFG at our w: (1 + w) eps_c - w eps_u' (module docstring). w = 0 or y = None return the
    conditional model unchanged."""

    def __init__(self, model: nn.Module, w: float):
        super().__init__()
        self.model, self.w = model, float(w)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        eps_c, eps_u = cond_and_null(self.model, x, t, y)
        return (1 + self.w) * eps_c - self.w * tangential_unconditional(eps_c, eps_u)


def build_tcfg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """tcfg: TCFG at w = scale on the conditional model, its guided x0 clipped like cfg's when clip_x0."""
    guided = TangentialClassifierFreeGuidance(models["eps_model"], scale)
    return with_guided_x0_clipped(guided, schedule, clip_x0)
