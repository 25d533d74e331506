"""Independent condition guidance (Sadat et al. 2025, arXiv 2407.02687; docs/equations.md section 10).

CFG's unconditional score is grad log p_t(x); ICG reads it off the conditional model at a condition
y_hat drawn independently of the sample: if y_hat is independent of x_t, p_t(x_t | y_hat) = p_t(x_t),
so eps(x_t, y_hat) estimates the unconditional eps without a null class (exactly so in expectation
over y_hat for a model that is exact given every class). Per step and sample,

    y_hat ~ Uniform{0, ..., K - 1}                   (independently of y; it may equal y)
    eps~  = (1 + w) eps(x, y) - w eps(x, y_hat)      (CFG with eps(x, null) -> eps(x, y_hat))

The draws come from a generator seeded by the step's timestep, so a chain is reproducible; row b of a
batch at timestep t always draws the same y_hat, so with sampling.batch_size below
sampling.num_samples a sample's y_hat (and image) depends on its place in its batch (the pipeline
samples each set in one batch of 250 in config/testbed.yaml). ICG's exactness on the mixtures:
tests/test_icg.py.
"""

from __future__ import annotations

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.parts import step_generator
from diffguide.guidance.wrappers import Guided, conditional_and_other, with_guided_x0_clipped


def independent_labels(t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """y_hat: one uniformly random class per row, from a generator seeded by the step's timestep."""
    return torch.randint(num_classes, (len(t),), generator=step_generator(t)).to(t.device)


class IndependentConditionGuidance(nn.Module):
    """ICG at our w (module docstring) over a model with ``num_classes`` classes. w = 0 or y = None
    return the conditional model unchanged. Both predictions come from one forward pass of 2B rows."""

    def __init__(self, model: nn.Module, w: float, num_classes: int):
        super().__init__()
        self.model, self.w, self.num_classes = model, float(w), int(num_classes)

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        y_hat = independent_labels(t, self.num_classes)
        eps_c, eps_i = conditional_and_other(self.model, x, t, y, y_hat)
        return (1 + self.w) * eps_c - self.w * eps_i


def build_icg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """icg: ICG at w = scale on the conditional model, its guided x0 clipped like cfg's when clip_x0."""
    model = models["eps_model"]
    num_classes = getattr(model, "num_classes", None)
    if not num_classes:
        raise ValueError("icg guides a class-conditional eps-model (its num_classes); this eps_model has none")
    return with_guided_x0_clipped(IndependentConditionGuidance(model, scale, num_classes), schedule, clip_x0)
