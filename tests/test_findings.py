"""`python -m diffguide.findings`: each finding passes on metrics where its effect holds and is
significant, fails alone where only it breaks, fails where its effect is present but within the
noise, and says what is missing (and which config key adds it)."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from diffguide import findings
from diffguide.integrity import record

CFG_W = [0, 0.5, 1, 2, 4]
CG_S = [0, 1, 2, 5, 10]
COND_S = [1, 5]
REPLICATES = 100
# The spread of each row's half-sample replicates, i.e. its standard error (n = 500 is even, so
# Shao & Wu's factor r / d is 1): small enough that every effect of sweeps() is significant.
SMALL_SE = {"fid": 0.1, "sfid": 0.1, "is": 0.02, "accuracy": 0.005, "precision": 0.005, "recall": 0.005}


def sweeps():
    """Metrics on which all eight findings hold (classifier features). The Inception columns
    differ on purpose: there FID falls monotonically with w and is lowest unguided for cg."""
    return {
        "cfg": {"scale": CFG_W, "fid_classifier": [10, 9, 8.5, 9.5, 12], "is_classifier": [3.0, 3.5, 4.0, 4.5, 5.0],
                "accuracy_classifier": [0.5, 0.6, 0.7, 0.75, 0.8],
                "precision_classifier": [0.5, 0.55, 0.6, 0.65, 0.7], "recall_classifier": [0.6, 0.58, 0.55, 0.5, 0.4],
                "fid_inception": [130, 125, 120, 115, 110], "is_inception": [2.0, 2.2, 2.4, 2.6, 2.8],
                "precision_inception": [0.4, 0.45, 0.5, 0.55, 0.6], "recall_inception": [0.5, 0.5, 0.5, 0.5, 0.5]},
        "cg": {"scale": CG_S, "fid_classifier": [12, 11, 10.5, 11.5, 13], "is_classifier": [4.0, 4.1, 4.2, 4.3, 4.4],
               "accuracy_classifier": [0.1, 0.3, 0.5, 0.65, 0.7],
               "precision_classifier": [0.61, 0.64, 0.68, 0.72, 0.76],
               "recall_classifier": [0.63, 0.6, 0.55, 0.5, 0.44],
               "fid_inception": [100, 104, 106, 108, 110], "is_inception": [2.0, 2.1, 2.2, 2.3, 2.4],
               "precision_inception": [0.5, 0.55, 0.6, 0.65, 0.7], "recall_inception": [0.6, 0.55, 0.5, 0.45, 0.4]},
        "cond_cg": {"scale": COND_S, "fid_classifier": [8, 9], "is_classifier": [4.1, 4.4],
                    "accuracy_classifier": [0.6, 0.65], "precision_classifier": [0.7, 0.75],
                    "recall_classifier": [0.5, 0.45], "fid_inception": [118, 112], "is_inception": [2.5, 2.6],
                    "precision_inception": [0.6, 0.6], "recall_inception": [0.5, 0.5]},
    }


def frame(data):
    parts = []
    for method, cols in data.items():
        part = pd.DataFrame(cols)
        part.insert(0, "method", method)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    df["num_samples"] = 500
    for column in ("kid_classifier", "sfid_inception", "kid_inception"):
        df[column] = 0.5
    df["inception_weights"] = "fid-helper-tf2015"
    return df


def replicates(df, noise=None, shared=None, seed=0):
    """Half-sample replicates of every metric of every row: value + SE * N(0, 1), independent
    across rows. ``noise`` {(method, metric): se} widens chosen rows; ``shared`` {metric: sd}
    adds one N(0, 1) draw per replicate common to every row, as paired halves share samples."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=REPLICATES)
    rows = []
    for column in [c for c in df.columns if c.split("_")[0] in SMALL_SE]:
        kind = column.split("_")[0]
        for method, scale, value in zip(df["method"], df["scale"], df[column]):
            se = (noise or {}).get((method, kind), SMALL_SE[kind])
            reps = value + se * rng.normal(size=REPLICATES) + (shared or {}).get(kind, 0.0) * common
            rows.append({"method": method, "scale": scale, "sampler": "ddim", "steps": 25, "metric": column,
                         "num_samples": 500, "estimate": value} | {f"r{b}": v for b, v in enumerate(reps)})
    return pd.DataFrame(rows)


def run(tmp_path, capsys, data, *args, noise=None, shared=None):
    df = frame(data)
    df.to_csv(tmp_path / "metrics.csv", index=False)
    record(tmp_path / "metrics.csv")
    replicates(df, noise, shared).to_csv(tmp_path / "metrics_replicates.csv", index=False)
    record(tmp_path / "metrics_replicates.csv")
    code = findings.main([str(tmp_path / "metrics.csv"), *args])
    return code, capsys.readouterr()


def verdicts(out):
    """{finding number: 'PASS'|'FAIL'} from the printed lines."""
    return {int(n): v for v, n in re.findall(r"^(PASS|FAIL)  (\d)\.", out, flags=re.M)}


def line(out, number):
    return next(l for l in out.splitlines() if re.match(rf"(PASS|FAIL)  {number}\.", l))


def slope(scales, values):
    return np.polyfit(scales, values, 1)[0]  # an independent least-squares fit


def reported(text, name):
    """The effect size printed after ``name = `` (to the digits printed)."""
    return float(re.search(re.escape(f"{name} = ") + r"([+-][0-9.]+)", text).group(1))


def test_all_findings_hold_and_each_line_names_its_test_and_effect(tmp_path, capsys):
    code, cap = run(tmp_path, capsys, sweeps())
    assert code == 0, cap.out
    assert verdicts(cap.out) == {i: "PASS" for i in range(1, 9)}
    assert "8/8 findings hold" in cap.out
    data = sweeps()
    for number in range(1, 9):
        assert "Test: " in line(cap.out, number) and "95% CI [" in line(cap.out, number)
        assert re.search(r"\(needs [<>] 0; significant\)", line(cap.out, number))
    assert reported(line(cap.out, 1), "slope of IS per unit w") == pytest.approx(
        slope(CFG_W, data["cfg"]["is_classifier"]), abs=0.01)  # to the printed digit
    assert "; IS 3.00 -> 5.00 over w = 0, 0.5, 1, 2, 4" in line(cap.out, 1)
    assert "least-squares slope on the scale, paired half-sample 95% interval" in line(cap.out, 1)
    assert "lowest FID 8.50 at w = 1 (interior" in line(cap.out, 2)
    assert "FID(w = 0) - min interior FID = +1.50" in line(cap.out, 2)
    assert "FID(w = 4) - min interior FID = +3.50" in line(cap.out, 2)
    assert reported(line(cap.out, 3), "slope of accuracy per unit w") == pytest.approx(
        slope(CFG_W, data["cfg"]["accuracy_classifier"]), abs=0.001)  # to the printed digit
    assert "lowest FID at s > 0 is 10.50 at s = 2 against 12.00 at s = 0: FID(s = 0) - lowest FID at s > 0 = +1.50" \
        in line(cap.out, 4)
    assert "0.650 at s = 5 vs 0.500 unguided (cfg w = 0), best s = 5: best moderate-s accuracy - unguided = +0.150" \
        in line(cap.out, 5)
    assert "FID 10.00 conditional vs 12.00 unconditional: FID(unconditional) - FID(conditional) = +2.00" \
        in line(cap.out, 6)
    assert "lowest moderate cond_cg FID 8.00 at s = 1; lowest other row 10.00 (cfg w = 0)" in line(cap.out, 7)
    assert "= +2.00" in line(cap.out, 7)
    for metric in ("precision", "recall"):
        assert reported(line(cap.out, 8), f"slope of {metric} per unit s") == pytest.approx(
            slope(CG_S, data["cg"][f"{metric}_classifier"]), abs=0.001)  # to the printed digit
    # The table of sweeps, with intervals where metrics.csv has them, comes before the verdicts.
    table = cap.out.split("PASS  1.")[0]
    assert "FID (classifier)" in table and "cond_cg" in table and "12.00" in table


def _set(data, method, column, values):
    data[method][column] = values
    return data


FAILURES = {
    "IS falls with w": (1, lambda d: _set(d, "cfg", "is_classifier", [5.0, 4.5, 4.0, 3.5, 3.0]),
                        "slope of IS per unit w = -"),
    "FID rises monotonically with w": (2, lambda d: _set(d, "cfg", "fid_classifier", [10, 11, 12, 13, 14]),
                                       "at w = 0 (the smallest w"),
    "FID falls monotonically with w": (2, lambda d: _set(d, "cfg", "fid_classifier", [10, 9.8, 9.6, 9.4, 9.2]),
                                       "at w = 4 (the largest w"),
    "FID flat past its interior minimum": (2, lambda d: _set(d, "cfg", "fid_classifier", [10, 9, 8.5, 8.5, 8.5]),
                                           "FID(w = 4) - min interior FID = +0.00"),
    "accuracy does not rise with w": (3, lambda d: _set(d, "cfg", "accuracy_classifier", [0.5, 0.8, 0.6, 0.75, 0.55]),
                                      "slope of accuracy per unit w = -0.010"),
    "cg accuracy falls with s": (4, lambda d: _set(d, "cg", "accuracy_classifier", [0.7, 0.65, 0.5, 0.3, 0.1]),
                                 "slope of accuracy per unit s = -"),
    "cg FID worse at every s > 0": (4, lambda d: _set(d, "cg", "fid_classifier", [11, 11.5, 11.2, 11.8, 13]),
                                    "lowest FID at s > 0 is 11.20 at s = 2 against 11.00 at s = 0"),
    "cond_cg below the unguided conditional model": (
        5, lambda d: _set(d, "cond_cg", "accuracy_classifier", [0.45, 0.5]),
        "best moderate-s accuracy - unguided = +0.000"),
    "conditional model worse unguided": (6, lambda d: _set(d, "cg", "fid_classifier", [9.5, 9, 8.8, 9.2, 9.8]),
                                         "FID 10.00 conditional vs 9.50 unconditional"),
    "cond_cg not the lowest FID": (7, lambda d: _set(d, "cond_cg", "fid_classifier", [10.8, 11]),
                                   "lowest moderate cond_cg FID 10.80 at s = 1; lowest other row 10.00 (cfg w = 0)"),
    "precision falls with s": (8, lambda d: _set(d, "cg", "precision_classifier", [0.76, 0.72, 0.68, 0.64, 0.61]),
                               "slope of precision per unit s = -"),
    "recall rises with s": (8, lambda d: _set(d, "cg", "recall_classifier", [0.44, 0.5, 0.55, 0.6, 0.63]),
                            "slope of recall per unit s = +"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_finding_fails_alone(tmp_path, capsys, case):
    number, mutate, figures = FAILURES[case]
    code, cap = run(tmp_path, capsys, mutate(sweeps()))
    assert code == 1
    assert verdicts(cap.out) == {i: ("FAIL" if i == number else "PASS") for i in range(1, 9)}, cap.out
    assert figures in line(cap.out, number)
    assert "7/8 findings hold" in cap.out


# The rows whose noise hides each finding's effect: the point estimates show the effect as in
# sweeps(), but the rows' replicates spread by SE = 3 (FID), 1 (IS) or 0.3 (fractions).
NOT_SIGNIFICANT = {1: [("cfg", "is")], 2: [("cfg", "fid")], 3: [("cfg", "accuracy")], 4: [("cg", "fid")],
                   5: [("cond_cg", "accuracy")], 6: [("cg", "fid")], 7: [("cond_cg", "fid")], 8: [("cg", "recall")]}
WIDE = {"fid": 3.0, "is": 1.0, "accuracy": 0.3, "recall": 0.3}


@pytest.mark.parametrize("number", list(NOT_SIGNIFICANT))
def test_an_effect_within_the_noise_fails(tmp_path, capsys, number):
    noise = {(method, kind): WIDE[kind] for method, kind in NOT_SIGNIFICANT[number]}
    code, cap = run(tmp_path, capsys, sweeps(), noise=noise)
    assert code == 1 and verdicts(cap.out)[number] == "FAIL", cap.out
    assert "interval includes 0: not significant" in line(cap.out, number)
    assert "wrong sign" not in line(cap.out, number)  # the point estimates still show the effect


def test_paired_replicates_let_shared_noise_cancel(tmp_path, capsys):
    """Rows evaluated on the same halves share their noise; a difference of two rows keeps only
    what differs. A large shared component leaves finding 6 significant; the same spread drawn
    independently per row (unpaired) hides it."""
    data = _set(sweeps(), "cg", "fid_classifier", [10.5, 10, 9.8, 10.2, 10.8])  # 0.5 above cfg w = 0
    code, cap = run(tmp_path, capsys, data, shared={"fid": 2.0})
    assert verdicts(cap.out)[6] == "PASS", line(cap.out, 6)
    code, cap = run(tmp_path, capsys, data, noise={("cg", "fid"): 2.0, ("cfg", "fid"): 2.0})
    assert verdicts(cap.out)[6] == "FAIL" and "not significant" in line(cap.out, 6)


def test_too_few_cfg_scales_names_cfg_scales(tmp_path, capsys):
    data = sweeps()
    data["cfg"] = {k: v[:2] for k, v in data["cfg"].items()}  # w = 0, 0.5
    code, cap = run(tmp_path, capsys, data)
    assert code == 1
    for number in (1, 2, 3):
        assert verdicts(cap.out)[number] == "FAIL"
        assert "cfg has" in line(cap.out, number) and "at 2 scale(s) (w = 0, 0.5)" in line(cap.out, number)
        assert "add scales to guidance.cfg_scales" in line(cap.out, number)
    assert verdicts(cap.out)[5] == "PASS" and verdicts(cap.out)[6] == "PASS"  # w = 0 is still there


def test_missing_cond_cg_method_names_methods(tmp_path, capsys):
    data = sweeps()
    del data["cond_cg"]
    code, cap = run(tmp_path, capsys, data)
    assert code == 1
    assert verdicts(cap.out) == {1: "PASS", 2: "PASS", 3: "PASS", 4: "PASS", 5: "FAIL", 6: "PASS", 7: "FAIL",
                                 8: "PASS"}
    for number in (5, 7):
        assert "no cond_cg rows in metrics.csv: add cond_cg to guidance.methods" in line(cap.out, number)


def test_missing_unguided_cg_names_cg_scales(tmp_path, capsys):
    data = sweeps()
    data["cg"] = {k: v[1:] for k, v in data["cg"].items()}  # s = 1, 2, 5, 10
    code, cap = run(tmp_path, capsys, data)
    assert code == 1 and verdicts(cap.out)[4] == "FAIL" and verdicts(cap.out)[6] == "FAIL"
    for number in (4, 6):
        assert "no cg row at s = 0" in line(cap.out, number) and "add 0 to guidance.cg_scales" in line(cap.out, number)


def test_missing_baseline_or_moderate_scale_for_cond_cg(tmp_path, capsys):
    data = sweeps()
    data["cfg"] = {k: v[1:] for k, v in data["cfg"].items()}  # no w = 0
    code, cap = run(tmp_path, capsys, data)
    for number in (5, 6, 7):
        assert verdicts(cap.out)[number] == "FAIL" and "add 0 to guidance.cfg_scales" in line(cap.out, number)

    data = _set(_set(sweeps(), "cond_cg", "scale", [10, 20]), "cond_cg", "accuracy_classifier", [0.9, 0.95])
    code, cap = run(tmp_path, capsys, data)
    assert code == 1 and verdicts(cap.out)[5] == "FAIL" and verdicts(cap.out)[7] == "FAIL"
    for number in (5, 7):
        assert "no cond_cg row at 0 < s <= 5 (have s = 10, 20)" in line(cap.out, number)
        assert "guidance.cond_cg_scales" in line(cap.out, number)


def test_large_s_cond_cg_rows_count_among_the_others_in_table_4(tmp_path, capsys):
    data = sweeps()
    data["cond_cg"] = {k: v + [v[-1]] for k, v in data["cond_cg"].items()}
    data["cond_cg"]["scale"][-1] = 10
    data["cond_cg"]["fid_classifier"][-1] = 7.0  # s = 10, beyond moderate, beats s = 1's 8.0
    code, cap = run(tmp_path, capsys, data)
    assert verdicts(cap.out)[7] == "FAIL" and "lowest other row 7.00 (cond_cg s = 10)" in line(cap.out, 7)


def test_features_inception_reads_inception_columns(tmp_path, capsys):
    code, cap = run(tmp_path, capsys, sweeps(), "--features", "inception")
    assert code == 1
    # Inception FID falls monotonically with w and is lowest unguided for cg, so 2, 4, 6, 7 fail there.
    assert verdicts(cap.out) == {1: "PASS", 2: "FAIL", 3: "PASS", 4: "FAIL", 5: "PASS", 6: "FAIL", 7: "FAIL",
                                 8: "PASS"}
    assert "IS 2.00 -> 2.80" in line(cap.out, 1)
    assert "lowest FID 110.00 at w = 4 (the largest w" in line(cap.out, 2)
    assert "lowest FID at s > 0 is 104.00 at s = 1 against 100.00 at s = 0" in line(cap.out, 4)
    assert "precision 0.500 -> 0.700" in line(cap.out, 8)
    assert "FID (inception)" in cap.out and "130.00" in cap.out


def test_empty_inception_is_says_how_to_fill_it(tmp_path, capsys):
    data = sweeps()
    for method in data:
        data[method]["is_inception"] = [math.nan] * len(data[method]["scale"])
    code, cap = run(tmp_path, capsys, data, "--features", "inception")
    assert verdicts(cap.out)[1] == "FAIL"
    assert "is_inception is empty at w = 0, 0.5, 1, 2, 4" in line(cap.out, 1)
    assert "evaluation.inception_weights" in line(cap.out, 1)
    assert "guidance.cfg_scales" not in line(cap.out, 1)  # the scales are there; the values are not


def test_extra_cfg_sweeps_are_shown_not_checked(tmp_path, capsys):
    data = sweeps()
    data["cfg_p0.5"] = {k: (v[:3] if k != "scale" else [0, 1, 4]) for k, v in data["cfg"].items()}
    data["cfg_p0.5"]["fid_classifier"] = [50, 40, 30]
    code, cap = run(tmp_path, capsys, data)
    assert code == 0 and "8/8 findings hold" in cap.out
    assert "cfg_p0.5 (info)" in cap.out and "50.00" in cap.out


def test_rows_of_different_sample_counts_are_not_paired(tmp_path, capsys):
    df = frame(sweeps())
    df.to_csv(tmp_path / "metrics.csv", index=False)
    record(tmp_path / "metrics.csv")
    reps = replicates(df)
    reps.loc[(reps["method"] == "cg") & (reps["scale"] == 0), "num_samples"] = 400
    reps.to_csv(tmp_path / "metrics_replicates.csv", index=False)
    record(tmp_path / "metrics_replicates.csv")
    assert findings.main([str(tmp_path / "metrics.csv")]) == 1
    out = capsys.readouterr().out
    assert "different sample counts [400, 500]" in line(out, 6) and verdicts(out)[6] == "FAIL"


def test_missing_or_unreadable_csv_exits_2(tmp_path, capsys):
    assert findings.main([str(tmp_path / "absent.csv")]) == 2
    assert "make run" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert findings.main([str(empty)]) == 2  # no checksum: not a file the pipeline wrote
    assert f"{empty} has no checksum file empty.csv.sha256" in capsys.readouterr().err
    record(empty)
    assert findings.main([str(empty)]) == 2
    assert "make run" in capsys.readouterr().err
    empty.write_text("method,scale\n")  # changed after its checksum was written
    assert findings.main([str(empty)]) == 2
    assert f"{empty} does not match its checksum" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    record(wrong)
    assert findings.main([str(wrong)]) == 2
    assert "no method, scale column" in capsys.readouterr().err
    frame(sweeps()).to_csv(tmp_path / "metrics.csv", index=False)  # without its replicates beside it
    record(tmp_path / "metrics.csv")
    assert findings.main([str(tmp_path / "metrics.csv")]) == 2
    assert "metrics_replicates.csv" in capsys.readouterr().err


def test_replicates_can_be_named_explicitly(tmp_path, capsys):
    df = frame(sweeps())
    df.to_csv(tmp_path / "metrics.csv", index=False)
    record(tmp_path / "metrics.csv")
    replicates(df).to_csv(tmp_path / "elsewhere.csv", index=False)
    record(tmp_path / "elsewhere.csv")
    assert findings.main([str(tmp_path / "metrics.csv"), "--replicates", str(tmp_path / "elsewhere.csv")]) == 0


def test_finding_functions_return_results():
    df = frame(sweeps())
    results = findings.check(df, replicates(df))
    assert [type(r) for r in results] == [findings.Finding] * 8
    assert all(r.passed for r in results)
    assert findings.MODERATE_SCALE == 5
    moved = df.copy()
    moved.loc[moved["method"] == "cond_cg", "scale"] = [1, 6]  # the helpful s = 5 is no longer moderate
    moved.loc[moved["method"] == "cond_cg", "accuracy_classifier"] = [0.4, 0.9]
    reps = replicates(moved)
    runs = findings.Runs(moved, reps)
    assert not findings.cg_conditional_moderate(runs, findings.Columns.of("classifier")).passed
