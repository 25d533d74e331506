"""abar_t of the noise schedules in numpy, for what must not import torch: the config checks the
Snakefile runs at parse time (torch would add seconds to every parse, and every cluster job parses
again). ``schedules.NoiseSchedule`` holds the tables the samplers use; these equal its
``alphas_cumprod`` to float64 rounding (tests/test_noise_levels.py).

The check they serve: in the score form, guidance adds -s sqrt(1 - abar_t) grad log p(y | x_t) to
eps (D&N Algorithm 2; seed eqs. 1.20-1.23), and the x0 prediction x0 = (x_t - sqrt(1 - abar_t) eps)
/ sqrt(abar_t) then moves by

    (1 - abar_t) / sqrt(abar_t) * s * grad log p(y | x_t),

a factor that explodes as abar_t -> 0. Where a sampling run starts decides it: the cosine schedule
at T = 1000 has abar = 2.4e-9 at t = 999 (factor 20,000, where linspace and trailing spacing start)
and 3.7e-3 at t = 960 (factor 16, where the default run's 25 leading steps start). Nothing clips
the shift in guided-diffusion's clip order, so at the larger factor every guided pixel saturates.
"""

from __future__ import annotations

import math

import numpy as np

# Above this factor (1 - abar) / sqrt(abar) at the first sampled step, a score-form guidance shift
# is taken to saturate the samples. Measured: 20,291 (cosine, t = 999 of 1000) turned classifier
# guidance at s = 1, 3 and 10 into black-and-white blobs on config/sdg_quick.yaml (FID 61.0 [57.7,
# 64.4] at s = 1 against 3.32 [1.89, 4.74] unguided, 95% half-sample intervals; accuracy 0.35 at
# every s), where 16 (t = 960, leading) gave FID 3.4, 0.6, 2.3 and accuracy 0.66 to 1.00
# (config/README.md, sampling.timestep_spacing, which gives no interval for these); the README's cg command sampled from
# t = 999 gave 92% of its pixels at 0 or 255 (issue 27). D&N's own ImageNet setting, the linear
# schedule from t = 999 (abar = 4.0e-5), has 158. 1000 lies between what is known to work and what is
# known to fail: it flags the cosine schedule from t = T - 1 at T = 100 (2,029) and T = 1000, and not
# the linear schedule.
SATURATING_SHIFT = 1000.0


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """DDPM's linear schedule rescaled by 1000 / T (schedules.linear_betas, which takes torch's
    linspace: equal to numpy's to a few ulps)."""
    scale = 1000.0 / timesteps
    return np.linspace(scale * beta_start, scale * beta_end, timesteps)


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal (2021) eq. 17, betas clipped at 0.999 (schedules.cosine_betas, the same
    Python floats)."""

    def abar(u: float) -> float:
        return math.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2

    return np.array([min(1 - abar((i + 1) / timesteps) / abar(i / timesteps), max_beta) for i in range(timesteps)])


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


BETAS = {"linear": linear_betas, "cosine": cosine_betas}


def alphas_cumprod(schedule: str, timesteps: int) -> np.ndarray:
    """abar_t for t = 0 .. T-1 (DDPM's notation, as schedules.NoiseSchedule.alphas_cumprod)."""
    if schedule not in BETAS:
        raise ValueError(f"unknown noise schedule {schedule!r}; choose one of {sorted(BETAS)}")
    return np.cumprod(1.0 - BETAS[schedule](timesteps))


def score_shift_factor(abar: float) -> float:
    """(1 - abar) / sqrt(abar): how far a score-form guidance term moves the x0 prediction per unit
    of s * grad log p(y | x_t) at noise level abar (this module's docstring)."""
    return (1.0 - abar) / math.sqrt(abar)
