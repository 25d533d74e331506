"""CFG++ (Chung et al. 2024, arXiv 2406.08070): manifold-constrained classifier-free guidance.

Classifier-free guidance with DDIM takes x0 *and* the renoising direction from the guided eps
(DDIM eq. 12 with eps~ = eps_u + g (eps_c - eps_u), g = 1 + w). CFG++ keeps the guided eps for x0
only, interpolating rather than extrapolating (lambda in [0, 1]), and renoises with the
unconditional eps (the paper's CFG++ reverse-diffusion algorithm; CFGpp-diffusion/CFGpp,
latent_diffusion.py, ``BaseDDIMCFGpp.sample``):

    eps_lambda = eps_u + lambda (eps_c - eps_u)
    x0_hat     = (x_t - sqrt(1 - abar_t) eps_lambda) / sqrt(abar_t)                 (Tweedie)
    x_{t'}     = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma_t^2) eps_u + sigma_t z   (DDIM eq. 12)

lambda = 0 is the unconditional DDIM chain, lambda = 1 DDIM with the conditional eps for x0 and the
unconditional one for the direction. The official code is deterministic DDIM (eta = 0); any eta and
the ancestral sampler follow by the same substitution in DDIM eq. 12, the ancestral mean read as DDIM
at eta = 1 (samplers.ddpm_step with ``direction_eps``). That extension is ours.

Equivalence with CFG (derived in docs/equations.md section 10): one CFG++ step at lambda equals one
DDIM step with CFG at the guidance_scale g_t = lambda sigma_t / (sigma_t - sigma''_t), i.e. our
w_t = g_t - 1, with EDM's sigma_t = sqrt((1 - abar_t) / abar_t) and
sigma''_t = sqrt(1 - abar_{t'} - sigma_eta^2) / sqrt(abar_{t'}) (sigma_{t'} at eta = 0).

The sampler hook: the module returns both as a value, ``eps_and_direction(x, t, y) -> (guided eps,
unconditional eps)``, which samplers.sample_ddim / sample_ddpm call (diffguide.diffusion.chain) and
hand to the step, the second as its direction term. Called plainly it returns the guided eps.

Scale: the registry's scale is lambda itself (in [0, 1]); it has no diffusers guidance_scale.
Unlike the w of the other rows, scale 0 is the *unconditional* model, not the conditional one.
"""

from __future__ import annotations

from torch import nn

from diffguide.diffusion.samplers import clip_denoised
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.parts import cond_and_null
from diffguide.guidance.wrappers import Guided


class CFGPlusPlus(nn.Module):
    """The CFG++ eps pair at lambda: returns eps_lambda = eps_u + lambda (eps_c - eps_u) (what x0_hat is
    computed from), and with ``eps_and_direction`` eps_u too (what the step renoises with).

    With ``schedule`` given (x0 clipping on), each eps passes through the x0 clip on its own
    (samplers.clip_denoised), so lambda = 0 is exactly the clipped unconditional chain. Both come from
    one forward over a batch of 2B, as guidance.ClassifierFreeGuidance. y None: nothing to guide
    towards, eps_c = eps_u = eps(x, None)."""

    def __init__(self, model: nn.Module, lam: float, schedule: NoiseSchedule | None = None):
        super().__init__()
        self.model, self.lam, self.schedule = model, float(lam), schedule

    def eps_and_direction(self, x, t, y):
        """(eps_lambda, eps_u): the eps whose x0 the step keeps and the one it renoises with."""
        eps_c, eps_u = self._pair(x, t, y)
        guided = eps_u + self.lam * (eps_c - eps_u)
        if self.schedule is not None:  # each eps clipped on its own (the guided x0, the unconditional direction)
            guided, eps_u = self._clip(x, t, guided), self._clip(x, t, eps_u)
        return guided, eps_u

    def forward(self, x, t, y):
        return self.eps_and_direction(x, t, y)[0]

    def _pair(self, x, t, y):
        if y is None:
            eps = self.model(x, t, None).to(x.dtype)
            return eps, eps
        return cond_and_null(self.model, x, t, y)

    def _clip(self, x, t, eps):
        return clip_denoised(self.schedule, x, t, eps)[1]


def check_lambda(scale: float) -> float:
    """lambda must lie in [0, 1]: CFG++ interpolates between the unconditional and conditional x0."""
    if not 0.0 <= float(scale) <= 1.0:
        raise ValueError(f"cfgpp: guidance scale lambda must be in [0, 1], got {scale}; list only values in [0, 1] "
                         "in guidance.cfgpp_scales (CFG++ interpolates between the unconditional and conditional "
                         "x0; it never extrapolates)")
    return float(scale)


def build_cfgpp(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """cfgpp: CFG++ at lambda = scale on the conditional model (which gives eps_u with NULL_LABEL), each
    of its two eps x0-clipped when ``clip_x0``. Runs under samplers.sample_ddim (any eta) and
    sample_ddpm, which take its direction eps as a value (diffguide.diffusion.chain). No cond_fn. Scale 0 is the unconditional
    chain."""
    lam = check_lambda(scale)
    if models.get("eps_model") is None:
        raise ValueError("cfgpp: models['eps_model'] is missing; CFG++ needs the conditional eps-model (trained with "
                         "label dropout, so it also gives the unconditional eps)")
    return Guided(CFGPlusPlus(models["eps_model"], lam, schedule if clip_x0 else None))
