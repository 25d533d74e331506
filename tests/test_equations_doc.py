"""docs/equations.md names the function that implements each equation: every such name must exist,
so the document cannot drift from the code unnoticed."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "equations.md"
# `module.attribute[.attribute]` or `module.function(` inside backticks, module a diffguide module
CITED = re.compile(r"`(?:diffguide\.)?([a-z_]+)\.([A-Za-z_][A-Za-z0-9_.]*?)(?:\(|`)")


def cited_names() -> list[tuple[str, str]]:
    names = {(module, attribute) for module, attribute in CITED.findall(DOC.read_text())}
    return sorted((m, a) for m, a in names if a != "py" and importlib.util.find_spec(f"diffguide.{m}") is not None)


def test_the_document_cites_functions_of_most_modules():
    modules = {module for module, _ in cited_names()}
    assert {"schedules", "samplers", "guidance", "losses", "metrics", "precision_recall", "intervals"} <= modules


def test_every_function_the_document_cites_exists():
    missing = []
    for module, attribute in cited_names():
        target = importlib.import_module(f"diffguide.{module}")
        for part in attribute.split("."):
            if not hasattr(target, part):
                missing.append(f"{module}.{attribute}")
                break
            target = getattr(target, part)
    assert not missing, f"docs/equations.md cites names the code lacks: {missing}"
