"""The replication tables: the papers' transcribed numbers, our numbers with their intervals in
the right cells, the written Markdown/LaTeX, and the errors that name the config key to change."""

import math

import pandas as pd
import pytest

from diffguide.base.integrity import record
from diffguide.reports.tables import DN_FILE, HS_FILE, dn_table4, hs_table1, paper_table, provenance_line, write_tables

COLUMNS = ["method", "scale", "num_samples", "fid_classifier", "kid_classifier", "is_classifier",
           "accuracy_classifier", "precision_classifier", "recall_classifier", "fid_inception",
           "sfid_inception", "kid_inception", "is_inception", "precision_inception", "recall_inception",
           "inception_weights"]
RUNS = [("cfg", 0.0), ("cfg", 0.25), ("cfg", 1.0), ("cfg_p0.5", 0.0), ("cfg_p0.5", 1.0),
        ("cg", 0.0), ("cg", 1.0), ("cg", 10.0), ("cond_cg", 1.0), ("cond_cg", 3.0)]


METRICS = [c for c in COLUMNS if c not in ("method", "scale", "num_samples", "inception_weights")]
# Each interval is [value - LOW, value + HIGH]: asymmetric, so a swapped bound shows.
LOW, HIGH = 0.5, 0.25


def metrics_frame(runs=RUNS) -> pd.DataFrame:
    """Row i's metrics are i plus a per-metric offset, so every cell is traceable to its run;
    beside each metric its interval's _lo and _hi columns, as metrics.csv has them."""
    rows = []
    for i, (method, scale) in enumerate(runs):
        rows.append({"method": method, "scale": scale, "num_samples": 500,
                     "fid_classifier": 10 + i, "kid_classifier": 0.01 * i, "is_classifier": 100 + i,
                     "accuracy_classifier": 0.01 * i, "precision_classifier": 0.2 + 0.01 * i,
                     "recall_classifier": 0.5 + 0.01 * i, "fid_inception": 200 + i, "sfid_inception": 300 + i,
                     "kid_inception": 0.02 * i, "is_inception": 400 + i, "precision_inception": 0.3 + 0.01 * i,
                     "recall_inception": 0.6 + 0.01 * i, "inception_weights": "fid-helper-tf2015"})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in METRICS:
        frame[f"{column}_lo"], frame[f"{column}_hi"] = frame[column] - LOW, frame[column] + HIGH
    return frame


def run_value(method, scale, column, runs=RUNS):
    return metrics_frame(runs).set_index(["method", "scale"]).loc[(method, scale), column]


# --- the papers' numbers ---------------------------------------------------------------------

def test_hs_paper_table_shape_and_anchors():
    paper = paper_table(HS_FILE)
    assert list(paper.columns) == ["w", "p_uncond", "fid", "is"]
    assert sorted(paper["p_uncond"].unique()) == [0.1, 0.2, 0.5]
    # H&S Table 1 has w = 0, 0.1, ..., 1.0 (eleven rows) and 2, 3, 4: fourteen rows of three p_uncond.
    assert sorted(paper["w"].unique()) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 3.0, 4.0]
    assert len(paper) == 14 * 3
    assert not paper.isna().any().any()
    cell = paper.set_index(["w", "p_uncond"])
    assert tuple(cell.loc[(0.0, 0.1)]) == (1.8, 53.71)
    assert tuple(cell.loc[(0.3, 0.2)]) == (2.93, 88.64)
    assert tuple(cell.loc[(0.1, 0.1)]) == (1.55, 66.11)  # H&S's best FID
    assert tuple(cell.loc[(4.0, 0.5)]) == (21.48, 225.1)


def test_dn_paper_table_shape_and_anchors():
    paper = paper_table(DN_FILE).set_index(["conditional", "scale"])
    assert list(paper.columns) == ["fid", "sfid", "is", "precision", "recall"]
    assert len(paper) == 6 and not paper.isna().any().any()
    assert tuple(paper.loc[(False, 0.0)]) == (26.21, 6.35, 39.70, 0.61, 0.63)
    assert tuple(paper.loc[(False, 10.0)]) == (12.00, 10.40, 95.41, 0.76, 0.44)
    assert tuple(paper.loc[(True, 1.0)]) == (4.59, 5.25, 186.70, 0.82, 0.52)
    assert tuple(paper.loc[(True, 10.0)]) == (9.11, 10.93, 283.92, 0.88, 0.32)


def test_paper_csvs_name_their_source():
    from importlib.resources import files

    for name, arxiv in [(HS_FILE, "arxiv.org/abs/2207.12598"), (DN_FILE, "arxiv.org/abs/2105.05233")]:
        first = (files("diffguide") / "paper_results" / name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# source:") and arxiv in first


# --- our numbers in the right cells ----------------------------------------------------------

def test_hs_table1_places_ours_by_p_uncond_and_w():
    table = hs_table1(metrics_frame(), p_uncond=0.2)
    assert table.loc[0.25, (0.2, "ours", "FID")] == run_value("cfg", 0.25, "fid_classifier")
    assert table.loc[1.0, (0.2, "ours", "IS")] == run_value("cfg", 1.0, "is_classifier")
    assert table.loc[0.0, (0.5, "ours", "FID")] == run_value("cfg_p0.5", 0.0, "fid_classifier")
    assert table.loc[1.0, (0.5, "ours", "IS")] == run_value("cfg_p0.5", 1.0, "is_classifier")
    assert table[(0.1, "ours", "FID")].isna().all()  # no p_uncond = 0.1 model of ours
    assert math.isnan(table.loc[0.25, (0.2, "paper", "FID")])  # w = 0.25 is ours only
    assert table.loc[0.3, (0.2, "paper", "FID")] == 2.93 and math.isnan(table.loc[0.3, (0.2, "ours", "FID")])
    assert table.loc[1.0, (0.2, "paper", "IS")] == 158.29
    assert len(table) == 15 and list(table.index) == sorted(table.index)  # 14 paper w + our 0.25


def test_hs_table1_p_uncond_outside_papers_gets_its_own_columns():
    table = hs_table1(metrics_frame(), p_uncond=0.3)
    assert sorted(set(table.columns.get_level_values("p_uncond"))) == [0.1, 0.2, 0.3, 0.5]
    assert table.loc[0.0, (0.3, "ours", "FID")] == run_value("cfg", 0.0, "fid_classifier")
    assert table[(0.3, "paper", "FID")].isna().all()


@pytest.mark.parametrize("bound, offset", [("lo", -LOW), ("hi", HIGH)])
def test_bound_tables_hold_our_intervals_and_no_paper_numbers(bound, offset):
    hs = hs_table1(metrics_frame(), p_uncond=0.2, bound=bound)
    assert hs.loc[0.25, (0.2, "ours", "FID")] == run_value("cfg", 0.25, "fid_classifier") + offset
    assert hs.xs("paper", axis=1, level="source").isna().all().all()
    dn = dn_table4(metrics_frame(), bound=bound)
    assert dn.loc[(False, 10.0), ("ours", "Recall")] == run_value("cg", 10.0, "recall_classifier") + offset
    assert dn.loc[(True, 0.0), ("ours", "Accuracy")] == run_value("cfg", 0.0, "accuracy_classifier") + offset
    assert dn["paper"].isna().all().all()


def test_hs_table1_inception_family():
    table = hs_table1(metrics_frame(), p_uncond=0.2, features="inception")
    assert table.loc[0.25, (0.2, "ours", "FID")] == run_value("cfg", 0.25, "fid_inception")
    assert table.loc[0.25, (0.2, "ours", "IS")] == run_value("cfg", 0.25, "is_inception")


def test_dn_table4_layout_and_cells():
    table = dn_table4(metrics_frame())
    assert list(table.index) == [(False, 0.0), (False, 1.0), (False, 10.0),
                                 (True, 0.0), (True, 1.0), (True, 3.0), (True, 10.0)]
    # The conditional model's unguided row is cfg at w = 0.
    assert table.loc[(True, 0.0), ("ours", "FID")] == run_value("cfg", 0.0, "fid_classifier")
    assert table.loc[(True, 0.0), ("ours", "Accuracy")] == run_value("cfg", 0.0, "accuracy_classifier")
    assert table.loc[(True, 0.0), ("paper", "FID")] == 10.94
    assert table.loc[(False, 0.0), ("ours", "FID")] == run_value("cg", 0.0, "fid_classifier")
    assert table.loc[(False, 10.0), ("ours", "Precision")] == run_value("cg", 10.0, "precision_classifier")
    assert table.loc[(False, 10.0), ("paper", "Precision")] == 0.76
    assert table.loc[(True, 3.0), ("ours", "Recall")] == run_value("cond_cg", 3.0, "recall_classifier")
    assert table.loc[(True, 3.0), "paper"].isna().all()
    assert table.loc[(True, 10.0), "ours"].isna().all() and table.loc[(True, 10.0), ("paper", "IS")] == 283.92
    assert table[("ours", "sFID")].isna().all()  # the classifier family has no sFID
    assert ("paper", "Accuracy") not in table.columns


def test_dn_table4_inception_family_has_sfid():
    table = dn_table4(metrics_frame(), features="inception")
    assert table.loc[(True, 1.0), ("ours", "sFID")] == run_value("cond_cg", 1.0, "sfid_inception")
    assert table.loc[(True, 1.0), ("ours", "FID")] == run_value("cond_cg", 1.0, "fid_inception")
    # Sample accuracy is the evaluation classifier's whichever family the table shows.
    assert table.loc[(True, 1.0), ("ours", "Accuracy")] == run_value("cond_cg", 1.0, "accuracy_classifier")


# --- written files ---------------------------------------------------------------------------

def test_write_tables_markdown_and_latex(tmp_path):
    csv = tmp_path / "metrics.csv"
    metrics_frame().to_csv(csv, index=False)
    record(csv)
    written = write_tables(csv, 0.2, "fashion_mnist", 32, tmp_path / "tables")
    assert sorted(p.name for p in written) == ["dn_table4.html", "dn_table4.md", "dn_table4.tex",
                                               "hs_table1.html", "hs_table1.md", "hs_table1.tex"]
    hs_html = (tmp_path / "tables" / "hs_table1.html").read_text()
    assert "<table" in hs_html and "88.64" in hs_html and "ImageNet 64x64" in hs_html
    hs_md = (tmp_path / "tables" / "hs_table1.md").read_text()
    dn_md = (tmp_path / "tables" / "dn_table4.md").read_text()
    hs_prov = provenance_line("fashion_mnist", 32, "500", "classifier", 64)
    assert hs_prov in hs_md and hs_md.rstrip().endswith(hs_prov)  # provenance under the table
    assert "ImageNet 64x64" in hs_prov and "fashion_mnist 32x32" in hs_prov and "500 samples" in hs_prov
    assert " 1.80 |" in hs_md and "88.64" in hs_md and "–" in hs_md  # paper values, 2 decimals, gaps
    assert " 10.00 [9.50, 10.25] |" in hs_md  # our cfg w = 0 FID (row 0 of the runs) with its interval
    assert " 0.55 [0.05, 0.80] |" in dn_md  # our cg s = 0 recall (run 5: 0.5 + 0.01 * 5)
    assert "[" not in dn_md.split("26.21")[1].split("\n")[0]  # the paper's numbers carry none
    assert "evaluation classifier" in hs_md.splitlines()[0]  # the caption names the feature family
    assert "ImageNet 256x256" in dn_md and "26.21" in dn_md and "283.92" in dn_md and "yes / no guidance" in dn_md
    for name in ["hs_table1", "dn_table4"]:
        tex = (tmp_path / "tables" / f"{name}.tex").read_text()
        assert "\\begin{table}" in tex and "\\caption{" in tex and "\\end{table}" in tex
        assert "fashion\\_mnist 32x32, 500 samples" in tex and "--" in tex
    assert "283.92" in (tmp_path / "tables" / "dn_table4.tex").read_text()
    assert "10.00 [9.50, 10.25]" in (tmp_path / "tables" / "hs_table1.tex").read_text()
    assert "95% intervals" in hs_md.splitlines()[0] and "95% intervals" in dn_md.splitlines()[0]
    assert "225.10" in (tmp_path / "tables" / "hs_table1.tex").read_text()
    assert not list((tmp_path / "tables").glob(".*.tmp"))  # atomic writes leave no temp files


def test_markdown_keeps_two_decimals_in_gapless_columns(tmp_path):
    """With our w a subset of the paper's, the paper columns have no gaps: Markdown must still
    print 1.80, not 1.8 (tabulate reparses number-like strings unless told not to)."""
    csv = tmp_path / "metrics.csv"
    metrics_frame([r for r in RUNS if r != ("cfg", 0.25)]).to_csv(csv, index=False)
    record(csv)
    write_tables(csv, 0.2, "fashion_mnist", 32, tmp_path)
    rows = {line.split("|")[1].strip(): line for line in (tmp_path / "hs_table1.md").read_text().splitlines()
            if line.startswith("|")}
    assert " 1.80 |" in rows["0"] and " 12.60 |" in rows["1"] and " 102.00 |" in rows["0.6"]


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dropped", ["cfg", "cg"])
def test_missing_method_names_the_config_key(tmp_path, dropped):
    csv = tmp_path / "metrics.csv"
    metrics_frame([r for r in RUNS if r[0] != dropped]).to_csv(csv, index=False)
    record(csv)
    with pytest.raises(ValueError, match=r"guidance\.methods") as error:
        write_tables(csv, 0.2, "fashion_mnist", 32, tmp_path / "tables")
    assert f"'{dropped}'" in str(error.value)
    assert not (tmp_path / "tables" / "dn_table4.md").exists()


def test_inception_family_without_inception_values_says_so():
    metrics = metrics_frame()
    metrics[["fid_inception", "sfid_inception", "is_inception"]] = float("nan")
    with pytest.raises(ValueError, match=r"evaluation\.inception"):
        dn_table4(metrics, features="inception")


def test_metrics_without_intervals_say_to_rerun_the_evaluation(tmp_path):
    csv = tmp_path / "metrics.csv"
    metrics_frame().drop(columns=["is_classifier_lo"]).to_csv(csv, index=False)
    record(csv)
    with pytest.raises(ValueError, match=r"no is_classifier_lo column .* rerun the evaluation"):
        write_tables(csv, 0.2, "fashion_mnist", 32, tmp_path / "tables")


def test_two_runs_in_one_cell_are_refused():
    with pytest.raises(ValueError, match="same table cell"):
        hs_table1(metrics_frame(RUNS + [("cfg_p0.2", 0.25)]), p_uncond=0.2)
