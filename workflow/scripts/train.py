from diffguide.runtime import setup_logging
from diffguide.stages import train_network

setup_logging(snakemake.log.text)
cfg = {**snakemake.params.cfg, "device": snakemake.config["device"]}
train_network(cfg, snakemake.wildcards.network, snakemake.input.train, snakemake.input.test,
              snakemake.output[0], snakemake.log.csv, threads=snakemake.threads)
