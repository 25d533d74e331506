"""The guidance displacement (diffguide.guidance.displacement): what it records, that recording it
changes no image, and that the sampling job stores it (issue 29, item 4's matched displacement)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import SAMPLERS
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.displacement import DisplacementMeter
from diffguide.guidance.wrappers import ClassifierFreeGuidance, ClipDenoised
from diffguide.models.networks import NULL_LABEL
from diffguide.pipeline.stages.sample import draw, metered

SCHEDULE = NoiseSchedule.make("cosine", 100)
SHAPE = (1, 4, 4)


class Toy(nn.Module):
    """eps(x, t, y) = 0.3 x + b_y (b_null for the null label): conditional and unconditional differ by
    b_y - b_null at every x, so CFG's unclipped displacement is w * RMS(b_y - b_null) exactly."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.bias = torch.randn(4, *SHAPE, generator=generator, dtype=torch.float64)  # classes 0-2, row 3: null

    def forward(self, x, t, y):
        rows = torch.where(y == NULL_LABEL, torch.full_like(y, 3), y)
        return 0.3 * x + self.bias[rows]


def chain(model, labels, sampler="ddim", steps=5):
    x = PerSampleNoise(3, list(range(len(labels)))).initial(SHAPE, dtype=torch.float64)
    timesteps = respaced_timesteps(SCHEDULE.timesteps, steps, "leading")
    extra = {"eta": 0.0} if sampler == "ddim" else {}
    return SAMPLERS[sampler](model, x, timesteps, schedule=SCHEDULE, labels=labels,
                             noise=PerSampleNoise(3, list(range(len(labels)))), **extra)


LABELS = torch.tensor([0, 1, 2, 0])


def test_unclipped_cfg_moves_eps_by_w_times_the_rms_of_the_two_predictions_at_every_step():
    toy = Toy()
    meter = DisplacementMeter(ClassifierFreeGuidance(toy, w=2.5), toy)
    chain(meter, LABELS, steps=5)
    expected = 2.5 * (toy.bias[LABELS] - toy.bias[3]).flatten(1).norm(dim=1) / math.sqrt(16)
    assert meter.calls == 5
    assert torch.allclose(meter.per_sample(), expected, rtol=0, atol=1e-12)


def test_the_mean_is_over_the_calls_since_reset_and_heun_counts_both_of_its_calls():
    toy = Toy()
    meter = DisplacementMeter(ClassifierFreeGuidance(toy, w=1.0), toy)
    chain(meter, LABELS, steps=5)
    meter.reset()
    chain(meter, LABELS, sampler="heun", steps=3)
    assert meter.calls == 5  # Heun: two calls per step but the last (which is Euler's)
    expected = (toy.bias[LABELS] - toy.bias[3]).flatten(1).norm(dim=1) / 4
    assert torch.allclose(meter.per_sample(), expected, rtol=0, atol=1e-12)
    meter.reset()
    with pytest.raises(RuntimeError, match="no model call"):
        meter.per_sample()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "heun"])
def test_recording_changes_no_sample_and_the_conditional_model_is_not_displaced(sampler):
    toy = Toy()
    clipped_cfg = ClipDenoised(ClassifierFreeGuidance(toy, w=4.0), SCHEDULE)
    reference = ClipDenoised(toy, SCHEDULE)
    plain = chain(clipped_cfg, LABELS, sampler)
    meter = DisplacementMeter(clipped_cfg, reference)
    assert torch.equal(chain(meter, LABELS, sampler), plain)
    assert (meter.per_sample() > 0).all()
    unguided = DisplacementMeter(ClipDenoised(ClassifierFreeGuidance(toy, w=0.0), SCHEDULE), reference)
    chain(unguided, LABELS, sampler)
    assert torch.equal(unguided.per_sample(), torch.zeros(len(LABELS), dtype=torch.float64))


SAMPLING = {"sampler": "ddim", "eta": 0.0, "steps": 4, "timestep_spacing": "leading", "batch_size": 3,
            "clip_x0": True}


def test_draw_returns_each_samples_displacement_batch_by_batch_against_the_clipped_conditional_model():
    from diffguide.pipeline.stages.sample import guided_model

    toy = Toy()
    conditions = np.array([0, 1, 2, 0, 1])
    guided = guided_model("cfg", 3.0, {"eps_model": toy}, SCHEDULE, clip_x0=True, options={})
    images, none = draw(guided, conditions, schedule=SCHEDULE, sampling=SAMPLING, shape=SHAPE, seed=3,
                        device=torch.device("cpu"), precision="fp32")
    assert none is None
    wrapped, meter = metered(guided, {"eps_model": toy}, SCHEDULE, clip_x0=True, what="cfg scale 3")
    again, displacement = draw(wrapped, conditions, schedule=SCHEDULE, sampling=SAMPLING, shape=SHAPE, seed=3,
                               device=torch.device("cpu"), precision="fp32", meter=meter)
    assert np.array_equal(again, images) and displacement.shape == (5,)
    # the last batch (samples 3, 4) by hand: the same chain, metered against ClipDenoised(toy)
    by_hand = DisplacementMeter(ClipDenoised(ClassifierFreeGuidance(toy, w=3.0), SCHEDULE), ClipDenoised(toy, SCHEDULE))
    x = PerSampleNoise(3, [3, 4]).initial(SHAPE)
    SAMPLERS["ddim"](by_hand, x, respaced_timesteps(100, 4, "leading"), schedule=SCHEDULE,
                     labels=torch.tensor([0, 1]), noise=PerSampleNoise(3, [3, 4]), eta=0.0)
    assert np.allclose(displacement[3:], by_hand.per_sample().numpy(), rtol=1e-6)


def test_a_mean_shift_is_refused_with_the_key_that_asked_for_it():
    from diffguide.guidance.wrappers import Guided

    with pytest.raises(ValueError, match="sampling.record_displacement.*cond_fn"):
        metered(Guided(Toy(), cond_fn=lambda *a, **k: 0), {"eps_model": Toy()}, SCHEDULE, clip_x0=True, what="cg")


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_cfgpps_own_renoising_direction_passes_through_the_meter(sampler):
    """CFG++ renoises along eps(x, null) (its eps_and_direction): metered, its chain must stay CFG++'s,
    not the chain that renoises along the guided eps."""
    from diffguide.guidance.methods.cfgpp.wrapper import build_cfgpp

    toy = Toy()
    guided = build_cfgpp({"eps_model": toy}, 0.6, SCHEDULE, clip_x0=True, options={})
    plain = chain(guided.model, LABELS, sampler)
    wrapped, recorder = metered(guided, {"eps_model": toy}, SCHEDULE, clip_x0=True, what="cfgpp scale 0.6")
    assert torch.equal(chain(wrapped.model, LABELS, sampler), plain)
    assert recorder.calls == 5 and (recorder.per_sample() > 0).all()


# ------------------------------------------------------------- eps_cond read off the method's forward
# Every registry method the meter accepts, on test_wiring's networks (the exact mixtures, and a small
# seeded float64 UNet for the methods that perturb it), sampled metered twice: eps(x_t, y) read off the
# method's own calls (ConditionalRows), and evaluated by a separate forward as before.

import test_wiring as wiring  # noqa: E402  (its networks and chain, not its tests)
import yaml  # noqa: E402
from workflow_copies import REPO  # noqa: E402

from diffguide.guidance.displacement import ConditionalRows, meter_for  # noqa: E402
from diffguide.guidance.wrappers import build_classifier_free  # noqa: E402


def built(name: str):
    method = wiring.METHODS[name]
    models = wiring.role_models(method)
    guided = method.build()(models, wiring.guided_scale(method), wiring.SCHEDULE, clip_x0=True, options=wiring.defaults())
    return method, models, guided


def metered_chain(name: str):
    """The method's chain sampled metered as the sampling job meters it (eps_cond read off its own
    calls), the hook removed after: (method, models, guided, the chain, the meter)."""
    method, models, guided = built(name)
    wrapped, meter = metered(guided, models, wiring.SCHEDULE, clip_x0=True, what=name)
    try:
        chain_read = wiring.chain(wrapped.model, None, wiring.labels(method))
    finally:
        meter.close()
    return method, models, guided, chain_read, meter


METERED = [name for name in wiring.METHODS if built(name)[2].cond_fn is None]
TESTBED_METHODS = yaml.safe_load((REPO / "config/testbed.yaml").read_text())["guidance"]["methods"]


@pytest.mark.parametrize("name", METERED)
def test_eps_cond_read_off_the_methods_own_forward_equals_a_separate_forward(name):
    method, models, guided, read, meter = metered_chain(name)
    reference = build_classifier_free({"eps_model": models["eps_model"]}, 0.0, wiring.SCHEDULE, clip_x0=True,
                                      options={}).model
    separate = meter_for(guided.model, reference)
    assert torch.equal(wiring.chain(separate, None, wiring.labels(method)), read)  # the chain is untouched
    assert torch.allclose(meter.per_sample(), separate.per_sample(), rtol=1e-12, atol=1e-15)
    assert meter.rows.read + meter.rows.evaluated == meter.calls


@pytest.mark.parametrize("name", TESTBED_METHODS)
def test_every_testbed_method_holds_eps_cond_in_its_own_forward_so_the_meter_costs_no_forward(name):
    """What makes metering cheap: each method `make testbed` samples calls the eps-model on exactly
    (x_t, t, y) at every evaluation (CFG-Zero* skips the model at its zero_init_steps zeroed steps,
    where the meter evaluates it)."""
    meter = metered_chain(name)[-1]
    skipped = wiring.defaults()["zero_init_steps"] if name == "cfg_zero_star" else 0
    assert (meter.rows.read, meter.rows.evaluated) == (meter.calls - skipped, skipped)


def test_the_meter_removes_its_hook_and_keeps_no_rows_from_an_earlier_evaluation():
    toy = Toy()
    rows = ConditionalRows(toy)
    x, t = torch.zeros(2, *SHAPE, dtype=torch.float64), torch.tensor([5, 5])
    toy(torch.cat([x, x]), torch.cat([t, t]), torch.tensor([0, 1, NULL_LABEL, NULL_LABEL]))
    assert torch.equal(rows.conditional(x, t, torch.tensor([0, 1])), toy(x, t, torch.tensor([0, 1])))
    assert (rows.read, rows.evaluated) == (1, 0)
    rows.clear()  # a new evaluation: what was kept is gone, so it is evaluated
    rows.conditional(x, t, torch.tensor([0, 1]))
    assert rows.evaluated == 1
    rows.conditional(x, t, torch.tensor([1, 0]))  # other labels: never read off rows of other labels
    assert rows.evaluated == 2
    rows.close()
    rows.clear()
    toy(x, t, torch.tensor([0, 1]))
    assert rows.kept == []
