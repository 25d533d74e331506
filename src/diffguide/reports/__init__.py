"""What a reader sees: the figures and tables of a run (`figures`, `tables`, `testbed_figures`,
`testbed_table`), the replication-status table, the exact mixture figures, the one-step study's
figures and tables (`approximation_report`, `make approximations`), and the report's layout.

May import: diffguide.base, diffguide.data, diffguide.diffusion, diffguide.evaluation,
diffguide.exact, diffguide.findings, diffguide.guidance, diffguide.models, diffguide.registry.
"""
