"""`python -m diffguide.reports.replication_status`: findings 1-8 as a Markdown table whose effects and
verdicts are report.check's (Finding.effects), whose claims quote paper_results/, and whose
exit codes are findings'. Runs are test_findings' hand-made TINY run (every interval worked out
by hand there)."""

import re

import pytest
from test_findings import tiny, two_replicates, write_run

from diffguide.findings import report
from diffguide.findings.framework import Z95
from diffguide.reports import replication_status

HEADER_CELLS = 7


def rows(text):
    """{finding number: its table cells} of the Markdown table."""
    found = {}
    for line in text.splitlines():
        if re.match(r"\| \d+ \|", line):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            assert len(cells) == HEADER_CELLS, line
            found[int(cells[0])] = cells
    return found


def numbers(cell, name):
    """value, lo, hi printed after ``name = `` in a cell."""
    match = re.search(re.escape(f"{name} = ") + r"([+-][0-9.e+-]+) \[([+-][0-9.e+-]+), ([+-][0-9.e+-]+)\]", cell)
    assert match, cell
    return tuple(float(g) for g in match.groups())


def with_inception(df, **changes):
    """``df`` with *_inception columns copied from the classifier's (``changes``: column -> values for cfg)."""
    df = df.copy()
    for metric in ("fid", "is", "precision", "recall"):
        df[f"{metric}_inception"] = df[f"{metric}_classifier"]
    for column, values in changes.items():
        df.loc[df["method"] == "cfg", column] = values
    return df


def test_finding_effects_are_the_ones_judged():
    """Finding.effects of findings 1-8 on TINY: the numbers worked out by hand in test_findings."""
    df = tiny()
    results = report.check(df, two_replicates(df))
    assert [len(f.effects) for f in results[:8]] == [1, 2, 1, 2, 1, 1, 1, 2]
    values = [e.value for f in results[:8] for e in f.effects]
    assert values == pytest.approx([0.5, 2.0, 1.0, 0.1, 0.2, 1.5, 0.2, 2.0, 3.0, 0.05, -0.05])
    ses = [(e.hi - e.lo) / (2 * Z95) for f in results[:8] for e in f.effects]
    assert ses == pytest.approx([0.05, 0.5, 0.0, 0.01, 0.0, 0.25, 0.01, 0.5, 0.4, 0.005, 0.0], abs=1e-9)
    assert [e.direction for e in results[7].effects] == [1, -1]
    assert all(all(e.holds for e in f.effects) == f.passed for f in results[:8])
    missing = report.check(df[df["method"] != "cond_cg"], two_replicates(df[df["method"] != "cond_cg"]))
    assert missing[4].effects == () and missing[6].effects == ()  # no cond_cg rows: nothing measured


def test_a_holding_finding_says_yes_with_its_effects_numbers():
    df = tiny()
    reps = two_replicates(df)
    text, held = replication_status.status_table(df, reps)
    table = rows(text)
    assert sorted(table) == list(range(1, 9))
    assert held == 8 and all(cells[4] == "yes" for cells in table.values())
    results = report.check(df, reps)
    for number, finding in enumerate(results[:8], 1):
        for e in finding.effects:
            value, lo, hi = numbers(table[number][3], e.name)
            digits = 2 if e.label in ("FID", "IS") else 3
            assert (value, lo, hi) == pytest.approx((e.value, e.lo, e.hi), abs=0.5 * 10 ** -digits)
    # Finding 1 by hand: slope 0.5, SE 0.05.
    assert "slope of IS per unit w = +0.50 [+0.40, +0.60]" in table[1][3]
    assert table[2][3] == ("FID(w = 0) - min interior FID = +2.00 [+1.02, +2.98]; "
                           "FID(w = 2) - min interior FID = +1.00 [+1.00, +1.00]")
    assert "8/8 hold on classifier features" in text


def test_a_failing_finding_says_no(tmp_path, capsys):
    df = tiny({("cfg", "is_classifier"): [4.0, 3.5, 3.0], ("cg", "recall_classifier"): [0.5, 0.55, 0.6]})
    path = write_run(tmp_path, df, two_replicates(df, {}))
    assert replication_status.main([str(path)]) == 1
    table = rows(capsys.readouterr().out)
    assert table[1][4] == "no" and table[1][3] == "slope of IS per unit w = -0.50 [-0.50, -0.50]"
    assert table[8][4] == "no" and "slope of recall per unit s = +0.050 [+0.050, +0.050]" in table[8][3]
    assert [table[n][4] for n in range(2, 8)] == ["yes"] * 6


def test_unmeasured_finding_says_what_is_missing():
    df = tiny()
    df = df[df["method"] != "cond_cg"]
    text, held = replication_status.status_table(df, two_replicates(df))
    table = rows(text)
    # Findings 5 and 7 read the cond_cg rows: neither holds, and neither is called a failure.
    assert held == 6
    assert table[5][4] == "not measured" and table[5][3].startswith("not measured: no cond_cg rows in metrics.csv")
    assert table[7][4] == "not measured"
    assert "6/8 hold on classifier features (2 not measured)" in text


@pytest.mark.parametrize("inception", ["absent", "empty"])
def test_no_inception_values_claim_no_inception_verdicts(inception):
    df = tiny()
    if inception == "empty":
        df = with_inception(df)
        for column in [c for c in df.columns if c.endswith("_inception")]:
            df[column] = float("nan")
    text, _ = replication_status.status_table(df, two_replicates(tiny()))
    table = rows(text)
    assert all(cells[5] == "not evaluated" and cells[6] == "–" for cells in table.values())
    assert "/8 hold on Inception" not in text and "both feature sets" not in text
    assert "8/8 hold on classifier features; Inception features not evaluated" in text


def test_inception_columns_are_judged_on_their_own():
    df = with_inception(tiny(), is_inception=[4.0, 3.5, 3.0])  # IS falls with w on Inception features only
    text, held = replication_status.status_table(df, two_replicates(df))
    table = rows(text)
    assert held == 8
    assert table[1][4] == "yes" and table[1][6] == "no"
    assert table[1][5] == "slope of IS per unit w = -0.50 [-0.50, -0.50]"
    assert [table[n][6] for n in range(2, 9)] == ["yes"] * 7
    assert "8/8 hold on classifier features, 7/8 hold on Inception features" in text


def test_claims_quote_the_papers_csvs():
    claims = replication_status.paper_claims()
    assert len(claims) == 8
    assert "IS 53.71 -> 260.2 over w = 0 .. 4" in claims[0]
    assert "FID lowest at w = 0.1 (1.55)" in claims[1]
    assert "26.21 at s = 0 -> 12.00 at s = 10" in claims[3]
    assert claims[5] == "D&N Table 4: FID 10.94 conditional vs 26.21 unconditional"
    assert claims[6] == "D&N Table 4: FID 4.59 at s = 1, lowest row"
    assert claims[7].endswith("precision 0.61 -> 0.76, recall 0.63 -> 0.44 at s = 10")


def test_exit_codes_out_file_and_unreadable_inputs(tmp_path, capsys):
    df = tiny()
    path = write_run(tmp_path, df, two_replicates(df))
    assert replication_status.main([str(path)]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "status" / "replication_status.md"
    assert replication_status.main([str(path), "--out", str(out)]) == 0
    assert out.read_text() == printed
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left

    assert replication_status.main([str(tmp_path / "missing.csv")]) == 2
    assert "run `make run` first" in capsys.readouterr().err
    (tmp_path / "metrics_replicates.csv").unlink()
    assert replication_status.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "metrics_replicates.csv" in err and "rerun `make run`" in err
    assert report.main([str(path)]) == 2  # the same reader, the same message
    assert capsys.readouterr().err == err
