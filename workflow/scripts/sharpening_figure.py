import torch

from diffguide.base.runtime import setup_logging
from diffguide.reports.sharpening_figure import draw_sharpening_figure, format_summary

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # tiny 2-D tensors: extra threads only add overhead
_, rows = draw_sharpening_figure(snakemake.output.png)
log.info("wrote %s\n%s", snakemake.output.png, format_summary(rows))
