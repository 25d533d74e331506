"""Independent oracles for the forward process, the training losses and the inputs of the metrics.

Each expectation here comes from a closed form written out in the test, a hand-computed number,
or another library's own code (diffusers' beta tables), never from our code's output, so a
one-line bug in ``schedules``, ``losses`` or ``metrics`` changes a number these tests check.
The mutation audit of issue 13 (``make mutate``) found these bugs passing every earlier test:
the eps target and a missing sqrt in q_sample (the training tests compare one run with another),
the cosine offset (the diffusers step tests inject our own table into the scheduler), and the
[-1, 1] input range of the evaluation classifier.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from diffguide.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas
from diffguide.evaluation import metrics
from diffguide.guidance.wrappers import NULL_LABEL
from diffguide.training.losses import augment_images, diffusion_loss, min_snr_weights, noisy_classifier_loss

# --------------------------------------------------------------------------- schedules vs diffusers

def diffusers_betas(**kwargs) -> np.ndarray:
    """diffusers' own table (float32), built by its DDPMScheduler from the schedule's name."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**kwargs).betas.double().numpy()


@pytest.mark.parametrize("timesteps", [1000, 50])
def test_cosine_betas_equal_diffusers_squaredcos_cap_v2(timesteps):
    """diffusers' ``squaredcos_cap_v2`` is Nichol & Dhariwal's cosine schedule, offset 0.008,
    betas capped at 0.999; its table is float32, so agreement is to float32's rounding."""
    expected = diffusers_betas(num_train_timesteps=timesteps, beta_schedule="squaredcos_cap_v2")
    ours = cosine_betas(timesteps).numpy()
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=2e-7, atol=0)
    assert ours[-1] == 0.999  # the cap, hit at t = T - 1 where abar reaches 0


def test_linear_betas_equal_diffusers_linear_at_1000_steps():
    """DDPM's linear schedule, 1e-4 to 0.02 over T = 1000: diffusers' ``linear`` defaults."""
    expected = diffusers_betas(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    np.testing.assert_allclose(linear_betas(1000).numpy(), expected, rtol=2e-7, atol=0)


@pytest.mark.parametrize("timesteps", [100, 250, 4000])
def test_linear_betas_at_other_lengths_are_diffusers_linear_with_endpoints_rescaled_by_1000_over_t(timesteps):
    """Ours keeps the total noise of T = 1000 (improved-diffusion's ``get_named_beta_schedule``):
    at T steps it is diffusers' ``linear`` from 1e-4 * 1000 / T to 0.02 * 1000 / T."""
    scale = 1000 / timesteps
    expected = diffusers_betas(num_train_timesteps=timesteps, beta_schedule="linear", beta_start=1e-4 * scale,
                               beta_end=0.02 * scale)
    np.testing.assert_allclose(linear_betas(timesteps).numpy(), expected, rtol=2e-7, atol=0)


@pytest.mark.parametrize("timesteps", [1000, 40])
def test_cosine_abar_is_nichol_dhariwal_eq_17(timesteps):
    """abar_t = f(t) / f(0), f(t) = cos^2(((t / T + s) / (1 + s)) * pi / 2), s = 0.008 (N&D eq. 17).
    Our index t = 0 .. T-1 is the step that ends at time (t + 1) / T; the last step is capped."""
    s = 0.008
    f = np.cos((np.arange(timesteps + 1) / timesteps + s) / (1 + s) * np.pi / 2) ** 2
    abar = NoiseSchedule.make("cosine", timesteps).alphas_cumprod.numpy()
    np.testing.assert_allclose(abar[:-1], f[1:-1] / f[0], rtol=1e-10)
    assert abar[-1] == pytest.approx(abar[-2] * (1 - 0.999), rel=1e-12)


def test_linear_abar_is_the_product_of_one_minus_betas():
    betas = 1e-4 + (0.02 - 1e-4) * np.arange(1000) / 999
    np.testing.assert_allclose(NoiseSchedule.make("linear", 1000).alphas_cumprod.numpy(), np.cumprod(1 - betas),
                               rtol=1e-12)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match=r"unknown noise schedule 'quadratic'.*\['cosine', 'linear'\]"):
        NoiseSchedule.make("quadratic", 10)


# --------------------------------------------------------------------------- the forward process by hand

def hand_schedule() -> NoiseSchedule:
    """abar_0 = 0.64, abar_1 = 0.36: sqrt(abar) = 0.8, 0.6 and sqrt(1 - abar) = 0.6, 0.8."""
    return NoiseSchedule(torch.tensor([0.36, 1 - 0.36 / 0.64], dtype=torch.float64))


def test_q_sample_is_sqrt_abar_x0_plus_sqrt_one_minus_abar_eps():
    schedule = hand_schedule()
    assert schedule.timesteps == 2
    x0 = torch.tensor([[2.0], [2.0], [2.0], [-1.0]], dtype=torch.float64)
    eps = torch.tensor([[0.5], [0.5], [0.5], [3.0]], dtype=torch.float64)
    t = torch.tensor([-1, 0, 1, 1])
    # t = -1 is before any noise; 0.8 * 2 + 0.6 * 0.5 = 1.9; 0.6 * 2 + 0.8 * 0.5 = 1.6;
    # 0.6 * -1 + 0.8 * 3 = 1.8.
    np.testing.assert_allclose(schedule.q_sample(x0, t, eps).numpy().ravel(), [2.0, 1.9, 1.6, 1.8], rtol=1e-12)


def test_predict_x0_and_eps_from_x0_invert_q_sample_by_hand():
    schedule = hand_schedule()
    t = torch.tensor([0, 1])
    x_t = torch.tensor([[1.9], [1.6]], dtype=torch.float64)
    # x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar): (1.9 - 0.3) / 0.8 = 2, (1.6 - 0.4) / 0.6 = 2.
    x0 = schedule.predict_x0(x_t, t, torch.tensor([[0.5], [0.5]], dtype=torch.float64))
    np.testing.assert_allclose(x0.numpy().ravel(), [2.0, 2.0], rtol=1e-12)
    # eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar): (1.9 - 1.6) / 0.6 = 0.5, (1.6 - 1.2) / 0.8 = 0.5.
    eps = schedule.eps_from_x0(x_t, t, torch.tensor([[2.0], [2.0]], dtype=torch.float64))
    np.testing.assert_allclose(eps.numpy().ravel(), [0.5, 0.5], rtol=1e-12)


def test_posterior_is_ddpm_eq_7_by_hand():
    """q(x_0' | x_1, x_0): beta_1 = 1 - 0.36 / 0.64 = 0.4375, mean = sqrt(abar_0) beta_1 / (1 - abar_1) x0
    + sqrt(alpha_1) (1 - abar_0) / (1 - abar_1) x_t = 0.546875 x0 + 0.421875 x_t, variance
    (1 - abar_0) / (1 - abar_1) beta_1 = 0.24609375. From t = 0 to 'before any noise' the
    posterior is x0 itself, variance 0."""
    schedule = hand_schedule()
    x_t = torch.tensor([[3.0], [3.0]], dtype=torch.float64)
    x0 = torch.tensor([[2.0], [2.0]], dtype=torch.float64)
    mean, var = schedule.posterior(x_t, x0, torch.tensor([1, 0]), torch.tensor([0, -1]))
    np.testing.assert_allclose(mean.numpy().ravel(), [0.546875 * 2 + 0.421875 * 3, 2.0], rtol=1e-12)
    np.testing.assert_allclose(var.numpy().ravel(), [0.24609375, 0.0], atol=1e-15)


def test_posterior_over_skipped_steps_uses_the_respaced_beta():
    """From t = 1 straight to t = -1 (abar_prev = 1): beta = 1 - abar_1 = 0.64; the mean is x0."""
    schedule = hand_schedule()
    x_t, x0 = torch.tensor([[3.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64)
    mean, var = schedule.posterior(x_t, x0, torch.tensor([1]), torch.tensor([-1]))
    assert mean.item() == pytest.approx(2.0, rel=1e-12) and var.item() == pytest.approx(0.0, abs=1e-15)


# Step by hand on hand_schedule, t -> t': beta = 1 - abar_t / abar_t', beta~ = beta (1 - abar_t') / (1 - abar_t),
# mu~ = sqrt(abar_t') beta / (1 - abar_t) x0 + sqrt(1 - beta) (1 - abar_t') / (1 - abar_t) x_t (DDPM eqs. 6-7).
HAND_STEPS = {  # (t, t'): abar, abar', sqrt(abar), sqrt(1 - abar), beta, beta~, mean_x0, mean_xt
    (1, 0): (0.36, 0.64, 0.6, 0.8, 0.4375, 0.24609375, 0.546875, 0.421875),
    (0, -1): (0.64, 1.0, 0.8, 0.6, 0.36, 0.0, 1.0, 0.0),
    (1, -1): (0.36, 1.0, 0.6, 0.8, 0.64, 0.0, 1.0, 0.0),
}
STEP_FIELDS = ("abar", "abar_prev", "sqrt_abar", "sqrt_one_minus_abar", "beta", "beta_tilde", "mean_x0", "mean_xt")


@pytest.mark.parametrize("timesteps", [[1, 0], [1], [0]])
def test_sampling_steps_carry_the_hand_computed_coefficients(timesteps):
    schedule = hand_schedule()
    like = torch.zeros(2, 1, dtype=torch.float32)
    steps = schedule.steps(timesteps, like)
    assert [(s.t, s.t_prev) for s in steps] == list(zip(timesteps, timesteps[1:] + [-1]))
    assert [s.is_last for s in steps] == [False] * (len(timesteps) - 1) + [True]
    for step in steps:
        got = [float(getattr(step, name)) for name in STEP_FIELDS]
        np.testing.assert_allclose(got, HAND_STEPS[(step.t, step.t_prev)], rtol=1e-6, atol=1e-7)
        assert all(getattr(step, name).dtype == torch.float32 for name in STEP_FIELDS)
    first = steps[0]
    x0 = torch.tensor([[2.0]])
    x_t = torch.tensor([[{0: 1.9, 1: 1.6}[first.t]]])  # q_sample of x0 = 2, eps = 0.5 (see above)
    if first.t_prev == 0:
        assert first.posterior_mean(x0, torch.tensor([[3.0]])).item() == pytest.approx(0.546875 * 2 + 0.421875 * 3)
    else:  # the last step's posterior is x0 itself
        assert first.posterior_mean(x0, torch.tensor([[3.0]])).item() == pytest.approx(2.0)
    # The step's own inversion of q_sample, on the same hand numbers as the schedule's.
    assert first.predict_x0(x_t, torch.tensor([[0.5]])).item() == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("timesteps", [[0, 1], [2, 0], [1, 1], [], [1, -1]])
def test_sampling_steps_must_descend_within_the_schedule(timesteps):
    with pytest.raises(ValueError, match=re.escape(f"sampling timesteps must descend within [0, 2), got {timesteps}")):
        hand_schedule().steps(timesteps, torch.zeros(1))


def test_abar_is_gathered_per_row_in_the_dtype_and_shape_of_its_reference():
    schedule = hand_schedule()
    like = torch.zeros(3, 2, 4, 4, dtype=torch.float32)
    abar = schedule.abar(torch.tensor([1, -1, 0]), like)
    assert abar.shape == (3, 1, 1, 1) and abar.dtype == torch.float32
    np.testing.assert_allclose(abar.numpy().ravel(), [0.36, 1.0, 0.64], rtol=1e-7)


# --------------------------------------------------------------------------- the diffusion loss

LINEAR = NoiseSchedule.make("linear", 1000)
ABAR = np.cumprod(1 - (1e-4 + (0.02 - 1e-4) * np.arange(1000) / 999))  # the closed form, not our table


class TrueEps(torch.nn.Module):
    """The perfect eps-model for a known x0: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t),
    with abar from the closed form above, plus ``offset`` (a number, or one per image). Records t
    and y of every call."""

    def __init__(self, x0: torch.Tensor, offset=0.0):
        super().__init__()
        self.x0, self.calls = x0.double(), []
        self.offset = torch.as_tensor(offset, dtype=torch.float64).reshape(-1, *[1] * (x0.dim() - 1))

    def forward(self, x_t, t, y):
        self.calls.append((t.clone(), None if y is None else y.clone()))
        abar = torch.from_numpy(ABAR)[t].reshape(-1, *[1] * (x_t.dim() - 1))
        eps = (x_t.double() - abar.sqrt() * self.x0) / (1 - abar).sqrt()
        return (eps + self.offset).float()


def x0_batch(n=64, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_true_eps_has_zero_loss_and_the_target_is_the_noise_not_x0():
    """A model returning exactly the noise q_sample used has loss 0; with q_sample off (a missing
    sqrt) or the target x0 instead of eps, the same model's loss is far from 0."""
    x0 = x0_batch()
    torch.manual_seed(0)
    assert diffusion_loss(LINEAR, None)(TrueEps(x0), x0, torch.zeros(64, dtype=torch.long)).item() < 1e-6


def test_a_model_predicting_x0_has_the_loss_of_x0_minus_eps():
    """Returning x0 instead of eps: the loss is E (x0 - eps)^2 = E x0^2 + 1 (eps independent of x0)."""
    x0 = x0_batch(256)

    class ReturnsX0(torch.nn.Module):
        def forward(self, x_t, t, y):
            return x0

    torch.manual_seed(0)
    loss = diffusion_loss(LINEAR, None)(ReturnsX0(), x0, torch.zeros(256, dtype=torch.long)).item()
    expected = (x0 ** 2).mean().item() + 1  # 4/3 for x0 ~ U(-1, 1); 16,384 draws: SE ~ 0.015
    assert loss == pytest.approx(expected, abs=0.06)


def test_the_loss_is_the_mean_squared_error_per_element():
    """eps + c: every element is off by c, so the loss is c^2 (a mean, not a sum nor |c|)."""
    x0 = x0_batch()
    torch.manual_seed(0)
    loss = diffusion_loss(LINEAR, None)(TrueEps(x0, offset=0.3), x0, torch.zeros(64, dtype=torch.long))
    assert loss.item() == pytest.approx(0.09, rel=1e-4)


def test_min_snr_weighted_loss_weighs_each_image_by_min_snr_gamma_over_snr():
    """Hang et al. 2023: with eps + c_i image i's MSE is c_i^2, so the loss is the mean over
    images of w_t c_i^2, w_t = min(SNR_t, gamma) / SNR_t, SNR_t = abar_t / (1 - abar_t), at the
    t drawn for image i."""
    x0, gamma = x0_batch(), 5.0
    offsets = np.linspace(0.1, 1.0, 64)
    model = TrueEps(x0, offset=offsets)
    torch.manual_seed(1)
    loss = diffusion_loss(LINEAR, None, min_snr_gamma=gamma)(model, x0, torch.zeros(64, dtype=torch.long))
    snr = ABAR[model.calls[0][0].numpy()] / (1 - ABAR[model.calls[0][0].numpy()])
    weights = np.minimum(snr, gamma) / snr
    assert 0 < weights.min() < 1 and weights.max() == 1  # both sides of gamma were drawn
    assert loss.item() == pytest.approx((weights * offsets ** 2).mean(), rel=1e-4)
    assert loss.item() != pytest.approx(weights.mean() * (offsets ** 2).mean(), rel=1e-3)  # pairs, not means


def test_timesteps_are_uniform_over_all_t():
    """20,000 draws: every t is drawn about 20 times, t = 0 and t = T - 1 included (each missed
    with probability e^-20)."""
    x0 = torch.zeros(20000, 1)
    model = TrueEps(x0)
    torch.manual_seed(2)
    diffusion_loss(LINEAR, None)(model, x0, torch.zeros(20000, dtype=torch.long))
    t = model.calls[0][0]
    assert t.dtype == torch.long and t.min() == 0 and t.max() == 999
    assert abs(t.double().mean().item() - 499.5) < 10  # SE 2.0


@pytest.mark.parametrize("min_snr_gamma", [None, 5.0])
def test_labels_reach_the_model_as_given_none_or_null(min_snr_gamma):
    """p_uncond None: an unconditional model, y = None; 0: the labels themselves; 1: all null."""
    x0, y = x0_batch(32), torch.arange(32) % 10
    for p_uncond, expected in ((None, None), (0.0, y), (1.0, torch.full_like(y, NULL_LABEL))):
        model = TrueEps(x0)
        torch.manual_seed(3)
        diffusion_loss(LINEAR, p_uncond, min_snr_gamma=min_snr_gamma)(model, x0, y)
        seen = model.calls[0][1]
        assert (seen is None) if expected is None else torch.equal(seen, expected), p_uncond


def test_noisy_classifier_sees_x_t_of_the_forward_process_and_its_cross_entropy():
    """The classifier gets x_t with per-image mean sqrt(abar_t) x0 and variance 1 - abar_t (x0
    constant per image, 4,096 pixels: SE 0.016), and the loss is the cross-entropy of its logits."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x_t, t):
            seen.append((x_t.double(), t))
            return torch.tensor([[0.0, math.log(3.0)]]).expand(len(x_t), 2)

    x0 = torch.full((16, 1, 64, 64), 1.0)
    torch.manual_seed(4)
    loss = noisy_classifier_loss(LINEAR)(Probe(), x0, torch.ones(16, dtype=torch.long))
    assert loss.item() == pytest.approx(-math.log(0.75), rel=1e-6)  # p(y = 1) = 3 / (1 + 3)
    x_t, t = seen[0]
    abar = ABAR[t.numpy()]
    np.testing.assert_allclose(x_t.mean((1, 2, 3)).numpy(), np.sqrt(abar), atol=0.07)
    np.testing.assert_allclose(x_t.var((1, 2, 3)).numpy(), 1 - abar, atol=0.07)


def classifier_inputs(**options):
    """What the noisy classifier is fed for 20,000 distinct, left-right asymmetric 4x4 images under
    a forward process that barely noises (sqrt(1 - abar_t) < 1e-6 at every t), with the t drawn."""
    quiet = NoiseSchedule(torch.full((1000,), 1e-16, dtype=torch.float64))
    x0 = torch.rand(20000, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x_t, t):
            seen.append((x_t, t))
            return torch.zeros(len(x_t), 2)

    torch.manual_seed(6)
    noisy_classifier_loss(quiet, **options)(Probe(), x0, torch.zeros(20000, dtype=torch.long))
    return x0, *seen[0]


def test_noisy_classifier_draws_every_t_and_augments_only_when_asked():
    x0, x_t, t = classifier_inputs()
    assert t.min() == 0 and t.max() == 999  # each end missed with probability e^-20
    torch.testing.assert_close(x_t, x0, atol=1e-5, rtol=0)  # defaults: no flip, no shift
    x0, x_t, _ = classifier_inputs(random_flip=True)
    flipped = (x_t - x0.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    kept = (x_t - x0).abs().amax((1, 2, 3)) < 1e-5
    assert (flipped | kept).all() and 0.47 < flipped.double().mean() < 0.53  # SE 0.0035
    x0, x_t, _ = classifier_inputs(random_crop=1)
    kept = (x_t - x0).abs().amax((1, 2, 3)) < 1e-5
    assert 0.1 < kept.double().mean() < 0.123  # the shift (0, 0) of 3 x 3: 1/9, SE 0.0022


@pytest.mark.parametrize("pad, numpy_mode", [(1, "reflect"), (2, "reflect"), (4, "edge")])
def test_random_crop_is_a_shifted_window_of_the_reflection_padded_image(pad, numpy_mode):
    """guided-diffusion's shift: pad by p (reflection, or the edge row repeated where p is not
    below the side, as reflection cannot), then a window of the original size at a uniform offset
    in {0 .. 2p}^2. Every output is one of numpy's (2p+1)^2 windows, and all offsets occur."""
    x0 = torch.rand(2000, 1, 4, 4, generator=torch.Generator().manual_seed(7))
    out = augment_images(x0, random_crop=pad, generator=torch.Generator().manual_seed(8))
    padded = np.pad(x0.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=numpy_mode)
    offsets = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    windows = np.stack([padded[:, :, dy:dy + 4, dx:dx + 4] for dy, dx in offsets], axis=1)  # [B, offsets, C, H, W]
    match = (np.abs(windows - out.numpy()[:, None]) < 1e-7).all(axis=(2, 3, 4))
    assert match.any(axis=1).all()
    assert match.any(axis=0).all()  # every offset drawn: 2,000 draws, each of 81 offsets missed w.p. e^-25


def test_augmentation_is_drawn_from_the_generator_it_is_given():
    x0 = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(9))
    outs = []
    for global_seed in (10, 11):
        torch.manual_seed(global_seed)  # the global generator must not matter
        outs.append(augment_images(x0, random_flip=True, random_crop=1, generator=torch.Generator().manual_seed(12)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# --------------------------------------------------------------------------- device placement
# The meta device stands in for a GPU on a machine without one: every tensor these functions make
# must land on their input's device (a table or a random draw left on the CPU fails there).

META = torch.device("meta")


class OnDevice(torch.nn.Module):
    """An eps-model (or, with ``classifier``, a noisy classifier) that checks its inputs' devices."""

    def __init__(self, classifier=False):
        super().__init__()
        self.classifier = classifier

    def forward(self, x, t, y=None):
        assert t.device == x.device and (y is None or y.device == x.device), (x.device, t.device)
        return torch.zeros(len(x), 2, device=x.device) if self.classifier else torch.zeros_like(x)


def test_schedule_tables_are_gathered_on_the_device_of_their_reference():
    schedule = NoiseSchedule.make("cosine", 100)
    like = torch.empty(3, 1, 2, 2, device=META)
    for t in (torch.tensor([0, 5, -1]), torch.tensor([0, 5, -1], device=META)):
        assert schedule.abar(t, like).device == META
    assert schedule.q_sample(like, torch.tensor([1, 2, 3], device=META), like).device == META
    assert all(step.abar.device == META and step.mean_xt.device == META for step in schedule.steps([50, 10, 0], like))


@pytest.mark.parametrize("options", [dict(p_uncond=None), dict(p_uncond=0.2), dict(p_uncond=0.2, min_snr_gamma=5.0)])
def test_the_diffusion_loss_draws_t_noise_and_dropped_labels_on_the_data_device(options):
    x0, y = torch.empty(3, 1, 2, 2, device=META), torch.zeros(3, dtype=torch.long, device=META)
    assert diffusion_loss(NoiseSchedule.make("linear", 100), **options)(OnDevice(), x0, y).device == META


def test_classifier_losses_weights_and_augmentation_stay_on_the_data_device():
    schedule = NoiseSchedule.make("linear", 100)
    x0, y = torch.empty(3, 1, 4, 4, device=META), torch.zeros(3, dtype=torch.long, device=META)
    assert noisy_classifier_loss(schedule, random_flip=True, random_crop=1)(OnDevice(True), x0, y).device == META
    assert min_snr_weights(schedule, torch.tensor([1, 2, 3], device=META), 5.0, x0).device == META
    assert min_snr_weights(schedule, torch.tensor([1, 2, 3]), 5.0, x0).device == META  # t on the CPU, like on meta
    assert augment_images(x0, random_flip=True, random_crop=2).device == META


# --------------------------------------------------------------------------- the metrics' inputs

class RangeProbe(torch.nn.Module):
    """A classifier whose features are its input, flattened; it records every input batch."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def features(self, x):
        self.inputs.append(x.clone())
        return x.flatten(1)


def test_classifier_outputs_feed_uint8_nhwc_images_as_minus_one_to_one_nchw():
    """Every uint8 value v reaches the classifier as v / 127.5 - 1 (0 -> -1, 255 -> 1), channels
    first, in order across batches; the features come back float64 and logits = fc(features)."""
    base = np.arange(256, dtype=np.uint8).reshape(16, 16)
    images = np.stack([np.stack([np.roll(base, k), 255 - np.roll(base, k)], axis=-1) for k in range(3)])
    assert images.shape == (3, 16, 16, 2)  # NHWC, two channels that differ
    probe = RangeProbe()
    torch.manual_seed(0)
    probe.fc = torch.nn.Linear(512, 3)
    features, logits = metrics.classifier_outputs(probe, images, torch.device("cpu"), batch_size=2)
    assert [len(x) for x in probe.inputs] == [2, 1]  # batches of 2
    x = torch.cat(probe.inputs)
    assert x.shape == (3, 2, 16, 16) and x.dtype == torch.float32
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    expected = images.transpose(0, 3, 1, 2).astype(np.float64) / 127.5 - 1
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)
    assert features.dtype == np.float64 and features.shape == (3, 512)
    np.testing.assert_allclose(features, expected.reshape(3, -1), atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(logits, probe.fc(torch.from_numpy(expected.reshape(3, -1)).float()).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_inception_score_of_a_crafted_two_class_predictor():
    """Half the samples predict (0.9, 0.1), half (0.2, 0.8): p(y) = (0.55, 0.45) and
    IS = exp(mean KL(p(y | x) || p(y))), written out from the definition (Salimans et al. 2016)."""
    p = np.array([[0.9, 0.1]] * 5 + [[0.2, 0.8]] * 5)
    marginal = np.array([0.55, 0.45])
    kl = (p * np.log(p / marginal)).sum(1)
    expected = math.exp(kl.mean())
    assert 1.2 < expected < 1.4  # between the bounds 1 and 2: a case a wrong formula misses
    logits = np.log(p) + np.arange(10)[:, None]  # softmax ignores a per-row constant
    assert metrics.inception_score(logits) == pytest.approx(expected, rel=1e-12)
    # A subset's IS uses the subset's own marginal: the first 3 rows alone are one class, IS 1.
    halves = np.array([[0, 1, 2], [0, 5, 6]])
    sub = p[[0, 5, 6]]
    sub_marginal = sub.mean(0)
    np.testing.assert_allclose(metrics.inception_scores(logits, halves),
                               [1.0, math.exp((sub * np.log(sub / sub_marginal)).sum(1).mean())], rtol=1e-12)


def test_sample_accuracy_compares_argmax_with_the_requested_class():
    logits = np.array([[0.1, 0.5, 0.2], [3.0, 1.0, 0.0], [0.0, 0.0, 9.0], [1.0, 2.0, 0.0]])
    assert metrics.sample_accuracy(logits, np.array([1, 0, 0, 0])) == 0.5
