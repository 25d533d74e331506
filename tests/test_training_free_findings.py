"""Findings 20-22 and the table of training-free guidance at matched accuracy
(diffguide.findings.training_free, diffguide.reports.training_free_table) on synthetic runs whose
answers are known: the interpolation in accuracy by hand, each verdict both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from testbed_metrics import frame, replicates, write_run

from diffguide.findings.framework import Columns, Runs
from diffguide.findings.report import main as findings_main
from diffguide.findings.matching import at_level as at_accuracy
from diffguide.findings.matching import crossing as _crossing
from diffguide.findings.training_free import (matched, noisy_classifier_beats_training_free,
                                              second_order_beats_first_order, tfg_beats_its_special_cases)
from diffguide.reports import training_free_table

COLS = Columns.of("classifier")


def rows(scale, accuracy, fid, precision=None, recall=None):
    k = len(scale)
    return {"scale": scale, "accuracy_classifier": accuracy, "fid_classifier": fid,
            "precision_classifier": precision or [0.6] * k, "recall_classifier": recall or [0.5] * k}


def run(**methods) -> Runs:
    """cg: accuracy 0.1 (unguided), 0.5, 0.7, 0.9 at s = 0, 1, 2, 5; FID 30, 20, 22, 30."""
    data = {"cg": rows([0, 1, 2, 5], [0.1, 0.5, 0.7, 0.9], [30, 20, 22, 30])} | methods
    df = frame(data)
    return Runs(df, replicates(df))


def test_the_crossing_interpolates_linearly_between_the_bracketing_scales():
    accuracy, fid = np.array([0.1, 0.3, 0.6, 0.8]), np.array([30.0, 25.0, 30.0, 40.0])
    assert _crossing(accuracy, fid, 0.5) == (pytest.approx(25 + 5 * 0.2 / 0.3), True)
    assert _crossing(accuracy, fid, 0.3) == (25.0, True)  # reached exactly at a scale
    assert _crossing(accuracy, fid, 0.9) == (pytest.approx(45.0), False)  # past the sweep: the last segment
    assert _crossing(accuracy, fid, 0.05) == (pytest.approx(31.25), False)  # below it: the first
    # the first crossing counts where accuracy falls back (strong guidance that breaks the images)
    assert _crossing(np.array([0.1, 0.6, 0.4, 0.8]), np.array([0.0, 1.0, 2.0, 3.0]), 0.5)[0] == pytest.approx(0.8)


def test_replicates_cross_at_their_own_targets():
    accuracy = np.array([[0.1, 0.1], [0.5, 0.6], [0.9, 0.8]])
    values = np.array([[0.0, 0.0], [4.0, 6.0], [8.0, 8.0]])
    assert np.allclose(at_accuracy(accuracy, values, np.array([0.5, 0.7])), [4.0, 7.0])
    assert at_accuracy(accuracy[:, 0], values[:, 0], 0.7) == pytest.approx(6.0)


def test_a_method_matched_to_cgs_accuracy_is_paired_with_cgs_row():
    runs = run(dps=rows([0.5, 1, 2], [0.3, 0.6, 0.8], [25, 30, 40]))
    result = matched(runs, COLS, "dps", COLS.fid, 1.0)  # cg's accuracy at s = 1 is 0.5
    assert result.reached and result.target_accuracy == pytest.approx(0.5)
    assert result.value == pytest.approx(25 + 5 * 0.2 / 0.3)
    assert result.scale == pytest.approx(0.5 + 0.5 * 0.2 / 0.3)
    assert result.difference.value == pytest.approx(result.value - 20)
    assert result.difference.lo > 0  # +8.3 against SEs of 0.1
    unreached = matched(runs, COLS, "dps", COLS.fid, 5.0)  # cg's 0.9 > dps's best 0.8
    assert not unreached.reached and unreached.shortfall.value == pytest.approx(0.8 - 0.9)
    assert unreached.shortfall.holds


def test_the_unguided_row_of_cg_starts_every_sweep():
    # dps's first scale already passes cg's s = 1 accuracy: the crossing is between cg's s = 0 and it
    runs = run(dps=rows([1, 2], [0.7, 0.8], [26, 30]))
    result = matched(runs, COLS, "dps", COLS.fid, 1.0)
    assert result.reached and result.value == pytest.approx(30 + (26 - 30) * (0.5 - 0.1) / (0.7 - 0.1))


def test_finding_20_holds_only_when_cg_wins_against_every_method():
    worse = rows([0.5, 1, 2], [0.3, 0.6, 0.8], [25, 30, 40])
    assert noisy_classifier_beats_training_free(run(dps=worse), COLS).passed
    # mpgd reaches cg's accuracies with lower FID (16 at 0.5, 18 at 0.7, 20 at 0.9): cg does not win there
    better = rows([0.5, 1, 2, 4], [0.3, 0.7, 0.9, 0.95], [15, 18, 20, 25])
    finding = noisy_classifier_beats_training_free(run(dps=worse, mpgd=better), COLS)
    assert not finding.passed and "mpgd: not shown" in finding.figures and "dps: cg better" in finding.figures


def test_finding_21_compares_tfg_with_each_special_case_at_cgs_accuracies():
    # at cg's 0.5, 0.7, 0.9: tfg's FID 25.25, 25.75, 28.67; dps's 28.33, 35.0 and never 0.9
    tfg = rows([0.5, 1, 2], [0.4, 0.8, 0.95], [25, 26, 30])
    dps = rows([0.5, 1, 2], [0.3, 0.6, 0.8], [25, 30, 40])
    finding = tfg_beats_its_special_cases(run(tfg=tfg, dps=dps), COLS)
    assert finding.passed and "only tfg reaches it" in finding.figures
    assert finding.effects[0].value == pytest.approx((25 + 1 * 0.1 / 0.4) - (25 + 5 * 0.2 / 0.3))
    # ugd is as good as tfg at 0.5 (25.25 both): no win there, so the finding fails
    ugd = rows([0.5, 1, 2], [0.4, 0.8, 0.95], [25, 26, 30])
    finding = tfg_beats_its_special_cases(run(tfg=tfg, dps=dps, ugd=ugd), COLS)
    assert not finding.passed and "ugd: not shown" in finding.figures


def test_the_table_and_the_findings_command_read_a_written_run(tmp_path, capsys):
    data = {"cg": rows([0, 1, 2, 5], [0.1, 0.5, 0.7, 0.9], [30, 20, 22, 30]),
            "dps": rows([0.5, 1, 2], [0.3, 0.6, 0.8], [25, 30, 40]),
            "tfg": rows([0.5, 1, 2], [0.4, 0.8, 0.95], [25, 28, 40]),
            "cg_laplace": rows([1, 2, 5], [0.55, 0.75, 0.92], [16, 18, 25])}
    metrics, reps = write_run(tmp_path, data)
    md, csv = training_free_table.write_training_free_table(metrics, reps, tmp_path / "t.md", tmp_path / "t.csv")
    text = md.read_text()
    assert "| s = 5 (0.900) | dps | never reaches it (best accuracy 0.800) |" in text
    assert "20. classifier guidance by the noisy classifier beats each training-free method" in text
    table = pd.read_csv(csv)
    assert list(table.columns) == list(training_free_table.MATCHED_COLUMNS)
    row = table[(table["method"] == "dps") & (table["reference_scale"] == 1)].iloc[0]
    assert row["fid"] == pytest.approx(25 + 5 * 0.2 / 0.3) and row["fid_minus_cg_lo"] > 0
    assert "| s = 1 (0.500) | cg_laplace | s = 0.889 |" in text  # the second-order rule has its rows too
    assert findings_main([str(metrics), "--set", "training_free"]) == 0  # all three findings hold on these rows
    curves = training_free_table.plot_training_free_tradeoff(metrics, tmp_path / "tradeoff.png")
    assert sorted(c.split(",")[0].split(" (")[0] for c in curves) == ["DPS", "TFG", "classifier guidance",
                                                                       "second-order classifier guidance"], curves
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000 and (tmp_path / "tradeoff.pdf").exists()
    assert "PASS  21. TFG beats each of its special cases at matched accuracy" in capsys.readouterr().out


def test_finding_22_holds_when_the_laplace_rule_has_the_lower_fid_at_every_accuracy_of_cg():
    # at cg's 0.5, 0.7, 0.9: FID 30 - 14 (0.4 / 0.45) = 17.56, 16 + 2 (0.15 / 0.2) = 17.5, 18 + 7 (0.15 / 0.17)
    better = rows([1, 2, 5], [0.55, 0.75, 0.92], [16, 18, 25])
    finding = second_order_beats_first_order(run(cg_laplace=better), COLS)
    assert finding.passed and len(finding.effects) == 3
    assert finding.effects[0].value == pytest.approx(30 - 14 * 0.4 / 0.45 - 20)
    # the same accuracies at higher FID (24.67 > 20 at cg's 0.5): not shown
    worse = rows([1, 2, 5], [0.55, 0.75, 0.92], [24, 26, 33])
    assert not second_order_beats_first_order(run(cg_laplace=worse), COLS).passed
    # lower FID where it gets, but it never reaches cg's 0.9: a reference it cannot match counts against it
    short = rows([1, 2, 5], [0.55, 0.75, 0.8], [16, 18, 25])
    finding = second_order_beats_first_order(run(cg_laplace=short), COLS)
    assert not finding.passed and "never reached" in finding.figures
    missing = second_order_beats_first_order(run(), COLS)
    assert not missing.passed and "add cg_laplace to guidance.methods" in missing.figures


def test_the_shipped_table_is_what_the_shipped_metrics_give(tmp_path):
    """docs/training_free.md (the README's source) is the table of docs/training_free_run's metrics
    as the code writes it today: regenerate it with write_training_free_table when either changes."""
    shipped = Path(__file__).resolve().parents[1] / "docs"
    md, _ = training_free_table.write_training_free_table(
        shipped / "training_free_run/metrics.csv", shipped / "training_free_run/metrics_replicates.csv",
        tmp_path / "t.md", tmp_path / "t.csv")
    assert md.read_text() == (shipped / "training_free.md").read_text()
    assert "| s = 10 (0.804) | cg_laplace | s = 10 | 6.18 | -0.56 [-1.51, +0.38]" in md.read_text()
