from diffguide.base.runtime import setup_logging
from diffguide.reports.training_free_table import plot_training_free_tradeoff

log = setup_logging(snakemake.log[0])
curves = plot_training_free_tradeoff(snakemake.input.metrics, snakemake.output.png, features=snakemake.params.features)
log.info("wrote %s: %s", snakemake.output.png, ", ".join(curves))
