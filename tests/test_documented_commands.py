"""Every command README.md and config/README.md show runs as written (issue 27).

The commands are read from the documents themselves: every line of a ```bash block, and every
inline `make ...` / `python -m diffguide...` span. Each kind is checked as far as this machine can
afford it:

- `diffguide sample`: run for real against the smoke run (conftest.py), with only the run folder
  and the class names replaced (the smoke run is digits, not Fashion-MNIST); the samples must not be
  saturated, for cfg as written and for the same command with cg (the issue's case: it drew pure
  noise when the command ignored the run's spacing);
- `snakemake ...`: a dry run in a copy of the workflow (my_run.yaml and results/<run> stand for the
  smoke config and run), which must plan jobs and stop on nothing;
- `make ...`: `make -n` (the target exists and its recipe expands);
- `torchrun ... -m diffguide.cli.train ...`: the module's own parser accepts the arguments;
- `python -m <module> ...`: the module's `--help` works, as every entry point's must.

A block whose language is not `bash` holds output, code or a diagram, not commands: every fenced
block must say which it is."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from workflow_copies import REPO, SMOKE, copy_workflow, snakemake

from diffguide.evaluation.metrics import saturated_fraction

DOCUMENTS = ("README.md", "config/README.md")
BIN = Path(sys.executable).parent
# Machine-wide commands a document may show in a bash block besides the project's own.
OTHER_PROGRAMS = {"torchrun"}


def fenced_blocks(document: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", (REPO / document).read_text(), re.M | re.S)


def bash_commands(document: str) -> list[str]:
    """Each command of the document's bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for language, body in fenced_blocks(document):
        if language == "bash":
            joined = body.replace("\\\n", " ")
            commands += [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip()
                         and not line.lstrip().startswith("#")]
    return commands


def inline_commands(document: str) -> list[str]:
    text = (REPO / document).read_text()
    return re.findall(r"`((?:make|python -m diffguide|\.venv/bin/python -m diffguide)[^`]*)`", text)


ALL_BASH = [(doc, command) for doc in DOCUMENTS for command in bash_commands(doc)]


def kind_of(command: str) -> str:
    program = shlex.split(command)[0]
    name = Path(program).name
    if name in ("diffguide", "snakemake", "make", "torchrun"):
        return name
    return "python -m" if name in ("python", "python3") else "unknown"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_fenced_block_says_what_it_holds(document):
    blocks = fenced_blocks(document)
    assert blocks and all(language in ("bash", "python", "bibtex", "text") for language, _ in blocks), \
        [language for language, _ in blocks]


def test_the_documents_show_commands_of_every_kind_this_test_knows():
    """Every bash command is of a kind checked below (a new kind fails here until it is)."""
    kinds = {kind_of(command) for _, command in ALL_BASH}
    assert "unknown" not in kinds, [command for _, command in ALL_BASH if kind_of(command) == "unknown"]
    assert {"diffguide", "snakemake", "make"} <= kinds


# ----------------------------------------------------------------------------- diffguide sample

def smoke_version(command: str, smoke_run: Path, out: Path) -> list[str]:
    """The documented command on the smoke run: its run folder, digits for the clothes, our --out."""
    args = shlex.split(command)
    args[0] = str(BIN / "diffguide")
    args[args.index("--run") + 1] = str(smoke_run / "results/smoke")
    if "--classes" in args:
        wanted = args[args.index("--classes") + 1].split(",")
        args[args.index("--classes") + 1] = ",".join(str(3 + 2 * i) for i in range(len(wanted)))
    args[args.index("--out") + 1] = str(out)
    return args


SAMPLE_COMMANDS = [command for _, command in ALL_BASH if kind_of(command) == "diffguide"]


# Each documented command as written (cfg), and the first with cg: the noise.
SAMPLE_CASES = [(command, "cfg") for command in SAMPLE_COMMANDS] + [(SAMPLE_COMMANDS[0], "cg")]


@pytest.mark.parametrize("command, method", SAMPLE_CASES)
def test_the_documented_sampling_command_draws_unsaturated_samples(smoke_run, tmp_path, command, method):
    args = smoke_version(command.replace("--method cfg", f"--method {method}"), smoke_run, tmp_path / "out")
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "saturate" not in result.stderr, result.stderr  # the run's spacing: no warning
    images = np.load(tmp_path / "out.npz")["images"]
    assert len(images) == int(args[args.index("--count") + 1]) and (tmp_path / "out.png").stat().st_size > 1000
    # The smoke models are barely trained (blotches, not digits), but not saturated: under a quarter
    # of the pixels at 0 or 255 on average (about 6% here; the noise had 92%, and the same
    # command from t = T - 1 over half: the control below).
    assert saturated_fraction(images).mean() < 0.25, saturated_fraction(images)


def test_the_saturation_check_can_fail_cg_from_t_99_saturates_and_is_warned_about(smoke_run, tmp_path):
    """Control for the test above: the same cg command sampled from t = T - 1 (linspace), where the
    score-form shift is amplified 2,029-fold, saturates and says so."""
    args = smoke_version(SAMPLE_COMMANDS[0].replace("--method cfg", "--method cg"), smoke_run, tmp_path / "out")
    result = subprocess.run(args + ["--timestep-spacing", "linspace"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "saturate" in result.stderr and "--timestep-spacing leading" in result.stderr
    assert saturated_fraction(np.load(tmp_path / "out.npz")["images"]).mean() > 0.5


# ----------------------------------------------------------------------------- snakemake

def dry_run_version(command: str) -> list[str]:
    """The documented Snakemake command as a dry run of the smoke config."""
    args = shlex.split(command.replace("my_run.yaml", SMOKE).replace("results/<run>", "results/smoke"))
    if "--configfile" not in args and "--profile" not in args:
        args += ["--configfile", SMOKE]  # the default run needs Fashion-MNIST; the plan is the same
    if "--cores" in args:  # the helper gives its own
        del args[args.index("--cores"):args.index("--cores") + 2]
    return args[1:] + ["--dry-run"]


@pytest.mark.parametrize("command", [c for _, c in ALL_BASH if kind_of(c) == "snakemake"])
def test_each_documented_snakemake_command_plans_its_jobs(tmp_path, command):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, *dry_run_version(command))
    assert "This was a dry-run" in result.stdout, result.stdout[-2000:]
    assert not (workdir / "results").exists()


# ----------------------------------------------------------------------------- make

def make_commands() -> list[str]:
    found = [c for _, c in ALL_BASH if kind_of(c) == "make"]
    found += [c for doc in DOCUMENTS for c in inline_commands(doc) if c.startswith("make ")]
    return sorted({re.sub(r"\s+", " ", c.replace("<run>", "smoke")) for c in found if "..." not in c})


@pytest.mark.parametrize("command", make_commands())
def test_each_documented_make_command_is_a_target_whose_recipe_expands(command):
    result = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "No rule to make target" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------- torchrun and modules

@pytest.mark.parametrize("command", [c for _, c in ALL_BASH if kind_of(c) == "torchrun"])
def test_the_documented_torchrun_command_passes_the_training_modules_parser(command):
    from diffguide.cli.train import build_parser

    args = shlex.split(command)
    assert (BIN / "torchrun").is_file()
    module_args = args[args.index("diffguide.cli.train") + 1:]
    parsed = build_parser().parse_args(module_args)
    assert parsed.network == "conditional" and parsed.config == "my_run.yaml"


def module_entry_points() -> list[str]:
    """Every module of the package that runs as `python -m`: a __main__ guard or a __main__.py."""
    package = REPO / "src"
    found = set()
    for path in (package / "diffguide").rglob("*.py"):
        module = ".".join(path.relative_to(package).with_suffix("").parts)
        if path.name == "__main__.py":
            found.add(module.removesuffix(".__main__"))
        elif 'if __name__ == "__main__":' in path.read_text():
            found.add(module)
    return sorted(found)


def test_every_documented_python_module_command_names_an_entry_point():
    documented = {re.match(r"(?:\.venv/bin/)?python -m (diffguide[\w.]*)", c).group(1)
                  for doc in DOCUMENTS for c in inline_commands(doc) if "python -m" in c}
    assert documented and documented <= set(module_entry_points()), documented - set(module_entry_points())


def test_help_works_on_every_entry_point():
    """`python -m <module> --help` for every module entry point, and the `diffguide` command's: exit
    status 0 and a usage line (run side by side: each imports its own dependencies)."""
    commands = [[sys.executable, "-m", module, "--help"] for module in module_entry_points()]
    commands += [[str(BIN / "diffguide"), "--help"], [str(BIN / "diffguide"), "sample", "--help"]]
    running = [(command, subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)) for command in commands]
    for command, process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and out.startswith("usage:"), (command, err[-2000:])
    assert len(commands) >= 9
