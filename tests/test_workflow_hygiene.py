"""Snakemake hygiene: `snakemake --lint` finds nothing but the per-rule conda directive (see
config/README.md for why the rules have none), and every Snakemake file is as `snakefmt` writes it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCEPTED_LINT = "Specify a conda environment or container for each rule."


def test_snakemake_lint_finds_nothing_but_the_conda_directive(tmp_path):
    for name in ("Snakefile", "workflow", "config", "profiles"):  # a copy: no results/ of the checkout is read
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, tmp_path / name)
    result = subprocess.run([str(BIN / "snakemake"), "--lint", "--configfile", "config/smoke.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    lints = re.findall(r"^\s*\* (.+?):?$", output, flags=re.MULTILINE)
    assert lints, f"no lint output to check; snakemake said:\n{output[-2000:]}"
    assert {lint.rstrip(":.") for lint in lints} == {ACCEPTED_LINT.rstrip(".")}, output[-4000:]


def test_every_snakemake_file_is_formatted_by_snakefmt():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "--diff", "Snakefile", "workflow/"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
