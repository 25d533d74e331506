"""Similarity guidance (SDG; diffguide.guidance.methods.similarity) proved against exact answers, in float64.

- With a guide whose values are the exact log p_t(y | x_t) of a Gaussian mixture (a "noisy encoder"
  returning log p_t(. | x_t) and identity "text embeddings", dot similarity), the sdg builders are
  classifier guidance: whole DDIM (eta 0, 1) and ancestral trajectories and every step agree with
  guidance.classifier_guided and with the closed-form classifier gradient.
- With a linear encoder E~(x) = W x the guided steps equal their hand formulas (dot: grad F = W^T e_y;
  cosine: grad F = W^T (e_y / ||e_y|| - cos Wx / ||Wx||) / ||Wx||).
- gamma = 0 is the unguided model bit for bit; the builders wire clip, encoder and references by role.
"""

import pytest
import torch
from probes import ProbeEps
from torch import nn

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import (ddim_step, ddpm_step, ddpm_variance, sample_ddim,
                                          sample_ddpm)
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.exact.gaussian_mixture import MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.guidance.methods.similarity.wrapper import (SIMILARITIES, NoisedReferenceSimilarity, Similarity,
                                                   build_image_similarity_guided, build_text_similarity_guided)
from diffguide.guidance.wrappers import (ClipDenoised, WithoutLabels, build_classifier_guided, classifier_guided,
                                         gradient_guided, guide_gradient)

F64 = torch.float64
BUILDERS = {"text": build_text_similarity_guided, "image": build_image_similarity_guided}


def options(form="score", order="unguided_x0", measure="cosine", **extra):
    return {"cg_form": form, "cg_clip_order": order, "sdg_similarity": measure, **extra}


def max_err(a, b):
    return (a - b).abs().max().item()


def t_full(x, t):
    return torch.full((len(x),), int(t), dtype=torch.long)


# --------------------------------------------------------------------------- stand-ins of encoders.py's roles


class LogProbEncoder(nn.Module):
    """E~(x_t, t) = log p_t(. | x_t) of the exact mixture classifier: [B, K]."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x, t):
        return torch.log_softmax(self.classifier(x, t), -1)


class LinearEncoder(nn.Module):
    """E~(x_t, t) = W x (flattened), t ignored; every call's t recorded."""

    def __init__(self, weight):
        super().__init__()
        self.weight, self.ts = weight, []

    def forward(self, x, t):
        self.ts.append(t.tolist())
        return x.flatten(1) @ self.weight.T


class ClipStandIn(nn.Module):
    """encode_class_names -> fixed [C, D] rows; encode_image(x) = V x (flattened). Calls recorded."""

    def __init__(self, class_embeddings, image_weight=None):
        super().__init__()
        self.class_embeddings, self.image_weight = class_embeddings, image_weight
        self.calls = []

    def encode_class_names(self):
        self.calls.append(("encode_class_names", None))
        return self.class_embeddings

    def encode_image(self, x):
        self.calls.append(("encode_image", x))
        return x.flatten(1) @ self.image_weight.T


# --------------------------------------------------------------------------- exact mixtures: SDG with log p is CG


def mixture_case(seed=0, dim=3, batch=12, kind="cosine"):
    g = torch.Generator().manual_seed(seed)
    mixture = random_mixture(4, dim, g)
    schedule = NoiseSchedule.make(kind, 1000)
    y = torch.randint(0, 4, (batch,), generator=g)
    eps_model, classifier = MixtureEpsModel(mixture, schedule), MixtureClassifier(mixture, schedule)
    sdg_models = {"eps_model": eps_model, "noisy_encoder": LogProbEncoder(classifier),
                  "clip": ClipStandIn(torch.eye(4, dtype=F64))}
    cg_models = {"eps_model": eps_model, "classifier": classifier}
    return schedule, eps_model, classifier, sdg_models, cg_models, y


def run(guided, schedule, y, sampler, *, eta=0.0, steps=25, seed=3):
    noise = PerSampleNoise(seed, range(len(y)))
    x = noise.initial((3,), dtype=F64)
    ts = respaced_timesteps(schedule.timesteps, steps)
    if sampler == "ddim":
        return sample_ddim(guided.model, x, ts, schedule=schedule, labels=y, noise=noise, eta=eta, progress=False)
    return sample_ddpm(guided.model, x, ts, schedule=schedule, labels=y, noise=noise, cond_fn=guided.cond_fn,
                       progress=False)


TRAJECTORIES = [("ddim", 0.0, "score", "unguided_x0"), ("ddim", 1.0, "score", "unguided_x0"),
                ("ddim", 0.0, "score", "guided_x0"), ("ddpm", 0.0, "mean", "unguided_x0")]


@pytest.mark.parametrize("clip_x0", [True, False])
@pytest.mark.parametrize("sampler, eta, form, order", TRAJECTORIES)
def test_similarity_guidance_by_log_p_is_classifier_guidance_over_whole_trajectories(sampler, eta, form, order,
                                                                                     clip_x0):
    """F(x_t, y) = <log p_t(. | x_t), e_y> = log p_t(y | x_t): sdg_text at gamma is cg at s = gamma,
    sampled from the same seeded noise, to 1e-12 (score form under DDIM eta 0 and 1, mean form under
    the ancestral sampler; clipping on and off)."""
    schedule, _, _, sdg_models, cg_models, y = mixture_case()
    opts, gamma = options(form, order, "dot"), 2.5
    sdg = build_text_similarity_guided(sdg_models, gamma, schedule, clip_x0=clip_x0, options=opts)
    cg = build_classifier_guided(cg_models, gamma, schedule, clip_x0=clip_x0, options=opts)
    unguided = build_classifier_guided(cg_models, 0.0, schedule, clip_x0=clip_x0, options=opts)
    got, expected = run(sdg, schedule, y, sampler, eta=eta), run(cg, schedule, y, sampler, eta=eta)
    assert max_err(got, expected) < 1e-12
    assert max_err(got, run(unguided, schedule, y, sampler, eta=eta)) > 0.1  # the guidance acted


@pytest.mark.parametrize("clip_x0", [True, False])
@pytest.mark.parametrize("form", ["score", "mean"])
def test_similarity_guidance_by_log_p_is_classifier_guidance_step_by_step(form, clip_x0):
    """At every step of a trajectory, the sdg model (and hook) equal cg's to 1e-12 and the closed form
    with the exact classifier gradient to 1e-9: eps_hat = eps_c - gamma sqrt(1 - abar) g (score form,
    eps_c the unguided eps of the clipped x0) or cond_fn = gamma g with the model eps_c (mean form)."""
    schedule, eps_model, classifier, sdg_models, cg_models, y = mixture_case(seed=1)
    opts, gamma = options(form, "unguided_x0", "dot"), 1.7
    sdg = build_text_similarity_guided(sdg_models, gamma, schedule, clip_x0=clip_x0, options=opts)
    cg = build_classifier_guided(cg_models, gamma, schedule, clip_x0=clip_x0, options=opts)
    base = ClipDenoised(WithoutLabels(eps_model), schedule) if clip_x0 else WithoutLabels(eps_model)
    noise = PerSampleNoise(5, range(len(y)))
    x = noise.initial((3,), dtype=F64)
    ts = respaced_timesteps(schedule.timesteps, 20)
    steps = schedule.steps(ts, like=x)
    clipped_somewhere = False
    for step in steps:
        t, t_prev = t_full(x, step.t), t_full(x, step.t_prev)
        g = classifier.log_prob_grad(x, t, y)
        eps_c = base(x, t, y)
        clipped_somewhere |= clip_x0 and max_err(eps_c, eps_model(x, t, None)) > 1e-6
        got, ref = sdg.model(x, t, y), cg.model(x, t, y)
        assert max_err(got, ref) < 1e-12
        if form == "score":
            assert max_err(got, eps_c - gamma * (1 - step.abar).sqrt() * g) < 1e-9
            x = ddim_step(x, got, step=step, eta=0.0)
        else:
            assert torch.equal(got, eps_c)
            shift = sdg.cond_fn(x, t, y, mean=x, t_prev=t_prev)
            assert max_err(shift, cg.cond_fn(x, t, y, mean=x, t_prev=t_prev)) < 1e-12
            assert max_err(shift, gamma * g) < 1e-9
            sigma2 = ddpm_variance(step)
            x = ddpm_step(x, got, step=step, sigma2=sigma2, noise=None if step.is_last else noise(x),
                          cond_fn=sdg.cond_fn, labels=y)
    assert clipped_somewhere or not clip_x0  # clipping acted on this trajectory


# --------------------------------------------------------------------------- a linear encoder: hand formulas


def linear_case(seed=0, batch=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 2, 2, generator=g, dtype=F64)
    weight = torch.randn(3, 4, generator=g, dtype=F64)            # W: D = 3, n = 4
    targets = 2.0 * torch.randn(5, 3, generator=g, dtype=F64)     # K = 5 targets e_k
    y = torch.tensor([4, 0, 2, 2])[:batch]
    return x, weight, targets, y


def hand_gradient(x, weight, targets, y, measure):
    """dot: W^T e_y; cosine: W^T (e_y / ||e_y|| - cos Wx / ||Wx||) / ||Wx||, as x's shape."""
    f = x.flatten(1) @ weight.T
    e = targets[y]
    if measure == "dot":
        grad = e @ weight
    else:
        fn, en = f.norm(dim=1, keepdim=True), e.norm(dim=1, keepdim=True)
        cos = (f * e).sum(1, keepdim=True) / (fn * en)
        grad = (e / en - cos * f / fn) @ weight / fn
    return grad.reshape(x.shape)


@pytest.mark.parametrize("measure", SIMILARITIES)
def test_similarity_values_and_gradient_are_the_hand_formulas(measure):
    x, weight, targets, y = linear_case()
    guide = Similarity(LinearEncoder(weight), targets, measure)
    f = x.flatten(1) @ weight.T
    values = f @ targets.T
    if measure == "cosine":
        values = values / (f.norm(dim=1, keepdim=True) * targets.norm(dim=1)[None])
    t = t_full(x, 10)
    assert guide(x, t).shape == (4, 5) and max_err(guide(x, t), values) < 1e-14
    grad = guide_gradient(guide, x, t, y)
    assert grad.dtype == F64 and max_err(grad, hand_gradient(x, weight, targets, y, measure)) < 1e-13


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("measure", SIMILARITIES)
def test_one_ddim_step_of_the_score_form_is_its_closed_form(measure, eta):
    """x_{t'} = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps_hat + sigma z, x0 = (x - sqrt(1 - abar)
    eps_hat) / sqrt(abar), eps_hat = eps - gamma sqrt(1 - abar) grad F, sigma = eta sqrt((1 - abar') /
    (1 - abar)) sqrt(1 - abar / abar') (DDIM eqs. 12, 16), from the schedule's abar table."""
    x, weight, targets, y = linear_case()
    schedule, gamma, (t_now, t_next) = NoiseSchedule.make("cosine", 1000), 3.0, (600, 550)
    models = {"eps_model": ProbeEps(), "noisy_encoder": LinearEncoder(weight), "clip": ClipStandIn(targets)}
    guided = build_text_similarity_guided(models, gamma, schedule, clip_x0=False, options=options(measure=measure))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=F64)
    step = schedule.steps([t_now, t_next], like=x)[0]
    got = ddim_step(x, guided.model(x, t_full(x, t_now), y), step=step, eta=eta, noise=z)

    abar, abar_prev = schedule.alphas_cumprod[t_now], schedule.alphas_cumprod[t_next]
    eps_hat = 0.5 * x - gamma * (1 - abar).sqrt() * hand_gradient(x, weight, targets, y, measure)
    x0 = (x - (1 - abar).sqrt() * eps_hat) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
    expected = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).sqrt() * eps_hat + sigma * z
    assert max_err(got, expected) < 1e-12
    assert models["eps_model"].calls == [None]  # the unconditional model, asked without labels


@pytest.mark.parametrize("measure", SIMILARITIES)
def test_one_ancestral_step_of_the_mean_form_is_its_closed_form(measure):
    """x_{t'} = mu + gamma beta~ grad F + sqrt(beta~) z with mu = sqrt(abar') beta / (1 - abar) x0 +
    sqrt(1 - beta) (1 - abar') / (1 - abar) x_t, x0 from the unguided eps, beta = 1 - abar / abar',
    beta~ = beta (1 - abar') / (1 - abar) (DDPM eqs. 6-7; SDG, guided step)."""
    x, weight, targets, y = linear_case(seed=1)
    schedule, gamma, (t_now, t_next) = NoiseSchedule.make("linear", 1000), 4.0, (300, 260)
    models = {"eps_model": ProbeEps(), "noisy_encoder": LinearEncoder(weight), "clip": ClipStandIn(targets)}
    guided = build_text_similarity_guided(models, gamma, schedule, clip_x0=False,
                                          options=options("mean", measure=measure))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    step = schedule.steps([t_now, t_next], like=x)[0]
    got = ddpm_step(x, guided.model(x, t_full(x, t_now), y), step=step, sigma2=ddpm_variance(step, "beta_tilde"),
                    noise=z, cond_fn=guided.cond_fn, labels=y)

    abar, abar_prev = schedule.alphas_cumprod[t_now], schedule.alphas_cumprod[t_next]
    beta = 1 - abar / abar_prev
    beta_tilde = beta * (1 - abar_prev) / (1 - abar)
    x0 = (x - (1 - abar).sqrt() * 0.5 * x) / abar.sqrt()
    mu = abar_prev.sqrt() * beta / (1 - abar) * x0 + (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar) * x
    expected = mu + gamma * beta_tilde * hand_gradient(x, weight, targets, y, measure) + beta_tilde.sqrt() * z
    assert max_err(got, expected) < 1e-12
    assert models["noisy_encoder"].ts == [[t_now] * len(x)]  # the gradient is taken at (x_t, t)


def test_the_cosine_gradient_is_finite_and_scale_free():
    """The cosine's gradient is finite even where E~ = 0 (normalize's clamp; SDG's plain division gives
    NaN there), is orthogonal to x for a linear encoder (F(c x) = F(x)), and the cosine does not change
    when E~ is scaled, where the dot product's gradient does."""
    x, weight, targets, y = linear_case()
    x = torch.cat([x, torch.zeros(1, 1, 2, 2, dtype=F64)])  # E~(0) = 0
    y = torch.cat([y, torch.tensor([1])])
    t = t_full(x, 5)
    grad = guide_gradient(Similarity(LinearEncoder(weight), targets, "cosine"), x, t, y)
    assert torch.isfinite(grad).all()
    assert max_err((grad[:-1] * x[:-1]).flatten(1).sum(1), torch.zeros(4, dtype=F64)) < 1e-12
    big = guide_gradient(Similarity(LinearEncoder(10 * weight), targets, "cosine"), x[:-1], t[:-1], y[:-1])
    assert max_err(big, grad[:-1]) < 1e-12  # cos(10 W x, e) = cos(W x, e): same gradient
    dot, dot_big = (guide_gradient(Similarity(LinearEncoder(w), targets, "dot"), x[:-1], t[:-1], y[:-1])
                    for w in (weight, 10 * weight))
    assert max_err(dot_big, 10 * dot) < 1e-12 and max_err(dot, dot_big) > 1.0


def test_similarity_detaches_its_targets_and_refuses_an_unknown_measure():
    x, weight, targets, y = linear_case()
    live = targets.clone().requires_grad_(True)
    guide = Similarity(LinearEncoder(weight), live, "cosine")
    assert not guide.targets.requires_grad
    guide_gradient(guide, x, t_full(x, 1), y)
    assert live.grad is None
    with pytest.raises(ValueError, match="unknown similarity 'l2'"):
        Similarity(LinearEncoder(weight), targets, "l2")
    with pytest.raises(ValueError, match="guidance.sdg_similarity: 'l2'"):
        build_text_similarity_guided({"eps_model": ProbeEps()}, 0.0, NoiseSchedule.make("cosine", 50),
                                     clip_x0=True, options=options(measure="l2"))


# --------------------------------------------------------------------------- gamma = 0, wiring, refusal


@pytest.mark.parametrize("form", ["score", "mean"])
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_gamma_zero_is_the_unguided_model_bit_for_bit(builder, form):
    """At gamma = 0 the models hold only eps_model; the samples are those of the unguided model
    (clipped, asked without labels) and of cg at s = 0, equal bit for bit."""
    schedule, eps_model, _, _, cg_models, y = mixture_case(seed=2)
    opts = options(form)
    guided = BUILDERS[builder]({"eps_model": eps_model}, 0.0, schedule, clip_x0=True, options=opts)
    assert guided.cond_fn is None
    sampler = "ddim" if form == "score" else "ddpm"
    unguided = type(guided)(ClipDenoised(WithoutLabels(eps_model), schedule))
    got = run(guided, schedule, y, sampler, eta=1.0 if sampler == "ddim" else 0.0)
    assert torch.equal(got, run(unguided, schedule, y, sampler, eta=1.0 if sampler == "ddim" else 0.0))
    cg = build_classifier_guided({"eps_model": eps_model}, 0.0, schedule, clip_x0=True, options=opts)
    assert torch.equal(got, run(cg, schedule, y, sampler, eta=1.0 if sampler == "ddim" else 0.0))
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("form", ["score", "mean"])
def test_text_builder_targets_the_class_prompts_in_class_order(form):
    """Sample with label y is pulled towards encode_class_names()[y] (rows distinct, so a wrong
    order or a wrong row fails), by E~ = noisy_encoder, the eps-model asked without labels."""
    x, weight, targets, y = linear_case(seed=3)
    schedule, gamma = NoiseSchedule.make("cosine", 50), 2.0
    probe, clip = ProbeEps(), ClipStandIn(targets)
    models = {"eps_model": probe, "noisy_encoder": LinearEncoder(weight), "clip": clip}
    guided = build_text_similarity_guided(models, gamma, schedule, clip_x0=False, options=options(form))
    assert [name for name, _ in clip.calls] == ["encode_class_names"]
    t = torch.tensor([40, 30, 20, 10])
    g = hand_gradient(x, weight, targets, y, "cosine")
    eps = guided.model(x, t, y)
    if form == "score":
        abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        assert max_err(eps, 0.5 * x - gamma * (1 - abar).sqrt() * g) < 1e-12
    else:
        assert torch.equal(eps, 0.5 * x)
        assert max_err(guided.cond_fn(x, t, y, mean=x, t_prev=t - 1), gamma * g) < 1e-12
    assert probe.calls == [None]


@pytest.mark.parametrize("form", ["score", "mean"])
def test_image_builder_targets_the_clean_embedding_of_each_samples_reference(form):
    """y is the reference slot: sample b is pulled towards encode_image(references)[y_b], the clean
    embedding E(x_ref) computed once from exactly the references given."""
    x, weight, _, _ = linear_case(seed=4)
    g = torch.Generator().manual_seed(4)
    references = torch.rand(3, 1, 2, 2, generator=g, dtype=F64) * 2 - 1
    image_weight = torch.randn(3, 4, generator=g, dtype=F64)
    schedule, gamma, y = NoiseSchedule.make("cosine", 50), 1.5, torch.tensor([2, 0, 1, 2])
    clip = ClipStandIn(None, image_weight)
    models = {"eps_model": ProbeEps(), "noisy_encoder": LinearEncoder(weight), "clip": clip,
              "references": references}
    guided = build_image_similarity_guided(models, gamma, schedule, clip_x0=False, options=options(form))
    assert len(clip.calls) == 1 and clip.calls[0][0] == "encode_image" and clip.calls[0][1] is references
    expected_g = hand_gradient(x, weight, references.flatten(1) @ image_weight.T, y, "cosine")
    t = torch.full((4,), 25)
    if form == "score":
        abar = schedule.alphas_cumprod[25]
        assert max_err(guided.model(x, t, y), 0.5 * x - gamma * (1 - abar).sqrt() * expected_g) < 1e-12
    else:
        assert max_err(guided.cond_fn(x, t, y, mean=x, t_prev=t - 1), gamma * expected_g) < 1e-12


def test_noised_references_are_sdg_codes_targets_with_seeded_noise():
    """sdg_reference: noised compares E~(x_t, t) with E~(q_sample(x_ref, t, z_t), t) (SDG's
    cond_fn_sdg), z_t the same for the same t in every instance and different between t."""
    x, weight, _, _ = linear_case(seed=5)
    references = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(5), dtype=F64) * 2 - 1
    schedule, gamma, y = NoiseSchedule.make("cosine", 50), 1.5, torch.tensor([1, 0, 2, 1])
    encoder = LinearEncoder(weight)
    guide = NoisedReferenceSimilarity(encoder, references, schedule, "cosine")
    assert torch.equal(guide.noise(30), NoisedReferenceSimilarity(encoder, references, schedule).noise(30))
    assert max_err(guide.noise(30), guide.noise(29)) > 0.1
    t = torch.full((4,), 30)
    noised = schedule.q_sample(references, torch.full((3,), 30), guide.noise(30))
    targets = noised.flatten(1) @ weight.T
    assert max_err(guide.targets(30), targets) < 1e-14
    models = {"eps_model": ProbeEps(), "noisy_encoder": encoder, "clip": None, "references": references}
    guided = build_image_similarity_guided(models, gamma, schedule, clip_x0=False,
                                           options=options(sdg_reference="noised"))
    abar = schedule.alphas_cumprod[30]
    expected = 0.5 * x - gamma * (1 - abar).sqrt() * hand_gradient(x, weight, targets, y, "cosine")
    assert max_err(guided.model(x, t, y), expected) < 1e-12
    with pytest.raises(ValueError, match="guidance.sdg_reference: 'blurred'"):
        build_image_similarity_guided(models, gamma, schedule, clip_x0=False, options=options(sdg_reference="blurred"))


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_the_mean_form_refuses_the_guided_x0_clip_order(builder):
    """As for classifier guidance: the mean shift is added after the unguided x0 is clipped, so
    guided_x0 has no mean-form reading (with clipping on); refused at any gamma, naming the keys."""
    schedule = NoiseSchedule.make("cosine", 50)
    x, weight, targets, _ = linear_case()
    models = {"eps_model": ProbeEps(), "noisy_encoder": LinearEncoder(weight), "clip": ClipStandIn(targets, weight),
              "references": x}
    for gamma in (0.0, 2.0):
        with pytest.raises(ValueError, match="guidance.cg_clip_order: guided_x0") as error:
            BUILDERS[builder](models, gamma, schedule, clip_x0=True, options=options("mean", "guided_x0"))
        assert "guidance.cg_form" in str(error.value) and "unguided_x0" in str(error.value)
    allowed = BUILDERS[builder](models, 2.0, schedule, clip_x0=False, options=options("mean", "guided_x0"))
    assert allowed.cond_fn is not None
    with pytest.raises(ValueError, match="guidance.cg_clip_order: guided_x0"):
        gradient_guided(ProbeEps(), Similarity(LinearEncoder(weight), targets), 1.0, schedule, form="mean",
                        clip_order="guided_x0")
    with pytest.raises(ValueError, match="guidance.cg_clip_order: guided_x0"):
        classifier_guided(ProbeEps(), None, 1.0, schedule, form="mean", clip_order="guided_x0")


def test_similarity_stays_float32_under_bf16_autocast():
    """Autocast hands back bf16 features; the similarity is taken in float32 (autocast disabled inside),
    so its values are those of the bf16 features promoted, not rounded to bf16 again."""
    x, weight, targets, y = linear_case()
    encoder = nn.Linear(4, 3).float()
    with torch.no_grad():
        encoder.weight.copy_(weight.float())
        encoder.bias.zero_()
    guide = Similarity(lambda x, t: encoder(x.flatten(1)), targets.float())
    x32 = x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = guide(x32, t_full(x32, 3))
        features = encoder(x32.flatten(1))
    assert features.dtype == torch.bfloat16 and values.dtype == torch.float32
    f, e = features.float(), targets.float()
    expected = (f / f.norm(dim=1, keepdim=True)) @ (e / e.norm(dim=1, keepdim=True)).T
    assert max_err(values, expected) < 1e-6
