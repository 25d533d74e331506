rule sample:
    """One cached job per (sampling setting, guidance method, scale)."""
    input:
        unpack(guidance_inputs),
    output:
        f"{RESULTS}/samples/{{sampling}}/{{method}}/scale_{{scale}}.npz",
    params:
        # Only this job's sampling setting: adding one to sampling.sweep reruns nothing cached.
        cfg=lambda wc: {**config_subset("seed", "precision", "dataset", "diffusion"),
                        "sampling": {k: v for k, v in config["sampling"].items() if k != "sweep"}
                        | sampling_setting(wc.sampling),
                        "guidance": sampling_guidance(wc.method)},
    log:
        f"{LOGS}/sample_{{sampling}}_{{method}}_{{scale}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_{{sampling}}_{{method}}_{{scale}}.tsv"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
        mem_mb=RES["sample_mem_mb"],
        runtime=RES["sample_runtime"],
    script:
        "../scripts/sample.py"
