"""The samplers' time travel and chain levels (diffguide.diffusion.chain), which training-free
guidance needs (FreeDoM, UGD and TFG repeat each step, renoising in between; TFG normalises its
weights over the chain's noise levels):

- a model asking for N recurrences is stepped exactly as TFG's guide_step loop does: step, renoise
  x_{t'} back to t with a fresh draw, step again, N times, the last x_{t'} kept (written out below);
- one recurrence is the plain sampler, bit for bit; a part nested in a wrapper is heard;
- the chain's levels reach the parts that ask, before the first step;
- Heun's deterministic ODE sampler refuses a model that asks for time travel.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffguide.diffusion.chain import recurrences
from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import ddim_step, ddpm_step, sample_ddim, sample_ddpm, sample_heun
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureEpsModel, random_mixture
from diffguide.guidance.wrappers import ClipDenoised

SCHEDULE = NoiseSchedule.make("cosine", 1000)
TIMESTEPS = respaced_timesteps(1000, 5, "leading")


class TimeTravelling(nn.Module):
    """The exact eps-model, asking for ``recurrences`` tries per step and recording the chain's levels."""

    def __init__(self, model: nn.Module, times: int):
        super().__init__()
        self.model, self.recurrences, self.levels = model, times, None

    def chain_levels(self, abar, abar_next):
        self.levels = (abar.clone(), abar_next.clone())

    def forward(self, x, t, y):
        return self.model(x, t, y)


class Draws:
    """A noise source that hands out a fixed sequence of standard normal draws, and counts them."""

    def __init__(self, shape, count: int = 64):
        gen = torch.Generator().manual_seed(60)
        self.draws = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(count)]
        self.used = 0

    def __call__(self, x):
        self.used += 1
        return self.draws[self.used - 1]


def exact_eps():
    mixture = random_mixture(3, 2, torch.Generator().manual_seed(61))
    return MixtureEpsModel(mixture, SCHEDULE)


def reference_ddim_with_time_travel(eps_model, x, times, eta, draws):
    """TFG's sampling loop (methods/tfg.py guide_step inside its sample loop): for each step, N times:
    x_{t-1} from x_t (noise at eta > 0 except the last step), then, unless it was the last try,
    x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) z."""
    steps = SCHEDULE.steps(TIMESTEPS, like=x)
    for step in steps:
        for attempt in range(times):
            eps = eps_model(x, torch.full((len(x),), step.t), None)
            z = draws(x) if eta > 0 and not step.is_last else None
            x_next = ddim_step(x, eps, step=step, eta=eta, noise=z)
            if attempt < times - 1:
                alpha = step.abar / step.abar_prev
                x = alpha.sqrt() * x_next + (1 - alpha).sqrt() * draws(x)
        x = x_next
    return x


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_time_travel_is_tfgs_loop(eta):
    eps_model = exact_eps()
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(62), dtype=torch.float64)
    ours_draws, reference_draws = Draws(x_T.shape), Draws(x_T.shape)
    ours = sample_ddim(TimeTravelling(eps_model, 3), x_T, TIMESTEPS, schedule=SCHEDULE, noise=ours_draws, eta=eta,
                       progress=False)
    reference = reference_ddim_with_time_travel(eps_model, x_T, 3, eta, reference_draws)
    assert torch.allclose(ours, reference, rtol=0, atol=1e-13)
    # two renoising draws per step; at eta > 0 three step draws per step but the last
    assert ours_draws.used == reference_draws.used == 2 * len(TIMESTEPS) + (3 * (len(TIMESTEPS) - 1) if eta > 0 else 0)


@pytest.mark.parametrize("sampler", [sample_ddim, sample_ddpm])
def test_one_try_per_step_is_the_plain_sampler(sampler):
    eps_model = exact_eps()
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(63), dtype=torch.float64)
    plain = sampler(eps_model, x_T, TIMESTEPS, schedule=SCHEDULE, noise=Draws(x_T.shape), progress=False)
    once = sampler(TimeTravelling(eps_model, 1), x_T, TIMESTEPS, schedule=SCHEDULE, noise=Draws(x_T.shape),
                   progress=False)
    assert torch.equal(plain, once)
    twice = sampler(TimeTravelling(eps_model, 2), x_T, TIMESTEPS, schedule=SCHEDULE, noise=Draws(x_T.shape),
                    progress=False)
    assert not torch.allclose(plain, twice)


def test_the_ancestral_sampler_travels_with_its_own_step():
    """Under DDPM each try is the ancestral step (its posterior mean, beta~ noise), then the renoise."""
    eps_model = exact_eps()
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(64), dtype=torch.float64)
    draws, ours_draws = Draws(x_T.shape), Draws(x_T.shape)
    x = x_T
    for step in SCHEDULE.steps(TIMESTEPS, like=x_T):
        for attempt in range(2):
            eps = eps_model(x, torch.full((3,), step.t), None)
            x_next = ddpm_step(x, eps, step=step, sigma2=step.beta_tilde, noise=None if step.is_last else draws(x))
            if attempt == 0:
                x = step.renoise(x_next, draws(x))
        x = x_next
    ours = sample_ddpm(TimeTravelling(eps_model, 2), x_T, TIMESTEPS, schedule=SCHEDULE, noise=ours_draws, progress=False)
    assert torch.allclose(ours, x, rtol=0, atol=1e-13)


def test_a_nested_part_is_heard_and_gets_the_chain_levels_first():
    inner = TimeTravelling(exact_eps(), 2)
    wrapped = ClipDenoised(inner, SCHEDULE)
    assert recurrences(wrapped) == 2 and recurrences(exact_eps()) == 1
    x_T = torch.zeros(2, 2, dtype=torch.float64)
    sample_ddim(wrapped, x_T, TIMESTEPS, schedule=SCHEDULE, noise=Draws(x_T.shape), progress=False)
    steps = SCHEDULE.steps(TIMESTEPS, like=x_T)
    assert torch.equal(inner.levels[0], torch.stack([s.abar for s in steps]))
    assert torch.equal(inner.levels[1], torch.stack([s.abar_prev for s in steps]))
    assert float(inner.levels[1][-1]) == 1.0


def test_heun_refuses_time_travel():
    with pytest.raises(ValueError, match="time travel"):
        sample_heun(TimeTravelling(exact_eps(), 2), torch.zeros(2, 2, dtype=torch.float64), TIMESTEPS,
                    schedule=SCHEDULE, noise=torch.randn_like, progress=False)
