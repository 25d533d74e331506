"""Content checksums of the artifacts later rules read: prepared data, models, samples, features,
metrics. Each is written with a sidecar ``<file>.sha256`` in sha256sum's format (so
``sha256sum -c results/<run>/models/conditional.pt.sha256`` checks it by hand), and verified
when it is read and, for the whole run, when the Snakefile is parsed.

Why not Snakemake's own mechanisms: ``ensure(..., sha256=...)`` checks an output against a digest
known in advance, which a trained model has not; the mtime rerun trigger misses a file truncated
with its mtime kept; and a corrupt input found by the job that reads it is found too late, after
Snakemake has already deleted that job's previous outputs. Checking every artifact at parse
time stops before any job instead, naming the file and the command that remakes it and
everything made from it (Snakemake's --forcerun).

    python -m diffguide.base.integrity check results/<run>   # what the Snakefile does
    python -m diffguide.base.integrity adopt results/<run>   # record checksums of trusted older files
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diffguide.base.atomic import SUFFIX, digest_path, file_sha256, write_digest

# The artifacts of a run (relative to results/<run>/) that carry a checksum: everything a later
# rule reads, and the run's recorded config (diffguide.pipeline.run_record), which `diffguide
# sample` reads. Checkpoints (rotated while training, with their own fingerprint), logs, figures
# and tables (read by no rule) do not.
ARTIFACT_PATTERNS = ("config.yaml", "data/*.npz", "models/*.pt", "samples/**/*.npz", "reference/*.npz",
                     "metrics/**/*.csv", "metrics*.csv")
# What may be made from each kind of artifact (the rules' inputs, coarsely): the artifacts that
# would be stale if it changed.
METRICS = ("metrics/**/*.csv", "metrics*.csv")
CONSUMERS = {"config.yaml": (), "data/*.npz": ("models/*.pt", "reference/*.npz", "samples/**/*.npz", *METRICS),
             "models/*.pt": ("samples/**/*.npz", *METRICS), "samples/**/*.npz": METRICS,
             "reference/*.npz": METRICS, "metrics/**/*.csv": ("metrics*.csv",), "metrics*.csv": ()}


class CorruptArtifactError(RuntimeError):
    """An artifact whose content is not what was written: truncated, edited or half-copied."""


def recorded_sha256(path: str | Path) -> str | None:
    sidecar = digest_path(path)
    if not sidecar.exists():
        return None
    return sidecar.read_text().split(" ", 1)[0].strip() or None


def restore_command(paths: str | Path, configfile: str | None = None) -> str:
    """Snakemake's --forcerun remakes the damaged files and every artifact made from them, so
    nothing stale survives and nothing else is lost. (Removing the file instead is not enough:
    Snakemake does not remake a missing intermediate file whose consumers look up to date, and
    the run would end without it.) The Snakefile's own check skips the files being forced."""
    config = configfile or "<the config file of this run>"
    return f"snakemake --cores all --configfile {config} --forcerun {paths}"


def problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be trusted, or None when its content matches its checksum."""
    recorded = recorded_sha256(path)
    if recorded is None:
        return (f"has no checksum file {digest_path(path).name} (written by a diffguide before checksums, or "
                "its job was killed while writing it)")
    if file_sha256(path) != recorded:
        return "does not match its checksum: it was changed or truncated after it was written"
    return None


def verify(path: str | Path, configfile: str | None = None) -> Path:
    """Return ``path`` when its content matches its checksum; raise CorruptArtifactError naming
    the file and the command that restores a consistent run otherwise (FileNotFoundError when
    it does not exist: a missing file is Snakemake's to remake, not a damaged one)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    reason = problem(path)
    if reason:
        raise CorruptArtifactError(f"{path} {reason}. To remake it and everything made from it, run: "
                                   f"{restore_command(path, configfile)}")
    return Path(path)


def load_npz(path: str | Path):
    """np.load of a verified artifact (samples, features, prepared data)."""
    import numpy as np

    return np.load(verify(path), allow_pickle=False)


def read_csv(path: str | Path):
    """pandas.read_csv of a verified artifact (a metrics row, metrics.csv, their replicates)."""
    import pandas as pd

    return pd.read_csv(verify(path))


def run_artifacts(root: str | Path) -> list[Path]:
    root = Path(root)
    found = {p for pattern in ARTIFACT_PATTERNS for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


def stale_gaps(root: str | Path) -> list[Path]:
    """Artifacts missing although their checksum remains (finished once, then deleted: by hand, or
    by Snakemake before rerunning their job, which was then killed) while something that may be
    made from them exists (CONSUMERS). Snakemake does not remake a missing intermediate file whose
    consumers exist, so it would call the run complete although those consumers may come from the
    version that is gone. With no such consumer left (a first run killed, --delete-all-output), a
    plain rerun remakes the file anyway, and nothing is reported."""
    root = Path(root)
    gaps = []
    for pattern, consumers in CONSUMERS.items():
        missing = [d.with_name(d.name.removesuffix(SUFFIX)) for d in root.glob(pattern + SUFFIX)]
        missing = [artifact for artifact in missing if not artifact.exists()]
        if missing and any(p.is_file() for consumer in consumers for p in root.glob(consumer)):
            gaps += missing
    return sorted(gaps)


def check_run(root: str | Path, configfile: str | None = None, remade: tuple[str, ...] = ()) -> list[str]:
    """One line per artifact of the run at ``root`` that fails its checksum, then the command;
    files in ``remade`` (those this Snakemake run is forced to remake) are not checked."""
    skipped = {os.path.normpath(path) for path in remade}
    bad = [(path, reason) for path in run_artifacts(root)
           if os.path.normpath(path) not in skipped and (reason := problem(path))]
    bad += [(path, f"is missing, though it was finished once (its {path.name}{SUFFIX} remains), so what was made "
                   f"from it may be stale (if you removed it on purpose, remove {path.name}{SUFFIX} too)")
            for path in stale_gaps(root) if os.path.normpath(path) not in skipped]
    if not bad:
        return []
    lines = [f"  {path} {reason}" for path, reason in bad]
    return lines + ["To remake them and everything made from them, run:\n  "
                    + restore_command(" ".join(str(path) for path, _ in bad), configfile)]


def record(path: str | Path) -> Path:
    """Write the checksum of ``path`` as it is now: for a file made outside diffguide's writers
    that you trust (a test fixture, an artifact from before checksums)."""
    write_digest(path, file_sha256(path))
    return Path(path)


def adopt(root: str | Path) -> list[Path]:
    """Write the missing checksums of a run's artifacts (files you trust, from before checksums)."""
    adopted = [path for path in run_artifacts(root) if recorded_sha256(path) is None]
    for path in adopted:
        record(path)
    return adopted


def forced_targets(argv: list[str]) -> tuple[str, ...]:
    """The targets after Snakemake's --forcerun / -R in a command line."""
    targets, forcing = [], False
    for arg in argv:
        flag, _, value = arg.partition("=")
        if flag in ("--forcerun", "-R"):
            forcing = not value  # --forcerun=x takes one target; --forcerun x y takes all that follow
            targets += [value] if value else []
        elif arg.startswith("-"):
            forcing = False
        elif forcing:
            targets.append(arg)
    return tuple(targets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffguide.base.integrity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "adopt"), help="check every artifact against its checksum, "
                        "or record the checksums of trusted files written before artifacts carried them")
    parser.add_argument("root", help="a run's results folder, e.g. results/default")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2), as argparse says
        return int(stop.code or 0)
    if args.command == "adopt":
        adopted = adopt(args.root)
        print(f"recorded the checksums of {len(adopted)} artifacts under {args.root}")
        return 0
    lines = check_run(args.root)
    print("\n".join(lines) if lines else f"every artifact under {args.root} matches its checksum",
          file=sys.stderr if lines else sys.stdout)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
