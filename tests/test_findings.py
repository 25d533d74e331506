"""`python -m diffguide.findings`: each finding passes on metrics where it holds, fails alone on
metrics where only it breaks, and says what is missing (and which config key adds it)."""

import math
import re

import pandas as pd
import pytest

from diffguide import findings

CFG_W = [0, 0.5, 1, 2, 4]
CG_S = [0, 1, 2, 5, 10]
COND_S = [1, 5]


def sweeps():
    """Metrics on which all five findings hold (classifier features). The Inception columns
    differ on purpose: there FID falls monotonically with w, so finding 2 fails on them."""
    return {
        "cfg": {"scale": CFG_W, "fid_classifier": [20, 18, 17, 19, 23], "is_classifier": [3.0, 3.5, 4.0, 4.5, 5.0],
                "accuracy_classifier": [0.5, 0.6, 0.7, 0.75, 0.8],
                "fid_inception": [130, 125, 120, 115, 110], "is_inception": [2.0, 2.2, 2.4, 2.6, 2.8]},
        "cg": {"scale": CG_S, "fid_classifier": [12, 11, 10.5, 11.5, 13], "is_classifier": [4.0, 4.1, 4.2, 4.3, 4.4],
               "accuracy_classifier": [0.1, 0.3, 0.5, 0.65, 0.7],
               "fid_inception": [100, 104, 106, 108, 110], "is_inception": [2.0, 2.1, 2.2, 2.3, 2.4]},
        "cond_cg": {"scale": COND_S, "fid_classifier": [16, 15], "is_classifier": [4.1, 4.4],
                    "accuracy_classifier": [0.6, 0.65], "fid_inception": [118, 112], "is_inception": [2.5, 2.6]},
    }


def frame(data):
    parts = []
    for method, cols in data.items():
        part = pd.DataFrame(cols)
        part.insert(0, "method", method)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    df["num_samples"] = 500
    for column in ("kid_classifier", "precision_classifier", "recall_classifier", "sfid_inception",
                   "kid_inception", "precision_inception", "recall_inception"):
        df[column] = 0.5
    df["inception_weights"] = "fid-helper-tf2015"
    return df


def run(tmp_path, capsys, data, *args):
    path = tmp_path / "metrics.csv"
    frame(data).to_csv(path, index=False)
    code = findings.main([str(path), *args])
    return code, capsys.readouterr()


def verdicts(out):
    """{finding number: 'PASS'|'FAIL'} from the printed lines."""
    return {int(n): v for v, n in re.findall(r"^(PASS|FAIL)  (\d)\.", out, flags=re.M)}


def line(out, number):
    return next(l for l in out.splitlines() if re.match(rf"(PASS|FAIL)  {number}\.", l))


def test_all_findings_hold(tmp_path, capsys):
    code, cap = run(tmp_path, capsys, sweeps())
    assert code == 0
    assert verdicts(cap.out) == {i: "PASS" for i in range(1, 6)}
    assert "5/5 findings hold" in cap.out
    assert "Spearman rho(IS, w) = 1.00 (need >= 0.9) over w = 0, 0.5, 1, 2, 4 (IS 3.00 -> 5.00)" in line(cap.out, 1)
    assert "min FID 17.00 at w = 1 (interior" in line(cap.out, 2)
    assert "23.00 at w = 4 > min" in line(cap.out, 2)
    assert "Spearman rho(accuracy, w) = 1.00" in line(cap.out, 3)
    assert "best FID at s > 0 is 10.50 at s = 2 < FID 12.00 at s = 0" in line(cap.out, 4)
    assert "0.650 at s = 5 vs 0.500 unguided (cfg w = 0); best s = 5 (+0.150)" in line(cap.out, 5)
    # The table of sweeps comes before the verdicts.
    table = cap.out.split("PASS  1.")[0]
    assert "FID (classifier)" in table and "cond_cg" in table and "23.000" in table


def _set(data, method, column, values):
    data[method][column] = values
    return data


FAILURES = {
    "IS falls with w": (1, lambda d: _set(d, "cfg", "is_classifier", [5.0, 4.5, 4.0, 3.5, 3.0]),
                        "Spearman rho(IS, w) = -1.00"),
    "FID rises monotonically with w": (2, lambda d: _set(d, "cfg", "fid_classifier", [17, 18, 19, 20, 23]),
                                       "at w = 0 (the smallest w"),
    "FID falls monotonically with w": (2, lambda d: _set(d, "cfg", "fid_classifier", [23, 20, 19, 18, 17]),
                                       "at w = 4 (the largest w"),
    "FID flat past its interior minimum": (2, lambda d: _set(d, "cfg", "fid_classifier", [20, 18, 17, 17, 17]),
                                           "(not above the minimum)"),
    "accuracy does not rise with w": (3, lambda d: _set(d, "cfg", "accuracy_classifier", [0.5, 0.8, 0.6, 0.75, 0.55]),
                                      "Spearman rho(accuracy, w) = 0.10"),
    "cg accuracy falls with s": (4, lambda d: _set(d, "cg", "accuracy_classifier", [0.7, 0.65, 0.5, 0.3, 0.1]),
                                 "Spearman rho(accuracy, s) = -1.00"),
    "cg FID worse at every s > 0": (4, lambda d: _set(d, "cg", "fid_classifier", [10, 11, 10.5, 11.5, 13]),
                                    "best FID at s > 0 is 10.50 at s = 2 >= FID 10.00 at s = 0 (no s > 0 improves FID)"),
    "cond_cg below the unguided conditional model": (
        5, lambda d: _set(d, "cond_cg", "accuracy_classifier", [0.45, 0.5]), "vs 0.500 unguided (cfg w = 0); best s = 5 (+0.000)"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_finding_fails_alone(tmp_path, capsys, case):
    number, mutate, figures = FAILURES[case]
    code, cap = run(tmp_path, capsys, mutate(sweeps()))
    assert code == 1
    assert verdicts(cap.out) == {i: ("FAIL" if i == number else "PASS") for i in range(1, 6)}
    assert figures in line(cap.out, number)
    assert "4/5 findings hold" in cap.out


def test_spearman_threshold_allows_one_swap_not_two(tmp_path, capsys):
    # One adjacent pair out of order over 5 scales: rho = 0.9 exactly, which holds.
    code, cap = run(tmp_path, capsys, _set(sweeps(), "cfg", "is_classifier", [3.0, 4.0, 3.5, 4.5, 5.0]))
    assert code == 0 and "rho(IS, w) = 0.90" in line(cap.out, 1)
    # Two: rho = 0.8, which does not.
    code, cap = run(tmp_path, capsys, _set(sweeps(), "cfg", "is_classifier", [3.5, 3.0, 4.0, 5.0, 4.5]))
    assert code == 1 and "rho(IS, w) = 0.80" in line(cap.out, 1) and verdicts(cap.out)[1] == "FAIL"
    assert findings.MIN_RHO == 0.9


def test_too_few_cfg_scales_names_cfg_scales(tmp_path, capsys):
    data = sweeps()
    data["cfg"] = {k: v[:2] for k, v in data["cfg"].items()}  # w = 0, 0.5
    code, cap = run(tmp_path, capsys, data)
    assert code == 1
    for number in (1, 2, 3):
        assert verdicts(cap.out)[number] == "FAIL"
        assert "cfg has" in line(cap.out, number) and "at 2 scale(s) (w = 0, 0.5)" in line(cap.out, number)
        assert "add scales to guidance.cfg_scales" in line(cap.out, number)
    assert verdicts(cap.out)[5] == "PASS"  # w = 0 is still there


def test_missing_cond_cg_method_names_methods(tmp_path, capsys):
    data = sweeps()
    del data["cond_cg"]
    code, cap = run(tmp_path, capsys, data)
    assert code == 1
    assert verdicts(cap.out) == {1: "PASS", 2: "PASS", 3: "PASS", 4: "PASS", 5: "FAIL"}
    assert "no cond_cg rows in metrics.csv: add cond_cg to guidance.methods" in line(cap.out, 5)


def test_missing_unguided_cg_names_cg_scales(tmp_path, capsys):
    data = sweeps()
    data["cg"] = {k: v[1:] for k, v in data["cg"].items()}  # s = 1, 2, 5, 10
    code, cap = run(tmp_path, capsys, data)
    assert code == 1 and verdicts(cap.out)[4] == "FAIL"
    assert "no cg row at s = 0" in line(cap.out, 4) and "add 0 to guidance.cg_scales" in line(cap.out, 4)


def test_missing_baseline_or_moderate_scale_for_cond_cg(tmp_path, capsys):
    data = sweeps()
    data["cfg"] = {k: v[1:] for k, v in data["cfg"].items()}  # no w = 0
    code, cap = run(tmp_path, capsys, data)
    assert verdicts(cap.out)[5] == "FAIL" and "add 0 to guidance.cfg_scales" in line(cap.out, 5)

    data = _set(_set(sweeps(), "cond_cg", "scale", [10, 20]), "cond_cg", "accuracy_classifier", [0.9, 0.95])
    code, cap = run(tmp_path, capsys, data)
    assert code == 1 and verdicts(cap.out)[5] == "FAIL"
    assert "no cond_cg row at 0 < s <= 5 (have s = 10, 20)" in line(cap.out, 5)
    assert "guidance.cond_cg_scales" in line(cap.out, 5)


def test_features_inception_reads_inception_columns(tmp_path, capsys):
    code, cap = run(tmp_path, capsys, sweeps(), "--features", "inception")
    assert code == 1
    # Inception FID falls monotonically with w, so finding 2 fails there (it holds on classifier FID).
    assert verdicts(cap.out) == {1: "PASS", 2: "FAIL", 3: "PASS", 4: "FAIL", 5: "PASS"}
    assert "(IS 2.00 -> 2.80)" in line(cap.out, 1)
    assert "min FID 110.00 at w = 4 (the largest w" in line(cap.out, 2)
    assert "best FID at s > 0 is 104.00 at s = 1 >= FID 100.00 at s = 0" in line(cap.out, 4)
    assert "FID (inception)" in cap.out and "130.000" in cap.out


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
    data["cfg_p0.5"] = {"scale": [0, 1, 4], "fid_classifier": [50, 40, 30], "is_classifier": [9.0, 8.0, 7.0],
                        "accuracy_classifier": [0.9, 0.2, 0.1], "fid_inception": [1, 2, 3], "is_inception": [1, 1, 1]}
    code, cap = run(tmp_path, capsys, data)
    assert code == 0 and "5/5 findings hold" in cap.out
    assert "cfg_p0.5 (info)" in cap.out and "50.000" in cap.out


def test_missing_or_unreadable_csv_exits_2(tmp_path, capsys):
    assert findings.main([str(tmp_path / "absent.csv")]) == 2
    assert "make run" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert findings.main([str(empty)]) == 2
    assert "make run" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    assert findings.main([str(wrong)]) == 2
    assert "no method, scale column" in capsys.readouterr().err


def test_finding_functions_return_results(tmp_path):
    df = frame(sweeps())
    results = findings.check(df)
    assert [type(r) for r in results] == [findings.Finding] * 5
    assert all(r.passed for r in results)
    assert findings.MODERATE_SCALE == 5
    moved = df.copy()
    moved.loc[moved["method"] == "cond_cg", "scale"] = [1, 6]  # the helpful s = 5 is no longer moderate
    moved.loc[moved["method"] == "cond_cg", "accuracy_classifier"] = [0.4, 0.9]
    assert not findings.cg_conditional_moderate(moved, findings.Columns.of("classifier")).passed
