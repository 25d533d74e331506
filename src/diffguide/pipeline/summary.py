"""`python -m diffguide.pipeline.summary CONFIG`: print where a finished run's figures and metrics are."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

from diffguide.base.integrity import read_csv


def main(config_path: str) -> int:
    run = yaml.safe_load(Path(config_path).read_text()).get("run", "default")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "config/config.yaml"))
