"""A synthetic testbed run for the tests of findings_testbed, testbed_table and testbed_figures:
metrics.csv rows of cfg and of each testbed method, and their half-sample replicates, built so that
every claim of the testbed's findings holds with a clear margin, at matched strength and at nominal scale (each row's standard error is SE[kind];
n = 500 is even, so Shao & Wu's factor r / d is 1 and a difference of two rows has SE sqrt(2) SE)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from diffguide.base.integrity import record
from diffguide.registry import REGISTRY

REPLICATES = 100
N = 500
SE = {"fid": 0.1, "is": 0.02, "accuracy": 0.005, "precision": 0.005, "recall": 0.005, "saturation": 0.003,
      "displacement": 0.005}

# Guidance strength: cfg's accuracy and displacement at w = 0, 1, 2, 4, and every other method's at
# its two scales, which reach cfg's at the references w = 1 and 4 (findings.testbed_matched) exactly.
CFG_STRENGTH = {"accuracy_classifier": [0.5, 0.6, 0.7, 0.8], "displacement": [0.0, 0.1, 0.2, 0.4]}
MATCHING = {"accuracy_classifier": [0.6, 0.8], "displacement": [0.1, 0.4]}


def sweeps():
    """method -> columns. What each claim sees (point estimates):
    cfg: w = 0, 1, 2, 4; best FID 8 at w = 1 (a reference); FID 12, saturation 0.25 at w = 4 (the other).
    Every other method reaches cfg's accuracy and displacement at w = 1 with its first scale and at
    w = 4 with its second, so its matched values are its own rows' (by accuracy and by displacement).
    cfg_interval / cfg_schedule / dynamic_threshold / cfg_zero_star: FID 7.5 and 11 at their scales 2
    and 4, below cfg's 8 and 12 at matched strength (claims hold) and at w = 4 (nominal claims hold);
    best vs best 7.5 vs 8: a win.
    autoguidance: FID 7 and 11, recall 0.58 and 0.45 against cfg's 0.55 and 0.40 (both parts hold).
    cfgpp: FID 7.5 and 11 at lambda = 0.2, 0.6 (its own sweep brackets the targets: no borrowed w = 0).
    apg / cfg_rescale: saturation 0.11 and 0.15 against cfg's 0.12 and 0.25, FID 8.0 and 11.9 within the
    noise of cfg's 8 and 12."""
    data = {
        "cfg": rows([0, 1, 2, 4], [10, 8, 9, 12], [0.10, 0.12, 0.15, 0.25], recall=[0.6, 0.55, 0.5, 0.4],
                    strength=CFG_STRENGTH),
        "cfg_interval": rows([2, 4], [7.5, 11.0], [0.13, 0.18]),
        "cfg_schedule": rows([2, 4], [7.5, 11.0], [0.14, 0.2]),
        "autoguidance": rows([1, 2], [7.0, 11.0], [0.11, 0.12], recall=[0.58, 0.45]),
        "cfgpp": rows([0.2, 0.6], [7.5, 11.0], [0.11, 0.13]),
        "apg": rows([2, 4], [8.0, 11.9], [0.11, 0.15]),
        "cfg_rescale": rows([2, 4], [8.0, 11.9], [0.11, 0.15]),
        "dynamic_threshold": rows([2, 4], [7.5, 11.0], [0.14, 0.2]),
        "cfg_zero_star": rows([2, 4], [7.5, 11.0], [0.15, 0.24]),
    }
    # A method declared since, with a claim: rows of its claim's kind, so adding one breaks no test.
    for name, method in REGISTRY.methods.items():
        if method.claim is not None and name not in data:
            data[name] = BY_TEST[method.claim.test]
    return data


def rows(scale, fid, saturation, recall=None, strength=None):
    k = len(scale)
    return {"scale": scale, "fid_classifier": fid, "is_classifier": list(np.linspace(3.2, 4.2, k)),
            "precision_classifier": list(np.linspace(0.55, 0.7, k)),
            "recall_classifier": recall or list(np.linspace(0.55, 0.45, k)), "saturation": saturation,
            **{column: list(values) for column, values in (strength or MATCHING).items()}}


# By how a claim is tested (diffguide.registry.CLAIM_TESTS), rows on which it holds against cfg's.
BY_TEST = {
    "lower_fid_at_same_w": rows([2, 4], [7.5, 11.0], [0.13, 0.18]),
    "lower_best_fid": rows([0.2, 0.6], [7.5, 11.0], [0.11, 0.13]),
    "lower_best_fid_keeping_recall": rows([1, 2], [7.0, 11.0], [0.11, 0.12], recall=[0.58, 0.45]),
    "less_saturation": rows([2, 4], [8.0, 11.9], [0.11, 0.15]),
}


def frame(data) -> pd.DataFrame:
    """metrics.csv's rows, each metric with a 95% interval value -+ 1.96 SE (and empty Inception columns)."""
    parts = []
    for method, cols in data.items():
        part = pd.DataFrame(cols)
        part.insert(0, "method", method)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    df["num_samples"] = N
    for column in [c for c in df.columns if c.split("_")[0] in SE]:
        se = SE[column.split("_")[0]]
        df[f"{column}_lo"], df[f"{column}_hi"] = df[column] - 1.96 * se, df[column] + 1.96 * se
    for column in ("fid_inception", "is_inception"):
        df[column] = np.nan
    return df


def replicates(df: pd.DataFrame, noise=None, shared=None, seed=0) -> pd.DataFrame:
    """Half-sample replicates of every metric of every row: value + SE * N(0, 1), independent across
    rows; ``noise`` {(method, kind): se} widens chosen rows; ``shared`` {kind: sd} adds one N(0, 1)
    draw per replicate common to every row (paired halves share their samples)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=REPLICATES)
    out = []
    for column in [c for c in df.columns if c.split("_")[0] in SE and not c.endswith(("_lo", "_hi"))]:
        kind = column.split("_")[0]
        for method, scale, value in zip(df["method"], df["scale"], df[column]):
            se = (noise or {}).get((method, kind), SE[kind])
            reps = value + se * rng.normal(size=REPLICATES) + (shared or {}).get(kind, 0.0) * common
            out.append({"method": method, "scale": scale, "sampler": "ddim", "steps": 25, "metric": column,
                        "num_samples": N, "estimate": value} | {f"r{b}": v for b, v in enumerate(reps)})
    return pd.DataFrame(out)


def write_run(tmp_path, data=None, noise=None, shared=None):
    """metrics.csv and metrics_replicates.csv under tmp_path, checksums recorded; their paths."""
    df = frame(data if data is not None else sweeps())
    metrics, reps = tmp_path / "metrics.csv", tmp_path / "metrics_replicates.csv"
    df.to_csv(metrics, index=False)
    replicates(df, noise, shared).to_csv(reps, index=False)
    return record(metrics), record(reps)
