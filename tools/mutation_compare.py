"""The kill share of two mutmut runs on the functions both mutated (issue 26: "make mutate kills at
least as large a share as before on the same functions").

    python tools/mutation_compare.py BEFORE/mutants AFTER/mutants

Each argument is a mutmut 3 working folder (``mutants/``, as ``make mutate`` leaves it, or a run of
``mutmut run 'diffguide.<module>.*'`` on part of it). Functions are matched by name (``x_parse_method``,
``xǁMethodǁbuild``) because a restructuring moves them between modules; those whose body is
unchanged (mutmut's own hash of it) are reported apart, since only the tests can change their
share. Mutants that did not run (no result) are left out; "no tests" counts as not killed."""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = ("killed", "timeout")
COUNTED = (*KILLED, "survived", "no tests", "suspicious", "segfault")
FUNCTION = re.compile(r".*?\.(x[^.]*?)__mutmut_(\d+)$")  # module path, then x_<function> or xǁClassǁmethod


def results(mutants: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """function -> statuses of its mutants that ran, and function -> mutmut's hash of its body."""
    statuses, hashes = defaultdict(list), {}
    for meta in mutants.rglob("*.meta"):
        recorded = json.loads(meta.read_text())
        for key, code in recorded["exit_code_by_key"].items():
            if code is not None:
                statuses[FUNCTION.match(key).group(1)].append(status_by_exit_code[code])
        hashes.update(recorded.get("hash_by_function_name", {}))
    return statuses, hashes


def indexed(mutants: Path) -> tuple[dict[str, dict[int, str]], dict[str, int]]:
    """function -> {mutant index: status} of the mutants that ran, and function -> its mutant count."""
    statuses, counts = defaultdict(dict), defaultdict(int)
    for meta in mutants.rglob("*.meta"):
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            match = FUNCTION.match(key)
            counts[match.group(1)] += 1
            if code is not None:
                statuses[match.group(1)][int(match.group(2))] = status_by_exit_code[code]
    return statuses, counts


def paired(before: Path, after: Path) -> str:
    """The pairs (same function, same mutant count, same index, ran on both sides) killed on both,
    on one side only, or on neither."""
    (sb, cb), (sa, ca) = indexed(before), indexed(after)
    tally = {"both": 0, "before only": 0, "after only": 0, "neither": 0}
    for function in set(sb) & set(sa):
        if cb[function] != ca[function]:
            continue
        for index in set(sb[function]) & set(sa[function]):
            killed = sb[function][index] in KILLED, sa[function][index] in KILLED
            tally[{(True, True): "both", (True, False): "before only", (False, True): "after only",
                   (False, False): "neither"}[killed]] += 1
    return "paired mutants: " + ", ".join(f"{name} {count}" for name, count in tally.items())


def share(statuses: list[str]) -> tuple[int, int]:
    return sum(s in KILLED for s in statuses), sum(s in COUNTED for s in statuses)


def total(by_function: dict[str, list[str]], functions) -> tuple[int, int]:
    pairs = [share(by_function[f]) for f in functions]
    return sum(k for k, _ in pairs), sum(n for _, n in pairs)


def line(label: str, functions: list[str], before, after) -> str:
    (kb, nb), (ka, na) = total(before, functions), total(after, functions)
    return (f"{label}: {len(functions)} functions; before {kb}/{nb} killed ({100 * kb / max(nb, 1):.1f}%), "
            f"after {ka}/{na} ({100 * ka / max(na, 1):.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="the earlier run's mutants/ folder")
    parser.add_argument("after", type=Path, help="the later run's mutants/ folder")
    args = parser.parse_args()
    (before, hb), (after, ha) = results(args.before), results(args.after)
    common = sorted(set(before) & set(after))
    unchanged = [f for f in common if hb.get(f) is not None and hb.get(f) == ha.get(f)]
    print(line("same name", common, before, after))
    print(line("same name, same body", unchanged, before, after))
    lower = [f for f in common if share(after[f])[0] * max(share(before[f])[1], 1)
             < share(before[f])[0] * max(share(after[f])[1], 1)]
    print(f"functions killed at a lower share after: {len(lower)}")
    for function in lower:
        print(f"  {function}: before {share(before[function])}, after {share(after[function])}")
    print(paired(args.before, args.after))


if __name__ == "__main__":
    main()
