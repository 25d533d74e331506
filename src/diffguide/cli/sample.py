"""The ``diffguide`` command. ``diffguide sample`` draws images from a finished run's models
without writing code, e.g. 16 sandals and sneakers at w = 3:

    diffguide sample --run results/default --method cfg --scale 3 --classes sandal,sneaker \\
        --count 16 --out sandals_w3

writes sandals_w3.png (a grid, each image titled with its class) and sandals_w3.npz (images as
uint8 NHWC, labels, class names and every setting). ``--checkpoint model.pt`` instead of ``--run``
samples a method that needs one model only (cfg, or any method at scale 0).

What the models were trained on (data set, image size, class names, diffusion schedule and T,
seed, precision) comes from the model files' metadata (stages.train.model_metadata); the sampling
settings (sampler, steps, spacing, guidance options) from the flags, else from ``--config`` (config
files), else from the config the run recorded (results/<run>/config.yaml, pipeline.run_record),
else from the schema's defaults. A setting whose first step saturates score-form guidance is
warned about, with the flag that fixes it. The guided model and the sampling loop are the sampling
job's own (stages.sample), and the seed defaults to the run's, so the run's settings reproduce a
sampling job's file: sample i asks for the i-th of the chosen classes, cyclically (all classes in
order by default, as the job asks), and its noise depends on (seed, i) only.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from diffguide.base import integrity
from diffguide.base.atomic import atomic_open
from diffguide.registry import MethodName, load_plugins, parse_method, parse_network

log = logging.getLogger("diffguide")

# The flags that override a sampling setting (sampling.<key>) when given.
SAMPLING_FLAGS = ("sampler", "steps", "eta", "variance", "timestep_spacing", "clip_x0", "batch_size")
# The training facts that make models of one run compatible: the same images and the same forward
# process (a classifier trained for another T or schedule would misguide). Machine-local keys
# (dataset.source_dir, download) may differ.
SHARED_FACTS = {"dataset": ("name", "image_size", "fit"), "diffusion": ("schedule", "timesteps")}


class UsageError(ValueError):
    """A wrong argument or a run that cannot serve it: printed as one message, no traceback."""


# ----------------------------------------------------------------------------- the command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffguide", description="diffguide's commands (for the pipeline itself, "
                                     "run snakemake or make run)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sample = commands.add_parser("sample", help="sample images from a finished run or a model file",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run's results folder, e.g. results/smoke (reads its models/)")
    source.add_argument("--checkpoint", type=Path, help="one model file, for a method that needs only its eps-model")
    sample.add_argument("--config", nargs="+", type=Path, help="the run's config file(s), as given to snakemake "
                        "--configfile: the sampling and guidance settings the flags do not give")
    sample.add_argument("--method", required=True, help="a registered guidance method: cfg, cg, cond_cg, ...")
    sample.add_argument("--scale", type=float, required=True, help="the method's scale (cfg's w, cg's s); 0: unguided")
    sample.add_argument("--classes", help="comma-separated class names (case-insensitive) or indices; sample i asks "
                        "for the i-th, cyclically (default: every class in order)")
    sample.add_argument("--count", type=int, default=16, help="number of images (default 16)")
    sample.add_argument("--seed", type=int, help="noise seed (default: the run's seed, as its sampling jobs)")
    sample.add_argument("--sampler", choices=("ddim", "ddpm"))
    sample.add_argument("--steps", type=int, help="respaced sampling steps K")
    sample.add_argument("--eta", type=float, help="DDIM's eta (0: deterministic)")
    sample.add_argument("--variance", choices=("beta_tilde", "beta"), help="Sigma of the ddpm sampler's steps")
    sample.add_argument("--timestep-spacing", choices=("linspace", "leading", "trailing"))
    sample.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=None,
                        help="clip each step's x0 prediction to [-1, 1]")
    sample.add_argument("--batch-size", type=int, help="images per forward pass")
    sample.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a guidance option of the method, e.g. cond_cg_w=1 or cg_form=mean (repeatable)")
    sample.add_argument("--plugin", action="append", default=[], help="a module registering more methods")
    sample.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="default: the run's")
    sample.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    sample.add_argument("--threads", type=int, help="CPU threads (default: the config's resources.threads, 1 as "
                        "the sampling jobs: small models gain nothing from more, and on a busy machine lose)")
    sample.add_argument("--out", type=Path, required=True, help="output prefix: writes <out>.png and <out>.npz")
    sample.set_defaults(handler=sample_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffguide.base.runtime import setup_logging

    setup_logging(None)
    try:
        args.handler(args)
    except (UsageError, ValueError, FileNotFoundError, integrity.CorruptArtifactError) as err:
        # Every message names the file, key or value and what to do; a traceback would bury it.
        print(f"diffguide {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- settings

def read_configs(paths: list[Path]) -> dict:
    """The run's config (several files merged as Snakemake merges them), with the schema's defaults
    filled in."""
    from diffguide.pipeline.check_config import merged, read_config

    return completed(merged([read_config(path) for path in paths]), " + ".join(map(str, paths)))


def read_run_settings(run: Path) -> dict | None:
    """The config a run's jobs saw (results/<run>/config.yaml, diffguide.pipeline.run_record), or
    None, with a warning saying how to get it, for a run that has not recorded one."""
    from diffguide.pipeline.run_record import read_run_config, run_config_path

    recorded = read_run_config(run)
    if recorded is None:
        log.warning("%s does not exist (the run finished before runs recorded their config, or has not finished): "
                    "sampling with the schema's defaults where no flag is given. Pass --config <the run's config "
                    "files>, or let Snakemake write it: snakemake --cores 1 --configfile <the run's config> %s",
                    run_config_path(run), run_config_path(run))
        return None
    return completed(recorded, str(run_config_path(run)))


def completed(cfg: dict, source: str) -> dict:
    """``cfg`` checked against the schema, its missing keys filled with the defaults. Only the
    schema: the cross-key checks concern running the pipeline (data sources, devices), not
    sampling from its models."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from diffguide.pipeline.config_schema import SCHEMA_PATH, describe_config_errors, listed_plugins, load_schema

    load_plugins(listed_plugins(cfg))
    try:
        validate(cfg, str(SCHEMA_PATH), set_default=True)
    except WorkflowError:
        lines = describe_config_errors(cfg, load_schema(SCHEMA_PATH))
        raise UsageError(f"invalid config {source}:\n" + "\n".join(lines)) from None
    return cfg


@functools.cache
def schema_defaults() -> dict:
    """Every key's default (the schema parsed once: pure-Python YAML takes a second)."""
    from snakemake.utils import validate

    from diffguide.pipeline.config_schema import SCHEMA_PATH

    defaults: dict = {}
    validate(defaults, str(SCHEMA_PATH), set_default=True)
    return defaults


def sampling_settings(args, cfg: dict, timesteps: int) -> dict:
    """The config's sampling block with the flags given on top, checked against T."""
    from diffguide.pipeline.config_checks import spacing_problem

    sampling = {key: value for key, value in cfg["sampling"].items() if key not in ("sweep", "num_samples")}
    sampling |= {key: getattr(args, key) for key in SAMPLING_FLAGS if getattr(args, key) is not None}
    problem = spacing_problem("sampling", sampling["steps"], sampling["timestep_spacing"], timesteps)
    if problem:
        raise UsageError(problem.strip().replace("sampling.steps", "--steps (sampling.steps)", 1))
    if sampling["batch_size"] < 1 or not 0 <= sampling["eta"] <= 1:
        raise UsageError(f"--batch-size must be at least 1 and --eta in [0, 1], got {sampling['batch_size']} "
                         f"and {sampling['eta']}")
    return sampling


def guidance_options(parsed: MethodName, cfg: dict, overrides: list[str]) -> dict:
    """The method's guidance options (its registry row's ``options``, as the sampling job gets
    them), from the config or the schema's defaults, with --option KEY=VALUE on top."""
    options = {key: cfg["guidance"][key] for key in parsed.method.option_keys if key in cfg["guidance"]}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in parsed.method.option_keys:
            known = ", ".join(parsed.method.option_keys) or "none"
            raise UsageError(f"--option {item!r}: {parsed.name}'s options are {known} (as KEY=VALUE)")
        options[key] = yaml.safe_load(value)
    return options


def warn_if_saturating(parsed: MethodName, scale: float, sampling: dict, options: dict, diffusion: dict) -> None:
    """Say so, with the flag that fixes it, when the first step amplifies the method's score-form
    shift until the samples saturate (pipeline.config_checks.saturating_start): the schema's old
    default, linspace from t = T - 1, made the README's cg command draw pure noise."""
    from diffguide.pipeline.config_checks import saturating_start

    start = saturating_start(sampling, diffusion) if scale != 0 and parsed.method.shifts_score(options) else None
    if start:
        fix = (f"--timestep-spacing leading ({start.lower_start()})" if start.leading_first is not None
               else "fewer --steps, dividing T, with --timestep-spacing leading")
        log.warning("%s; pass %s, or --option cg_form=mean --sampler ddpm", start.describe([parsed.name]), fix)


def check_combination(sampling: dict, options: dict) -> None:
    """The mean shift (D&N Algorithm 1) needs an ancestral step's mean and variance: say so in
    the command's terms before any model is run (the sampler would say it in the library's)."""
    if options.get("cg_form") == "mean" and sampling["sampler"] != "ddpm":
        raise UsageError(f"cg_form=mean (D&N Algorithm 1's mean shift) needs --sampler ddpm, not "
                         f"{sampling['sampler']}; or use cg_form=score (Algorithm 2, any sampler)")


def parse_classes(text: str | None, class_names: list[str]) -> list[int]:
    """Class indices from comma-separated names (case-insensitive) or indices; None: all."""
    if text is None:
        return list(range(len(class_names)))
    by_name = {name.casefold(): i for i, name in enumerate(class_names)}
    chosen = []
    for token in (part.strip() for part in text.split(",")):
        if token.casefold() in by_name:
            chosen.append(by_name[token.casefold()])
        elif token.isdigit() and int(token) < len(class_names):
            chosen.append(int(token))
        else:
            valid = ", ".join(name if name == str(i) else f"{i} {name}" for i, name in enumerate(class_names))
            raise UsageError(f"unknown class {token!r}; the classes are: {valid} "
                             "(give names, case-insensitive, or indices)")
    if not chosen:
        raise UsageError("--classes is empty; give class names or indices, comma-separated")
    return chosen


# ----------------------------------------------------------------------------- models and metadata

def model_folder(run: Path, network: str, cfg: dict | None) -> Path:
    """Where a run keeps a network's model: its own models/, or, for a network its config reads
    from another run (models_from, as the testbed reads the default run's), that run's, beside it."""
    reuse = (cfg or {}).get("models_from") or {}
    if reuse.get("run") and network in reuse.get("networks", []):
        return run.parent / reuse["run"] / "models"
    return run / "models"


def model_files(parsed: MethodName, scale: float, args, cfg: dict | None = None) -> dict[str, Path]:
    """role -> model file of what the method loads at ``scale`` (registry: eps-model, plus its
    guides unless scale is 0): the run's models/<network>.pt (model_folder), or the one --checkpoint."""
    needed = parsed.models(scale)
    if args.checkpoint is not None:
        extra = {role: net for role, net in needed.items() if role != "eps_model"}
        if extra:
            files = ", ".join(f"models/{net}.pt" for net in extra.values())
            raise UsageError(f"{parsed.name} at scale {scale:g} also needs {', '.join(extra.values())}; pass --run "
                             f"<the run's results folder> (which holds {files}) instead of --checkpoint")
        return {"eps_model": args.checkpoint}
    paths = {role: model_folder(args.run, net, cfg) / f"{net}.pt" for role, net in needed.items()}
    missing = [path for path in paths.values() if not path.is_file()]
    if missing:
        config = " ".join(map(str, args.config)) if args.config else "<the config file of this run>"
        names = ", ".join(path.stem for path in missing)
        raise UsageError(f"{parsed.name} at scale {scale:g} needs {names}, but {', '.join(map(str, missing))} "
                         f"{'does' if len(missing) == 1 else 'do'} not exist: this run did not train "
                         f"{'it' if len(missing) == 1 else 'them'}. Train (from the workflow folder) with: snakemake "
                         f"--cores all --configfile {config} {' '.join(map(str, missing))}")
    return paths


def read_metadata(path: Path, payload: dict, cfg: dict | None) -> dict:
    """The model file's metadata; for a file written before models carried it, the same facts
    from the run's config (--config), else an error saying how to get them."""
    from diffguide.pipeline.stages.train import model_metadata
    from diffguide.registry import training_block

    if payload.get("metadata"):
        return payload["metadata"]
    if cfg is None:
        raise UsageError(f"{path} carries no metadata (schedule, T, data set, class names): it was written by a "
                         "diffguide before model files carried them. Retrain it with the current diffguide ("
                         f"{integrity.restore_command(path)}), or pass --config <the config file(s) of its run>")
    network = path.stem
    row = parse_network(network).network
    return model_metadata(network, arch_config=cfg["networks"][row.arch_key],
                          training=training_block(cfg["training"], network), dataset=cfg["dataset"],
                          diffusion=cfg["diffusion"], seed=cfg["seed"], precision=cfg["precision"], trained_in=None)


def load_models(paths: dict[str, Path], device, cfg: dict | None) -> tuple[dict, dict, dict]:
    """(role -> network, the eps-model's arch, its metadata), checking that every model was
    trained on the same data set and diffusion process (a classifier of another T misguides)."""
    from diffguide.models import kinds

    models, metas, arch = {}, {}, None
    for role, path in paths.items():
        models[role], payload = kinds.load_checkpoint(path, device)
        metas[role] = read_metadata(path, payload, cfg)
        arch = payload["arch"] if role == "eps_model" else arch
    eps = metas["eps_model"]
    for role, meta in metas.items():
        for key, fields in SHARED_FACTS.items():
            theirs, ours = facts(meta, key, fields), facts(eps, key, fields)
            if theirs != ours:
                raise UsageError(f"{paths[role]} was trained with {key} {theirs}, but {paths['eps_model']} with "
                                 f"{ours}: they are not models of one run")
    return models, arch, eps


def facts(source: dict, key: str, fields: tuple[str, ...]) -> dict:
    return {field: source[key].get(field) for field in fields}


def check_config_agrees(cfg: dict | None, meta: dict, path: Path) -> None:
    """A config whose data set or diffusion differs from the model's is another run's: say so (the
    model's own facts are used)."""
    if cfg is None:
        return
    for key, fields in SHARED_FACTS.items():
        ours, theirs = facts(cfg, key, fields), facts(meta, key, fields)
        if ours != theirs:
            log.warning("the config's %s %s differs from %s's %s; sampling with the model's", key, ours, path, theirs)


def check_eps_model(parsed: MethodName, meta: dict, path: Path) -> None:
    """--checkpoint must hold the network the method guides (cfg: the conditional model)."""
    wanted = parse_network(parsed.eps_model).network.name
    if parse_network(meta["network"]).network.name != wanted:
        raise UsageError(f"{path} holds the {meta['network']} network, but {parsed.name} guides the {wanted} one")


# ----------------------------------------------------------------------------- sampling and output

@dataclass
class Plan:
    """What one ``diffguide sample`` call samples with: the loaded models, the eps-model's
    metadata and arch, and the settings resolved from flags, config and metadata."""

    parsed: MethodName
    paths: dict[str, Path]
    models: dict
    arch: dict
    meta: dict
    sampling: dict
    options: dict
    device: object
    seed: int
    precision: str


def plan(args) -> Plan:
    """Check the arguments, load the models, and resolve every setting (flags over --config over
    the schema's defaults; what the models were trained with from their metadata)."""
    import torch  # here, not at the top: `diffguide --help` should not wait for torch

    from diffguide.base.runtime import pick_device

    if args.count < 1 or (args.threads is not None and args.threads < 1):
        raise UsageError(f"--count and --threads must be at least 1, got {args.count} and {args.threads}")
    load_plugins(args.plugin)
    if args.config:
        cfg = read_configs(args.config)
    else:
        cfg = read_run_settings(args.run) if args.run is not None else None
    defaults = cfg or schema_defaults()
    torch.set_num_threads(args.threads or defaults["resources"]["threads"])
    try:
        parsed = parse_method(args.method)
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:  # an unknown method; cuda asked for on a machine without it
        raise UsageError(str(err).replace("set device:", "use --device")) from None
    paths = model_files(parsed, args.scale, args, cfg)
    models, arch, meta = load_models(paths, device, cfg)
    check_config_agrees(cfg, meta, paths["eps_model"])
    if args.checkpoint is not None:
        check_eps_model(parsed, meta, args.checkpoint)
    sampling = sampling_settings(args, defaults, meta["diffusion"]["timesteps"])
    options = guidance_options(parsed, defaults, args.option)
    check_combination(sampling, options)
    warn_if_saturating(parsed, args.scale, sampling, options, meta["diffusion"])
    return Plan(parsed, paths, models, arch, meta, sampling, options, device,
                seed=meta["seed"] if args.seed is None else args.seed,
                precision=args.precision or meta["precision"]["config"])


def conditions(job: Plan, args) -> tuple[np.ndarray, np.ndarray, dict]:
    """(labels, the sampler's y, what the file keeps) as the sampling job makes them, for the
    chosen classes in turn; a method guided towards test images takes them from the run's data/."""
    from diffguide import data
    from diffguide.pipeline.stages.sample import sample_conditions

    class_names = job.meta["dataset"]["class_names"]
    chosen = parse_classes(args.classes, class_names)
    labels = np.array(chosen)[np.arange(args.count) % len(chosen)]
    references = None
    if job.parsed.method.condition == "reference":
        references = args.run / "data" / "test.npz" if args.run is not None else None
        if references is None or not references.is_file():
            raise UsageError(f"{job.parsed.name} is guided towards test images: pass --run <a run's results folder> "
                             f"with data/test.npz ({references} does not exist)")
    labels, y, kept = sample_conditions(job.parsed.name, args.count, len(class_names), labels=labels, seed=job.seed,
                                        references_path=str(references) if references else None,
                                        per_class=job.options.get("sdg_references_per_class"))
    if kept and args.scale != 0:  # as the job: the references' pixels, for the target embeddings E(x_ref)
        job.models["references"] = data.uint8_to_tensor(kept["reference_images"]).to(job.device)
    return labels, y, kept


def sample_command(args) -> None:
    """diffguide sample: resolve, then sample with the sampling job's own code (stages.sample:
    the registry's guided model, the seeded batch loop), and write the npz and the grid."""
    from diffguide.diffusion.schedules import NoiseSchedule
    from diffguide.pipeline.stages.sample import draw, guided_model

    job = plan(args)
    labels, y, kept = conditions(job, args)
    schedule = NoiseSchedule.make(job.meta["diffusion"]["schedule"], job.meta["diffusion"]["timesteps"])
    guided = guided_model(job.parsed.name, args.scale, job.models, schedule, clip_x0=job.sampling["clip_x0"],
                          options=job.options)
    images, _ = draw(guided, y, schedule=schedule, sampling=job.sampling, seed=job.seed, device=job.device,
                     shape=(job.arch["channels"], job.arch["image_size"], job.arch["image_size"]),
                     precision=job.precision, what=f"{job.parsed.name} scale {args.scale:g}")
    settings = {"method": job.parsed.name, "scale": args.scale, "seed": job.seed, "count": args.count,
                "precision": job.precision, "device": str(job.device), "sampling": job.sampling,
                "guidance": job.options, "dataset": job.meta["dataset"], "diffusion": job.meta["diffusion"],
                "models": {role: str(path) for role, path in job.paths.items()}}
    write_outputs(args.out, images, labels, list(job.meta["dataset"]["class_names"]), settings, kept, job.parsed)


def write_outputs(prefix: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str], settings: dict,
                  kept: dict, parsed: MethodName) -> None:
    """<prefix>.npz (the sampling job's keys, plus class names, seed and every setting as JSON)
    and <prefix>.png (the grid)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    npz, png = prefix.with_name(prefix.name + ".npz"), prefix.with_name(prefix.name + ".png")
    sampling = settings["sampling"]
    with atomic_open(npz) as handle:
        np.savez_compressed(handle, images=images, labels=labels, class_names=np.array(class_names),
                            method=parsed.name, scale=settings["scale"], seed=settings["seed"],
                            sampler=sampling["sampler"], steps=sampling["steps"],
                            timestep_spacing=sampling["timestep_spacing"],
                            settings=json.dumps(settings, sort_keys=True), **kept)
    title = f"{parsed.label}: {parsed.method.symbol} = {settings['scale']:g}\n{sampling['sampler']} " \
            f"{sampling['steps']} steps, seed {settings['seed']}"
    plot_titled_grid(images, [class_names[c] for c in labels], png, title)
    print(f"wrote {png} and {npz} ({len(images)} images)")


def mosaic(images: np.ndarray, cols: int, band: int, gap: int) -> np.ndarray:
    """uint8 NHWC images laid out row-major in ``cols`` columns on white, each below a ``band``
    of pixels (room for its title) and followed by ``gap`` pixels."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    sheet = np.full((rows * (band + h + gap), cols * (w + gap), c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = (i // cols) * (band + h + gap) + band, (i % cols) * (w + gap)
        sheet[top:top + h, left:left + w] = image
    return sheet


def plot_titled_grid(images: np.ndarray, titles: list[str], path: Path, title: str) -> None:
    """A near-square grid of uint8 NHWC images, each titled (its class name), drawn as one
    picture with text on it: figures.py's sample grid is rows = every class x columns = scales,
    and an axes per image costs a tenth of a second each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, h, w, _ = images.shape
    cols = math.ceil(math.sqrt(n))
    band, gap = max(3, h * 2 // 5), max(1, w // 8)
    sheet = mosaic(images, cols, band, gap)
    inch = 1.1 / (w + gap)  # each image about an inch wide, whatever its pixels
    head = 0.45  # inches for the figure's title
    width, height = sheet.shape[1] * inch, sheet.shape[0] * inch
    fig = plt.figure(figsize=(max(width, 4.0), height + head))
    ax = fig.add_axes((0.5 - width / max(width, 4.0) / 2, 0, width / max(width, 4.0), height / (height + head)))
    ax.imshow(sheet.squeeze(-1) if sheet.shape[-1] == 1 else sheet, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.axis("off")
    for i, name in enumerate(titles):
        x, y = (i % cols) * (w + gap) + w / 2, (i // cols) * (band + h + gap) + band / 2
        ax.text(x, y, name, ha="center", va="center", fontsize=7)
    fig.suptitle(title, fontsize=7, y=1 - 0.1 / (height + head))
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
