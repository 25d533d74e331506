"""Train one network outside Snakemake, e.g. on several GPUs with DistributedDataParallel:

    torchrun --nproc_per_node 4 -m diffguide.cli.train --config config/config.yaml \\
        --network conditional --results results/default

reads <results>/data/{train,test}.npz (from ``snakemake ... prepare`` or an earlier run), writes
<results>/models/<network>.pt, logs/train_<network>.csv and resumes from
checkpoints/<network>.ckpt: the same paths as the Snakemake rule, so the rest of the pipeline
picks the model up. ``training.<network>.batch_size`` is per GPU (global batch = it x N).
Without torchrun (plain ``python -m diffguide.cli.train ...``) it trains in one process.

The Snakemake rule ``train_network`` uses :func:`launch` to start this module under torchrun by
itself when the config asks for ``resources.gpu`` > 1; it passes the rule's resolved training
config as JSON (``--resolved-config``) so both routes train from the same settings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from diffguide.base.runtime import setup_logging
from diffguide.pipeline.config_schema import SCHEMA_PATH
from diffguide.pipeline.stages.train import config_sections, train_network
from diffguide.registry import parse_network


def _network_name(value: str) -> str:
    try:
        return parse_network(value).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _load_config(args) -> dict:
    if args.resolved_config:
        return json.loads(Path(args.resolved_config).read_text())
    cfg = yaml.safe_load(Path(args.config).read_text())
    from snakemake.utils import validate  # fills in the schema's defaults, as the Snakefile does

    validate(cfg, str(SCHEMA_PATH), set_default=True)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffguide.cli.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a config file, as given to snakemake --configfile")
    source.add_argument("--resolved-config", help="JSON of an already validated config (what the rule passes)")
    parser.add_argument("--network", required=True, type=_network_name)
    parser.add_argument("--results", required=True, help="the run's results folder, e.g. results/default")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = _load_config(args)
    res = Path(args.results)
    setup_logging(None)
    (res / "models").mkdir(parents=True, exist_ok=True)
    start = parse_network(args.network).network.init_from  # the model it starts from, where the rule put it
    train_network(args.network, **config_sections(cfg, args.network), train_path=str(res / "data" / "train.npz"),
                  test_path=str(res / "data" / "test.npz"), output=str(res / "models" / f"{args.network}.pt"),
                  csv_log=str(res / "logs" / f"train_{args.network}.csv"), threads=args.threads,
                  checkpoint=str(res / "checkpoints" / f"{args.network}.ckpt"),
                  init_path=str(res / "models" / f"{start}.pt") if start else None)


def torchrun_command(nproc: int, resolved_config: str, network: str, results: str, threads: int) -> list[str]:
    """torchrun (as ``python -m torch.distributed.run``, so the venv's torch) of this module on
    one node; --standalone picks a free rendezvous port, so parallel jobs do not collide."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "diffguide.cli.train", "--resolved-config", resolved_config, "--network", network,
            "--results", results, "--threads", str(threads)]


def launch(cfg: dict, network: str, results: str, nproc: int, threads: int, log_path: str) -> None:
    """Train ``network`` in ``nproc`` DDP processes and wait; their output goes to ``log_path``.
    A failed rank fails the job with the log's tail, so the Snakemake error names the cause."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(cfg, handle)
    command = torchrun_command(nproc, handle.name, network, results, threads)
    try:
        with open(log_path, "a") as log:
            log.write("launching: " + " ".join(command) + "\n")
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if code != 0:
        tail = "".join(Path(log_path).read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"torchrun training of {network} on {nproc} processes exited with {code}; "
                           f"{log_path} ends with:\n{tail}")


if __name__ == "__main__":
    main()
