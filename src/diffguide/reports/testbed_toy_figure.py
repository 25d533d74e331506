"""Karras et al. (2024)'s 2-D toy example on an exact model, drawn in the style of H&S Figure 2: what
classifier-free guidance, autoguidance, the guidance interval and APG do to the coverage of a
class's modes and to its tails (issue 16, deliverable 2; docs/equations.md section 10).

The data (``toy_mixture``): two classes, each a "tree" of several thin, elongated Gaussian branches
(5 per class, unequal weights), the two trees' roots crossing near the origin, as in Karras et al.
Fig. 1, where both classes grow out of a shared region. Everything is exact and float64:

- the conditional model (``ClassMixtureEpsModel``) is the optimal eps of the class's sub-mixture,
  eps(x, t, y) = -sqrt(1 - abar_t) grad log p_t(x | y), p_t(x | y) = sum_{k in y} pi_k|y N_k(t),
  and the unconditional one (y = NULL_LABEL) that of the whole mixture, both through
  gaussian_mixture.MixtureEpsModel;
- the weak model of autoguidance (``weak_model``) is the same mixture with every covariance
  broadened, C_k + delta I, with the same conditioning: Karras et al.'s weaker model (a less
  trained, smaller network spreads its density), here in closed form.

Each method is built by its registry builder (``registry.parse_method(name).method.build()``) and
sampled with deterministic DDIM (samplers.sample_ddim) from the same seeded x_T, so panels differ
by the guidance alone. Clipping is OFF (clip_x0=False): the toy spreads over about [-2.5, 2.5]^2, and the
static [-1, 1] clip of the image pipelines would cut the exact model's own samples.

Two numbers per panel (``coverage_and_tails``), for class y's samples:

- coverage: total-variation distance between the share of samples per branch (soft: the mean over
  the samples of the exact branch responsibility r_k(x) = pi_k|y N_k(x) / p(x | y)) and the branch
  weights pi_k|y. Under exact samples E r_k(x) = pi_k|y, so an unbiased sampler has TV near 0; a
  method that drops or favours branches has TV up to 1. 95% interval from the project's half
  samples (intervals.half_samples, jackknife_se).
- tails: the fraction of samples outside the 99% highest-density region of the exact p(x | y)
  (log p(x | y) below the 1% quantile of log p over exact draws), with its Wilson interval: 1% for
  exact samples; below 1% when a method concentrates samples on the branches' cores, above when it
  pushes them off the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from diffguide.diffusion.noise_levels import respaced_timesteps  # noqa: E402
from diffguide.diffusion.samplers import sample_ddim  # noqa: E402
from diffguide.diffusion.schedules import NoiseSchedule  # noqa: E402
from diffguide.diffusion.seeding import PerSampleNoise  # noqa: E402
from diffguide.evaluation.intervals import Estimate, half_samples  # noqa: E402
from diffguide.exact.gaussian_mixture import GaussianMixture, MixtureEpsModel  # noqa: E402
from diffguide.models.networks import NULL_LABEL  # noqa: E402
from diffguide.registry import REGISTRY, parse_method  # noqa: E402
from diffguide.reports.figures import save_figure  # noqa: E402
from diffguide.reports.mixture_figure import _mass_levels  # noqa: E402

F64 = torch.float64
EXTENT = (-2.7, 2.7, -2.6, 2.8)  # x_min, x_max, y_min, y_max of the panels

# One branch per row: centre (x, y), direction (degrees), std along and across the branch, weight
# within its class. Class 1 is class 0 mirrored (x -> -x) and shifted up by 0.35, so the two roots
# cross near the origin and one upper branch of each class runs near the other's root.
_CLASS0 = (
    ((-0.25, 0.00), 10.0, 0.42, 0.055, 0.30),   # root, crossing class 1's root
    ((-1.15, 0.75), 40.0, 0.40, 0.055, 0.25),
    ((-1.15, -0.70), -40.0, 0.40, 0.055, 0.25),
    ((-1.85, 1.55), 75.0, 0.28, 0.045, 0.10),   # thin outer tips, small weights
    ((-1.85, -1.50), -75.0, 0.28, 0.045, 0.10),
)
DEFAULT_METHODS = ("unguided", "cfg", "autoguidance", "cfg_interval", "apg")
TITLES = {"unguided": "conditional model", "cfg": "CFG", "autoguidance": "autoguidance",
          "cfg_interval": "CFG in an interval", "apg": "APG"}

# The guidance options of the figure.
# - Interval (0.05, 0.5]: the class's branches are ~1 apart and ~0.05 wide. A chain picks its branch
#   while sigma(t) is above about half the branch spacing (0.5); CFG there moves whole chains off the
#   branch that the other class shares (the mode dropping that Kynkaanniemi et al. blame on guidance
#   at high noise). Below the branch width (0.05) there is no structure left to guide. So the interval
#   guides from half the spacing down to the width: the branch choice is the conditional model's,
#   guidance only pushes samples within their branch away from the other class.
# - APG: its declared defaults (diffguide.guidance.methods.apg: eta 0, r 15, beta -0.5). r = 15 never
#   acts here: the x0 difference is bounded by the data's extent (|x| < 3), so it stays below 15 at
#   every step.
TOY_OPTIONS = {"interval_sigma_lo": 0.05, "interval_sigma_hi": 0.5,
               **REGISTRY.methods["apg"].defaults}


def _branch_cov(angle_deg: float, along: float, across: float) -> torch.Tensor:
    a = math.radians(angle_deg)
    u = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=F64)
    return u @ torch.diag(torch.tensor([along**2, across**2], dtype=F64)) @ u.T


@dataclass(frozen=True, eq=False)
class ClassMixture:
    """A mixture whose classes own several components: ``components`` (a GaussianMixture whose
    weights are p(y) p(k | y)) and ``classes`` [K_components] (the class of each component)."""

    components: GaussianMixture
    classes: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.classes.max()) + 1

    def members(self, y: int) -> torch.Tensor:
        return (self.classes == y).nonzero().flatten()

    def class_mixture(self, y: int) -> GaussianMixture:
        """p(x | y): the sub-mixture of class y's components, weights pi_k|y (renormalised)."""
        k = self.members(y)
        c = self.components
        return GaussianMixture(c.means[k], c.covs[k], c.weights[k])

    def branch_weights(self, y: int) -> torch.Tensor:
        return self.class_mixture(y).weights

    def broadened(self, delta: float) -> "ClassMixture":
        """The weak model's mixture: every covariance C_k + delta I, same means, weights, classes."""
        c = self.components
        eye = torch.eye(c.dim, dtype=F64)
        return ClassMixture(GaussianMixture(c.means, c.covs + delta * eye, c.weights), self.classes)

    def log_prob(self, x: torch.Tensor, y: int) -> torch.Tensor:
        """Clean log p(x | y) at points x [..., 2]."""
        return self.class_mixture(y).log_prob(x)

    def responsibilities(self, x: torch.Tensor, y: int) -> torch.Tensor:
        """r_k(x) = pi_k|y N_k(x) / p(x | y) of class y's components at clean points x [B, 2], [B, K_y]."""
        mixture = self.class_mixture(y)
        return torch.softmax(mixture.log_joint(x.to(F64), torch.ones(len(x), 1, dtype=F64)), -1)

    def sample(self, y: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws of p(x | y)."""
        mixture = self.class_mixture(y)
        branch = torch.multinomial(mixture.weights, n, replacement=True, generator=generator)
        return mixture.sample(branch, generator)


def toy_mixture() -> ClassMixture:
    """The toy data: two classes of five thin branches each (see the module docstring), equal priors."""
    rows = [(c, a, lo, ac, wt, 0) for c, a, lo, ac, wt in _CLASS0]
    rows += [((-cx, cy + 0.35), 180.0 - a, lo, ac, wt, 1) for (cx, cy), a, lo, ac, wt in _CLASS0]
    means = torch.tensor([r[0] for r in rows], dtype=F64)
    covs = torch.stack([_branch_cov(r[1], r[2], r[3]) for r in rows])
    weights = torch.tensor([r[4] for r in rows], dtype=F64)
    classes = torch.tensor([r[5] for r in rows])
    for y in range(2):  # p(y) = 1/2, p(k | y) = the branch weights
        weights[classes == y] = weights[classes == y] / weights[classes == y].sum() / 2
    return ClassMixture(GaussianMixture(means, covs, weights), classes)


class ClassMixtureEpsModel(nn.Module):
    """The exact eps of a ClassMixture under the project contract ``eps = model(x_t, t, y)``: rows of
    class y get the optimal eps of the class's sub-mixture, -sqrt(1 - abar_t) grad log p_t(x | y);
    y = None / NULL_LABEL rows the eps of the whole mixture, -sqrt(1 - abar_t) grad log p_t(x)."""

    def __init__(self, mixture: ClassMixture, schedule: NoiseSchedule):
        super().__init__()
        self.mixture, self.schedule = mixture, schedule
        self.unconditional = MixtureEpsModel(mixture.components, schedule)
        self.conditional = [MixtureEpsModel(mixture.class_mixture(y), schedule) for y in range(mixture.num_classes)]

    def forward(self, x, t, y=None):
        eps = self.unconditional(x, t, None)
        if y is None:
            return eps
        y = y.to(x.device).long()
        for k, model in enumerate(self.conditional):
            rows = (y == k).nonzero().flatten()
            if len(rows):
                eps[rows] = model(x[rows], t[rows], None)
        unknown = (y != NULL_LABEL) & ((y < 0) | (y >= len(self.conditional)))
        if unknown.any():
            raise ValueError(f"labels must be NULL_LABEL or in [0, {len(self.conditional)}), got {y[unknown].tolist()}")
        return eps


def exact_models(mixture: ClassMixture, schedule: NoiseSchedule, delta: float) -> dict:
    """The registry's models dict: eps_model (exact conditional and unconditional eps) and weak_model
    (the same for the broadened mixture C + delta I, same conditioning)."""
    return {"eps_model": ClassMixtureEpsModel(mixture, schedule),
            "weak_model": ClassMixtureEpsModel(mixture.broadened(delta), schedule)}


def sample_method(method: str, models: dict, w: float, schedule: NoiseSchedule, y: int, n: int, *,
                  steps: int = 50, seed: int = 0, options: dict | None = None) -> np.ndarray:
    """n samples of class y by the registry method ``method`` at w (``unguided``: the conditional
    model, cfg at w = 0), deterministic DDIM over ``steps`` steps, clip off, float64. Sample i starts
    from the same x_T (seeded by index) in every method."""
    name, scale = ("cfg", 0.0) if method == "unguided" else (method, w)
    build = parse_method(name).method.build()
    guided = build(models, scale, schedule, clip_x0=False, options=dict(options or {}))
    noise = PerSampleNoise(seed, range(n))
    labels = torch.full((n,), int(y))
    x = sample_ddim(guided.model, noise.initial((2,), dtype=F64), respaced_timesteps(schedule.timesteps, steps),
                    schedule=schedule, labels=labels, noise=noise, progress=False)
    return x.numpy()


def hdr_log_threshold(mixture: ClassMixture, y: int, mass: float = 0.99, draws: int = 200_000,
                      seed: int = 12345) -> float:
    """log p(x | y) at the boundary of the exact class density's ``mass`` highest-density region:
    the (1 - mass) quantile of log p(x | y) over exact draws (seeded Monte Carlo)."""
    x = mixture.sample(y, draws, torch.Generator().manual_seed(seed))
    return float(torch.quantile(mixture.log_prob(x, y), 1 - mass))


def coverage_and_tails(samples: np.ndarray, mixture: ClassMixture, y: int, *, log_threshold: float,
                       seed: int = 0) -> dict:
    """The two numbers of a panel, for samples [n, 2] of class y (see the module docstring):
    ``tv`` (Estimate: TV between the soft branch shares and the branch weights, half-sample interval),
    ``tails`` (Estimate, a proportion: fraction outside the HDR whose log-density boundary is
    ``log_threshold``, Wilson interval), and ``shares`` / ``weights`` per branch (numpy)."""
    x = torch.as_tensor(samples, dtype=F64)
    n = len(x)
    resp = mixture.responsibilities(x, y).numpy()  # [n, K_y]
    weights = mixture.branch_weights(y).numpy()
    shares = resp.mean(0)

    def tv(rows):
        return 0.5 * np.abs(resp[rows].mean(0) - weights).sum()

    halves = half_samples(n, seed)
    tv_est = Estimate(float(tv(slice(None))), np.array([tv(h) for h in halves]), n, lower=0.0, upper=1.0)
    outside = (mixture.log_prob(x, y) < log_threshold).numpy()
    tails = Estimate(float(outside.mean()), np.array([outside[h].mean() for h in halves]), n, proportion=True)
    return {"tv": tv_est, "tails": tails, "shares": shares, "weights": weights}


def draw_toy_figure(output_png: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS, w: float = 3.0,
                    n: int = 3000, y: int = 0, steps: int = 50, delta: float = 0.05, seed: int = 0,
                    options: dict | None = None, schedule: str = "cosine", timesteps: int = 1000) -> dict:
    """One panel per method: class y's samples over the contours (10/50/90/99% HDRs) of the exact
    p(x | y), the other class's density in grey, and in each panel the coverage TV and tail fraction
    with their 95% intervals. Our w (the papers' guidance scale 1 + w) is the same for every guided
    method; ``delta`` broadens the weak model; ``options`` override TOY_OPTIONS. Writes the PNG and
    a PDF beside it. Returns {method: {"samples", "tv", "tails", "shares", "weights", "title"}}, in
    panel order."""
    options = {**TOY_OPTIONS, **(options or {})}
    mixture = toy_mixture()
    noise_schedule = NoiseSchedule.make(schedule, timesteps)
    models = exact_models(mixture, noise_schedule, delta)
    threshold = hdr_log_threshold(mixture, y)
    xs = np.linspace(EXTENT[0], EXTENT[1], 300)
    ys = np.linspace(EXTENT[2], EXTENT[3], 300)
    grid = torch.from_numpy(np.stack(np.meshgrid(xs, ys), axis=-1))
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    density = mixture.log_prob(grid, y).exp().numpy()
    other = mixture.log_prob(grid, 1 - y).exp().numpy()
    sns.set_theme(style="white")
    colour, grey = sns.color_palette("deep")[0], "0.6"
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.9), sharex=True, sharey=True,
                             squeeze=False)
    drawn = {}
    for ax, method in zip(axes[0], methods):
        samples = sample_method(method, models, w, noise_schedule, y, n, steps=steps, seed=seed, options=options)
        drawn[method] = {"samples": samples,
                         **coverage_and_tails(samples, mixture, y, log_threshold=threshold, seed=seed)}
        ax.contour(xs, ys, other, levels=_mass_levels(other, cell, (0.9, 0.5)), colors=[grey], linewidths=0.6)
        ax.contour(xs, ys, density, levels=_mass_levels(density, cell, (0.99, 0.9, 0.5, 0.1)), colors=["k"],
                   linewidths=0.7)
        ax.scatter(samples[:, 0], samples[:, 1], s=2, color=colour, alpha=0.35, linewidths=0)
        tv, tails = drawn[method]["tv"], drawn[method]["tails"]
        ax.text(0.03, 0.03, f"coverage TV {_fmt(tv)}\noutside 99% HDR {_fmt(tails, percent=True)}",
                transform=ax.transAxes, fontsize=7.5, va="bottom",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "linewidth": 0})
        scale = "" if method == "unguided" else f", w = {w:g} (scale {1 + w:g})"
        ax.set_title(TITLES.get(method, method) + scale, fontsize=9)
        drawn[method]["title"] = ax.get_title()
        ax.set_xlabel("$x_1$")
        ax.set_aspect("equal")
        ax.set_xlim(*EXTENT[:2])
        ax.set_ylim(*EXTENT[2:])
    axes[0, 0].set_ylabel("$x_2$")
    lo, hi = options["interval_sigma_lo"], options["interval_sigma_hi"]
    fig.suptitle(f"Class {y} of an exact 2-D mixture of thin branches (Karras et al. 2024's toy): {n} DDIM samples "
                 f"({steps} steps, no clipping) per method over the exact p(x|y) (HDR contours 10/50/90/99%; grey: "
                 f"the other class)\nweak model: C + {delta:g} I; interval: sigma in ({lo:g}, {hi:g}]; APG: eta "
                 f"{options['apg_eta']:g}, r {options['apg_norm_threshold']}, beta {options['apg_momentum']:g}; "
                 "coverage TV: branch shares vs weights (0 = exact)", fontsize=8)
    fig.tight_layout()
    Path(output_png).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, output_png, dpi=130)
    return drawn



def _fmt(estimate: Estimate, percent: bool = False) -> str:
    lo, hi = estimate.interval()
    if percent:
        return f"{100 * estimate.value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{estimate.value:.3f} [{lo:.3f}, {hi:.3f}]"


def format_summary(drawn: dict) -> str:
    """One line per method: TV and tail fraction with intervals, the branch shares."""
    lines = []
    for method, row in drawn.items():
        shares = " ".join(f"{s:.3f}" for s in row["shares"])
        lines.append(f"{method:14s} TV {_fmt(row['tv'])}  outside 99% HDR {_fmt(row['tails'], percent=True)}  "
                     f"shares {shares}")
    return "\n".join(lines)
