"""Noise schedules of the forward process q(x_t | x_0) and its posterior, in float64.

Notation follows DDPM (Ho et al. 2020): beta_t, alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s,
with t = 0 .. T-1 indexing the T noising steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, Sequence

import torch

from diffguide.diffusion import noise_levels


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule. The endpoints are those of T = 1000 and are rescaled by 1000 / T
    so that a shorter process keeps the same total noise (as improved-diffusion does)."""
    scale = 1000.0 / timesteps
    return torch.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021) eq. 17: abar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2),
    betas clipped at 0.999 to avoid the singularity at t = T. The formula lives once, torch-free, in
    noise_levels (the config checks read it at parse time); float64 both ways, so the same values."""
    return torch.from_numpy(noise_levels.cosine_betas(timesteps, offset, max_beta))


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def _gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """table[t] reshaped to broadcast against ``like`` (B, ...), in ``like``'s dtype and device."""
    values = table.to(like.device)[t.to(like.device).long()]
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class NoiseSchedule:
    """Tables of one forward process. ``alphas_cumprod[t]`` is abar_t."""

    betas: torch.Tensor

    @classmethod
    def make(cls, kind: str, timesteps: int) -> "NoiseSchedule":
        if kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {kind!r}; choose one of {sorted(SCHEDULES)}")
        return cls(SCHEDULES[kind](timesteps))

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def _abar_from_minus_one(self) -> torch.Tensor:
        """[1, abar_0, ..., abar_{T-1}]: index t + 1 holds abar_t, index 0 the clean data."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_t broadcast against ``like``; t = -1 means 'before any noise' (abar = 1)."""
        return _gather(self._abar_from_minus_one, t + 1, like)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (DDPM eq. 4)."""
        abar = self.abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert q_sample for x_0 given the noise: x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        abar = self.abar(t, x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = self.abar(t, x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    def posterior(self, x_t, x0, t, t_prev):
        """q(x_{t_prev} | x_t, x_0) = N(mean, var) for any t_prev < t (DDPM eqs. 6-7, with the
        respaced beta_t = 1 - abar_t / abar_{t_prev} so it also holds between skipped steps)."""
        c = step_coefficients(self.abar(t, x_t), self.abar(t_prev, x_t))
        return c["mean_x0"] * x0 + c["mean_xt"] * x_t, c["beta_tilde"]

    def steps(self, timesteps: Sequence[int], like: torch.Tensor) -> tuple["Step", ...]:
        """The coefficients of every step t -> t' of a sampling run over the descending ``timesteps``
        (t' the next timestep, -1 after the last), computed once, in ``like``'s dtype and device."""
        timesteps = [int(t) for t in timesteps]
        descending = all(a > b for a, b in zip(timesteps, timesteps[1:]))
        if not timesteps or not descending or not 0 <= timesteps[-1] <= timesteps[0] < self.timesteps:
            raise ValueError(f"sampling timesteps must descend within [0, {self.timesteps}), got {timesteps}")
        t_prev = timesteps[1:] + [-1]
        table = self._abar_from_minus_one.to(like.device)
        abar = table[torch.tensor(timesteps, device=like.device) + 1].to(like.dtype)
        abar_prev = table[torch.tensor(t_prev, device=like.device) + 1].to(like.dtype)
        c = step_coefficients(abar, abar_prev)
        return tuple(Step(t, tp, *(c[name][k] for name in Step._fields[2:])) for k, (t, tp) in
                     enumerate(zip(timesteps, t_prev)))


def step_coefficients(abar: torch.Tensor, abar_prev: torch.Tensor) -> dict[str, torch.Tensor]:
    """The coefficients of a step t -> t' from abar_t and abar_{t'}, elementwise (DDPM eqs. 6-7 with
    the respaced beta_t = 1 - abar_t / abar_{t'}; t' = -1 has abar_{t'} = 1): the one place they are
    computed, for the sampling table (NoiseSchedule.steps) and NoiseSchedule.posterior alike."""
    beta = 1 - abar / abar_prev
    return {
        "abar": abar, "abar_prev": abar_prev,
        "sqrt_abar": abar.sqrt(), "sqrt_one_minus_abar": (1 - abar).sqrt(),
        "beta": beta,
        "beta_tilde": beta * (1 - abar_prev) / (1 - abar),
        "mean_x0": abar_prev.sqrt() * beta / (1 - abar),
        "mean_xt": (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar),
    }


class Step(NamedTuple):
    """One step t -> t' of a sampling run. Tensors are 0-dim, in the run's dtype (NoiseSchedule.steps).

    | field               | symbol                                         | source          |
    |---------------------|------------------------------------------------|-----------------|
    | t, t_prev           | t, t' (the next respaced timestep; -1 at last) |                 |
    | abar, abar_prev     | abar_t, abar_{t'} (abar_{-1} = 1)              | DDPM eq. 4      |
    | sqrt_abar           | sqrt(abar_t)                                   |                 |
    | sqrt_one_minus_abar | sqrt(1 - abar_t)                               |                 |
    | beta                | beta_t = 1 - abar_t / abar_{t'} (respaced)     | N&D 2021 sec. 4 |
    | beta_tilde          | beta~_t = beta_t (1 - abar_{t'}) / (1 - abar_t) | DDPM eq. 7     |
    | mean_x0, mean_xt    | mu~_t = mean_x0 x_0 + mean_xt x_t              | DDPM eq. 7      |
    """

    t: int
    t_prev: int
    abar: torch.Tensor
    abar_prev: torch.Tensor
    sqrt_abar: torch.Tensor
    sqrt_one_minus_abar: torch.Tensor
    beta: torch.Tensor
    beta_tilde: torch.Tensor
    mean_x0: torch.Tensor
    mean_xt: torch.Tensor

    @property
    def is_last(self) -> bool:
        return self.t_prev < 0

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)  (DDPM eq. 4 solved for x_0; DDIM eq. 12's
        "predicted x_0")."""
        return (x_t - self.sqrt_one_minus_abar * eps) / self.sqrt_abar

    def renoise(self, x_next: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_t) x_{t'} + sqrt(1 - alpha_t) z, alpha_t = 1 - beta_t: the forward step from
        t' back to t (DDPM eq. 2, respaced), the "time travel" of FreeDoM, UGD and TFG."""
        return (1 - self.beta).sqrt() * x_next + self.beta.sqrt() * noise

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """mu~_t(x_t, x_0), the mean of q(x_{t'} | x_t, x_0)  (DDPM eq. 7)."""
        return self.mean_x0 * x0 + self.mean_xt * x_t
