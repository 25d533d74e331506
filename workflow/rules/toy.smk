# Exact-model figures: no training, no data, seconds on a CPU.


rule mixture_figure:
    """H&S Figure 2: classifier-free guidance of an exact 2-D mixture of three Gaussians."""
    output:
        **figure_outputs("mixture_guidance", "mixture"),
    log:
        f"{LOGS}/mixture_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/mixture_figure.py"
