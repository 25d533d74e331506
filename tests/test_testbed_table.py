"""The testbed table: each method at its best scale, its FID difference to CFG's best with the
paired interval, its paper's claim and the verdicts of its finding (at matched strength and at nominal
scale), and the matched-strength table, as Markdown and CSV."""

import numpy as np
import pandas as pd
import pytest
import testbed_metrics
from testbed_metrics import frame, replicates, sweeps, write_run

from diffguide.findings.testbed import CLAIMS
from diffguide.registry import TESTBED_METHODS
from diffguide.reports import testbed_table


def table(data=None):
    df = frame(data if data is not None else sweeps())
    return testbed_table.testbed_rows(df, replicates(df)).set_index("method")


def test_one_row_per_method_at_its_best_scale_with_the_papers_claim_and_verdict():
    rows = table()
    assert list(rows.index) == ["cfg", *(m for m in TESTBED_METHODS if m in sweeps())]  # registry order
    assert len(rows) == 1 + len(CLAIMS)
    cfg = rows.loc["cfg"]
    assert (cfg["best_scale"], cfg["fid"], cfg["accuracy"], cfg["saturation"]) == pytest.approx((1, 8, 0.6, 0.12),
                                                                                              abs=1e-3)
    assert np.isnan(cfg["fid_minus_cfg_best"]) and cfg["verdict"] == ""
    cfgpp = rows.loc["cfgpp"]  # lambda = 0.2: FID 7.5, 0.5 below cfg's best 8 (a win), the claim holds
    assert (cfgpp["best_scale"], cfgpp["fid"], cfgpp["symbol"]) == (0.2, 7.5, "lambda")
    assert cfgpp["fid_lo"] == pytest.approx(7.5 - 1.96 * 0.1)
    assert cfgpp["saturation_hi"] == pytest.approx(0.11 + 1.96 * 0.003)
    assert cfgpp["fid_minus_cfg_best"] == pytest.approx(-0.5)
    assert cfgpp["fid_minus_cfg_best_lo"] < -0.5 < cfgpp["fid_minus_cfg_best_hi"] < 0
    assert (cfgpp["versus_cfg"], cfgpp["verdict"], cfgpp["nominal_verdict"], cfgpp["finding"]) == \
        ("win", "holds", "holds", 15)
    assert (cfgpp["paper"], cfgpp["claim"]) == (CLAIMS["cfgpp"].paper, CLAIMS["cfgpp"].claim)
    assert rows.loc["apg", "versus_cfg"] == "not distinguishable"  # 8.0 vs 8.0
    assert list(rows.reset_index().columns) == list(testbed_table.CSV_COLUMNS)


def test_a_claim_that_fails_or_cannot_be_tested_says_so():
    data = sweeps()
    data["apg"]["fid_classifier"] = [8.0, 13.0]  # significantly worse than cfg's 12 at w = 4
    data["cfg_interval"]["scale"] = [3, 5]  # no w in common with cfg: its nominal test cannot run
    # guiding less: the schedule wins at w = 4 (11.5 < 12) but never reaches cfg's strength there
    data["cfg_schedule"] |= {"accuracy_classifier": [0.55, 0.7], "displacement": [0.05, 0.2],
                             "fid_classifier": [7.5, 11.5]}
    data["cg_interval"] = dict(data["cfg_schedule"])  # a testbed method without a claim here
    del data["cfgpp"]
    rows = table(data)
    assert (rows.loc["apg", "verdict"], rows.loc["apg", "nominal_verdict"]) == ("does not hold", "does not hold")
    assert (rows.loc["cfg_interval", "verdict"], rows.loc["cfg_interval", "nominal_verdict"]) == ("holds", "not tested")
    assert (rows.loc["cfg_schedule", "verdict"], rows.loc["cfg_schedule", "nominal_verdict"]) == \
        ("does not hold", "holds")
    assert rows.loc["cg_interval", "claim"] == "no claim tested here" and rows.loc["cg_interval", "symbol"] == "s"
    assert "cfgpp" not in rows.index


def test_written_markdown_and_csv(tmp_path):
    metrics, reps = write_run(tmp_path)
    out = tmp_path / "tables"
    md, csv, matched_csv = testbed_table.write_testbed_table(metrics, reps, out / "testbed.md", out / "testbed.csv",
                                                             out / "testbed_matched.csv")
    text = md.read_text()
    nominal, matched = text.split("**At matched strength**")
    lines = [l for l in nominal.splitlines() if l.startswith("|")]
    methods = len(table())
    assert len(lines) == 2 + methods  # header, rule, one row per method
    assert lines[0].startswith("| method | best scale | FID [95% CI] |") and "paper's claim" in lines[0]
    assert "500 samples per row" in text and "--set testbed" in text
    cfgpp = next(l for l in lines if l.startswith("| cfgpp "))
    assert "| lambda = 0.2 | 7.50 [7.30, 7.70] |" in cfgpp and "| win |" in cfgpp
    assert "Chung et al. 2024" in cfgpp and cfgpp.endswith("holds (finding 15) | holds |")
    written = pd.read_csv(csv)
    assert list(written["method"]) == list(table().index)
    assert written.loc[written["method"] == "autoguidance", "fid_minus_cfg_best"].item() == pytest.approx(-1.0)
    # the matched table: every method but cfg, by accuracy and by displacement, at w = 1 and 4 (CFG++ by
    # accuracy only: its guidance acts through its renoising direction, which the displacement does not see)
    matched_lines = [l for l in matched.splitlines() if l.startswith("| ")]
    assert len(matched_lines) == 1 + 4 * (methods - 1) - 2
    assert not [l for l in matched_lines if l.startswith("| cfgpp | displacement")]
    assert "| cfg_interval | displacement | w = 4 (0.4) | w = 4 | 11.00 | -1.00 [" in matched
    rows = pd.read_csv(matched_csv)
    assert list(rows.columns) == list(testbed_table.MATCHED_COLUMNS) and len(rows) == 4 * (methods - 1) - 2
    autoguidance = rows[(rows["method"] == "autoguidance") & (rows["matched_by"] == "accuracy")]
    assert list(autoguidance["scale"]) == [1, 2] and list(autoguidance["recall_minus_cfg"]) == pytest.approx([0.03, 0.05])


def test_the_matched_table_says_where_a_method_never_reaches_cfgs_strength():
    data = sweeps()
    data["cfg_interval"] |= {"accuracy_classifier": [0.55, 0.7], "displacement": [0.05, 0.2]}
    df = frame(data)
    rows = testbed_table.matched_rows(df, replicates(df))
    short = rows[(rows["method"] == "cfg_interval") & (rows["reference_w"] == 4)]
    assert not short["reached"].any() and list(short["best_level"]) == pytest.approx([0.7, 0.2])
    assert short["fid_minus_cfg"].isna().all()
    assert "never reached (its highest accuracy: 0.7)" in testbed_table.matched_markdown(rows)


def test_the_variants_on_a_model_trained_without_label_dropout_follow_their_method_and_start_from_cfg_p0():
    """cfg_p0 and icg_p0 (training.conditional.p_uncond_sweep: [0]) are rows after cfg and icg; icg_p0's
    scale 0 is conditional_p0's own, so its sweep starts from cfg_p0's w = 0, not cfg's."""
    from diffguide.findings.testbed_matched import zero_row

    data = sweeps()
    own = {"accuracy_classifier": [0.3, 0.6, 0.8], "displacement": [0.0, 0.1, 0.4]}
    data["icg"] = testbed_metrics.rows([2, 4], [7.5, 11.0], [0.13, 0.18])
    data["icg_p0"] = testbed_metrics.rows([1, 2], [20.0, 15.0], [0.13, 0.18])
    data["cfg_p0"] = testbed_metrics.rows([0, 1, 4], [30.0, 25.0, 20.0], [0.1, 0.12, 0.2], strength=own)
    rows = table(data)
    order = list(rows.index)
    assert order[:2] == ["cfg", "cfg_p0"] and order[order.index("icg") + 1] == "icg_p0"
    assert rows.loc["icg_p0", "claim"] == "no claim tested here" and rows.loc["icg_p0", "symbol"] == "w"
    assert (zero_row("icg"), zero_row("icg_p0"), zero_row("cfg_p0")) == ("cfg", "cfg_p0", "cfg_p0")
    assert zero_row("cfgpp") is None and zero_row("dynamic_threshold") is None
    df = frame(data)
    matched = testbed_table.matched_rows(df, replicates(df)).set_index(["method", "matched_by", "reference_w"])
    # cfg's accuracy 0.6 at w = 1: icg_p0 (0.6 at its w = 1) reaches it at w = 1, FID 20 against cfg's 8
    assert matched.loc[("icg_p0", "accuracy", 1.0), "scale"] == pytest.approx(1.0)
    assert matched.loc[("icg_p0", "accuracy", 1.0), "fid_minus_cfg"] == pytest.approx(20.0 - 8.0)
    # cfg's displacement 0.1 (w = 1) lies between cfg_p0's w = 0 (0.0, FID 30) and icg_p0's w = 1 (0.1): at w = 1
    # exactly; cfg's 0.05 would lie halfway. With cfg's own w = 0 (FID 10) borrowed instead, a target below
    # icg_p0's first scale would interpolate towards the wrong model.
    assert matched.loc[("icg_p0", "displacement", 1.0), "scale"] == pytest.approx(1.0)
    reps = replicates(df)
    from diffguide.findings.framework import Columns, Runs
    from diffguide.findings.testbed_matched import matchings

    swept = matchings(Columns.of("classifier"))[0].sweep(Runs(df, reps), "icg_p0", "fid_classifier")
    assert list(swept.scales) == [0, 1, 2] and swept.values[0] == 30.0  # cfg_p0's w = 0 row, not cfg's (10)
