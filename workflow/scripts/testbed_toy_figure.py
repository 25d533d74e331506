import torch

from diffguide.base.runtime import setup_logging
from diffguide.reports.testbed_toy_figure import draw_toy_figure, format_summary

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # tiny 2-D tensors: extra threads only add overhead
drawn = draw_toy_figure(snakemake.output.png)
log.info("wrote %s\n%s", snakemake.output.png, format_summary(drawn))
