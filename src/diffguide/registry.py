"""The registry: the one place that knows every guidance method and every network.

Everything that needs a method's or a network's facts reads them here: the Snakefile (wildcard
patterns, which models a sampling job needs, the guidance keys it depends on), the sampling stage
(how to build the guided eps-model), the figures and tables (labels, symbols, titles), the
findings and the config checks. No other module takes a name apart by hand.

Names with a parameter. The conditional eps-model can be trained at several label-drop
probabilities: ``conditional_p0.5`` is the conditional model trained with p_uncond = 0.5, and
``cfg_p0.5`` is classifier-free guidance of that model. ``parse_method`` / ``parse_network`` read
such names and ``variant_name`` writes them; nothing else does.

Adding a guidance method is one module (its eps-model wrapper, citing its equation in
docs/equations.md, and a ``build(models, scale, schedule, *, clip_x0, options) -> Guided`` function) plus one
``Method`` row registered here (or from a plugin module named in the config's ``plugins``).

This module imports no torch: the Snakefile imports it at parse time.

May import: nothing of diffguide (builders and plugins are imported by name, when a job builds one).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Callable

# How a p_uncond variant is written in names: <base>_p<p>, p as scale_tag writes it.
_VARIANT = re.compile(r"^(?P<base>[a-z][a-z0-9_]*?)_p(?P<p>[0-9][0-9.]*)$")
_VARIANT_PATTERN = r"_p[0-9.]+"


def scale_tag(value) -> str:
    """A guidance scale (or p_uncond) as it appears in file names: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(value):g}"


@dataclass(frozen=True)
class Network:
    """One trained network of the pipeline.

    ``name`` is its file stem (results/<run>/models/<name>.pt) and its training block
    (training.<name>); ``arch_key`` the block of ``networks`` that shapes it; ``kind`` what
    diffguide.models.kinds.build_network builds; ``loss`` which training loss it learns with."""

    name: str
    kind: str
    arch_key: str
    loss: str
    role: str
    takes_labels: bool = False
    p_uncond_variants: bool = False  # conditional_p<p>: trained again at each training.conditional.p_uncond_sweep
    init_from: str | None = None  # a network whose trained weights this one starts from (and needs as input)


CONDITIONS = ("class", "reference")


@dataclass(frozen=True)
class Method:
    """One guidance method.

    - ``symbol``: the paper's name of its scale (H&S's w, D&N's s); ``label``: legend text;
      ``title``: what a grid of its samples shows; ``caption``: one sentence for the report.
    - ``eps_model``: the network whose eps it guides; ``guides``: (role, network) pairs of the
      networks that steer it (classifier guidance's noisy classifier, similarity guidance's
      encoders), loaded except at scale 0 (the unguided model, which samples without them).
    - ``condition``: what a sample is guided towards: ``"class"`` (sample i asks for class i mod K)
      or ``"reference"`` (sample i is guided towards a reference image of the test split, of class
      i mod K; the sampling job reads the test split and stores the references it chose).
    - ``options``: the guidance.* keys (besides its scales) its sampling jobs depend on.
    - ``builder``: ``"module:function"`` building the guided eps-model, imported only when a
      job samples (so this table stays torch-free).
    - ``p_uncond_variants``: cfg_p<p> guides the model trained at p_uncond = p.
    """

    name: str
    symbol: str
    label: str
    title: str
    caption: str
    eps_model: str
    builder: str
    guides: tuple[tuple[str, str], ...] = ()
    condition: str = "class"
    options: tuple[str, ...] = ()
    p_uncond_variants: bool = False

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ValueError(f"method {self.name!r}: condition {self.condition!r} is not one of {CONDITIONS}")

    @property
    def scales_option(self) -> str:
        """Its key in the guidance block listing its scales, e.g. cfg_scales."""
        return f"{self.name}_scales"

    @property
    def scales_key(self) -> str:
        """The same key from the config's top, e.g. guidance.cfg_scales, for messages."""
        return f"guidance.{self.scales_option}"

    def build(self) -> Callable:
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class MethodName:
    """A parsed method name: its registry row and, for a p_uncond variant, its p."""

    method: Method
    p_uncond: float | None = None

    @property
    def name(self) -> str:
        return variant_name(self.method.name, self.p_uncond)

    @property
    def eps_model(self) -> str:
        """The network file this method's eps comes from: conditional_p0.5 for cfg_p0.5."""
        return variant_name(self.method.eps_model, self.p_uncond)

    def models(self, scale: float) -> dict[str, str]:
        """role -> network name of the models a sampling job at ``scale`` loads."""
        models = {"eps_model": self.eps_model}
        if float(scale) != 0:
            models |= dict(self.method.guides)
        return models

    @property
    def label(self) -> str:
        if self.p_uncond is None:
            return self.method.label
        stem, symbol = self.method.label.removesuffix(f" ({self.method.symbol})"), self.method.symbol
        return f"{stem} p_uncond={scale_tag(self.p_uncond)} ({symbol})"

    @property
    def title(self) -> str:
        if self.p_uncond is None:
            return self.method.title
        return f"{self.method.title} (p_uncond = {scale_tag(self.p_uncond)})"


@dataclass(frozen=True)
class NetworkName:
    """A parsed network name: its registry row and, for conditional_p<p>, its p."""

    network: Network
    p_uncond: float | None = None
    name = property(lambda self: variant_name(self.network.name, self.p_uncond))


@dataclass
class Registry:
    networks: dict[str, Network] = field(default_factory=dict)
    methods: dict[str, Method] = field(default_factory=dict)


REGISTRY = Registry()


def register_network(network: Network) -> Network:
    REGISTRY.networks[network.name] = network
    return network


def register_method(method: Method) -> Method:
    """Add (or replace) a guidance method; a plugin module calls this at import."""
    for role, network in (("eps_model", method.eps_model), *method.guides):
        if network not in REGISTRY.networks:
            raise ValueError(f"method {method.name!r}: {role} {network!r} is not a registered network")
    REGISTRY.methods[method.name] = method
    return method


def unregister_method(name: str) -> None:
    REGISTRY.methods.pop(name, None)


def load_plugins(modules) -> None:
    """Import the config's ``plugins`` (module names), each registering its methods."""
    for module in modules or ():
        importlib.import_module(module)


def _parse(name: str, table: dict, what: str):
    """(row, p_uncond) for ``name``, a row's name or <row>_p<p> of a row with variants."""
    if name in table:
        return table[name], None
    match = _VARIANT.match(name)
    row = table.get(match["base"]) if match else None
    if row is None or not row.p_uncond_variants:
        variants = [f"{n}_p<p>" for n, r in table.items() if r.p_uncond_variants]
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join([*table, *variants])}")
    try:
        return row, float(match["p"])
    except ValueError:
        raise ValueError(f"{what} {name!r}: {match['p']!r} is not a number") from None


def parse_method(name: str) -> MethodName:
    return MethodName(*_parse(name, REGISTRY.methods, "guidance method"))


def parse_network(name: str) -> NetworkName:
    return NetworkName(*_parse(name, REGISTRY.networks, "network"))


def method_label(name: str) -> str:
    """Legend text of a method name; the name itself for one no registered method has (a row
    of a plugin's method read without the plugin)."""
    try:
        return parse_method(name).label
    except ValueError:
        return name


def method_symbol(name: str) -> str:
    """The paper's symbol of a method's scale (w, s), or "scale" for an unknown method."""
    try:
        return parse_method(name).method.symbol
    except ValueError:
        return "scale"


def variant_name(base: str, p_uncond: float | None = None) -> str:
    """A method's or network's name: ``base``, or <base>_p<p> for the variant trained at p_uncond = p."""
    return base if p_uncond is None else f"{base}_p{scale_tag(p_uncond)}"


def _pattern(table: dict) -> str:
    names = [re.escape(n) for n in table] + [re.escape(n) + _VARIANT_PATTERN for n, r in table.items()
                                             if r.p_uncond_variants]
    return "|".join(names)  # the wildcard is matched whole, between slashes: the order does not matter


def method_pattern() -> str:
    """The regex of every method name, for Snakemake's wildcard constraints."""
    return _pattern(REGISTRY.methods)


def network_pattern() -> str:
    return _pattern(REGISTRY.networks)


# Keys of a training block that name other models, not this one's training.
NAMING_KEYS = ("p_uncond_sweep",)


def training_block(training: dict, network: str) -> dict:
    """A network's training settings from the config's training section: its own block, and for
    conditional_p<p> the conditional block at p_uncond = p; keys that only name other models
    (p_uncond_sweep) left out. A section already keyed by the full name (a rule's params) is
    read as it is."""
    if network in training:
        block = training[network]
    else:
        parsed = parse_network(network)
        block = {**training[parsed.network.name], "p_uncond": parsed.p_uncond}
    return {key: value for key, value in block.items() if key not in NAMING_KEYS}


def run_methods(guidance: dict, p_uncond_sweep) -> list[str]:
    """The sweeps a run samples: guidance.methods, then each method with p_uncond variants once
    more per training.conditional.p_uncond_sweep value (cfg_p<p>)."""
    methods = list(guidance["methods"])
    variants = [m for m in methods if REGISTRY.methods[m].p_uncond_variants]
    return methods + [variant_name(m, p) for p in p_uncond_sweep for m in variants]


def run_networks(methods) -> list[str]:
    """The networks a run trains: those its sweeps (run_methods) load, at any scale, the networks
    they start from (``init_from``), and the evaluation classifier, which measures every sweep; in
    registry order, the p_uncond variants last. A run without classifier guidance trains no noisy
    classifier, one without similarity guidance no encoders."""
    wanted = {"eval_classifier"}
    for name in methods:
        parsed = parse_method(name)
        wanted |= {parsed.eps_model, *(network for _, network in parsed.method.guides)}
    pending = list(wanted)
    while pending:  # what the wanted networks start from, and what that starts from
        start = REGISTRY.networks[parse_network(pending.pop()).network.name].init_from
        if start and start not in wanted:
            wanted.add(start)
            pending.append(start)
    order = list(REGISTRY.networks)
    return sorted(wanted, key=lambda n: (n not in REGISTRY.networks, order.index(parse_network(n).network.name), n))


# The networks. The rule graph reads as the papers' method: the eps-models (H&S Algorithm 1), the
# noisy classifier (D&N section 4), and the evaluation classifier, which only measures.
for _network in (
    Network("unconditional", "eps_unet", "unet", "diffusion",
            "eps-model without labels, the model classifier guidance steers (D&N section 4)"),
    Network("conditional", "eps_unet", "unet", "diffusion",
            "eps-model with labels dropped to the null class with probability p_uncond (H&S Algorithm 1)",
            takes_labels=True, p_uncond_variants=True),
    Network("noisy_classifier", "noisy_classifier", "noisy_classifier", "noisy_classifier",
            "classifier p_phi(y | x_t, t) of noised images, whose gradient guides (D&N section 4)", takes_labels=True),
    Network("eval_classifier", "eval_classifier", "eval_classifier", "clean_classifier",
            "classifier of clean images whose features and predictions measure the samples", takes_labels=True),
    # Semantic diffusion guidance's encoders (Liu et al. 2021): a CLIP-style image / class-name
    # encoder pair trained contrastively here (no CLIP weights offline), then its image encoder
    # fine-tuned on noised images x_t (SDG sec. 3.3) into the E~ whose similarity guides.
    # Autoguidance's weak model (Karras et al. 2024): the conditional eps-model's conditioning, a
    # smaller network (networks.weak_unet) trained for fewer steps (training.weak_conditional).
    Network("weak_conditional", "eps_unet", "weak_unet", "diffusion",
            "smaller, shorter-trained conditional eps-model that autoguidance guides away from (Karras et al. 2024)",
            takes_labels=True),
    Network("clip", "clip", "clip", "clip_contrastive",
            "joint clean-image / class-name encoder E, T trained with a CLIP-style contrastive loss (SDG sec. 3.3)",
            takes_labels=True),
    Network("noisy_image_encoder", "noisy_image_encoder", "clip", "noisy_embedding",
            "image encoder E~(x_t, t) fine-tuned from clip's E on noised images (SDG sec. 3.3)",
            takes_labels=True, init_from="clip"),
):
    register_network(_network)

# The guidance methods, and the networks that steer them (loaded by role).
CLASSIFIER = (("classifier", "noisy_classifier"),)
ENCODERS = (("noisy_encoder", "noisy_image_encoder"), ("clip", "clip"))
SIMILARITY_OPTIONS = ("cg_form", "cg_clip_order", "sdg_similarity")
for _method in (
    Method("cfg", "w", "classifier-free, conditional model (w)",
           "classifier-free guidance of the conditional model, columns: w",
           "Classifier-free guidance (H&S eq. 6): eps~ = (1 + w) eps(x, y) - w eps(x, null) on the conditional "
           "model; w = 0 is the conditional model itself.",
           eps_model="conditional", builder="diffguide.guidance.wrappers:build_classifier_free",
           p_uncond_variants=True),
    Method("cg", "s", "classifier guidance, unconditional model (s)",
           "classifier guidance of the unconditional model, columns: s",
           "Classifier guidance (D&N Algorithms 1 and 2) of the unconditional model by the noisy classifier's "
           "gradient at scale s; s = 0 is the unguided model.",
           eps_model="unconditional", builder="diffguide.guidance.wrappers:build_classifier_guided", guides=CLASSIFIER,
           options=("cg_form", "cg_clip_order")),
    Method("cond_cg", "s", "classifier guidance, conditional model (s)",
           "classifier guidance of the conditional model, columns: s",
           "Classifier guidance at scale s of the conditional model, itself guided at w = guidance.cond_cg_w "
           "(D&N Table 4's conditional rows when w = 0).",
           eps_model="conditional", builder="diffguide.guidance.wrappers:build_conditional_classifier_guided",
           guides=CLASSIFIER, options=("cg_form", "cg_clip_order", "cond_cg_w")),
    Method("sdg_text", "gamma", "similarity guidance by class name, unconditional model (gamma)",
           "text-similarity guidance of the unconditional model, columns: gamma",
           "Semantic diffusion guidance by language (Liu et al. 2021): the unconditional model steered by "
           "gamma * grad F, F the similarity of the noise-aware image encoder's E~(x_t) with the class name's "
           "embedding; gamma = 0 is the unguided model. SDG found that language guidance steers an unconditional "
           "model to the text's content as gamma grows; make findings 9 and 11 measure whether ours does, and its FID "
           "against classifier guidance at matched accuracy.",
           eps_model="unconditional",
           builder="diffguide.guidance.methods.similarity:build_text_similarity_guided", guides=ENCODERS,
           options=SIMILARITY_OPTIONS),
    Method("sdg_image", "gamma", "similarity guidance by reference image, unconditional model (gamma)",
           "reference-image similarity guidance of the unconditional model, columns: gamma",
           "Semantic diffusion guidance by a reference image (Liu et al. 2021): the unconditional model steered "
           "by gamma * grad F, F the similarity of E~(x_t) with the clean embedding E(x_ref) of a test image; "
           "gamma = 0 is the unguided model. SDG found that image guidance carries the reference's content into "
           "the sample; make findings 10 measures our samples' similarity to their references.",
           eps_model="unconditional",
           builder="diffguide.guidance.methods.similarity:build_image_similarity_guided", guides=ENCODERS,
           condition="reference", options=(*SIMILARITY_OPTIONS, "sdg_reference", "sdg_references_per_class")),
):
    register_method(_method)

# The guidance testbed (issue 16): the methods since 2022, each one module and one row, in our w
# convention (w = 0 is the unguided model; every paper's and diffusers' guidance_scale is 1 + w).
INTERVAL_OPTIONS = ("interval_sigma_lo", "interval_sigma_hi")
WEAK_MODEL = (("weak_model", "weak_conditional"),)
TESTBED_ROWS = (
    Method("cfg_interval", "w", "CFG in a noise interval (w)",
           "classifier-free guidance only for sigma in (lo, hi], columns: w",
           "Guidance interval (Kynkaanniemi et al. 2024): classifier-free guidance at w for noise levels "
           "sigma_t in (guidance.interval_sigma_lo, interval_sigma_hi], the conditional model elsewhere "
           "(their guidance scale = 1 + w).",
           eps_model="conditional", builder="diffguide.guidance.methods.limited_interval:build_cfg_interval",
           options=INTERVAL_OPTIONS),
    Method("cg_interval", "s", "classifier guidance in a noise interval (s)",
           "classifier guidance of the unconditional model only for sigma in (lo, hi], columns: s",
           "Guidance interval applied to classifier guidance: the score shift at s for sigma_t in "
           "(guidance.interval_sigma_lo, interval_sigma_hi], the unguided unconditional model elsewhere.",
           eps_model="unconditional",
           builder="diffguide.guidance.methods.limited_interval:build_cg_interval", guides=CLASSIFIER,
           options=("cg_clip_order", *INTERVAL_OPTIONS)),
    Method("cfg_schedule", "w", "CFG with a weight schedule (w)",
           "classifier-free guidance with weight w(t) = w f(t), columns: w",
           "Guidance-weight schedule (Wang et al. 2024): classifier-free guidance at w(t) = w f(t / (T - 1)), f as "
           "guidance.weight_schedule says (constant, linear_up, linear_down: mean w over t; interval).",
           eps_model="conditional", builder="diffguide.guidance.methods.weight_schedules:build_cfg_schedule",
           options=("weight_schedule", *INTERVAL_OPTIONS)),
    Method("cg_schedule", "s", "classifier guidance with a weight schedule (s)",
           "classifier guidance of the unconditional model with scale s(t) = s f(t), columns: s",
           "Guidance-weight schedule (Wang et al. 2024) applied to classifier guidance: the score shift at "
           "s(t) = s f(t / (T - 1)), f as guidance.weight_schedule says.",
           eps_model="unconditional",
           builder="diffguide.guidance.methods.weight_schedules:build_cg_schedule", guides=CLASSIFIER,
           options=("weight_schedule", "cg_clip_order", *INTERVAL_OPTIONS)),
    Method("autoguidance", "w", "autoguidance by a weak model (w)",
           "autoguidance of the conditional model by the weak one, columns: w",
           "Autoguidance (Karras et al. 2024): eps = (1 + w) eps_1(x, y) - w eps_0(x, y), eps_0 the smaller, "
           "shorter-trained conditional model weak_conditional (their w = 1 + ours); w = 0 is the conditional model.",
           eps_model="conditional",
           builder="diffguide.guidance.methods.autoguidance:build_autoguidance", guides=WEAK_MODEL),
    Method("cfgpp", "lambda", "CFG++ (lambda)",
           "CFG++ of the conditional model, columns: lambda",
           "CFG++ (Chung et al. 2024): x0 from eps_u + lambda (eps_c - eps_u), renoised with eps_u; lambda in "
           "[0, 1], lambda = 0 is the UNCONDITIONAL model (one CFG++ step is a CFG step at a w that grows with t).",
           eps_model="conditional", builder="diffguide.guidance.methods.cfgpp:build_cfgpp"),
    Method("apg", "w", "adaptive projected guidance (w)",
           "adaptive projected guidance of the conditional model, columns: w",
           "Adaptive projected guidance (Sadat et al. 2024): the x0 guidance difference, with momentum "
           "guidance.apg_momentum and norm cap apg_norm_threshold, split into parts parallel and orthogonal to "
           "the conditional x0, the parallel part weighted by apg_eta (their scale = 1 + w).",
           eps_model="conditional", builder="diffguide.guidance.methods.apg:build_apg",
           options=("apg_eta", "apg_norm_threshold", "apg_momentum")),
    Method("cfg_rescale", "w", "CFG with guidance rescale (w)",
           "classifier-free guidance rescaled to the conditional std, columns: w",
           "Guidance rescale (Lin et al. 2023, sec. 3.4): the CFG eps rescaled to the conditional eps's "
           "per-sample std and mixed by guidance.rescale_phi (diffusers' guidance_rescale; scale = 1 + w).",
           eps_model="conditional",
           builder="diffguide.guidance.methods.rescale:build_cfg_rescale", options=("rescale_phi",)),
    Method("dynamic_threshold", "w", "CFG with dynamic thresholding (w)",
           "classifier-free guidance with Imagen's dynamic thresholding, columns: w",
           "Dynamic thresholding (Saharia et al. 2022): the CFG x0 clipped at its guidance.threshold_percentile "
           "quantile of |x0| (at least 1) and divided by it, in place of the static clip (scale = 1 + w).",
           eps_model="conditional", builder="diffguide.guidance.methods.dynamic_thresholding:build_dynamic_threshold",
           options=("threshold_percentile", "threshold_max")),
    Method("cfg_zero_star", "w", "CFG-Zero* (w)",
           "CFG-Zero* of the conditional model, columns: w",
           "CFG-Zero* (Fan et al. 2025): eps = (1 + w) eps_c - w s* eps_u with s* = <eps_c, eps_u> / ||eps_u||^2, "
           "and the first guidance.zero_init_steps steps zeroed (their guidance scale = 1 + w).",
           eps_model="conditional",
           builder="diffguide.guidance.methods.cfg_zero_star:build_cfg_zero_star", options=("zero_init_steps",)),
)
for _method in TESTBED_ROWS:
    register_method(_method)
# The testbed's method names, in registry order (its report category, its findings).
TESTBED_METHODS = tuple(method.name for method in TESTBED_ROWS)
