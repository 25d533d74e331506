"""docs/equations.md names the function that implements each equation: every such name must exist,
so the document cannot drift from the code unnoticed."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "equations.md"
# `package.module.attribute[.attribute]` or `package.module.function(` inside backticks, the module a
# diffguide module (dotted from the package: `diffusion.samplers.ddim_step`)
CITED = re.compile(r"`(?:diffguide\.)?([a-z_]+(?:\.[A-Za-z_][A-Za-z0-9_]*)+?)(?:\(|`)")


def is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(f"diffguide.{dotted}") is not None
    except ModuleNotFoundError:  # a parent that is not a package
        return False


def split_citation(dotted: str) -> tuple[str, str] | None:
    """(module, attribute) for the longest prefix of ``dotted`` that is a diffguide module with an
    attribute after it; None when no prefix is one (a config key such as `training.conditional`)."""
    parts = dotted.split(".")
    for size in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:size])
        if is_module(module):
            return module, ".".join(parts[size:])
    return None


def cited_names() -> list[tuple[str, str]]:
    names = {split_citation(dotted) for dotted in CITED.findall(DOC.read_text())}
    return sorted(name for name in names if name is not None and name[1] != "py")


def test_the_document_cites_functions_of_most_modules():
    modules = {module for module, _ in cited_names()}
    assert {"diffusion.schedules", "diffusion.samplers", "guidance.wrappers", "training.losses", "evaluation.metrics",
            "evaluation.precision_recall", "evaluation.intervals"} <= modules


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
