"""The figure and tables of the one-step study (issue 28; diffguide.exact.approximation_study).

    python -m diffguide.reports.approximation_report --out results/approximations --docs docs

writes the rows to ``--out``: ``one_step_errors.csv``, ``tweedie_gradient.csv`` and ``chains.csv``
(whole chains against exact draws). To ``--docs`` it writes the figures and tables the README shows:
``one_step_errors.png`` (error against t, one curve per rule; rows d = 1, 2, 8, columns the three
kinds of step), ``one_step_mean_errors.png`` (the same for the part of the error the rule's mean
makes: the part guidance moves), ``tweedie_gradient.png`` and ``approximations.md``.

A table cell is the rule's error summed over the 25 steps of the chain. At s = 1 the KL sum is the
chain rule's bound on the KL between the exact and the rule's whole paths, where x_t is where the
exact chain is (the points are drawn there); at s != 1 the points are not where a guided chain is,
and for W2 the sum is a plain total (a chain of maps would add Lipschitz factors). Its interval
combines the steps' bootstrap intervals in quadrature, each side apart (the steps' points are drawn
independently; summing the steps' resamples would be exact, quadrature is close).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from diffguide.base.atomic import atomic_open  # noqa: E402
from diffguide.exact.approximation_study import (CHAIN_RULES, DIMENSIONS, STEP_KINDS, StudySize,  # noqa: E402
                                                 chain_rows, study_rows, tweedie_rows)
from diffguide.reports.figures import save_figure  # noqa: E402

CHAIN_LABELS = {"exact": "exact steps (the check: 0)"}
RULE_LABELS = {
    "unguided_floor": "unguided step vs p(x'|x_t) (the floor)",
    "conditional_model": "perfect conditional eps",
    "mean_shift": "mean shift (eq. 1.10)",
    "target_level_gradient": "gradient at level t' (eq. 1.5)",
    "gradient_at_mean": "gradient at the mean (D&N eqs. 5-6)",
    "score_form": "score form (eqs. 1.22-1.24)",
    "laplace": "second order (Laplace)",
    "tweedie_mean_shift": "mean shift, Tweedie gradient (DPS)",
    "tweedie_score_form": "score form, Tweedie gradient (UGD forward)",
    "exact_base_mean_shift": "mean shift on the exact unguided step's moments",
    "exact_base_laplace": "second order on the exact unguided step's moments",
    "moment_matched": "moment matched (best Gaussian)",
}


def chain_totals(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, rule, dim): the sum over steps, with the interval's sides added in quadrature."""
    rows = rows.assign(below=rows.value - rows.low, above=rows.high - rows.value)
    grouped = rows.groupby(["setting", "divergence", "part", "rule", "dim"])
    totals = grouped.agg(value=("value", "sum"), fallback_share=("fallback_share", "mean"))
    totals["low"] = totals.value - grouped.below.apply(lambda b: math.sqrt((b**2).sum()))
    totals["high"] = totals.value + grouped.above.apply(lambda a: math.sqrt((a**2).sum()))
    return totals.reset_index()


PLOT_FLOOR = 1e-8  # errors below it are drawn on it: the figure's bottom line means "exact"
ROUNDING = 1e-10  # below this an error is zero to float64 rounding (the exact identities of the rules)


def _number(value: float) -> str:
    return "0" if abs(value) < ROUNDING else f"{value:.3g}"


def _cell(row) -> str:
    text = f"{_number(row.value)} [{_number(row.low)}, {_number(row.high)}]"
    return text + (f" ({row.fallback_share:.2%} fell back)" if row.fallback_share > 0 else "")


PART_TITLES = {"total": "the whole error", "mean_part": "the part the mean makes",
               "minus_mean_shift": "the whole error minus the mean shift's, point by point",
               "minus_first_order": "a second-order rule minus the first-order rule on its base, point by point"}


def markdown_tables(rows: pd.DataFrame, tweedie: pd.DataFrame, chains: pd.DataFrame) -> str:
    """Per kind of step, two tables (rules by dimension): the whole error and its mean's part; then
    the Tweedie gradient's table; then the chains' table per kind of step."""
    totals = chain_totals(rows)
    parts = ["## One step"]
    for kind in STEP_KINDS:
        for part_name, title in PART_TITLES.items():
            chosen = ((totals.setting == kind.name) & (totals.part == part_name)
                      & (totals.divergence == divergence_of(kind)))
            parts.append(_rule_table(totals[chosen], kind, title))
    parts.append(_second_order_verdicts(rows))
    parts.append(_tweedie_table(tweedie))
    parts.append("## Whole chains: energy distance of the samples to exact draws of the target (x 100)")
    for kind in STEP_KINDS:
        for target in chains[chains.setting == kind.name].target.unique():
            chosen = (chains.setting == kind.name) & (chains.target == target)
            parts.append(_chain_table(chains[chosen], kind, target))
    return "\n\n".join(parts) + "\n"


CHAIN_TARGET_TITLES = {"p(x|y)": "p(x | y)", "normalised": "(b) p(x) p(y | x)^{s} / Z(x)",
                       "tilted": "(c) p(x) p(y | x)^{s} / const"}


def _chain_table(chains: pd.DataFrame, kind, target: str) -> str:
    lengths = sorted(chains.steps.unique())
    columns = [(d, n) for d in DIMENSIONS for n in lengths]
    target = CHAIN_TARGET_TITLES[target].format(s=f"{kind.scale:g}")
    lines = [f"### {kind.name}: chains against {target}", "",
             "| rule | " + " | ".join(f"d = {d}, {n} steps" for d, n in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for rule in CHAIN_RULES:
        cells = [chains[(chains.rule == rule) & (chains.dim == d) & (chains.steps == n)] for d, n in columns]
        if all(c.empty for c in cells):
            continue
        text = [f"{100 * c.iloc[0].value:.2f} [{100 * c.iloc[0].low:.2f}, {100 * c.iloc[0].high:.2f}]"
                if not c.empty else "" for c in cells]
        label = CHAIN_LABELS.get(rule, RULE_LABELS.get(rule, rule))
        lines.append(f"| {label} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def divergence_of(kind) -> str:
    """A drawing step is measured in KL; DDIM's, and the last step of any chain (t' = -1, where
    sigma = 0), in W2. The tables sum a setting's steps of its own divergence only."""
    return "kl" if kind.eta > 0 else "w2"


def _rule_table(part: pd.DataFrame, kind, title: str) -> str:
    divergence = "KL, nats" if kind.eta > 0 else "W2"
    where = "the chain's steps that draw" if kind.eta > 0 else "the chain"
    header = f"| rule ({divergence}, summed over {where}) | " + " | ".join(f"d = {d}" for d in DIMENSIONS)
    lines = [f"### {kind.name}: {title}", "", header + " |", "|---" * (len(DIMENSIONS) + 1) + "|"]
    for rule, label in RULE_LABELS.items():
        cells = [part[(part.rule == rule) & (part.dim == d)] for d in DIMENSIONS]
        if all(c.empty for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(_cell(c.iloc[0]) if not c.empty else "" for c in cells) + " |")
    return "\n".join(lines)


def _second_order_verdicts(rows: pd.DataFrame) -> str:
    """Issue 28's claim on the mixtures, step by step: is the second-order rule's one-step error
    below the first-order rule's? A step counts where the paired difference's interval excludes 0."""
    paired = rows[(rows.part == "minus_first_order") & (rows.divergence == "kl")]
    lines = ["### Second order against first order, step by step (paired per point)", "",
             "Steps that draw (KL). The base is the Gaussian the expansion multiplies: N(mu, sigma^2 I) as in "
             "eq. 1.6, or the exact unguided step's moments.", "",
             "| base | setting | d | steps where second order is better | worse | undecided (interval contains 0) |",
             "|---|---|---|---|---|---|"]
    bases = {"laplace": "sigma^2 I", "exact_base_laplace": "exact moments"}
    for (rule, setting, dim), group in paired.groupby(["rule", "setting", "dim"], sort=False):
        better, worse = int((group.high < 0).sum()), int((group.low > 0).sum())
        lines.append(f"| {bases[rule]} | {setting} | {dim} | {better} | {worse} | {len(group) - better - worse} |")
    return "\n".join(lines)


def _tweedie_table(tweedie: pd.DataFrame) -> str:
    lines = ["### Tweedie gradient (training-free guidance's p(y | x0_hat)) against grad log p_t(y | x_t)", "",
             "| t | " + " | ".join(f"relative error, d = {d} | eps error, d = {d}" for d in DIMENSIONS) + " |",
             "|---" * (2 * len(DIMENSIONS) + 1) + "|"]
    for t, group in tweedie.groupby("t", sort=False):
        cells = []
        for d in DIMENSIONS:
            r = group[group.dim == d].iloc[0]
            cells += [f"{r.relative_error:.3g} [{r.relative_error_low:.3g}, {r.relative_error_high:.3g}]",
                      f"{r.eps_error:.3g} [{r.eps_error_low:.3g}, {r.eps_error_high:.3g}]"]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def error_figure(rows: pd.DataFrame, path: Path) -> None:
    """Error against t, one curve per rule, with its interval as a band: rows d, columns step kinds
    (``rows`` of one part: the whole error or its mean's part)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(len(DIMENSIONS), len(STEP_KINDS), figsize=(4.2 * len(STEP_KINDS), 3.2 * len(DIMENSIONS)),
                             squeeze=False)
    # tab10's ten colours and two more, so no two rules share a hue (tab20 pairs light and dark ones)
    palette = dict(zip(RULE_LABELS, sns.color_palette("tab10") + [(0.0, 0.0, 0.0), (0.0, 0.0, 0.45)]))
    for i, dim in enumerate(DIMENSIONS):
        for j, kind in enumerate(STEP_KINDS):
            ax = axes[i, j]
            part = rows[(rows.dim == dim) & (rows.setting == kind.name)]
            for rule, label in RULE_LABELS.items():
                curve = part[part.rule == rule].sort_values("t")
                if curve.empty:
                    continue
                floor = lambda v: v.clip(lower=PLOT_FLOOR)  # noqa: E731
                ax.plot(curve.t, floor(curve.value), label=label, color=palette[rule], lw=1.2)
                ax.fill_between(curve.t, floor(curve.low), floor(curve.high), color=palette[rule], alpha=0.2, lw=0)
            ax.set_yscale("log")
            ax.set_ylim(bottom=PLOT_FLOOR / 2)
            ax.set_title(f"d = {dim}, {kind.name}")
            ax.set_xlabel("t (step t -> t')")
            ax.set_ylabel(("KL(exact || rule)" if kind.eta > 0 else "W2(exact, rule)")
                          + (", mean's part" if (part.part == "mean_part").all() else ""))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_figure(fig, path, dpi=100)


def tweedie_figure(tweedie: pd.DataFrame, path: Path) -> None:
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for dim in DIMENSIONS:
        part = tweedie[tweedie.dim == dim].sort_values("t")
        for ax, column in zip(axes, ("relative_error", "eps_error")):
            ax.plot(part.t, part[column], label=f"d = {dim}")
            ax.fill_between(part.t, part[f"{column}_low"], part[f"{column}_high"], alpha=0.2, lw=0)
    axes[0].set_ylabel("E|g_tweedie - g| / E|g|")
    axes[1].set_ylabel("sqrt(1 - abar_t) E|g_tweedie - g|")
    for ax in axes:
        ax.set_xlabel("t")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_open(path) as handle:
        handle.write(frame.to_csv(index=False).encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/approximations"), help="where the CSV rows go")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the figures and approximations.md go")
    parser.add_argument("--points", type=int, default=StudySize.num_points, help="points x_t per step")
    parser.add_argument("--draws", type=int, default=StudySize.num_draws, help="exact target draws per point")
    parser.add_argument("--steps", type=int, default=StudySize.num_steps, help="steps of the one-step study's chain")
    parser.add_argument("--chains", type=int, default=StudySize.num_chains, help="chains per rule in the chain study")
    parser.add_argument("--chain-lengths", type=int, nargs="+", default=list(StudySize.chain_lengths),
                        help="numbers of steps of the whole chains")
    args = parser.parse_args(argv)
    size = StudySize(num_points=args.points, num_draws=args.draws, num_steps=args.steps, num_chains=args.chains,
                     chain_lengths=tuple(args.chain_lengths))
    for folder in (args.out, args.docs):
        folder.mkdir(parents=True, exist_ok=True)
    rows, tweedie = pd.DataFrame(study_rows(size)), pd.DataFrame(tweedie_rows(size))
    chains = pd.DataFrame(chain_rows(size))
    write_csv(rows, args.out / "one_step_errors.csv")
    write_csv(tweedie, args.out / "tweedie_gradient.csv")
    write_csv(chains, args.out / "chains.csv")
    error_figure(rows[rows.part == "total"], args.docs / "one_step_errors.png")
    error_figure(rows[rows.part == "mean_part"], args.docs / "one_step_mean_errors.png")
    tweedie_figure(tweedie, args.docs / "tweedie_gradient.png")
    with atomic_open(args.docs / "approximations.md") as handle:
        handle.write(markdown_tables(rows, tweedie, chains).encode())


if __name__ == "__main__":
    main()
