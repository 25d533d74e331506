from diffguide.base.runtime import setup_logging
from diffguide.pipeline.run_record import write_run_config

setup_logging(snakemake.log[0])
write_run_config(snakemake.params.cfg, snakemake.output[0])
