"""Exact answers to test against, and what is measured with them.

- `gaussian_mixture`: Gaussian-mixture data (one component per class) whose noisy scores,
  classifiers and guided targets are known in closed form.
- `labelled_mixture`: classes made of several components, so p(x_0 | y) is itself a mixture.
- `transition`: the exact reverse step p(x_t' | x_t, y) for any sigma_t (issue 28).
- `step_rules`: every guidance rule's Gaussian step on the exact model (mean shift, score form,
  second order, ...); `step_errors`: their divergence from the exact step; `chain_errors`: whole
  chains against exact draws; `approximation_study`: the study that runs them all
  (`make approximations`, drawn by `diffguide.reports.approximation_report`).

May import: diffguide.diffusion, diffguide.guidance.
"""
