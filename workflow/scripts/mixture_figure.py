import torch

from diffguide.base.runtime import setup_logging
from diffguide.reports.mixture_figure import draw_mixture_figure

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # tiny 2-D tensors: extra threads only add overhead
draw_mixture_figure(snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
