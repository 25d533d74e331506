from diffguide.base.runtime import setup_logging
from diffguide.reports.testbed_figures import draw_testbed_figures

log = setup_logging(snakemake.log[0])
out = snakemake.output
reference = draw_testbed_figures(snakemake.input.metrics, snakemake.input.test_split, out.testbed_tradeoff_png,
                                 out.testbed_saturation_png, features=snakemake.params.features)
log.info("wrote %s and %s (the test split's saturation: %.4f)", out.testbed_tradeoff_png, out.testbed_saturation_png,
         reference)
