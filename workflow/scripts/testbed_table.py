from diffguide.base.runtime import setup_logging
from diffguide.reports.testbed_table import write_testbed_table

log = setup_logging(snakemake.log[0])
written = write_testbed_table(snakemake.input.metrics, snakemake.input.replicates, snakemake.output.md,
                              snakemake.output.csv, snakemake.output.matched_csv,
                              features=snakemake.params.features)
log.info("wrote %s", ", ".join(map(str, written)))
