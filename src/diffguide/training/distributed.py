"""Multi-process training under ``torchrun`` (torch.distributed + DistributedDataParallel).

A run started by ``torchrun --nproc_per_node N`` has RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in its environment; :func:`init` then joins the process group (nccl on CUDA, gloo on
the CPU) and pins each rank to GPU LOCAL_RANK. Anything else (plain ``python``, Snakemake, the
tests) stays single-process: every helper here then answers rank 0 of a world of 1, and
:func:`barrier` and :func:`teardown` do nothing.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process started by torchrun (or anything setting its env vars) with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def active() -> bool:
    """True once a process group of more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join torchrun's process group when launched by it and return the device this rank uses
    (cuda:LOCAL_RANK on CUDA, ``device`` otherwise); without torchrun, return ``device`` as is."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return device


def barrier() -> None:
    if active():
        dist.barrier()


def teardown() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
