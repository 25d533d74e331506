"""The 2-D toy figure of the guidance testbed (issue 16, deliverable 2; Karras et al. 2024's toy in
H&S Figure 2 style): its exact models, its coverage / tail metrics, and what the methods do.

Measured on the figure's setting (class 0, w = 3, 50 DDIM steps, 3000 samples; coverage TV with
its half-sample interval, fraction outside the exact 99% HDR with its Wilson interval):
    conditional model  TV 0.026 [0.010, 0.041]  tails 0.7% [0.4, 1.0]
    CFG                TV 0.380 [0.366, 0.393]  tails 1.1% [0.8, 1.6]   (the root branch, shared with
                                                                          class 1, drops to 0.3%)
    autoguidance       TV 0.021 [0.007, 0.034]  tails 0.0% [0.0, 0.1]
    interval           TV 0.019 [0.005, 0.034]  tails 0.6% [0.4, 0.9]
    APG                TV 0.106 [0.090, 0.121]  tails 0.7% [0.5, 1.1]
The fixture below uses 1500 samples and 25 steps to stay fast (there: TV 0.022, 0.372, 0.029, 0.006,
0.114 and tails 1.2%, 1.4%, 0.3%, 1.4%, 0.7% in the same order); the assertions hold with margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.wrappers import NULL_LABEL
from diffguide.reports.testbed_toy_figure import (DEFAULT_METHODS, ClassMixture, ClassMixtureEpsModel,
                                                  coverage_and_tails, draw_toy_figure, exact_models, hdr_log_threshold,
                                                  toy_mixture)

F64 = torch.float64
W = 3.0


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.make("cosine", 1000)


@pytest.fixture(scope="module")
def threshold():
    return hdr_log_threshold(toy_mixture(), 0)


def noisy_points(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(n, 2, generator=g, dtype=F64), torch.randint(0, 1000, (n,), generator=g)


# --------------------------------------------------------------------------- the exact models


def test_toy_has_two_classes_of_several_thin_branches():
    mixture = toy_mixture()
    assert mixture.num_classes == 2
    for y in range(2):
        sub = mixture.class_mixture(y)
        assert sub.means.shape[0] >= 4
        assert abs(mixture.components.weights[mixture.members(y)].sum().item() - 0.5) < 1e-12
        assert (sub.eigvals[:, 0] / sub.eigvals[:, 1] < 0.05).all()  # thin: across var < 5% of along var


def test_weak_model_with_zero_delta_is_the_strong_model(schedule):
    mixture = toy_mixture()
    x, t = noisy_points(64, 0)
    y = torch.tensor([0, 1, NULL_LABEL, 1] * 16)
    strong = ClassMixtureEpsModel(mixture, schedule)(x, t, y)
    same = exact_models(mixture, schedule, 0.0)["weak_model"](x, t, y)
    assert (same - strong).abs().max().item() < 1e-12
    weak = exact_models(mixture, schedule, 0.05)["weak_model"](x, t, y)
    assert (weak - strong).abs().max().item() > 1e-3  # broadening changes eps


def test_class_eps_is_minus_sigma_grad_log_class_density(schedule):
    """eps(x, t, y) = -sqrt(1 - abar_t) grad log p_t(x | y), p_t(x | y) the noised sub-mixture of
    class y (y = NULL_LABEL: all components), by autograd through torch.distributions."""
    mixture = toy_mixture()
    model = ClassMixtureEpsModel(mixture, schedule)
    x, t = noisy_points(30, 1)
    y = torch.tensor([0, 1, NULL_LABEL] * 10)
    eps = model(x, t, y)
    c = mixture.components
    for i in range(len(x)):
        abar = schedule.alphas_cumprod[t[i]]
        keep = torch.ones(len(c.weights), dtype=torch.bool) if y[i] == NULL_LABEL else mixture.classes == y[i]
        covs = abar * c.covs[keep] + (1 - abar) * torch.eye(2, dtype=F64)
        components = MultivariateNormal(abar.sqrt() * c.means[keep], covs)
        density = MixtureSameFamily(Categorical(probs=c.weights[keep]), components)
        xi = x[i].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(density.log_prob(xi), xi)
        assert (eps[i] + (1 - abar).sqrt() * grad).abs().max().item() < 1e-12, i


def test_eps_model_refuses_unknown_labels(schedule):
    x, t = noisy_points(2, 2)
    with pytest.raises(ValueError, match="labels"):
        ClassMixtureEpsModel(toy_mixture(), schedule)(x, t, torch.tensor([0, 5]))


# --------------------------------------------------------------------------- the metrics


def test_metrics_on_exact_draws_match_the_class(threshold):
    """Exact draws of p(x | 0): every soft branch share within 4 standard errors of its weight, TV
    small, and the fraction outside the 99% HDR covers 1% with its Wilson interval."""
    mixture = toy_mixture()
    draws = mixture.sample(0, 4000, torch.Generator().manual_seed(7)).numpy()
    result = coverage_and_tails(draws, mixture, 0, log_threshold=threshold)
    resp = mixture.responsibilities(torch.from_numpy(draws), 0).numpy()
    se = resp.std(0) / np.sqrt(len(draws))
    assert (np.abs(result["shares"] - result["weights"]) < 4 * se).all(), (result["shares"], result["weights"])
    assert result["tv"].value < 0.03
    lo, hi = result["tails"].interval()
    assert lo <= 0.01 <= hi, (result["tails"].value, lo, hi)
    assert result["tails"].proportion


def test_metrics_see_a_dropped_branch_and_broad_tails(threshold):
    """Draws that skip branch 0 have TV = its weight (up to its overlap with the others and the sample
    noise); draws of the broadened mixture have more than 1% outside the HDR."""
    mixture = toy_mixture()
    g = torch.Generator().manual_seed(8)
    sub = mixture.class_mixture(0)
    branches = torch.multinomial(sub.weights[1:], 4000, replacement=True, generator=g) + 1
    dropped = coverage_and_tails(sub.sample(branches, g).numpy(), mixture, 0, log_threshold=threshold)
    assert abs(dropped["tv"].value - sub.weights[0].item()) < 0.02, dropped["tv"].value
    assert dropped["shares"][0] < 0.01
    broad = mixture.broadened(0.05).sample(0, 4000, g).numpy()
    assert coverage_and_tails(broad, mixture, 0, log_threshold=threshold)["tails"].interval()[0] > 0.05


def test_broadened_mixture_keeps_means_weights_and_classes():
    mixture = toy_mixture()
    weak = mixture.broadened(0.1)
    assert isinstance(weak, ClassMixture)
    assert torch.equal(weak.components.means, mixture.components.means)
    assert torch.equal(weak.classes, mixture.classes)
    assert (weak.components.covs - mixture.components.covs - 0.1 * torch.eye(2, dtype=F64)).abs().max() < 1e-15


# --------------------------------------------------------------------------- the figure


@pytest.fixture(scope="module")
def figure(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "testbed_toy.png"
    return path, draw_toy_figure(path, w=W, n=1500, steps=25)


def test_figure_is_written_with_one_panel_per_method(figure):
    path, drawn = figure
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000
    assert path.with_suffix(".pdf").stat().st_size > 10_000
    assert list(drawn) == list(DEFAULT_METHODS)
    for method, row in drawn.items():
        assert row["samples"].shape == (1500, 2) and np.isfinite(row["samples"]).all()
        assert (f"w = {W:g}" in row["title"]) == (method != "unguided"), row["title"]


def test_every_method_acts(figure):
    """Each guided panel differs from the conditional model's (same x_T, deterministic DDIM)."""
    _, drawn = figure
    base = drawn["unguided"]["samples"]
    for method in DEFAULT_METHODS[1:]:
        moved = np.linalg.norm(drawn[method]["samples"] - base, axis=1).mean()
        assert moved > 0.03, (method, moved)


def test_unguided_ddim_samples_cover_the_class(figure):
    """The exact conditional model under 25 DDIM steps: TV near 0 and about 1% outside the 99% HDR.
    Deterministic DDIM runs slightly light in the tails (0.7% [0.55, 0.87] at 10000 samples and 50
    steps), so the tail bound is 0.4% .. 1.6%, not the exact draws' Wilson check."""
    _, drawn = figure
    row = drawn["unguided"]
    assert row["tv"].interval()[0] < 0.02, row["tv"].value
    assert 0.004 <= row["tails"].value <= 0.016, row["tails"].value


def test_cfg_at_large_w_loses_coverage(figure):
    """CFG pushes class 0 away from class 1, so the branch the two classes share loses its samples:
    the TV intervals of CFG and the unguided model are disjoint, by a wide margin."""
    _, drawn = figure
    cfg, unguided = drawn["cfg"], drawn["unguided"]
    assert cfg["tv"].interval()[0] > unguided["tv"].interval()[1] + 0.1, (cfg["tv"].value, unguided["tv"].value)
    assert cfg["shares"][0] < 0.25 * cfg["weights"][0]  # the root branch, crossing class 1's root


def test_autoguidance_keeps_more_coverage_than_cfg_at_the_same_w(figure):
    """Karras et al.'s claim on their toy, holding on ours: at the same w, autoguidance's TV interval lies
    below CFG's, and it concentrates samples onto the branches (fewer outside the HDR than unguided)."""
    _, drawn = figure
    auto, cfg, unguided = drawn["autoguidance"], drawn["cfg"], drawn["unguided"]
    assert auto["tv"].interval()[1] < cfg["tv"].interval()[0], (auto["tv"].value, cfg["tv"].value)
    assert auto["tails"].value < unguided["tails"].value


def test_interval_guidance_keeps_coverage_that_cfg_loses(figure):
    """Guiding only for sigma in (0.05, 0.5] leaves the branch choice to the conditional model: its TV
    interval lies below CFG's at the same w."""
    _, drawn = figure
    assert drawn["cfg_interval"]["tv"].interval()[1] < drawn["cfg"]["tv"].interval()[0]
