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
import math
import pkgutil
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
OPTION_TYPES = ("number", "integer", "string")
# Where an option acts: in the guided eps-model the builder makes, or in the sampling job's choice of
# reference images (similarity guidance by image).
OPTION_SCOPES = ("model", "references")


@dataclass(frozen=True)
class Option:
    """One guidance.* key a method's sampling jobs depend on: its default, its range and what it
    means, declared once beside the method (diffguide.guidance.methods.<unit>). config.schema.yaml
    and config/README.md hold the same facts for users; tests/test_method_declarations.py fails on
    any drift between them and this declaration, and the method's builder validates its values
    with ``validate`` (so the range a job accepts is the range the schema states).

    ``type``: number, integer or string (``enum`` its values); ``nullable``: null (None) is allowed,
    meaning what ``description`` says; bounds as JSON Schema's minimum / maximum /
    exclusiveMinimum / exclusiveMaximum; ``fix``: the advice a refused value's message ends with;
    ``acts_in``: one of OPTION_SCOPES (tests/test_wiring.py checks that it acts there)."""

    key: str
    default: object
    description: str
    type: str = "number"
    nullable: bool = False
    enum: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    fix: str = ""
    acts_in: str = "model"

    def __post_init__(self):
        if self.acts_in not in OPTION_SCOPES:
            raise ValueError(f"option {self.key!r}: acts_in {self.acts_in!r} is not one of {OPTION_SCOPES}")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.key!r}: type {self.type!r} is not one of {OPTION_TYPES}")
        if self.default is not None or not self.nullable:
            self.validate(self.default)  # a declaration whose own default it refuses is a typo

    def schema(self) -> dict:
        """The entry config.schema.yaml's guidance block holds for this key."""
        entry = {"type": [self.type, "null"] if self.nullable else self.type}
        if self.enum:
            entry["enum"] = list(self.enum)
        for name, bound in (("minimum", self.minimum), ("maximum", self.maximum),
                            ("exclusiveMinimum", self.exclusive_minimum), ("exclusiveMaximum", self.exclusive_maximum)):
            if bound is not None:
                entry[name] = bound
        return entry | {"default": self.default, "description": self.description}

    def requirement(self) -> str:
        """What a value must be, in words: 'in (-1, 0]', 'an integer >= 0', 'one of score, mean'."""
        if self.enum:
            return f"one of {', '.join(map(str, self.enum))}"
        if self.type == "integer":
            return f"an integer >= {self.minimum:g}" if self.minimum is not None else "an integer"
        lo, lo_open = ((self.exclusive_minimum, True) if self.exclusive_minimum is not None
                       else (self.minimum if self.minimum is not None else -math.inf, False))
        hi, hi_open = ((self.exclusive_maximum, True) if self.exclusive_maximum is not None
                       else (self.maximum if self.maximum is not None else math.inf, False))
        return f"in {'(' if lo_open or lo == -math.inf else '['}{lo:g}, {hi:g}{')' if hi_open or hi == math.inf else ']'}"

    def validate(self, value):
        """``value`` as this option's type (a float for numbers), or a ValueError naming guidance.<key>,
        what it must be, and the fix."""
        if value is None and self.nullable:
            return None
        if self.type == "string":
            if value not in self.enum:
                raise self._refused(value, self.requirement())
            return value
        if isinstance(value, bool) or not isinstance(value, int if self.type == "integer" else (int, float)):
            raise self._refused(value, self.requirement() if self.type == "integer" else "a finite number")
        if self.type == "number" and not math.isfinite(value):
            raise self._refused(value, "a finite number")
        inside = ((self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
                  and (self.exclusive_minimum is None or value > self.exclusive_minimum)
                  and (self.exclusive_maximum is None or value < self.exclusive_maximum))
        if not inside:
            raise self._refused(value, self.requirement())
        return float(value) if self.type == "number" else value

    def value_in(self, options: dict):
        """Its validated value in a guidance block (or a row's options): the given one, else the default."""
        return self.validate(options.get(self.key, self.default))

    def _refused(self, value, requirement: str) -> ValueError:
        fix = self.fix or f"{self.key}: {self.description}"
        return ValueError(f"guidance.{self.key} must be {requirement}, got {value!r}; {fix}")


@dataclass(frozen=True)
class Scales:
    """A method's sweep, guidance.<name>_scales: its default values, what a scale means, and the
    largest scale the method accepts (CFG++'s lambda <= 1), if any."""

    default: tuple[float, ...]
    description: str
    maximum: float | None = None

    def schema(self) -> dict:
        items = {"type": "number", "minimum": 0} | ({"maximum": self.maximum} if self.maximum is not None else {})
        return {"type": "array", "items": items, "minItems": 1, "default": list(self.default),
                "description": self.description}


# How diffguide.findings.testbed tests a claim (its functions of the same names).
CLAIM_TESTS = ("lower_fid_at_same_w", "lower_best_fid", "lower_best_fid_keeping_recall", "less_saturation")


@dataclass(frozen=True)
class Claim:
    """A paper's headline claim, restated for this setting: who claims it, what, the number of the
    finding that tests it (``make findings``'s stable number) and how (one of CLAIM_TESTS)."""

    paper: str
    claim: str
    finding: int
    test: str

    def __post_init__(self):
        if self.test not in CLAIM_TESTS:
            raise ValueError(f"claim {self.claim!r}: test {self.test!r} is not one of {CLAIM_TESTS}")


# What a method is compared in: the papers' own methods, similarity guidance, or the testbed of
# the methods since 2022 (its report category, its findings and its table).
GROUPS = ("papers", "similarity", "testbed")
SCALE_ZERO = ("eps_model", "null_label", "own_clip")


@dataclass(frozen=True)
class Method:
    """One guidance method, as its unit of diffguide.guidance.methods declares it.

    - ``symbol``: the paper's name of its scale (H&S's w, D&N's s); ``label``: legend text;
      ``title``: what a grid of its samples shows; ``caption``: one sentence for the report.
    - ``eps_model``: the network whose eps it guides; ``guides``: (role, network) pairs of the
      networks that steer it (classifier guidance's noisy classifier, similarity guidance's
      encoders), loaded except at scale 0 (the unguided model, which samples without them).
    - ``condition``: what a sample is guided towards: ``"class"`` (sample i asks for class i mod K)
      or ``"reference"`` (sample i is guided towards a reference image of the test split, of class
      i mod K; the sampling job reads the test split and stores the references it chose).
    - ``options``: the guidance.* keys (besides its scales) its sampling jobs depend on, each an
      Option with its default and range; ``scales``: its sweep's default (None for a plugin's
      method whose config must give guidance.<name>_scales).
    - ``builder``: ``"module:function"`` building the guided eps-model, imported only when a
      job samples (so this table stays torch-free; tests/test_registry.py resolves every one).
    - ``group``: one of GROUPS; ``claim``: the paper's claim a testbed finding tests, if any.
    - ``scale_zero``: what its scale 0 samples, one of SCALE_ZERO: the eps_model role as it is
      (``"eps_model"``), its unconditional half (``"null_label"``: CFG++'s lambda = 0), or the
      eps_model role with the method's own treatment of x0 in place of the static clip
      (``"own_clip"``: dynamic thresholding thresholds at every w).
    - ``inert_unless``: (option, other option, value) triples: the option acts only where the
      other has that value (a weight schedule's interval bounds act only for weight_schedule:
      interval). The documented composition of its options; tests/test_wiring.py holds every
      other pair to acting together or being refused.
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
    options: tuple[Option, ...] = ()
    scales: Scales | None = None
    group: str = "papers"
    claim: Claim | None = None
    scale_zero: str = "eps_model"
    inert_unless: tuple[tuple[str, str, object], ...] = ()
    p_uncond_variants: bool = False

    def __post_init__(self):
        if self.scale_zero not in SCALE_ZERO:
            raise ValueError(f"method {self.name!r}: scale_zero {self.scale_zero!r} is not one of {SCALE_ZERO}")
        unknown = {key for triple in self.inert_unless for key in triple[:2]} - {o.key for o in self.options}
        if unknown:
            raise ValueError(f"method {self.name!r}: inert_unless names options it does not declare: {sorted(unknown)}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"method {self.name!r}: condition {self.condition!r} is not one of {CONDITIONS}")
        if self.group not in GROUPS:
            raise ValueError(f"method {self.name!r}: group {self.group!r} is not one of {GROUPS}")
        if not all(isinstance(option, Option) for option in self.options):
            raise ValueError(f"method {self.name!r}: options must be Option declarations (diffguide.registry.Option), "
                             f"got {self.options!r}")

    @property
    def option_keys(self) -> tuple[str, ...]:
        """The guidance.* keys of its options, e.g. ('apg_eta', 'apg_norm_threshold', 'apg_momentum')."""
        return tuple(option.key for option in self.options)

    def option(self, key: str) -> Option:
        return next(option for option in self.options if option.key == key)

    def resolved(self, options: dict) -> dict:
        """key -> validated value of each of its options: the given value, else the declared default."""
        return {option.key: option.value_in(options) for option in self.options}

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
    """The registered networks and methods. The built-in methods are read from their declarations
    (builtin_units) when the table is first used, not when this module is imported: a unit's
    declaration imports this module for Method and Option, so a unit imported first must find it
    importable without the units."""

    networks: dict[str, Network] = field(default_factory=dict)
    registered: dict[str, Method] = field(default_factory=dict)
    builtins_loaded: bool = False

    @property
    def methods(self) -> dict[str, Method]:
        if not self.builtins_loaded:
            self.builtins_loaded = True
            for unit in builtin_units():  # register_method reads this property: the flag is set first
                for method in unit.METHODS:
                    register_method(method)
        return self.registered


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



# The guidance methods: each unit of diffguide.guidance.methods declares its own (METHODS in its
# torch-free __init__, the implementation beside it in wrapper.py) and its place in the report
# (ORDER: the papers' methods first, then similarity guidance, then the testbed in the order its
# methods were added). They are imported here by name, as the config's plugins are, so that this
# table is whole whenever anything reads it and no file but each unit's own lists a method.
METHOD_UNITS = "diffguide.guidance.methods"


def builtin_units() -> list:
    """The units of diffguide.guidance.methods (their __init__ modules), in their declared ORDER."""
    package = importlib.import_module(METHOD_UNITS)
    units = [importlib.import_module(f"{METHOD_UNITS}.{info.name}")
             for info in pkgutil.iter_modules(package.__path__) if info.ispkg]
    for unit in units:
        if not isinstance(getattr(unit, "ORDER", None), int) or not getattr(unit, "METHODS", None):
            raise ValueError(f"{unit.__name__}: a unit of {METHOD_UNITS} declares ORDER (an int, its place in "
                             "the report) and METHODS (its Method declarations) in its __init__")
    orders = [unit.ORDER for unit in units]
    if len(set(orders)) != len(orders):
        raise ValueError(f"units of {METHOD_UNITS} share an ORDER: {sorted(orders)}; give each its own number")
    return sorted(units, key=lambda unit: unit.ORDER)


def group_methods(group: str) -> tuple[str, ...]:
    """The registered methods of one of GROUPS, in registry order."""
    return tuple(name for name, method in REGISTRY.methods.items() if method.group == group)


def __getattr__(name: str):
    """TESTBED_METHODS: the testbed's method names, in registry order (its report category, its
    findings), computed when first asked for (the declarations load lazily, see Registry)."""
    if name == "TESTBED_METHODS":
        return group_methods("testbed")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
