from diffguide.runtime import setup_logging
from diffguide.stages import generate

setup_logging(snakemake.log[0])
cfg = {**snakemake.params.cfg, "device": snakemake.config["device"]}
generate(cfg, snakemake.wildcards.method, float(snakemake.wildcards.scale), dict(snakemake.input),
         snakemake.output[0], threads=snakemake.threads)
