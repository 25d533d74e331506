"""Mutation testing of the wiring (issue 26, item 5): the faults mutmut's one-token operators do not
make, planted one at a time in the modules that connect networks, options, random streams and
aggregates, each run against the fast tests of that module. Prints every surviving mutant and the
kill ratio; `make mutate` runs it after mutmut, `make mutate-wiring` alone.

Operators (each mutant is one application of one):

- ``role``: ``models["a"]`` / ``models.get("a")`` reads another role the registry declares (a
  network wired to the wrong model);
- ``option``: a declared Option read in place of another declared in the same module
  (``APG_ETA.value_in`` -> ``APG_MOMENTUM.value_in``), or ``options["a"]`` -> ``options["b"]`` (one
  option silently standing for another);
- ``swap_keywords``: the values of two keyword arguments of one call exchanged (two weights,
  decays or thresholds swapped; not in calls that only draw a progress bar);
- ``swap_constants``: two different float constants of one statement exchanged;
- ``aggregate``: ``.mean(`` -> ``.sum(``, ``.max(`` <-> ``.min(``, ``np.mean(v)`` -> ``v[0]`` (an
  aggregation changed: first against mean);
- ``stream``: a seed expression ``a + b`` / ``a * b + c`` reduced to its first operand (two random
  streams that coincide).

Each mutant is written into a private copy of the repository (src/, tests/ and what the tests
read) and the module's tests run there with ``pytest -x``; a mutant is killed when they fail (or
time out). ``--without tests/test_wiring.py`` measures the same mutants against the tests without
the wiring tests, the ratio before them."""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("src", "tests", "config", "docs", "workflow", "profiles", "Snakefile", "pyproject.toml", "README.md")
ROLES = ("eps_model", "classifier", "weak_model", "noisy_encoder", "clip", "references")
REGISTRY_DRIVEN = ["tests/test_wiring.py", "tests/test_heun.py", "tests/test_registry.py"]
# Tests that run Snakemake, a smoke run, an install or subprocess pipelines: minutes per mutant, and
# make mutate's mutmut leaves them out too.
WHOLE_RUNS = {"test_pipeline.py", "test_method_units.py", "test_reliability.py", "test_slurm.py",
              "test_slurm_partitions.py", "test_install.py", "test_sample_cli.py", "test_workflow_hygiene.py",
              "test_distributed.py", "test_divergence.py", "test_resume.py", "test_reference_fid.py"}


def targets() -> dict[str, list[str]]:
    """module file -> the test files run on its mutants: those that import it, plus the tests that
    reach every method through the registry."""
    units = sorted(p.parent.name for p in (REPO / "src/diffguide/guidance/methods").glob("*/wrapper.py"))
    chosen = {f"src/diffguide/guidance/methods/{u}/wrapper.py": f"guidance.methods.{u}" for u in units}
    chosen |= {"src/diffguide/guidance/wrappers.py": "guidance.wrappers",
               "src/diffguide/guidance/parts.py": "guidance.parts",
               "src/diffguide/pipeline/stages/sample.py": "stages.sample",
               "src/diffguide/diffusion/seeding.py": "diffusion.seeding",
               "src/diffguide/evaluation/metrics.py": "evaluation.metrics",
               "src/diffguide/evaluation/intervals.py": "evaluation.intervals",
               "src/diffguide/training/loop.py": "training.loop"}
    tests = [t for t in sorted((REPO / "tests").glob("test_*.py")) if t.name not in WHOLE_RUNS]
    plan = {}
    for path, dotted in chosen.items():
        package, module = dotted.rsplit(".", 1)
        # "guidance.wrappers" in the text, or "from diffguide.evaluation import metrics, ..."
        imports = re.compile(rf"{re.escape(dotted)}\b|from diffguide\.{re.escape(package)} import [^\n]*\b{module}\b")
        importing = [f"tests/{t.name}" for t in tests if imports.search(t.read_text())]
        driven = REGISTRY_DRIVEN if "/guidance/" in path or "stages" in path else []
        plan[path] = sorted(set(importing + driven), key=lambda t: (t in REGISTRY_DRIVEN, t))
    return plan


@dataclass(frozen=True)
class Mutant:
    path: str
    operator: str
    line: int
    description: str
    source: str  # the whole mutated file

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line} {self.operator}: {self.description}"


def replace_segment(source: str, node: ast.AST, text: str) -> str:
    """``source`` with ``node``'s own text replaced by ``text`` (positions from the AST)."""
    start, end = _offset(source, node.lineno, node.col_offset), _offset(source, node.end_lineno, node.end_col_offset)
    return source[:start] + text + source[end:]


def _offset(source: str, lineno: int, col_offset: int) -> int:
    """The character index in ``source`` of an AST position (a 1-based line, a byte offset in it)."""
    lines = source.splitlines(keepends=True)
    return sum(len(line) for line in lines[:lineno - 1]) + len(lines[lineno - 1].encode()[:col_offset].decode())


def segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node)


def role_mutants(source: str, tree: ast.AST):
    """Only roles the module itself reads: wiring one of its networks to another of its networks."""
    used = {key.value for key in _role_keys(tree)}
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and _is_name(node.value, "models"):
            key = node.slice
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and _is_name(node.func.value, "models") and node.args):
            key = node.args[0]
        if isinstance(key, ast.Constant) and key.value in ROLES:
            for other in sorted(used - {key.value}):
                    yield "role", key, repr(other), f"models[{key.value!r}] -> models[{other!r}]"


def _role_keys(tree: ast.AST) -> list[ast.Constant]:
    keys = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_name(node.value, "models"):
            keys.append(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and _is_name(node.func.value, "models") and node.args):
            keys.append(node.args[0])
    return [k for k in keys if isinstance(k, ast.Constant) and k.value in ROLES]


def option_mutants(source: str, tree: ast.AST):
    declared = sorted({alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and node.module and node.module.startswith("diffguide.guidance.methods.")
                       and not node.module.endswith(".wrapper") for alias in node.names
                       if (alias.asname or alias.name).isupper()})
    keys = sorted({node.slice.value for node in ast.walk(tree) if isinstance(node, ast.Subscript)
                   and _is_name(node.value, "options") and isinstance(node.slice, ast.Constant)})
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in declared and isinstance(node.ctx, ast.Load):
            for other in declared:
                if other != node.id:
                    yield "option", node, other, f"{node.id} -> {other}"
        if isinstance(node, ast.Subscript) and _is_name(node.value, "options") and isinstance(node.slice, ast.Constant):
            for other in keys:
                if other != node.slice.value:
                    yield "option", node.slice, repr(other), f"options[{node.slice.value!r}] -> options[{other!r}]"


# Calls that only draw a progress bar: swapping their arguments changes what a terminal shows, no result.
COSMETIC = {"progress_bar", "set_postfix", "tqdm"}


def swap_mutants(source: str, tree: ast.AST):
    for node in ast.walk(tree):
        called = node.func.attr if isinstance(getattr(node, "func", None), ast.Attribute) else getattr(
            getattr(node, "func", None), "id", None)
        if isinstance(node, ast.Call) and len(node.keywords) >= 2 and called not in COSMETIC:
            keywords = [k for k in node.keywords if k.arg is not None]
            for i in range(len(keywords)):
                for j in range(i + 1, len(keywords)):
                    a, b = keywords[i], keywords[j]
                    if segment(source, a.value) == segment(source, b.value):
                        continue
                    swapped = ast.Call(func=node.func, args=node.args, keywords=[
                        ast.keyword(arg=k.arg, value=b.value if k is a else a.value if k is b else k.value)
                        for k in node.keywords])
                    yield "swap_keywords", node, ast.unparse(swapped), f"{a.arg} <-> {b.arg}"
    for statement in [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.Return, ast.AugAssign, ast.Expr))]:
        # floats only: weights, decays, thresholds (integers are mostly indices and dims)
        numbers = [n for n in ast.walk(statement) if isinstance(n, ast.Constant) and type(n.value) is float]
        for i in range(len(numbers)):
            for j in range(i + 1, len(numbers)):
                a, b = numbers[i], numbers[j]
                if a.value != b.value:
                    text = segment(source, statement)
                    mutated = _swap_in(source, statement, a, b)
                    if mutated != text:
                        yield "swap_constants", statement, mutated, f"{a.value!r} <-> {b.value!r}"


def _swap_in(source: str, statement: ast.AST, a: ast.Constant, b: ast.Constant) -> str:
    """The statement's text with constants a and b exchanged. The later one is replaced first, so the
    earlier one's position still holds; the two texts trade places, so the statement keeps its start
    and its length."""
    first, second = sorted((a, b), key=lambda n: (n.lineno, n.col_offset))
    text = replace_segment(source, second, segment(source, first))
    text = replace_segment(text, first, segment(source, second))
    start = _offset(source, statement.lineno, statement.col_offset)
    return text[start:start + len(segment(source, statement))]


def aggregate_mutants(source: str, tree: ast.AST):
    pairs = {"mean": "sum", "max": "min", "min": "max", "amax": "amin", "amin": "amax"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in pairs:
            owner = node.func.value
            if _is_name(owner, "np") and node.func.attr == "mean" and node.args:
                yield "aggregate", node, f"({segment(source, node.args[0])})[0]", "np.mean(v) -> v[0]"
            elif not _is_name(owner, "np") and not _is_name(owner, "torch") and not _is_name(owner, "math"):
                text = f"{segment(source, owner)}.{pairs[node.func.attr]}(" + segment(source, node)[
                    len(segment(source, owner)) + len(node.func.attr) + 2:]
                yield "aggregate", node, text, f".{node.func.attr}( -> .{pairs[node.func.attr]}("


def stream_mutants(source: str, tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("manual_seed", "default_rng", "PerSampleNoise", "SeedSequence") and node.args:
                seed = node.args[0]
                if isinstance(seed, ast.BinOp):
                    first = seed.left.left if isinstance(seed.left, ast.BinOp) else seed.left
                    yield "stream", seed, segment(source, first), f"{name}({segment(source, seed)}) -> its first operand"


def _is_name(node, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


OPERATORS = (role_mutants, option_mutants, swap_mutants, aggregate_mutants, stream_mutants)


def mutants(path: str) -> list[Mutant]:
    source = (REPO / path).read_text()
    tree = ast.parse(source)
    found, seen = [], set()
    for operator in OPERATORS:
        for kind, node, text, description in operator(source, tree):
            mutated = replace_segment(source, node, text)
            if mutated == source or mutated in seen:
                continue
            try:
                ast.parse(mutated)
            except SyntaxError:
                continue
            seen.add(mutated)
            found.append(Mutant(path, kind, node.lineno, description, mutated))
    return found


def run(mutant: Mutant, tests: list[str], copy: Path, timeout: int) -> tuple[str, str]:
    """('killed', the test file that failed first), ('survived', '') or ('timeout', ''), with the
    mutant written into ``copy`` and restored after."""
    target = copy / mutant.path
    original = target.read_text()
    target.write_text(mutant.source)
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                cwd=copy, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"})
        if result.returncode == 0:
            return "survived", ""
        failed = re.search(r"^(?:FAILED|ERROR) (tests/[^:\s]+)", result.stdout, re.M)
        return "killed", failed.group(1) if failed else "(collection)"
    except subprocess.TimeoutExpired:
        return "timeout", ""
    finally:
        target.write_text(original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--without", action="append", default=[], help="a test file to leave out (the 'before' ratio)")
    parser.add_argument("--only", action="append", default=[], help="mutate only files whose path contains this "
                        "(repeatable)")
    parser.add_argument("--tests", nargs="+", help="run only these test files on every mutant (e.g. how many the "
                        "generated wiring tests kill alone)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=300, help="seconds a mutant's tests may run")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args(argv)
    plan = {path: [t for t in (args.tests or tests) if t not in args.without] for path, tests in targets().items()
            if not args.only or any(part in path for part in args.only)}
    todo = [(m, plan[path]) for path in plan for m in mutants(path)]
    by_operator: dict[str, int] = {}
    for mutant, _ in todo:
        by_operator[mutant.operator] = by_operator.get(mutant.operator, 0) + 1
    print(f"{len(todo)} mutants in {len(plan)} modules: " + ", ".join(f"{k} {v}" for k, v in sorted(by_operator.items())),
          flush=True)
    if args.list:
        for mutant, tests in todo:
            print(mutant.name)
        return 0
    with tempfile.TemporaryDirectory(prefix="wiring_mutants_") as tmp:
        copies = []
        for w in range(args.workers):
            copy = Path(tmp) / f"copy{w}"
            for name in COPIED:
                source = REPO / name
                (shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                 if source.is_dir() else (copy.mkdir(parents=True, exist_ok=True), shutil.copy(source, copy / name)))
            copies.append(copy)
        outcomes, killers = [None] * len(todo), [""] * len(todo)

        def work(w: int):
            for i in range(w, len(todo), args.workers):
                outcomes[i], killer = run(*todo[i], copies[w], args.timeout)
                killers[i] = killer
                print(f"  [{i + 1}/{len(todo)}] {outcomes[i]:8s} {todo[i][0].name}  {killer}", flush=True)

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(work, range(args.workers)))
    survivors = [m for (m, _), o in zip(todo, outcomes) if o == "survived"]
    killed = sum(o in ("killed", "timeout") for o in outcomes)
    print("\nSurvivors:" if survivors else "\nNo survivors.")
    for mutant in survivors:
        print(f"  {mutant.name}")
    for operator in sorted(by_operator):
        n = [o for (m, _), o in zip(todo, outcomes) if m.operator == operator]
        print(f"  {operator:15s} killed {sum(o != 'survived' for o in n)} of {len(n)}")
    print(f"wiring mutants: killed {killed} of {len(todo)} ({100 * killed / max(len(todo), 1):.1f}%)"
          + (f", without {', '.join(args.without)}" if args.without else ""))
    # The wiring tests run last (REGISTRY_DRIVEN's order, pytest -x): a mutant they killed passed
    # every file before them, so without them it survives; the ratio before them follows exactly.
    by_wiring = sum(k == "tests/test_wiring.py" for k in killers)
    if by_wiring and not args.without and not args.tests:
        print(f"killed only by tests/test_wiring.py: {by_wiring}; without it: killed {killed - by_wiring} of "
              f"{len(todo)} ({100 * (killed - by_wiring) / max(len(todo), 1):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
