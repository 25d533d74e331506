"""The one-step study's report (diffguide.reports.approximation_report) on a small study: the CSVs,
the figures and the tables it promises, with each rule's row and each dimension's column."""

from __future__ import annotations

import pandas as pd
import pytest

from diffguide.exact.approximation_study import CHAIN_RULES, DIMENSIONS, STEP_KINDS, StudySize, chain_steps
from diffguide.reports.approximation_report import RULE_LABELS, chain_totals, main


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    out, docs = tmp_path_factory.mktemp("rows"), tmp_path_factory.mktemp("docs")
    main(["--out", str(out), "--docs", str(docs), "--points", "8", "--draws", "50", "--steps", "3",
          "--chains", "30", "--chain-lengths", "3", "5"])
    return out, docs


def test_the_report_writes_its_rows_figures_and_tables(small_report):
    out, docs = small_report
    rows = pd.read_csv(out / "one_step_errors.csv")
    steps = len(chain_steps(StudySize(num_steps=3)))
    # ten rules and moment matching in three parts, the two second-order rules in a fourth; at
    # s = 1 also the floor in two
    expected = len(DIMENSIONS) * steps * sum(11 * 3 + 2 + (2 if kind.scale == 1 else 0) for kind in STEP_KINDS)
    assert len(rows) == expected
    assert set(rows.rule) == set(RULE_LABELS)
    assert (rows.low <= rows.value + 1e-12).all() and (rows.value <= rows.high + 1e-12).all()
    for name in ("one_step_errors.png", "one_step_mean_errors.png", "tweedie_gradient.png",
                 "one_step_errors.pdf", "approximations.md"):
        assert (docs / name).stat().st_size > 0, name
    text = (docs / "approximations.md").read_text()
    for kind in STEP_KINDS:
        assert f"### {kind.name}: the whole error" in text and f"### {kind.name}: the part the mean makes" in text
    chain_tables = sum(1 if kind.scale == 1 else 2 for kind in STEP_KINDS)  # s != 1: targets (b) and (c)
    assert text.count("| score form (eqs. 1.22-1.24) |") == 3 * len(STEP_KINDS) + chain_tables
    for base in ("sigma^2 I", "exact moments"):  # the second-order verdicts, for drawing steps only
        assert text.count(f"| {base} | ddpm s=1 | ") == len(DIMENSIONS) and f"| {base} | ddim s=1 |" not in text
    for kind in STEP_KINDS:
        assert f"### {kind.name}: chains against" in text
    chains = pd.read_csv(out / "chains.csv")
    assert set(chains.steps) == {3, 5} and set(chains.dim) == set(DIMENSIONS)
    assert set(chains.rule) == set(CHAIN_RULES)
    assert set(chains[chains.setting == "ddpm s=3"].target) == {"normalised", "tilted"}
    assert set(chains[chains.setting == "ddpm s=1"].target) == {"p(x|y)"}
    assert not chains[(chains.setting == "ddpm s=3") & chains.rule.isin(["exact", "moment_matched"])].shape[0]
    assert len(pd.read_csv(out / "tweedie_gradient.csv")) == len(DIMENSIONS) * steps


def test_a_chain_total_adds_the_steps_and_their_interval_sides_in_quadrature():
    rows = pd.DataFrame({"setting": "ddpm s=1", "divergence": "kl", "part": "total", "rule": "mean_shift", "dim": 1,
                         "value": [1.0, 2.0], "low": [0.7, 1.6], "high": [1.4, 2.3], "fallback_share": [0.0, 0.5]})
    total = chain_totals(rows).iloc[0]
    assert total.value == pytest.approx(3.0)
    assert total.low == pytest.approx(3.0 - 0.5)   # sqrt(0.3^2 + 0.4^2)
    assert total.high == pytest.approx(3.0 + (0.4**2 + 0.3**2) ** 0.5)
    assert total.fallback_share == pytest.approx(0.25)
