"""`python -m diffguide.findings`: each finding passes on metrics where its effect holds and is
significant, fails alone where only it breaks, fails where its effect is present but within the
noise, and says what is missing (and which config key adds it)."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from diffguide.base.integrity import record
from diffguide.findings import framework, papers, report

CFG_W = [0, 0.5, 1, 2, 4]
CG_S = [0, 1, 2, 5, 10]
COND_S = [1, 5]
REPLICATES = 100
# The spread of each row's half-sample replicates, i.e. its standard error (n = 500 is even, so
# Shao & Wu's factor r / d is 1): small enough that every effect of sweeps() is significant.
SMALL_SE = {"fid": 0.1, "sfid": 0.1, "is": 0.02, "accuracy": 0.005, "precision": 0.005, "recall": 0.005,
            "reference": 0.005}
SDG_G = [0, 1, 2, 4]
COUNT = 11  # findings 1-8 (H&S, D&N) and 9-11 (findings_sdg)



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
        # Closest guided pair in accuracy: gamma = 1 (0.33) and s = 1 (0.3); FID 11 vs 11 is not distinguishable.
        "sdg_text": {"scale": SDG_G, "fid_classifier": [12, 11, 10.5, 11], "is_classifier": [4.0, 4.1, 4.2, 4.3],
                     "accuracy_classifier": [0.1, 0.33, 0.55, 0.75], "precision_classifier": [0.6, 0.65, 0.7, 0.75],
                     "recall_classifier": [0.6, 0.55, 0.5, 0.45], "fid_inception": [100, 102, 104, 106],
                     "is_inception": [2.0, 2.1, 2.2, 2.3], "precision_inception": [0.5, 0.55, 0.6, 0.65],
                     "recall_inception": [0.6, 0.55, 0.5, 0.45]},
        "sdg_image": {"scale": SDG_G, "fid_classifier": [12, 11.5, 11, 11.5], "is_classifier": [4.0, 4.1, 4.2, 4.3],
                      "accuracy_classifier": [0.1, 0.3, 0.5, 0.7], "precision_classifier": [0.6, 0.65, 0.7, 0.75],
                      "recall_classifier": [0.6, 0.55, 0.5, 0.45],
                      "reference_similarity_classifier": [0.3, 0.4, 0.5, 0.6],
                      "fid_inception": [100, 102, 104, 106], "is_inception": [2.0, 2.1, 2.2, 2.3],
                      "precision_inception": [0.5, 0.55, 0.6, 0.65], "recall_inception": [0.6, 0.55, 0.5, 0.45]},
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
            if kind == "reference" and pd.isna(value):
                continue  # only sdg_image's rows have a reference
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
    code = report.main([str(tmp_path / "metrics.csv"), *args])
    return code, capsys.readouterr()


def verdicts(out):
    """{finding number: 'PASS'|'FAIL'|'SKIP'} from the printed lines."""
    return {int(n): v for v, n in re.findall(r"^(PASS|FAIL|SKIP)  (\d+)\.", out, flags=re.M)}


def line(out, number):
    return next(l for l in out.splitlines() if re.match(rf"(PASS|FAIL|SKIP)  {number}\.", l))


def slope(scales, values):
    return np.polyfit(scales, values, 1)[0]  # an independent least-squares fit


def reported(text, name):
    """The effect size printed after ``name = `` (to the digits printed)."""
    return float(re.search(re.escape(f"{name} = ") + r"([+-][0-9.]+)", text).group(1))


def test_all_findings_hold_and_each_line_names_its_test_and_effect(tmp_path, capsys):
    code, cap = run(tmp_path, capsys, sweeps())
    assert code == 0, cap.out
    assert verdicts(cap.out) == {i: "PASS" for i in range(1, COUNT + 1)}
    assert f"{COUNT}/{COUNT} findings hold" in cap.out
    data = sweeps()
    for number in range(1, COUNT + 1):
        assert "Test: " in line(cap.out, number) and "95% CI [" in line(cap.out, number)
        if number != 11:  # a measured result, not a claim with a side
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
    assert reported(line(cap.out, 9), "slope of accuracy per unit gamma") == pytest.approx(
        slope(SDG_G, data["sdg_text"]["accuracy_classifier"]), abs=0.001)
    assert reported(line(cap.out, 10), "slope of reference similarity per unit gamma") == pytest.approx(
        slope(SDG_G, data["sdg_image"]["reference_similarity_classifier"]), abs=0.001)
    assert ("sdg_text's FID is not distinguishable from cg's at matched accuracy (11.00 at gamma = 1 vs 11.00 at "
            "s = 1, difference +0.00, 95% CI [") in line(cap.out, 11)
    assert "accuracy 0.330 vs 0.300 (gap +0.030, 95% CI [" in line(cap.out, 11)
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
    "sdg_text accuracy falls with gamma": (9, lambda d: _set(d, "sdg_text", "accuracy_classifier",
                                                            [0.1, 0.35, 0.3, 0.05]),
                                           "slope of accuracy per unit gamma = -"),
    "sdg_image similarity falls with gamma": (10, lambda d: _set(d, "sdg_image", "reference_similarity_classifier",
                                                                 [0.6, 0.5, 0.4, 0.3]),
                                              "slope of reference similarity per unit gamma = -"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_finding_fails_alone(tmp_path, capsys, case):
    number, mutate, figures = FAILURES[case]
    code, cap = run(tmp_path, capsys, mutate(sweeps()))
    assert code == 1
    assert verdicts(cap.out) == {i: ("FAIL" if i == number else "PASS") for i in range(1, COUNT + 1)}, cap.out
    assert figures in line(cap.out, number)
    assert f"{COUNT - 1}/{COUNT} findings hold" in cap.out


# The rows whose noise hides each finding's effect: the point estimates show the effect as in
# sweeps(), but the rows' replicates spread by SE = 3 (FID), 1 (IS) or 0.3 (fractions).
NOT_SIGNIFICANT = {1: [("cfg", "is")], 2: [("cfg", "fid")], 3: [("cfg", "accuracy")], 4: [("cg", "fid")],
                   5: [("cond_cg", "accuracy")], 6: [("cg", "fid")], 7: [("cond_cg", "fid")], 8: [("cg", "recall")],
                   9: [("sdg_text", "accuracy")], 10: [("sdg_image", "reference")]}
WIDE = {"fid": 3.0, "is": 1.0, "accuracy": 0.3, "recall": 0.3, "reference": 0.3}


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
                                 8: "PASS", 9: "PASS", 10: "PASS", 11: "PASS"}
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
                                 8: "PASS", 9: "PASS", 10: "PASS", 11: "PASS"}
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
    assert code == 0 and f"{COUNT}/{COUNT} findings hold" in cap.out
    assert "cfg_p0.5 (info)" in cap.out and "50.00" in cap.out


def test_rows_of_different_sample_counts_are_not_paired(tmp_path, capsys):
    df = frame(sweeps())
    df.to_csv(tmp_path / "metrics.csv", index=False)
    record(tmp_path / "metrics.csv")
    reps = replicates(df)
    reps.loc[(reps["method"] == "cg") & (reps["scale"] == 0), "num_samples"] = 400
    reps.to_csv(tmp_path / "metrics_replicates.csv", index=False)
    record(tmp_path / "metrics_replicates.csv")
    assert report.main([str(tmp_path / "metrics.csv")]) == 1
    out = capsys.readouterr().out
    assert "different sample counts [400, 500]" in line(out, 6) and verdicts(out)[6] == "FAIL"


def test_missing_or_unreadable_csv_exits_2(tmp_path, capsys):
    assert report.main([str(tmp_path / "absent.csv")]) == 2
    assert "make run" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert report.main([str(empty)]) == 2  # no checksum: not a file the pipeline wrote
    assert f"{empty} has no checksum file empty.csv.sha256" in capsys.readouterr().err
    record(empty)
    assert report.main([str(empty)]) == 2
    assert "make run" in capsys.readouterr().err
    empty.write_text("method,scale\n")  # changed after its checksum was written
    assert report.main([str(empty)]) == 2
    assert f"{empty} does not match its checksum" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    record(wrong)
    assert report.main([str(wrong)]) == 2
    assert "no method, scale column" in capsys.readouterr().err
    frame(sweeps()).to_csv(tmp_path / "metrics.csv", index=False)  # without its replicates beside it
    record(tmp_path / "metrics.csv")
    assert report.main([str(tmp_path / "metrics.csv")]) == 2
    assert "metrics_replicates.csv" in capsys.readouterr().err


def test_replicates_can_be_named_explicitly(tmp_path, capsys):
    df = frame(sweeps())
    df.to_csv(tmp_path / "metrics.csv", index=False)
    record(tmp_path / "metrics.csv")
    replicates(df).to_csv(tmp_path / "elsewhere.csv", index=False)
    record(tmp_path / "elsewhere.csv")
    assert report.main([str(tmp_path / "metrics.csv"), "--replicates", str(tmp_path / "elsewhere.csv")]) == 0


def test_finding_functions_return_results():
    df = frame(sweeps())
    results = report.check(df, replicates(df))
    assert [type(r) for r in results] == [framework.Finding] * COUNT
    assert all(r.passed for r in results)
    assert framework.MODERATE_SCALE == 5
    moved = df.copy()
    moved.loc[moved["method"] == "cond_cg", "scale"] = [1, 6]  # the helpful s = 5 is no longer moderate
    moved.loc[moved["method"] == "cond_cg", "accuracy_classifier"] = [0.4, 0.9]
    reps = replicates(moved)
    runs = framework.Runs(moved, reps)
    assert not papers.cg_conditional_moderate(runs, framework.Columns.of("classifier")).passed


# ---------------------------------------------------------------------------------------------
# Exact reports of hand-made runs. Each row's two half-sample replicates are value + e and
# value - e, and every row has n = 500 samples (Shao & Wu's factor r / d is 1), so the standard
# error of a statistic linear in the rows is |statistic(e)|, and its 95% interval is
# value -+ 1.96 |statistic(e)|: every number below is worked out by hand from TINY and SPREAD.

TINY = {
    "cfg": {"scale": [0, 1, 2], "fid_classifier": [10.0, 8.0, 9.0], "is_classifier": [3.0, 3.5, 4.0],
            "accuracy_classifier": [0.5, 0.6, 0.7], "precision_classifier": [0.6, 0.6, 0.6],
            "recall_classifier": [0.5, 0.5, 0.5]},
    "cg": {"scale": [0, 1, 2], "fid_classifier": [12.0, 10.5, 11.0], "is_classifier": [4.0, 4.0, 4.0],
           "accuracy_classifier": [0.2, 0.4, 0.6], "precision_classifier": [0.6, 0.65, 0.7],
           "recall_classifier": [0.6, 0.55, 0.5]},
    "cond_cg": {"scale": [1, 5, 10], "fid_classifier": [7.0, 7.5, 11.0], "is_classifier": [4.0, 4.0, 4.0],
                "accuracy_classifier": [0.7, 0.65, 0.9], "precision_classifier": [0.7, 0.7, 0.7],
                "recall_classifier": [0.5, 0.5, 0.5]},
    "sdg_text": {"scale": [0, 1, 2], "fid_classifier": [12.0, 10.0, 10.8], "is_classifier": [4.0, 4.0, 4.0],
                 "accuracy_classifier": [0.2, 0.45, 0.62], "precision_classifier": [0.6, 0.6, 0.6],
                 "recall_classifier": [0.5, 0.5, 0.5]},
    "sdg_image": {"scale": [0, 1, 2], "fid_classifier": [12.0, 11.0, 11.5], "is_classifier": [4.0, 4.0, 4.0],
                  "accuracy_classifier": [0.1, 0.3, 0.5], "precision_classifier": [0.6, 0.6, 0.6],
                  "recall_classifier": [0.5, 0.5, 0.5], "reference_similarity_classifier": [0.3, 0.4, 0.5]},
}
# e of (method, column, scale); 0 elsewhere.
SPREAD = {("cfg", "is_classifier", 2): 0.1,        # slope SE 0.5 * 0.1 = 0.05: [0.50 -+ 0.098]
          ("cfg", "fid_classifier", 0): 0.5,       # finding 2's left margin and finding 6: SE 0.5
          ("cfg", "accuracy_classifier", 0): 0.02,  # slope SE 0.5 * 0.02 = 0.01
          ("cg", "fid_classifier", 1): 0.25,       # 12 - (10.5 -+ 0.25): SE 0.25
          ("cg", "precision_classifier", 2): 0.01,  # slope SE 0.005
          ("cond_cg", "accuracy_classifier", 1): 0.03,  # (0.7 -+ 0.03) - (0.5 -+ 0.02): SE 0.01
          ("cond_cg", "fid_classifier", 1): 0.1,   # finding 7: (10 -+ 0.5) - (7 -+ 0.1): SE 0.4
          ("sdg_text", "accuracy_classifier", 2): 0.005,  # finding 9: slope SE 0.0025; finding 11's gap: SE 0.005
          ("sdg_text", "fid_classifier", 2): 0.05,        # finding 11: (10.8 -+ 0.05) - 11: SE 0.05
          ("sdg_image", "reference_similarity_classifier", 2): 0.02}  # finding 10: slope SE 0.01

SLOPE = "least-squares slope on the scale, paired half-sample 95% interval"
# By hand (slope weights over 3 equally spaced scales: -1/2, 0, +1/2 per unit step, here 1):
# 1. IS slope (4 - 3) / 2 = 0.5, SE 0.05, 0.5 -+ 0.098 = [0.402, 0.598].
# 2. margins 10 - 8 = 2 (SE 0.5: [1.020, 2.980]) and 9 - 8 = 1 (SE 0: [1, 1]).
# 3. accuracy slope (0.7 - 0.5) / 2 = 0.1, SE 0.01: [0.0804, 0.1196].
# 4. accuracy slope 0.2, SE 0; FID gain 12 - 10.5 = 1.5, SE 0.25: [1.010, 1.990].
# 5. max(0.7, 0.65) - 0.5 = 0.2 (s = 5 is moderate, 10 is not); replicates 0.73 - 0.52 and 0.67 - 0.48: SE 0.01.
# 6. 12 - 10 = 2, replicates 12 - 10.5 and 12 - 9.5: SE 0.5.
# 7. lowest other row is cfg w = 0 (10; cg's lowest is 10.5, cond_cg s = 10 is 11): 10 - 7 = 3; replicates
#    min(10.75, 10.5, 11) - 7.1 = 3.4 and min(10.25, 9.5, 11) - 6.9 = 2.6: SE 0.4, 3 -+ 0.784.
# 8. precision slope 0.05, SE 0.005: [0.0402, 0.0598]; recall slope -0.05, SE 0.
# 9. sdg_text accuracy slope (0.62 - 0.2) / 2 = 0.21, SE 0.0025: [0.2051, 0.2149].
# 10. sdg_image reference similarity slope (0.5 - 0.3) / 2 = 0.1, SE 0.01: [0.0804, 0.1196].
# 11. accuracy gaps of guided pairs (gamma, s): (1, 1) 0.05, (1, 2) 0.15, (2, 1) 0.22, (2, 2) 0.02: the pair is
#     gamma = 2, s = 2. FID 10.8 - 11 = -0.2, SE 0.05: [-0.298, -0.102], lower; accuracy gap 0.62 - 0.6 = 0.02,
#     SE 0.005: [0.0102, 0.0298].
MATCHED = ("FID(sdg_text) - FID(cg) at the guided pair (gamma > 0, s > 0) of closest accuracy, paired half-sample "
           "95% interval; a measured result, reported whichever way it falls")
TINY_LINES = [
    "PASS  1. IS rises with w (cfg). Test: " + SLOPE + ". slope of IS per unit w = +0.50, 95% CI [+0.40, +0.60] "
    "(needs > 0; significant); IS 3.00 -> 4.00 over w = 0, 1, 2",
    "PASS  2. FID is lowest at an interior w and rises past it (cfg). Test: margins of the lowest interior FID "
    "below both ends, paired half-sample 95% intervals. lowest FID 8.00 at w = 1 (interior of w = 0, 1, 2); "
    "FID(w = 0) - min interior FID = +2.00, 95% CI [+1.02, +2.98] (needs > 0; significant); "
    "FID(w = 2) - min interior FID = +1.00, 95% CI [+1.00, +1.00] (needs > 0; significant)",
    "PASS  3. accuracy rises with w (cfg). Test: " + SLOPE + ". slope of accuracy per unit w = +0.100, "
    "95% CI [+0.080, +0.120] (needs > 0; significant); accuracy 0.500 -> 0.700 over w = 0, 1, 2",
    "PASS  4. cg on the unconditional model raises accuracy with s and improves FID (cg). Test: " + SLOPE
    + "; FID(s = 0) - lowest FID at s > 0, paired half-sample 95% interval. slope of accuracy per unit s = +0.200, "
    "95% CI [+0.200, +0.200] (needs > 0; significant); accuracy 0.200 -> 0.600 over s = 0, 1, 2; lowest FID at "
    "s > 0 is 10.50 at s = 1 against 12.00 at s = 0: FID(s = 0) - lowest FID at s > 0 = +1.50, "
    "95% CI [+1.01, +1.99] (needs > 0; significant)",
    "PASS  5. cg at a moderate s (0 < s <= 5) raises the conditional model's accuracy (cond_cg). Test: highest "
    "moderate-s accuracy - unguided accuracy, paired half-sample 95% interval. accuracy 0.700 at s = 1, 0.650 at "
    "s = 5 vs 0.500 unguided (cfg w = 0), best s = 1: best moderate-s accuracy - unguided = +0.200, "
    "95% CI [+0.180, +0.220] (needs > 0; significant)",
    "PASS  6. unguided, the conditional model has a lower FID than the unconditional one (cfg w = 0 vs cg s = 0). "
    "Test: FID(cg s = 0) - FID(cfg w = 0), paired half-sample 95% interval. FID 10.00 conditional vs 12.00 "
    "unconditional: FID(unconditional) - FID(conditional) = +2.00, 95% CI [+1.02, +2.98] (needs > 0; significant)",
    "PASS  7. cg of the conditional model at a moderate s (0 < s <= 5) has the lowest FID of Table 4. Test: lowest "
    "FID of the other Table 4 rows - lowest moderate cond_cg FID, paired half-sample 95% interval. lowest moderate "
    "cond_cg FID 7.00 at s = 1; lowest other row 10.00 (cfg w = 0): lowest other FID - lowest moderate cond_cg "
    "FID = +3.00, 95% CI [+2.22, +3.78] (needs > 0; significant)",
    "PASS  8. as s grows (cg), precision rises and recall falls. Test: " + SLOPE + ", one for each. slope of "
    "precision per unit s = +0.050, 95% CI [+0.040, +0.060] (needs > 0; significant); precision 0.600 -> 0.700 over "
    "s = 0, 1, 2; slope of recall per unit s = -0.050, 95% CI [-0.050, -0.050] (needs < 0; significant); "
    "recall 0.600 -> 0.500 over s = 0, 1, 2",
    "PASS  9. accuracy rises with gamma (sdg_text). Test: " + SLOPE + ". slope of accuracy per unit gamma = +0.210, "
    "95% CI [+0.205, +0.215] (needs > 0; significant); accuracy 0.200 -> 0.620 over gamma = 0, 1, 2",
    "PASS  10. similarity to the reference image rises with gamma (sdg_image). Test: " + SLOPE + ". slope of "
    "reference similarity per unit gamma = +0.100, 95% CI [+0.080, +0.120] (needs > 0; significant); reference "
    "similarity 0.300 -> 0.500 over gamma = 0, 1, 2",
    "PASS  11. sdg_text vs classifier guidance: FID at matched accuracy (sdg_text, cg). Test: " + MATCHED + ". "
    "sdg_text's FID is lower than cg's at matched accuracy (10.80 at gamma = 2 vs 11.00 at s = 2, difference -0.20, "
    "95% CI [-0.30, -0.10]); accuracy 0.620 vs 0.600 (gap +0.020, 95% CI [+0.010, +0.030]), the closest in accuracy "
    "of gamma = 1, 2 and s = 1, 2",
]


def tiny(changes=None):
    """TINY with {(method, column): values} changed, as a metrics frame (n = 500 per row)."""
    data = {method: dict(columns) for method, columns in TINY.items()}
    for (method, column), values in (changes or {}).items():
        data[method][column] = values
    return frame(data)


def two_replicates(df, spread=SPREAD, num_samples=None):
    """Rows value + e and value - e (columns r0, r1) of every metric of every row of ``df``."""
    rows = []
    for column in [c for c in df.columns if c.split("_")[0] in ("fid", "is", "accuracy", "precision", "recall",
                                                                 "reference")]:
        for method, scale, value in zip(df["method"], df["scale"], df[column]):
            if column == framework.REFERENCE_SIMILARITY and pd.isna(value):
                continue  # only sdg_image's rows have a reference
            e = spread.get((method, column, scale), 0.0)
            n = (num_samples or {}).get((method, column, scale), 500)
            rows.append({"method": method, "scale": scale, "metric": column, "num_samples": n,
                         "estimate": value, "r0": value + e, "r1": value - e})
    return pd.DataFrame(rows)


def lines_of(results):
    """The verdict lines main prints for check()'s results."""
    return [f"{'PASS' if f.passed else 'FAIL'}  {f.number}. {f.name}. Test: {f.test}. {f.figures}" for f in results]


def write_run(tmp_path, df, reps):
    df.to_csv(tmp_path / "metrics.csv", index=False)
    record(tmp_path / "metrics.csv")
    reps.to_csv(tmp_path / "metrics_replicates.csv", index=False)
    record(tmp_path / "metrics_replicates.csv")
    return tmp_path / "metrics.csv"


def test_exact_findings_of_a_hand_made_run():
    df = tiny()
    assert lines_of(report.check(df, two_replicates(df))) == TINY_LINES
    assert lines_of(report.check(df, two_replicates(df), "classifier")) == TINY_LINES  # the default, named


def test_exact_report_and_exit_code_of_the_cli(tmp_path, capsys):
    df = tiny()
    path = write_run(tmp_path, df, two_replicates(df))
    assert report.main([str(path)]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    header = (f"Sweeps in {path} (FID, IS, precision and recall from classifier features, accuracy from the "
              "evaluation classifier; 95% intervals in brackets):")
    assert cap.out == "\n".join([header, report.sweep_table(df, "classifier"), "", *TINY_LINES, "",
                                 "11/11 findings hold (each significant at 95%)"]) + "\n"
    assert "FID (classifier)" in cap.out and "12.00" in cap.out  # the table is the classifier features'


def test_cli_exit_code_and_summary_when_findings_fail(tmp_path, capsys):
    df = tiny({("cfg", "is_classifier"): [4.0, 3.5, 3.0], ("cg", "recall_classifier"): [0.5, 0.55, 0.6]})
    path = write_run(tmp_path, df, two_replicates(df, {}))
    assert report.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert line(out, 1) == ("FAIL  1. IS rises with w (cfg). Test: " + SLOPE + ". slope of IS per unit w = -0.50, "
                            "95% CI [-0.50, -0.50] (needs > 0; wrong sign); IS 4.00 -> 3.00 over w = 0, 1, 2")
    assert line(out, 8).startswith("FAIL  8. as s grows (cg), precision rises and recall falls.")
    assert line(out, 8).endswith("slope of recall per unit s = +0.050, 95% CI [+0.050, +0.050] (needs < 0; "
                                 "wrong sign); recall 0.500 -> 0.600 over s = 0, 1, 2")
    assert verdicts(out) == {1: "FAIL", 2: "PASS", 3: "PASS", 4: "PASS", 5: "PASS", 6: "PASS", 7: "PASS", 8: "FAIL",
                             9: "PASS", 10: "PASS", 11: "PASS"}
    assert out.endswith("\n\n9/11 findings hold (each significant at 95%)\n")


def table_rows():
    """metrics.csv rows in no particular order: the three checked methods, two p_uncond sweeps of
    cfg (shown, marked informational), a method no plugin registers and a cg_p<p> (cg has no
    p_uncond variants), both left out. No recall_classifier column at all; IS has only a lower
    bound; the Inception precision is missing too."""
    nan = math.nan
    columns = ["method", "scale", "fid_classifier", "fid_classifier_lo", "fid_classifier_hi", "is_classifier",
               "is_classifier_lo", "precision_classifier", "precision_classifier_lo", "precision_classifier_hi",
               "accuracy_classifier", "accuracy_classifier_lo", "accuracy_classifier_hi", "fid_inception",
               "fid_inception_lo", "fid_inception_hi", "is_inception", "recall_inception", "recall_inception_lo",
               "recall_inception_hi"]
    rows = [
        ["cg", 1.0, "-", nan, nan, 4.0, 3.5, 0.55, nan, nan, 0.4, 0.35, 0.45, 101.0, nan, nan, nan, nan, nan, nan],
        ["mystery", 0.0, 1.0, 0.5, 1.5, 9.0, 8.0, 0.9, 0.8, 1.0, 0.9, 0.8, 1.0, 1.0, nan, nan, nan, 0.5, 0.4, 0.6],
        ["cfg_p0.5", 1.0, 25.0, 24.0, 26.0, 5.0, nan, 0.7, nan, nan, 0.8, nan, nan, 120.0, nan, nan, nan, nan, nan,
         nan],
        ["cfg", 0.5, 9.0, nan, 10.0, 3.5, 3.25, 0.7, 0.65, nan, 0.6, 0.55, 0.65, 110.5, 109.0, 112.0, 2.5, nan, nan,
         nan],
        ["cfg", 0.0, 12.3456, 11.0, 13.7, 3.14159, 3.0, 0.61234, 0.6, 0.625, 0.5, 0.45, 0.55, 130.0, 128.0, 132.0,
         2.25, 0.45, 0.4, 0.5],
        ["cond_cg", 10.0, 5.0, 4.0, 6.0, 10.0, 9.0, 0.9, 0.85, 0.95, 0.95, 0.9, 1.0, 90.0, 89.0, 91.0, nan, nan, nan,
         nan],
        ["cg_p0.5", 0.0, 1.0, 0.5, 1.5, 9.0, 8.0, 0.9, 0.8, 1.0, 0.9, 0.8, 1.0, 1.0, nan, nan, nan, 0.5, 0.4, 0.6],
        ["cfg_p0.1", 0.0, 30.0, nan, nan, 6.0, nan, 0.75, nan, nan, 0.85, nan, nan, 140.0, nan, nan, nan, nan, nan,
         nan],
        ["cg", 0.0, 20.0, 18.5, 21.5, 2.0, 1.5, 0.5, 0.45, 0.55, nan, nan, nan, 100.0, 99.5, 100.5, 1.5, 0.3, nan,
         nan],
    ]
    return pd.DataFrame(rows, columns=columns)


def test_sweep_table_exact_values_and_intervals():
    """Registry order (cfg, cg, cond_cg) then the informational sweeps by name, each by scale;
    ``value [lo, hi]`` with FID and IS to 2 digits and fractions to 3; the value alone where a
    bound is missing; nan for a missing column, an empty cell or a cell that is not a number."""
    expected = """\
         method scale     FID (classifier) IS (classifier)            precision recall             accuracy
            cfg     0 12.35 [11.00, 13.70]            3.14 0.612 [0.600, 0.625]    nan 0.500 [0.450, 0.550]
            cfg   0.5                 9.00            3.50                0.700    nan 0.600 [0.550, 0.650]
             cg     0 20.00 [18.50, 21.50]            2.00 0.500 [0.450, 0.550]    nan                  nan
             cg     1                  nan            4.00                0.550    nan 0.400 [0.350, 0.450]
        cond_cg    10    5.00 [4.00, 6.00]           10.00 0.900 [0.850, 0.950]    nan 0.950 [0.900, 1.000]
cfg_p0.1 (info)     0                30.00            6.00                0.750    nan                0.850
cfg_p0.5 (info)     1 25.00 [24.00, 26.00]            5.00                0.700    nan                0.800"""
    assert report.sweep_table(table_rows()) == expected
    assert report.sweep_table(table_rows(), "classifier") == expected


def test_sweep_table_of_inception_features():
    expected = """\
         method scale         FID (inception) IS (inception) precision               recall             accuracy
            cfg     0 130.00 [128.00, 132.00]           2.25       nan 0.450 [0.400, 0.500] 0.500 [0.450, 0.550]
            cfg   0.5 110.50 [109.00, 112.00]           2.50       nan                  nan 0.600 [0.550, 0.650]
             cg     0  100.00 [99.50, 100.50]           1.50       nan                0.300                  nan
             cg     1                  101.00            nan       nan                  nan 0.400 [0.350, 0.450]
        cond_cg    10    90.00 [89.00, 91.00]            nan       nan                  nan 0.950 [0.900, 1.000]
cfg_p0.1 (info)     0                  140.00            nan       nan                  nan                0.850
cfg_p0.5 (info)     1                  120.00            nan       nan                  nan                0.800"""
    assert report.sweep_table(table_rows(), "inception") == expected


# Each finding's name and test, as TINY_LINES print them: the same whether it passes, fails or lacks data.
NAME_TEST = {int(n): (name, test) for n, name, test in
             (re.match(r"PASS  (\d+)\. (.*?)\. Test: (.*?)\. ", l).groups() for l in TINY_LINES)}


def verdict_figures(df, reps=None, features="classifier"):
    """{finding number: (passed, figures)} of check() on ``df`` (replicates from SPREAD by default),
    each finding under its own name and test."""
    results = report.check(df, two_replicates(df) if reps is None else reps, features)
    assert {f.number: (f.name, f.test) for f in results} == NAME_TEST
    return {f.number: (f.passed, f.figures) for f in results}


def test_an_effect_of_exactly_zero_fails_and_the_narrowest_positive_one_passes():
    """An interval that touches 0 is not significant, on either side; one wholly above 0 is,
    however narrow. Replicates without spread give intervals of width 0."""
    flat = tiny({("cfg", "is_classifier"): [3.0, 3.0, 3.0], ("cfg", "fid_classifier"): [10.0, 8.0, 8.0],
                 ("cg", "fid_classifier"): [12.0, 12.0, 13.0], ("cond_cg", "accuracy_classifier"): [0.5, 0.4, 0.9],
                 ("cg", "recall_classifier"): [0.5, 0.5, 0.5], ("cond_cg", "fid_classifier"): [10.0, 11.0, 12.0]})
    got = verdict_figures(flat, two_replicates(flat, {}))
    zero = "95% CI [+0.00, +0.00] (needs > 0; interval includes 0: not significant)"
    assert got[1] == (False, f"slope of IS per unit w = +0.00, {zero}; IS 3.00 -> 3.00 over w = 0, 1, 2")
    assert got[2] == (False, "lowest FID 8.00 at w = 1 (interior of w = 0, 1, 2); FID(w = 0) - min interior FID = "
                             "+2.00, 95% CI [+2.00, +2.00] (needs > 0; significant); FID(w = 2) - min interior FID = "
                             f"+0.00, {zero}")
    assert got[4][0] is False and got[4][1].endswith(
        "lowest FID at s > 0 is 12.00 at s = 1 against 12.00 at s = 0: FID(s = 0) - lowest FID at s > 0 = "
        f"+0.00, {zero}")
    assert got[5] == (False, "accuracy 0.500 at s = 1, 0.400 at s = 5 vs 0.500 unguided (cfg w = 0), best s = 1: "
                             "best moderate-s accuracy - unguided = +0.000, 95% CI [+0.000, +0.000] (needs > 0; "
                             "interval includes 0: not significant)")
    assert got[7] == (False, "lowest moderate cond_cg FID 10.00 at s = 1; lowest other row 10.00 (cfg w = 0): lowest "
                             f"other FID - lowest moderate cond_cg FID = +0.00, {zero}")
    assert got[8][0] is False and got[8][1].endswith(
        "slope of recall per unit s = +0.000, 95% CI [+0.000, +0.000] (needs < 0; interval includes 0: not "
        "significant); recall 0.500 -> 0.500 over s = 0, 1, 2")

    barely = tiny({("cfg", "is_classifier"): [3.0, 3.0, 3.02], ("cg", "recall_classifier"): [0.5, 0.5, 0.498]})
    got = verdict_figures(barely, two_replicates(barely, {}))
    assert got[1] == (True, "slope of IS per unit w = +0.01, 95% CI [+0.01, +0.01] (needs > 0; significant); "
                            "IS 3.00 -> 3.02 over w = 0, 1, 2")
    assert got[8] == (True, "slope of precision per unit s = +0.050, 95% CI [+0.050, +0.050] (needs > 0; significant); "
                            "precision 0.600 -> 0.700 over s = 0, 1, 2; slope of recall per unit s = -0.001, 95% CI "
                            "[-0.001, -0.001] (needs < 0; significant); recall 0.500 -> 0.498 over s = 0, 1, 2")


def test_fid_minimum_at_either_end_names_the_end_and_the_lowest_interior_fid():
    got = verdict_figures(tiny({("cfg", "fid_classifier"): [7.0, 8.0, 9.0]}))
    assert got[2] == (False, "lowest FID 7.00 at w = 0 (the smallest w of w = 0, 1, 2); lowest interior FID 8.00 at "
                             "w = 1; FID(w = 0) - min interior FID = -1.00, 95% CI [-1.98, -0.02] (needs > 0; wrong "
                             "sign); FID(w = 2) - min interior FID = +1.00, 95% CI [+1.00, +1.00] (needs > 0; "
                             "significant)")
    got = verdict_figures(tiny({("cfg", "fid_classifier"): [10.0, 8.0, 7.0]}))
    assert got[2] == (False, "lowest FID 7.00 at w = 2 (the largest w of w = 0, 1, 2); lowest interior FID 8.00 at "
                             "w = 1; FID(w = 0) - min interior FID = +2.00, 95% CI [+1.02, +2.98] (needs > 0; "
                             "significant); FID(w = 2) - min interior FID = -1.00, 95% CI [-1.00, -1.00] (needs > 0; "
                             "wrong sign)")


def test_too_few_scales_names_what_to_fill_and_what_to_add():
    """MIN_SCALES = 3 values; empty cells are named with what fills them, and the scales key
    only when filling them would still leave too few."""
    assert framework.MIN_SCALES == 3
    cases = {
        (3.0, math.nan, 4.0): "cfg has is_classifier at 2 scale(s) (w = 0, 2); this check needs at least 3: "
                              "is_classifier is empty at w = 1: rerun the evaluation of those samples",
        (math.nan, math.nan, math.nan): "cfg has is_classifier at 0 scale(s) (none); this check needs at least 3: "
                                        "is_classifier is empty at w = 0, 1, 2: rerun the evaluation of those samples",
    }
    for values, message in cases.items():
        assert verdict_figures(tiny({("cfg", "is_classifier"): list(values)}))[1] == (False, message)
    two = {column: values[:2] for column, values in TINY["cfg"].items()}  # w = 0, 1
    data = {**TINY, "cfg": two}
    assert verdict_figures(frame(data))[1] == (
        False, "cfg has is_classifier at 2 scale(s) (w = 0, 1); this check needs at least 3: add scales to "
               "guidance.cfg_scales")
    data["cfg"] = {**two, "is_classifier": [3.0, math.nan]}
    assert verdict_figures(frame(data))[1] == (
        False, "cfg has is_classifier at 1 scale(s) (w = 0); this check needs at least 3: is_classifier is empty at "
               "w = 1: rerun the evaluation of those samples; also add scales to guidance.cfg_scales")


def test_missing_columns_name_the_setting_that_fills_them():
    got = verdict_figures(tiny(), features="inception")  # TINY has no Inception FID, IS, precision or recall
    assert got[1] == (False, "metrics.csv has no is_inception column: put NVlabs' inception-2015-12-05.pt (the "
                             "logits head) at evaluation.inception_weights and rerun the evaluation")
    assert got[2] == (False, "metrics.csv has no fid_inception column: set evaluation.inception: true and rerun the "
                             "evaluation")
    assert got[3][0] is True  # accuracy is always the evaluation classifier's
    assert got[8] == (False, "metrics.csv has no precision_inception column: set evaluation.inception: true and rerun "
                             "the evaluation; metrics.csv has no recall_inception column: set evaluation.inception: "
                             "true and rerun the evaluation")
    got = verdict_figures(tiny().drop(columns="fid_classifier"))
    assert got[2] == (False, "metrics.csv has no fid_classifier column: rerun the evaluation of those samples")
    assert got[4] == (False, TINY_LINES[3].split("interval. ", 1)[1].split("; lowest FID")[0]
                      + "; metrics.csv has no fid_classifier column: rerun the evaluation of those samples")


def test_fill_hint_columns_label_and_scales_key():
    assert framework.fill_hint("is_inception") == ("put NVlabs' inception-2015-12-05.pt (the logits head) at "
                                                   "evaluation.inception_weights and rerun the evaluation")
    assert framework.fill_hint("fid_inception") == "set evaluation.inception: true and rerun the evaluation"
    assert framework.fill_hint("is_classifier") == "rerun the evaluation of those samples"
    cols = framework.Columns.of("inception")
    assert cols == framework.Columns("fid_inception", "is_inception", "precision_inception", "recall_inception",
                                    "accuracy_classifier")
    assert [cols.label(c) for c in ("fid_inception", "is_inception", "accuracy_classifier", "precision_inception",
                                    "recall_inception")] == ["FID", "IS", "accuracy", "precision", "recall"]
    with pytest.raises(KeyError):
        cols.label("fid_classifier")
    assert [framework.scales_key(m) for m in ("cfg", "cg", "cond_cg", "cfg_p0.5", "mystery")] == [
        "guidance.cfg_scales", "guidance.cg_scales", "guidance.cond_cg_scales", "guidance.cfg_scales",
        "guidance.methods"]
    assert [framework.is_registered(m) for m in ("cfg", "cfg_p0.5", "cg_p0.5", "mystery")] == [True, True, False, False]


def test_missing_rows_replicates_and_unpaired_counts_name_the_fix():
    df = tiny()
    runs = framework.Runs(df, two_replicates(df))
    with pytest.raises(framework.MissingData) as missing:
        runs.sweep("mystery", "fid_classifier")
    assert str(missing.value) == ("no mystery rows in metrics.csv: add mystery to guidance.methods (and its scales "
                                  "to guidance.methods)")
    no_cond = df[df["method"] != "cond_cg"]
    got = verdict_figures(no_cond, two_replicates(no_cond))
    assert got[5] == got[7] == (False, "no cond_cg rows in metrics.csv: add cond_cg to guidance.methods (and its "
                                       "scales to guidance.cond_cg_scales)")

    reps = two_replicates(df)
    reps = reps[~((reps["method"] == "cfg") & (reps["metric"] == "is_classifier") & (reps["scale"] == 1))]
    assert verdict_figures(df, reps)[1] == (False, "metrics_replicates.csv lacks the half-sample replicates of "
                                                   "is_classifier for cfg: rerun the evaluation (snakemake reruns it)")
    reps = two_replicates(df, SPREAD, {("cfg", "is_classifier", 2): 400})
    assert verdict_figures(df, reps)[1] == (False, "cfg's rows of is_classifier have different sample counts "
                                                   "[400, 500], so their halves are not paired; evaluate every row "
                                                   "with one sampling.num_samples")
    cfg = framework.Runs(df, two_replicates(df)).sweep("cfg", "fid_classifier")
    cg = framework.Runs(df, two_replicates(df, SPREAD, {("cg", "fid_classifier", s): 400 for s in (0, 1, 2)})).sweep(
        "cg", "fid_classifier")
    with pytest.raises(framework.MissingData) as missing:
        framework.effect("gap", "FID", lambda u, c: u[0] - c[0], [cg, cfg])
    assert str(missing.value) == ("the rows compared have different sample counts (cg 400, cfg 500), so their halves "
                                  "are not paired and they cannot be compared; evaluate every row with one "
                                  "sampling.num_samples")


def test_missing_baselines_and_guided_scales_name_the_scales_key():
    got = verdict_figures(tiny({("cg", "fid_classifier"): [math.nan, 10.5, 11.0]}))
    accuracy_figures = ("slope of accuracy per unit s = +0.200, 95% CI [+0.200, +0.200] (needs > 0; significant); "
                        "accuracy 0.200 -> 0.600 over s = 0, 1, 2")
    assert got[4] == (False, f"{accuracy_figures}; fid_classifier is empty at cg s = 0 (the unguided baseline): "
                             "rerun the evaluation of those samples")
    got = verdict_figures(tiny({("cg", "scale"): [1, 2, 3]}))
    assert got[4] == (False, "slope of accuracy per unit s = +0.200, 95% CI [+0.200, +0.200] (needs > 0; "
                             "significant); accuracy 0.200 -> 0.600 over s = 1, 2, 3; no cg row at s = 0 (the "
                             "unguided baseline): add 0 to guidance.cg_scales")
    assert got[6] == (False, "no cg row at s = 0 (the unguided unconditional model): add 0 to guidance.cg_scales")
    only_unguided = {**TINY, "cg": {column: values[:1] for column, values in TINY["cg"].items()}}  # s = 0
    got = verdict_figures(frame(only_unguided))
    assert got[4] == (False, "cg has accuracy_classifier at 1 scale(s) (s = 0); this check needs at least 3: add "
                             "scales to guidance.cg_scales; no cg row at s > 0: add guided scales to "
                             "guidance.cg_scales")
    assert got[6][0] is True  # s = 0 alone is all finding 6 needs

    got = verdict_figures(tiny({("cfg", "scale"): [0.5, 1, 2]}))
    for number in (5, 6, 7):
        assert got[number] == (False, "no cfg row at w = 0 (the unguided conditional model, cond_cg's s = 0 "
                                      "baseline): add 0 to guidance.cfg_scales")
    got = verdict_figures(tiny({("cond_cg", "scale"): [0, 5.5, 10]}))  # s = 0 is not guided, 5.5 not moderate
    for number in (5, 7):
        assert got[number] == (False, "no cond_cg row at 0 < s <= 5 (have s = 0, 5.5, 10): add such a scale to "
                                      "guidance.cond_cg_scales")


def test_help_names_the_arguments_and_their_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        report.main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for part in ("usage: python -m diffguide.findings [-h] [--replicates REPLICATES] [--features "
                 "{classifier,inception}] [--set {papers,testbed,training_free}] metrics_csv",
                 "--set {papers,testbed,training_free} which findings: the papers' 1-11 (default), the guidance "
                 "testbed's, 12 onwards",
                 "metrics_csv `python -m diffguide.findings results/<run>/metrics.csv`: do the papers' findings "
                 "hold here, positional arguments:",  # the docstring's first line only
                 "metrics_csv results/<run>/metrics.csv of a finished run",
                 "--replicates REPLICATES the half-sample replicates (default: metrics_replicates.csv beside "
                 "metrics_csv)",
                 "--features {classifier,inception} feature network of the FID, IS, precision and recall columns "
                 "(default: the evaluation classifier; accuracy is always the evaluation classifier's)"):
        assert part in text
    with pytest.raises(SystemExit) as done:
        report.main(["metrics.csv", "--features", "clip"])
    assert done.value.code == 2 and "invalid choice: 'clip'" in capsys.readouterr().err


def test_unreadable_inputs_exit_2_with_what_to_run(tmp_path, capsys):
    metrics, reps = tmp_path / "metrics.csv", tmp_path / "metrics_replicates.csv"
    assert report.main([str(metrics)]) == 2
    cap = capsys.readouterr()
    assert (cap.out, cap.err) == ("", f"cannot read {metrics} ({metrics} does not exist): run `make run` first to "
                                      "produce it\n")
    pd.DataFrame({"method": ["cfg"], "fid_classifier": [1.0]}).to_csv(metrics, index=False)
    record(metrics)
    assert report.main([str(metrics)]) == 2
    assert capsys.readouterr().err == (f"cannot read {metrics} (no scale column in the metrics): run `make run` "
                                       "first to produce it\n")

    df = tiny()
    write_run(tmp_path, df, two_replicates(df))
    reps.unlink()
    assert report.main([str(metrics)]) == 2
    cap = capsys.readouterr()
    assert (cap.out, cap.err) == ("", f"cannot read {reps} ({reps} does not exist): the findings judge effects with "
                                      "the half-sample replicates that the evaluation writes beside metrics.csv; "
                                      "rerun `make run` (it reruns the evaluation)\n")
    two_replicates(df).drop(columns=["metric", "num_samples"]).to_csv(reps, index=False)
    record(reps)
    assert report.main([str(metrics)]) == 2
    assert capsys.readouterr().err.startswith(f"cannot read {reps} (no metric, num_samples column in the "
                                              "replicates): the findings judge effects")
    two_replicates(df).to_csv(reps, index=False)  # changed after its checksum was written
    assert report.main([str(metrics)]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.startswith(f"{reps} does not match its checksum")
    metrics.write_text(metrics.read_text() + "\n")
    assert report.main([str(metrics)]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.startswith(f"{metrics} does not match its checksum")


def test_a_row_whose_scale_is_not_a_number_is_left_out_of_the_checks(tmp_path, capsys):
    df = tiny()
    reps = two_replicates(df)
    df = pd.concat([df, df.iloc[[0]].assign(scale="?")], ignore_index=True)  # a hand-edited stray row
    write_run(tmp_path, df, reps)
    assert report.main([str(tmp_path / "metrics.csv")]) == 0
    summary = "11/11 findings hold (each significant at 95%)"
    assert capsys.readouterr().out.splitlines()[-13:] == [*TINY_LINES, "", summary]


def four_cfg_scales(fid):
    """TINY with cfg at w = 0, 1, 2, 3 and the given FIDs."""
    cfg = {"scale": [0, 1, 2, 3], "fid_classifier": fid, "is_classifier": [3.0, 3.5, 4.0, 4.5],
           "accuracy_classifier": [0.5, 0.6, 0.7, 0.8], "precision_classifier": [0.6] * 4,
           "recall_classifier": [0.5] * 4}
    return frame({**TINY, "cfg": cfg})


def test_interior_minimum_is_taken_within_each_replicate():
    """With two interior scales the lowest interior FID is at w = 2 in replicate r0 (8.2 vs 8.1) and
    at w = 1 in r1 (7.8 vs 8.1): each replicate's margins use that replicate's own minimum."""
    df = four_cfg_scales([10.0, 8.0, 8.1, 9.0])
    reps = two_replicates(df, {**SPREAD, ("cfg", "fid_classifier", 1): 0.2})
    # margins' replicates: w = 0: 10.5 - 8.1 = 2.4 and 9.5 - 7.8 = 1.7 (SE 0.35); w = 3: 9 - 8.1 = 0.9 and
    # 9 - 7.8 = 1.2 (SE 0.15)
    assert verdict_figures(df, reps)[2] == (
        True, "lowest FID 8.00 at w = 1 (interior of w = 0, 1, 2, 3); FID(w = 0) - min interior FID = +2.00, 95% CI "
              "[+1.31, +2.69] (needs > 0; significant); FID(w = 3) - min interior FID = +1.00, 95% CI [+0.71, +1.29] "
              "(needs > 0; significant)")
    df = four_cfg_scales([7.0, 8.5, 8.0, 9.0])
    assert verdict_figures(df, two_replicates(df, {}))[2] == (
        False, "lowest FID 7.00 at w = 0 (the smallest w of w = 0, 1, 2, 3); lowest interior FID 8.00 at w = 2; "
               "FID(w = 0) - min interior FID = -1.00, 95% CI [-1.00, -1.00] (needs > 0; wrong sign); FID(w = 3) - "
               "min interior FID = +1.00, 95% CI [+1.00, +1.00] (needs > 0; significant)")


def test_guided_scales_below_1_count_as_guided():
    df = tiny({("cg", "scale"): [0, 0.5, 1]})
    passed, figures = verdict_figures(df, two_replicates(df, {}))[4]
    assert passed and figures.endswith("; lowest FID at s > 0 is 10.50 at s = 0.5 against 12.00 at s = 0: FID(s = 0) - "
                                       "lowest FID at s > 0 = +1.50, 95% CI [+1.50, +1.50] (needs > 0; significant)")


def test_table_4_names_the_best_moderate_scale_and_the_runner_up_row():
    """The lowest moderate cond_cg FID is at s = 5 (not the first moderate scale), and the lowest
    other row is cg at s = 1 (not the first scale of its sweep)."""
    df = tiny({("cfg", "fid_classifier"): [11.0, 8.0, 9.0], ("cond_cg", "fid_classifier"): [7.5, 7.0, 11.0]})
    assert verdict_figures(df, two_replicates(df, {}))[7] == (
        True, "lowest moderate cond_cg FID 7.00 at s = 5; lowest other row 10.50 (cg s = 1): lowest other FID - lowest "
              "moderate cond_cg FID = +3.50, 95% CI [+3.50, +3.50] (needs > 0; significant)")


# ---------------------------------------------------------------------------------------------
# Findings 9-11 (findings_sdg): semantic diffusion guidance, on TINY's sdg rows.

NOT_RUN = ("{0} was not run (no {0} rows in metrics.csv): add {0} to guidance.methods and its scales to "
           "guidance.{0}_scales")


def without(df, *methods):
    return df[~df["method"].isin(methods)].reset_index(drop=True)


def test_sdg_methods_not_run_name_guidance_methods_and_their_scales_keys(tmp_path, capsys):
    df = without(tiny(), "sdg_text", "sdg_image")
    got = verdict_figures(df)
    assert got[9] == (False, NOT_RUN.format("sdg_text"))
    assert got[10] == (False, NOT_RUN.format("sdg_image"))
    assert got[11] == (False, NOT_RUN.format("sdg_text"))
    assert all(got[i][0] for i in range(1, 9))  # the papers' findings do not need them
    skipped = [f.skipped for f in report.check(df, two_replicates(df))]
    assert skipped == [False] * 8 + [True] * 3  # optional methods: skipped, not failed
    got = verdict_figures(without(tiny(), "cg"))
    assert got[11] == (False, NOT_RUN.format("cg"))
    assert not report.check(without(tiny(), "cg"), two_replicates(tiny()))[10].skipped  # cg is not optional
    assert got[9][0] and got[10][0]
    # An older metrics.csv: no sdg rows and no reference_similarity_classifier column at all.
    old = df.drop(columns=framework.REFERENCE_SIMILARITY)
    assert verdict_figures(old)[10] == (False, NOT_RUN.format("sdg_image"))
    path = write_run(tmp_path, old, two_replicates(old))
    assert report.main([str(path)]) == 0  # the papers' eight hold; the skipped three do not count
    out = capsys.readouterr().out
    assert line(out, 10) == ("SKIP  10. similarity to the reference image rises with gamma (sdg_image). Test: " + SLOPE
                             + ". " + NOT_RUN.format("sdg_image"))
    assert "reference similarity" not in out.split("PASS  1.")[0]  # the table has no such column either
    assert out.endswith("\n\n8/8 findings hold (each significant at 95%); 3 skipped: their methods were not run\n")


def test_python_dash_m_reports_missing_sdg_data_without_a_traceback(tmp_path):
    """Under ``python -m`` the module runs as __main__; it hands over to the package's copy, so
    findings_sdg catches the MissingData that Runs.sweep raises (else: a traceback, exit 1 all the same)."""
    import subprocess
    import sys

    data = {**TINY, "sdg_text": {column: values[:2] for column, values in TINY["sdg_text"].items()}}
    path = write_run(tmp_path, without(frame(data), "sdg_image"), two_replicates(frame(data)))
    result = subprocess.run([sys.executable, "-m", "diffguide.findings", str(path)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (1, "")
    assert line(result.stdout, 9).endswith(". sdg_text has accuracy_classifier at 2 scale(s) (gamma = 0, 1); this "
                                           "check needs at least 3: add scales to guidance.sdg_text_scales")
    assert line(result.stdout, 10).endswith(". " + NOT_RUN.format("sdg_image"))
    assert line(result.stdout, 11).startswith("PASS  11.")  # gamma = 1 is guided: 10.00 vs 10.50 at s = 1


def test_reference_similarity_missing_or_empty_says_what_to_rerun():
    old = tiny().drop(columns=framework.REFERENCE_SIMILARITY)  # an evaluation from before the column
    got = verdict_figures(old)
    assert got[10] == (False, "metrics.csv has no reference_similarity_classifier column: rerun the evaluation of the "
                              "sdg_image samples, which writes it")
    assert got[9] == (True, TINY_LINES[8].split(f"{SLOPE}. ")[1])
    assert got[11] == (True, TINY_LINES[10].split(f"{MATCHED}. ")[1])
    empty = tiny({("sdg_image", framework.REFERENCE_SIMILARITY): [math.nan] * 3})
    assert verdict_figures(empty)[10] == (
        False, "sdg_image has reference_similarity_classifier at 0 scale(s) (none); this check needs at least 3: "
               "reference_similarity_classifier is empty at gamma = 0, 1, 2: rerun the evaluation of the sdg_image "
               "samples, which writes it")
    assert verdict_figures(tiny(), features="inception")[10][0] is True  # always the evaluation classifier's


def test_too_few_gammas_name_the_sdg_scales_keys():
    short = {method: {column: values[:2] for column, values in TINY[method].items()}
             for method in ("sdg_text", "sdg_image")}
    got = verdict_figures(frame({**TINY, **short}))
    assert got[9] == (False, "sdg_text has accuracy_classifier at 2 scale(s) (gamma = 0, 1); this check needs at least "
                             "3: add scales to guidance.sdg_text_scales")
    assert got[10] == (False, "sdg_image has reference_similarity_classifier at 2 scale(s) (gamma = 0, 1); this check "
                              "needs at least 3: add scales to guidance.sdg_image_scales")
    assert got[11] == (True, "sdg_text's FID is lower than cg's at matched accuracy (10.00 at gamma = 1 vs 10.50 at "
                             "s = 1, difference -0.50, 95% CI [-0.99, -0.01]); accuracy 0.450 vs 0.400 (gap +0.050, "
                             "95% CI [+0.050, +0.050]), the closest in accuracy of gamma = 1 and s = 1, 2")


def test_sdg_trends_fail_on_an_interval_touching_0_and_pass_on_the_narrowest_positive_one():
    flat = tiny({("sdg_text", "accuracy_classifier"): [0.2, 0.2, 0.2],
                 ("sdg_image", framework.REFERENCE_SIMILARITY): [0.4, 0.4, 0.4]})
    got = verdict_figures(flat, two_replicates(flat, {}))
    zero = "95% CI [+0.000, +0.000] (needs > 0; interval includes 0: not significant)"
    assert got[9] == (False, f"slope of accuracy per unit gamma = +0.000, {zero}; accuracy 0.200 -> 0.200 over "
                             "gamma = 0, 1, 2")
    assert got[10] == (False, f"slope of reference similarity per unit gamma = +0.000, {zero}; reference similarity "
                              "0.400 -> 0.400 over gamma = 0, 1, 2")
    barely = tiny({("sdg_text", "accuracy_classifier"): [0.2, 0.2, 0.202],
                   ("sdg_image", framework.REFERENCE_SIMILARITY): [0.4, 0.4, 0.402]})
    got = verdict_figures(barely, two_replicates(barely, {}))
    assert got[9] == (True, "slope of accuracy per unit gamma = +0.001, 95% CI [+0.001, +0.001] (needs > 0; "
                            "significant); accuracy 0.200 -> 0.202 over gamma = 0, 1, 2")
    assert got[10] == (True, "slope of reference similarity per unit gamma = +0.001, 95% CI [+0.001, +0.001] (needs "
                             "> 0; significant); reference similarity 0.400 -> 0.402 over gamma = 0, 1, 2")
    within = tiny({("sdg_text", "accuracy_classifier"): [0.2, 0.45, 0.62]})
    spread = {**SPREAD, ("sdg_text", "accuracy_classifier", 2): 0.3}  # slope SE 0.15
    assert verdict_figures(within, two_replicates(within, spread))[9] == (
        False, "slope of accuracy per unit gamma = +0.210, 95% CI [-0.084, +0.504] (needs > 0; interval includes 0: "
               "not significant); accuracy 0.200 -> 0.620 over gamma = 0, 1, 2")


def matched(fid_at_2, spread=0.0):
    """Finding 11's figures on TINY (pair gamma = 2, s = 2) with sdg_text's FID at gamma = 2 and its spread."""
    df = tiny({("sdg_text", "fid_classifier"): [12.0, 10.0, fid_at_2]})
    return verdict_figures(df, two_replicates(df, {("sdg_text", "fid_classifier", 2): spread}))[11]


def test_matched_accuracy_reads_lower_higher_or_not_distinguishable_and_passes_each_way():
    tail = "; accuracy 0.620 vs 0.600 (gap +0.020, 95% CI [+0.020, +0.020]), the closest in accuracy of gamma = 1, 2 " \
           "and s = 1, 2"
    assert matched(11.2, 0.05) == (True, "sdg_text's FID is higher than cg's at matched accuracy (11.20 at gamma = 2 "
                                         "vs 11.00 at s = 2, difference +0.20, 95% CI [+0.10, +0.30])" + tail)
    assert matched(11.0, 0.05) == (True, "sdg_text's FID is not distinguishable from cg's at matched accuracy (11.00 "
                                         "at gamma = 2 vs 11.00 at s = 2, difference +0.00, 95% CI [-0.10, +0.10])"
                                   + tail)
    # An interval touching 0 is not distinguishable; the narrowest one beside 0 is.
    assert matched(11.0)[1].startswith("sdg_text's FID is not distinguishable from cg's at matched accuracy (11.00 at "
                                       "gamma = 2 vs 11.00 at s = 2, difference +0.00, 95% CI [+0.00, +0.00])")
    assert matched(10.99)[1].startswith("sdg_text's FID is lower than cg's at matched accuracy (10.99 at gamma = 2 "
                                        "vs 11.00 at s = 2, difference -0.01, 95% CI [-0.01, -0.01])")
    assert matched(11.01)[1].startswith("sdg_text's FID is higher than cg's")


def test_matched_pair_is_the_guided_pair_of_closest_accuracy_ties_to_the_smaller_scales():
    # gamma = 0 and s = 0 (accuracy 0.2 each, gap 0) are the same unguided model and never paired.
    df = tiny({("sdg_text", "accuracy_classifier"): [0.2, 0.7, 0.41]})  # gaps: (2, 1) 0.01 is the least
    assert verdict_figures(df, two_replicates(df, {}))[11] == (
        True, "sdg_text's FID is higher than cg's at matched accuracy (10.80 at gamma = 2 vs 10.50 at s = 1, "
              "difference +0.30, 95% CI [+0.30, +0.30]); accuracy 0.410 vs 0.400 (gap +0.010, 95% CI [+0.010, "
              "+0.010]), the closest in accuracy of gamma = 1, 2 and s = 1, 2")
    tied = tiny({("sdg_text", "accuracy_classifier"): [0.2, 0.5, 0.5], ("cg", "accuracy_classifier"): [0.2, 0.5, 0.5]})
    assert verdict_figures(tied, two_replicates(tied, {}))[11][1].startswith(
        "sdg_text's FID is lower than cg's at matched accuracy (10.00 at gamma = 1 vs 10.50 at s = 1, difference -0.50")


def test_matched_accuracy_lacking_guided_rows_or_cells_says_what_to_add():
    def figures(changes, features="classifier", drop=None):
        df = tiny(changes)
        if drop:
            df = df[~((df["method"] == drop[0]) & (df["scale"] > 0))]
        return verdict_figures(df, two_replicates(df), features)[11]

    assert figures({}, drop=("sdg_text",)) == (False, "no sdg_text row at gamma > 0: add guided scales to "
                                                      "guidance.sdg_text_scales")
    assert figures({}, drop=("cg",)) == (False, "no cg row at s > 0: add guided scales to guidance.cg_scales")
    assert figures({("sdg_text", "fid_classifier"): [12.0, math.nan, math.nan]}) == (
        False, "fid_classifier is empty at sdg_text gamma = 1, 2: rerun the evaluation of those samples")
    assert figures({("sdg_text", "fid_classifier"): [12.0, math.nan, 10.8],
                    ("sdg_text", "accuracy_classifier"): [0.2, 0.45, math.nan]}) == (
        False, "accuracy_classifier is empty at sdg_text gamma = 2: rerun the evaluation of those samples")
    assert figures({("sdg_text", "fid_classifier"): [12.0, 10.0, math.nan]}) == (  # gamma = 1 alone is paired
        True, "sdg_text's FID is lower than cg's at matched accuracy (10.00 at gamma = 1 vs 10.50 at s = 1, difference "
              "-0.50, 95% CI [-0.99, -0.01]); accuracy 0.450 vs 0.400 (gap +0.050, 95% CI [+0.050, +0.050]), the "
              "closest in accuracy of gamma = 1 and s = 1, 2")
    assert figures({}, "inception") == (False, "metrics.csv has no fid_inception column: set evaluation.inception: "
                                               "true and rerun the evaluation")


UNPAIRED = ("the rows compared have different sample counts ({}), so their halves are not paired and they cannot be "
            "compared; evaluate every row with one sampling.num_samples")


def test_methods_of_different_sample_counts_are_incomparable_not_a_traceback(tmp_path, capsys):
    """Each method's rows agree (400 or 500 samples), so each sweep reads; findings comparing two
    methods say they cannot be compared, where effect() once raised past the findings' try."""
    df = tiny()
    reps = two_replicates(df)
    reps.loc[reps["method"] == "cond_cg", "num_samples"] = 400
    got = verdict_figures(df, reps)
    assert got[5] == (False, UNPAIRED.format("cond_cg 400, cfg 500"))
    assert got[7] == (False, UNPAIRED.format("cond_cg 400, cg 500, cfg 500"))
    assert got[6][0] and got[11][0]
    reps = two_replicates(df)
    reps.loc[reps["method"] == "sdg_text", "num_samples"] = 400
    got = verdict_figures(df, reps)
    assert got[11] == (False, UNPAIRED.format("sdg_text 400, cg 500"))
    assert got[9][0]  # sdg_text's own sweep is paired
    reps.loc[reps["method"] == "cg", "num_samples"] = 400
    path = write_run(tmp_path, df, reps)
    assert report.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert line(out, 6).endswith(". " + UNPAIRED.format("cg 400, cfg 500"))
    assert line(out, 11).startswith("PASS  11.")  # sdg_text and cg both 400: paired again


def test_empty_unguided_cg_fid_is_named_empty_in_findings_4_and_6():
    got = verdict_figures(tiny({("cg", "fid_classifier"): [math.nan, 10.5, 11.0]}))
    assert got[6] == (False, "fid_classifier is empty at cg s = 0 (the unguided unconditional model): rerun the "
                             "evaluation of those samples")
    assert got[4][1].endswith("; fid_classifier is empty at cg s = 0 (the unguided baseline): rerun the evaluation "
                              "of those samples")


def test_sweep_table_shows_reference_similarity_where_metrics_has_it():
    df = tiny()
    df.loc[df["method"] == "sdg_image", f"{framework.REFERENCE_SIMILARITY}_lo"] = [0.25, 0.35, 0.45]
    df.loc[df["method"] == "sdg_image", f"{framework.REFERENCE_SIMILARITY}_hi"] = [0.35, 0.45, 0.55]
    table = report.sweep_table(df).splitlines()
    assert table[0].split() == ["method", "scale", "FID", "(classifier)", "IS", "(classifier)", "precision", "recall",
                                "accuracy", "reference", "similarity"]
    assert [row.split()[:2] for row in table[1:]] == [[m, f"{s:g}"] for m in TINY for s in TINY[m]["scale"]]
    assert table[-1].split()[-4:] == ["0.500", "0.500", "[0.450,", "0.550]"]
    assert table[1].endswith(" nan") and table[10].endswith(" nan")  # cfg, sdg_text: no reference


def test_an_effect_too_small_for_its_decimals_keeps_three_significant_digits():
    """A slope per unit gamma (scales in the hundreds) would print as +0.000: the value and its
    interval ends switch to three significant digits together when one would round to 0 unless 0."""
    assert framework.signed(0.000412, 0.000398, 0.0013, label="accuracy") == ["+4.12e-04", "+3.98e-04", "+1.30e-03"]
    assert framework.signed(0.0046, -0.000002, 0.01, label="accuracy") == ["+4.60e-03", "-2.00e-06", "+1.00e-02"]
    assert framework.signed(0.0046, 0.001, 0.01, label="accuracy") == ["+0.005", "+0.001", "+0.010"]
    assert framework.signed(-0.004, label="FID") == ["-4.00e-03"] and framework.signed(0.005, label="FID") == ["+0.01"]
    assert framework.signed(0.0, 0.0, label="accuracy") == ["+0.000", "+0.000"]


def test_every_finding_has_one_stable_number_and_key_across_the_sets():
    """Numbers are declared by each set, not counted: unique across sets, and each result carries
    its set's number and its check's name."""
    from diffguide.findings.testbed import TESTBED_FINDINGS
    from diffguide.findings.training_free import TRAINING_FREE_FINDINGS

    sets = [report.all_findings(), TESTBED_FINDINGS, TRAINING_FREE_FINDINGS]
    numbers = [n for findings in sets for n in findings]
    keys = [check.__name__ for findings in sets for check in findings.values()]
    assert len(numbers) == len(set(numbers)) and len(keys) == len(set(keys))
    # no gaps today: 1-11 the papers', 12-19 the testbed's, 20-22 training-free's, 23 on the testbed's again
    assert sorted(numbers) == list(range(1, len(numbers) + 1))


def test_dropping_a_finding_renumbers_no_other(monkeypatch):
    """A finding is addressed by its number, not its position: with finding 1 removed from the set,
    finding 8 still prints as 8."""
    df = tiny()
    reps = two_replicates(df)
    without_first = {n: check for n, check in report.all_findings().items() if n != 1}
    monkeypatch.setitem(report.FINDING_SETS, "papers", lambda: without_first)
    results = report.check(df, reps)
    assert [f.number for f in results] == list(range(2, 12))
    assert results[6].key == "precision_up_recall_down" and results[6].number == 8
