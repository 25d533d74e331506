"""cg_laplace (diffguide.guidance.methods.second_order): the second-order rule as the ancestral sampler
draws it on trained models (Hessian-vector products, Lanczos) is the exact Laplace rule of the one-step
study (diffguide.exact.step_rules.laplace, matrices formed in closed form) on the mixtures, in float64,
to 1e-12: its mean, its covariance, and where it falls back to the mean shift. Its parts: Lanczos's
f(A) v is the eigendecomposition's, and the Hessian-vector product is the Hessian's.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffguide.diffusion.samplers import ddpm_step, last_step_shift_variance, sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.exact.labelled_mixture import LabelledMixture
from diffguide.exact.step_rules import StepSetting, classifier_hessian, laplace, mean_shift
from diffguide.exact.transition import ddpm_sigma2
from diffguide.guidance.methods.second_order.wrapper import (LaplaceCondFn, apply_function, build_cg_laplace,
                                                             gradient_and_hessian_product)
from diffguide.guidance.wrappers import ClipDenoised, WithoutLabels

SCHEDULE = NoiseSchedule.make("cosine", 1000)


def setup(dim: int, t: int, t_next: int, scale: float, points: int = 6, seed: int = 11, spread: float = 1.3):
    gen = torch.Generator().manual_seed(seed)
    mixture = random_mixture(4, dim, gen)
    step = SCHEDULE.steps([t, t_next], torch.zeros(1, dtype=torch.float64))[0]
    x_t = torch.randn(points, dim, generator=gen, dtype=torch.float64) * spread
    y = torch.arange(points) % 4
    setting = StepSetting(x_t, y, float(step.abar), float(step.abar_prev), float(ddpm_sigma2(step.abar, step.abar_prev)),
                          scale)
    return mixture, LabelledMixture.one_per_class(mixture), step, setting


def drawn(mixture, step, setting, noise, counts=None):
    """Our ancestral step with the Laplace hook (k = d Lanczos iterations: the exact rule); ``counts``
    collects (rows drawn, rows that fell back)."""
    eps = MixtureEpsModel(mixture, SCHEDULE)(setting.x_t, torch.full((len(setting.y),), step.t), None)
    cond_fn = LaplaceCondFn(MixtureClassifier(mixture, SCHEDULE), setting.scale, lanczos_steps=setting.x_t.shape[1])
    x_next = ddpm_step(setting.x_t, eps, step=step, sigma2=step.beta_tilde, noise=noise, cond_fn=cond_fn,
                       labels=setting.y)
    if counts is not None:
        counts.append((cond_fn.row_steps, cond_fn.fallbacks))
    return x_next


def mean_and_cov(mixture, step, setting):
    """The step's mean (its value at z = 0) and covariance M M^T, M's columns the response to z = e_i."""
    x_t = setting.x_t
    centre = drawn(mixture, step, setting, torch.zeros_like(x_t))
    columns = [drawn(mixture, step, setting, torch.eye(x_t.shape[1], dtype=torch.float64)[i].expand_as(x_t)) - centre
               for i in range(x_t.shape[1])]
    response = torch.stack(columns, -1)  # [B, d, d]: sqrt(Sigma) A^-1/2
    return centre, response @ response.transpose(1, 2), response


@pytest.mark.parametrize("dim,scale", [(1, 2.5), (2, 2.5), (3, 1.0), (3, 4.0)])
def test_the_sampled_laplace_step_is_the_exact_laplace_rule(dim, scale):
    mixture, labelled, step, setting = setup(dim, 400, 360, scale)
    rule = laplace(labelled, setting)
    assert not rule.fallback.any()
    mean, cov, response = mean_and_cov(mixture, step, setting)
    assert torch.allclose(mean, rule.mean, rtol=0, atol=1e-12)
    assert torch.allclose(cov, rule.cov, rtol=0, atol=1e-12)
    assert torch.allclose(response, response.transpose(1, 2), rtol=0, atol=1e-12)  # the symmetric root A^-1/2
    assert not torch.allclose(mean, mean_shift(labelled, setting).mean, atol=1e-6)  # the Hessian moved it


def test_where_the_precision_is_not_positive_definite_the_sampled_step_falls_back_as_the_rule_does():
    """A long step at a large scale (t = 700 -> 500, s = 30): log p(y | x)^s curves up faster than
    1 / Sigma for some points, which both take the mean shift (with Sigma I noise); the rest the rule."""
    mixture, labelled, step, setting = setup(2, 700, 500, 30.0, points=200, seed=3, spread=1.5)
    rule = laplace(labelled, setting)
    assert 0 < int(rule.fallback.sum()) < 200
    mean, cov, _ = mean_and_cov(mixture, step, setting)
    # Near the boundary P is ill-conditioned (A's eigenvalues down to 0.003, condition number ~2,000),
    # so the two solves (Cholesky there, Lanczos here) agree to round-off times that: 1e-9 relative.
    assert torch.allclose(mean, rule.mean, rtol=1e-9, atol=1e-12)
    assert torch.allclose(cov, rule.cov, rtol=1e-9, atol=1e-12)
    counts = []
    drawn(mixture, step, setting, torch.zeros_like(setting.x_t), counts)
    assert counts == [(200, int(rule.fallback.sum()))]  # the hook counts what it fell back on


def test_lanczos_applies_powers_of_a_symmetric_matrix_and_flags_an_indefinite_one():
    gen = torch.Generator().manual_seed(5)
    roots = torch.randn(3, 5, 5, generator=gen, dtype=torch.float64)
    matrices = roots @ roots.transpose(1, 2) + 0.5 * torch.eye(5, dtype=torch.float64)
    matrices[2] -= 3 * torch.eye(5, dtype=torch.float64) * matrices[2].diagonal().max()  # negative definite
    vectors = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    product = lambda v: (matrices @ v[..., None])[..., 0]  # noqa: E731
    for power in (-1.0, -0.5, 1.0):
        values, positive = apply_function(product, vectors, 5, power)
        eigenvalues, eigenvectors = torch.linalg.eigh(matrices[:2])
        expected = eigenvectors @ (eigenvalues**power)[..., None].mul(eigenvectors.transpose(1, 2) @ vectors[:2, :, None])
        assert torch.allclose(values[:2], expected[..., 0], rtol=0, atol=1e-10)
        assert positive.tolist() == [True, True, False]
    identity, positive = apply_function(lambda v: 2 * v, vectors, 4, -1.0)  # the Krylov space closes at once
    assert torch.allclose(identity, vectors / 2, rtol=0, atol=1e-15) and positive.all()
    zero, positive = apply_function(product, torch.zeros(3, 5, dtype=torch.float64), 3, -1.0)
    assert torch.equal(zero, torch.zeros(3, 5, dtype=torch.float64)) and positive.all()


def test_the_hessian_vector_product_is_the_classifiers_hessian():
    mixture, labelled, step, setting = setup(3, 400, 360, 1.0)
    t = torch.full((6,), step.t)
    gradient, product = gradient_and_hessian_product(MixtureClassifier(mixture, SCHEDULE), setting.x_t, t, setting.y)
    hessian = classifier_hessian(labelled, setting.x_t, setting.abar_column(setting.abar_t), setting.y)
    v = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(product(v), (hessian @ v[..., None])[..., 0], rtol=0, atol=1e-12)
    assert torch.allclose(gradient, labelled.class_log_prob_grad(setting.x_t, setting.abar_column(setting.abar_t),
                                                                 setting.y), rtol=0, atol=1e-12)


class TinyAttentionClassifier(nn.Module):
    """A classifier with scaled-dot-product attention, as the noisy classifier's lowest level has: the
    Hessian-vector product must go through it twice (CPU's fused attention kernel is not twice
    differentiable)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Linear(1, 8), nn.Linear(8, 3)

    def forward(self, x, t):
        tokens = self.embed(x.flatten(1)[..., None])  # [B, d, 8]
        mixed = nn.functional.scaled_dot_product_attention(tokens, tokens, tokens)
        return self.head(mixed.mean(1))


def test_the_hessian_product_goes_through_attention_and_is_symmetric():
    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    _, product = gradient_and_hessian_product(TinyAttentionClassifier(), x, torch.zeros(4), torch.tensor([0, 1, 2, 0]))
    u, v = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(3))
    assert torch.allclose((u * product(v)).sum(1), (v * product(u)).sum(1), rtol=1e-4, atol=1e-6)
    assert product(v).abs().sum() > 0


def test_at_scale_zero_it_is_the_mean_shifts_unguided_model_and_without_a_classifier_it_says_so():
    model = MixtureEpsModel(random_mixture(3, 2, torch.Generator().manual_seed(0)), SCHEDULE)
    guided = build_cg_laplace({"eps_model": model}, 0.0, SCHEDULE, clip_x0=True, options={})
    assert guided.cond_fn is None and isinstance(guided.model, ClipDenoised)
    assert isinstance(guided.model.model, WithoutLabels)
    with pytest.raises(ValueError, match="cg_laplace: models\\['classifier'\\] is missing"):
        build_cg_laplace({"eps_model": model}, 1.0, SCHEDULE, clip_x0=True, options={})


def dense_laplace_step(x, mean, sigma2, scale, gradient, hessian, noise):
    """The seed's rule written with matrices (P = I / Sigma - s H formed, inverted and rooted): the
    reference the sampled chain must equal; the mean shift where P is not positive definite."""
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    precision = eye / sigma2 - scale * hessian
    values, vectors = torch.linalg.eigh(precision)
    positive = values.min(dim=1).values > 0
    cov = vectors @ torch.diag_embed(1 / values) @ vectors.transpose(1, 2)
    laplace_mean = (cov @ (mean / sigma2 + scale * gradient - scale * (hessian @ x[..., None])[..., 0])[..., None])[..., 0]
    root = vectors @ torch.diag_embed(values.clamp_min(1e-300) ** -0.5) @ vectors.transpose(1, 2)
    step = laplace_mean if noise is None else laplace_mean + (root @ noise[..., None])[..., 0]
    shifted = mean + sigma2 * scale * gradient + (0 if noise is None else sigma2**0.5 * noise)
    return torch.where(positive[:, None], step, shifted)


def test_a_whole_clipped_chain_is_the_dense_rule_step_by_step():
    """Five ancestral steps with the pipeline's defaults (x0 clipped before the rule, guided-diffusion's
    last-step Sigma): the sampler with cg_laplace's hook equals the dense rule chained by hand."""
    mixture = random_mixture(3, 2, torch.Generator().manual_seed(0), spread=1.5)
    labelled = LabelledMixture.one_per_class(mixture)
    models = {"eps_model": MixtureEpsModel(mixture, SCHEDULE), "classifier": MixtureClassifier(mixture, SCHEDULE)}
    guided = build_cg_laplace(models, 3.0, SCHEDULE, clip_x0=True, options={"laplace_lanczos_steps": 2})
    timesteps, labels = [999, 799, 599, 399, 199, 0], torch.arange(8) % 3
    start = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    draws = torch.randn(5, 8, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    supply = iter(draws)
    sampled = sample_ddpm(guided.model, start, timesteps, schedule=SCHEDULE, labels=labels,
                          noise=lambda x: next(supply), cond_fn=guided.cond_fn, progress=False)
    steps = SCHEDULE.steps(timesteps, like=start)
    x, clipped = start, ClipDenoised(WithoutLabels(models["eps_model"]), SCHEDULE)
    for index, step in enumerate(steps):
        t = torch.full((8,), step.t)
        mean = step.posterior_mean(step.predict_x0(x, clipped(x, t, labels)), x)
        sigma2 = float(last_step_shift_variance(steps) if step.is_last else step.beta_tilde)
        abar = torch.full((8, 1), float(step.abar), dtype=torch.float64)
        gradient = labelled.class_log_prob_grad(x, abar, labels)
        hessian = classifier_hessian(labelled, x, abar, labels)
        x = dense_laplace_step(x, mean, sigma2, 3.0, gradient, hessian, None if step.is_last else draws[index])
    assert torch.allclose(sampled, x, rtol=0, atol=1e-12)
    unguided = build_cg_laplace(models, 0.0, SCHEDULE, clip_x0=True, options={})
    supply = iter(draws)
    plain = sample_ddpm(unguided.model, start, timesteps, schedule=SCHEDULE, labels=labels,
                        noise=lambda x: next(supply), cond_fn=None, progress=False)
    assert (sampled - plain).abs().max() > 0.1  # it guided
