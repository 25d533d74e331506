"""A guidance method is one unit (issue 26, item 2): its declaration in
diffguide.guidance.methods.<unit>/__init__.py (symbol, label, captions, networks by role, every
option with default, range and description, its paper's claim and the finding that tests it) is
the source; the files users read hold the same facts and these tests fail on any drift:

- config.schema.yaml: each method's guidance.<name>_scales and each option's entry, key by key
  (type, enum, bounds, default, description), and no guidance key that no method declares;
- config/README.md: a row per declared key whose default is the declared one;
- findings.testbed: each claim's finding exists under its declared number and tests that method;
- the registry: every unit declares its place (ORDER) and methods, and the built-in table loads
  without torch (the Snakefile reads it at parse time).

A drift message prints the YAML the schema should hold, ready to paste."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffguide.pipeline.config_schema import SCHEMA_PATH, load_schema
from diffguide.registry import REGISTRY, Method, Option, builtin_units

REPO = Path(__file__).resolve().parents[1]
GUIDANCE_SCHEMA = load_schema(SCHEMA_PATH)["properties"]["guidance"]["properties"]
BUILTIN = [method for unit in builtin_units() for method in unit.METHODS]
NOT_A_METHOD_KEY = {"methods"}  # guidance.methods lists the sweeps; every other key belongs to a method


def declared_options() -> dict[str, Option]:
    """key -> the one Option object every built-in method naming that key shares."""
    options: dict[str, Option] = {}
    for method in BUILTIN:
        for option in method.options:
            options.setdefault(option.key, option)
    return options


def schema_drift(key: str, declared: dict, schema: dict) -> list[str]:
    """The differences between a declaration's schema entry and the schema's, one line each,
    ending with the entry to paste."""
    if key not in schema:
        problems = [f"guidance.{key} is declared but not in config.schema.yaml"]
    else:
        problems = [f"guidance.{key}.{field}: declared {declared.get(field)!r}, schema {schema[key].get(field)!r}"
                    for field in sorted(set(declared) | set(schema[key])) if declared.get(field) != schema[key].get(field)]
    if problems:
        problems.append("the schema's entry should read:\n" + yaml.safe_dump({key: declared}, sort_keys=False, width=1000))
    return problems


@pytest.mark.parametrize("method", BUILTIN, ids=lambda m: m.name)
def test_the_schema_holds_each_declared_option_and_sweep_exactly(method: Method):
    problems = [line for option in method.options
                for line in schema_drift(option.key, option.schema(), GUIDANCE_SCHEMA)]
    if method.scales is not None:
        problems += schema_drift(method.scales_option, method.scales.schema(), GUIDANCE_SCHEMA)
    assert not problems, f"{method.name}:\n" + "\n".join(problems)


def test_every_builtin_method_declares_its_sweep():
    assert all(method.scales is not None for method in BUILTIN), [m.name for m in BUILTIN if m.scales is None]


def test_the_schema_has_no_guidance_key_that_no_method_declares():
    declared = set(declared_options()) | {m.scales_option for m in BUILTIN} | NOT_A_METHOD_KEY
    orphans = sorted(set(GUIDANCE_SCHEMA) - declared)
    assert not orphans, f"guidance keys in config.schema.yaml no method declares: {orphans}"


def test_methods_that_share_a_key_share_one_declaration():
    by_key: dict[str, set] = {}
    for method in BUILTIN:
        for option in method.options:
            by_key.setdefault(option.key, set()).add(option)
    assert {key: found for key, found in by_key.items() if len(found) > 1} == {}


def test_the_drift_check_catches_a_range_that_disagrees_with_the_schema():
    """The case that prompted it: APG's momentum accepted (-1, 1) in the builder and (-1, 0] in
    the schema. A declaration with the builder's old range must be reported."""
    momentum = REGISTRY.methods["apg"].option("apg_momentum")
    assert schema_drift(momentum.key, momentum.schema(), GUIDANCE_SCHEMA) == []
    old = dataclasses.replace(momentum, maximum=None, exclusive_maximum=1)
    lines = schema_drift(old.key, old.schema(), GUIDANCE_SCHEMA)
    assert lines[:2] == ["guidance.apg_momentum.exclusiveMaximum: declared 1, schema None",
                         "guidance.apg_momentum.maximum: declared None, schema 0"], lines


def readme_defaults() -> dict[str, object]:
    """guidance.<key> -> the default its config/README.md row states (the first backticked value)."""
    rows = {}
    for match in re.finditer(r"^\| `guidance\.([a-z_0-9]+)` \| `([^`]*)`", (REPO / "config/README.md").read_text(), re.M):
        rows[match[1]] = yaml.safe_load(match[2])
    return rows


def test_config_readme_has_a_row_with_the_declared_default_for_every_declared_key():
    rows = readme_defaults()
    declared = {key: option.default for key, option in declared_options().items()}
    declared |= {m.scales_option: list(m.scales.default) for m in BUILTIN}
    missing = sorted(set(declared) - set(rows))
    wrong = {key: (rows[key], value) for key, value in declared.items() if key in rows and rows[key] != value}
    assert not missing and not wrong, f"config/README.md: rows missing for {missing}; (README, declared) defaults {wrong}"


def test_each_claim_is_tested_by_the_finding_of_its_declared_number():
    from diffguide.findings.testbed import TESTBED_FINDINGS

    claims = {m.name: m.claim for m in BUILTIN if m.claim is not None}
    assert len({c.finding for c in claims.values()}) == len(claims), "two claims declare one finding number"
    for name, claim in claims.items():
        assert TESTBED_FINDINGS[claim.finding].__name__ == name, (name, claim.finding)
    assert set(TESTBED_FINDINGS) == {c.finding for c in claims.values()}


def test_every_claim_test_a_declaration_may_name_is_one_the_findings_run():
    from diffguide.findings.testbed import CLAIM_TESTS as RUN
    from diffguide.registry import CLAIM_TESTS as DECLARABLE

    assert set(RUN) == set(DECLARABLE)


@pytest.mark.parametrize("option", sorted(declared_options().values(), key=lambda o: o.key), ids=lambda o: o.key)
def test_each_option_accepts_its_default_and_refuses_the_values_outside_its_range(option: Option):
    assert option.validate(option.default) == option.default
    outside = [*(["not one of them"] if option.enum else []),
               *([option.minimum - 1] if option.minimum is not None else []),
               *([option.maximum + 1] if option.maximum is not None else []),
               *([option.exclusive_minimum] if option.exclusive_minimum is not None else []),
               *([option.exclusive_maximum] if option.exclusive_maximum is not None else []),
               *([0.5] if option.type == "integer" else []), *([None] if not option.nullable else [])]
    assert outside, f"{option.key} declares no range: say which values it accepts"
    for value in outside:
        with pytest.raises(ValueError, match=rf"guidance\.{option.key} must be"):
            option.validate(value)


def test_a_declaration_whose_default_its_own_range_refuses_is_a_typo():
    with pytest.raises(ValueError, match=r"guidance\.bad must be in \[0, 1\]"):
        Option("bad", 2.0, "a weight", minimum=0, maximum=1)


def test_units_declare_distinct_places_and_the_registry_keeps_their_order():
    orders = [unit.ORDER for unit in builtin_units()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert [m.name for m in BUILTIN] == [name for name in REGISTRY.methods if name in {m.name for m in BUILTIN}]


def test_the_declarations_load_without_torch():
    """The Snakefile reads every method's row at parse time: the declarations must not import torch."""
    code = ("import sys, diffguide.registry as r; n = len(r.REGISTRY.methods); "
            "print(n, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(BUILTIN)), "False"], out


def test_a_declaration_imports_only_the_registry_and_other_declarations():
    """A unit's __init__ is read at the Snakefile's parse time: it may import diffguide.registry and
    other units' declarations, never its wrapper (torch), nor anything else of diffguide."""
    import ast

    for unit in builtin_units():
        allowed = {"__future__", "diffguide.registry", *(u.__name__ for u in builtin_units())}
        tree = ast.parse(Path(unit.__file__).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert imported <= allowed, f"{unit.__name__} imports {sorted(imported - allowed)}"
