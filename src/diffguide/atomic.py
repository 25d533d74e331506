"""Atomic file writes: every artifact is written to a temp file in its own folder, flushed to
disk, then renamed over the target, so a killed job never leaves a half-written file that
Snakemake (or a resumed training run) would take for a finished one."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path):
    """A binary handle whose content replaces ``path`` only when the ``with`` block succeeds;
    on any error the temp file is removed and an existing ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
