"""The replication's two tables: our numbers beside the papers' published ones.

- H&S Table 1 (Ho & Salimans 2022, ImageNet 64x64): FID and IS of classifier-free guidance per
  guidance strength w (rows) and unconditional training probability p_uncond (column groups).
  Ours: method ``cfg`` is the conditional model trained with p_uncond = P
  (training.conditional.p_uncond), ``cfg_p<p>`` the extra model trained with p_uncond = p.
- D&N Table 4 (Dhariwal & Nichol 2021, ImageNet 256x256): FID, sFID, IS, precision and recall
  of classifier guidance on the unconditional and on the conditional model, unguided and at each
  scale s. Ours: ``cg`` is the unconditional model (s = 0: unguided), ``cond_cg`` the conditional
  one, whose unguided row is ``cfg`` at w = 0 (the same sampler on the same model).

The papers' numbers ship as package data in ``paper_results/`` (each CSV's first line names its
source). Each of our numbers is printed with its 95% interval from metrics.csv's ``_lo`` / ``_hi``
columns, ``17.15 [16.75, 17.55]``; the papers' numbers have none (50k samples). Our numbers come from metrics.csv in one feature family: ``classifier`` (our evaluation
classifier's features; the default, always computed) or ``inception`` (Inception-V3, as the
papers). Every table carries a provenance line: our data set, resolution, sample count and feature
network against the paper's, since those differ and the absolute numbers are not comparable.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

import pandas as pd

from diffguide.base.atomic import atomic_open
from diffguide.base.integrity import read_csv
from diffguide.evaluation.intervals import BOUNDS, bound_column
from diffguide.registry import parse_method

HS_FILE = "ho_salimans_2022_table1.csv"
DN_FILE = "dhariwal_nichol_2021_table4.csv"
# Display name -> metrics.csv column, per feature family (None: the family has no such metric).
FAMILY_COLUMNS = {
    "classifier": {"FID": "fid_classifier", "sFID": None, "IS": "is_classifier",
                   "Precision": "precision_classifier", "Recall": "recall_classifier"},
    "inception": {"FID": "fid_inception", "sFID": "sfid_inception", "IS": "is_inception",
                  "Precision": "precision_inception", "Recall": "recall_inception"},
}
FAMILY_NAMES = {
    "classifier": "our evaluation classifier's features (not Inception-V3)",
    "inception": "Inception-V3 features",
}
PAPER_METRICS = {"fid": "FID", "sfid": "sFID", "is": "IS", "precision": "Precision", "recall": "Recall"}
MISSING_MD, MISSING_TEX = "–", "--"  # LaTeX's "--" typesets as the en dash "–"
INTERVALS = "with 95% intervals over redraws of our samples, the reference fixed (config/README.md)"


def paper_table(name: str, dtype=None) -> pd.DataFrame:
    """A paper's transcribed table, read from the installed package (its ``# source:`` line skipped);
    ``dtype=str`` keeps each number as published (``12.00``, not 12.0)."""
    with (files("diffguide") / "paper_results" / name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, comment="#", dtype=dtype)


def _require_methods(metrics: pd.DataFrame, methods: list[str]) -> None:
    """Fail with the config key to change, rather than with a table of dashes."""
    missing = [m for m in methods if m not in set(metrics["method"])]
    if missing:
        raise ValueError(f"metrics.csv has no rows for guidance method(s) {missing}: these tables need "
                         f"them; add {missing} to guidance.methods in the config and rerun")


def _columns(metrics: pd.DataFrame, features: str, bound: str | None = None) -> dict[str, str | None]:
    """The family's metric columns (``bound``: their interval's ``lo`` or ``hi`` column); an
    all-empty FID means that family was not evaluated."""
    if features not in FAMILY_COLUMNS:
        raise ValueError(f"features must be one of {sorted(FAMILY_COLUMNS)}, got {features!r}")
    columns = FAMILY_COLUMNS[features]
    absent = [c for c in columns.values() if c is not None and c not in metrics.columns]
    if absent:
        raise ValueError(f"metrics.csv lacks the columns {absent} of the {features!r} feature family")
    if metrics[columns["FID"]].isna().all():
        raise ValueError(f"metrics.csv has no {features!r} FID values"
                         + (": set evaluation.inception: true" if features == "inception" else ""))
    return {name: _bound_column(metrics, column, bound) for name, column in columns.items()}


def _bound_column(metrics: pd.DataFrame, column: str | None, bound: str | None) -> str | None:
    """``column`` itself, or its interval column ``<column>_<bound>`` (which must exist)."""
    if column is None or bound is None:
        return column
    return bound_column(metrics.columns, column, bound)


def _cfg_p_uncond(method: str, p_uncond: float) -> float:
    """``cfg`` guides the main conditional model (p_uncond = P), ``cfg_p<p>`` the one trained at p."""
    variant = parse_method(method).p_uncond
    return p_uncond if variant is None else variant


def _is_classifier_free(method: str) -> bool:
    try:
        return parse_method(method).method.name == "cfg"
    except ValueError:  # a method no registered row has: not in H&S Table 1
        return False


def _no_duplicates(frame: pd.DataFrame, keys: list[str]) -> None:
    """Two runs landing in one cell would silently hide one of them."""
    dup = frame[frame.duplicated(keys, keep=False)]
    if len(dup):
        raise ValueError(f"two metrics.csv rows land in the same table cell: {dup[keys].drop_duplicates().to_dict('records')}")


def hs_table1(metrics: pd.DataFrame, p_uncond: float, features: str = "classifier",
              bound: str | None = None) -> pd.DataFrame:
    """Rows: w (ours and the paper's); columns: (p_uncond, source in ours/paper, metric in FID/IS).
    With ``bound`` ("lo" or "hi") the same table of our intervals' bounds (the paper's cells empty)."""
    _require_methods(metrics, ["cfg"])
    cols = _columns(metrics, features, bound)
    cfg = metrics[metrics["method"].map(_is_classifier_free)]
    ours = pd.DataFrame({"w": cfg["scale"], "p_uncond": [_cfg_p_uncond(m, p_uncond) for m in cfg["method"]],
                         "source": "ours", "FID": cfg[cols["FID"]], "IS": cfg[cols["IS"]]})
    paper = paper_table(HS_FILE).rename(columns={"fid": "FID", "is": "IS"}).assign(source="paper")
    if bound is not None:
        paper[["FID", "IS"]] = float("nan")
    long = pd.concat([ours, paper], ignore_index=True).astype({"w": float, "p_uncond": float})
    long[["w", "p_uncond"]] = long[["w", "p_uncond"]].round(6)
    _no_duplicates(long, ["w", "p_uncond", "source"])
    table = long.set_index(["w", "p_uncond", "source"])[["FID", "IS"]].unstack(["p_uncond", "source"])
    table.columns = table.columns.reorder_levels([1, 2, 0]).set_names(["p_uncond", "source", "metric"])
    full = pd.MultiIndex.from_product([sorted(long["p_uncond"].unique()), ["ours", "paper"], ["FID", "IS"]],
                                      names=table.columns.names)
    return table.reindex(columns=full).sort_index()


def _dn_ours(metrics: pd.DataFrame, features: str, bound: str | None) -> pd.DataFrame:
    """Our D&N rows: cg on the unconditional model; cfg w = 0 and cond_cg s > 0 on the conditional."""
    cols = _columns(metrics, features, bound) | {"Accuracy": _bound_column(metrics, "accuracy_classifier", bound)}
    method, scale = metrics["method"], metrics["scale"]
    picks = [(method.eq("cg"), False), (method.eq("cfg") & scale.eq(0), True),
             (method.eq("cond_cg") & scale.ne(0), True)]
    parts = [metrics[mask].assign(conditional=cond) for mask, cond in picks]
    rows = pd.concat(parts, ignore_index=True)
    out = pd.DataFrame({"conditional": rows["conditional"].astype(bool), "scale": rows["scale"].astype(float).round(6)})
    for name, col in cols.items():
        out[name] = rows[col].astype(float) if col is not None else float("nan")
    _no_duplicates(out, ["conditional", "scale"])
    return out.set_index(["conditional", "scale"])


def dn_table4(metrics: pd.DataFrame, features: str = "classifier", bound: str | None = None) -> pd.DataFrame:
    """Rows: (conditional, scale), scale 0 = no guidance, ours and the paper's (1.0, 10.0);
    columns: (source, metric), ours' FID..Recall and sample accuracy, then the paper's FID..Recall.
    With ``bound`` ("lo" or "hi") the same table of our intervals' bounds (the paper's cells empty)."""
    _require_methods(metrics, ["cfg", "cg"])
    ours = _dn_ours(metrics, features, bound)
    paper = paper_table(DN_FILE).rename(columns=PAPER_METRICS)
    if bound is not None:
        paper[list(PAPER_METRICS.values())] = float("nan")
    paper = paper.assign(conditional=paper["conditional"].astype(bool), scale=paper["scale"].astype(float).round(6))
    paper = paper.set_index(["conditional", "scale"])[list(PAPER_METRICS.values())]
    table = pd.concat({"ours": ours, "paper": paper}, axis=1, names=["source", "metric"])
    return table.sort_index()


def provenance_line(dataset: str, image_size: int, num_samples, features: str, paper_image_size: int,
                    paper_dataset: str = "ImageNet", paper_num_samples: str = "50k",
                    inception_samples: int | None = None) -> str:
    """What ours and the paper's numbers were measured on, so no reader compares them naively."""
    family = FAMILY_NAMES[features]
    if features == "inception" and inception_samples is not None:
        family += f" of {inception_samples} of them"
    return (f"Ours: {dataset} {image_size}x{image_size}, {num_samples} samples per guidance scale, "
            f"metrics on {family}. Paper: {paper_dataset} {paper_image_size}x{paper_image_size}, "
            f"{paper_num_samples} samples per guidance scale, metrics on Inception-V3 features.")


def _sample_count(metrics: pd.DataFrame) -> str:
    """The per-scale sample count, or its range when methods used different counts."""
    low, high = int(metrics["num_samples"].min()), int(metrics["num_samples"].max())
    return f"{low}" if low == high else f"{low}–{high}"


def _cells(tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], missing: str) -> pd.DataFrame:
    """Every number to two decimals, followed by its 95% interval where it has one
    (``17.15 [16.75, 17.55]``), every gap to the missing mark. ``tables``: values, lows, highs."""
    values, lows, highs = tables

    def cell(v, lo, hi):
        if pd.isna(v):
            return missing
        return f"{v:.2f}" if pd.isna(lo) or pd.isna(hi) else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"

    out = values.astype(object).copy()
    for column in values.columns:
        out[column] = [cell(*t) for t in zip(values[column], lows[column], highs[column])]
    return out


def _scale_label(conditional: bool, scale: float) -> tuple[str, str]:
    return ("yes" if conditional else "no", "no guidance" if scale == 0 else f"scale {scale:g}")


def _hs_render(tables: tuple, missing: str, tex: bool) -> pd.DataFrame:
    out, table = _cells(tables, missing), tables[0]
    out.index = [f"{w:g}" for w in table.index]
    out.index.name = "$w$" if tex else "w"
    p_name = "$p_{\\mathrm{uncond}}$" if tex else "p_uncond"
    out.columns = pd.MultiIndex.from_tuples([(f"{p_name}={p:g}", s, m) for p, s, m in table.columns])
    return out


def _dn_render(tables: tuple, missing: str) -> pd.DataFrame:
    out, table = _cells(tables, missing), tables[0]
    out.index = pd.MultiIndex.from_tuples([_scale_label(c, s) for c, s in table.index],
                                          names=["conditional", "guidance"])
    return out


def _markdown(rendered: pd.DataFrame, caption: str, provenance: str) -> str:
    """Markdown has no column groups: flatten them to ``group source metric`` headers."""
    flat = rendered.copy()
    flat.columns = [" ".join(map(str, c)) for c in rendered.columns]
    if isinstance(flat.index, pd.MultiIndex):
        flat.index = [" / ".join(i) for i in flat.index]
        flat.index.name = " / ".join(rendered.index.names)
    # disable_numparse: tabulate would otherwise reparse "1.80" and print it as "1.8".
    align = ("left",) + ("right",) * flat.shape[1]
    return f"**{caption}**\n\n{flat.to_markdown(disable_numparse=True, colalign=align)}\n\n{provenance}\n"


def _tex_escape(text: str) -> str:
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def _latex(rendered: pd.DataFrame, caption: str, provenance: str, label: str) -> str:
    """A ``table`` environment with grouped headers; the caption carries the provenance."""
    rendered = rendered.copy()
    rendered.columns = pd.MultiIndex.from_tuples(
        [tuple(_tex_escape(str(x)) if "$" not in str(x) else str(x) for x in c) for c in rendered.columns])
    column_format = "l" * rendered.index.nlevels + "r" * rendered.shape[1]
    return rendered.to_latex(escape=False, multicolumn=True, multicolumn_format="c", multirow=False,
                             column_format=column_format, caption=_tex_escape(f"{caption} {provenance}"),
                             label=label, position="htbp")


def _html(rendered: pd.DataFrame, caption: str, provenance: str) -> str:
    """A standalone page for `snakemake --report`, which shows HTML results inline."""
    table = rendered.to_html(border=0, justify="right")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>table{{border-collapse:collapse;"
            f"font:13px sans-serif}}td,th{{padding:2px 8px;text-align:right}}tr:nth-child(even){{background:#f4f4f4}}"
            f"</style></head><body><p><b>{escape(caption)}</b></p>{table}<p>{escape(provenance)}</p></body></html>\n")


def _write(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))


def write_tables(metrics_csv, p_uncond: float, dataset: str, image_size: int, out_dir,
                 features: str = "classifier", inception_samples: int | None = None) -> list[Path]:
    """hs_table1.{md,tex,html} and dn_table4.{md,tex,html} in out_dir, each written atomically."""
    metrics = read_csv(metrics_csv)
    out_dir, count = Path(out_dir), _sample_count(metrics)
    family = FAMILY_NAMES[features] if features in FAMILY_NAMES else features
    specs = [
        ("hs_table1", tuple(hs_table1(metrics, p_uncond, features, b) for b in (None, *BOUNDS)), _hs_render, 64,
         f"H&S Table 1: FID and IS of classifier-free guidance per guidance strength w and p_uncond "
         f"(our p_uncond = {p_uncond:g} is method cfg); ours on {family}, {INTERVALS}."),
        ("dn_table4", tuple(dn_table4(metrics, features, b) for b in (None, *BOUNDS)),
         lambda t, m, tex: _dn_render(t, m), 256,
         f"D&N Table 4: classifier guidance on the unconditional and the conditional model "
         f"(no guidance, or scale s); ours on {family}, sample accuracy by our evaluation classifier, "
         f"{INTERVALS}."),
    ]
    written = []
    for name, tables, render, paper_size, caption in specs:
        provenance = provenance_line(dataset, image_size, count, features, paper_size,
                                     inception_samples=inception_samples)
        _write(out_dir / f"{name}.md", _markdown(render(tables, MISSING_MD, False), caption, provenance))
        _write(out_dir / f"{name}.tex", _latex(render(tables, MISSING_TEX, True), caption, provenance, f"tab:{name}"))
        _write(out_dir / f"{name}.html", _html(render(tables, MISSING_MD, False), caption, provenance))
        written += [out_dir / f"{name}.{ext}" for ext in ("md", "tex", "html")]
    return written
