"""Pieces shared by the successors of classifier-free guidance (APG, guidance rescale, dynamic
thresholding, CFG-Zero*, ICG, TSG, the perturbed-self guiders): the one batched conditional / null
call, per-sample reductions over all non-batch dims (C, H, W for images, d for the mixtures' vectors),
the step tracking of stateful wrappers (docs/equations.md section 10), the generator of a step's
random draws (ICG's classes, TSG's noise), and diffguide's UNet found inside an eps-model (the methods
that perturb the network itself). Their options are checked by their declarations
(diffguide.registry.Option.validate), not here.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.guidance.wrappers import conditional_and_null
from diffguide.models.networks import EpsUNet


def cond_and_null(model: nn.Module, x, t, y):
    """eps(x, y) and eps(x, null) from one forward pass over 2B rows (guidance.conditional_and_null),
    in x's dtype."""
    eps_cond, eps_null = conditional_and_null(model, x, t, y)
    return eps_cond.to(x.dtype), eps_null.to(x.dtype)


def _dims(x: torch.Tensor) -> list[int]:
    return list(range(1, x.dim()))


def per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a_i, b_i> over every non-batch dim, shaped [B, 1, ...] to broadcast against a."""
    return (a * b).sum(dim=_dims(a), keepdim=True)


def per_sample_norm(a: torch.Tensor) -> torch.Tensor:
    """||a_i||_2 over every non-batch dim, shaped [B, 1, ...]."""
    return per_sample_dot(a, a).sqrt()


def per_sample_std(a: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each sample's entries (unbiased, as torch.std and diffusers'
    rescale_noise_cfg), shaped [B, 1, ...]."""
    return a.std(dim=_dims(a), keepdim=True)


def per_sample_quantile(a: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of each sample's entries (linear interpolation, numpy's default percentile),
    shaped [B, 1, ...]."""
    values = torch.quantile(a.reshape(len(a), -1), q, dim=1)
    return values.reshape(-1, *([1] * (a.dim() - 1)))


class ChainStart:
    """Tells a stateful wrapper when a new sampling chain begins. Samplers call the model at strictly
    decreasing timesteps within a chain, so a timestep >= the previous call's, or a different batch
    size, means a new chain (docs/equations.md section 10)."""

    def __init__(self):
        self.last: tuple[int, int] | None = None  # (timestep, batch size) of the previous call

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> bool:
        current = (int(t.max()), len(x))
        new = self.last is None or current[1] != self.last[1] or current[0] >= self.last[0]
        self.last = current
        return new


class StepTracker:
    """Which step of which chain a stateful wrapper's call belongs to. A sampler announces it
    (diffguide.diffusion.chain: ``start_chain``, ``enter_step``), and every call of one step, a
    corrector's included, gets that step's index. Called outside a sampler, it falls back to
    ``ChainStart``'s guess, one step per call."""

    def __init__(self):
        self.announced, self.chain, self.index = False, -1, 0
        self.guess = ChainStart()

    def start_chain(self, num_steps: int) -> None:
        self.announced, self.chain, self.index = True, self.chain + 1, 0

    def enter_step(self, index: int, timestep: int) -> None:
        self.index = index

    def position(self, x: torch.Tensor, t: torch.Tensor) -> tuple[int, int]:
        """(chain, step index) of this call at (x, t); the index is 0 at a chain's first step."""
        if not self.announced:
            if self.guess(x, t):
                self.chain, self.index = self.chain + 1, 0
            else:
                self.index += 1
        return self.chain, self.index


class FollowsSteps:
    """Mixin of a stateful wrapper: it hears the sampler's announcements (diffguide.diffusion.chain)
    through its ``steps``, a StepTracker."""

    steps: StepTracker

    def start_chain(self, num_steps: int) -> None:
        self.steps.start_chain(num_steps)

    def enter_step(self, index: int, timestep: int) -> None:
        self.steps.enter_step(index, timestep)


def step_generator(t: torch.Tensor) -> torch.Generator:
    """A CPU generator seeded by the step's timestep (every row of ``t`` shares it): a guider's random
    draws at a step (ICG's y_hat, TSG's embedding noise) are the same for every chain and run."""
    return torch.Generator().manual_seed(int(t.reshape(-1)[0].item()) + 1)


def find_eps_unet(model: nn.Module, method: str, perturbs: str = "the self-attention") -> EpsUNet:
    """The one diffguide UNet in ``model`` (the model itself or a module inside it), whose ``perturbs``
    ``method`` changes; a ValueError naming ``method`` where there is none or more than one."""
    if isinstance(model, EpsUNet):
        return model
    found = [m for m in model.modules() if isinstance(m, EpsUNet)] if isinstance(model, nn.Module) else []
    if len(found) == 1:
        return found[0]
    what = "several of them" if found else f"a {type(model).__name__}"
    raise ValueError(f"{method}: it perturbs {perturbs} of diffguide's UNet "
                     f"(diffguide.models.networks.EpsUNet), so it needs that UNet as its eps_model, and it was given "
                     f"{what}; guide a trained EpsUNet (networks.unet) with it, or use a method that does not perturb "
                     "the network (cfg, autoguidance)")
