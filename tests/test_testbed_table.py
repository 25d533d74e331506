"""The testbed table: each method at its best scale, its FID difference to CFG's best with the
paired interval, its paper's claim and the verdict of findings 12-19, as Markdown and CSV."""

import numpy as np
import pandas as pd
import pytest
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
    assert (cfg["best_scale"], cfg["fid"], cfg["accuracy"], cfg["saturation"]) == pytest.approx((1, 8, 0.6167, 0.12),
                                                                                              abs=1e-3)
    assert np.isnan(cfg["fid_minus_cfg_best"]) and cfg["verdict"] == ""
    cfgpp = rows.loc["cfgpp"]  # lambda = 0.6: FID 7.6, 0.4 below cfg's best 8 (a win), the claim holds
    assert (cfgpp["best_scale"], cfgpp["fid"], cfgpp["symbol"]) == (0.6, 7.6, "lambda")
    assert cfgpp["fid_lo"] == pytest.approx(7.6 - 1.96 * 0.1)
    assert cfgpp["saturation_hi"] == pytest.approx(0.13 + 1.96 * 0.003)
    assert cfgpp["fid_minus_cfg_best"] == pytest.approx(-0.4)
    assert cfgpp["fid_minus_cfg_best_lo"] < -0.4 < cfgpp["fid_minus_cfg_best_hi"] < 0
    assert (cfgpp["versus_cfg"], cfgpp["verdict"], cfgpp["finding"]) == ("win", "holds", 15)
    assert (cfgpp["paper"], cfgpp["claim"]) == (CLAIMS["cfgpp"].paper, CLAIMS["cfgpp"].claim)
    # the interval's claim holds at w = 4 while the method loses at its best scale
    assert (rows.loc["cfg_interval", "versus_cfg"], rows.loc["cfg_interval", "verdict"]) == ("loss", "holds")
    assert rows.loc["cfg_zero_star", "versus_cfg"] == "not distinguishable"
    assert list(rows.reset_index().columns) == list(testbed_table.CSV_COLUMNS)


def test_a_claim_that_fails_or_cannot_be_tested_says_so():
    data = sweeps()
    data["apg"]["fid_classifier"] = [8.9, 13.0]  # significantly worse than cfg's 12 at w = 4
    data["cfg_interval"]["scale"] = [3, 5]  # no w in common with cfg
    data["cg_interval"] = dict(data["cfg_schedule"])  # a testbed method without a claim here
    del data["cfgpp"]
    rows = table(data)
    assert rows.loc["apg", "verdict"] == "does not hold"
    assert rows.loc["cfg_interval", "verdict"] == "not tested (data missing)"
    assert rows.loc["cg_interval", "claim"] == "no claim tested here" and rows.loc["cg_interval", "symbol"] == "s"
    assert "cfgpp" not in rows.index


def test_written_markdown_and_csv(tmp_path):
    metrics, reps = write_run(tmp_path)
    out = tmp_path / "tables"
    md, csv = testbed_table.write_testbed_table(metrics, reps, out / "testbed.md", out / "testbed.csv")
    text = md.read_text()
    lines = [l for l in text.splitlines() if l.startswith("|")]
    assert len(lines) == 2 + 9  # header, rule, one row per method
    assert lines[0].startswith("| method | best scale | FID [95% CI] |") and "paper's claim" in lines[0]
    assert "500 samples per row" in text and "--set testbed" in text
    cfgpp = next(l for l in lines if l.startswith("| cfgpp "))
    assert "| lambda = 0.6 | 7.60 [7.40, 7.80] |" in cfgpp and "| win |" in cfgpp
    assert "Chung et al. 2024" in cfgpp and cfgpp.endswith("holds (finding 15) |")
    written = pd.read_csv(csv)
    assert list(written["method"]) == list(table().index)
    assert written.loc[written["method"] == "autoguidance", "fid_minus_cfg_best"].item() == pytest.approx(-1.0)
