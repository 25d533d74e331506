"""Adding a guidance method is adding a folder (issue 26, item 7). A copy of the package gets one new
unit, guidance/methods/toy/ (its declaration and its wrapper), and no other file changes: the
registry knows the method in its declared place, the config check accepts it, its builder builds a
guided model that samples, and the real Snakefile plans its sampling and evaluation jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TOY_DECLARATION = '''"""A toy method for the tests: classifier-free guidance at w = g / 2, declared."""

from diffguide.registry import Method, Scales

ORDER = 99

METHODS = (
    Method("toy", "g", "toy guidance (g)", "toy guidance, columns: g", "CFG at w = g / 2.",
           eps_model="conditional", builder="diffguide.guidance.methods.toy.wrapper:build_toy",
           scales=Scales((0, 2), "g of toy: classifier-free guidance at w = g / 2"), group="testbed"),
)
'''

TOY_WRAPPER = '''"""The toy method: classifier-free guidance (H&S eq. 6) at w = g / 2."""

from diffguide.guidance.wrappers import build_classifier_free


def build_toy(models, scale, schedule, *, clip_x0, options):
    return build_classifier_free(models, scale / 2, schedule, clip_x0=clip_x0, options=options)
'''

# Run in the copy: the registry, the config check, and one DDIM chain of toy at g = 2 against cfg at
# w = 1 on an exact mixture eps-model (they must agree bit for bit: toy is cfg at w = g / 2).
CHECK = textwrap.dedent('''
    import copy, torch, yaml
    from diffguide import registry
    from diffguide.diffusion.noise_levels import respaced_timesteps
    from diffguide.diffusion.samplers import sample_ddim
    from diffguide.diffusion.schedules import NoiseSchedule
    from diffguide.exact.gaussian_mixture import MixtureEpsModel, random_mixture
    from diffguide.pipeline.config_schema import SCHEMA_PATH, config_errors
    from diffguide.pipeline.stages.sample import guided_model

    assert list(registry.REGISTRY.methods)[-1] == "toy", list(registry.REGISTRY.methods)
    assert registry.TESTBED_METHODS[-1] == "toy"
    assert registry.run_methods({"methods": ["cfg", "toy"]}, []) == ["cfg", "toy"]
    cfg = yaml.safe_load(open("config/smoke.yaml"))
    cfg["guidance"] = {**cfg.get("guidance", {}), "methods": ["cfg", "toy"], "toy_scales": [0, 2]}
    assert config_errors(copy.deepcopy(cfg), SCHEMA_PATH) == [], config_errors(copy.deepcopy(cfg), SCHEMA_PATH)
    del cfg["guidance"]["toy_scales"]
    print(config_errors(copy.deepcopy(cfg), SCHEMA_PATH)[0])

    schedule = NoiseSchedule.make("cosine", 1000)
    eps = MixtureEpsModel(random_mixture(3, 16, torch.Generator().manual_seed(0)), schedule)
    x_T = torch.randn(6, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(6) % 3
    chains = [sample_ddim(guided_model(m, s, {"eps_model": eps}, schedule, clip_x0=False, options={}).model, x_T,
                          respaced_timesteps(1000, 10), schedule=schedule, labels=y, noise=torch.randn_like,
                          progress=False)
              for m, s in (("toy", 2.0), ("cfg", 1.0), ("cfg", 2.0))]
    assert torch.equal(chains[0], chains[1]) and not torch.equal(chains[0], chains[2])
    print("toy samples as cfg at w = 1")
''')


@pytest.fixture(scope="module")
def package_with_toy(tmp_path_factory) -> Path:
    """A copy of src/ and of the workflow in which the only change is the new folder."""
    root = tmp_path_factory.mktemp("unit")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    unit = root / "src/diffguide/guidance/methods/toy"
    unit.mkdir()
    (unit / "__init__.py").write_text(TOY_DECLARATION)
    (unit / "wrapper.py").write_text(TOY_WRAPPER)
    for name in ("Snakefile", "workflow", "config", "profiles"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    return root


def run_in(root: Path, command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)


def test_a_new_unit_folder_is_registered_checked_built_and_sampled(package_with_toy):
    result = run_in(package_with_toy, [sys.executable, "-c", CHECK])
    assert result.returncode == 0, result.stderr[-3000:]
    missing, sampled = result.stdout.strip("\n").splitlines()
    assert missing.startswith("  guidance.toy_scales:") and "toy is in guidance.methods" in missing, missing
    assert missing.endswith("add guidance.toy_scales: [0, 2]"), missing  # its declared sweep
    assert sampled == "toy samples as cfg at w = 1"


def test_the_snakefile_plans_the_new_units_jobs(package_with_toy):
    config = package_with_toy / "toy.yaml"
    smoke = yaml.safe_load((package_with_toy / "config/smoke.yaml").read_text())
    smoke["guidance"] = {**smoke.get("guidance", {}), "methods": ["cfg", "toy"], "toy_scales": [0, 2]}
    config.write_text(yaml.safe_dump(smoke))
    result = run_in(package_with_toy, [SNAKEMAKE, "--cores", "1", "--configfile", str(config), "--dry-run"])
    assert result.returncode == 0, result.stderr[-3000:]
    for scale in (0, 2):  # each scale of its sweep: a sampling job and its evaluation
        for path in (f"samples/ddim4-leading/toy/scale_{scale}.npz", f"metrics/ddim4-leading/toy/scale_{scale}.csv"):
            assert f"output: results/smoke/{path}" in result.stdout, (path, result.stdout[-3000:])
