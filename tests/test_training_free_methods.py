"""The five training-free methods as the registry builds them (diffguide.guidance.methods.training_free),
each against its own paper's update written out here independently of TFG's form, over whole
chains on the exact mixture in float64 with clipping on (the pipeline's default): DPS (Chung et al.
2023, Alg. 1), FreeDoM (Yu et al. 2023: DPS with time travel), MPGD (He et al. 2024, Alg. 1), UGD
(Bansal et al. 2023: forward eps shift, backward guidance in x_0, self-recurrence) and TFG (Ye et al.
2024, its code's guide_step). Each is equal to its paper's form to 1e-12 after 6 steps, under DDIM
(eta 0 and 1) and the ancestral sampler; the options reach the samples as the papers say."""

from __future__ import annotations

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import ddim_step, sample_ddim, sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import CleanMixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.guidance.wrappers import ClipDenoised
from diffguide.registry import REGISTRY

F64 = torch.float64
SCHEDULE = NoiseSchedule.make("cosine", 1000)
TIMESTEPS = respaced_timesteps(1000, 6, "leading")
MIXTURE = random_mixture(3, 2, torch.Generator().manual_seed(60), spread=0.8)
EPS_MODEL = MixtureEpsModel(MIXTURE, SCHEDULE)
MODELS = {"eps_model": EPS_MODEL, "clean_classifier": CleanMixtureClassifier(MIXTURE, SCHEDULE)}
Y = torch.tensor([0, 1, 2, 0, 1])
X_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(61), dtype=F64)


def log_f(x0):
    """log p(y | x_0) of the exact clean classifier."""
    return torch.log_softmax(MODELS["clean_classifier"](x0), dim=-1)[torch.arange(len(x0)), Y]


def grad_log_f(x0):
    """grad_{x_0} log f(y | x_0), no Jacobian of anything else."""
    point = x0.detach().requires_grad_(True)
    return torch.autograd.grad(log_f(point).sum(), point)[0]


def clamped_x0(x, step):
    """x0_hat clamped to [-1, 1] (clipping on), and the eps of the clamped x0 (what the step uses)."""
    x0 = ((x - step.sqrt_one_minus_abar * EPS_MODEL(x, torch.full((len(x),), step.t), None)) / step.sqrt_abar)
    x0 = x0.clamp(-1, 1)
    return x0, (x - step.sqrt_abar * x0) / step.sqrt_one_minus_abar


def tweedie_gradient(x, step):
    """grad_{x_t} log f(y | x0_hat(x_t)), through the eps-model and the clamp (DPS, FreeDoM, UGD)."""
    with torch.enable_grad():
        point = x.detach().requires_grad_(True)
        return torch.autograd.grad(log_f(clamped_x0(point, step)[0]).sum(), point)[0]


def sigma(step, eta):
    return eta * ((1 - step.abar_prev) / (1 - step.abar) * step.beta).sqrt()


# --------------------------------------------------------------------------- each paper's own update


def dps(zeta):
    """Chung et al. 2023, Alg. 1, log f in place of -||y - A(x0_hat)||^2: the unguided step + zeta grad."""
    def update(x, step, eta, z):
        _, eps = clamped_x0(x, step)
        return ddim_step(x, eps, step=step, eta=eta, noise=z) + zeta * tweedie_gradient(x, step)
    return update


def mpgd(c):
    """He et al. 2024, Alg. 1: x0' = x0_hat + c grad_{x_0} log f(x0_hat), then DDIM eq. 12 from x0' with eps."""
    def update(x, step, eta, z):
        x0, eps = clamped_x0(x, step)
        s = sigma(step, eta)
        moved = step.abar_prev.sqrt() * (x0 + c * grad_log_f(x0)) + (1 - step.abar_prev - s**2).sqrt() * eps
        return moved if z is None else moved + s * z
    return update


def ugd(s, m):
    """Bansal et al. 2023: eps_hat = eps - s sqrt(1 - abar_t) grad_{x_t} log f(x0_hat) (forward), then m
    steps x0 += s grad_{x_0} log f from x0_hat and eps_hat -= sqrt(abar_t / (1 - abar_t)) Delta x0
    (backward, as TFG's ugd.py solves it), then the step from eps_hat."""
    def update(x, step, eta, z):
        x0, eps = clamped_x0(x, step)
        eps_hat = eps - s * step.sqrt_one_minus_abar * tweedie_gradient(x, step)
        moved = x0
        for _ in range(m):
            moved = moved + s * grad_log_f(moved)
        eps_hat = eps_hat - (step.abar / (1 - step.abar)).sqrt() * (moved - x0)
        return ddim_step(x, eps_hat, step=step, eta=eta, noise=z)
    return update


def tfg(rho, mu_ratio, inner_steps):
    """TFG's code (methods/tfg.py guide_step): rho_t, mu_t = rho, mu times alpha_t normalised over the
    chain ('increase'); the unguided step + Delta_t / sqrt(alpha_t) + sqrt(abar_t') Delta_0."""
    steps = SCHEDULE.steps(TIMESTEPS, like=X_T)
    alpha = torch.stack([st.abar / st.abar_prev for st in steps])
    weights = alpha * len(alpha) / alpha.sum()

    def update(x, step, eta, z):
        i = [st.t for st in steps].index(step.t)
        x0, eps = clamped_x0(x, step)
        delta_t = rho * weights[i] * tweedie_gradient(x, step)
        moved = x0
        for _ in range(inner_steps):
            moved = moved + mu_ratio * rho * weights[i] * grad_log_f(moved)
        prev = ddim_step(x, eps, step=step, eta=eta, noise=z)
        return prev + delta_t / alpha[i].sqrt() + step.abar_prev.sqrt() * (moved - x0)
    return update


def own_chain(update, eta, tries, draws):
    """The paper's loop: each step's update, tried ``tries`` times with x_{t'} renoised back to t."""
    x = X_T
    for step in SCHEDULE.steps(TIMESTEPS, like=X_T):
        def take(x_t):
            return update(x_t, step, eta, draws(x_t) if eta > 0 and not step.is_last else None)
        x_next = take(x)
        for _ in range(tries - 1):
            alpha = step.abar / step.abar_prev
            x_next = take(alpha.sqrt() * x_next + (1 - alpha).sqrt() * draws(x_next))
        x = x_next.detach()
    return x


class Draws:
    """One fixed sequence of draws, handed out in order (the same to the sampler and the reference)."""

    def __init__(self):
        gen = torch.Generator().manual_seed(62)
        self.draws = [torch.randn(X_T.shape, generator=gen, dtype=F64) for _ in range(60)]
        self.used = 0

    def __call__(self, x):
        self.used += 1
        return self.draws[self.used - 1]


SAMPLERS = {"ddim_eta0": (sample_ddim, 0.0), "ddim_eta1": (sample_ddim, 1.0), "ddpm": (sample_ddpm, 1.0)}


def ours(method, scale, options, sampler):
    guided = REGISTRY.methods[method].build()(MODELS, scale, SCHEDULE, clip_x0=True, options=options)
    run, eta = SAMPLERS[sampler]
    kwargs = {"eta": eta} if run is sample_ddim else {}
    return run(guided.model, X_T, TIMESTEPS, schedule=SCHEDULE, labels=Y, noise=Draws(), progress=False, **kwargs)


CASES = {
    "dps": (0.4, {}, dps(0.4), 1),
    "freedom": (0.4, {"freedom_recurrences": 3}, dps(0.4), 3),
    "mpgd": (0.3, {}, mpgd(0.3), 1),
    "ugd": (0.2, {"ugd_recurrences": 2, "ugd_backward_steps": 2}, ugd(0.2, 2), 2),
    "tfg": (0.5, {"tfg_mu_ratio": 0.25, "tfg_inner_steps": 4}, tfg(0.5, 0.25, 4), 1),
}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("method", CASES)
def test_each_method_is_its_papers_update_over_a_whole_chain(method, sampler):
    scale, options, update, tries = CASES[method]
    eta = SAMPLERS[sampler][1]
    reference = own_chain(update, eta, tries, Draws())
    sampled = ours(method, scale, options, sampler)
    assert torch.allclose(sampled, reference, rtol=0, atol=1e-12), (sampled - reference).abs().max()
    unguided = ours(method, 0.0, options, sampler)
    assert (sampled - unguided).abs().max() > 1e-3  # the guidance acted


def test_the_declared_defaults_are_the_papers_settings():
    """TFG's CIFAR-10 label-guidance script: mu = 0.25 rho, N_iter = 4, N_recur = 1, increasing schedules."""
    assert REGISTRY.methods["tfg"].defaults == {"tfg_mu_ratio": 0.25, "tfg_inner_steps": 4, "tfg_recurrences": 1,
                                                "tfg_schedule": "increase"}
    for method in ("dps", "freedom", "mpgd", "ugd", "tfg"):
        row = REGISTRY.methods[method]
        assert row.eps_model == "unconditional" and dict(row.guides) == {"clean_classifier": "guide_classifier"}


def test_scale_zero_is_the_unguided_clipped_model_and_needs_no_classifier():
    clipped = sample_ddim(ClipDenoised(EPS_MODEL, SCHEDULE), X_T, TIMESTEPS, schedule=SCHEDULE, labels=Y, noise=Draws(),
                          progress=False)
    for method in ("dps", "freedom", "mpgd", "ugd", "tfg"):
        guided = REGISTRY.methods[method].build()({"eps_model": EPS_MODEL}, 0.0, SCHEDULE, clip_x0=True, options={})
        unguided = sample_ddim(guided.model, X_T, TIMESTEPS, schedule=SCHEDULE, labels=Y, noise=Draws(), progress=False)
        assert torch.equal(unguided, clipped)


def test_a_missing_guide_is_named():
    with pytest.raises(ValueError, match="clean guide classifier"):
        REGISTRY.methods["tfg"].build()({"eps_model": EPS_MODEL}, 1.0, SCHEDULE, clip_x0=True, options={})
