"""The config checks, fuzzed (issue 27): configs drawn from the schema (tests/config_fuzz.py) are
either accepted, and then `snakemake -n` builds their DAG, or stopped before any job with lines
that each name a key; never a traceback, never a Snakemake error that names no key, never a file
under results/.

Two budgets: make test draws 200 configs through the checks in-process and plans 6 with
Snakemake; make test-reliability draws thousands and plans dozens. Hypothesis runs
derandomized (the same draws on every machine, so CI cannot flake) and keeps no example database.
What the fuzzer found, each with its check and its regression test, is listed in
test_config_checks.py's FUZZED cases."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from config_fuzz import SCHEMA, configs
from hypothesis import HealthCheck, given, settings
from workflow_copies import SNAKEMAKE, copy_workflow

from diffguide.pipeline.check_config import main as check_config_main
from diffguide.pipeline.config_schema import SCHEMA_PATH, config_errors

TOP_KEYS = set(SCHEMA["properties"])
# A stop line: two spaces, the key (dotted, list items as [i]), then ': ' and what is wrong.
KEY_LINE = re.compile(r"^  ((?:\(top level\))|[A-Za-z_][\w]*(?:\.[\w.-]+|\[\d+\])*)(?::|$)")


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def named_keys(lines: list[str]) -> list[str]:
    """The key each stop line names; fails the test on a line that names none."""
    keys = []
    for line in lines:
        match = KEY_LINE.match(line)
        assert match, f"a stop line that names no key: {line!r}"
        keys.append(match.group(1))
        top = match.group(1).split(".")[0].split("[")[0]
        assert top in TOP_KEYS or match.group(1) == "(top level)" or ": unknown key;" in line, line
    return keys


def check_in_process(cfg: dict, changes: list[str]) -> list[str]:
    """config_errors, as the Snakefile runs it: never an exception, each line naming a key."""
    try:
        lines = config_errors(cfg, SCHEMA_PATH)
    except Exception as err:  # noqa: BLE001 -- any exception is the finding
        pytest.fail(f"config_errors raised {type(err).__name__}: {err}\nchanges: {changes}")
    named_keys(lines)
    return lines


@fuzz(200)
@given(configs())
def test_every_drawn_config_is_accepted_or_each_stop_line_names_a_key(drawn):
    check_in_process(*drawn)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    """A copy of the workflow to plan in (nothing of the repository's own results/ is touched)."""
    return copy_workflow(tmp_path_factory.mktemp("fuzz"))


def plan(workflow: Path, cfg: dict, changes: list[str]) -> None:
    """check_config and `snakemake -n` on the config: both accept it, or both stop naming keys."""
    path = workflow / "fuzz.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    refused = check_in_process(yaml.safe_load(path.read_text()), changes)
    assert check_config_main([str(path)]) == (1 if refused else 0), changes
    result = subprocess.run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", str(path)], cwd=workflow,
                            capture_output=True, text=True, timeout=300)
    said = result.stdout + result.stderr
    assert "Traceback" not in said, f"{changes}\n{said[-3000:]}"
    assert not (workflow / "results").exists(), f"a dry run left files under results/: {changes}"
    if refused:
        assert result.returncode != 0 and "diffguide: invalid config:" in result.stderr, f"{changes}\n{said[-3000:]}"
        stop = result.stderr.split("diffguide: invalid config:\n", 1)[1].split("\nSee config/README.md")[0]
        named_keys(stop.splitlines())
    else:
        assert result.returncode == 0, f"check_config accepted it, Snakemake did not: {changes}\n{said[-3000:]}"
        assert "This was a dry-run" in said, changes


@fuzz(6)
@given(configs())
def test_a_drawn_config_is_planned_by_snakemake_or_stopped_before_any_job(workflow, drawn):
    plan(workflow, *drawn)


@pytest.mark.reliability
@fuzz(3000)
@given(configs())
def test_thousands_of_drawn_configs_through_the_checks(drawn):
    check_in_process(*drawn)


@pytest.mark.reliability
@fuzz(60)
@given(configs())
def test_dozens_of_drawn_configs_through_snakemake(workflow, drawn):
    plan(workflow, *drawn)
