"""Hypothesis strategies that draw configs from the schema itself (src/diffguide/pipeline/config.schema.yaml),
for tests/test_config_fuzz.py: the smoke config changed at one to three keys, each to a value the
schema allows or one it refuses (a wrong type, a bound crossed, an enum misspelt, an unknown key),
and guidance.methods drawn from the registered methods, the newer ones included, with or without
their scales. Every leaf key of the schema can be drawn, so a key added to the schema is fuzzed
without an edit here."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml
from hypothesis import strategies as st

from diffguide.pipeline.config_schema import SCHEMA_PATH, load_schema
from diffguide.registry import REGISTRY

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(SCHEMA_PATH)
SMOKE = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
# Unbounded sides are drawn within this far of the other bound: the checks compare values, they
# never allocate by them, so larger ones find nothing new.
SPAN = 10_000
# Strings a free-text key is set to: names, paths (absent, relative, escaping), empty, spaces.
TEXTS = ("my_run", "x", "", " ", "default", "../up", "a/b", "/nonexistent/dir", "ünïcode", "results")
# Plugin modules: one that does not exist, and one that exists and registers nothing.
PLUGINS = ("no_such_plugin_module", "json")


def resolved(schema: dict) -> dict:
    """A subschema with its $ref to #/definitions/... merged in."""
    if "$ref" not in schema:
        return schema
    name = schema["$ref"].removeprefix("#/definitions/")
    return SCHEMA["definitions"][name] | {k: v for k, v in schema.items() if k != "$ref"}


def leaves(schema: dict = SCHEMA, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """(path, subschema) of every key that holds a value rather than more keys."""
    schema = resolved(schema)
    if "properties" in schema:
        found = []
        for key, sub in schema["properties"].items():
            found += leaves(sub, path + (key,))
        return found
    return [(path, schema)]


LEAVES = leaves()


def types_of(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def bounds(schema: dict, integer: bool) -> tuple[float, float]:
    step = 1 if integer else 1e-9
    lo = schema.get("minimum", schema.get("exclusiveMinimum", -SPAN) + (step if "exclusiveMinimum" in schema else 0))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + SPAN) - (step if "exclusiveMaximum" in schema else 0))
    return lo, hi


def valid(schema: dict, path: tuple[str, ...]) -> st.SearchStrategy:
    """Values the schema accepts for this key (the cross-key checks may still refuse them)."""
    schema = resolved(schema)
    if path == ("plugins",):
        return st.lists(st.sampled_from(PLUGINS), max_size=1)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    options = []
    for kind in types_of(schema) or ["string"]:
        if kind == "integer":
            lo, hi = bounds(schema, True)
            options.append(st.integers(int(lo), int(hi)))
        elif kind == "number":  # floats, and the integers in range (YAML writes 2, not 2.0)
            lo, hi = bounds(schema, False)
            options.append(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
            if math.ceil(lo) <= math.floor(hi):
                options.append(st.integers(math.ceil(lo), math.floor(hi)))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "null":
            options.append(st.none())
        elif kind == "string":
            options.append(st.sampled_from(TEXTS))
        elif kind == "array":
            items = schema.get("items", {})
            options.append(st.lists(valid(items, path + ("[]",)), min_size=schema.get("minItems", 0), max_size=4,
                                    unique_by=(lambda v: repr(v)) if schema.get("uniqueItems") else None))
        elif kind == "object":
            props = schema.get("properties", {})
            required = schema.get("required", [])
            options.append(st.fixed_dictionaries({key: valid(props[key], path + (key,)) for key in required},
                                                 optional={key: valid(sub, path + (key,)) for key, sub in props.items()
                                                           if key not in required}))
    return st.one_of(options)


def invalid(schema: dict) -> st.SearchStrategy:
    """Values the schema refuses for this key: another type, a crossed bound, a misspelt choice."""
    schema = resolved(schema)
    kinds = types_of(schema)
    wrong = [st.just(value) for kind, value in (("string", "abc"), ("number", 2.5), ("boolean", True),
                                                  ("array", [1, "a"]), ("object", {"a": 1}), ("null", None))
             if kind not in kinds]
    if "enum" in schema:
        wrong.append(st.sampled_from([f"{choice}x" for choice in schema["enum"] if isinstance(choice, str)] or ["x"]))
    for kind in ("integer", "number"):
        if kind in kinds:
            if "minimum" in schema or "exclusiveMinimum" in schema:
                wrong.append(st.just(schema.get("minimum", schema.get("exclusiveMinimum")) - 1))
            if "maximum" in schema or "exclusiveMaximum" in schema:
                wrong.append(st.just(schema.get("maximum", schema.get("exclusiveMaximum")) + 1))
    if "integer" in kinds and "number" not in kinds:
        wrong.append(st.just(1.5))
    if "array" in kinds and "minItems" in schema:
        wrong.append(st.just([]))
    return st.one_of(wrong)


def set_key(cfg: dict, path: tuple[str, ...], value) -> None:
    node = cfg
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def change(draw) -> tuple[tuple[str, ...], object]:
    """One key of the schema set to a value the schema accepts or one it refuses."""
    path, schema = draw(st.sampled_from(LEAVES))
    value = draw(valid(schema, path) if draw(st.booleans()) else invalid(schema))
    return path, value


METHODS = sorted(REGISTRY.methods)


@st.composite
def configs(draw) -> tuple[dict, list[str]]:
    """(config, what was changed): the smoke config with one to three changes, sometimes an
    unknown key, sometimes guidance.methods drawn afresh (each with or without its scales)."""
    cfg, changes = copy.deepcopy(SMOKE), []
    for path, value in draw(st.lists(change(), min_size=1, max_size=3)):
        set_key(cfg, path, value)
        changes.append(f"{'.'.join(path)} = {value!r}")
    if draw(st.integers(0, 9)) == 0:
        section = draw(st.sampled_from(["", "guidance", "sampling", "training.conditional", "networks.unet"]))
        path = tuple(section.split(".")) + ("colour",) if section else ("colour",)
        set_key(cfg, path, "blue")
        changes.append(f"{'.'.join(path)} = 'blue' (unknown)")
    if draw(st.booleans()):
        methods = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=4, unique=True))
        cfg.setdefault("guidance", {})["methods"] = methods
        for name in methods:
            if draw(st.integers(0, 4)):  # mostly with its scales, sometimes without
                scales = draw(st.lists(st.sampled_from([0, 0.5, 1, 2, 3, 10]), min_size=1, max_size=3, unique=True))
                cfg["guidance"][f"{name}_scales"] = scales
        changes.append(f"guidance.methods = {methods}")
    return cfg, changes
