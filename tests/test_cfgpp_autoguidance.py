"""CFG++ (diffguide.guidance.methods.cfgpp) and autoguidance (diffguide.guidance.methods.autoguidance) proved exact on Gaussian mixtures,
float64 (docs/equations.md section 10):
- CFG++ at lambda = 0 is the unconditional chain (DDIM at any eta, ancestral; x0 clip on and off);
- one CFG++ DDIM step is one CFG DDIM step at the step-dependent scale g_t = lambda sigma_t / (sigma_t - c_t);
- CFG++ equals its official DDIM loop (CFGpp-diffusion/CFGpp) over a whole chain; its ancestral form
  (variance beta~) equals its DDIM form at eta = 1;
- autoguidance with D0 = D1 is the conditional model; with a broader exact weak mixture its eps is
  that of the Gaussian p1^(1+w) / p0^w; edm2's sampler mixing denoisers equals it mixing our eps.
"""

import pytest
import torch

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import ddim_step, ddpm_step, sample_ddim, sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import GaussianMixture, MixtureEpsModel, random_mixture
from diffguide.guidance.methods.autoguidance.wrapper import Autoguidance, build_autoguidance
from diffguide.guidance.methods.cfgpp.wrapper import CFGPlusPlus, build_cfgpp
from diffguide.guidance.wrappers import ClassifierFreeGuidance, ClipDenoised

F64 = torch.float64
TOL = 1e-12


def setting(seed=0, dim=3, batch=24, kind="linear"):
    """A random K = 4 mixture (means spread 1.5, so x0 clipping bites), its exact eps-model,
    initial noise x_T and labels."""
    g = torch.Generator().manual_seed(seed)
    mixture = random_mixture(4, dim, g)
    schedule = NoiseSchedule.make(kind, 1000)
    x = torch.randn(batch, dim, generator=g, dtype=F64)
    y = torch.randint(0, 4, (batch,), generator=g)
    return mixture, schedule, MixtureEpsModel(mixture, schedule), x, y


def seeded_noise(seed):
    """A fresh noise(x) stream: two chains given seeded_noise(s) draw the same z at every step."""
    g = torch.Generator().manual_seed(seed)
    return lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype)


class Unconditional(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, y):
        return self.model(x, t, None)


def max_err(a, b):
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------------------------- CFG++


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("sampler, kwargs", [("ddim", {"eta": 0.0}), ("ddim", {"eta": 0.7}),
                                             ("ddpm", {"variance": "beta_tilde"}), ("ddpm", {"variance": "beta"})])
def test_cfgpp_lambda0_is_the_unconditional_chain(clip, sampler, kwargs):
    _, schedule, eps_model, x, y = setting()
    steps = respaced_timesteps(1000, 25)
    run = sample_ddim if sampler == "ddim" else sample_ddpm
    uncond = Unconditional(eps_model)
    reference = run(ClipDenoised(uncond, schedule) if clip else uncond, x, steps, schedule=schedule, labels=y,
                    noise=seeded_noise(1), progress=False, **kwargs)
    guided = build_cfgpp({"eps_model": eps_model}, 0.0, schedule, clip_x0=clip, options={})
    ours = run(guided.model, x, steps, schedule=schedule, labels=y, noise=seeded_noise(1), progress=False, **kwargs)
    assert max_err(ours, reference) < TOL
    if clip:  # the clip matters here: the unclipped chain ends elsewhere
        unclipped = run(uncond, x, steps, schedule=schedule, labels=y, noise=seeded_noise(1), progress=False, **kwargs)
        assert max_err(unclipped, reference) > 1e-3


def cfg_scale_equivalent_to_cfgpp(step, lam, eta):
    """The guidance_scale g_t (= 1 + w_t) at which one CFG DDIM step equals one CFG++ step at lambda.
    Divide DDIM eq. 12 by sqrt(abar'): x'/sqrt(abar') = x/sqrt(abar) - sigma_t eps_x0 + c_t eps_dir, with
    sigma_t = sqrt((1 - abar)/abar) (EDM) and c_t = sqrt(1 - abar' - sigma_eta^2)/sqrt(abar') (sigma_t' at
    eta = 0). CFG: eps_x0 = eps_dir = eps_u + g d; CFG++: eps_x0 = eps_u + lambda d, eps_dir = eps_u.
    Matching the d terms: (sigma_t - c_t) g = sigma_t lambda."""
    sigma_eta = eta * ((1 - step.abar_prev) / (1 - step.abar)).sqrt() * step.beta.sqrt()
    sigma_t = ((1 - step.abar) / step.abar).sqrt()
    c_t = (1 - step.abar_prev - sigma_eta**2).clamp(min=0).sqrt() / step.abar_prev.sqrt()
    return lam * sigma_t / (sigma_t - c_t)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_one_cfgpp_step_is_cfg_at_the_equivalent_scale(eta):
    _, schedule, eps_model, x, y = setting(seed=2)
    x = 2.0 * x
    lam, worst, scales = 0.6, 0.0, []
    for step in schedule.steps(respaced_timesteps(1000, 10), like=x):
        t = torch.full((len(x),), step.t, dtype=torch.long)
        z = None if step.is_last else torch.randn(x.shape, generator=torch.Generator().manual_seed(step.t), dtype=F64)
        z = z if eta > 0 else None
        cfgpp = CFGPlusPlus(eps_model, lam)
        eps, direction = cfgpp.eps_and_direction(x, t, y)
        ours = ddim_step(x, eps, step=step, eta=eta, noise=z, direction_eps=direction)
        g = cfg_scale_equivalent_to_cfgpp(step, lam, eta).item()
        cfg = ddim_step(x, ClassifierFreeGuidance(eps_model, w=g - 1)(x, t, y), step=step, eta=eta, noise=z)
        worst, scales = max(worst, max_err(ours, cfg) / (1 + cfg.abs().max().item())), scales + [g]
    assert worst < TOL
    assert scales[-1] == pytest.approx(lam) and max(scales) - min(scales) > 0.3  # g varies; g = lambda at t' = -1


def official_cfgpp_ddim(unet, zt, timesteps, skip, alphas_cumprod, cfg_guidance, y):
    """CFGpp-diffusion/CFGpp, latent_diffusion.py, BaseDDIMCFGpp.sample (with StableDiffusion.alpha and
    predict_noise; stored version 00e7f43), written for a model unet(z, t, y): its alpha table is abar
    prefixed with 1 (so alpha(t) reads abar_{t-1}), t' = t - skip, alpha(t') = final_alpha_cumprod below 0
    (abar_0 for SD's set_alpha_to_one = False; it only scales the last z, which is discarded: the loop
    returns the last x0, z0t, so 1 is taken here)."""
    table = torch.cat([torch.ones(1, dtype=F64), alphas_cumprod])

    def alpha(t):
        return table[t] if t >= 0 else torch.tensor(1.0, dtype=F64)

    for t in timesteps:
        at, at_prev = alpha(t), alpha(t - skip)
        noise_uc, noise_c = unet(zt, t, None), unet(zt, t, y)
        noise_pred = noise_uc + cfg_guidance * (noise_c - noise_uc)
        z0t = (zt - (1 - at).sqrt() * noise_pred) / at.sqrt()
        zt = at_prev.sqrt() * z0t + (1 - at_prev).sqrt() * noise_uc
    return z0t


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_cfgpp_equals_its_official_ddim_loop(lam):
    """Peer test. diffusers' SD timesteps (leading spacing, steps_offset 1) are ours + 1, and the official
    alpha(t) is abar_{t-1}; the peer's model is therefore ours at t - 1, which isolates the update rule
    (on SD the official loop pairs eps at t with abar_{t-1}, an off-by-one we do not copy)."""
    _, schedule, eps_model, x, y = setting(seed=3)
    steps = respaced_timesteps(1000, 20, "leading")

    def unet(z, t, labels):
        return eps_model(z, torch.full((len(z),), t - 1, dtype=torch.long), labels)

    peer = official_cfgpp_ddim(unet, x, [t + 1 for t in steps], 1000 // 20, schedule.alphas_cumprod, lam, y)
    guided = build_cfgpp({"eps_model": eps_model}, lam, schedule, clip_x0=False, options={})
    ours = sample_ddim(guided.model, x, steps, schedule=schedule, labels=y, noise=seeded_noise(0), progress=False)
    assert max_err(ours, peer) < TOL
    plain_cfg = sample_ddim(ClassifierFreeGuidance(eps_model, w=lam - 1), x, steps, schedule=schedule, labels=y,
                            noise=seeded_noise(0), progress=False)
    assert max_err(plain_cfg, peer) > 1e-3  # the renoising with eps_u matters


@pytest.mark.parametrize("clip", [False, True])
def test_cfgpp_ancestral_is_its_ddim_form_at_eta_one(clip):
    """The ancestral mean read as DDIM eq. 12 at eta = 1 (sigma^2 = beta~): with Sigma = beta~ the
    ancestral CFG++ chain is the eta = 1 DDIM CFG++ chain."""
    _, schedule, eps_model, x, y = setting(seed=4)
    steps = respaced_timesteps(1000, 25)
    guided = build_cfgpp({"eps_model": eps_model}, 0.7, schedule, clip_x0=clip, options={}).model
    ddpm = sample_ddpm(guided, x, steps, schedule=schedule, labels=y, noise=seeded_noise(5), progress=False)
    ddim = sample_ddim(guided, x, steps, schedule=schedule, labels=y, noise=seeded_noise(5), progress=False, eta=1.0)
    assert max_err(ddpm, ddim) < TOL


def test_ddpm_step_direction_form_is_the_posterior_mean():
    _, schedule, eps_model, x, y = setting(seed=5)
    worst = 0.0
    for step in schedule.steps(respaced_timesteps(1000, 10), like=x):
        eps = eps_model(x, torch.full((len(x),), step.t, dtype=torch.long), y)
        plain = ddpm_step(x, eps, step=step, sigma2=step.beta_tilde, noise=None)
        direction = ddpm_step(x, eps, step=step, sigma2=step.beta_tilde, noise=None, direction_eps=eps)
        worst = max(worst, max_err(plain, direction))
    assert worst < TOL


@pytest.mark.parametrize("lam", [-0.1, 1.5])
def test_cfgpp_rejects_lambda_outside_unit_interval(lam):
    _, schedule, eps_model, _, _ = setting()
    with pytest.raises(ValueError, match=r"lambda must be in \[0, 1\].*guidance.cfgpp_scales"):
        build_cfgpp({"eps_model": eps_model}, lam, schedule, clip_x0=True, options={})


# --------------------------------------------------------------------------------------- autoguidance


def broader(mixture: GaussianMixture, delta: float) -> GaussianMixture:
    """The exact 'weak' mixture: same means and weights, covariances C_k + delta I."""
    eye = torch.eye(mixture.dim, dtype=F64)
    return GaussianMixture(mixture.means, mixture.covs + delta * eye, mixture.weights)


@pytest.mark.parametrize("clip", [False, True])
def test_autoguidance_with_the_same_model_is_the_conditional_model(clip):
    _, schedule, eps_model, x, y = setting(seed=6)
    x = 2.0 * x
    reference = ClipDenoised(eps_model, schedule) if clip else eps_model
    worst = 0.0
    for w in (0.0, 0.5, 3.0):
        guided = build_autoguidance({"eps_model": eps_model, "weak_model": eps_model}, w, schedule, clip_x0=clip,
                                    options={}).model
        for t in (0, 100, 500, 999):
            tt = torch.full((len(x),), t, dtype=torch.long)
            worst = max(worst, max_err(guided(x, tt, y), reference(x, tt, y)))
    assert worst < TOL


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_autoguidance_with_a_broader_weak_mixture_is_the_gaussian_power_ratio(w):
    """For class y, p1 = N(sqrt(abar) m, S1), p0 = N(sqrt(abar) m, S0) with S1 = abar C + (1 - abar) I and
    S0 = S1 + abar delta I: p1^(1+w) / p0^w is Gaussian with precision P = (1+w) S1^-1 - w S0^-1 about the
    same mean, so eps~ = sqrt(1 - abar) P (x - sqrt(abar) m)."""
    mixture, schedule, eps_model, x, y = setting(seed=7)
    x, delta = 2.0 * x, 0.3
    weak = MixtureEpsModel(broader(mixture, delta), schedule)
    guided = build_autoguidance({"eps_model": eps_model, "weak_model": weak}, w, schedule, clip_x0=False,
                                options={}).model
    eye, worst = torch.eye(mixture.dim, dtype=F64), 0.0
    for t in (0, 50, 300, 700, 999):
        abar = schedule.alphas_cumprod[t]
        s1 = abar * mixture.covs + (1 - abar) * eye
        precision = (1 + w) * torch.linalg.inv(s1) - w * torch.linalg.inv(s1 + abar * delta * eye)
        assert (torch.linalg.eigvalsh(precision) > 0).all()  # a proper Gaussian
        centred = x - abar.sqrt() * mixture.means[y]
        closed = (1 - abar).sqrt() * torch.einsum("bij,bj->bi", precision[y], centred)
        ours = guided(x, torch.full((len(x),), t, dtype=torch.long), y)
        worst = max(worst, max_err(ours, closed) / (1 + closed.abs().max().item()))
    assert worst < TOL


def edm2_sampler(net, noise, labels=None, gnet=None, num_steps=8, sigma_min=0.002, sigma_max=80, rho=7,
                 guidance=1, dtype=F64):
    """NVlabs/edm2, generate_images.py, edm_sampler with S_churn = 0 (Heun): the guided denoiser is
    gnet(x).lerp(net(x), guidance), i.e. guidance = Karras's w = 1 + ours."""
    def denoise(x, t):
        dx = net(x, t, labels).to(dtype)
        if guidance == 1:
            return dx
        return gnet(x, t, labels).to(dtype).lerp(dx, guidance)

    step_indices = torch.arange(num_steps, dtype=dtype)
    t_steps = (sigma_max ** (1 / rho) + step_indices / (num_steps - 1)
               * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t_steps = torch.cat([t_steps, torch.zeros_like(t_steps[:1])])
    x_next = noise.to(dtype) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_hat, t_hat = x_next, t_cur
        d_cur = (x_hat - denoise(x_hat, t_hat)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < num_steps - 1:
            d_prime = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def edm_grid(num_steps=8, sigma_min=0.002, sigma_max=80, rho=7):
    """A NoiseSchedule whose timesteps are the edm2 sampler's sigmas (ascending), abar = 1 / (1 + sigma^2),
    so our integer-timestep eps-models run at exactly the sampler's noise levels."""
    i = torch.arange(num_steps, dtype=F64)
    sigmas = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    abar = (1 / (1 + sigmas**2)).flip(0)
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=F64), abar[:-1]])
    return NoiseSchedule(betas), sigmas.flip(0)


def edm_denoiser(eps_model, schedule, sigmas):
    """D(x; sigma) of an eps-model in EDM's variables: x_vp = sqrt(abar) x,
    D = (x_vp - sqrt(1 - abar) eps) / sqrt(abar)."""
    def denoise(x, sigma, labels):
        index = int(torch.argmin((sigmas - sigma).abs()))
        t = torch.full((len(x),), index, dtype=torch.long)
        abar = schedule.abar(t, x)
        return schedule.predict_x0(abar.sqrt() * x, t, eps_model(abar.sqrt() * x, t, labels))
    return denoise


@pytest.mark.parametrize("w", [0.0, 1.1, 2.0])
def test_autoguidance_equals_edm2_mixing_denoisers(w):
    """Peer test: edm2's sampler with net = D1, gnet = D0, guidance = 1 + w equals the same sampler on the
    denoiser of our autoguided eps (guidance = 1): mixing D is mixing eps."""
    mixture, _, _, x, y = setting(seed=8)
    schedule, sigmas = edm_grid()
    strong = MixtureEpsModel(mixture, schedule)
    weak = MixtureEpsModel(broader(mixture, 0.4), schedule)
    peer = edm2_sampler(edm_denoiser(strong, schedule, sigmas), x, y, gnet=edm_denoiser(weak, schedule, sigmas),
                        guidance=1 + w)
    ours_eps = build_autoguidance({"eps_model": strong, "weak_model": weak}, w, schedule, clip_x0=False,
                                  options={}).model
    ours = edm2_sampler(edm_denoiser(ours_eps, schedule, sigmas), x, y)
    assert max_err(ours, peer) < TOL
    if w != 0:  # the guidance moves the samples, so the check can fail
        assert max_err(ours, edm2_sampler(edm_denoiser(strong, schedule, sigmas), x, y)) > 1e-3


def test_autoguidance_at_zero_needs_no_weak_model():
    _, schedule, eps_model, x, y = setting()
    guided = build_autoguidance({"eps_model": eps_model}, 0.0, schedule, clip_x0=False, options={}).model
    t = torch.full((len(x),), 400, dtype=torch.long)
    assert torch.equal(guided(x, t, y), eps_model(x, t, y))
    assert isinstance(guided, Autoguidance)


def test_autoguidance_without_weak_model_raises():
    _, schedule, eps_model, _, _ = setting()
    with pytest.raises(ValueError, match=r"weak_model.*weak_conditional"):
        build_autoguidance({"eps_model": eps_model}, 1.0, schedule, clip_x0=True, options={})
