"""The sampler-guidance contract (diffguide.diffusion.chain) and the Heun sampler that proves it
(issue 26, item 3): Heun is second order on DDIM's ODE (checked against the exact flow of Gaussian
data), every guidance method that can run on an ODE runs on it, and stateful wrappers count steps,
not calls, across its corrector calls (where the timestep guess of ChainStart would reset them)."""

from __future__ import annotations

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim, sample_heun
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import CleanMixtureClassifier, MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.guidance.methods.apg.wrapper import AdaptiveProjectedGuidance
from diffguide.guidance.methods.cfg_zero_star.wrapper import CFGZeroStar
from diffguide.pipeline.stages.sample import guided_model
from diffguide.registry import REGISTRY, group_methods

F64 = torch.float64
SCHEDULE = NoiseSchedule.make("cosine", 1000)


class GaussianEps(torch.nn.Module):
    """The exact eps of data N(0, c^2 I): x_t ~ N(0, abar c^2 + 1 - abar), so
    eps = sqrt(1 - abar) x_t / (abar c^2 + 1 - abar)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x, t, y=None):
        abar = SCHEDULE.abar(t, x)
        return (1 - abar).sqrt() * x / (abar * self.c ** 2 + 1 - abar)


def exact_flow(x_T: torch.Tensor, c: float, t: int) -> torch.Tensor:
    """x_0 of DDIM's ODE from x_T at timestep t: in x~ = x / sqrt(abar), x~(sigma) scales as
    sqrt(c^2 + sigma^2), so x_0 = x_T / sqrt(abar_t) * c / sqrt(c^2 + sigma_t^2)."""
    abar = SCHEDULE.abar(torch.tensor([t]), x_T).reshape(())
    sigma2 = (1 - abar) / abar
    return x_T / abar.sqrt() * c / (c ** 2 + sigma2).sqrt()


def final_error(sampler, steps: int, c: float = 0.5) -> float:
    timesteps = respaced_timesteps(1000, steps, "leading")
    x_T = torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = sampler(GaussianEps(c), x_T, timesteps, schedule=SCHEDULE, noise=torch.randn_like, progress=False)
    return (x - exact_flow(x_T, c, timesteps[0])).abs().max().item()


def test_heun_is_second_order_and_ddim_first_on_the_exact_flow():
    """Doubling the steps divides Heun's error by about 4 and DDIM's (Euler's) by about 2."""
    heun = [final_error(sample_heun, k) for k in (20, 40)]
    ddim = [final_error(sample_ddim, k) for k in (20, 40)]
    assert heun[0] / heun[1] > 3.0, heun
    assert 1.5 < ddim[0] / ddim[1] < 2.6, ddim
    assert heun[1] < ddim[1] / 10


@pytest.fixture(scope="module")
def mixture_models():
    """Exact networks for every role a built-in method needs, on a K = 4 mixture in 16 dims."""
    mixture = random_mixture(4, 16, torch.Generator().manual_seed(1), spread=1.0)
    eps = MixtureEpsModel(mixture, SCHEDULE)
    return {"eps_model": eps, "classifier": MixtureClassifier(mixture, SCHEDULE), "weak_model": eps,
            "clean_classifier": CleanMixtureClassifier(mixture, SCHEDULE)}


# Similarity guidance needs trained encoders (its chain is classifier guidance's gradient_guided,
# run here as cg); CFG++ and training-free guidance have their own direction term or time travel,
# which an ODE step lacks, and the Laplace rule (cg_laplace) reshapes an ancestral step's Gaussian,
# which an ODE step does not draw (refused below). The methods that perturb the attention of diffguide's UNet
# (issue 29) need that UNet, which the mixture is not: tests/test_attention_guiders.py samples them on Heun.
TRAINING_FREE = group_methods("training_free")
UNET_METHODS = ("slg", "pag", "seg", "autoguidance_skip", "tsg")
ODE_METHODS = sorted(set(REGISTRY.methods) - {"sdg_text", "sdg_image", "cfgpp", "cg_laplace", *TRAINING_FREE,
                                               *UNET_METHODS})


@pytest.mark.parametrize("method", ODE_METHODS)
def test_every_method_samples_on_heun(mixture_models, method):
    row = REGISTRY.methods[method]
    options = row.defaults | {"cg_form": "score"}
    guided = guided_model(method, 1.0, mixture_models, SCHEDULE, clip_x0=True, options=options)
    x_T = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)  # 16 pixels, image-shaped
    labels = torch.arange(6) % 4
    x = sample_heun(guided.model, x_T, respaced_timesteps(1000, 8, "leading"), schedule=SCHEDULE, labels=labels,
                    noise=torch.randn_like, cond_fn=guided.cond_fn, progress=False)
    assert x.shape == x_T.shape and torch.isfinite(x).all()
    unguided = sample_heun(mixture_models["eps_model"], x_T, respaced_timesteps(1000, 8, "leading"), schedule=SCHEDULE,
                           labels=labels, noise=torch.randn_like, progress=False)
    assert (x - unguided).abs().max() > 1e-3  # the guidance acted


@pytest.mark.parametrize("method", TRAINING_FREE)
def test_heun_refuses_training_free_guidance_naming_the_samplers_that_take_it(mixture_models, method):
    """Each keeps the unguided eps as its direction or takes each step twice (time travel): the ODE
    step has neither, so the message names the samplers that do."""
    guided = guided_model(method, 1.0, mixture_models, SCHEDULE, clip_x0=True, options=REGISTRY.methods[method].defaults)
    with pytest.raises(ValueError, match="sample it with sample_ddim or sample_ddpm"):
        sample_heun(guided.model, torch.zeros(2, 16, dtype=F64), [999, 0], schedule=SCHEDULE,
                    labels=torch.zeros(2, dtype=torch.long), noise=torch.randn_like, progress=False)


def test_heun_refuses_cfgpp_and_the_mean_shift(mixture_models):
    guided = guided_model("cfgpp", 0.5, mixture_models, SCHEDULE, clip_x0=True, options={})
    x_T = torch.zeros(2, 16, dtype=F64)
    with pytest.raises(ValueError, match="direction eps"):
        sample_heun(guided.model, x_T, [999, 0], schedule=SCHEDULE, labels=torch.zeros(2, dtype=torch.long),
                    noise=torch.randn_like, progress=False)
    with pytest.raises(ValueError, match="mean of an ancestral step"):
        sample_heun(mixture_models["eps_model"], x_T, [999, 0], schedule=SCHEDULE, noise=torch.randn_like,
                    cond_fn=lambda *a, **k: 0, progress=False)
    laplace = guided_model("cg_laplace", 1.0, mixture_models, SCHEDULE, clip_x0=True, options={})
    with pytest.raises(ValueError, match="mean of an ancestral step"):
        sample_heun(laplace.model, x_T, [999, 0], schedule=SCHEDULE, labels=torch.zeros(2, dtype=torch.long),
                    noise=torch.randn_like, cond_fn=laplace.cond_fn, progress=False)


class CountingEps(torch.nn.Module):
    """Records every timestep it is called at."""

    def __init__(self, model):
        super().__init__()
        self.model, self.timesteps = model, []

    def forward(self, x, t, y):
        self.timesteps.append(int(t[0]))
        return self.model(x, t, y)


def test_cfg_zero_star_zeroes_steps_not_calls_under_heun(mixture_models):
    """zero_init_steps = 1 zeroes the first step's two calls (predictor and corrector) and no
    other. Under ChainStart's guess the first step's corrector and the second step's predictor
    share a timestep, which it takes for a new chain, zeroing again."""
    counting = CountingEps(mixture_models["eps_model"])
    zero_star = CFGZeroStar(counting, 1.0, SCHEDULE, zero_init_steps=1)
    zeroed = []
    original = zero_star.zero_prediction
    zero_star.zero_prediction = lambda x, t: zeroed.append(int(t[0])) or original(x, t)
    timesteps = respaced_timesteps(1000, 5, "leading")
    sample_heun(zero_star, torch.randn(3, 16, dtype=F64, generator=torch.Generator().manual_seed(3)), timesteps,
                schedule=SCHEDULE, labels=torch.tensor([0, 1, 2]), noise=torch.randn_like, progress=False)
    assert zeroed == [timesteps[0], timesteps[1]]  # step 0's predictor (t_0) and corrector (t_1)


def test_apg_momentum_updates_once_per_step_under_heun(mixture_models):
    """The buffer a step starts from is the one the previous step ended with, for the predictor and
    the corrector alike: zero only in step 0, never reset inside a chain."""
    apg = AdaptiveProjectedGuidance(mixture_models["eps_model"], 1.0, SCHEDULE, momentum=-0.5)
    starts = []
    original = apg.with_momentum

    def recording(diff, x, t):
        result = original(diff, x, t)
        starts.append((int(t[0]), apg.running_step[1], float(apg.previous.abs().max())))
        return result

    apg.with_momentum = recording
    timesteps = respaced_timesteps(1000, 5, "leading")
    sample_heun(apg, torch.randn(3, 16, dtype=F64, generator=torch.Generator().manual_seed(4)), timesteps,
                schedule=SCHEDULE, labels=torch.tensor([0, 1, 2]), noise=torch.randn_like, progress=False)
    indices = [index for _, index, _ in starts]
    assert indices == [0, 0, 1, 1, 2, 2, 3, 3, 4]  # two calls per step, one at the last (Euler) step
    assert [size == 0 for _, _, size in starts] == [True, True] + [False] * 7
