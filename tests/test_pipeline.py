"""The real Snakefile, run end to end on config/smoke.yaml in a temporary directory, and the
behaviours a user relies on: outputs, caching, config validation and the SLURM profile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from workflow_copies import REPO, SMOKE, SNAKEMAKE, copy_workflow, job_counts, snakemake

# The smoke run (conftest.py's session fixture smoke_run) is config/smoke.yaml run by the real
# Snakefile in a copy of the workflow; the documented-commands tests read it too.


def test_smoke_run_writes_metrics_for_every_method_and_scale(smoke_run):
    metrics = pd.read_csv(smoke_run / "results/smoke/metrics.csv")
    assert sorted(zip(metrics.method, metrics.scale)) == [
        ("cfg", 0.0), ("cfg", 1.0), ("cfg_p0.5", 0.0), ("cfg_p0.5", 1.0), ("cg", 0.0), ("cg", 2.0), ("cond_cg", 2.0)]
    for column in ("fid_classifier", "kid_classifier", "is_classifier", "accuracy_classifier", "precision_classifier",
                   "recall_classifier", "fid_inception", "sfid_inception", "kid_inception"):
        assert np.isfinite(metrics[column]).all(), column
        lo, hi = metrics[f"{column}_lo"], metrics[f"{column}_hi"]  # its 95% interval beside it
        assert ((lo <= metrics[column]) & (metrics[column] <= hi) & (lo < hi)).all(), column
    assert (metrics.num_samples == 20).all()
    # The row's IS and accuracy are those of the saved samples under the saved evaluation classifier.
    from diffguide.evaluation.metrics import classifier_outputs, inception_score, sample_accuracy
    from diffguide.models.kinds import load_checkpoint

    classifier = load_checkpoint(smoke_run / "results/smoke/models/eval_classifier.pt")[0]
    for row in metrics.itertuples():
        samples = np.load(smoke_run / f"results/smoke/samples/ddim4-leading/{row.method}/scale_{row.scale:g}.npz")
        _, logits = classifier_outputs(classifier, samples["images"], "cpu")
        assert row.is_classifier == pytest.approx(inception_score(logits), rel=1e-9), row
        assert row.accuracy_classifier == pytest.approx(sample_accuracy(logits, samples["labels"]), abs=1e-12), row
    assert metrics.reference_similarity_classifier.isna().all()  # no sample set was guided towards references


def test_smoke_run_writes_figures_samples_and_logs(smoke_run):
    root = smoke_run / "results/smoke"
    for figure in ("fid_vs_is", "metrics_vs_scale", "grid_cfg", "grid_cfg_p0.5", "grid_cg", "grid_cond_cg",
                   "best_cfg", "best_cfg_p0.5", "best_cg", "best_cond_cg", "mixture_guidance", "sharpening_guidance",
                   "training_curves"):
        with Image.open(root / "figures" / f"{figure}.png") as png:  # a drawn figure, not an empty canvas
            pixels = np.asarray(png.convert("L"))
        assert min(pixels.shape) >= 150 and pixels.std() > 5 and len(np.unique(pixels)) > 10, figure
        assert (root / "figures" / f"{figure}.pdf").read_bytes()[:5] == b"%PDF-", figure
    samples = np.load(root / "samples/ddim4-leading/cfg/scale_1.npz")
    assert samples["images"].shape == (20, 16, 16, 1) and samples["images"].dtype == np.uint8
    assert list(samples["labels"][:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    for network in ("unconditional", "conditional", "conditional_p0.5", "noisy_classifier", "eval_classifier"):
        log = pd.read_csv(root / f"logs/train_{network}.csv")
        assert list(log.columns) == ["step", "loss", "lr", "images_per_s"]
        assert log.step.iloc[-1] == {"eval_classifier": 39}.get(network, 19)
        assert np.isfinite(log.loss).all()
    assert "samples 0-19 of 20" in (root / "logs/sample_ddim4-leading_cg_2.log").read_text()
    assert "has only 2 samples; showing 2" in (root / "logs/best_scale_gallery_cfg.log").read_text()


def test_smoke_run_writes_both_tables_with_our_numbers_beside_the_papers(smoke_run):
    metrics = pd.read_csv(smoke_run / "results/smoke/metrics.csv")
    tables = smoke_run / "results/smoke/tables"
    hs = (tables / "hs_table1.md").read_text()
    our_fid = metrics.set_index(["method", "scale"]).loc[("cfg", 1.0), "fid_classifier"]
    assert f"{our_fid:.2f}" in hs and "52.90" in hs  # ours (w = 1, p_uncond 0.2) and the paper's IS at w = 0
    assert "p_uncond=0.5" in hs and "digits" in hs  # the extra p_uncond column and the provenance line
    dn = (tables / "dn_table4.md").read_text()
    assert "26.21" in dn and "scale 2" in dn
    for name in ("hs_table1", "dn_table4"):
        assert "\\begin{table}" in (tables / f"{name}.tex").read_text()


def test_findings_check_reads_the_smoke_metrics_and_gives_a_verdict_per_finding(smoke_run):
    result = subprocess.run([sys.executable, "-m", "diffguide.findings", "results/smoke/metrics.csv"],
                            cwd=smoke_run, capture_output=True, text=True)
    verdicts = re.findall(r"^(PASS|FAIL) ", result.stdout, flags=re.MULTILINE)
    # The tiny smoke models need not show the findings; the exit code says whether all hold.
    assert result.returncode == (0 if verdicts.count("PASS") == len(verdicts) else 1), result.stderr
    assert len(verdicts) == 8 and f"{verdicts.count('PASS')}/8 findings hold" in result.stdout
    assert "; 3 skipped: their methods were not run" in result.stdout  # the smoke run has no sdg sweeps
    lines = [line for line in result.stdout.splitlines() if re.match(r"(PASS|FAIL) ", line)]
    for line in lines:  # an effect with its interval, or what the smoke sweeps lack (two scales each)
        assert "Test: " in line and ("95% CI [" in line or "add scales to guidance." in line), line
    assert all("95% CI [" in lines[i] for i in (4, 5, 6))  # 5, 6, 7 compare rows the smoke run has


# Slow (a forced rerun of every evaluation job): make test keeps the stage's own byte-identity test
# (tests/test_evaluation.py) and stays under 10 minutes; CI runs this one in make test-slow.
@pytest.mark.slow
def test_a_rerun_of_the_evaluation_writes_byte_identical_metrics(smoke_run, tmp_path):
    """Every random draw of the evaluation is seeded (KID subsets, half-samples): evaluating the
    same samples again, in a copy of the finished run, gives the same bytes. Two rows (a cfg and
    a cg one) are evaluated again, to keep the test short; every row runs the same code."""
    copy = tmp_path / "copy"
    shutil.copytree(smoke_run, copy, symlinks=True)
    metrics = copy / "results/smoke/metrics"
    rows = sorted(p for name in ("cfg/scale_1", "cg/scale_2") for p in metrics.glob(f"*/{name}.*csv"))
    assert [p.name for p in rows] == ["scale_1.csv", "scale_1.replicates.csv", "scale_2.csv", "scale_2.replicates.csv"]
    # Forcing the rows reruns their evaluations and the gathering (deleting them would trigger
    # nothing: Snakemake does not remake a missing intermediate whose consumers exist).
    forced = [str(p.relative_to(copy)) for p in rows]
    snakemake(copy, "results/smoke/metrics.csv", "--configfile", SMOKE, "--forcerun", *forced)
    for path in rows:
        assert path.stat().st_mtime > (smoke_run / path.relative_to(copy)).stat().st_mtime, path  # written again
        assert path.read_bytes() == (smoke_run / path.relative_to(copy)).read_bytes(), path
    for name in ("metrics.csv", "metrics_by_sampler.csv", "metrics_replicates.csv"):
        rerun, first = copy / "results/smoke" / name, smoke_run / "results/smoke" / name
        assert rerun.stat().st_mtime > first.stat().st_mtime, name  # it was written again
        assert rerun.read_bytes() == first.read_bytes(), name


def test_report_gathers_figures_and_tables_with_captions(smoke_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(smoke_run, "--configfile", SMOKE, "--report", str(report))
    html = report.read_text(errors="replace")
    for text in ("metrics_vs_scale.png", "hs_table1.html", "dn_table4.html", "Ho &amp; Salimans Table 1"):
        assert text in html, text


SMOKE_SDG = "config/smoke_sdg.yaml"


@pytest.fixture(scope="module")
def sdg_run(smoke_run, tmp_path_factory) -> Path:
    """The smoke run, copied, with similarity guidance merged over it (config/smoke_sdg.yaml, as
    make run-sdg merges config/sdg.yaml over the default run): it adds only the encoders, the two
    gamma sweeps and what reads every row."""
    copy = tmp_path_factory.mktemp("sdg") / "run"
    shutil.copytree(smoke_run, copy, symlinks=True)
    plan = job_counts(snakemake(copy, "--configfile", SMOKE, SMOKE_SDG, "--dry-run").stdout)
    assert plan["train_network"] == 2 and plan["sample"] == 4 and plan["evaluate"] == 4, plan  # nothing retrained
    snakemake(copy, "--configfile", SMOKE, SMOKE_SDG)
    return copy


@pytest.mark.slow  # two trainings and four sampling jobs more (about a minute): make test-slow, which CI runs
def test_similarity_guidance_runs_through_the_pipeline_on_trained_encoders(sdg_run):
    """Issue 14 on the smoke run: the sdg rows with their metrics, the references kept and measured,
    the figures, the encoders' logs, the findings; on the trained encoders grad F is finite and
    nonzero at every t for both targets, and gamma = 0 is the unguided model's sampling bit for bit."""
    from diffguide.guidance.methods.similarity.wrapper import Similarity
    from diffguide.guidance.wrappers import guide_gradient
    from diffguide.models.kinds import load_checkpoint

    root = sdg_run / "results/smoke"
    metrics = pd.read_csv(root / "metrics.csv").set_index(["method", "scale"])
    for row in [("sdg_text", 0.0), ("sdg_text", 10.0), ("sdg_image", 0.0), ("sdg_image", 10.0)]:
        assert np.isfinite(metrics.loc[row, ["fid_classifier", "accuracy_classifier", "fid_inception"]]).all(), row
    similarity = metrics["reference_similarity_classifier"].dropna()
    assert list(similarity.index) == [("sdg_image", 0.0), ("sdg_image", 10.0)]
    assert metrics.loc[("sdg_text", 0.0), "fid_classifier"] == metrics.loc[("cg", 0.0), "fid_classifier"]
    references = np.load(root / "samples/ddim4-leading/sdg_image/scale_10.npz")
    assert references["reference_images"].shape == (20, 16, 16, 1)  # 2 per class, one per sample
    assert list(references["reference_slots"]) == list(range(20))
    for figure in ("grid_sdg_text", "grid_sdg_image", "references_sdg_image", "best_sdg_text", "metrics_vs_scale"):
        with Image.open(root / "figures" / f"{figure}.png") as png:
            assert np.asarray(png.convert("L")).std() > 5, figure
    assert "accuracy" in pd.read_csv(root / "logs/noisy_image_encoder_accuracy_by_t.csv").columns
    findings = subprocess.run([sys.executable, "-m", "diffguide.findings", "results/smoke/metrics.csv"], cwd=sdg_run,
                              capture_output=True, text=True).stdout
    assert re.search(r"^(PASS|FAIL)  11\. sdg_text vs classifier guidance.*95% CI \[", findings, flags=re.M), findings
    assert "skipped" not in findings

    clip, noisy = (load_checkpoint(root / f"models/{name}.pt")[0] for name in ("clip", "noisy_image_encoder"))
    with torch.no_grad():
        pixels = torch.from_numpy(references["reference_images"]).permute(0, 3, 1, 2).float() / 127.5 - 1
        targets = {"text": clip.encode_class_names(), "image": clip.encode_image(pixels)}
    t = torch.arange(100)  # every t of the smoke schedule, one image each
    x = torch.randn(100, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for name, target in targets.items():
        grad = guide_gradient(Similarity(noisy, target), x, t, t % len(target))
        assert torch.isfinite(grad).all(), name
        assert (grad.flatten(1).norm(dim=1) > 0).all(), name
    unguided = np.load(root / "samples/ddim4-leading/cg/scale_0.npz")["images"]
    for method in ("sdg_text", "sdg_image"):
        assert np.array_equal(np.load(root / f"samples/ddim4-leading/{method}/scale_0.npz")["images"], unguided)
        guided = np.load(root / f"samples/ddim4-leading/{method}/scale_10.npz")["images"]
        assert not np.array_equal(guided, unguided), method  # gamma reached the wrapper


def test_each_p_uncond_trains_its_own_conditional_model(smoke_run):
    from diffguide.models.kinds import load_checkpoint

    for name in ("conditional", "conditional_p0.5"):
        model, payload = load_checkpoint(smoke_run / f"results/smoke/models/{name}.pt")
        assert payload["arch"]["num_classes"] == 10
    a = load_checkpoint(smoke_run / "results/smoke/models/conditional.pt")[0].state_dict()
    b = load_checkpoint(smoke_run / "results/smoke/models/conditional_p0.5.pt")[0].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # different label dropout, different weights


def test_adding_a_p_uncond_value_trains_only_its_model_and_sweep(smoke_run):
    result = snakemake(smoke_run, "--configfile", SMOKE, "--dry-run", "--config",
                       "training={conditional: {steps: 20, batch_size: 32, lr: 0.002, ema_decay: 0.99, p_uncond: 0.2, "
                       "p_uncond_sweep: [0.5, 0.1], log_every: 5}, unconditional: {steps: 20, batch_size: 32, lr: 0.002, "
                       "ema_decay: 0.99, log_every: 5}, noisy_classifier: {steps: 20, batch_size: 32, lr: 0.002, "
                       "log_every: 5}, eval_classifier: {steps: 40, batch_size: 64, lr: 0.005, log_every: 10}}")
    counts = job_counts(result.stdout)
    assert counts["train_network"] == 1 and counts["sample"] == 2 and counts["evaluate"] == 2, counts
    assert "results/smoke/models/conditional_p0.1.pt" in result.stdout


TOY_PLUGIN = '''"""A toy guidance method for the tests: classifier-free guidance at w = scale / 2."""
from diffguide.guidance.wrappers import ClassifierFreeGuidance, ClipDenoised, Guided
from diffguide.registry import Method, register_method


def build(models, scale, schedule, *, clip_x0, options):
    guided = ClassifierFreeGuidance(models["eps_model"], w=scale / 2)
    return Guided(ClipDenoised(guided, schedule) if clip_x0 else guided)


register_method(Method("toy", "g", "toy guidance (g)", "toy guidance, columns: g", "CFG at w = g / 2.",
                       eps_model="conditional", builder="toy_guidance:build"))
'''


@pytest.mark.slow  # a real sampling job (about 25 s quiet): make test-slow, which CI runs, keeps make test under 10 min
def test_a_method_registered_by_a_plugin_runs_through_the_plan_and_a_real_sampling_job(smoke_run, tmp_path):
    """A new method is one module and one registry row: the plan gains exactly its jobs, and its
    sampling job, given the row, samples with it (toy at g = 2 is cfg at w = 1, bit for bit)."""
    (tmp_path / "toy_guidance.py").write_text(TOY_PLUGIN)
    config = tmp_path / "toy.yaml"
    config.write_text((smoke_run / SMOKE).read_text().replace("guidance:\n", "plugins: [toy_guidance]\nguidance:\n  "
                      "methods: [cfg, cg, cond_cg, toy]\n  toy_scales: [0, 2]\n", 1))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    plan = snakemake(smoke_run, "--configfile", str(config), "--dry-run", env=env)
    counts = job_counts(plan.stdout)
    assert counts["sample"] == 2 and counts["evaluate"] == 2 and "train_network" not in counts, counts
    assert counts["sample_grid"] == 1 and counts["best_scale_gallery"] == 5, counts  # its own, and the others (the best may move)
    target = "results/smoke/samples/ddim4-leading/toy/scale_2.npz"
    snakemake(smoke_run, target, "--configfile", str(config), env=env)  # the target first: --configfile takes several
    toy, cfg = np.load(smoke_run / target), np.load(smoke_run / "results/smoke/samples/ddim4-leading/cfg/scale_1.npz")
    assert str(toy["method"]) == "toy" and np.array_equal(toy["images"], cfg["images"])
    unguided = np.load(smoke_run / "results/smoke/samples/ddim4-leading/cfg/scale_0.npz")
    assert not np.array_equal(toy["images"], unguided["images"])  # the scale reached the wrapper
    (smoke_run / target).unlink()  # the other tests plan the smoke config without it
    Path(f"{smoke_run / target}.sha256").unlink(missing_ok=True)


def test_second_run_schedules_no_job(smoke_run):
    result = snakemake(smoke_run, "--configfile", SMOKE, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_every_file_of_the_run_is_readable_by_group_and_others(smoke_run):
    """Written under umask 022 (conftest.py), every artifact, log and figure has the mode any new
    file gets (atomic writes chmod their 0600 temp files): a shared run can be read by colleagues."""
    files = [path for path in (smoke_run / "results/smoke").rglob("*") if path.is_file()]
    unreadable = [str(path) for path in files if path.stat().st_mode & 0o044 != 0o044]
    assert len(files) > 100 and not unreadable, unreadable[:10]


def test_the_run_records_its_resolved_config_and_that_config_reruns_it(smoke_run):
    """results/smoke/config.yaml is smoke.yaml with the schema's defaults filled in, checksummed,
    and itself a config file of the same run: given instead of smoke.yaml, nothing is to be done."""
    from diffguide.base.integrity import problem
    from diffguide.pipeline.config_schema import SCHEMA_PATH, config_errors

    recorded_path = smoke_run / "results/smoke/config.yaml"
    assert problem(recorded_path) is None  # its checksum matches
    expected = yaml.safe_load((REPO / SMOKE).read_text())
    assert config_errors(expected, SCHEMA_PATH) == []  # fills in the defaults, as the Snakefile does
    recorded = yaml.safe_load(recorded_path.read_text())
    assert recorded == expected and recorded["sampling"]["timestep_spacing"] == "leading"  # a default, written out
    result = snakemake(smoke_run, "--configfile", "results/smoke/config.yaml", "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_adding_a_scale_reruns_only_that_scale_and_the_figures(smoke_run):
    result = snakemake(smoke_run, "--configfile", SMOKE, "--dry-run",
                       "--config", "guidance={cfg_scales: [0, 1, 3], cg_scales: [0, 2]}")
    # w = 3 for the p_uncond = 0.2 model (cfg) and the p_uncond = 0.5 one (cfg_p0.5), nothing else
    assert job_counts(result.stdout) == {"sample": 2, "evaluate": 2, "gather_metrics": 1, "tradeoff_figure": 1,
                                         "metrics_vs_scale_figure": 1, "tables": 1, "sample_grid": 2,
                                         "best_scale_gallery": 4, "record_config": 1,
                                         "all": 1}  # every gallery: the best scale may move; the record: a setting changed
    assert "results/smoke/samples/ddim4-leading/cfg/scale_3.npz" in result.stdout
    assert "results/smoke/samples/ddim4-leading/cfg_p0.5/scale_3.npz" in result.stdout


def test_a_sampling_sweep_adds_one_job_per_method_and_scale_and_reruns_nothing_cached(smoke_run):
    result = snakemake(smoke_run, "--configfile", SMOKE, "--dry-run", "--config",
                       "sampling={sampler: ddim, steps: 4, num_samples: 20, batch_size: 20, "
                       "sweep: [{sampler: ddpm, steps: 3, timestep_spacing: linspace}]}")
    counts = job_counts(result.stdout)
    # The 7 (method, scale) points again at DDPM with 3 steps; no model retrains and no sample of
    # the primary setting (DDIM, 4 steps) is drawn again.
    assert counts["sample"] == 7 and counts["evaluate"] == 7 and "train_network" not in counts, counts
    assert "results/smoke/samples/ddpm3-linspace/cg/scale_2.npz" in result.stdout
    assert not re.search(r"output: [^\n]*samples/ddim4-leading/", result.stdout)  # galleries only read them


def test_changing_a_training_knob_retrains_only_that_network(smoke_run, tmp_path):
    config = tmp_path / "more_steps.yaml"
    text = (smoke_run / SMOKE).read_text().replace(
        "noisy_classifier: {steps: 20", "noisy_classifier: {steps: 25")
    config.write_text(text)
    result = snakemake(smoke_run, "--configfile", str(config), "--dry-run")
    counts = job_counts(result.stdout)
    assert counts["train_network"] == 1 and counts["sample"] == 2  # cg and cond_cg at s = 2 only
    retrained = re.findall(r"^\s+output: results/smoke/models/(\w+)\.pt$", result.stdout, flags=re.MULTILINE)
    assert retrained == ["noisy_classifier"]


# Each case is a Snakemake start (2.5 s); the checks behind them are unit-tested in
# test_config_checks, so two run in make test and the rest in make test-slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("override, key", [
    ("bogus_key: 1", "bogus_key"),
    ("training: {conditional: {p_uncond: 1.0}}", "training.conditional.p_uncond"),
    pytest.param("training: {unconditional: {steps: -5}}", "training.unconditional.steps", marks=SLOW),
    pytest.param("sampling: {steps: 0}", "sampling.steps", marks=SLOW),
    pytest.param("guidance: {cfg_scales: []}", "guidance.cfg_scales", marks=SLOW),
    pytest.param("dataset: {name: imagenet}", "dataset.name", marks=SLOW),
    pytest.param("precision: half", "precision", marks=SLOW),
])
def test_invalid_config_stops_before_any_job_naming_the_key(tmp_path, override, key):
    workdir = copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text(f"run: bad\n{override}\n")
    result = snakemake(workdir, "--configfile", "bad.yaml", "--dry-run", check=False)
    assert result.returncode != 0
    assert f"  {key}:" in result.stderr, result.stderr
    assert not (workdir / "results").exists()


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_slurm_profile_dry_run_resolves_resources(tmp_path):
    """What each job will ask SLURM for (the partition is the plugin's choice from partitions.yaml:
    test_slurm_partitions.py; the real submissions: make test-slurm)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")  # a pinned dependency: always present
    workdir = copy_workflow(tmp_path)
    gpu_config = (workdir / SMOKE).read_text() + "resources: {gpu: 2, train_mem_mb: 16000, train_runtime: 240}\n"
    (workdir / "gpu.yaml").write_text(gpu_config)
    result = snakemake(workdir, "--profile", "workflow/profiles/slurm", "--configfile", "gpu.yaml", "--dry-run")
    out = result.stdout
    assert re.search(r"Using profiles? workflow/profiles/slurm", out + result.stderr)
    blocks = {m.group(1): m.group(2) for m in re.finditer(r"^rule (\w+):\n((?:    .*\n)+)", out, flags=re.MULTILINE)}
    train = blocks["train_network"]
    for expected in ("mem_mb=16000", "runtime=240", "gpu=2", "nodes=1"):
        assert expected in train, (expected, train)
    # one-process jobs take one GPU of the two (that the tiny jobs are not submitted at all, a dry
    # run does not show: tests/test_slurm.py checks it on a real cluster)
    for rule in ("sample", "evaluate", "inception_reference"):
        assert "gpu=1" in blocks[rule], (rule, blocks[rule])
    assert "gpu=" not in blocks["reference_statistics"]  # seconds of a small classifier: a CPU job


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_missing_inception_weights_stop_the_run_at_start_with_the_fix(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text("run: bad\nevaluation: {inception_weights: /nonexistent/inception.pt}\n")
    result = snakemake(workdir, "--configfile", "bad.yaml", "--dry-run", check=False)
    assert result.returncode != 0
    assert "no Inception file at /nonexistent/inception.pt" in result.stderr
    assert "evaluation.inception: false" in result.stderr
    assert not (workdir / "results").exists()


SMOKE_TESTBED = "config/smoke_testbed.yaml"
# The testbed's methods the smoke testbed runs, as its config lists them (cfg is their baseline).
TESTBED_METHODS = tuple(m for m in yaml.safe_load((REPO / SMOKE_TESTBED).read_text())["guidance"]["methods"] if m != "cfg")


def assert_reused_and_judged(copy: Path, run: str, method: str, finding_set: str, first_finding: int) -> None:
    """A run on the smoke run's models (models_from): its ``method`` at scale 0 is the smoke run's own
    samples, bit for bit (the same model, seeds and sampler), and the findings command of
    ``finding_set`` judges its metrics (PASS or FAIL, never a crash), starting at ``first_finding``."""
    ours = np.load(copy / f"results/{run}/samples/ddim4-leading/{method}/scale_0.npz")["images"]
    smoke = np.load(copy / f"results/smoke/samples/ddim4-leading/{method}/scale_0.npz")["images"]
    assert np.array_equal(ours, smoke)
    findings = subprocess.run([sys.executable, "-m", "diffguide.findings", f"results/{run}/metrics.csv",
                               "--set", finding_set], cwd=copy, capture_output=True, text=True)
    assert findings.returncode in (0, 1), findings.stderr
    assert re.search(rf"^(PASS|FAIL)  {first_finding}\. ", findings.stdout, flags=re.M), findings.stdout


@pytest.mark.slow  # one small training and 21 sampling jobs (about a minute): make test-slow, which CI runs
def test_the_testbed_runs_on_another_runs_models(smoke_run, tmp_path_factory):
    """Issue 16's `make testbed` on the smoke run (config/smoke_testbed.yaml): its own run reading
    the smoke run's conditional and evaluation models (models_from), training only autoguidance's
    weak model; every method sampled and measured on those models, its figures, table and findings."""
    copy = tmp_path_factory.mktemp("testbed") / "run"
    shutil.copytree(smoke_run, copy, symlinks=True)
    plan = job_counts(snakemake(copy, "testbed", "--configfile", SMOKE, SMOKE_TESTBED, "--dry-run").stdout)
    assert plan["train_network"] == 1 and plan["sample"] == 21 and plan["evaluate"] == 21, plan
    assert "results/smoke_testbed/models/weak_conditional.pt" in snakemake(
        copy, "testbed", "--configfile", SMOKE, SMOKE_TESTBED, "--dry-run").stdout
    snakemake(copy, "testbed", "--configfile", SMOKE, SMOKE_TESTBED)
    root = copy / "results/smoke_testbed"
    assert sorted(p.name for p in (root / "models").glob("*.pt")) == ["weak_conditional.pt"]  # the rest reused
    metrics = pd.read_csv(root / "metrics.csv")
    assert set(metrics.method) == {"cfg", *TESTBED_METHODS}
    assert np.isfinite(metrics[["fid_classifier", "accuracy_classifier", "saturation", "displacement"]]).all().all()
    assert (metrics.loc[metrics.scale == 0, "displacement"] == 0).all()  # cfg's w = 0 is the conditional model
    assert (metrics.loc[metrics.scale > 0, "displacement"] > 0).all()
    for figure in ("testbed_tradeoff", "testbed_saturation", "testbed_toy"):
        with Image.open(root / "figures" / f"{figure}.png") as png:
            assert np.asarray(png.convert("L")).std() > 5, figure
    table = (root / "tables/testbed.md").read_text()
    assert all(method in table for method in TESTBED_METHODS), table
    assert "**At matched strength**" in table and "| cfg_interval | displacement | w = 4 (" in table, table
    # scale 0 of the reused conditional model here is the smoke run's own cfg w = 0, bit for bit
    assert_reused_and_judged(copy, "smoke_testbed", "cfg", "testbed", first_finding=12)
    missing = subprocess.run([SNAKEMAKE, "testbed", "-n", "--configfile", SMOKE, SMOKE_TESTBED, "--config",
                              "models_from={run: nowhere, networks: [conditional]}"], cwd=copy, capture_output=True,
                             text=True)
    assert missing.returncode != 0 and "results/nowhere/models/conditional.pt does not exist" in missing.stdout + \
        missing.stderr


SMOKE_TRAINING_FREE = "config/smoke_training_free.yaml"


@pytest.mark.slow  # one small training and seven sampling jobs (about a minute): make test-slow, which CI runs
def test_training_free_guidance_runs_on_another_runs_models(smoke_run, tmp_path_factory):
    """Issue 28's `make training-free` on the smoke run (config/smoke_training_free.yaml): its own run
    reading the smoke run's unconditional model and both classifiers, training only the clean guide
    classifier; every method sampled and measured, the matched table and findings 20-22."""
    copy = tmp_path_factory.mktemp("training_free") / "run"
    shutil.copytree(smoke_run, copy, symlinks=True)
    plan = job_counts(snakemake(copy, "training_free", "--configfile", SMOKE, SMOKE_TRAINING_FREE, "--dry-run").stdout)
    assert plan["train_network"] == 1 and plan["sample"] == 7 and plan["evaluate"] == 7, plan
    snakemake(copy, "training_free", "--configfile", SMOKE, SMOKE_TRAINING_FREE)
    root = copy / "results/smoke_training_free"
    assert sorted(p.name for p in (root / "models").glob("*.pt")) == ["guide_classifier.pt"]  # the rest reused
    metrics = pd.read_csv(root / "metrics.csv")
    assert set(metrics.method) == {"cg", "dps", "freedom", "mpgd", "ugd", "tfg"}  # cg_laplace needs ddpm; smoke is DDIM
    assert np.isfinite(metrics[["fid_classifier", "accuracy_classifier"]]).all().all()
    table = (root / "tables/training_free.md").read_text()
    assert "At matched accuracy" in table and "20. classifier guidance by the noisy classifier" in table, table
    # cg's s = 0 here is the smoke run's own unguided model, bit for bit
    assert_reused_and_judged(copy, "smoke_training_free", "cg", "training_free", first_finding=20)


@pytest.mark.slow  # a second smoke run to metrics.csv (about 3 minutes on 2 cores): make test-slow, which CI runs
def test_a_second_run_under_another_name_is_byte_identical(smoke_run, tmp_path):
    """Every random draw is seeded, so the smoke config rerun into another run folder gives the
    same bytes: prepared data, models, samples, features and metrics (logs, timings and figures'
    PDF dates aside, and the recorded config, which names its run)."""
    workdir = copy_workflow(tmp_path)
    again = workdir / "again.yaml"
    again.write_text((REPO / SMOKE).read_text().replace("run: smoke", "run: smoke_again"))
    snakemake(workdir, "results/smoke_again/metrics.csv", "--configfile", str(again))
    first, second = smoke_run / "results/smoke", workdir / "results/smoke_again"
    compared = [path.relative_to(second) for pattern in ("data/*.npz", "models/*.pt", "samples/**/*.npz",
                                                         "reference/*.npz", "metrics/**/*.csv", "metrics*.csv")
                for path in second.glob(pattern)]
    assert len(compared) > 30 and Path("metrics.csv") in compared
    assert sum(p.parts[0] == "samples" for p in compared) == 7  # every (method, scale) of the smoke run
    differing = [str(p) for p in compared if (first / p).read_bytes() != (second / p).read_bytes()]
    assert not differing, differing
