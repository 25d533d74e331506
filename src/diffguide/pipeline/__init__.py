"""The Snakemake workflow's side of the package: the config schema and its cross-key checks and
warnings (`config_schema`, `config_checks`, `check_config`), one module per rule file (`stages/`),
the config a run records for later readers (`run_record`), and the run summary (`summary`).

May import: diffguide.base, diffguide.data, diffguide.diffusion, diffguide.evaluation,
diffguide.guidance, diffguide.models, diffguide.registry, diffguide.reports, diffguide.training.
"""
