"""How far a guidance method moves the model's prediction: its *guidance displacement*, for comparing
methods at matched strength (issue 29; Xie et al. 2026, "Guidance Matters", calibrate every method to
the same effective strength before comparing them).

A method's nominal scale means different things from method to method (the interval, a schedule,
rescaling, projection and damping all guide less at the same w), so the testbed also matches methods
by what they do to the prediction the sampler steps with. Per sample, at every model evaluation of the
chain,

    d = ||eps_guided(x_t, t, y) - eps_cond(x_t, t, y)||_2 / sqrt(D)      (the RMS over the D pixels)

where eps_guided is the eps the sampler receives from the method (its guided x0 clipped, as the
pipeline samples it) and eps_cond is the conditional model's eps at the same x_t, clipped the same way:
CFG's w = 0 built by the same builder, so the conditional model itself has d = 0 at every step. A
sample's displacement is the mean of d over the chain's model evaluations (10 for 10 DDIM steps, two
per step for Heun). For CFG without clipping d = w ||eps(x, y) - eps(x, null)|| / sqrt(D): linear in w
along one chain.

It is measured on the sampler's chain (x_t is the guided chain's own), costs one extra conditional
evaluation per model call, and is recorded only where ``sampling.record_displacement`` asks
(config/testbed.yaml does). A mean shift through a cond_fn (classifier guidance's mean form) does not
pass through the eps and is not measured: the sampling job refuses that combination.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffguide.diffusion.chain import renoises_own_direction


class DisplacementMeter(nn.Module):
    """An eps-model that returns ``guided``'s eps unchanged and records, per sample, the RMS distance
    to ``reference``'s eps at the same (x_t, t, y) (module docstring). ``reset`` before each batch;
    ``per_sample`` is the mean over the calls since."""

    def __init__(self, guided: nn.Module, reference: nn.Module):
        super().__init__()
        self.guided, self.reference = guided, reference
        self.reset()

    def reset(self) -> None:
        self.total: torch.Tensor | None = None
        self.calls = 0

    def forward(self, x, t, y):
        eps = self.guided(x, t, y)
        self.record(eps, x, t, y)
        return eps

    def record(self, eps, x, t, y) -> None:
        """Add each sample's RMS distance of ``eps`` to the reference's eps at (x_t, t, y)."""
        with torch.no_grad():
            reference = self.reference(x, t, y)
        difference = (eps.detach().double() - reference.double()).flatten(1)
        rms = difference.norm(dim=1) / math.sqrt(difference.shape[1])
        self.total = rms if self.total is None else self.total + rms
        self.calls += 1

    def per_sample(self) -> torch.Tensor:
        """[B] float64: each sample's mean displacement over the model calls since ``reset``."""
        if not self.calls:
            raise RuntimeError("no model call was recorded since reset: sample a chain first")
        return self.total / self.calls


class DirectionDisplacementMeter(DisplacementMeter):
    """The meter of a model that renoises along a direction of its own (CFG++: the samplers call its
    ``eps_and_direction``, diffguide.diffusion.chain): it passes that call through, so the chain is
    the method's own, and records the eps whose x0 the step keeps."""

    def eps_and_direction(self, x, t, y):
        eps, direction = self.guided.eps_and_direction(x, t, y)
        self.record(eps, x, t, y)
        return eps, direction


def meter_for(guided: nn.Module, reference: nn.Module) -> DisplacementMeter:
    """The meter that leaves ``guided``'s chain unchanged: a DirectionDisplacementMeter where the model
    renoises along its own direction, else a DisplacementMeter."""
    kind = DirectionDisplacementMeter if renoises_own_direction(guided) else DisplacementMeter
    return kind(guided, reference)
