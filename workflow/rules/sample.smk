def guidance_inputs(wildcards):
    """CFG samples the conditional model; CG the unconditional one with the noisy classifier,
    which s = 0 (the unguided model) does not need, so retraining it leaves s = 0 cached."""
    if wildcards.method == "cfg":
        return {"conditional": f"{RESULTS}/models/conditional.pt"}
    inputs = {"unconditional": f"{RESULTS}/models/unconditional.pt"}
    if float(wildcards.scale) != 0:
        inputs["noisy_classifier"] = f"{RESULTS}/models/noisy_classifier.pt"
    return inputs


rule sample:
    """One cached job per (guidance method, scale)."""
    input:
        unpack(guidance_inputs),
    output:
        f"{RESULTS}/samples/{{method}}/scale_{{scale}}.npz",
    params:
        cfg=config_subset("seed", "precision", "dataset", "diffusion", "sampling"),
    log:
        f"{LOGS}/sample_{{method}}_{{scale}}.log",
    threads: workflow.cores
    resources:
        gpu=RES["gpu"],
        mem_mb=RES["sample_mem_mb"],
        runtime=RES["sample_runtime"],
    script:
        "../scripts/sample.py"
