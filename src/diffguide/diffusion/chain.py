"""The sampler-guidance contract: a sampler tells its model when a chain starts and which step it is
on, so a stateful guidance wrapper (APG's momentum, CFG-Zero*'s zeroed first steps) counts steps,
not calls.

In the spirit of diffusers' guiders (``set_state(step, num_inference_steps, timestep)``), but our
wrappers keep owning the model call (gradient guidance and the mean shift need it). Every sampler
calls, on each part of its model that defines them (an ``nn.Module`` tree is searched, so a wrapper
inside ``ClipDenoised`` hears it too):

- ``start_chain(num_steps)`` once, before the first step;
- ``enter_step(index, timestep)`` before each step's first model call. A step may call the model
  more than once (Heun's corrector calls it at the next timestep): those calls share the index.

A wrapper called outside a sampler (a test calling it directly) hears nothing, and falls back to
guessing from the timesteps (``diffguide.guidance.parts.StepTracker``).
"""

from __future__ import annotations

from torch import nn


def _parts(model) -> list:
    return list(model.modules()) if isinstance(model, nn.Module) else [model]


def start_chain(model, num_steps: int) -> None:
    """Tell every part of ``model`` that a new chain of ``num_steps`` steps begins."""
    for part in _parts(model):
        if hasattr(part, "start_chain"):
            part.start_chain(num_steps)


def enter_step(model, index: int, timestep: int) -> None:
    """Tell every part of ``model`` that step ``index`` (0 first) at ``timestep`` begins."""
    for part in _parts(model):
        if hasattr(part, "enter_step"):
            part.enter_step(index, timestep)
