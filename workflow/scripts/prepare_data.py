from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.data import prepare_data

setup_logging(snakemake.log[0])
prepare_data(snakemake.params.cfg["dataset"], snakemake.wildcards.split, snakemake.output[0])
