from diffguide.runtime import setup_logging
from diffguide.stages import best_scale_gallery

setup_logging(snakemake.log[0])
best_scale_gallery(snakemake.input.metrics, list(snakemake.input.samples), snakemake.wildcards.method,
                   snakemake.params.dataset, snakemake.output.png, snakemake.params.per_class,
                   snakemake.params.features)
