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

It is measured on the sampler's chain (x_t is the guided chain's own) and recorded only where
``sampling.record_displacement`` asks (config/testbed.yaml does). eps_cond costs no extra forward where
the method's own forward already holds it: ConditionalRows keeps the rows of the eps-model's calls
during one model evaluation (a forward hook), and the meter reads eps(x_t, t, y) off the leading rows
of a call made on exactly (x_t, t, y) (CFG's conditional half, autoguidance's main model); it calls the
eps-model itself only where no call does (DPS-like methods, or w = 0 of a method that skips the call).
For CFG that saves a third of the sampling compute (2B rows a step instead of 3B). The rows read are
those of a batch of 2B or 3B rows rather than of B, so in bf16 they may differ from a separate call in
the last bits (batch-dependent kernels); in float64 they agree to 1e-12 for every method
(tests/test_displacement.py). A mean shift through a cond_fn (classifier guidance's mean form) does not
pass through the eps and is not measured: the sampling job refuses that combination.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffguide.diffusion.chain import renoises_own_direction


def leading_rows_equal(batch, rows, count: int) -> bool:
    """Whether the first ``count`` rows of a call's argument ``batch`` are exactly ``rows`` (both None
    for an unconditional call)."""
    if batch is None or rows is None:
        return batch is None and rows is None
    return (isinstance(batch, torch.Tensor) and batch.dim() > 0 and len(batch) >= count
            and torch.equal(batch[:count], rows))


class ConditionalRows:
    """What the eps-model computed during one model evaluation of the sampler: a forward hook on it
    keeps every call's (x, t, y) and output, so eps(x_t, t, y) can be read off the leading rows of a
    call the method made on them (module docstring) instead of a second forward. ``clear`` before each
    evaluation, ``close`` to remove the hook."""

    def __init__(self, eps_model: nn.Module):
        self.eps_model, self.kept = eps_model, []
        self.read, self.evaluated = 0, 0  # how eps_cond was found: read off a call, or evaluated
        self.handle = eps_model.register_forward_hook(self.keep)

    def keep(self, module, args, output) -> None:
        if len(args) == 3 and isinstance(output, torch.Tensor):  # eps(x, t, y), called positionally
            self.kept.append((args, output.detach()))

    def clear(self) -> None:
        self.kept = []

    def close(self) -> None:
        self.handle.remove()

    def conditional(self, x, t, y) -> torch.Tensor:
        """eps(x, t, y): the leading rows of a kept call on exactly (x, t, y), else a forward."""
        count = len(x)
        for (call_x, call_t, call_y), output in self.kept:
            if (leading_rows_equal(call_x, x, count) and leading_rows_equal(call_t, t, count)
                    and leading_rows_equal(call_y, y, count)):
                self.read += 1
                return output[:count]
        self.evaluated += 1
        return self.eps_model(x, t, y)


class ReadConditional(nn.Module):
    """The eps-model as the meter's reference sees it: eps(x, t, y) read off the method's own calls
    where one holds it (ConditionalRows.conditional)."""

    def __init__(self, rows: ConditionalRows):
        super().__init__()
        self.rows = rows

    def forward(self, x, t, y):
        return self.rows.conditional(x, t, y)


class DisplacementMeter(nn.Module):
    """An eps-model that returns ``guided``'s eps unchanged and records, per sample, the RMS distance
    to ``reference``'s eps at the same (x_t, t, y) (module docstring). With ``rows`` (the
    ConditionalRows the reference reads through), the rows kept are cleared before each evaluation.
    ``reset`` before each batch; ``per_sample`` is the mean over the calls since."""

    def __init__(self, guided: nn.Module, reference: nn.Module, rows: ConditionalRows | None = None):
        super().__init__()
        self.guided, self.reference, self.rows = guided, reference, rows
        self.reset()

    def reset(self) -> None:
        self.total: torch.Tensor | None = None
        self.calls = 0

    def close(self) -> None:
        """Remove the rows' hook from the eps-model (nothing to do without rows)."""
        if self.rows is not None:
            self.rows.close()

    def begin(self) -> None:
        """A new model evaluation: forget the rows kept during the last one."""
        if self.rows is not None:
            self.rows.clear()

    def forward(self, x, t, y):
        self.begin()
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
        self.begin()
        eps, direction = self.guided.eps_and_direction(x, t, y)
        self.record(eps, x, t, y)
        return eps, direction


def meter_for(guided: nn.Module, reference: nn.Module, rows: ConditionalRows | None = None) -> DisplacementMeter:
    """The meter that leaves ``guided``'s chain unchanged: a DirectionDisplacementMeter where the model
    renoises along its own direction, else a DisplacementMeter."""
    kind = DirectionDisplacementMeter if renoises_own_direction(guided) else DisplacementMeter
    return kind(guided, reference, rows)
