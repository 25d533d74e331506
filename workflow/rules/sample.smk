rule sample:
    """One cached job per (sampling setting, guidance method, scale)."""
    input:
        unpack(guidance_inputs),
    output:
        f"{RESULTS}/samples/{{sampling}}/{{method}}/scale_{{scale}}.npz",
    log:
        f"{LOGS}/sample_{{sampling}}_{{method}}_{{scale}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_{{sampling}}_{{method}}_{{scale}}.tsv"
    threads: RES["threads"]
    resources:
        gpu=ONE_PROCESS_GPUS,
        mem_mb=RES["sample_mem_mb"],
        runtime=RES["sample_runtime"],
    params:
        cfg=sampling_config,
    script:
        "../scripts/sample.py"
