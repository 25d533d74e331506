"""Data sets for the guidance experiments: locate, verify, fit and cache images.

Every image set is turned into one `PreparedData` (uint8 NHWC images, int64
labels) so the rest of the pipeline never cares where the pixels came from.
An explicitly configured `source_dir` is the only source tried; without one,
sources are tried in a fixed order and the first that works wins. A source that
is missing or fails its checksum is reported, never silently replaced by a
different data set; every error names the file and the fix.

May import: diffguide.base.
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from diffguide.base import integrity
from diffguide.base.atomic import atomic_open

__all__ = [
    "DATASETS",
    "DataSourceError",
    "DatasetInfo",
    "PreparedData",
    "images_to_uint8",
    "load_prepared",
    "prepare_dataset",
    "save_prepared",
]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set that models and plots need before loading it."""

    name: str
    num_classes: int
    channels: int
    native_size: int
    class_names: tuple[str, ...]


_DIGIT_NAMES = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "mnist": DatasetInfo("mnist", 10, 1, 28, _DIGIT_NAMES),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
    ),
    "digits": DatasetInfo("digits", 10, 1, 8, _DIGIT_NAMES),
}

SPLITS = ("train", "test")
FITS = ("pad", "resize")

# Debian's `dataset-fashion-mnist` package; a constant so tests can point it elsewhere.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Where torchvision downloads go when the caller gives no cache_dir.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "diffguide" / "torchvision"

# torchvision class per data set; its name is also torchvision's folder name.
_TORCHVISION_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10"}

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049

# sha256 of each IDX file's *decompressed* content, per data set. Hashing the content
# rather than the file accepts any compression: Debian recompressed Fashion-MNIST (its .gz
# md5s differ from torchvision's, the content does not) and an unpacked file checks the same.
# It also identifies a data set, so another data set's files are named as such.
# Fashion-MNIST: Debian's dataset-fashion-mnist, whose content matches zalandoresearch's files.
# MNIST: the content of the original .gz files (those with torchvision's md5s f68b3c2d..,
# d53e105e.., 9fb629c4.., ec29112d..). Not computed here (no MNIST on this machine): taken
# from public code, where independent projects agree on all four, among them one that
# gunzips torchvision's mirror (ossci-datasets) and checks them, one for Kaggle's unpacked
# copy, and javachaos/java-neural-network (core/.../Constants.java, train images).
IDX_SHA256: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}
_DISPLAY_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}

_DIGITS_TEST_SIZE = 0.2
_DIGITS_SEED = 0


class DataSourceError(RuntimeError):
    """No source could provide the data; the message lists every attempt and the fixes."""


class _SourceUnavailable(Exception):
    """One source cannot provide the data; the caller records why and tries the next."""


# Exceptions that mean "this source is broken or absent", as opposed to a bug here.
_SOURCE_FAILURES = (_SourceUnavailable, OSError, RuntimeError, ValueError, EOFError, zlib.error)

_Loaded = tuple[np.ndarray, np.ndarray, str]  # images NHWC uint8, labels int64, description


@dataclass
class PreparedData:
    """One split of one data set, already fitted to the experiment's image size."""

    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int64, (N,)
    dataset: str
    split: str
    source: str  # where the pixels came from, for provenance in reports
    class_names: tuple[str, ...]

    def to_tensor(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as float32 NCHW in [-1, 1] (the diffusion model's range) and int64 labels."""
        return uint8_to_tensor(self.images), torch.from_numpy(self.labels.astype(np.int64))


def class_balanced_half(labels: np.ndarray, half: int, seed: int) -> np.ndarray:
    """Sorted indices of one of two disjoint halves of a split (``half`` 0 or 1), each class divided
    evenly between them (an odd count gives half 0 the extra image), by a permutation seeded with
    ``seed``. The two halves of one seed cover the split exactly once: training the guide on one and
    an evaluator on the other keeps the evaluator from ever seeing the guide's images."""
    if half not in (0, 1):
        raise ValueError(f"train_half must be 0 or 1 (or null for the whole split), got {half!r}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = (len(members) + 1) // 2
        chosen.append(members[:cut] if half == 0 else members[cut:])
    return np.sort(np.concatenate(chosen))


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images as float32 NCHW in [-1, 1] (the diffusion model's range)."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return (pixels / 127.5 - 1.0).contiguous()


def images_to_uint8(x: torch.Tensor) -> np.ndarray:
    """Invert `PreparedData.to_tensor`: [-1, 1] NCHW floats to uint8 NHWC (clamped, rounded)."""
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D NCHW tensor, got shape {tuple(x.shape)}")
    pixels = ((x.detach().cpu().float() + 1.0) * 127.5).clamp(0, 255).round()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# --------------------------------------------------------------------------- public entry


def prepare_dataset(
    name: str,
    split: str,
    image_size: int,
    fit: str = "pad",
    source_dir: str | None = None,
    cache_dir: str | None = None,
    download: bool = True,
) -> PreparedData:
    """Load one split from the first working source and fit it to `image_size`.

    Arguments are checked before any file is read so that configuration
    mistakes fail fast instead of after a download.
    """
    info = _dataset_info(name)
    _check_choice("split", split, SPLITS)
    _check_choice("fit", fit, FITS)
    _check_fit(info, image_size, fit)
    if name == "digits":
        images, labels, source = _load_digits(split)
    else:
        images, labels, source = _load_first_source(info, split, source_dir, cache_dir, download)
    data = PreparedData(
        images=_fit_images(images, image_size, fit), labels=labels, dataset=name,
        split=split, source=source, class_names=info.class_names,
    )
    _check_prepared(data)
    return data


def _dataset_info(name: str) -> DatasetInfo:
    _check_choice("dataset", name, tuple(DATASETS))
    return DATASETS[name]


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


# --------------------------------------------------------------------------- sources


def _load_first_source(
    info: DatasetInfo, split: str, source_dir: str | None, cache_dir: str | None, download: bool
) -> _Loaded:
    """Try each source in order; collect every failure so the final error explains them all.

    An explicitly set source_dir is the only source tried: falling back would train on
    other pixels (another copy, or another data set) than the ones the config names."""
    if source_dir is not None:
        return _load_configured_dir(info, split, Path(source_dir))
    failures = []
    for label, load in _sources(info, split, cache_dir, download):
        try:
            return load()
        except _SOURCE_FAILURES as exc:
            failures.append(f"  - {label}: {exc}")
    raise DataSourceError(
        f"could not load {info.name} ({split}); every source failed:\n"
        + "\n".join(failures) + "\n" + _how_to_fix(info)
    )


def _load_configured_dir(info: DatasetInfo, split: str, source_dir: Path) -> _Loaded:
    """Load from dataset.source_dir or stop with the reason, the file and the fix."""
    try:
        if not source_dir.is_dir():
            raise _SourceUnavailable(f"directory {source_dir} does not exist")
        if info.name == "cifar10":
            return _load_torchvision(info, split, str(source_dir), False)
        return _load_idx_source(info, split, source_dir)
    except _SOURCE_FAILURES as exc:
        raise DataSourceError(
            f"could not load {info.name} ({split}) from dataset.source_dir {source_dir}: {exc}\n"
            f"To fix: put {_expected_files(info)} in {source_dir}, or set dataset.source_dir: null "
            f"to use {_fallback_names(info)} instead (an explicit source_dir never falls back)"
        ) from exc


def _sources(
    info: DatasetInfo, split: str, cache_dir: str | None, download: bool
) -> list[tuple[str, Callable[[], _Loaded]]]:
    """The ordered (label, loader) fallback list when no source_dir is set; unusable ones
    raise when called, so the final error still lists them."""
    sources = [("source_dir", _unavailable("not set (dataset.source_dir in the config)"))]
    if info.name == "fashion_mnist":
        debian = DEBIAN_FASHION_MNIST_DIR
        sources.append((f"Debian package dataset-fashion-mnist ({debian})",
                        lambda: _load_idx_dir(info, split, debian, "Debian package dataset-fashion-mnist")))
    root = str(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)
    if download:
        sources.append((f"torchvision download into {root}", lambda: _load_torchvision(info, split, root, True)))
    else:
        sources.append(("torchvision download", _unavailable("disabled (download=False)")))
    return sources


def _unavailable(reason: str) -> Callable[[], _Loaded]:
    """A loader standing in for a source that is switched off, so it still gets reported."""
    def load() -> _Loaded:
        raise _SourceUnavailable(reason)
    return load


def _expected_files(info: DatasetInfo) -> str:
    if info.name == "cifar10":
        return "torchvision's cifar-10-batches-py folder"
    return (f"the four original {_DISPLAY_NAMES[info.name]} IDX files (.gz or unpacked, "
            f"directly or under {_TORCHVISION_CLASS[info.name]}/raw/)")


def _fallback_names(info: DatasetInfo) -> str:
    debian = "the Debian package dataset-fashion-mnist or " if info.name == "fashion_mnist" else ""
    return debian + "torchvision's download (dataset.download: true)"


def _how_to_fix(info: DatasetInfo) -> str:
    hints = [f"set dataset.source_dir in the config to a directory holding {_expected_files(info)}"]
    if info.name == "fashion_mnist":
        hints.append("install the Debian package: apt-get install dataset-fashion-mnist")
    hints.append("connect to the internet and allow the torchvision download (download=True)")
    return "To fix, do one of:\n" + "\n".join(f"  * {hint}" for hint in hints)


def _load_torchvision(info: DatasetInfo, split: str, root: str, download: bool) -> _Loaded:
    """Use torchvision's own loader, which verifies its downloads and CIFAR batches itself."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _TORCHVISION_CLASS[info.name])
    if info.name == "cifar10" and not download:
        _check_cifar_files(dataset_class, Path(root))
    dataset = dataset_class(root=root, train=split == "train", download=download)
    images = np.asarray(dataset.data, dtype=np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    labels = np.asarray(dataset.targets, dtype=np.int64)
    how = "torchvision download" if download else "torchvision files"
    return images, labels, f"{how} ({dataset_class.__name__}) in {root}"


def _check_cifar_files(dataset_class, root: Path) -> None:
    """The md5 checks torchvision's CIFAR10 makes, but naming the file: torchvision only
    says 'Dataset not found or corrupted'."""
    from torchvision.datasets.utils import check_integrity

    meta = dataset_class.meta
    for name, md5 in [*dataset_class.train_list, *dataset_class.test_list, (meta["filename"], meta["md5"])]:
        path = root / dataset_class.base_folder / name
        if not path.is_file():
            raise _SourceUnavailable(f"{path} is missing")
        if not check_integrity(str(path), md5):
            raise _SourceUnavailable(f"{path} is corrupt or truncated: its md5 is not CIFAR-10's {md5}")


def _load_digits(split: str) -> _Loaded:
    """scikit-learn's bundled 8x8 digits with a fixed stratified split, so train/test never overlap."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    indices = np.arange(len(bunch.target))
    train_idx, test_idx = train_test_split(
        indices, test_size=_DIGITS_TEST_SIZE, random_state=_DIGITS_SEED, stratify=bunch.target
    )
    chosen = np.sort(train_idx if split == "train" else test_idx)
    images = np.round(bunch.images[chosen] * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = bunch.target[chosen].astype(np.int64)
    source = (f"scikit-learn load_digits (bundled), stratified split test_size={_DIGITS_TEST_SIZE}, "
              f"random_state={_DIGITS_SEED}")
    return images, labels, source


# --------------------------------------------------------------------------- IDX files


def _load_idx_source(info: DatasetInfo, split: str, source_dir: Path) -> _Loaded:
    """IDX files directly in `source_dir` or in torchvision's `<dir>/<Class>/raw/` layout."""
    candidates = [source_dir, source_dir / _TORCHVISION_CLASS[info.name] / "raw"]
    image_stem = _IDX_STEMS[split][0]
    for directory in candidates:
        if _find_idx_file(directory, image_stem) is not None:
            return _load_idx_dir(info, split, directory, "source_dir")
    raise _SourceUnavailable(
        f"no {image_stem}(.gz) in {' or '.join(str(d) for d in candidates)}"
    )


def _load_idx_dir(info: DatasetInfo, split: str, directory: Path, origin: str) -> _Loaded:
    """Read and verify one split's image and label IDX files from `directory`."""
    if not directory.is_dir():
        raise _SourceUnavailable(f"directory {directory} does not exist")
    image_path, label_path = (_require_idx_file(directory, stem) for stem in _IDX_STEMS[split])
    images = _read_idx(info.name, image_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(info.name, label_path, _IDX_LABELS_MAGIC)
    if images.shape[1:] != (info.native_size, info.native_size):
        raise _SourceUnavailable(f"{image_path}: images are {images.shape[1:]}, "
                                 f"expected {info.native_size}x{info.native_size}")
    if len(images) != len(labels):
        raise _SourceUnavailable(f"{image_path} has {len(images)} images but {label_path} "
                                 f"has {len(labels)} labels")
    if labels.max(initial=0) >= info.num_classes:
        raise _SourceUnavailable(f"{label_path}: label {labels.max()} >= {info.num_classes} classes")
    return images[..., None], labels.astype(np.int64), f"{origin}: IDX files in {directory}"


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    """Either form is verified by its content; the .gz (the file as published) comes first."""
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _require_idx_file(directory: Path, stem: str) -> Path:
    path = _find_idx_file(directory, stem)
    if path is None:
        raise _SourceUnavailable(f"no {stem}(.gz) in {directory}")
    return path


def _read_idx(dataset: str, path: Path, magic: int) -> np.ndarray:
    """Decompress (if gzip), parse, then verify the content's checksum. Parsing first gives
    the specific reason for a truncated or misplaced file; the checksum then proves whose
    file it is."""
    blob = path.read_bytes()
    content = _gunzip(path, blob) if blob[:2] == b"\x1f\x8b" else blob
    array = _parse_idx(content, path, magic)
    _verify_idx(dataset, path, content)
    return array


def _gunzip(path: Path, blob: bytes) -> bytes:
    """gzip's own errors (BadGzipFile, EOFError, zlib.error) do not name the file."""
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise _SourceUnavailable(
            f"{path} is a truncated or corrupt gzip file ({exc}); replace it with a fresh copy"
        ) from exc


def _verify_idx(dataset: str, path: Path, content: bytes) -> None:
    """Match the content's sha256 with `IDX_SHA256` for this data set and file name. A known
    file of another data set (or split) is named as such: that, not corruption, is the fix."""
    stem = path.name.removesuffix(".gz")
    expected = IDX_SHA256[dataset].get(stem)
    got = hashlib.sha256(content).hexdigest()
    if got == expected:
        return
    owner = _identify_idx(got)
    if owner is not None:
        raise _SourceUnavailable(_misplaced_message(path, dataset, stem, *owner))
    raise _SourceUnavailable(
        f"checksum mismatch for {path}: expected sha256 of decompressed content {expected}, "
        f"got {got}; it is not {_DISPLAY_NAMES[dataset]}'s original {stem} (corrupt or modified)"
    )


def _identify_idx(digest: str) -> tuple[str, str] | None:
    """(data set, file stem) whose known content has this sha256, if any."""
    for name, digests in IDX_SHA256.items():
        for stem, known in digests.items():
            if known == digest:
                return name, stem
    return None


def _misplaced_message(path: Path, dataset: str, stem: str, owner: str, owner_stem: str) -> str:
    if owner != dataset:
        return (f"{path} is {_DISPLAY_NAMES[owner]}'s {owner_stem}, not {_DISPLAY_NAMES[dataset]}'s: "
                f"these are {_DISPLAY_NAMES[owner]}'s files, set dataset.name: {owner}")
    return f"{path} holds {_DISPLAY_NAMES[dataset]}'s {owner_stem}, not {stem}: the files are misnamed"


def _parse_idx(content: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file, checking the magic number and the payload length."""
    if len(content) < 4:
        raise _SourceUnavailable(f"{path} is too short to be an IDX file (truncated?)")
    found = int.from_bytes(content[:4], "big")
    if found != magic:
        raise _SourceUnavailable(
            f"{path}: IDX magic number {found}, expected {magic} (2051 = images, 2049 = labels); "
            "the file is not this IDX file or is misnamed"
        )
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise _SourceUnavailable(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    if len(content) - header != int(np.prod(dims)):
        raise _SourceUnavailable(
            f"{path}: IDX dimensions {dims} need {int(np.prod(dims))} bytes, found "
            f"{len(content) - header} (truncated or padded file)"
        )
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims).copy()  # writable


# --------------------------------------------------------------------------- fitting


def _check_fit(info: DatasetInfo, image_size: int, fit: str) -> None:
    """Reject sizes that padding cannot reach exactly (smaller, or an odd margin)."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    margin = image_size - info.native_size
    if fit == "pad" and (margin < 0 or margin % 2):
        raise ValueError(
            f"fit='pad' cannot take {info.name} from {info.native_size} to {image_size}: the "
            "size difference must be even and non-negative; use fit='resize' or another image_size"
        )


def _fit_images(images: np.ndarray, image_size: int, fit: str) -> np.ndarray:
    """Zero-pad symmetrically (keeps pixels exact and centred) or bilinearly resize."""
    size = images.shape[1]
    if size == image_size:
        return images
    if fit == "pad":
        margin = (image_size - size) // 2
        return np.pad(images, ((0, 0), (margin, margin), (margin, margin), (0, 0)))
    return np.stack([_resize(image, image_size) for image in images])


def _resize(image: np.ndarray, image_size: int) -> np.ndarray:
    """PIL bilinear resize of one HWC uint8 image, keeping the channel axis."""
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(pil.resize((image_size, image_size), Image.Resampling.BILINEAR))
    return resized.reshape(image_size, image_size, image.shape[-1])


# --------------------------------------------------------------------------- cache files

_NPZ_KEYS = ("images", "labels", "dataset", "split", "source", "class_names")


def save_prepared(data: PreparedData, path) -> None:
    """Write `data` as .npz atomically: a crash never leaves a half-written file that
    snakemake would mistake for a finished output. Its checksum goes beside it (<path>.sha256)."""
    _check_prepared(data)
    with atomic_open(path, checksum=True) as handle:
        np.savez(
            handle, images=data.images, labels=data.labels, dataset=np.array(data.dataset),
            split=np.array(data.split), source=np.array(data.source),
            class_names=np.array(data.class_names, dtype=str),
        )


def load_prepared(path) -> PreparedData:
    """Read and validate a file written by `save_prepared`; errors name the file and the fix.
    A file that does not match its checksum raises integrity.CorruptArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"prepared data file {path} does not exist; to make it, run: {integrity.restore_command(path)}"
        )
    integrity.verify(path)
    try:
        data = _read_npz(path)
        _check_prepared(data)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(
            f"prepared data file {path} is corrupt or invalid ({exc}); to remake it and what was made "
            f"from it, run: {integrity.restore_command(path)}"
        ) from exc
    return data


def _read_npz(path: Path) -> PreparedData:
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in _NPZ_KEYS if key not in npz.files]
        if missing:
            raise KeyError(f"missing keys {missing}")
        return PreparedData(
            images=npz["images"], labels=npz["labels"], dataset=str(npz["dataset"]),
            split=str(npz["split"]), source=str(npz["source"]),
            class_names=tuple(str(name) for name in npz["class_names"]),
        )


def _check_prepared(data: PreparedData) -> None:
    """Check the invariants every consumer relies on; raises ValueError naming the first broken one."""
    info = _dataset_info(data.dataset)
    _check_choice("split", data.split, SPLITS)
    images, labels = data.images, data.labels
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 NHWC, got {images.dtype} {images.shape}")
    if images.shape[1] != images.shape[2] or images.shape[3] != info.channels:
        raise ValueError(f"images must be square with {info.channels} channel(s), got {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (len(images),):
        raise ValueError(f"labels must be int64 of shape ({len(images)},), got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise ValueError(f"labels must lie in [0, {info.num_classes}), got [{labels.min()}, {labels.max()}]")
    if tuple(data.class_names) != info.class_names:
        raise ValueError(f"class names {data.class_names} differ from {info.name}'s {info.class_names}")
