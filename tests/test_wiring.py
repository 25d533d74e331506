"""Tests of how a method's parts are connected (issue 26, item 5), generated from every declared
method, in float64 on an exact Gaussian mixture. The exact tests prove each formula; these prove
the wiring around it, which a formula test passes through unseen:

- **roles**: each network a declaration names by role reaches the guided model (replacing it changes
  the samples), under the default options and under every other value of each of its choices
  (except where ``role_inert_unless`` documents the role unused, and there it must be), and scale 0
  samples the eps_model role alone (or its null-label half, where the declaration says so),
  loading no guide;
- **options**: each option changes the samples of each method that declares it, and of no other
  method, given every option at once (a builder reading a key it does not declare would cache
  stale samples: the sampling job's inputs are the declared keys);
- **pairs**: each two options of one method, both moved off their defaults, act together (the
  samples differ from moving either alone) or are refused with a message naming a key; the
  exceptions a declaration documents (``inert_unless``) are set as documented.

"Samples" are one short ancestral chain (DDPM, 10 leading steps, clipping on, fixed noise), so the
mean-shift form, CFG++'s direction and the stateful methods' step counting are all on the path.
Networks, by the registry's names: the conditional model is the mixture's exact eps, the
unconditional model the same with labels ignored, the noisy classifier the exact one, the clean
guide classifier the exact classifier of x_0, the weak
model another mixture's eps, the encoders small fixed linear maps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddpm
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.exact.gaussian_mixture import CleanMixtureClassifier, MixtureClassifier, MixtureEpsModel, random_mixture
from diffguide.guidance.wrappers import NULL_LABEL, ClipDenoised
from diffguide.models.networks import EpsUNet
from diffguide.pipeline.stages.sample import choose_references
from diffguide.registry import REGISTRY, Method, Option

F64 = torch.float64
SCHEDULE = NoiseSchedule.make("cosine", 1000)
TIMESTEPS = respaced_timesteps(1000, 10, "leading")
K, DIM, BATCH, EMBED = 3, 16, 6, 5
IMAGE = (1, 4, 4)  # DIM pixels
METHODS = {name: method for name, method in REGISTRY.methods.items()}
# The methods that perturb the self-attention or the timestep embedding of diffguide's UNet (issue 29): the mixture's exact eps has no
# attention, so their conditional network here is a small seeded EpsUNet on the same 1 x 4 x 4 images.
UNET_METHODS = ("slg", "pag", "seg", "autoguidance_skip", "tsg")


class Unconditional(nn.Module):
    """An eps-model trained without labels: it ignores the labels it is given."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, y=None):
        return self.model(x, t, None)


class LinearEncoder(nn.Module):
    """A noise-aware image encoder E~(x_t, t) = W x."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, x, t):
        return x.flatten(1) @ self.weight.T


class ClipStandIn(nn.Module):
    """The clean encoders: class-name embeddings and E(x) = V x."""

    def __init__(self, names, image_weight):
        super().__init__()
        self.names, self.image_weight = names, image_weight

    def encode_class_names(self):
        return self.names

    def encode_image(self, x):
        return x.flatten(1) @ self.image_weight.T


def networks(seed: int) -> dict[str, nn.Module]:
    """One exact or fixed network per registry network name (a different set for each seed)."""
    g = torch.Generator().manual_seed(seed)
    mixture, other = random_mixture(K, DIM, g, spread=1.0), random_mixture(K, DIM, g, spread=1.0)
    conditional = MixtureEpsModel(mixture, SCHEDULE)
    return {"conditional": conditional, "unconditional": Unconditional(conditional),
            "noisy_classifier": MixtureClassifier(mixture, SCHEDULE),
            "guide_classifier": CleanMixtureClassifier(mixture, SCHEDULE),
            "weak_conditional": MixtureEpsModel(other, SCHEDULE),
            "noisy_image_encoder": LinearEncoder(torch.randn(EMBED, DIM, generator=g, dtype=F64)),
            "clip": ClipStandIn(torch.randn(K, EMBED, generator=g, dtype=F64),
                                torch.randn(EMBED, DIM, generator=g, dtype=F64)),
            "references": torch.rand(BATCH, DIM, generator=g, dtype=F64) * 2 - 1,
            "conditional_unet": small_unet(seed)}


def small_unet(seed: int) -> EpsUNet:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return EpsUNet(image_size=IMAGE[-1], channels=IMAGE[0], widths=[8, 16], attention_levels=[1], num_classes=K,
                       norm_groups=4, head_dim=8).double().eval()


def network_of(method: Method, name: str) -> str:
    """The key of NETWORKS that stands for the registry's network ``name`` in ``method``'s samples."""
    return "conditional_unet" if method.name in UNET_METHODS and name == "conditional" else name


NETWORKS, OTHERS = networks(0), networks(1)


def role_models(method: Method, replaced: str | None = None) -> dict:
    """role -> the network the declaration names (the references for a method guided by them); the
    role ``replaced`` gets another network of the same kind."""
    roles = {"eps_model": method.eps_model, **dict(method.guides)}
    if method.condition == "reference":
        roles["references"] = "references"
    return {role: (OTHERS if role == replaced else NETWORKS)[network_of(method, name)] for role, name in roles.items()}


def defaults(methods=METHODS.values()) -> dict:
    """Every declared option at its default (what a full guidance block holds)."""
    return {key: value for method in methods for key, value in method.defaults.items()}


def samples(method: Method, scale: float, options: dict, models: dict | None = None) -> torch.Tensor:
    """One ancestral chain from fixed x_T and fixed noise, the method's builder given ``options``."""
    guided = method.build()(models or role_models(method), scale, SCHEDULE, clip_x0=True, options=options)
    return chain(guided.model, guided.cond_fn, labels(method))


def chain(model, cond_fn, y) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    # image-shaped, as the pipeline's samples are (1 x 4 x 4 = DIM pixels; the mixture's networks flatten
    # them): a method that works on images (fdg's frequency bands) is wired like every other
    x_T = torch.randn(BATCH, *IMAGE, generator=torch.Generator().manual_seed(3), dtype=F64)
    return sample_ddpm(model, x_T, TIMESTEPS, schedule=SCHEDULE, labels=y, cond_fn=cond_fn, progress=False,
                       noise=lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype))


def labels(method: Method) -> torch.Tensor:
    """Classes i mod K, or reference slots i mod R for a method guided by references."""
    return torch.arange(BATCH) % (BATCH if method.condition == "reference" else K)


def guided_scale(method: Method) -> float:
    """A scale at which every method guides visibly (CFG++'s lambda lies in [0, 1])."""
    return min(2.0, method.scales.maximum if method.scales and method.scales.maximum else 2.0)


def moved(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > 1e-9


# ---------------------------------------------------------------------------------------------- roles


def branch_settings(method: Method) -> list[dict]:
    """The method's options at their defaults, and once more with each other value of each of its
    choices (an enum may switch the code to another branch, with its own reads of the roles)."""
    base = defaults([method])
    return [base] + [base | {option.key: value} for option in method.options if option.enum
                     for value in option.enum if value != option.default]


@pytest.mark.parametrize("name", METHODS)
def test_each_role_reaches_the_network_the_declaration_names(name):
    method, scale = METHODS[name], guided_scale(METHODS[name])
    for options in branch_settings(method):
        try:
            base = samples(method, scale, options)
        except ValueError:  # a combination the method refuses (the mean form with guided_x0)
            continue
        for role in role_models(method):
            acts = all(options[option] == value for r, option, value in method.role_inert_unless if r == role)
            assert moved(samples(method, scale, options, role_models(method, replaced=role)), base) == acts, \
                (f"{name} with {options}: another {role} network " + ("leaves its samples unchanged: the role is not "
                 "wired" if acts else "moves them, where role_inert_unless documents it unused"))


@pytest.mark.parametrize("name", METHODS)
def test_scale_zero_samples_the_eps_model_alone_and_needs_no_guide(name):
    """Given only the eps_model role (a sampling job at scale 0 loads nothing else), the chain is
    the eps-model's own, its x0 clipped as every unguided chain's."""
    method = METHODS[name]
    eps_model = network_of(method, method.eps_model)
    eps_only = {"eps_model": NETWORKS[eps_model]}
    if method.condition == "reference":
        eps_only["references"] = NETWORKS["references"]
    unguided = samples(method, 0.0, defaults([method]), eps_only)
    if method.scale_zero == "own_clip":  # its own x0 treatment at every scale: the eps_model must still be its input
        other = samples(method, 0.0, defaults([method]), eps_only | {"eps_model": OTHERS[eps_model]})
        assert moved(unguided, other), name
        return
    y = labels(method) if method.scale_zero == "eps_model" else torch.full((BATCH,), NULL_LABEL)
    own = chain(ClipDenoised(NETWORKS[eps_model], SCHEDULE), None, y)
    assert (unguided - own).abs().max().item() < 1e-12, name  # CFG++ reaches it by another rounding


# -------------------------------------------------------------------------------------------- options


def probes(option: Option) -> list:
    """Values other than the default that the option accepts: the other members of an enum, or
    null, the bounds and values around the default, in that order."""
    if option.enum:
        return [value for value in option.enum if value != option.default]
    base = 1.0 if option.default is None else float(option.default)
    lo = option.minimum if option.minimum is not None else option.exclusive_minimum
    hi = option.maximum if option.maximum is not None else option.exclusive_maximum
    candidates = [None, lo, hi, base / 10, base / 2, base * 2, base + 1, base - 1, 0.01, 0.5, 1, 3]
    if lo is not None and hi is not None:
        candidates.insert(3, (lo + hi) / 2)
    found = []
    for value in candidates:
        if value is not None and option.type == "integer":
            value = int(round(value))
        try:
            value = option.validate(value)
        except ValueError:
            continue
        if value != option.default and value not in found:
            found.append(value)
    return found


def setting(method: Method, key: str) -> dict:
    """The options under which ``key`` acts: the defaults, and what inert_unless documents it needs."""
    needs = {other: value for option, other, value in method.inert_unless if option == key}
    return defaults() | needs


def acting_values(method: Method, key: str, options: dict | None = None) -> list:
    """The probes of ``key`` that change the method's samples (under ``options``, by default the
    setting where it acts); a probe the builder refuses in that setting (a bound crossing the
    other bound) is no probe."""
    options = setting(method, key) if options is None else options
    base, scale = samples(method, guided_scale(method), options), guided_scale(method)
    acting = []
    for value in probes(method.option(key)):
        try:
            if moved(samples(method, scale, options | {key: value}), base):
                acting.append(value)
        except ValueError:
            continue
    return acting


OPTION_CASES = [(name, option.key) for name, method in METHODS.items() for option in method.options
                if option.acts_in == "model"]


@pytest.mark.parametrize("name,key", OPTION_CASES)
def test_each_option_changes_the_samples_of_its_method(name, key):
    assert acting_values(METHODS[name], key), f"{name}: no value of guidance.{key} but its default changes its samples"


MODEL_OPTIONS = {key: next(o for m in METHODS.values() for o in m.options if o.key == key)
                 for key in sorted({key for _, key in OPTION_CASES})}


def every_probe_at_once(options: list[Option], i: int) -> dict:
    """Each of ``options`` at its i-th probe (its last where it has fewer): one setting that changes
    all of them together."""
    return {option.key: probes(option)[min(i, len(probes(option)) - 1)] for option in options}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_reads_no_option_it_does_not_declare(name):
    """Every option the method does not declare, changed all at once through each of their probes,
    leaves its samples bit-identical (a change names the options that moved them one by one). All at
    once, not one option at a time: 31 methods x 47 options x their probes were 5,222 chains."""
    method = METHODS[name]
    undeclared = [option for key, option in MODEL_OPTIONS.items() if key not in method.option_keys]
    base = samples(method, guided_scale(method), defaults())
    for i in range(max(len(probes(option)) for option in undeclared)):
        changed = every_probe_at_once(undeclared, i)
        if not torch.equal(samples(method, guided_scale(method), defaults() | changed), base):
            readers = {key: value for key, value in changed.items()
                       if not torch.equal(samples(method, guided_scale(method), defaults() | {key: value}), base)}
            pytest.fail(f"{name} reads {', '.join(f'guidance.{k} (= {v!r})' for k, v in readers.items())} "
                        f"without declaring it (changed together: {changed})")


def test_an_option_acting_on_the_references_changes_which_references_are_chosen():
    references = [(name, option) for name, method in METHODS.items() for option in method.options
                  if option.acts_in == "references"]
    assert references, "no declared option acts on the references: this test tests nothing"
    labels_of_split = np.repeat(np.arange(K), 20)
    for name, option in references:
        chosen = choose_references(labels_of_split, option.default, K, seed=0)
        for value in probes(option)[:2]:
            assert not np.array_equal(choose_references(labels_of_split, value, K, seed=0), chosen), (name, value)


# ---------------------------------------------------------------------------------------------- pairs


def documented(method: Method, a: str, b: str) -> tuple | None:
    """The inert_unless triple relating a and b, if the declaration documents one."""
    return next((t for t in method.inert_unless if {t[0], t[1]} == {a, b}), None)


PAIR_CASES = [(name, a, b) for name, method in METHODS.items()
              for a, b in itertools.combinations([o.key for o in method.options if o.acts_in == "model"], 2)
              if not documented(method, a, b)]
DOCUMENTED_CASES = [(name, *triple) for name, method in METHODS.items() for triple in method.inert_unless]


@pytest.mark.parametrize("name,a,b", PAIR_CASES)
def test_each_pair_of_options_acts_together_or_is_refused(name, a, b):
    """Neither option silently overrides the other: for some values at which each acts alone, the
    two together give samples unlike either alone; or the pair is refused naming a key."""
    method, scale = METHODS[name], guided_scale(METHODS[name])
    options = setting(method, a) | setting(method, b)
    for value_a, value_b in itertools.product(acting_values(method, a)[:3], acting_values(method, b)[:3]):
        try:
            both = samples(method, scale, options | {a: value_a, b: value_b})
        except ValueError as refused:
            assert f"guidance.{a}" in str(refused) or f"guidance.{b}" in str(refused), refused
            return
        alone_a, alone_b = (samples(method, scale, options | {a: value_a}),
                            samples(method, scale, options | {b: value_b}))
        if moved(both, alone_a) and moved(both, alone_b):
            return
    pytest.fail(f"{name}: guidance.{a} and guidance.{b} never act together: one overrides the other "
                "(declare it in inert_unless if that is the documented composition)")


@pytest.mark.parametrize("name,key,other,value", DOCUMENTED_CASES)
def test_an_option_documented_as_inert_unless_another_has_a_value_is_inert_otherwise(name, key, other, value):
    """The documented composition, both halves: ``key`` acts where ``other`` has ``value`` (the
    option test above) and changes nothing at every other value of ``other``."""
    method = METHODS[name]
    assert acting_values(method, key), (name, key)
    for elsewhere in [v for v in [method.option(other).default, *probes(method.option(other))] if v != value]:
        assert acting_values(method, key, defaults() | {other: elsewhere}) == [], (name, key, other, elsewhere)


def test_the_cases_cover_every_declared_option_and_pair():
    """The parametrisations above are generated from the declarations, so a new method is tested
    without an edit here; this says how many cases that is, and that none was dropped."""
    model_options = sum(1 for m in METHODS.values() for o in m.options if o.acts_in == "model")
    assert len(OPTION_CASES) == model_options
    assert len(PAIR_CASES) + len(DOCUMENTED_CASES) == sum(
        math.comb(sum(1 for o in m.options if o.acts_in == "model"), 2) for m in METHODS.values())
