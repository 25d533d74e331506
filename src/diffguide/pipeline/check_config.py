"""`python -m diffguide.pipeline.check_config CONFIG.yaml [MORE.yaml ...]`: check a config without running anything.

Several files are merged as ``snakemake --configfile A.yaml B.yaml`` merges them (B's keys win,
mappings merged key by key), e.g. config/config.yaml config/sdg.yaml.

The Snakefile runs the same checks before any job. This command exists for what Snakemake checks
before the Snakefile is read, and reports poorly: a config file that is not valid YAML gets
"Config file is not valid JSON or YAML" with no line, so this names the file, line and column.
Exit status 0: the config is good; 1: it is not (one line per problem); 2: unreadable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from diffguide.pipeline.config_checks import config_warnings
from diffguide.pipeline.config_schema import SCHEMA_PATH, config_errors


def read_config(path: Path) -> dict:
    """The YAML mapping in ``path``; a ValueError naming file, line and column otherwise."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML at {where}: {reason} (a tab in the indentation, an unclosed "
                         "bracket or quote, or a missing space after ':' are the usual causes)") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: the top level must be a mapping of keys (run:, dataset:, ...), "
                         f"got a {type(loaded).__name__}")
    return loaded


def merged(configs: list[dict]) -> dict:
    """The configs merged as Snakemake merges several --configfile (its own update_config)."""
    from snakemake.utils import update_config

    result: dict = {}
    for config in configs:
        update_config(result, config)
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line; its description is this module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m diffguide.pipeline.check_config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", type=Path, metavar="CONFIG.yaml",
                        help="config file(s), merged in order as snakemake --configfile merges them")
    return parser


def main(argv: list[str]) -> int:
    try:
        paths = build_parser().parse_args(argv).configs
    except SystemExit as stop:  # --help (0) or a usage error (2), as argparse says
        return int(stop.code or 0)
    try:
        config = merged([read_config(path) for path in paths])
    except ValueError as err:
        print(f"diffguide: {err}", file=sys.stderr)
        return 2
    lines = config_errors(config, SCHEMA_PATH)
    names = " + ".join(str(path) for path in paths)
    if lines:
        print(f"diffguide: invalid config {names}:\n" + "\n".join(lines), file=sys.stderr)
        return 1
    print(f"{names}: valid (run '{config['run']}' writes under results/{config['run']}/)")
    warnings = config_warnings(config)
    if warnings:
        print("diffguide: warning: it runs, but:\n" + "\n".join(warnings), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
