"""Training and sampling speed of the config's networks beside the machine's matmul peak (`make bench`).

    .venv/bin/python benchmarks/performance.py [--config config/config.yaml] [--threads 1[,2]] [--quick]

Prints Markdown: a header naming the machine, then three tables, each in fp32 and bf16 side by side
(bf16 as the pipeline runs it: torch.autocast, fp32 master weights):

1. matmul peak: square NxN matmuls (N = 1024), GFLOP/s = 2 N^3 / seconds;
2. training: images/s of one training step of each network at the config's batch size, through
   the pipeline's own code (stages.train.architecture builds the network, stages.train.loss_function the loss,
   training._optimizer_step does backward, clipping, AdamW, LR schedule and EMA), and the
   achieved GFLOP/s = the step's FLOPs (counted by torch.utils.flop_counter.FlopCounterMode:
   matmuls, convolutions and attention of forward and backward) / its median time, with that
   as a fraction of the same run's matmul peak;
3. sampling: images/s of each guidance method with the config's sampler (stages.sample.guided_model
   wraps untrained networks exactly as a sampling job wraps trained ones), and classifier-free
   guidance's one forward over 2B images beside two forwards over B.

Every figure is a median over repetitions after a warm-up, with the min-max range beside it.
Each measurement has a time budget (--budget seconds): repetitions drop to --min-reps and then
the batch halves (for sampling first the number of timed sampler steps, then the batch) until it
fits, and the table says when a figure was taken at a smaller size than the config's. Sampling
images/s is always per full trajectory of sampling.steps steps: the time of k timed steps is
scaled by steps / k, since every step costs the same. Progress goes to stderr, tables to stdout.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from diffguide import data
from diffguide.base import runtime
from diffguide.base.runtime import autocast, pick_device
from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import SAMPLERS
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.wrappers import NULL_LABEL, ClassifierFreeGuidance
from diffguide.models import kinds
from diffguide.pipeline.config_schema import SCHEMA_PATH
from diffguide.pipeline.stages import sample as sample_stage
from diffguide.pipeline.stages import train as train_stage
from diffguide.registry import parse_method, parse_network, training_block
from diffguide.training import loop as training

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH
PRECISIONS = ("fp32", "bf16")
TRAINED = ("unconditional", "conditional", "noisy_classifier", "eval_classifier")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# FLOP counting

def _cpu_flash_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter knows the CUDA attention kernels but not the CPU one that
# F.scaled_dot_product_attention dispatches to here; count it with the same formulas.
_aten = torch.ops.aten
EXTRA_FLOP_FORMULAS = {}
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    EXTRA_FLOP_FORMULAS[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_attention
    EXTRA_FLOP_FORMULAS[_aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_flash_attention_backward


class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker, so every FLOP is counted under 'Global' only.
    The tracker's backward hooks break torch.autograd.grad on a leaf input, which is exactly how
    classifier guidance takes grad log p(y | x_t) ("A leaf node was passed to
    _will_engine_execute_node"); the per-module breakdown they provide is not needed here."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of ``run()``: FlopCounterMode's formulas (matmul, convolution, attention, forward and
    backward), plus the CPU attention kernel's (EXTRA_FLOP_FORMULAS)."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _GlobalOnly()
    with counter:
        run()
    return counter.get_total_flops()


# ----------------------------------------------------------------------------------------------
# Timing

@dataclass
class Timing:
    """``seconds`` of each timed repetition of one unit of ``work`` (images, image-steps, FLOPs)."""
    key: object
    work: float
    seconds: list[float] = field(default_factory=list)

    def rates(self, per_unit: float = 1.0) -> list[float]:
        return [self.work * per_unit / s for s in self.seconds]


@dataclass
class Budget:
    seconds: float
    reps: int
    min_reps: int

    def scaled(self, factor: float) -> "Budget":
        return Budget(self.seconds * factor, self.reps, self.min_reps)


def precision_budget(budget: Budget, precision: str, marked: str) -> Budget:
    """Of a pair of fp32 / bf16 measurements, the precision `make run` uses gets 3/4 of their two
    budgets (it is the figure that describes the pipeline, at the config's batch where possible),
    the other 1/4 (where it is slow, its per-image cost is what matters, not its batch)."""
    if marked not in PRECISIONS:
        return budget
    return budget.scaled(1.5 if precision == marked else 0.5)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(run, key, device) -> float:
    _sync(device)
    start = time.perf_counter()
    run(key)
    _sync(device)
    return time.perf_counter() - start


def measure(run: Callable[[object], None], candidates: list[tuple[object, float]], budget: Budget,
            device: torch.device) -> Timing:
    """Time ``run(key)`` at the first (key, work) of ``candidates`` (largest first) whose warm-up
    plus ``budget.min_reps`` repetitions fit in ``budget.seconds``. The cost per unit of work is
    estimated first from the last (smallest) candidate, run twice (warm-up, then timed); it
    overestimates (small batches use the machine worse), so each warm-up at a chosen size refines
    it and the choice moves to a larger candidate while the refined estimate allows one."""
    def first_fitting(per_work: float) -> int:
        return next((i for i, (_, work) in enumerate(candidates)
                     if (1 + budget.min_reps) * per_work * work <= budget.seconds), len(candidates) - 1)

    last = len(candidates) - 1
    _time_once(run, candidates[last][0], device)
    warm = _time_once(run, candidates[last][0], device)
    index = first_fitting(warm / candidates[last][1])
    if index < last:
        while True:
            warm = _time_once(run, candidates[index][0], device)
            larger = first_fitting(warm / candidates[index][1])
            if larger >= index:
                break
            index = larger
    key, work = candidates[index]
    reps = max(budget.min_reps, min(budget.reps, int(budget.seconds / max(warm, 1e-9)) - 1))
    return Timing(key, work, [_time_once(run, key, device) for _ in range(reps)])


def halvings(n: int) -> list[int]:
    """n, n/2, n/4, ... 1 (integer division)."""
    out = [n]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


# ----------------------------------------------------------------------------------------------
# Config and machine

def load_config(path: str) -> dict:
    """The config as the Snakefile sees it: the file plus the schema's defaults."""
    from snakemake.utils import validate

    cfg = yaml.safe_load(Path(path).read_text())
    validate(cfg, str(SCHEMA))
    return cfg


def cpu_info() -> dict:
    """The first processor's model name, family, model and flags from /proc/cpuinfo."""
    info = {"model name": platform.processor() or platform.machine()}
    found = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = (part.strip() for part in line.partition(":"))
            if name in ("model name", "cpu family", "model", "flags") and name not in found:
                info[name] = value
                found.add(name)
    except OSError:
        pass
    return info


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" (working tree modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pipeline_precision(cfg: dict, device: torch.device) -> str:
    """The precision `make run` trains and samples in on this device."""
    resolve = getattr(runtime, "resolve_precision", None)
    return resolve(cfg["precision"], device) if resolve else cfg["precision"]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs on native instructions (oneDNN's check on a CPU: AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def header(args, cfg: dict, device: torch.device, threads: list[int]) -> str:
    cpu = cpu_info()
    flags = set(cpu.get("flags", "").split())
    isa = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ISA_FLAGS)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "# diffguide performance benchmark",
        "",
        f"- CPU: {cpu['model name']} (family {cpu.get('cpu family', '?')}, model {cpu.get('model', '?')}), "
        f"{os.cpu_count()} logical cores, {affinity} usable by this process",
        f"- ISA: {isa}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"native bf16: {'yes' if native_bf16(device) else 'no'}",
    ]
    if device.type == "cuda":
        lines.append(f"- device: {device} ({torch.cuda.get_device_name(device)})")
    lines += [
        f"- torch {torch.__version__}, Python {platform.python_version()}; torch threads used: "
        f"{', '.join(map(str, threads))} (the config's resources.threads = {cfg['resources']['threads']} per job)",
        f"- config {args.config} (precision: {cfg['precision']} -> `make run` uses "
        f"{pipeline_precision(cfg, device)} here), commit {git_commit()}",
        f"- mode: {'quick' if args.quick else 'full'}; each figure: median [min-max] of {args.min_reps} to "
        f"{args.reps} timed repetitions after a warm-up, within a time budget per measurement: "
        f"{args.budget:g} s for a matmul, {1.5 * args.budget:g} s for a training or sampling figure in the "
        f"precision `make run` uses, {0.5 * args.budget:g} s in the other",
        f"- load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Formatting

def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def spread(rates: list[float]) -> str:
    return f"{fmt(statistics.median(rates))} [{fmt(min(rates))}-{fmt(max(rates))}]"


def table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# 1. Matmul peak

def matmul_peak(size: int, precision: str, device: torch.device, budget: Budget) -> Timing:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    sizes = [n for n in (size, size // 2, size // 4) if n >= 64]
    mats = {n: (torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype))
            for n in sizes}
    return measure(lambda n: torch.mm(*mats[n]), [(n, 2.0 * n**3) for n in sizes], budget, device)


# ----------------------------------------------------------------------------------------------
# 2. Training

def architecture(cfg: dict, network: str, info) -> tuple[str, dict]:
    """(kind, arch) of a network as the training stage builds it."""
    row = parse_network(network).network
    return row.kind, train_stage.architecture(row, cfg["networks"][row.arch_key], cfg["dataset"]["image_size"], info)


def train_settings(cfg: dict, network: str, precision: str) -> training.TrainSettings:
    """TrainSettings as stages.train.train_network builds them (loss options such as p_uncond left out)."""
    names = {f.name for f in dataclasses.fields(training.TrainSettings)}
    t = {k: v for k, v in cfg["training"][network].items() if k in names and k != "precision"}
    return training.TrainSettings(precision=precision, **t)


class TrainingStep:
    """One step of training.train's loop for ``network``: draw a batch from the (synthetic) data
    set, the loss under autocast, then backward, gradient clipping, AdamW, LR schedule and EMA."""

    def __init__(self, cfg: dict, network: str, precision: str, device: torch.device):
        info = data.DATASETS[cfg["dataset"]["name"]]
        kind, arch = architecture(cfg, network, info)
        self.model = kinds.build_network(kind, arch).to(device).train()
        self.settings = s = train_settings(cfg, network, precision)
        self.ema = AveragedModel(self.model, avg_fn=training.ema_average(s.ema_decay)) if s.ema_decay else None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: training.lr_factor(s, step))
        schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
        row = parse_network(network).network
        self.loss_fn = train_stage.loss_function(row, training_block(cfg["training"], network), schedule)
        size = cfg["dataset"]["image_size"]
        generator = torch.Generator().manual_seed(0)
        # Images in [-1, 1] as PreparedData.to_tensor gives them; the speed does not depend on them.
        self.images = torch.rand(1024, info.channels, size, size, generator=generator) * 2 - 1
        self.labels = torch.randint(0, info.num_classes, (1024,), generator=generator)
        self.precision, self.device = precision, device

    def __call__(self, batch: int) -> None:
        index = torch.randint(0, len(self.images), (batch,))
        x0, y = self.images[index].to(self.device), self.labels[index].to(self.device)
        with autocast(self.device, self.precision):
            loss = self.loss_fn(self.model, x0, y)
        training._optimizer_step(self.model, loss, self.optimizer, self.scheduler, self.ema, self.settings.grad_clip)


def training_rows(cfg: dict, device: torch.device, budget: Budget, peaks: dict, threads: int,
                  marked: str) -> list[list[str]]:
    rows = []
    for network in TRAINED:
        batch = cfg["training"][network]["batch_size"]
        flops_per_image = None
        cells = []
        for precision in PRECISIONS:
            log(f"  training {network} {precision}")
            step = TrainingStep(cfg, network, precision, device)
            if flops_per_image is None:
                flops_per_image = count_flops(lambda: step(4)) / 4
            timing = measure(step, [(b, b) for b in halvings(batch)], precision_budget(budget, precision, marked),
                             device)
            images = timing.rates()
            gflops = [r * flops_per_image / 1e9 for r in images]
            peak = statistics.median(peaks[(threads, precision)].rates()) / 1e9
            shown = str(timing.key) + ("" if timing.key == batch else "*")
            name = precision + (" (make run)" if precision == marked else "")
            cells += [shown, spread(images), spread(gflops), f"{100 * statistics.median(gflops) / peak:.0f}%"]
            log(f"    {name}: batch {shown}, {spread(images)} img/s, {len(timing.seconds)} reps")
        rows.append([network, str(threads), f"{flops_per_image / 1e9:.3f}", *cells])
    return rows


# ----------------------------------------------------------------------------------------------
# 3. Sampling

def with_two_forwards(guided: nn.Module) -> nn.Module:
    """``guided`` with every ClassifierFreeGuidance inside it switched to two forwards of B."""
    if isinstance(guided, ClassifierFreeGuidance):
        return ClassifierFreeGuidance(guided.model, guided.w, batched=False)
    guided = copy.copy(guided)
    guided._modules = dict(guided._modules)
    for name, child in guided._modules.items():
        if child is not None:
            guided._modules[name] = with_two_forwards(child)
    return guided


def first_guided_scale(cfg: dict, method: str) -> float:
    """The first nonzero scale of the method's sweep (guidance on: the cost does not depend on it)."""
    scales = [s for s in cfg["guidance"].get(f"{method}_scales", []) if s != 0]
    return float(scales[0]) if scales else 1.0


def sample_kwargs(cfg: dict) -> dict:
    """The sampler's own settings stages.sample.sample passes (those its signature takes)."""
    s = cfg["sampling"]
    wanted = {"eta": s.get("eta"), "variance": s.get("variance")}
    accepted = inspect.signature(SAMPLERS[s["sampler"]]).parameters
    return {k: v for k, v in wanted.items() if k in accepted and v is not None}


class SamplingRun:
    """The sampler as stages.sample.sample calls it, for B images and k sampler steps (the respaced
    sequence of k steps); the guided model and hook (guidance.Guided) are built by
    stages.sample.guided_model from a config whose sampling.steps is k."""

    def __init__(self, cfg: dict, method: str, scale: float, paths: dict, device: torch.device, precision: str,
                 two_forwards: bool = False):
        self.cfg, self.method, self.scale, self.paths = cfg, method, scale, paths
        self.device, self.precision, self.two_forwards = device, precision, two_forwards
        self.models: dict[int, tuple] = {}
        self.num_classes = data.DATASETS[cfg["dataset"]["name"]].num_classes

    def model(self, steps: int):
        if steps not in self.models:
            cfg = copy.deepcopy(self.cfg)
            cfg["sampling"]["steps"] = steps
            schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
            roles = parse_method(self.method).models(self.scale)
            models, arch = sample_stage.load_models({role: self.paths[net] for role, net in roles.items()}, self.device)
            options = {key: cfg["guidance"][key] for key in parse_method(self.method).method.option_keys}
            guided = sample_stage.guided_model(self.method, self.scale, models, schedule,
                                               clip_x0=cfg["sampling"]["clip_x0"], options=options)
            if self.two_forwards:
                guided = guided._replace(model=with_two_forwards(guided.model))
            self.models[steps] = (guided, schedule, arch, cfg)
        return self.models[steps]

    def __call__(self, key: tuple[int, int]) -> None:
        batch, steps = key
        guided, schedule, arch, cfg = self.model(steps)
        shape = (arch["channels"], arch["image_size"], arch["image_size"])
        labels = torch.arange(batch) % self.num_classes
        timesteps = respaced_timesteps(schedule.timesteps, steps, cfg["sampling"].get("timestep_spacing", "linspace"))
        noise = PerSampleNoise(cfg["seed"], range(batch))
        with autocast(self.device, self.precision):
            SAMPLERS[cfg["sampling"]["sampler"]](guided.model, noise.initial(shape, device=self.device), timesteps,
                                                 schedule=schedule, labels=labels, noise=noise, cond_fn=guided.cond_fn,
                                                 progress=False, **sample_kwargs(cfg))

    def flops_per_image_step(self) -> float:
        """FLOPs of one guided-model call per image (fp32; bf16 runs the same operations); the mean
        form's hook (a classifier gradient) is not counted."""
        guided, schedule, arch, _ = self.model(self.cfg["sampling"]["steps"])
        x = torch.randn(2, arch["channels"], arch["image_size"], arch["image_size"], device=self.device)
        t = torch.full((2,), schedule.timesteps // 2, device=self.device, dtype=torch.long)
        y = torch.arange(2, device=self.device) % self.num_classes
        return count_flops(lambda: guided.model(x, t, y)) / 2


def save_untrained(cfg: dict, folder: Path) -> dict:
    """Checkpoints of freshly initialised networks, for stages.sample.load_models to load."""
    info = data.DATASETS[cfg["dataset"]["name"]]
    paths = {}
    for network in ("unconditional", "conditional", "noisy_classifier"):
        kind, arch = architecture(cfg, network, info)
        paths[network] = str(folder / f"{network}.pt")
        kinds.save_checkpoint(paths[network], kind, arch, kinds.build_network(kind, arch))
    return paths


def check_two_forwards(cfg: dict, paths: dict, device: torch.device) -> float:
    """Largest |difference| between one batched CFG forward and two separate ones (fp32)."""
    one, two = (SamplingRun(cfg, "cfg", first_guided_scale(cfg, "cfg"), paths, device, "fp32", flag).model(
        cfg["sampling"]["steps"]) for flag in (False, True))
    arch = one[2]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, arch["channels"], arch["image_size"], arch["image_size"], generator=g).to(device)
    t = torch.tensor([999, 600, 300, 10], device=device).clamp(max=one[1].timesteps - 1)
    y = torch.tensor([0, 3, NULL_LABEL, 9], device=device)
    with torch.no_grad():
        return (one[0].model(x, t, y) - two[0].model(x, t, y)).abs().max().item()


SAMPLING_CASES = (  # (row label, method, two forwards)
    ("cfg: one forward of 2B", "cfg", False),
    ("cfg: two forwards of B", "cfg", True),
    ("cg", "cg", False),
    ("cond_cg", "cond_cg", False),
)


def sampling_rows(cfg: dict, paths: dict, device: torch.device, budget: Budget, peaks: dict, threads: int,
                  max_batch: int, marked: str) -> list[list[str]]:
    steps = cfg["sampling"]["steps"]
    step_choices = [k for k in dict.fromkeys([steps, *halvings(steps)]) if k >= min(2, steps)]
    candidates = [((b, k), b * k) for b in halvings(max_batch) for k in step_choices]
    rows = []
    for label, method, two in SAMPLING_CASES:
        scale = first_guided_scale(cfg, method)
        flops = None
        cells = []
        for precision in PRECISIONS:
            log(f"  sampling {label} {precision}")
            run = SamplingRun(cfg, method, scale, paths, device, precision, two)
            if flops is None:
                flops = run.flops_per_image_step()
            timing = measure(run, candidates, precision_budget(budget, precision, marked), device)
            b, k = timing.key
            image_steps = timing.rates()
            images = [r / steps for r in image_steps]  # per full trajectory of `steps` steps
            gflops = [r * flops / 1e9 for r in image_steps]
            peak = statistics.median(peaks[(threads, precision)].rates()) / 1e9
            shown = f"{b}x{k}" + ("" if (b, k) == (max_batch, steps) else "*")
            cells += [shown, spread(images), spread(gflops), f"{100 * statistics.median(gflops) / peak:.0f}%"]
            log(f"    {precision}: {shown}, {spread(images)} img/s, {len(timing.seconds)} reps")
        symbol = runtime_symbol(method)
        rows.append([label, f"{symbol} = {scale:g}", str(threads), f"{flops / 1e9:.3f}", *cells])
    return rows


def runtime_symbol(method: str) -> str:
    from diffguide.registry import method_symbol

    return method_symbol(method)


# ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--threads", default=None,
                        help="torch threads, one count or a comma list (each repeats every table); "
                             "default: the config's resources.threads, as each pipeline job uses")
    parser.add_argument("--device", default=None, help="default: the config's device")
    parser.add_argument("--quick", action="store_true", help="a short run that checks everything works")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per measurement (default 10; --quick: 1.5)")
    parser.add_argument("--reps", type=int, default=None, help="most timed repetitions (default 5; --quick: 3)")
    parser.add_argument("--min-reps", type=int, default=None, help="fewest timed repetitions (default 3; --quick: 2)")
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--sample-batch", type=int, default=None,
                        help="largest sampling batch (default: the config's sampling.batch_size)")
    args = parser.parse_args()
    args.budget = args.budget or (1.5 if args.quick else 10.0)
    args.reps = args.reps or (3 if args.quick else 5)
    args.min_reps = args.min_reps or (2 if args.quick else 3)
    budget = Budget(args.budget, args.reps, args.min_reps)

    start = time.perf_counter()
    cfg = load_config(args.config)
    device = pick_device(args.device or cfg["device"])
    threads = [int(n) for n in str(args.threads or cfg["resources"]["threads"]).split(",")]
    marked = pipeline_precision(cfg, device)
    max_batch = args.sample_batch or cfg["sampling"]["batch_size"]
    torch.manual_seed(0)
    print(header(args, cfg, device, threads), flush=True)

    peaks, peak_rows, train_rows, sample_rows = {}, [], [], []
    with tempfile.TemporaryDirectory() as folder:
        paths = save_untrained(cfg, Path(folder))
        difference = check_two_forwards(cfg, paths, device)
        for n in threads:
            torch.set_num_threads(n)
            log(f"threads {n}: matmul peak")
            cells = []
            for precision in PRECISIONS:
                peaks[(n, precision)] = timing = matmul_peak(args.matmul_size, precision, device, budget)
                size = f"{timing.key}" + ("" if timing.key == args.matmul_size else "*")
                cells += [size, spread([r / 1e9 for r in timing.rates()])]
            peak_rows.append([str(n), *cells])
            train_rows += training_rows(cfg, device, budget, peaks, n, marked)
            sample_rows += sampling_rows(cfg, paths, device, budget, peaks, n, max_batch, marked)

    print()
    print("## 1. Matmul peak (GFLOP/s of NxN @ NxN, 2 N^3 FLOPs)")
    print()
    print(table(["threads", "fp32 N", "fp32 GFLOP/s", "bf16 N", "bf16 GFLOP/s"], peak_rows))
    print()
    if not native_bf16(device):
        print("No native bf16 here: bf16 matmuls and convolutions run on emulation paths, so the bf16 "
              "matmul is no peak (convolutions can beat it: % peak above 100) and every bf16 figure "
              "below shows what `precision: bf16` would cost on this machine.")
        print()
    print(f"## 2. Training: one step at the config's batch size ({cfg['precision']} -> {marked} in `make run`)")
    print()
    cols = ["network", "threads", "GFLOP/img"]
    for p in PRECISIONS:
        cols += [f"{p} batch", f"{p} img/s", f"{p} GFLOP/s", f"{p} % peak"]
    print(table(cols, train_rows))
    print()
    print("GFLOP/img: one training step's forward + backward (FlopCounterMode; the optimizer's "
          "elementwise work is not counted). % peak: median GFLOP/s over the same run's matmul peak "
          "at the same precision and threads.")
    print()
    s = cfg["sampling"]
    print(f"## 3. Sampling: {s['sampler']}, {s['steps']} steps (eta {s.get('eta', 0)}), untrained networks")
    print()
    cols = ["method", "scale", "threads", "GFLOP/img/step"]
    for p in PRECISIONS:
        cols += [f"{p} BxK timed", f"{p} img/s", f"{p} GFLOP/s", f"{p} % peak"]
    print(table(cols, sample_rows))
    print()
    print(f"img/s: images per second of full {s['steps']}-step trajectories (K timed steps scaled by "
          f"{s['steps']}/K). GFLOP/img/step: one guided-model call per image (cfg: both halves; "
          f"cg: the eps-model plus the classifier's forward and input gradient). The batched and "
          f"two-forward cfg agree to {difference:.1e} (max |eps difference|, fp32).")
    print()
    print(f"`*`: measured at a smaller batch (or matrix, or fewer timed steps) than the config's "
          f"({max_batch} images x {s['steps']} steps for sampling) to fit its time budget.")
    print()
    if device.type == "cuda":  # the most any measurement above held at once: fits the card?
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        print(f"Peak GPU memory allocated by torch: {peak:.1f} GiB of {total:.0f} GiB.")
        print()
    print(f"Load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"wall time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
