# Config validation, output root, the guidance sweeps and the resources every rule declares.
import sys

from snakemake.exceptions import WorkflowError

from diffguide.config_schema import coerce_command_line_values, describe_config_errors, load_schema

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def validate_config(config):
    """Validate against the schema (which also fills in defaults) before any job is scheduled;
    on failure name every wrong key in one line each and stop."""
    config.update(coerce_command_line_values(config, load_schema(SCHEMA)))
    try:
        validate(config, SCHEMA)
    except WorkflowError:
        lines = describe_config_errors(config, load_schema(SCHEMA))
        sys.exit("diffguide: invalid config:\n" + "\n".join(lines)
                 + "\nSee config/README.md for every key, its default and its range.")


validate_config(config)

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"
METHODS = ["cfg", "cg"]


def scale_tag(value):
    """A guidance scale as it appears in file names: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(value):g}"


SCALES = {
    "cfg": [scale_tag(w) for w in config["guidance"]["cfg_scales"]],
    "cg": [scale_tag(s) for s in config["guidance"]["cg_scales"]],
}
RES = config["resources"]


wildcard_constraints:
    method="cfg|cg",
    scale=r"[0-9.e+-]+",
    split="train|test",


# Each rule declares the config it reads as params, so Snakemake's params rerun-trigger reruns
# exactly the jobs whose settings changed (and what depends on them), nothing else.
NETWORK_ARCH = {"unconditional": "unet", "conditional": "unet",
                "noisy_classifier": "noisy_classifier", "eval_classifier": "eval_classifier"}


def config_subset(*keys):
    return {key: config[key] for key in keys}


def training_config(wildcards):
    net = wildcards.network
    return {**config_subset("seed", "precision", "dataset", "diffusion"),
            "networks": {NETWORK_ARCH[net]: config["networks"][NETWORK_ARCH[net]]},
            "training": {net: config["training"][net]}}


def guidance_inputs(wildcards):
    """CFG samples the conditional model; CG the unconditional one with the noisy classifier,
    which s = 0 (the unguided model) does not need, so retraining it leaves s = 0 cached."""
    if wildcards.method == "cfg":
        return {"conditional": f"{RESULTS}/models/conditional.pt"}
    inputs = {"unconditional": f"{RESULTS}/models/unconditional.pt"}
    if float(wildcards.scale) != 0:
        inputs["noisy_classifier"] = f"{RESULTS}/models/noisy_classifier.pt"
    return inputs
