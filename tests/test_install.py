"""A clean install (issue 15): every package the code imports is declared in pyproject.toml at
the installed version, the wheel carries every data file of the package, a wheel installed into a
fresh environment runs every command README.md and the Makefile document from outside the
checkout, and a Snakemake that cannot import diffguide stops with the fix instead of a traceback.

The fresh environments see this venv's site-packages through a .pth file (so nothing is
downloaded or reinstalled) but not its editable diffguide: a .pth file in a directory that a
.pth file adds is not read, so only the wheel's copy of diffguide is importable there."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tokenize
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# What the pipeline runs (runtime dependencies only) and what only the tests run (plus the test extra).
RUNTIME_SOURCES = ("src/diffguide", "workflow/scripts", "workflow/rules", "Snakefile", "benchmarks", "experiments")
TEST_SOURCES = ("tests",)


def distribution_name(name: str) -> str:
    """PEP 503's normalized name: PyYAML, pyyaml and py_yaml are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return distribution_name(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


RUNTIME = {requirement_name(r) for r in PYPROJECT["dependencies"]}
TEST = RUNTIME | {requirement_name(r) for r in PYPROJECT["optional-dependencies"]["test"]}


def _python_imports(text: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module)
    return modules


def _snakemake_imports(text: str) -> set[str]:
    """The import statements of a Snakefile or .smk file (not Python, but Python's tokens): each
    logical line opened by 'import' or 'from', parsed as Python; strings and comments never count."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL)]
    modules, line_start = set(), True
    for i, token in enumerate(tokens):
        if line_start and token.type == tokenize.NAME and token.string in ("import", "from"):
            end = next(j for j in range(i, len(tokens)) if tokens[j].type in (tokenize.NEWLINE, tokenize.ENDMARKER))
            modules |= _python_imports(" ".join(t.string for t in tokens[i:end]))
        line_start = token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    return modules


def imports(path: Path) -> set[str]:
    """The top-level modules ``path`` imports absolutely, anywhere in it (lazy imports included)."""
    text = path.read_text(encoding="utf-8")
    modules = _python_imports(text) if path.suffix == ".py" else _snakemake_imports(text)
    return {module.split(".")[0] for module in modules if module}


def source_files(roots) -> list[Path]:
    files = []
    for root in map(REPO.joinpath, roots):
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*") if p.suffix in (".py", ".smk") and "__pycache__" not in p.parts)
    return files


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def undeclared_imports(roots, declared: set[str]) -> list[str]:
    """One line per third-party module imported under ``roots`` whose distribution is not in
    ``declared``: not the standard library, not diffguide, not a module beside the importing file."""
    provided = _packages_distributions()
    problems = []
    for path in source_files(roots):
        for module in sorted(imports(path)):
            if (module in sys.stdlib_module_names or module == "diffguide" or (path.parent / f"{module}.py").exists()
                    or (path.parent / module / "__init__.py").exists()):
                continue
            distributions = {distribution_name(d) for d in provided.get(module, [])}
            if not distributions & declared:
                problems.append(f"{path.relative_to(REPO)} imports {module}, from "
                                f"{', '.join(sorted(distributions)) or 'no installed distribution'}, "
                                "which pyproject.toml does not declare")
    return problems


def test_every_third_party_import_is_declared():
    problems = undeclared_imports(RUNTIME_SOURCES, RUNTIME) + undeclared_imports(TEST_SOURCES, TEST)
    assert not problems, "\n".join(problems)


def test_the_import_check_finds_an_undeclared_package():
    """The check can fail: without jsonschema declared (as before issue 15) it names the importer."""
    problems = undeclared_imports(RUNTIME_SOURCES, RUNTIME - {"jsonschema"})
    assert any(p.startswith("src/diffguide/pipeline/config_schema.py imports jsonschema, from jsonschema,") for p in problems)
    snakefile = _snakemake_imports('"""from the docstring import nothing"""\nimport os, re.sub as sub\nrule a:\n'
                                   "    run:\n        from pandas import (\n            DataFrame,\n        )\n")
    assert snakefile == {"os", "re.sub", "pandas"}


def test_every_requirement_is_pinned_to_the_installed_version():
    """Exact pins, and this environment is the one they describe (`make venv` reinstalls on change)."""
    problems = []
    for requirement in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["test"]:
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*", requirement)
        if not match:
            problems.append(f"{requirement}: not an exact pin (name==version)")
        elif (installed := importlib.metadata.version(match[1])) != match[2]:
            problems.append(f"{requirement}: {installed} is installed")
    assert not problems, "\n".join(problems)


def _clean_env() -> dict:
    """No PYTHONPATH (it could point at src/) and no user site."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return env | {"PYTHONNOUSERSITE": "1"}


def _our_site_packages() -> list[str]:
    return list(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))


def _venv_seeing_our_packages(path: Path) -> Path:
    """A new venv (no pip) whose site-packages lists this venv's through a .pth file; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = _our_site_packages()
    Path(site, "_diffguide_test_deps.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (the build writes build/ into its source), with
    this environment's setuptools (no download)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("no setuptools in this environment to build the wheel with")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    str(source), "-w", str(out)], check=True, env=_clean_env())
    (built,) = out.glob("diffguide-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """python of a fresh venv with the wheel installed (and no pip: this venv's pip installs it)."""
    python = _venv_seeing_our_packages(tmp_path_factory.mktemp("venv") / "wheel-venv")
    # --ignore-installed: the diffguide this venv sees through the .pth file (ours) is not this one.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--ignore-installed", str(wheel)], check=True, env=_clean_env())
    return python


def _run(command: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, env=_clean_env(),
                          timeout=timeout)


def test_the_wheel_carries_every_file_of_the_package(wheel):
    """Every module and every data file under src/diffguide (config.schema.yaml, paper_results/*.csv,
    ...) is in the wheel, and nothing else: data read at run time must ship as package data."""
    ours = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "diffguide").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("diffguide/")}
    assert ours == shipped, f"missing from the wheel: {sorted(ours - shipped)}; only in it: {sorted(shipped - ours)}"


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_a_wheel_install_checks_configs_and_reads_its_data_outside_the_checkout(installed, tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    probe = ("import diffguide, sys\nfrom diffguide.pipeline.config_schema import SCHEMA_PATH\n"
             "from diffguide.reports.tables import DN_FILE, HS_FILE, paper_table\n"
             "print(diffguide.__file__)\nassert SCHEMA_PATH.is_file(), SCHEMA_PATH\n"
             "assert len(paper_table(HS_FILE)) and len(paper_table(DN_FILE))\n")
    result = _run([installed, "-c", probe], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()).is_relative_to(installed.parent.parent), "diffguide came from the checkout"
    for configs in (["config/config.yaml"], ["config/config.yaml", "config/sdg.yaml"], ["config/smoke.yaml"]):
        result = _run([installed, "-m", "diffguide.pipeline.check_config", *configs], tmp_path)
        assert result.returncode == 0 and ": valid" in result.stdout, result.stdout + result.stderr[-3000:]


# Every `python -m diffguide.<module>` of README.md and the Makefile, and how the test runs it
# in a fresh working directory (config/ copied there): arguments, exit status, a phrase of its output.
DOCUMENTED = {
    "pipeline.check_config": (["config/config.yaml"], 0, "valid"),
    "pipeline.summary": (["config/smoke.yaml"], 1, "no metrics yet"),
    "findings": (["results/smoke/metrics.csv"], 2, "metrics.csv"),
    "reports.replication_status": (["results/smoke/metrics.csv"], 2, "metrics.csv"),
    "cli.train": (["--config", "config/smoke.yaml", "--network", "eval_classifier", "--results", "results/smoke"], 0,
                  ""),
    # make approximations, on a study small enough for seconds
    "reports.approximation_report": (["--out", "appr", "--docs", "appr_docs", "--points", "4", "--draws", "20",
                                      "--steps", "2", "--chains", "12", "--chain-lengths", "2"], 0, "chains"),
}


def documented_modules() -> set[str]:
    text = (REPO / "README.md").read_text() + (REPO / "Makefile").read_text()
    return set(re.findall(r"-m diffguide\.([\w.]*\w)", text))


@pytest.mark.slow
def test_a_wheel_install_runs_every_documented_command_and_the_snakefile(installed, tmp_path):
    """From outside the checkout, with diffguide only from the wheel: the README's route to train
    outside Snakemake (the Snakefile prepares the data, then train_cli trains), every other
    documented module, and each console script's --help."""
    assert documented_modules() <= set(DOCUMENTED), f"document how to test: {documented_modules() - set(DOCUMENTED)}"
    for name in ("Snakefile", "workflow", "config"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, tmp_path / name)
    data = ["results/smoke/data/train.npz", "results/smoke/data/test.npz"]
    result = _run([installed, "-m", "snakemake", "--cores", "1", *data, "--configfile", "config/smoke.yaml"], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    for module, (args, code, phrase) in DOCUMENTED.items():
        result = _run([installed, "-m", f"diffguide.{module}", *args], tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == code and phrase in output, f"diffguide.{module}: exit {result.returncode}\n{output}"
    assert (tmp_path / "results/smoke/models/eval_classifier.pt").is_file()
    for script in PYPROJECT.get("scripts", {}):
        result = _run([installed.parent / script, "--help"], tmp_path)
        assert result.returncode == 0, f"{script} --help: {result.stdout}{result.stderr}"


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_a_snakemake_without_diffguide_says_how_to_run_it(tmp_path):
    """A Snakemake installed outside the project's venv (here: a venv seeing only our
    dependencies) stops at parse time naming its interpreter and the two fixes."""
    if any(Path(site, "diffguide").is_dir() for site in _our_site_packages()):
        pytest.skip("diffguide is installed (not editable) beside its dependencies: no environment hides it")
    python = _venv_seeing_our_packages(tmp_path / "elsewhere")
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in ("Snakefile", "workflow", "config"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, workdir / name)
    result = _run([python, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml"], workdir)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"this Snakemake runs in {python}, which cannot import" in output, output[-3000:]
    assert "No module named 'diffguide'" in output and ".venv/bin/snakemake" in output
    assert f"{python} -m pip install -e {workdir}" in output
    assert "Traceback" not in output and "ModuleNotFoundError" not in output, output[-3000:]
