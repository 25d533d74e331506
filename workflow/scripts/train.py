from pathlib import Path

from diffguide.base.runtime import setup_logging
from diffguide.cli.train import launch
from diffguide.pipeline.stages.train import config_sections, train_network
from diffguide.registry import parse_network
from diffguide.training.settings import RUN_ONLY_TRAINING_KEYS

network = snakemake.wildcards.network
# The run-only keys are left out of params (no rerun when they change): read them from the config.
block = snakemake.config["training"][parse_network(network).network.name]
training = {**snakemake.params.cfg["training"][network], **{key: block[key] for key in RUN_ONLY_TRAINING_KEYS}}
cfg = {**snakemake.params.cfg, "device": snakemake.config["device"], "training": {network: training}}
processes = snakemake.resources.gpu
if processes > 1:  # one DDP process per GPU, under torchrun; same paths as the in-process route
    launch(cfg, network, str(Path(snakemake.output[0]).parent.parent), processes, snakemake.threads,
           snakemake.log.text)
else:
    setup_logging(snakemake.log.text)
    train_network(network, **config_sections(cfg, network), train_path=snakemake.input.train,
                  test_path=snakemake.input.test, output=snakemake.output[0], csv_log=snakemake.log.csv,
                  threads=snakemake.threads, checkpoint=snakemake.params.checkpoint,
                  init_path=snakemake.input.get("init"))
