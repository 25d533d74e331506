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


rule testbed_toy_figure:
    """Karras et al. 2024's toy example in H&S Figure 2 style (issue 16): CFG, autoguidance, the
    guidance interval and APG on an exact 2-D mixture of thin branches with an exact weak model,
    their samples over the exact conditional density, with coverage and tail fractions."""
    output:
        **figure_outputs("testbed_toy", "testbed_toy"),
    log:
        f"{LOGS}/testbed_toy_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/testbed_toy_figure.py"
