"""Artifacts carry their checksum; a damaged one is named with the command that remakes it."""

import os
import stat
import subprocess

import numpy as np
import pytest

from diffguide.base import integrity
from diffguide.base.atomic import atomic_open


def write(path, payload: bytes, checksum=True):
    with atomic_open(path, checksum=checksum) as handle:
        handle.write(payload)
    return path


def test_checksum_is_sha256sum_compatible_and_verifies(tmp_path):
    path = write(tmp_path / "models" / "m.pt", b"weights")
    assert integrity.verify(path) == path
    result = subprocess.run(["sha256sum", "-c", "m.pt.sha256"], cwd=path.parent, capture_output=True, text=True)
    assert result.returncode == 0 and "m.pt: OK" in result.stdout


def test_truncated_or_edited_artifact_names_itself_and_the_command(tmp_path):
    path = write(tmp_path / "train.npz", b"0123456789" * 100)
    with open(path, "r+b") as handle:  # truncate and keep the mtime, as in issue 12
        mtime = os.stat(path).st_mtime_ns
        handle.truncate(500)
    os.utime(path, ns=(mtime, mtime))
    with pytest.raises(integrity.CorruptArtifactError,
                       match=rf"{path} does not match its checksum.*snakemake --cores all --configfile x.yaml --forcerun {path}$"):
        integrity.verify(path, configfile="x.yaml")


def test_missing_checksum_is_reported_and_a_missing_file_is_not_damage(tmp_path):
    path = write(tmp_path / "a.csv", b"x\n", checksum=False)
    with pytest.raises(integrity.CorruptArtifactError, match="has no checksum file a.csv.sha256"):
        integrity.verify(path)
    with pytest.raises(FileNotFoundError):
        integrity.verify(tmp_path / "absent.csv")


def test_rewriting_an_artifact_rewrites_its_checksum(tmp_path):
    path = write(tmp_path / "s.npz", b"first")
    write(path, b"second, longer")
    assert integrity.verify(path).read_bytes() == b"second, longer"


def test_a_failed_write_keeps_the_old_artifact_and_its_checksum(tmp_path):
    path = write(tmp_path / "s.npz", b"first")
    with pytest.raises(RuntimeError):
        with atomic_open(path, checksum=True) as handle:
            handle.write(b"half")
            raise RuntimeError("killed")
    assert integrity.verify(path).read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "s.npz.sha256"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_artifacts_get_the_mode_the_umask_gives_a_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write(tmp_path / "metrics.csv", b"x\n")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    for made in (path, integrity.digest_path(path)):
        assert stat.S_IMODE(made.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_check_run_lists_every_damaged_artifact_and_one_command(tmp_path):
    root = tmp_path / "results" / "r"
    good = write(root / "models" / "conditional.pt", b"good")
    bad = write(root / "data" / "test.npz", b"data")
    bad.write_bytes(b"dat")
    unchecked = write(root / "samples" / "ddim4-linspace" / "cfg" / "scale_1.npz", b"s", checksum=False)
    write(root / "figures" / "x.png", b"png", checksum=False)  # not an artifact a rule reads
    lines = integrity.check_run(root, configfile="config/smoke.yaml")
    assert lines[0] == f"  {bad} does not match its checksum: it was changed or truncated after it was written"
    assert lines[1].startswith(f"  {unchecked} has no checksum file")
    assert lines[2].endswith(f"snakemake --cores all --configfile config/smoke.yaml --forcerun {bad} {unchecked}")
    assert str(good) not in "\n".join(lines)
    assert integrity.check_run(root, remade=(str(bad), f"{unchecked.parent}/./{unchecked.name}")) == []  # being remade: not checked
    assert integrity.adopt(root) == [unchecked]
    bad.unlink()
    integrity.digest_path(bad).unlink()  # removed on purpose, with its checksum
    assert integrity.check_run(root) == []


def test_forced_targets_are_read_from_snakemakes_command_line():
    argv = ["snakemake", "--cores", "all", "--forcerun", "a.npz", "b.pt", "--configfile", "c.yaml", "-R", "d", "-n"]
    assert integrity.forced_targets(argv) == ("a.npz", "b.pt", "d")
    assert integrity.forced_targets(["snakemake", "--forcerun=x.csv", "y"]) == ("x.csv",)
    assert integrity.forced_targets(["snakemake", "--cores", "2"]) == ()


def test_load_npz_and_read_csv_verify_first(tmp_path):
    path = tmp_path / "f.npz"
    with atomic_open(path, checksum=True) as handle:
        np.savez(handle, x=np.arange(3))
    np.testing.assert_array_equal(integrity.load_npz(path)["x"], np.arange(3))
    csv = write(tmp_path / "m.csv", b"a,b\n1,2\n")
    assert integrity.read_csv(csv)["b"].tolist() == [2]
    csv.write_bytes(b"a,b\n1,3\n")
    with pytest.raises(integrity.CorruptArtifactError):
        integrity.read_csv(csv)


def test_a_finished_artifact_that_went_missing_is_named_as_possibly_stale(tmp_path):
    root = tmp_path / "results" / "r"
    gone = write(root / "samples" / "ddim4-linspace" / "cfg" / "scale_1.npz", b"s")
    kept = write(root / "metrics.csv", b"made from it\n")
    gone.unlink()
    lines = integrity.check_run(root, configfile="c.yaml")
    assert lines[0].startswith(f"  {gone} is missing, though it was finished once (its scale_1.npz.sha256 remains)")
    assert lines[1].endswith(f"--forcerun {gone}") and str(kept) not in lines[1]
    assert integrity.check_run(root, remade=(str(gone),)) == []
    kept.unlink()  # nothing made later is left (a killed first run, --delete-all-output): a plain rerun remakes it
    assert integrity.check_run(root) == []


def test_a_temp_file_a_killed_writer_left_is_removed_by_the_next_write(tmp_path):
    """kill -9 during an atomic write leaves .<name>.<random>.tmp; the next write of that file
    removes it, and leaves other files' temps alone (they may be being written)."""
    from diffguide.base.atomic import atomic_open

    target = tmp_path / "conditional.ckpt"
    orphan = tmp_path / ".conditional.ckpt.k1ll3d_x.tmp"  # mkstemp's 8 random characters
    others = [tmp_path / ".unconditional.ckpt.wr1t1ng_.tmp", tmp_path / ".conditional.ckpt.sha256.wr1t1ng_.tmp"]
    orphan.write_bytes(b"half")
    for other in others:
        other.write_bytes(b"busy")
    with atomic_open(target) as handle:
        handle.write(b"whole")
    assert target.read_bytes() == b"whole" and not orphan.exists()
    assert all(other.read_bytes() == b"busy" for other in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name for other in others] + [target.name])
