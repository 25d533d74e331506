# Exact-model figures: no training, no data, seconds on a CPU.


rule mixture_figure:
    """H&S Figure 2: classifier-free guidance of an exact 2-D mixture of three Gaussians."""
    output:
        **figure_outputs("mixture_guidance", "mixture_guidance"),
    log:
        f"{LOGS}/mixture_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/mixture_figure.py"


rule sharpening_figure:
    """Classifier guidance at scale s against exact draws of p(x) p(y|x)^s / Z(x) and of
    p(x) p(y|x)^s on the exact mixture (docs/equations.md part 9)."""
    output:
        **figure_outputs("sharpening_guidance", "sharpening_guidance"),
    log:
        f"{LOGS}/sharpening_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/sharpening_figure.py"
