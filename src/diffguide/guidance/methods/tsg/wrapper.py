"""Time-step guidance (Sadat et al. 2025, arXiv 2407.02687; docs/equations.md section 10).

Every diffusion network is conditioned on its timestep, so a prediction from a perturbed timestep is
a "weaker" one to guide away from, with no condition and no null class needed. As the paper's
reviewers summarise it (the paper itself could not be read offline), the perturbation acts on the
timestep embedding vector, not on t:

    e~    = e(t) + s (t / T)^alpha n,   n ~ N(0, I)           (e(t): the UNet's time-MLP output)
    eps~  = (1 + w) eps(x, t, y) - w eps(x, t~, y)              (the paper's D(t~) + w_TSG (D(t) - D(t~)),
                                                                  w_TSG = 1 + w)

In diffusers' UNet2DModel the class embedding is added to e(t) after the time MLP, so the
perturbation touches the timestep's information only. n is drawn anew at every step for every sample
from a generator seeded by the step's timestep (reproducible; row b of a batch draws the same n at
the same t, as ICG's y_hat). Both predictions come from one forward pass of 2B rows: a forward hook on
the time MLP adds the perturbation to the last B rows and is removed after the call, even on error.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.tsg import TSG_ALPHA, TSG_S
from diffguide.guidance.parts import find_eps_unet, step_generator
from diffguide.guidance.wrappers import Guided, with_guided_x0_clipped


def embedding_noise(t: torch.Tensor, dim: int, timesteps: int, s: float, alpha: float) -> torch.Tensor:
    """s (t / T)^alpha n per row ([B, dim], float64), n from a generator seeded by the step's timestep."""
    n = torch.randn(len(t), dim, generator=step_generator(t), dtype=torch.float64)
    return s * (max(int(t.reshape(-1)[0].item()), 0) / timesteps) ** alpha * n


class TimeStepGuidance(nn.Module):
    """TSG at our w (module docstring). w = 0 returns the model unchanged."""

    def __init__(self, model: nn.Module, w: float, timesteps: int, s: float = 0.5, alpha: float = 0.0):
        super().__init__()
        self.model, self.w, self.timesteps, self.s, self.alpha = model, float(w), int(timesteps), float(s), float(alpha)
        self.time_mlp = find_eps_unet(model, "tsg", perturbs="the timestep embedding").unet.time_embedding

    def forward(self, x, t, y):
        if self.w == 0:
            return self.model(x, t, y)
        rows = len(x)

        def perturb(module, inputs, output):
            noise = embedding_noise(t, output.shape[-1], self.timesteps, self.s, self.alpha)
            delta = torch.cat([torch.zeros_like(noise), noise]).to(device=output.device, dtype=output.dtype)
            return output + delta

        handle = self.time_mlp.register_forward_hook(perturb)
        try:
            both = self.model(torch.cat([x, x]), torch.cat([t, t]), None if y is None else torch.cat([y, y]))
        finally:
            handle.remove()
        eps, eps_perturbed = both[:rows], both[rows:]
        return (1 + self.w) * eps - self.w * eps_perturbed


def build_tsg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """tsg: TSG at w = scale on the conditional model (guidance.tsg_s, tsg_alpha), its guided x0 clipped
    like cfg's when clip_x0."""
    guided = TimeStepGuidance(models["eps_model"], scale, schedule.timesteps, TSG_S.value_in(options),
                              TSG_ALPHA.value_in(options))
    return with_guided_x0_clipped(guided, schedule, clip_x0)
