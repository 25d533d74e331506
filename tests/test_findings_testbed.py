"""`python -m diffguide.findings --set testbed`: findings 12 onwards, each testbed method's paper
claim against CFG judged at matched strength (by accuracy and by displacement, at w = 1 and 4), pass
where the claim holds significantly at all four, fail alone where only it breaks (each part of a
two-part claim on its own, each matching on its own), are skipped when their method was not run, and
print the nominal test and the calibrated best-against-best comparison beside each claim."""

import re

import numpy as np
import pytest
from testbed_metrics import frame, replicates, sweeps, write_run

from diffguide.findings import report
from diffguide.findings import testbed as findings_testbed
from diffguide.findings.framework import Columns, Runs
from diffguide.registry import REGISTRY

# method -> the number its declaration gives its claim's finding (diffguide.guidance.methods.<unit>).
NUMBERS = {name: method.claim.finding for name, method in REGISTRY.methods.items() if method.claim is not None}


def run(tmp_path, capsys, data=None, *args, **kwargs):
    metrics, _ = write_run(tmp_path, data, **kwargs)
    code = report.main([str(metrics), "--set", "testbed", *args])
    return code, capsys.readouterr().out


def verdicts(out):
    return {int(n): v for v, n in re.findall(r"^(PASS|FAIL|SKIP)  (\d+)\.", out, flags=re.M)}


def line(out, number):
    return next(l for l in out.splitlines() if re.match(rf"(PASS|FAIL|SKIP)  {number}\.", l))


def matched_part(text):
    """The figures at matched strength, before the nominal test's."""
    return text.split("at matched strength: ", 1)[1].split(" | at nominal scale", 1)[0]


def reported(text, name):
    """(value, lo, hi) printed after ``name = ``."""
    match = re.search(re.escape(f"{name} = ") + r"([+-][0-9.]+), 95% CI \[([+-][0-9.]+), ([+-][0-9.]+)\]", text)
    return tuple(float(g) for g in match.groups())


def test_a_method_declared_with_a_claim_of_any_kind_gets_fixture_rows_on_which_it_holds():
    """The synthetic run covers every kind of claim test, so a new method's claim is tested by
    these tests without editing them (testbed_metrics.BY_TEST): a method declared with a claim of
    each kind holds on its kind's rows."""
    import dataclasses

    from testbed_metrics import BY_TEST

    from diffguide.registry import CLAIM_TESTS, Claim, register_method, unregister_method

    assert set(BY_TEST) == set(CLAIM_TESTS)
    names = [f"new_{kind}" for kind in CLAIM_TESTS]
    try:
        for name, kind in zip(names, CLAIM_TESTS):
            register_method(dataclasses.replace(REGISTRY.methods["cfg_interval"], name=name,
                                                claim=Claim("Someone 2026", f"a claim tested by {kind}", 90, kind)))
        df = frame({"cfg": sweeps()["cfg"], **{name: BY_TEST[kind] for name, kind in zip(names, CLAIM_TESTS)}})
        runs = Runs(df, replicates(df))
        for name, kind in zip(names, CLAIM_TESTS):
            finding = findings_testbed.CLAIM_TESTS[kind](name)(runs, Columns.of("classifier"))
            assert finding.passed and f"a claim tested by {kind}" in finding.name, (kind, finding)
    finally:
        for name in names:
            unregister_method(name)


def test_every_claim_holds_numbered_after_the_papers_findings(tmp_path, capsys):
    from diffguide.findings.training_free import TRAINING_FREE_FINDINGS

    code, out = run(tmp_path, capsys)
    assert code == 0, out
    assert verdicts(out) == {n: "PASS" for n in NUMBERS.values()}
    assert f"{len(NUMBERS)}/{len(NUMBERS)} findings hold" in out
    assert {f.__name__: n for n, f in findings_testbed.TESTBED_FINDINGS.items()} == NUMBERS
    # 12-19 since issue 16, then after training-free's 20-22: none lost, doubled or shared with another set
    assert len(set(NUMBERS.values())) == len(NUMBERS) and not set(NUMBERS.values()) & set(TRAINING_FREE_FINDINGS)
    assert set(range(12, 20)) <= set(NUMBERS.values()) and min(NUMBERS.values()) == 12
    assert min(findings_testbed.TESTBED_FINDINGS) == max(report.all_findings()) + 1 == 12
    assert "saturation" in out.splitlines()[1]  # the sweep table shows what findings 16-17 read
    # at matched strength, four comparisons: cfg's accuracy 0.6 (w = 1) is reached at cfg_interval's w = 2,
    # FID 7.5 - 8; cfg's displacement 0.4 (w = 4) at its w = 4, FID 11 - 12
    assert "at cfg's accuracy 0.6 (w = 1), w = 2: FID -0.50 [" in line(out, 12)
    assert "at cfg's displacement 0.4 (w = 4), w = 4: FID -1.00 [" in line(out, 12)
    assert line(out, 12).count("(needs < 0: holds)") == 4
    # beside it the nominal test (11 - 12 at w = 4) and the calibrated comparison (7.5 - 8: a win)
    assert "at nominal scale (holds)" in line(out, 12)
    value, lo, hi = reported(line(out, 12), "FID(cfg_interval) - FID(cfg) at w = 4")
    assert value == pytest.approx(-1.0) and lo < value < hi < 0
    assert "best FID 7.50 at w = 2 vs cfg's best 8.00 at w = 1, difference -0.50" in line(out, 12)
    assert line(out, 12).endswith(": win")
    # autoguidance: both parts at each matched point, recall 0.45 - 0.40 at cfg's w = 4
    assert "at cfg's accuracy 0.8 (w = 4), w = 2: FID -1.00 [" in line(out, 14)
    assert "recall +0.050 [" in line(out, 14)
    assert line(out, 14).endswith("calibrated comparison (the FID part above): win")
    # CFG++'s lambda = 0 is not CFG's w = 0: its own sweep brackets the targets; matched by accuracy only
    assert "at cfg's accuracy 0.6 (w = 1), lambda = 0.2: FID -0.50" in line(out, 15)
    assert "at cfg's displacement" not in line(out, 15) and "not matched by displacement: CFG++" in line(out, 15)
    # apg: saturation 0.15 - 0.25 and FID 11.9 - 12 (within the noise) at cfg's w = 4
    assert "at cfg's accuracy 0.8 (w = 4), w = 4: saturation -0.100 [" in line(out, 16)
    assert "FID -0.10 [" in line(out, 16) and "(needs lower end < 0: holds)" in line(out, 16)


def test_the_papers_set_is_the_default_and_unchanged(tmp_path, capsys):
    metrics, _ = write_run(tmp_path)
    code = report.main([str(metrics)])
    out = capsys.readouterr().out
    assert set(verdicts(out)) == set(range(1, 12))  # findings 1-11, whatever the run has
    assert code == 1  # no cg rows in a testbed run: the papers' findings 4-8 fail
    assert "saturation" not in out.splitlines()[1]


def _edit(method, column, values):
    data = sweeps()
    data[method][column] = values
    return data


@pytest.mark.parametrize("data, number, why", [
    (_edit("cfg_interval", "fid_classifier", [8.5, 12.5]), 12, "w = 2: FID +0.50"),
    (_edit("cfg_schedule", "fid_classifier", [7.5, 12.05]), 13, "w = 4: FID +0.05"),  # at w = 4 not significant
    (_edit("autoguidance", "fid_classifier", [8.5, 11.0]), 14, "w = 1: FID +0.50"),
    (_edit("autoguidance", "recall_classifier", [0.45, 0.45]), 14, "recall -0.100"),  # FID still lower
    (_edit("cfgpp", "fid_classifier", [8.2, 11.0]), 15, "lambda = 0.2: FID +0.20"),
    (_edit("apg", "saturation", [0.13, 0.15]), 16, "saturation +0.010"),
    (_edit("apg", "fid_classifier", [8.0, 13.0]), 16, "FID +1.00"),  # saturation still lower
    (_edit("cfg_rescale", "saturation", [0.11, 0.25]), 17, "saturation +0.000"),
    (_edit("dynamic_threshold", "fid_classifier", [7.5, 12.6]), 18, "w = 4: FID +0.60"),
    # guiding more per unit of displacement: cfg's displacement 0.1 is reached between cfg's w = 0
    # (displacement 0, FID 10) and its w = 2 (0.3, FID 7.5), at FID 9.17; matched by accuracy it still wins
    (_edit("cfg_zero_star", "displacement", [0.3, 0.8]), 19, "at cfg's displacement 0.1 (w = 1), w = 0.667: FID +1.17"),
])
def test_each_claim_fails_alone_when_its_effect_breaks(tmp_path, capsys, data, number, why):
    code, out = run(tmp_path, capsys, data)
    assert code == 1
    assert verdicts(out) == {n: "FAIL" if n == number else "PASS" for n in NUMBERS.values()}
    assert why in matched_part(line(out, number)) and "does not hold" in matched_part(line(out, number))


def test_a_method_that_wins_at_the_same_w_by_guiding_less_fails_at_matched_strength(tmp_path, capsys):
    """The interval at w = 4 reaches only accuracy 0.7 and displacement 0.2 (cfg's at w = 2) with FID 11.5:
    below cfg's 12 at w = 4, the paper's test, but it never reaches cfg's strength at w = 4."""
    data = sweeps()
    data["cfg_interval"] |= {"accuracy_classifier": [0.55, 0.7], "displacement": [0.05, 0.2],
                             "fid_classifier": [7.5, 11.5]}
    code, out = run(tmp_path, capsys, data)
    assert code == 1 and verdicts(out)[12] == "FAIL"
    text = line(out, 12)
    assert ("at cfg's accuracy 0.8 (w = 4): never reached (max accuracy(cfg_interval, w <= 4) - "
            "accuracy(cfg at w = 4) = -0.100") in text
    assert "at nominal scale (holds)" in text


def test_a_method_not_run_is_skipped_not_failed(tmp_path, capsys):
    data = sweeps()
    del data["cfgpp"], data["apg"]
    code, out = run(tmp_path, capsys, data)
    assert code == 0
    assert verdicts(out)[15] == verdicts(out)[16] == "SKIP"
    assert "cfgpp was not run" in line(out, 15) and "guidance.cfgpp_scales" in line(out, 15)
    assert f"{len(NUMBERS) - 2}/{len(NUMBERS) - 2} findings hold" in out and "2 skipped" in out


def test_missing_cfg_a_reference_w_or_the_displacement_fails_and_names_the_key(tmp_path, capsys):
    data = sweeps()
    data["cfg_interval"]["scale"] = [3, 5]  # no w in common with cfg: only the nominal test cannot run
    code, out = run(tmp_path, capsys, data)
    assert verdicts(out)[12] == "PASS" and "share no guided w" in line(out, 12) and "guidance.cfg_scales" in line(out, 12)
    df = frame(sweeps())
    without_w4 = df[~((df["method"] == "cfg") & (df["scale"] == 4))]
    result = findings_testbed.check(Runs(without_w4, replicates(without_w4)), Columns.of("classifier"))
    assert all(f.missing and "needs cfg at w = 4: add it to guidance.cfg_scales" in f.figures for f in result.values())
    no_displacement = df.drop(columns=["displacement", "displacement_lo", "displacement_hi"])
    result = findings_testbed.check(Runs(no_displacement, replicates(no_displacement)), Columns.of("classifier"))
    assert result.pop("cfgpp").passed  # matched by accuracy only
    assert all(f.missing and "sampling.record_displacement: true" in f.figures for f in result.values())
    runs = Runs(df[df["method"] != "cfg"], replicates(df[df["method"] != "cfg"]))
    result = findings_testbed.check(runs, Columns.of("classifier"))
    assert not any(f.passed or f.skipped for f in result.values())
    assert all(f.missing and "cfg" in f.figures and "guidance.cfg_scales" in f.figures for f in result.values())
    assert findings_testbed.verdict(result["cfgpp"]) == "not tested (data missing)"


def test_paired_replicates_let_shared_noise_cancel(tmp_path, capsys):
    """Noise common to every row (sd 2, twenty times a row's own) cancels in each difference."""
    code, out = run(tmp_path, capsys, shared={"fid": 2.0, "saturation": 0.05})
    assert code == 0, out
    assert reported(line(out, 18), "FID(dynamic_threshold) - FID(cfg) at w = 4")[2] < 0


def test_the_best_scale_is_chosen_within_each_replicate():
    """Two scales of equal FID whose replicates move in opposite directions: the minimum of each
    replicate is constant (8 - e), so the best-vs-best difference has no spread from the method,
    whereas fixing the best scale from the point estimates would carry e's full spread."""
    data = {"cfg": {"scale": [0.0, 1.0], "fid_classifier": [10.0, 9.0]},
            "cfgpp": {"scale": [0.2, 0.6], "fid_classifier": [8.0, 8.0]}}
    df = frame(data)
    reps = replicates(df, noise={("cfg", "fid"): 0.0, ("cfgpp", "fid"): 0.0})
    e = np.where(np.arange(100) % 2, 1.0, -1.0)
    columns = [f"r{b}" for b in range(100)]
    for scale, sign in ((0.2, 1.0), (0.6, -1.0)):
        row = (reps["method"] == "cfgpp") & (reps["scale"] == scale)
        reps.loc[row, columns] = 8.0 + sign * e
    result = findings_testbed.calibrated(Runs(df, reps), Columns.of("classifier"), "cfgpp")
    assert result.difference.value == pytest.approx(-1.0)
    assert result.difference.hi - result.difference.lo == pytest.approx(0.0, abs=1e-9)
    assert result.outcome == "win"


def test_unreadable_metrics_exit_2_with_the_testbed_set(tmp_path, capsys):
    assert report.main([str(tmp_path / "absent.csv"), "--set", "testbed"]) == 2
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "absent.csv"), "--set", "nonsense"])
