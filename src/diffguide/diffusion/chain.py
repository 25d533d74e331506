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
- ``chain_levels(abar, abar_next)`` once, before the first step, where a part defines it: the noise
  levels abar_t and abar_{t'} of every step of the chain ([S] each), for guidance whose weights are
  normalised over the chain (TFG's schedules, diffguide.guidance.training_free).

A model whose parts ask for it (``recurrences`` > 1: FreeDoM's, UGD's and TFG's "time travel") has
each step taken that many times: after each try but the last, the step's x_{t'} is renoised back to
t by the forward step (``schedules.Step.renoise``) and the step is taken again from there.

And a model that renoises along a direction of its own (CFG++: x0 from the guided eps, the step's
direction term from the unconditional one) returns that direction as a value: it defines
``eps_and_direction(x, t, y) -> (eps, direction)``, which the samplers call through
``eps_and_direction`` below; every other model's call is (eps, None).

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


def announce_levels(model, abar, abar_next) -> None:
    """Tell every part of ``model`` that asks the noise levels of the chain's steps."""
    for part in _parts(model):
        if hasattr(part, "chain_levels"):
            part.chain_levels(abar, abar_next)


def recurrences(model) -> int:
    """How many times each step is taken (time travel): the largest ``recurrences`` of the model's
    parts, 1 where none asks."""
    return max([int(getattr(part, "recurrences", 1)) for part in _parts(model)] + [1])


def enter_step(model, index: int, timestep: int) -> None:
    """Tell every part of ``model`` that step ``index`` (0 first) at ``timestep`` begins."""
    for part in _parts(model):
        if hasattr(part, "enter_step"):
            part.enter_step(index, timestep)


def renoises_own_direction(model) -> bool:
    """Whether ``model`` returns a direction eps of its own (see ``eps_and_direction``)."""
    return hasattr(model, "eps_and_direction")


def eps_and_direction(model, x, t, y):
    """(eps, direction eps or None) of one model call, both in x's dtype: the direction is the eps
    of DDIM eq. 12's second term where the model gives its own (CFG++), None where the step takes
    eps for both terms."""
    if renoises_own_direction(model):
        eps, direction = model.eps_and_direction(x, t, y)
        return eps.to(x.dtype), direction.to(x.dtype)
    return model(x, t, y).to(x.dtype), None
