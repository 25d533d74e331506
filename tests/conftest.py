import os
import socket
from pathlib import Path

import pytest
import torch
from workflow_copies import SMOKE, copy_workflow, snakemake


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests use tiny tensors: intra-op threads only add overhead (10x on a busy 2-core
    machine, where OpenMP threads wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def free_port() -> int:
    """A TCP port nobody listens on, for a torch.distributed rendezvous on this machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """config/smoke.yaml run end to end by the real Snakefile in a copy of the workflow (about 3.5
    minutes on 2 cores), once per session: the pipeline tests and the documented commands read it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    umask = os.umask(0o022)  # the usual one: what the run writes must then be readable by all
    try:
        snakemake(workdir, "--configfile", SMOKE)
    finally:
        os.umask(umask)
    return workdir
