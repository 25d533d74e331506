from diffguide.runtime import setup_logging
from diffguide.stages import prepare

setup_logging(snakemake.log[0])
prepare(snakemake.params.cfg, snakemake.wildcards.split, snakemake.output[0])
