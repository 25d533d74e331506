rule train_network:
    """Train one network: the unconditional eps-model, the conditional one (labels dropped to the
    null class with probability p_uncond), the noisy classifier p_phi(y | x_t, t), or the
    evaluation classifier on clean images. A killed job resumes from its last checkpoint."""
    input:
        unpack(training_inputs),
    output:
        f"{RESULTS}/models/{{network}}.pt",
    log:
        text=f"{LOGS}/train_{{network}}.log",
        csv=f"{LOGS}/train_{{network}}.csv",
    benchmark:
        f"{RESULTS}/benchmarks/train_{{network}}.tsv"
    # Training jobs are the long ones and every sample waits for one: run every one before any
    # sampling or evaluation job, the eps-models first. Left to itself, the scheduler on 2 cores
    # filled a freed core with sampling jobs while the 20-minute noisy classifier, which all
    # classifier-guided samples wait for, had not started (~8 min of idle tail in the default run).
    priority: training_priority
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
        # torchrun starts every process of a multi-GPU job on the node it runs on.
        nodes=1,
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime"],
    params:
        cfg=training_config,
        checkpoint=training_checkpoint,
    script:
        "../scripts/train.py"
