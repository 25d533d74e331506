"""Samplers: one loop over a respaced timestep subsequence, one step function per kind.

Every sampler takes an eps-model with the contract ``eps = model(x_t, t, y)`` and never knows
which guidance (if any) the model wraps. Noise is drawn from one generator per sample index,
seeded from (seed, index), so the batch size never changes an image and sweeps over guidance
scales share their initial noise.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .runtime import progress_bar
from .schedules import NoiseSchedule

EpsModel = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

SAMPLERS = ("ddim", "ddpm")
DDPM_VARIANCES = ("beta", "beta_tilde", "interpolated")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


def respaced_timesteps(timesteps: int, steps: int, spacing: str = "linspace") -> list[int]:
    """K of the T timesteps, descending, named as diffusers' ``timestep_spacing``:

    - ``linspace``: round(linspace(0, T-1, K)), both ends included. This is guided-diffusion's
      section spacing "K" (``space_timesteps(T, "K")``, e.g. timestep_respacing="25").
    - ``leading``: 0, T//K, 2 T//K, ... (K values). This is guided-diffusion's ``ddimK`` spacing
      (e.g. "ddim25" = range(0, 1000, 40)) whenever K divides T; when it does not, guided-diffusion
      picks the stride whose range has K elements (ceil(T / stride) = K), diffusers keeps T//K.
    - ``trailing``: round(T - i T/K) - 1 for i < K, which starts at T-1 (Lin et al. 2023, Table 2).
      diffusers writes it round(arange(T, 0, -T/K)) - 1, whose float steps can leave a (K+1)-th
      value near 0 and so a timestep of -1 (T = 100, K = 29: 0/0 in the last step); taking i < K
      gives diffusers' values without that one.
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"sampling steps must be in [1, {timesteps}], got {steps}")
    if spacing == "linspace":
        chosen = np.linspace(0, timesteps - 1, steps).round()
    elif spacing == "leading":
        chosen = np.arange(steps) * (timesteps // steps)
    elif spacing == "trailing":
        chosen = np.round(timesteps - np.arange(steps) * (timesteps / steps)) - 1
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {TIMESTEP_SPACINGS}")
    return sorted({int(v) for v in chosen}, reverse=True)


def sample_generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample index: the noise of sample i depends on (seed, i) only."""
    return [torch.Generator().manual_seed(int(seed) * 1_000_003 + int(i)) for i in indices]


def draw_noise(generators: list[torch.Generator], shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """A standard normal draw of ``shape`` per generator, stacked and moved to ``like``'s device."""
    noise = torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float64) for g in generators])
    return noise.to(device=like.device, dtype=like.dtype)


def clip_denoised(schedule: NoiseSchedule, x, t, eps):
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) clipped to [-1, 1], and the eps it implies
    (guided-diffusion's ``clip_denoised`` in p_mean_variance, then _predict_eps_from_xstart)."""
    x0 = schedule.predict_x0(x, t, eps).clamp(-1, 1)
    return x0, schedule.eps_from_x0(x, t, x0)


def ddim_step(schedule: NoiseSchedule, x, eps, t, t_prev, eta: float, noise, clip_x0: bool = True):
    """The seed's generalized step (eq. 1.24; DDIM eq. 12):

        x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma_t^2) eps + sigma_t z,
        sigma_t = eta * sqrt((1 - abar_{t'}) / (1 - abar_t)) * sqrt(1 - abar_t / abar_{t'}).

    eta = 0 is DDIM (deterministic); eta = 1 gives DDPM's posterior variance beta~_t.
    When x0_hat is clipped to [-1, 1], eps is recomputed from it so the two stay consistent
    (as guided-diffusion's ddim_sample). Equals diffusers' DDIMScheduler.step with
    use_clipped_model_output=True and set_alpha_to_one=True (t' = -1 is abar = 1), which
    tests/test_samplers.py checks.
    """
    abar_t, abar_prev = schedule.abar(t, x), schedule.abar(t_prev, x)
    x0, eps = clip_denoised(schedule, x, t, eps) if clip_x0 else (schedule.predict_x0(x, t, eps), eps)
    sigma = eta * ((1 - abar_prev) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_prev).sqrt()
    direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    return abar_prev.sqrt() * x0 + direction + sigma * noise


def ddpm_variance(schedule: NoiseSchedule, x, t, t_prev, variance: str, v: float = 0.0):
    """Sigma_t of an ancestral step between t and t_prev (respaced beta_t = 1 - abar_t / abar_t'):
    'beta' is beta_t, 'beta_tilde' the posterior variance beta~_t, 'interpolated' Ho & Salimans'
    (beta~_t)^(1-v) (beta_t)^v (Nichol & Dhariwal's eq. 15 with a fixed v). In diffusers'
    DDPMScheduler these are fixed_large, fixed_small and learned_range with a variance output of
    2v - 1."""
    abar_t, abar_prev = schedule.abar(t, x), schedule.abar(t_prev, x)
    beta = 1 - abar_t / abar_prev
    beta_tilde = beta * (1 - abar_prev) / (1 - abar_t)
    if variance == "beta":
        return beta
    if variance == "beta_tilde":
        return beta_tilde
    if variance == "interpolated":
        return beta_tilde.clamp(min=1e-20) ** (1 - v) * beta**v
    raise ValueError(f"unknown DDPM variance {variance!r}; choose one of {DDPM_VARIANCES}")


def ddpm_step(schedule: NoiseSchedule, x, eps, t, t_prev, noise, variance: str = "beta_tilde",
              v: float = 0.0, clip_x0: bool = True):
    """Ancestral step x_{t'} ~ N(mu(x_t, x0_hat), Sigma_t) (DDPM Algorithm 2), with mu the
    posterior mean of q(x_{t'} | x_t, x0_hat). The last step (t' = -1) returns the mean."""
    x0 = schedule.predict_x0(x, t, eps)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    mean, _ = schedule.posterior(x, x0, t, t_prev)
    sigma2 = ddpm_variance(schedule, x, t, t_prev, variance, v)
    is_last = (t_prev < 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return mean + (1 - is_last) * sigma2.sqrt() * noise


def sample(model: EpsModel, schedule: NoiseSchedule, labels, indices: Sequence[int], image_shape,
           *, seed: int, sampler: str = "ddim", steps: int = 50, spacing: str = "linspace", eta: float = 0.0,
           variance: str = "beta_tilde", v: float = 0.0, device="cpu", dtype=torch.float32,
           progress: bool = True) -> torch.Tensor:
    """Draw one batch of samples x_0 for the given sample indices.

    ``labels`` is a LongTensor (or None for an unconditional model); ``indices`` are the global
    sample numbers that seed each sample's noise. The steps take the model's eps as it is: x0
    clipping is a wrapper of the model (guidance.ClipDenoised), placed before or after guidance
    as each method's reference places it, so the sampler never re-clips a guided prediction.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    generators = sample_generators(seed, indices)
    anchor = torch.empty(0, device=device, dtype=dtype)
    x = draw_noise(generators, image_shape, anchor)
    y = None if labels is None else labels.to(device)
    ts = respaced_timesteps(schedule.timesteps, steps, spacing)
    for i, t_now in enumerate(progress_bar(ts, desc=f"{sampler} x{len(indices)}", disable=not progress, leave=False)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        t = torch.full((len(indices),), t_now, device=device, dtype=torch.long)
        tp = torch.full_like(t, t_prev)
        eps = model(x, t, y).to(dtype)
        noise = draw_noise(generators, image_shape, anchor) if t_prev >= 0 else torch.zeros_like(x)
        if sampler == "ddim":
            x = ddim_step(schedule, x, eps, t, tp, eta, noise, clip_x0=False)
        else:
            x = ddpm_step(schedule, x, eps, t, tp, noise, variance, v, clip_x0=False)
    return x
