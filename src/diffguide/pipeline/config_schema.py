"""Helpers around the config schema (config.schema.yaml, shipped inside this package).

- ``coerce_command_line_values``: Snakemake's ``--config key={...}`` reads nested values as
  strings ('3' instead of 3); the schema says which keys are numbers or booleans, so convert
  those strings back before validation, e.g. ``--config 'guidance={cfg_scales: [0, 1, 3]}'``.
- ``describe_config_errors``: Snakemake's ``validate`` (which also fills in the schema's defaults)
  stops on the first error and prints the whole sub-schema; this lists every error as one line
  naming the config key, e.g. ``training.conditional.p_uncond: 1.0 is greater than or equal to
  the maximum of 1``.
- ``config_errors``: the whole check, schema then the cross-key rules of ``config_checks``, as
  the lines of one stop message (empty when the config is good); fills in defaults in place.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

# Package data, so an installed package (editable or wheel) and the Snakefile read the same file.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
SCALAR_TYPES = {"number": (int, float), "integer": (int,), "boolean": (bool,), "null": (type(None),)}


@functools.cache
def _parsed_schema(schema_path: str) -> dict:
    return yaml.safe_load(Path(schema_path).read_text())


def load_schema(schema_path: str | Path) -> dict:
    """The schema as a dict, parsed once per process (pure-Python YAML takes a tenth of a second,
    and config_errors needs it on every config: the config fuzzer checks thousands). A copy: the
    caller may change it."""
    return copy.deepcopy(_parsed_schema(str(Path(schema_path).resolve())))


def _coerce_scalar(value: str, schema: dict):
    types = schema.get("type", [])
    wanted = tuple(t for name in ([types] if isinstance(types, str) else types) for t in SCALAR_TYPES.get(name, ()))
    if not wanted:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, wanted) else value


def coerce_command_line_values(config, schema: dict):
    """Return ``config`` with strings converted where the schema wants a number, bool or null."""
    if isinstance(config, dict):
        props = schema.get("properties", {})
        return {key: coerce_command_line_values(value, props.get(key, {})) for key, value in config.items()}
    if isinstance(config, list):
        return [coerce_command_line_values(item, schema.get("items", {})) for item in config]
    if isinstance(config, str):
        return _coerce_scalar(config, schema)
    return config


def _unknown_keys(error, path: str) -> list[str]:
    known = sorted(error.schema.get("properties", {}))
    prefix = f"{path}." if path else ""
    return [f"  {prefix}{key}: unknown key; the keys here are {', '.join(known)}"
            for key in sorted(set(error.instance) - set(known))]


def describe_config_errors(config: dict, schema: dict) -> list[str]:
    lines = []
    for error in sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "additionalProperties":
            lines += _unknown_keys(error, path)
            continue
        key = path or "(top level)"
        described = isinstance(error.schema, dict) and error.absolute_path
        description = error.schema.get("description", "").strip() if described else ""
        lines.append(f"  {key}: {error.message}" + (f"  [{description}]" if description else ""))
    return lines


def listed_plugins(config: dict) -> list[str]:
    """The plugin modules a config names, to import before it is checked; none where ``plugins``
    is not a list of module names, which the schema then names (tests/test_config_fuzz.py found a
    float reaching the import)."""
    plugins = config.get("plugins") or []
    return plugins if isinstance(plugins, list) and all(isinstance(name, str) for name in plugins) else []


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    """Coerce command-line strings, validate against the schema (filling in its defaults, in
    place), then apply the rules the schema cannot state. The lines name each wrong key."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from diffguide.pipeline.config_checks import config_problems
    from diffguide.registry import load_plugins

    try:  # before the checks: a plugin's methods are valid guidance.methods
        load_plugins(listed_plugins(config))
    except ImportError as err:
        return [f"  plugins: {config.get('plugins')!r}: {err}; put the module on PYTHONPATH, or remove it from plugins"]
    schema = load_schema(schema_path)
    config.update(coerce_command_line_values(config, schema))
    try:
        validate(config, str(schema_path), set_default=True)
    except WorkflowError:
        return describe_config_errors(config, schema)
    return config_problems(config)
