from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.evaluate import reference_statistics

setup_logging(snakemake.log[0])
reference_statistics(snakemake.input.classifier, snakemake.input.test, snakemake.output[0], snakemake.config["device"],
                     snakemake.params.batch_size)
