import ast
import os
import socket
from pathlib import Path

import pytest
import torch
from xdist.scheduler import LoadScopeScheduling
from workflow_copies import SMOKE, copy_workflow, snakemake


def smoke_run_readers(test_file: Path) -> set[str]:
    """The test functions of ``test_file`` that read the smoke run: those taking ``smoke_run``, or a
    fixture of the same file that takes it (however deep)."""
    functions = {node.name: {arg.arg for arg in node.args.args}
                 for node in ast.parse(test_file.read_text()).body if isinstance(node, ast.FunctionDef)}
    readers, grown = {"smoke_run"}, True
    while grown:
        found = {name for name, args in functions.items() if args & readers}
        grown, readers = not found <= readers, readers | found
    return {name for name in readers if name.startswith("test_")}


class SmokeRunOnOneWorker(LoadScopeScheduling):
    """`make test` runs the suite on pytest-xdist workers. The tests that read the smoke run (the
    session fixture below) go to one worker as one unit, so the 2.5-minute run is built once,
    while the other workers take every other test one by one. (xdist's own --dist loadgroup would
    group them by a marker, but with pytest 9.2 its worker-side renaming of node ids has no effect,
    and each worker built its own smoke run.)"""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        # only the controller of an xdist run parses the test files, not every pytest process
        self.readers = {path.name: smoke_run_readers(path) for path in Path(__file__).parent.glob("test_*.py")}

    def _split_scope(self, nodeid: str) -> str:
        file, _, test = nodeid.partition("::")
        reads = test.split("[")[0] in self.readers.get(Path(file).name, ())
        return "smoke_run" if reads else nodeid


def pytest_xdist_make_scheduler(config, log):
    return SmokeRunOnOneWorker(config, log)


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
