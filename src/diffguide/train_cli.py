"""Train one network outside Snakemake, e.g. on several GPUs with DistributedDataParallel:

    torchrun --nproc_per_node 4 -m diffguide.train_cli --config config/config.yaml \\
        --network conditional --results results/default

reads <results>/data/{train,test}.npz (from ``snakemake ... prepare`` or an earlier run), writes
<results>/models/<network>.pt, logs/train_<network>.csv and resumes from
checkpoints/<network>.ckpt: the same paths as the Snakemake rule, so the rest of the pipeline
picks the model up. ``training.<network>.batch_size`` is per GPU (global batch = it x N).
Without torchrun (plain ``python -m diffguide.train_cli ...``) it trains in one process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from .runtime import setup_logging
from .stages import train_network

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a config file, as given to snakemake --configfile")
    parser.add_argument("--network", required=True,
                        choices=["unconditional", "conditional", "noisy_classifier", "eval_classifier"])
    parser.add_argument("--results", required=True, help="the run's results folder, e.g. results/default")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = parser.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    from snakemake.utils import validate  # fills in the schema's defaults, as the Snakefile does

    validate(cfg, str(SCHEMA), set_default=True)
    res = Path(args.results)
    setup_logging(None)
    (res / "models").mkdir(parents=True, exist_ok=True)
    train_network(cfg, args.network, str(res / "data" / "train.npz"), str(res / "data" / "test.npz"),
                  str(res / "models" / f"{args.network}.pt"), str(res / "logs" / f"train_{args.network}.csv"),
                  threads=args.threads, checkpoint=str(res / "checkpoints" / f"{args.network}.ckpt"))


if __name__ == "__main__":
    main()
