"""What a method and a network are: the row types a unit of diffguide.guidance.methods declares
(Method with its Options, Scales and Claim) and the Network rows of diffguide.registry.table.
Torch-free, and importing nothing of diffguide: every declaration imports these."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable


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
GROUPS = ("papers", "similarity", "testbed", "training_free")
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
    - ``role_inert_unless``: (role, option, value) triples: the role's network reaches the samples
      only where the option has that value (sdg_image's clean encoder ``clip`` only for
      sdg_reference: clean; with noised references the noisy encoder embeds them itself).
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
    role_inert_unless: tuple[tuple[str, str, object], ...] = ()
    p_uncond_variants: bool = False

    def __post_init__(self):
        # First: the checks below read the options' keys (a plugin passing strings got an AttributeError).
        if not all(isinstance(option, Option) for option in self.options):
            raise ValueError(f"method {self.name!r}: options must be Option declarations (diffguide.registry.Option), "
                             f"got {self.options!r}")
        if self.scale_zero not in SCALE_ZERO:
            raise ValueError(f"method {self.name!r}: scale_zero {self.scale_zero!r} is not one of {SCALE_ZERO}")
        named = {key for triple in self.inert_unless for key in triple[:2]}
        named |= {option for _, option, _ in self.role_inert_unless}
        if named - set(self.option_keys):
            raise ValueError(f"method {self.name!r}: inert_unless / role_inert_unless name options it does not "
                             f"declare: {sorted(named - set(self.option_keys))}")
        roles = {"eps_model", *(role for role, _ in self.guides)}
        if {role for role, _, _ in self.role_inert_unless} - roles:
            raise ValueError(f"method {self.name!r}: role_inert_unless names a role it does not declare")
        if self.condition not in CONDITIONS:
            raise ValueError(f"method {self.name!r}: condition {self.condition!r} is not one of {CONDITIONS}")
        if self.group not in GROUPS:
            raise ValueError(f"method {self.name!r}: group {self.group!r} is not one of {GROUPS}")

    @property
    def option_keys(self) -> tuple[str, ...]:
        """The guidance.* keys of its options, e.g. ('apg_eta', 'apg_norm_threshold', 'apg_momentum')."""
        return tuple(option.key for option in self.options)

    def option(self, key: str) -> Option:
        return next(option for option in self.options if option.key == key)

    @property
    def defaults(self) -> dict:
        """key -> declared default of each of its options (what a guidance block holds unless set)."""
        return {option.key: option.default for option in self.options}

    def shifts_score(self, options: dict) -> bool:
        """Whether, with these guidance options, it adds its guide's gradient to eps scaled by
        sqrt(1 - abar_t) (the score form: D&N Algorithm 2, SDG's eps_hat): the methods that pick a
        form with guidance.cg_form (classifier and similarity guidance) when it is ``score``. Such
        a shift moves x0 by (1 - abar) / sqrt(abar) times the gradient, which sampling from
        abar near 0 turns into saturation (diffusion.noise_levels)."""
        return "cg_form" in self.option_keys and self.option("cg_form").value_in(options) == "score"

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
