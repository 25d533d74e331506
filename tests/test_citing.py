"""The project can be cited and may be used: CITATION.cff is valid Citation File Format 1.2.0
(checked against the format's own JSON schema, tests/data/citation_cff_1.2.0.schema.json, as
shipped in cffconvert 2.0.0's wheel) and agrees with the package; the README's Citing section
has a BibTeX entry for each paper the project replicates and for the paper of every claim a
method unit declares; and every dependency's license (from its installed metadata) is one the
MIT license the project chose can sit on."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from diffguide.registry import REGISTRY

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The papers the project replicates: Dhariwal & Nichol 2021, Ho & Salimans 2022, and the seed's
# similarity guidance (Liu et al. 2023).
REPLICATED = ("2105.05233", "2207.12598", "2112.05744")
# Licenses an MIT project may depend on without conditions on its own code. MPL-2.0 (tqdm) binds
# only the MPL-covered files themselves, which we neither copy nor change.
PERMISSIVE = ("MIT", "BSD", "Apache", "PSF", "Python Software Foundation", "License agreement for matplotlib",
              "0BSD", "Zlib", "ISC", "MPL-2.0", "MIT-CMU", "LLVM-exception", "Unlicense", "CC0")


def bibtex_entries() -> list[dict]:
    """The README's ```bibtex block as [{key, author, year, eprint}] (one level of braces deep)."""
    readme = (REPO / "README.md").read_text()
    (block,) = re.findall(r"```bibtex\n(.*?)```", readme, re.S)
    entries = []
    for key, body in re.findall(r"@\w+\{(\w+),\n(.*?)\n\}", block, re.S):
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{((?:[^{}]|\{[^{}]*\})*)\}", body, re.M | re.S))
        entries.append({"key": key, **{name: " ".join(value.split()) for name, value in fields.items()}})
    return entries


def test_citation_cff_is_valid_and_agrees_with_the_package():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    schema = json.loads((REPO / "tests/data/citation_cff_1.2.0.schema.json").read_text())
    jsonschema.validate(cff, schema)
    assert cff["version"] == PYPROJECT["project"]["version"]
    assert cff["license"] == PYPROJECT["project"]["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
    cited = {identifier["value"].removeprefix("arXiv:") for ref in cff["references"] for identifier in ref["identifiers"]}
    assert set(REPLICATED) <= cited


def test_every_bibtex_entry_is_complete_and_the_replicated_papers_are_there():
    entries = bibtex_entries()
    assert len({entry["key"] for entry in entries}) == len(entries) >= len(REPLICATED)
    for entry in entries:
        assert {"title", "author", "year"} <= set(entry) and re.fullmatch(r"20\d\d", entry["year"]), entry
    assert set(REPLICATED) <= {entry.get("eprint") for entry in entries}


def claimed_papers() -> list[str]:
    return sorted({method.claim.paper for method in REGISTRY.methods.values() if method.claim})


@pytest.mark.parametrize("paper", claimed_papers())
def test_each_declared_claim_has_its_papers_entry(paper):
    """By its arXiv number where the claim gives one, else by first author and year."""
    entries = bibtex_entries()
    arxiv = re.search(r"arXiv (\d{4}\.\d{4,5})", paper)
    if arxiv:
        assert arxiv.group(1) in {entry.get("eprint") for entry in entries}, paper
    else:
        surname, year = paper.split()[0], re.search(r"\b(20\d\d)\b", paper).group(1)
        assert any(entry["author"].startswith(surname + ",") and entry["year"] == year for entry in entries), paper


def declared_license(name: str) -> str:
    """A distribution's own license as its metadata states it: the SPDX expression, the License
    field's first line, the license classifiers, else the first line of its license file. The rest
    of a License field lists bundled libraries (scipy's libgfortran: GPL with the GCC runtime
    exception; matplotlib's FreeType: FTL or GPL), which the wheel's makers honour and which put no
    condition on code that imports the package."""
    meta = metadata.metadata(name)
    stated = [meta.get("License-Expression") or "", (meta.get("License") or "").strip().split("\n")[0]]
    stated += [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    stated = [text for text in stated if text and text != "UNKNOWN"]
    if not stated:
        files = [f for f in metadata.files(name) or [] if "LICEN" in f.name.upper()]
        stated = [files[0].read_text().strip().splitlines()[0]] if files else []
    return " | ".join(stated)


@pytest.mark.parametrize("requirement", PYPROJECT["project"]["dependencies"])
def test_each_dependency_is_under_a_license_the_mit_license_can_depend_on(requirement):
    name = re.split(r"[=<>\[ ;]", requirement)[0]
    license_text = declared_license(name)
    assert license_text, f"{name} states no license: read it and add it to this test's reasoning"
    assert "GPL" not in license_text and any(word in license_text for word in PERMISSIVE), (name, license_text)
