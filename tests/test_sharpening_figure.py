"""sharpening_figure: the rejection sampler draws the densities it names, (b) and (c) differ where
docs/equations.md part 6 says, guidance sits where the doc says, and the figure is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import GaussianMixture, three_class_mixture
from diffguide.reports.mixture_figure import plotting_grid
from diffguide.reports.sharpening_figure import (acceptance_probability, draw_sharpening_figure, exact_tilted_samples,
                                                 grid_mean, guided_samples, mean_and_se, sharpening_summary,
                                                 tilted_density)

# 1-D, two classes with equal variance: p(0 | x) = sigmoid(a), a = log(pi_0 / pi_1) - 2 m x / var.
M, VAR, PI0 = 1.0, 0.8, 0.3
WIDE = (-7.0, 7.0, -7.0, 7.0)


def line_mixture() -> GaussianMixture:
    f64 = torch.float64
    return GaussianMixture(torch.tensor([[-M], [M]], dtype=f64), torch.full((2, 1, 1), VAR, dtype=f64),
                           torch.tensor([PI0, 1 - PI0], dtype=f64))


def logit0(x: np.ndarray) -> np.ndarray:
    return np.log(PI0 / (1 - PI0)) - 2 * M * x / VAR


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


@pytest.mark.parametrize("s", [1.0, 2.5, 6.0])
def test_acceptance_probability_is_the_closed_form_of_a_two_class_line(s):
    x = np.linspace(-4, 4, 81)
    a = logit0(x)
    points = torch.from_numpy(x[:, None])
    for y, logit in ((0, a), (1, -a)):
        # normalised: p^s / (p^s + (1 - p)^s) is the logistic of s times the logit; unnormalised: p^s
        np.testing.assert_allclose(acceptance_probability(line_mixture(), y, s, points, normalised=True).numpy(),
                                   sigmoid(s * logit), rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(acceptance_probability(line_mixture(), y, s, points, normalised=False).numpy(),
                                   sigmoid(logit) ** s, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("normalised", [True, False])
def test_the_fraction_kept_is_the_integral_of_the_acceptance_probability(normalised):
    s = 3.0
    x = np.linspace(-12, 12, 20001)
    prior = (PI0 * np.exp(-(x + M) ** 2 / (2 * VAR)) + (1 - PI0) * np.exp(-(x - M) ** 2 / (2 * VAR))) / np.sqrt(
        2 * np.pi * VAR)
    keep = sigmoid(s * logit0(x)) if normalised else sigmoid(logit0(x)) ** s
    expected = np.trapezoid(prior * keep, x)
    draws, rate = exact_tilted_samples(line_mixture(), 0, s, 20000, normalised=normalised, seed=3)
    proposals = 20000 / rate
    assert draws.shape == (20000, 1)
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / proposals), (rate, expected)
    # and the kept draws have the tilted density's mean
    mean, se = mean_and_se(draws)
    expected_mean = np.trapezoid(x * prior * keep, x) / expected
    assert abs(mean[0] - expected_mean) < 4 * se[0], (mean, expected_mean)


def test_draws_are_seeded():
    first, _ = exact_tilted_samples(three_class_mixture(), 0, 3.0, 500, normalised=True, seed=7)
    again, _ = exact_tilted_samples(three_class_mixture(), 0, 3.0, 500, normalised=True, seed=7)
    other, _ = exact_tilted_samples(three_class_mixture(), 0, 3.0, 500, normalised=True, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def grid_moments(mixture, y, s, normalised):
    xs, ys, points = plotting_grid(WIDE, resolution=400)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return grid_mean(tilted_density(mixture, y, s, points, cell, normalised=normalised), points, cell)


@pytest.mark.parametrize("normalised", [True, False])
def test_samples_of_b_and_c_have_the_mean_of_the_numerically_integrated_density(normalised):
    mixture = three_class_mixture()
    draws, _ = exact_tilted_samples(mixture, 0, 3.0, 4000, normalised=normalised, seed=11)
    mean, se = mean_and_se(draws)
    expected = grid_moments(mixture, 0, 3.0, normalised)
    assert np.all(np.abs(mean - expected) < 4 * se), (mean, expected, se)


def test_b_and_c_are_one_density_at_s_1_and_differ_at_s_3_where_the_doc_says():
    mixture = three_class_mixture()
    x = mixture.sample(torch.arange(3).repeat(100), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(acceptance_probability(mixture, 0, 1.0, x, normalised=True),
                               acceptance_probability(mixture, 0, 1.0, x, normalised=False), rtol=1e-12)
    np.testing.assert_allclose(grid_moments(mixture, 0, 1.0, True), grid_moments(mixture, 0, 1.0, False), rtol=1e-10)
    # s = 3: Z(x) < 1 is smallest where the classes overlap, so (b) keeps the overlap and (c) drops it:
    # (c) lies further from the other classes (towards -x_1, -x_2) and is more confidently class 0.
    b, c = grid_moments(mixture, 0, 3.0, True), grid_moments(mixture, 0, 3.0, False)
    assert np.all(c < b - 0.1), (b, c)
    drawn = {3.0: {"guided": exact_tilted_samples(mixture, 0, 3.0, 2000, normalised=True, seed=1)[0],
                   "normalised": exact_tilted_samples(mixture, 0, 3.0, 2000, normalised=True, seed=2)[0],
                   "unnormalised": exact_tilted_samples(mixture, 0, 3.0, 2000, normalised=False, seed=3)[0]}}
    rows = {r["set"]: r for r in sharpening_summary(mixture, 0, drawn)}
    c_minus_b = rows["unnormalised"]["confidence_minus_normalised"]
    assert c_minus_b > 5 * rows["unnormalised"]["se_minus_normalised"]  # measured 0.07 +- 0.005
    # two independent draws of (b) agree within their SE of a difference
    assert abs(rows["guided"]["confidence_minus_normalised"]) < 4 * rows["guided"]["se_minus_normalised"]


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_guidance_is_exact_at_s_1_and_sharper_than_c_at_s_3():
    mixture, schedule = three_class_mixture(), NoiseSchedule.make("cosine", 1000)
    drawn = {s: {"guided": guided_samples(mixture, schedule, 0, s, 1000, steps=100, seed=0),
                 "normalised": exact_tilted_samples(mixture, 0, s, 1000, normalised=True, seed=0)[0],
                 "unnormalised": exact_tilted_samples(mixture, 0, s, 1000, normalised=False, seed=1)[0]}
             for s in (1.0, 3.0)}
    rows = {(r["s"], r["set"]): r for r in sharpening_summary(mixture, 0, drawn)}
    exact = rows[1.0, "guided"]  # s = 1 with exact models is the conditional model: p(x | y) = (b) = (c)
    assert abs(exact["confidence_minus_normalised"]) < 4 * exact["se_minus_normalised"]
    assert abs(exact["mean_x1"] - grid_moments(mixture, 0, 1.0, True)[0]) < 4 * exact["se_x1"]
    guided = rows[3.0, "guided"]  # confidences measured 0.988, (c) 0.953, (b) 0.885
    assert guided["confidence_minus_unnormalised"] > 4 * guided["se_minus_unnormalised"]
    assert guided["confidence_minus_normalised"] > 2 * guided["confidence_minus_unnormalised"]


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_the_figure_is_written_with_samples_in_every_panel(tmp_path):
    path = tmp_path / "sharpening.png"
    drawn, rows = draw_sharpening_figure(path, (1.0, 3.0), 0, 200, steps=20, resolution=60)
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert {s: set(sets) for s, sets in drawn.items()} == {1.0: {"guided", "normalised", "unnormalised"},
                                                         3.0: {"guided", "normalised", "unnormalised"}}
    assert all(x.shape == (200, 2) for sets in drawn.values() for x in sets.values())
    assert len(rows) == 6
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    height, width, _ = rgb.shape
    assert 500 < height < 900 and 800 < width < 1300  # 2 x 3 panels of about 3.4 x 3.5 in at 100 dpi
    # Each column shows its own set's points (seaborn "deep": (a) blue, (b) orange, (c) green) over
    # the same contours of (b) (orange) and (c) (green): its own hue has measured ~500 to 1600 pixels
    # more than in the other columns (with 2 points instead of 200, 20 or fewer).
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hues = {"guided": (b > r + 20) & (b > g + 5), "normalised": (r > g + 20) & (r > b + 40),
            "unnormalised": (g > r + 15) & (g > b)}
    for column, name in enumerate(("guided", "normalised", "unnormalised")):
        counts = [int(hues[name][:, i * width // 3:(i + 1) * width // 3].sum()) for i in range(3)]
        others = [count for i, count in enumerate(counts) if i != column]
        assert counts[column] > max(others) + 250, (name, counts)
