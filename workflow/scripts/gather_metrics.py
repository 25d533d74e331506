from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.evaluate import gather_metrics

setup_logging(snakemake.log[0])
gather_metrics(list(snakemake.input.rows), snakemake.output.primary, snakemake.output.by_sampler, snakemake.params.primary,
               replicate_files=list(snakemake.input.replicates), replicates_output=snakemake.output.replicates)
