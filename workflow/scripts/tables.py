from diffguide.base.runtime import setup_logging
from diffguide.reports.tables import write_tables

log = setup_logging(snakemake.log[0])
p = snakemake.params
written = write_tables(snakemake.input[0], p.p_uncond, p.dataset, p.image_size, snakemake.output.hs_table1_md.rsplit("/", 1)[0],
                       features=p.features, inception_samples=p.inception_samples if p.features == "inception" else None)
log.info("wrote %s", ", ".join(map(str, written)))
