"""results/<run>/config.yaml: the config a run's jobs saw, so that what reads a run later (``diffguide
sample --run``, a colleague, a rerun) starts from the run's own settings, not the schema's.

It is the config after Snakemake merged every ``--configfile`` and ``--config``, and the schema
filled in its defaults (workflow/rules/common.smk validates it in place): every key, explicit. Rule
``record_config`` writes it, with its checksum beside it like every artifact (diffguide.base.integrity);
the rule's params are the whole config, so Snakemake's params rerun trigger rewrites it whenever any
setting changes, and nothing else reruns for it. It is itself a config file: ``snakemake --cores all
--configfile results/<run>/config.yaml`` reruns the same run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from diffguide.base import integrity
from diffguide.base.atomic import atomic_open

RUN_CONFIG = "config.yaml"


def run_config_path(run_root: str | Path) -> Path:
    return Path(run_root) / RUN_CONFIG


def write_run_config(config: dict, path: str | Path) -> None:
    """The resolved config as YAML (keys in the config's order, so reruns write the same bytes)."""
    header = (f"# Run '{config['run']}' as its jobs saw it: every config file merged, the schema's defaults\n"
              "# filled in (diffguide.pipeline.run_record). `diffguide sample --run` reads it; it is also a\n"
              "# config file that reruns this run.\n")
    with atomic_open(path, checksum=True) as handle:
        handle.write(header.encode())
        handle.write(yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode())


def read_run_config(run_root: str | Path) -> dict | None:
    """The recorded config of the run at ``run_root`` (its checksum verified), or None for a run
    that has none (finished before runs recorded their config, or not yet at its end)."""
    path = run_config_path(run_root)
    if not path.is_file():
        return None
    return yaml.safe_load(integrity.verify(path).read_text())
