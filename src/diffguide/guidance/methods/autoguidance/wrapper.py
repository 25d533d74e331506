"""Autoguidance (Karras et al. 2024, arXiv 2406.02507): guide a model with a worse version of itself.

Classifier-free guidance extrapolates from the unconditional model towards the conditional one.
Autoguidance extrapolates from a *weak* conditional model D0 (smaller, trained for less, same
conditioning y) towards the main model D1 (Karras et al. eq. 1 with D0 in place of the
unconditional denoiser, sec. 3):

    D_w(x; sigma, y) = w_K D1(x; sigma, y) + (1 - w_K) D0(x; sigma, y)        (Karras's w_K)

Both models err in similar directions, more so the weak one, so the difference D1 - D0 points away
from those errors. In our w convention (w = 0 is the unguided conditional model, w_K = 1 + w),

    eps~(x, y) = (1 + w) eps_1(x, y) - w eps_0(x, y).

At a fixed (x, t) the denoiser is affine in eps, D = (x - sqrt(1 - abar) eps) / sqrt(abar) (VP), or
D = x - sigma eps (EDM), with the same coefficients for both models, so mixing D with weights
(w_K, 1 - w_K) is mixing eps with the same weights: edm2's ``gnet.lerp(net, guidance)``
(NVlabs/edm2, generate_images.py, ``edm_sampler``) with guidance = w_K = 1 + w is exactly this eps.
For a Gaussian class the guided density p1^(1+w) / p0^w is Gaussian with precision
(1 + w) S1^-1 - w S0^-1 (docs/equations.md section 10; tests/test_cfgpp_autoguidance.py).
"""

from __future__ import annotations

from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


class Autoguidance(nn.Module):
    """eps~ = (1 + w) eps_1(x, y) - w eps_0(x, y): the main conditional model guided by the weak one,
    both given the same y (Karras et al. eq. 1, our w = their w - 1). w = 0 returns the main model and
    never calls the weak one."""

    def __init__(self, model: nn.Module, weak_model: nn.Module | None, w: float):
        super().__init__()
        self.model, self.weak_model, self.w = model, weak_model, float(w)

    def forward(self, x, t, y):
        eps_1 = self.model(x, t, y)
        if self.w == 0:
            return eps_1
        eps_0 = self.weak_model(x, t, y).to(eps_1.dtype)
        return (1 + self.w) * eps_1 - self.w * eps_0


def build_autoguidance(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                       options: dict) -> Guided:
    """autoguidance: the conditional model (models["eps_model"]) guided by the weak conditional model
    (models["weak_model"], network weak_conditional) at w = scale (edm2's ``guidance`` = 1 + w), its
    guided x0 clipped as build_classifier_free's. At scale 0 the weak model is not needed."""
    scale = float(scale)
    if models.get("eps_model") is None:
        raise ValueError("autoguidance: models['eps_model'] is missing; autoguidance guides the conditional eps-model")
    if scale != 0 and models.get("weak_model") is None:
        raise ValueError(f"autoguidance: models['weak_model'] is missing at w = {scale:g}; autoguidance needs the "
                         "weak conditional model (the guide role weak_model, network weak_conditional): train it "
                         "(training.weak_conditional) and pass it as models['weak_model'], or use w = 0")
    guided = Autoguidance(models["eps_model"], models.get("weak_model"), scale)
    return with_guided_x0_clipped(guided, schedule, clip_x0)
