"""Where and how a job runs: device choice, mixed precision, seeding and logging."""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), the CPU otherwise."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was asked for but CUDA is not available; set device: auto or cpu")
    return torch.device(requested)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 / AMX
    (oneDNN's check). Elsewhere bf16 is emulated: on an AVX2-only EPYC a 1024^2 matmul ran at
    0.88 GFLOP/s in bf16 against 69 in fp32 (`make bench`), so bf16 there is a trap, not a speed-up."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 where it is native (native_bf16), fp32 elsewhere; bf16 and fp32 stay."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU and GPU (weights stay fp32); a no-op for 'fp32' ('auto' resolved by
    resolve_precision)."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def progress_bar(iterable, **kwargs):
    """A tqdm bar; redrawn at most every 10 s when stderr is a log file rather than a terminal,
    so Snakemake logs stay readable."""
    from tqdm.auto import tqdm

    return tqdm(iterable, mininterval=0.1 if sys.stderr.isatty() else 10.0, dynamic_ncols=True, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_logging(log_path: str | Path | None, name: str = "diffguide") -> logging.Logger:
    """Log to the job's log file (under results/<run>/logs/) and to stderr."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger
