"""Is classifier guidance at scale s sampling from a sharpened classifier? A figure on the exact
2-D mixture (gaussian_mixture.three_class_mixture) that answers by sampling all three candidates.

For one class y and each scale s, three sets of points:

(a) classifier guidance: the exact eps guided by s times the exact classifier gradient,
    eps_hat = eps*(x_t) - s sqrt(1 - abar_t) grad log p_t(y | x_t) (D&N Alg. 2, score form), run
    by an ancestral sampler with many steps in float64 (guidance.ClassifierGuidance on
    MixtureEpsModel and MixtureClassifier);
(b) exact draws of p(x) p(y | x)^s / Z(x), Z(x) = sum_y' p(y' | x)^s: the data density times the
    sharpened *normalised* classifier, D&N sec. 4.3's reading of s;
(c) exact draws of p(x) p(y | x)^s / const: the data density tilted by the *unnormalised*
    p(y | x)^s, what the dropped grad log Z(x) leaves (docs/equations.md, parts 6 and 8).

(b) and (c) are drawn by rejection from p(x): a draw x is kept with probability p(y | x)^s / Z(x)
(<= 1) for (b) and p(y | x)^s (<= 1) for (c), with p(y | x) the clean (t = 0) Bayes classifier.
Both equal p(x | y) at s = 1 (Z = 1). For s > 1, Z(x) <= 1 is smallest where the classes overlap,
so (b) keeps the overlap that (c) drops: as s grows, (b) tends to p(x) on the region where y is
the most likely class, (c) to the part of class y far from the others.

Guidance follows the scores of p_t(x) p_t(y | x)^s at every noise level. That is (c)'s tilt of
each noised marginal, not the noised (c), so (a) resembles (c) only (and (b) less).
`sharpening_summary` measures how much, with standard errors.
"""

from __future__ import annotations

import argparse
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
from diffguide.exact.gaussian_mixture import GaussianMixture  # noqa: E402
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, three_class_mixture
from diffguide.guidance.wrappers import ClassifierGuidance  # noqa: E402
from diffguide.reports.figures import save_figure  # noqa: E402
from diffguide.reports.mixture_figure import EXTENT, _mass_levels, plotting_grid  # noqa: E402

SETS = ("guided", "normalised", "unnormalised")  # (a), (b), (c)
SET_TITLES = {
    "guided": "(a) classifier guidance",
    "normalised": r"(b) $p(x)\,p(y|x)^s / Z(x)$",
    "unnormalised": r"(c) $p(x)\,p(y|x)^s$ / const",
}


def clean_log_classifier(mixture: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """log p(k | x) of the clean data (t = 0), [B, K], for points x [B, d]."""
    abar = torch.ones(len(x), 1, dtype=torch.float64)
    return torch.log_softmax(mixture.log_joint(x.to(torch.float64), abar), dim=-1)


def acceptance_probability(mixture: GaussianMixture, y: int, s: float, x: torch.Tensor, *,
                           normalised: bool) -> torch.Tensor:
    """The rejection sampler's keep probability at points x [B, d], [B]: p(y | x)^s / Z(x) with
    Z(x) = sum_k p(k | x)^s when ``normalised``, else p(y | x)^s. Both lie in [0, 1]."""
    log_p = clean_log_classifier(mixture, x)
    log_keep = s * log_p[:, y]
    if normalised:
        log_keep = log_keep - torch.logsumexp(s * log_p, dim=-1)
    return log_keep.exp()


def exact_tilted_samples(mixture: GaussianMixture, y: int, s: float, n: int, *, normalised: bool, seed: int = 0,
                         batch: int = 4096) -> tuple[np.ndarray, float]:
    """``n`` exact draws of p(x) p(y | x)^s / Z(x) (``normalised``) or p(x) p(y | x)^s / const, by
    rejection from p(x), seeded. Returns the draws [n, d] and the fraction of proposals kept (an
    estimate of the normaliser E_p[keep probability])."""
    generator = torch.Generator().manual_seed(int(seed))
    kept, proposed, accepted = [], 0, 0
    while accepted < n:
        labels = torch.multinomial(mixture.weights, batch, replacement=True, generator=generator)
        x = mixture.sample(labels, generator)
        keep = torch.rand(batch, generator=generator, dtype=torch.float64) < acceptance_probability(
            mixture, y, s, x, normalised=normalised)
        kept.append(x[keep])
        proposed, accepted = proposed + batch, accepted + int(keep.sum())
    return torch.cat(kept)[:n].numpy(), accepted / proposed


def guided_samples(mixture: GaussianMixture, schedule: NoiseSchedule, y: int, s: float, n: int, *,
                   sampler: str = "ddpm", steps: int = 250, seed: int = 0) -> np.ndarray:
    """``n`` samples of class y from classifier guidance at scale s on the exact unconditional eps
    and the exact noisy classifier (D&N Alg. 2), float64, no clipping: [n, d]. Sample i's noise
    depends on (seed, i) only, so the scales share their noise."""
    model = ClassifierGuidance(MixtureEpsModel(mixture, schedule), MixtureClassifier(mixture, schedule), s, schedule)
    noise = PerSampleNoise(seed, range(n))
    x = SAMPLERS[sampler](model, noise.initial((mixture.dim,), dtype=torch.float64),
                          respaced_timesteps(schedule.timesteps, steps), schedule=schedule,
                          labels=torch.full((n,), y, dtype=torch.long), noise=noise, progress=False)
    return x.detach().numpy()


def tilted_density(mixture: GaussianMixture, y: int, s: float, points: np.ndarray, cell_area: float, *,
                   normalised: bool) -> np.ndarray:
    """p(x) p(y | x)^s [/ Z(x)] on ``points`` [..., d], normalised so that it sums to 1 / cell_area
    over the grid (a Riemann sum standing in for the normaliser)."""
    flat = torch.from_numpy(points.reshape(-1, mixture.dim))
    log_density = mixture.log_prob(flat) + acceptance_probability(mixture, y, s, flat, normalised=normalised).log()
    log_density = log_density - torch.logsumexp(log_density, 0) - np.log(cell_area)
    return log_density.exp().numpy().reshape(points.shape[:-1])


def grid_mean(density: np.ndarray, points: np.ndarray, cell_area: float) -> np.ndarray:
    """The mean of a density tabulated on a grid (Riemann sum): [d]."""
    return (density[..., None] * points).sum(axis=tuple(range(density.ndim))) * cell_area


def mean_and_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis and its standard error sd / sqrt(n) (independent draws)."""
    values = np.asarray(values, dtype=np.float64)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))


def sharpening_summary(mixture: GaussianMixture, y: int, drawn: dict) -> list[dict]:
    """One row per (s, set): the sample mean of x_1, x_2 and of the clean confidence p(y | x), each
    with its standard error, and the gap to (b) and to (c) in p(y | x) with the SE of a difference
    of independent means, sqrt(se_1^2 + se_2^2)."""
    rows = []
    for s, sets in drawn.items():
        stats = {}
        for name in SETS:
            x = sets[name]
            conf = clean_log_classifier(mixture, torch.from_numpy(x))[:, y].exp().numpy()
            stats[name] = (*mean_and_se(x), *mean_and_se(conf))
        for name in SETS:
            mean, se, conf, conf_se = stats[name]
            row = {"s": s, "set": name, "n": len(sets[name]), "mean_x1": mean[0], "se_x1": se[0],
                   "mean_x2": mean[1], "se_x2": se[1], "confidence": float(conf), "se_confidence": float(conf_se)}
            for other in ("normalised", "unnormalised"):
                row[f"confidence_minus_{other}"] = float(conf - stats[other][2])
                row[f"se_minus_{other}"] = float(np.hypot(conf_se, stats[other][3]))
            rows.append(row)
    return rows


def draw_sharpening_figure(output_png: str | Path, scales: Sequence[float] = (1.0, 3.0), y: int = 0, n: int = 2000,
                           *, sampler: str = "ddpm", steps: int = 250, schedule: str = "cosine",
                           timesteps: int = 1000, seed: int = 0, resolution: int = 160,
                           mixture: GaussianMixture | None = None) -> tuple[dict, list[dict]]:
    """Rows: scales s. Columns: (a) guided samples, (b) and (c) exact draws, each panel with the
    contours of (b) (dashed) and (c) (solid) holding 90%, 50% and 10% of their mass, the other
    classes' clean contours in grey, the sample mean (black cross) and the mean confidence
    p(y | x) +- its standard error. Writes ``output_png`` and its PDF; returns
    ({s: {set: samples [n, 2]}}, sharpening_summary's rows)."""
    mixture = mixture or three_class_mixture()
    noise_schedule = NoiseSchedule.make(schedule, timesteps)
    drawn = {s: {"guided": guided_samples(mixture, noise_schedule, y, s, n, sampler=sampler, steps=steps, seed=seed),
                 "normalised": exact_tilted_samples(mixture, y, s, n, normalised=True, seed=seed)[0],
                 "unnormalised": exact_tilted_samples(mixture, y, s, n, normalised=False, seed=seed + 1)[0]}
             for s in scales}
    rows = sharpening_summary(mixture, y, drawn)
    xs, ys, points = plotting_grid(resolution=resolution)
    cell_area = (xs[1] - xs[0]) * (ys[1] - ys[0])
    grid = torch.from_numpy(points)
    others = [mixture.log_prob(grid, k).exp().numpy() for k in range(mixture.num_classes) if k != y]
    sns.set_theme(style="white")
    colors = dict(zip(SETS, sns.color_palette("deep", len(SETS))))
    fig, axes = plt.subplots(len(scales), len(SETS), figsize=(3.4 * len(SETS), 3.5 * len(scales)), sharex=True,
                             sharey=True, squeeze=False)
    for axes_row, s in zip(axes, scales):
        densities = {name: tilted_density(mixture, y, s, points, cell_area, normalised=name == "normalised")
                     for name in ("normalised", "unnormalised")}
        for ax, name in zip(axes_row, SETS):
            for density in others:
                ax.contour(xs, ys, density, levels=3, colors="0.75", linewidths=0.6)
            for other, style in (("normalised", "--"), ("unnormalised", "-")):
                ax.contour(xs, ys, densities[other], levels=_mass_levels(densities[other], cell_area),
                           colors=[colors[other]], linestyles=style, linewidths=1.1)
            samples = drawn[s][name]
            ax.scatter(samples[:, 0], samples[:, 1], s=3, color=colors[name], alpha=0.35, linewidths=0)
            stats = next(r for r in rows if r["s"] == s and r["set"] == name)
            ax.plot(stats["mean_x1"], stats["mean_x2"], "x", color="k", markersize=8, markeredgewidth=2)
            ax.text(0.03, 0.97, f"mean $p(y|x)$ = {stats['confidence']:.3f} $\\pm$ {stats['se_confidence']:.3f}",
                    transform=ax.transAxes, va="top", fontsize=8)
            ax.set_title(f"{SET_TITLES[name]}, s = {s:g}", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlim(*EXTENT[:2])
            ax.set_ylim(*EXTENT[2:])
        axes_row[0].set_ylabel("$x_2$")
    for ax in axes[-1]:
        ax.set_xlabel("$x_1$")
    fig.suptitle(f"Class y = {y}: guided samples against exact draws of the two sharpenings "
                 "(contours: (b) dashed, (c) solid; grey: the other classes)", fontsize=9)
    fig.tight_layout()
    Path(output_png).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, output_png, dpi=100)
    return drawn, rows


def format_summary(rows: list[dict]) -> str:
    """The summary as aligned text lines, means +- one standard error."""
    lines = []
    for r in rows:
        lines.append(f"s={r['s']:g} {r['set']:>12} n={r['n']}: x1 {r['mean_x1']:+.3f}+-{r['se_x1']:.3f}  "
                     f"x2 {r['mean_x2']:+.3f}+-{r['se_x2']:.3f}  p(y|x) {r['confidence']:.4f}+-{r['se_confidence']:.4f}"
                     f"  -(b) {r['confidence_minus_normalised']:+.4f}+-{r['se_minus_normalised']:.4f}"
                     f"  -(c) {r['confidence_minus_unnormalised']:+.4f}+-{r['se_minus_unnormalised']:.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="docs/sharpening_guidance.png", help="PNG path (PDF beside it)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--class", dest="y", type=int, default=0)
    parser.add_argument("-n", type=int, default=2000, help="samples per set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny 2-D tensors: extra threads only add overhead
    mixture = three_class_mixture()
    _, rows = draw_sharpening_figure(args.output, args.scales, args.y, args.n, seed=args.seed, mixture=mixture)
    print(format_summary(rows))


if __name__ == "__main__":
    main()
