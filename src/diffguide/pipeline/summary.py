"""`python -m diffguide.pipeline.summary [CONFIG]`: print where a finished run's figures and metrics are
(`make run` ends with it), and its metrics table. CONFIG is the run's config file (default
config/config.yaml); its `run:` key names the folder under results/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from diffguide.base.integrity import read_csv
from diffguide.pipeline.check_config import read_config


def main(config_path: str) -> int:
    try:
        run = read_config(Path(config_path)).get("run", "default")
    except ValueError as err:  # unreadable or not YAML: the message names the file and line
        print(f"diffguide: {err}", file=sys.stderr)
        return 2
    root = Path("results") / run
    metrics = root / "metrics.csv"
    if not metrics.exists():
        print(f"no metrics yet at {metrics}: the run has not finished", file=sys.stderr)
        return 1
    print(f"\nResults of run '{run}':")
    print(f"  metrics: {metrics}")
    for figure in sorted((root / "figures").glob("*.png")):
        print(f"  figure:  {figure} (and .pdf)")
    for table in sorted((root / "tables").glob("*.md")):
        print(f"  table:   {table} (and .tex, .html)")
    print(f"  logs:    {root / 'logs'}/")
    print("  next:    `make findings` checks the papers' findings on it, `make report` writes "
          f"{root / 'report.html'}")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print("\n" + read_csv(metrics).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffguide.pipeline.summary", description=__doc__)
    parser.add_argument("config", nargs="?", default="config/config.yaml",
                        help="the run's config file (default: config/config.yaml)")
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args().config))
