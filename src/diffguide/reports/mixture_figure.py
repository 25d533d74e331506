"""Ho & Salimans Figure 2 on an exact model: classifier-free guidance of a 2-D mixture of three
Gaussians (one per class).

Each panel is one guidance strength w. Contours: the exact guided densities
p~_w(x | y) proportional to p(x | y)^(1 + w) p(x)^(-w) (H&S sec. 3.2: guidance with the implicit
classifier p(y | x)^w), normalised numerically on the plotting grid. Points: samples of the exact
model's eps guided by H&S eq. 6, eps~ = (1 + w) eps(x, y) - w eps(x, null).

The points are not draws from the contours: guidance tilts every noised marginal p_t, and the
tilt of a noised density is not the noised tilt, so for w > 0 the sampler's law only resembles
p~_w (H&S make the same remark). Both concentrate and move away from the other classes as w
grows, which is the figure's point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from diffguide.diffusion.noise_levels import respaced_timesteps  # noqa: E402
from diffguide.diffusion.samplers import SAMPLERS  # noqa: E402
from diffguide.diffusion.schedules import NoiseSchedule  # noqa: E402
from diffguide.diffusion.seeding import PerSampleNoise  # noqa: E402
from diffguide.exact.gaussian_mixture import GaussianMixture, MixtureEpsModel, three_class_mixture  # noqa: E402
from diffguide.guidance.wrappers import ClassifierFreeGuidance  # noqa: E402
from diffguide.reports.figures import save_figure  # noqa: E402

EXTENT = (-3.2, 3.2, -2.8, 3.2)  # x_min, x_max, y_min, y_max of the plotting grid


def plotting_grid(extent=EXTENT, resolution: int = 200):
    """Grid coordinates xs [R], ys [R] and points [R, R, 2] (row = y, column = x)."""
    xs = np.linspace(extent[0], extent[1], resolution)
    ys = np.linspace(extent[2], extent[3], resolution)
    points = np.stack(np.meshgrid(xs, ys), axis=-1)
    return xs, ys, points


def guided_density(mixture: GaussianMixture, y: int, w: float, points: np.ndarray, cell_area: float):
    """p(x | y)^(1 + w) p(x)^(-w) on ``points`` [..., 2], normalised so that it sums to 1 / cell_area
    over the grid (a Riemann sum standing in for the unknown normaliser)."""
    grid = torch.from_numpy(points)
    log_density = (1 + w) * mixture.log_prob(grid, y) - w * mixture.log_prob(grid)
    log_density = log_density - torch.logsumexp(log_density.flatten(), 0) - np.log(cell_area)
    return log_density.exp().numpy()


def guided_samples(mixture: GaussianMixture, schedule: NoiseSchedule, w: float, per_class: int, *,
                   sampler: str = "ddpm", steps: int = 250, seed: int = 0):
    """``per_class`` samples of every class from the exact eps guided by CFG at strength w
    (float64, no clipping). Returns samples [K * per_class, 2] and labels [K * per_class]. Sample i
    has the same noise at every w (seeded by index), so panels differ by guidance only."""
    labels = torch.arange(mixture.num_classes).repeat_interleave(per_class)
    model = ClassifierFreeGuidance(MixtureEpsModel(mixture, schedule), w)
    noise = PerSampleNoise(seed, range(len(labels)))
    x = SAMPLERS[sampler](model, noise.initial((mixture.dim,), dtype=torch.float64),
                          respaced_timesteps(schedule.timesteps, steps), schedule=schedule, labels=labels,
                          noise=noise, progress=False)
    return x.numpy(), labels.numpy()


def draw_mixture_figure(output_png: str | Path, scales: Sequence[float] = (0.0, 1.0, 3.0), per_class: int = 300,
                        *, sampler: str = "ddpm", steps: int = 250, schedule: str = "cosine",
                        timesteps: int = 1000, seed: int = 0, mixture: GaussianMixture | None = None) -> dict:
    """One panel per guidance strength w: contours of the normalised guided densities of the three
    classes and CFG samples of the exact model, coloured by class. Returns {w: (samples, labels)}."""
    mixture = mixture or three_class_mixture()
    noise_schedule = NoiseSchedule.make(schedule, timesteps)
    xs, ys, points = plotting_grid()
    cell_area = (xs[1] - xs[0]) * (ys[1] - ys[0])
    palette = sns.color_palette("deep", mixture.num_classes)
    sns.set_theme(style="white")
    fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 4.4), sharex=True, sharey=True,
                             squeeze=False)
    drawn = {}
    for ax, w in zip(axes[0], scales):
        samples, labels = guided_samples(mixture, noise_schedule, w, per_class, sampler=sampler, steps=steps,
                                         seed=seed)
        drawn[w] = (samples, labels)
        for k, color in enumerate(palette):
            density = guided_density(mixture, k, w, points, cell_area)
            ax.contour(xs, ys, density, levels=_mass_levels(density, cell_area), colors=[color], linewidths=1.2)
            pick = labels == k
            ax.scatter(samples[pick, 0], samples[pick, 1], s=4, color=color, alpha=0.45, linewidths=0,
                       label=f"class {k}")
        ax.set_title(f"w = {w:g}" + (" (conditional model)" if w == 0 else ""))
        ax.set_xlabel("$x_1$")
        ax.set_aspect("equal")
        ax.set_xlim(*EXTENT[:2])
        ax.set_ylim(*EXTENT[2:])
    axes[0, 0].set_ylabel("$x_2$")
    axes[0, 0].legend(loc="lower left", fontsize=8, markerscale=3, frameon=False)
    fig.suptitle("Classifier-free guidance on a mixture of three Gaussians: "
                 r"contours $\propto p(x|y)^{1+w}\,p(x)^{-w}$, points sampled with $\tilde\epsilon$ (H&S eq. 6)",
                 fontsize=10)
    fig.tight_layout()
    Path(output_png).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, output_png, dpi=130)
    return drawn


def _mass_levels(density: np.ndarray, cell_area: float, masses=(0.9, 0.5, 0.1)) -> list[float]:
    """Density thresholds of the highest-density regions holding the given probability masses."""
    values = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(values) * cell_area
    return sorted(float(values[min(np.searchsorted(cumulative, m), len(values) - 1)]) for m in masses)
