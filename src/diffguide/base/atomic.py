"""Atomic file writes: every artifact is written to a temp file in its own folder, flushed to
disk, then renamed over the target, so a killed job never leaves a half-written file that
Snakemake (or a resumed training run) would take for a finished one. An artifact that a later
rule reads also gets its content checksum beside it (``checksum=True``; diffguide.base.integrity)."""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# The checksum sidecar of an artifact: <name>.sha256, in sha256sum's format (diffguide.base.integrity
# verifies it).
SUFFIX = ".sha256"


def digest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_line(hexdigest: str, path: str | Path) -> str:
    """sha256sum's line: the digest, two spaces, the file name (relative to the sidecar)."""
    return f"{hexdigest}  {Path(path).name}\n"


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask: what open() gives a new file. mkstemp makes its temp
    file 0600 whatever the umask, which would keep collaborators on a shared file system out."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def remove_orphaned_temps(path: Path) -> None:
    """Delete the temp files an earlier writer of ``path`` left when it was killed (kill -9 runs no
    cleanup): a file has one writer at a time (Snakemake runs one job per output, and only rank 0
    writes a training checkpoint), so a temp of its name that exists as a new write starts is an
    orphan. Without this, a killed checkpoint write left .<name>.<random>.tmp beside the finished
    run (tests/test_reliability.py found it)."""
    # mkstemp's random part is 8 characters without dots: .x.npz.sha256.<8>.tmp is another file's.
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
        orphan.unlink(missing_ok=True)


@contextmanager
def atomic_open(path, checksum: bool = False):
    """A binary handle whose content replaces ``path`` only when the ``with`` block succeeds;
    on any error the temp file is removed and an existing ``path`` is left as it was. The file
    gets the mode the umask gives any new file; with ``checksum``, ``<path>.sha256`` follows it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, umask_mode())
        digest = file_sha256(tmp_name) if checksum else None
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if digest:
        write_digest(path, digest)


def write_digest(path: str | Path, hexdigest: str) -> None:
    """``<path>.sha256`` in sha256sum's format, itself written atomically."""
    with atomic_open(digest_path(path)) as handle:
        handle.write(digest_line(hexdigest, path).encode())
