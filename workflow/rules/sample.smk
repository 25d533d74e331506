rule sample:
    """One cached job per (guidance method, scale)."""
    input:
        unpack(guidance_inputs),
    output:
        f"{RESULTS}/samples/{{method}}/scale_{{scale}}.npz",
    params:
        cfg=lambda wc: {**config_subset("seed", "precision", "dataset", "diffusion", "sampling"),
                        "guidance": sampling_guidance(wc.method)},
    log:
        f"{LOGS}/sample_{{method}}_{{scale}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_{{method}}_{{scale}}.tsv"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
        mem_mb=RES["sample_mem_mb"],
        runtime=RES["sample_runtime"],
    script:
        "../scripts/sample.py"
