"""make test's scheduling on pytest-xdist workers (tests/conftest.py): every test that reads the smoke
run, directly or through a fixture, lands in one scope, so one worker builds the run once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from conftest import SmokeRunOnOneWorker, smoke_run_readers


def test_a_test_reading_the_smoke_run_through_fixtures_is_found(tmp_path):
    test_file = tmp_path / "test_example.py"
    test_file.write_text("import pytest\n\n@pytest.fixture\ndef copy(smoke_run, tmp_path):\n    pass\n\n"
                         "@pytest.fixture\ndef deeper(copy):\n    pass\n\ndef test_direct(smoke_run):\n    pass\n\n"
                         "def test_through_two_fixtures(deeper, tmp_path):\n    pass\n\ndef test_alone(tmp_path):\n    pass\n")
    assert smoke_run_readers(test_file) == {"test_direct", "test_through_two_fixtures"}


def test_the_scheduler_gives_the_smoke_runs_readers_one_scope_and_every_other_test_its_own():
    split = SmokeRunOnOneWorker._split_scope
    pipeline = smoke_run_readers(Path(__file__).parent / "test_pipeline.py")
    assert "test_similarity_guidance_runs_through_the_pipeline_on_trained_encoders" in pipeline  # via sdg_run
    scheduler = SimpleNamespace(readers={"test_a.py": {"test_reads"}})
    assert split(scheduler, "tests/test_a.py::test_reads[param-1]") == "smoke_run"
    assert split(scheduler, "tests/test_a.py::test_reads") == "smoke_run"
    assert split(scheduler, "tests/test_a.py::test_other[x]") == "tests/test_a.py::test_other[x]"
    assert split(scheduler, "tests/test_b.py::test_reads") == "tests/test_b.py::test_reads"
