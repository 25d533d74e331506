"""Tests for diffguide.data: sources, checksums, fitting, cache files, tensor conversion.

No test touches the network: downloads are disabled or torchvision is monkeypatched.
Synthetic IDX files stand in for real ones wherever an error path is exercised.
"""

import gzip
import hashlib
import zlib

import numpy as np
import pytest
import torch
import torchvision.datasets

from diffguide import data
from diffguide.base.atomic import write_digest
from diffguide.base.integrity import CorruptArtifactError, file_sha256
from diffguide.data import (DATASETS, DataSourceError, PreparedData, images_to_uint8, load_prepared, prepare_dataset,
                            save_prepared)

FASHION_STEMS = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
}


# --------------------------------------------------------------------------- helpers


def adopt_digest(path):
    """Record the checksum of a file written outside save_prepared, as if save_prepared had."""
    write_digest(path, file_sha256(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX (magic 2051 for 3-D images, 2049 for 1-D labels)."""
    magic = 2051 if array.ndim == 3 else 2049
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_test_split(directory, images, labels, gz=True) -> dict:
    """Write the t10k IDX pair; return {stem: (raw bytes, file bytes)} for checksum tables."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        blob = gzip.compress(raw) if gz else raw
        (directory / (stem + (".gz" if gz else ""))).write_bytes(blob)
        written[stem] = (raw, blob)
    return written


def synthetic(n=20, size=28, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, size=(n, size, size), dtype=np.uint8)  # no zeros: padding is visible
    labels = np.arange(n, dtype=np.uint8) % 10
    return images, labels


def trust(monkeypatch, written, dataset="fashion_mnist"):
    """Make the synthetic files the 'known' ones of `dataset` so they pass verification."""
    digests = {stem: hashlib.sha256(raw).hexdigest() for stem, (raw, _) in written.items()}
    monkeypatch.setitem(data.IDX_SHA256, dataset, digests)


def trust_fashion(monkeypatch, written):
    trust(monkeypatch, written, "fashion_mnist")


def fashion_test_split(directory, unpack=False):
    """Debian's real Fashion-MNIST t10k files in `directory`: symlinked .gz, or unpacked."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        original = data.DEBIAN_FASHION_MNIST_DIR / f"{stem}.gz"
        if unpack:
            (directory / stem).write_bytes(gzip.decompress(original.read_bytes()))
        else:
            (directory / f"{stem}.gz").symlink_to(original)
    return directory


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if any torchvision IDX download is attempted."""
    def forbidden(**kwargs):
        raise AssertionError(f"torchvision download attempted: {kwargs}")

    for name in ("FashionMNIST", "MNIST"):
        monkeypatch.setattr(torchvision.datasets, name, forbidden)


def assert_source_dir_fix(message, source_dir):
    """An explicit source_dir failure names the directory and both fixes, and lists no fallback."""
    assert f"from dataset.source_dir {source_dir}:" in message
    assert f"in {source_dir}, or set dataset.source_dir: null" in message
    assert "every source failed" not in message


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Point the Debian source at an empty directory so only the source under test can succeed."""
    empty = tmp_path / "debian-empty"
    empty.mkdir()
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", empty)
    return empty


def tiny_prepared(n=6, size=4):
    images = np.arange(n * size * size, dtype=np.uint8).reshape(n, size, size, 1)
    return PreparedData(images=images, labels=np.arange(n, dtype=np.int64) % 10,
                        dataset="digits", split="train", source="unit test",
                        class_names=DATASETS["digits"].class_names)


# --------------------------------------------------------------------------- digits


def test_digits_train_test_are_disjoint_and_well_formed():
    train = prepare_dataset("digits", "train", 8)
    test = prepare_dataset("digits", "test", 8)
    assert train.images.shape == (1437, 8, 8, 1) and test.images.shape == (360, 8, 8, 1)
    for split in (train, test):
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
        assert set(np.unique(split.labels)) == set(range(10))
        assert split.images.max() == 255  # 16 maps to 255
    train_rows = {image.tobytes() for image in train.images}  # digits has no duplicate images
    assert not any(image.tobytes() in train_rows for image in test.images)


def test_digits_is_deterministic_and_stratified():
    first, second = prepare_dataset("digits", "test", 8), prepare_dataset("digits", "test", 8)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    counts = np.bincount(first.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_resize_to_16():
    small = prepare_dataset("digits", "test", 8)
    big = prepare_dataset("digits", "test", 16, fit="resize")
    assert big.images.shape == (360, 16, 16, 1) and big.images.dtype == np.uint8
    np.testing.assert_array_equal(big.labels, small.labels)
    assert abs(big.images.mean() - small.images.mean()) < 5  # same picture, not zeros or noise


# --------------------------------------------------------------------------- fashion-mnist


def test_real_fashion_mnist_test_split_from_debian_dir():
    prepared = prepare_dataset("fashion_mnist", "test", 32, download=False)
    assert prepared.images.shape == (10000, 32, 32, 1)
    np.testing.assert_array_equal(np.bincount(prepared.labels), np.full(10, 1000))
    assert "Debian" in prepared.source
    assert prepared.class_names[0] == "T-shirt/top" and prepared.class_names[9] == "Ankle boot"
    assert not prepared.images[:, :2].any() and not prepared.images[:, -2:].any()


def test_pad_keeps_content_centred_from_torchvision_layout(monkeypatch, tmp_path, no_debian):
    images, labels = synthetic()
    trust_fashion(monkeypatch, write_test_split(tmp_path / "FashionMNIST" / "raw", images, labels))
    prepared = prepare_dataset("fashion_mnist", "test", 32, source_dir=str(tmp_path), download=False)
    assert prepared.images.shape == (20, 32, 32, 1)
    np.testing.assert_array_equal(prepared.images[:, 2:30, 2:30, 0], images)
    border = prepared.images.copy()
    border[:, 2:30, 2:30] = 0
    assert not border.any()
    np.testing.assert_array_equal(prepared.labels, labels)
    assert "source_dir" in prepared.source and str(tmp_path) in prepared.source


def test_native_size_is_unchanged_and_uncompressed_idx_is_read(monkeypatch, tmp_path, no_debian):
    images, labels = synthetic()
    trust_fashion(monkeypatch, write_test_split(tmp_path, images, labels, gz=False))
    prepared = prepare_dataset("fashion_mnist", "test", 28, source_dir=str(tmp_path), download=False)
    np.testing.assert_array_equal(prepared.images[..., 0], images)


@pytest.mark.parametrize("size", [31, 24])
def test_pad_rejects_odd_or_negative_margin(size):
    with pytest.raises(ValueError, match="size difference must be even and non-negative"):
        prepare_dataset("fashion_mnist", "test", size, download=False)


@pytest.mark.parametrize("gz", [True, False])
def test_wrong_content_in_source_dir_reports_checksum(tmp_path, no_debian, gz):
    images, labels = synthetic()
    write_test_split(tmp_path, images, labels, gz=gz)
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, source_dir=str(tmp_path), download=False)
    message = str(err.value)
    assert "checksum mismatch" in message
    assert str(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))) in message
    assert data.IDX_SHA256["fashion_mnist"]["t10k-images-idx3-ubyte"] in message
    assert hashlib.sha256(idx_bytes(images)).hexdigest() in message
    assert_source_dir_fix(message, tmp_path)


def test_corrupt_debian_dir_falls_through_to_error(monkeypatch, tmp_path):
    debian = tmp_path / "debian"
    images, labels = synthetic()
    write_test_split(debian, images, labels)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian)
    with pytest.raises(DataSourceError, match=r"Debian package .*checksum mismatch"):
        prepare_dataset("fashion_mnist", "test", 32, download=False)


def test_every_source_failing_names_each_source_and_the_fixes(no_debian):
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, download=False)
    message = str(err.value)
    assert "source_dir: not set" in message
    assert f"Debian package dataset-fashion-mnist ({no_debian}): no t10k-images" in message
    assert "torchvision download: disabled (download=False)" in message
    assert "dataset.source_dir" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "connect to the internet" in message


def test_unset_source_dir_and_missing_debian_dir_are_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "train", 32, download=False)
    assert "source_dir: not set" in str(err.value)
    assert f"directory {tmp_path / 'absent'} does not exist" in str(err.value)


def test_failed_download_is_recorded(monkeypatch, tmp_path, no_debian):
    class Offline:
        def __init__(self, **kwargs):
            raise RuntimeError("Error downloading: no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, cache_dir=str(tmp_path), download=True)
    assert f"torchvision download into {tmp_path}: Error downloading: no network" in str(err.value)


def test_torchvision_source_is_converted(monkeypatch, tmp_path, no_debian):
    images, labels = synthetic(n=10)
    calls = []

    class Fake:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data, self.targets = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Fake)
    prepared = prepare_dataset("fashion_mnist", "train", 32, cache_dir=str(tmp_path))
    assert calls == [(str(tmp_path), True, True)]
    np.testing.assert_array_equal(prepared.images[:, 2:30, 2:30, 0], images)
    assert prepared.labels.dtype == np.int64 and "torchvision download" in prepared.source


def test_cifar10_failure_has_no_debian_source():
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("cifar10", "test", 32, download=False)
    message = str(err.value)
    assert "source_dir: not set" in message and "Debian" not in message
    assert "cifar-10-batches-py" in message and "disabled (download=False)" in message


# --------------------------------------------------------------------------- mnist


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_unknown_content_is_rejected_packed_or_not(tmp_path, no_download, gz):
    """An unpacked MNIST file used to pass unchecked; now its content has a known sha256."""
    images, labels = synthetic()
    write_test_split(tmp_path / "MNIST" / "raw", images, labels, gz=gz)
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("mnist", "test", 32, source_dir=str(tmp_path), download=True)
    message = str(err.value)
    path = tmp_path / "MNIST" / "raw" / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    assert f"checksum mismatch for {path}" in message
    assert "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7" in message
    assert "not MNIST's original t10k-images-idx3-ubyte" in message
    assert_source_dir_fix(message, tmp_path)


def test_mnist_trusted_unpacked_files_load(monkeypatch, tmp_path):
    images, labels = synthetic()
    trust(monkeypatch, write_test_split(tmp_path, images, labels, gz=False), "mnist")
    prepared = prepare_dataset("mnist", "test", 28, source_dir=str(tmp_path), download=False)
    np.testing.assert_array_equal(prepared.images[..., 0], images)
    np.testing.assert_array_equal(prepared.labels, labels)


@pytest.mark.parametrize("unpack", [False, True])
def test_fashion_mnist_files_given_as_mnist_are_named(tmp_path, no_download, unpack):
    fashion_test_split(tmp_path, unpack=unpack)
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("mnist", "test", 32, source_dir=str(tmp_path), download=True)
    message = str(err.value)
    path = tmp_path / ("t10k-images-idx3-ubyte" + ("" if unpack else ".gz"))
    assert (f"{path} is Fashion-MNIST's t10k-images-idx3-ubyte, not MNIST's: "
            "these are Fashion-MNIST's files, set dataset.name: fashion_mnist") in message
    assert_source_dir_fix(message, tmp_path)


def test_file_of_another_split_is_named(tmp_path):
    fashion_test_split(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.symlink_to(data.DEBIAN_FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, source_dir=str(tmp_path), download=False)
    assert (f"{labels} holds Fashion-MNIST's train-labels-idx1-ubyte, not t10k-labels-idx1-ubyte: "
            "the files are misnamed") in str(err.value)


def test_truncated_idx_names_the_file(monkeypatch, tmp_path):
    images, labels = synthetic()
    trust(monkeypatch, write_test_split(tmp_path, images, labels, gz=False), "mnist")
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(labels)[:-1])  # one byte short
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("mnist", "test", 28, source_dir=str(tmp_path), download=False)
    assert f"{path}: IDX dimensions (20,) need 20 bytes, found 19 (truncated" in str(err.value)
    assert_source_dir_fix(str(err.value), tmp_path)


def test_idx_magic_number_is_checked(monkeypatch, tmp_path):
    images, labels = synthetic()
    trust(monkeypatch, write_test_split(tmp_path, images, labels, gz=False), "mnist")
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(images))  # images where labels belong
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("mnist", "test", 28, source_dir=str(tmp_path), download=False)
    assert f"{path}: IDX magic number 2051, expected 2049" in str(err.value)
    assert "misnamed" in str(err.value)


# --------------------------------------------------------------------------- broken sources


def _truncated(gz: bytes) -> bytes:
    return gz[: len(gz) // 2]


def _unknown_method(gz: bytes) -> bytes:
    return gz[:2] + b"\x09" + gz[3:]  # compression method 9 does not exist


def _invalid_deflate(gz: bytes) -> bytes:
    return gz[:10] + b"\x07" + bytes(20)  # deflate block type 3 is reserved


@pytest.mark.parametrize("damage, cause", [
    (_truncated, EOFError), (_unknown_method, gzip.BadGzipFile), (_invalid_deflate, zlib.error),
])
def test_corrupt_gz_names_the_file(monkeypatch, tmp_path, no_download, damage, cause):
    images, labels = synthetic()
    trust_fashion(monkeypatch, write_test_split(tmp_path, images, labels))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, source_dir=str(tmp_path), download=True)
    message = str(err.value)
    assert f"{path} is a truncated or corrupt gzip file" in message
    assert "replace it with a fresh copy" in message
    assert_source_dir_fix(message, tmp_path)
    assert isinstance(err.value.__cause__.__cause__, cause)


def test_truncated_gz_in_debian_dir_names_the_file(monkeypatch, tmp_path, no_download):
    debian = tmp_path / "debian"
    images, labels = synthetic()
    write_test_split(debian, images, labels)
    path = debian / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(_truncated(path.read_bytes()))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian)
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, download=False)
    assert f"{path} is a truncated or corrupt gzip file" in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)


@pytest.mark.parametrize("setup", ["absent", "empty", "truncated", "other_data"])
def test_broken_source_dir_never_falls_back_to_debian(tmp_path, no_download, setup):
    """The real Debian copy is present and download=True, yet a set source_dir that fails is an error."""
    assert (data.DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file()
    source = tmp_path / "src"
    if setup != "absent":
        source.mkdir()
    if setup == "truncated":
        original = (data.DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()
        fashion_test_split(tmp_path / "real")
        (source / "t10k-images-idx3-ubyte.gz").symlink_to(tmp_path / "real" / "t10k-images-idx3-ubyte.gz")
        (source / "t10k-labels-idx1-ubyte.gz").write_bytes(original[:1000])
    if setup == "other_data":
        write_test_split(source, *synthetic())
    expected = {
        "absent": f"directory {source} does not exist",
        "empty": f"no t10k-images-idx3-ubyte(.gz) in {source} or {source / 'FashionMNIST' / 'raw'}",
        "truncated": f"{source / 't10k-labels-idx1-ubyte.gz'} is a truncated or corrupt gzip file",
        "other_data": f"checksum mismatch for {source / 't10k-images-idx3-ubyte.gz'}",
    }[setup]
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("fashion_mnist", "test", 32, source_dir=str(source), download=True)
    message = str(err.value)
    assert expected in message
    assert_source_dir_fix(message, source)
    assert "Debian package dataset-fashion-mnist or torchvision's download" in message


def test_explicit_source_dir_with_real_fashion_mnist_loads(tmp_path, no_download):
    fashion_test_split(tmp_path / "FashionMNIST" / "raw", unpack=True)
    prepared = prepare_dataset("fashion_mnist", "test", 28, source_dir=str(tmp_path), download=True)
    assert prepared.images.shape == (10000, 28, 28, 1)
    assert prepared.source == f"source_dir: IDX files in {tmp_path / 'FashionMNIST' / 'raw'}"


@pytest.mark.parametrize("present, reason", [
    (["data_batch_2", "test_batch"], "data_batch_1 is missing"),
    (["data_batch_1"], "data_batch_1 is corrupt or truncated: its md5 is not CIFAR-10's c99cafc1"),
])
def test_cifar10_source_dir_names_the_bad_file(tmp_path, present, reason):
    """torchvision alone says 'Dataset not found or corrupted'; the error names the file."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in present:
        (folder / name).write_bytes(b"not a CIFAR batch")
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("cifar10", "test", 32, source_dir=str(tmp_path), download=False)
    message = str(err.value)
    assert f"{folder}/{reason}" in message
    assert "put torchvision's cifar-10-batches-py folder in" in message
    assert_source_dir_fix(message, tmp_path)


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("kwargs, valid", [
    ({"name": "svhn"}, "fashion_mnist, mnist, cifar10, digits"),
    ({"split": "val"}, "train, test"),
    ({"fit": "crop"}, "pad, resize"),
])
def test_unknown_choices_name_the_valid_ones(kwargs, valid):
    args = {"name": "digits", "split": "train", "image_size": 8, **kwargs}
    with pytest.raises(ValueError, match=valid):
        prepare_dataset(**args)


# --------------------------------------------------------------------------- cache files


def test_save_load_roundtrip(tmp_path):
    original = tiny_prepared()
    path = tmp_path / "sub" / "digits_train.npz"
    save_prepared(original, path)
    loaded = load_prepared(path)
    np.testing.assert_array_equal(loaded.images, original.images)
    np.testing.assert_array_equal(loaded.labels, original.labels)
    assert loaded.labels.dtype == np.int64
    assert (loaded.dataset, loaded.split, loaded.source, loaded.class_names) == (
        original.dataset, original.split, original.source, original.class_names)


def test_load_truncated_file_names_it_and_the_fix(tmp_path):
    path = tmp_path / "prepared.npz"
    save_prepared(tiny_prepared(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptArtifactError, match=r"prepared\.npz does not match its checksum.*"
                                                   r"snakemake --cores all --configfile .* --forcerun .*prepared\.npz"):
        load_prepared(path)
    (tmp_path / "prepared.npz.sha256").unlink()
    with pytest.raises(CorruptArtifactError, match=r"prepared\.npz has no checksum file prepared\.npz\.sha256"):
        load_prepared(path)
    adopt_digest(path)  # a checksum of the truncated bytes: the parser still names the file and the fix
    with pytest.raises(ValueError, match=r"prepared\.npz is corrupt or invalid.*run: snakemake --cores all "
                                         r"--configfile .* --forcerun .*prepared\.npz$"):
        load_prepared(path)


def test_load_rejects_invalid_content(tmp_path):
    path = tmp_path / "bad_labels.npz"
    good = tiny_prepared()
    np.savez(path, images=good.images, labels=good.labels + 10, dataset=np.array("digits"),
             split=np.array("train"), source=np.array("x"), class_names=np.array(good.class_names))
    adopt_digest(path)
    with pytest.raises(ValueError, match=r"bad_labels\.npz.*labels must lie in \[0, 10\)"):
        load_prepared(path)
    np.savez(path, images=good.images)
    adopt_digest(path)
    with pytest.raises(ValueError, match=r"bad_labels\.npz.*missing keys"):
        load_prepared(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.npz does not exist; to make it, run: snakemake .*"
                                                 r"--forcerun .*absent\.npz$"):
        load_prepared(tmp_path / "absent.npz")


def test_save_is_atomic(monkeypatch, tmp_path):
    path = tmp_path / "prepared.npz"
    save_prepared(tiny_prepared(n=3), path)
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_prepared(tiny_prepared(n=6), path)
    assert path.read_bytes() == before  # old file untouched
    # no temp file left, and the checksum is still the old file's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared.npz", "prepared.npz.sha256"]
    assert load_prepared(path).labels.shape == (3,)
    with pytest.raises(OSError):
        save_prepared(tiny_prepared(), tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()


def test_save_rejects_invalid_data(tmp_path):
    bad = tiny_prepared()
    bad.labels = bad.labels.astype(np.int32)
    with pytest.raises(ValueError, match="labels must be int64"):
        save_prepared(bad, tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- tensors


def test_tensor_roundtrip_is_exact():
    images = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1).repeat(3, axis=-1)
    prepared = PreparedData(images=images, labels=np.arange(4, dtype=np.int64), dataset="cifar10",
                            split="test", source="unit test", class_names=DATASETS["cifar10"].class_names)
    x, y = prepared.to_tensor()
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(images_to_uint8(x), images)


def test_images_to_uint8_clamps_and_rounds():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).reshape(1, 1, 1, 5)
    np.testing.assert_array_equal(images_to_uint8(x)[0, 0, :, 0], [0, 0, 128, 255, 255])
    with pytest.raises(ValueError, match="4-D"):
        images_to_uint8(torch.zeros(3, 4, 4))


# class_balanced_half: the guide on one half of the train split, an evaluator on the other.

def test_the_two_halves_split_every_class_evenly_and_cover_the_split_once():
    labels = np.repeat(np.arange(10), [7, 8, 9, 10, 11, 12, 13, 14, 15, 101])
    first, second = (data.class_balanced_half(labels, half, seed=3) for half in (0, 1))
    assert not set(first) & set(second)
    assert np.array_equal(np.sort(np.concatenate([first, second])), np.arange(len(labels)))
    counts = [np.bincount(labels[h], minlength=10) for h in (first, second)]
    assert np.all(counts[0] - counts[1] == np.bincount(labels) % 2)  # odd classes: one more in half 0


def test_the_halves_follow_the_seed():
    labels = np.arange(200) % 10
    assert np.array_equal(data.class_balanced_half(labels, 0, seed=1), data.class_balanced_half(labels, 0, seed=1))
    assert not np.array_equal(data.class_balanced_half(labels, 0, seed=1), data.class_balanced_half(labels, 0, seed=2))


def test_a_half_other_than_0_or_1_is_refused():
    with pytest.raises(ValueError, match="train_half must be 0 or 1"):
        data.class_balanced_half(np.arange(10), 2, seed=0)
