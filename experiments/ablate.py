"""One ablation trial of the eps-models on the default run's budget (docs/ablations.md).

    .venv/bin/python experiments/ablate.py TRIAL [--threads 1]
    .venv/bin/python experiments/ablate.py table      (the finished trials as docs/ablations.md's table)

A trial is the default config (config/config.yaml) with a few keys changed. It retrains only the
eps-models those keys touch (the others come from the ``baseline`` trial), samples the conditional
model at w in {0, 0.5, 1, 2} and the unconditional one unguided (the default run's sampler and
500 samples), and evaluates them with the stages the pipeline uses, against ONE shared
evaluation classifier and test split (results/ablations/shared), so every trial's FID is on the
same features. It also writes two diagnostics of why a model is better or worse: its eps test
loss per band of t (with the label and with the null label), and the norms of the class and
timestep embeddings the UNet adds together. Results: results/ablations/<trial>/summary.json and
metrics.csv. Trials run one process each; two at a time fill this machine's two cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from diffguide import data
from diffguide.base.runtime import setup_logging
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.findings.report import with_interval
from diffguide.models import kinds
from diffguide.pipeline.config_schema import SCHEMA_PATH
from diffguide.pipeline.stages.data import prepare_data
from diffguide.pipeline.stages.evaluate import evaluate, reference_statistics
from diffguide.pipeline.stages.sample import sample
from diffguide.pipeline.stages.train import config_sections, train_network
from diffguide.registry import parse_method

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "results/ablations"
# --quick: every step count and sample count cut, to check the driver end to end in a minute.
QUICK = {"training.unconditional.steps": 2, "training.conditional.steps": 2, "training.eval_classifier.steps": 2,
         "sampling.num_samples": 20, "sampling.batch_size": 20}
CFG_SCALES = [0.0, 0.5, 1.0, 2.0]

# name -> (changed keys, eps-models retrained). Each changes one thing from the baseline.
TRIALS = {
    "baseline": ({}, ["conditional", "unconditional"]),
    # The default has class_embed_std 0.15 since issue 24; 1.0 is diffusers' N(0, 1), the old default.
    "class_embed_std_1": ({"networks.unet.class_embed_std": 1.0}, ["conditional"]),
    "class_embed_std_0.15": ({"networks.unet.class_embed_std": 0.15}, ["conditional"]),
    "min_snr_5": ({"training.unconditional.min_snr_gamma": 5.0, "training.conditional.min_snr_gamma": 5.0},
                  ["conditional", "unconditional"]),
    "p_uncond_0.1": ({"training.conditional.p_uncond": 0.1}, ["conditional"]),
    "lr_0.001": ({"training.unconditional.lr": 0.001, "training.conditional.lr": 0.001},
                 ["unconditional", "conditional"]),
}


def default_config() -> dict:
    from snakemake.utils import validate  # fills in the schema's defaults, as the Snakefile does

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate(cfg, str(SCHEMA_PATH))
    cfg["training"]["conditional"].pop("p_uncond_sweep")  # names other models (common.smk drops it too)
    return cfg


def with_changes(cfg: dict, changes: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = cfg
        for key in path:
            node = node[key]
        node[last] = value
    return cfg


def train(cfg: dict, network: str, train_path: str, test_path: str, output: str, csv_log: str, threads: int) -> None:
    """The pipeline's training stage with the config sections it reads."""
    train_network(network, **config_sections(cfg, network), train_path=train_path, test_path=test_path, output=output,
                  csv_log=csv_log, threads=threads)


def sample_with(cfg: dict, method: str, scale: float, model_files: dict, output: str, threads: int) -> None:
    """The pipeline's sampling stage, with the models the method's registry row asks for."""
    roles = parse_method(method).models(scale)
    sample(method, scale, model_paths={role: model_files[network] for role, network in roles.items()},
           sampling=cfg["sampling"], guidance={k: cfg["guidance"][k] for k in parse_method(method).method.option_keys},
           diffusion=cfg["diffusion"], dataset_name=cfg["dataset"]["name"], seed=cfg["seed"],
           precision=cfg["precision"], device=cfg["device"], output=output, threads=threads)


def shared_inputs(cfg: dict, threads: int) -> dict:
    """Prepared splits, the evaluation classifier and its reference features, made once."""
    shared = ROOT / "shared"
    paths = {split: shared / f"data/{split}.npz" for split in ("train", "test")}
    paths |= {"eval_classifier": shared / "eval_classifier.pt", "reference": shared / "reference.npz"}
    for split in ("train", "test"):
        if not paths[split].exists():
            paths[split].parent.mkdir(parents=True, exist_ok=True)
            prepare_data(cfg["dataset"], split, str(paths[split]))
    if not paths["eval_classifier"].exists():
        train(cfg, "eval_classifier", str(paths["train"]), str(paths["test"]), str(paths["eval_classifier"]),
              str(shared / "eval_classifier.csv"), threads)
    if not paths["reference"].exists():
        reference_statistics(str(paths["eval_classifier"]), str(paths["test"]), str(paths["reference"]), "cpu")
    return {key: str(value) for key, value in paths.items()}


@torch.no_grad()
def per_image_losses(model_path: str, test_path: str, schedule: NoiseSchedule, label: bool, per_band: int = 500,
                     bands: int = 5, seed: int = 1) -> np.ndarray:
    """[bands, per_band] eps MSE of each test image, on draws (x_0, t, noise) that depend only on
    the seed, so two models' losses pair image by image (with the label, or the null label)."""
    model, _ = kinds.load_checkpoint(model_path, "cpu")
    images, labels = data.load_prepared(test_path).to_tensor()
    g = torch.Generator().manual_seed(seed)
    edges = np.linspace(0, schedule.timesteps, bands + 1).astype(int)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        pick = torch.randperm(len(labels), generator=g)[:per_band]
        t = torch.randint(int(lo), int(hi), (per_band,), generator=g)
        noise = torch.randn(images[pick].shape, generator=g)
        x_t = schedule.q_sample(images[pick], t, noise).float()
        eps = model(x_t, t, labels[pick] if label else None)
        out.append((eps - noise).pow(2).flatten(1).mean(1).numpy())
    return np.stack(out)


def loss_by_t(model_path: str, test_path: str, schedule: NoiseSchedule, conditional: bool, per_band: int = 1000,
              bands: int = 5) -> dict:
    """Mean eps MSE on test images per band of t, on the same seeded draws for every trial: with
    the label and, for the conditional model, with the null label too."""
    edges = np.linspace(0, schedule.timesteps, bands + 1).astype(int)
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
    out = {}
    for mode, label in [("label", conditional)] + ([("null", False)] if conditional else []):
        means = per_image_losses(model_path, test_path, schedule, label, per_band, bands, seed=0).mean(1)
        out |= {f"{name} {mode}": float(m) for name, m in zip(names, means)}
    return out


def paired_loss_differences(first: np.ndarray, second: np.ndarray) -> list[str]:
    """Per band: mean of (first - second) over the paired images, with mean +- 1.96 SE."""
    diff = first - second
    mean, se = diff.mean(1), diff.std(1, ddof=1) / np.sqrt(diff.shape[1])
    return [f"{m:+.5f} [{m - 1.96 * e:+.5f}, {m + 1.96 * e:+.5f}]" for m, e in zip(mean, se)]


def compare(pairs: list[tuple[str, str]], threads: int) -> None:
    """Print paired test-loss differences between diagnosed models, e.g.
    ``diagnose250/baseline/conditional.pt:label`` against ``diagnose250/class_embed_std_0.15/conditional.pt:label``."""
    torch.set_num_threads(threads)
    cfg = default_config()
    schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
    test = str(ROOT / "shared/data/test.npz")
    cache: dict[str, np.ndarray] = {}

    def losses(spec: str) -> np.ndarray:
        if spec not in cache:
            path, mode = spec.split(":")
            cache[spec] = per_image_losses(str(ROOT / path), test, schedule, mode == "label")
        return cache[spec]

    for first, second in pairs:
        print(f"{first} - {second}: " + " | ".join(paired_loss_differences(losses(first), losses(second))))


@torch.no_grad()
def embedding_norms(model_path: str, timesteps: int) -> dict:
    """Mean norm of the timestep embedding over t and of the class embedding rows, as the UNet
    adds them (diffusers UNet2DModel: emb = time_embedding(t) + class_embedding(y))."""
    model, _ = kinds.load_checkpoint(model_path, "cpu")
    unet = model.unet
    t = torch.arange(0, timesteps, 10)
    time_emb = unet.time_embedding(unet.time_proj(t).float())
    norms = {"time_embedding": float(time_emb.norm(dim=1).mean())}
    if unet.class_embedding is not None:
        norms["class_embedding"] = float(unet.class_embedding.weight.norm(dim=1).mean())
    return norms


def diagnose(name: str, steps: int, threads: int, only: list[str] | None = None) -> dict:
    """The trial's eps-models trained for only ``steps`` steps (warm-up and EMA as configured),
    then their eps test loss per band of t and their embedding norms: no sampling, no evaluation
    classifier, so a machine too slow for the full budget can still compare trials early on."""
    changes, retrained = TRIALS[name]
    retrained = [network for network in retrained if only is None or network in only]
    cfg = with_changes(default_config(), changes | {f"training.{n}.steps": steps for n in retrained})
    shared, trial = ROOT / "shared", ROOT / f"diagnose{steps}" / name
    trial.mkdir(parents=True, exist_ok=True)
    splits = {split: shared / f"data/{split}.npz" for split in ("train", "test")}
    for split, path in splits.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            prepare_data(cfg["dataset"], split, str(path))
    schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
    summary = {"trial": name, "changes": changes, "steps": steps, "threads": threads, "train_seconds": {},
               "loss_by_t": {}, "embedding_norms": {}}
    for network in retrained:
        model = trial / f"{network}.pt"
        begin = time.time()
        if not model.exists():
            train(cfg, network, str(splits["train"]), str(splits["test"]), str(model), str(trial / f"{network}.csv"),
                  threads)
        summary["train_seconds"][network] = round(time.time() - begin)
        summary["loss_by_t"][network] = loss_by_t(str(model), str(splits["test"]), schedule, network == "conditional")
        summary["embedding_norms"][network] = embedding_norms(str(model), schedule.timesteps)
    (trial / f"summary_{'_'.join(retrained)}.json").write_text(json.dumps(summary, indent=1))
    return summary


def run_trial(name: str, threads: int, quick: bool = False, only: list[str] | None = None) -> dict:
    changes, retrained = TRIALS[name]
    retrained = [network for network in retrained if only is None or network in only]
    base = with_changes(default_config(), QUICK if quick else {})
    cfg = with_changes(base, changes)
    shared = shared_inputs(base, threads)
    trial = ROOT / name
    (trial / "samples").mkdir(parents=True, exist_ok=True)
    started = time.time()
    models, train_seconds = {}, {}
    for network in retrained + [n for n in ("unconditional", "conditional") if n not in retrained]:
        source = trial if network in retrained else ROOT / "baseline"
        models[network] = str(source / f"{network}.pt")
        if network in retrained and not Path(models[network]).exists():
            begin = time.time()
            train(cfg, network, shared["train"], shared["test"], models[network], str(trial / f"{network}.csv"),
                  threads)
            train_seconds[network] = round(time.time() - begin)
    rows = []
    jobs = ([("cfg", w) for w in CFG_SCALES] if "conditional" in retrained else []) + \
        ([("cg", 0.0)] if "unconditional" in retrained else [])
    for method, scale in jobs:
        path = trial / "samples" / f"{method}_{scale:g}.npz"
        if not path.exists():
            sample_with(cfg, method, scale, models, str(path), threads)
        row_path = path.with_suffix(".csv")
        evaluate(str(path), shared["reference"], shared["eval_classifier"], str(row_path), "cpu")
        rows.append(pd.read_csv(row_path))
    metrics = pd.concat(rows)
    metrics.to_csv(trial / ("metrics.csv" if only is None else f"metrics_{'_'.join(only)}.csv"), index=False)
    schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
    summary = {"trial": name, "changes": changes, "retrained": retrained, "train_seconds": train_seconds,
               "wall_seconds": round(time.time() - started), "threads": threads,
               "loss_by_t": {net: loss_by_t(models[net], shared["test"], schedule, net == "conditional")
                             for net in retrained},
               "embedding_norms": {net: embedding_norms(models[net], schedule.timesteps) for net in retrained}}
    suffix = "" if only is None else "_" + "_".join(only)
    (trial / f"summary{suffix}.json").write_text(json.dumps(summary, indent=1))
    return summary


def trial_row(name: str, metrics: pd.DataFrame, summary: dict) -> str:
    """One Markdown row: what changed, the training seconds, and each retrained eps-model's
    headline numbers with their 95% intervals (conditional: unguided FID, best CFG FID and the
    accuracy there; unconditional: unguided FID). A model the trial did not retrain shows '-'."""
    changes = ", ".join(f"`{key}: {value}`" for key, value in summary["changes"].items()) or "none (the default)"
    seconds = ", ".join(f"{net} {sec} s" for net, sec in summary["train_seconds"].items()) or "reused"
    cfg, cg = metrics[metrics.method == "cfg"], metrics[metrics.method == "cg"]
    conditional, unconditional = ["-", "-", "-"], "-"
    if len(cfg):
        w = cfg.scale[cfg.fid_classifier.idxmin()]
        fid, accuracy = (dict(zip(cfg.scale, with_interval(cfg, column, digits)))
                         for column, digits in (("fid_classifier", 2), ("accuracy_classifier", 3)))
        conditional = [fid[0], f"{fid[w]} (w = {w:g})", accuracy[w]]
    if len(cg):
        unconditional = with_interval(cg[cg.scale == 0], "fid_classifier", 2)[0]
    return " | ".join(["", name, changes, seconds, *conditional, unconditional, ""]).strip()


def trial_table(root: Path) -> str:
    """The Markdown table of every finished trial under ``root`` (docs/ablations.md), baseline first."""
    header = ("| trial | change from the default | training (one thread) | conditional, unguided FID | "
              "best CFG FID (w) | accuracy there | unconditional, unguided FID |\n|---|---|---|---|---|---|---|")
    names = sorted((p.parent.name for p in root.glob("*/summary.json")), key=lambda n: (n != "baseline", n))
    rows = [trial_row(n, pd.read_csv(root / n / "metrics.csv"), json.loads((root / n / "summary.json").read_text()))
            for n in names]
    return "\n".join([header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trial", choices=sorted(TRIALS) + ["compare", "table"],
                        help="a trial to run; compare: paired test losses; table: the Markdown table of finished trials")
    parser.add_argument("pairs", nargs="*", help="compare: FIRST=SECOND model specs, path under results/ablations:label|null")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--networks", nargs="+", choices=["unconditional", "conditional"],
                        help="retrain and sample only these of the trial's eps-models (e.g. to split a trial over two processes)")
    parser.add_argument("--diagnose-steps", type=int,
                        help="train only this many steps and report test loss by t and embedding norms (no sampling)")
    parser.add_argument("--quick", action="store_true", help="tiny steps and samples, into results/ablations_quick")
    args = parser.parse_args()
    if args.quick:
        global ROOT
        ROOT = REPO / "results/ablations_quick"
    if args.trial == "table":
        print(trial_table(ROOT))
        return
    ROOT.mkdir(parents=True, exist_ok=True)
    setup_logging(str(ROOT / f"{args.trial}{'_' + '_'.join(args.networks) if args.networks else ''}.log"))
    if args.trial == "compare":
        compare([tuple(pair.split("=")) for pair in args.pairs], args.threads)
        return
    if args.diagnose_steps:
        summary = diagnose(args.trial, args.diagnose_steps, args.threads, args.networks)
    else:
        summary = run_trial(args.trial, args.threads, args.quick, args.networks)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
