from pathlib import Path

from diffguide.runtime import setup_logging
from diffguide.stages import train_network
from diffguide.train_cli import launch

network = snakemake.wildcards.network
# checkpoint_every is left out of params (no rerun when it changes): read it from the config.
block = "conditional" if network.startswith("conditional_p") else network
training = {**snakemake.params.cfg["training"][network],
            "checkpoint_every": snakemake.config["training"][block]["checkpoint_every"]}
cfg = {**snakemake.params.cfg, "device": snakemake.config["device"], "training": {network: training}}
processes = snakemake.resources.gpu
if processes > 1:  # one DDP process per GPU, under torchrun; same paths as the in-process route
    launch(cfg, network, str(Path(snakemake.output[0]).parent.parent), processes, snakemake.threads,
           snakemake.log.text)
else:
    setup_logging(snakemake.log.text)
    train_network(cfg, network, snakemake.input.train, snakemake.input.test, snakemake.output[0], snakemake.log.csv,
                  threads=snakemake.threads, checkpoint=getattr(snakemake.params, "checkpoint", None))
