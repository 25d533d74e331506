from diffguide.base.runtime import setup_logging
from diffguide.reports.training_free_table import write_training_free_table

log = setup_logging(snakemake.log[0])
written = write_training_free_table(snakemake.input.metrics, snakemake.input.replicates, snakemake.output.md,
                                    snakemake.output.csv, features=snakemake.params.features)
log.info("wrote %s", ", ".join(map(str, written)))
