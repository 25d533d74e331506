"""experiments/ablate.py's table of finished trials (docs/ablations.md): each trial's change, its
training time and its eps-models' headline numbers with intervals, read from its own files."""

import importlib.util
import json
from pathlib import Path

import pandas as pd

SPEC = importlib.util.spec_from_file_location("ablate", Path(__file__).resolve().parents[1] / "experiments/ablate.py")
ablate = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ablate)


def metric_rows(method: str, scales_fids_accs: list[tuple[float, float, float]]) -> list[dict]:
    return [{"method": method, "scale": s, "fid_classifier": f, "fid_classifier_lo": f - 1, "fid_classifier_hi": f + 1,
             "accuracy_classifier": a, "accuracy_classifier_lo": a - 0.01, "accuracy_classifier_hi": a + 0.01}
            for s, f, a in scales_fids_accs]


def write_trial(root: Path, name: str, rows: list[dict], changes: dict, train_seconds: dict) -> None:
    (root / name).mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / name / "metrics.csv", index=False)
    (root / name / "summary.json").write_text(json.dumps({"changes": changes, "train_seconds": train_seconds}))


def test_table_lists_baseline_first_and_reads_each_trials_numbers(tmp_path):
    write_trial(tmp_path, "a_conditional_only", metric_rows("cfg", [(0, 9.0, 0.6), (1, 5.0, 0.8), (2, 6.0, 0.9)]),
                {"networks.unet.class_embed_std": 1.0}, {"conditional": 600})
    write_trial(tmp_path, "baseline", metric_rows("cfg", [(0, 7.0, 0.7), (2, 3.0, 0.95)])
                + metric_rows("cg", [(0, 12.0, 0.1)]), {}, {})
    (tmp_path / "unfinished").mkdir()  # a trial still running has no summary.json: left out
    lines = ablate.trial_table(tmp_path).splitlines()
    assert len(lines) == 4
    assert lines[2] == ("| baseline | none (the default) | reused | 7.00 [6.00, 8.00] | 3.00 [2.00, 4.00] (w = 2) | "
                        "0.950 [0.940, 0.960] | 12.00 [11.00, 13.00] |")
    # The best CFG scale is the lowest FID (w = 1 here, not the largest w), and a model the trial did
    # not retrain (the unconditional one) shows '-', not the baseline's number.
    assert lines[3] == ("| a_conditional_only | `networks.unet.class_embed_std: 1.0` | conditional 600 s | "
                        "9.00 [8.00, 10.00] | 5.00 [4.00, 6.00] (w = 1) | 0.800 [0.790, 0.810] | - |")
