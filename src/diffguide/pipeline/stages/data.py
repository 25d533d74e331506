"""The data stage: one prepared split (uint8 images and labels) that every later stage reads."""

from __future__ import annotations

import logging
from pathlib import Path

from diffguide import data

log = logging.getLogger("diffguide")


def prepare_data(dataset: dict, split: str, output: str) -> None:
    """``dataset`` is the config's dataset block (name, image_size, fit, source_dir, download)."""
    prepared = data.prepare_dataset(dataset["name"], split, dataset["image_size"], fit=dataset["fit"],
                                    source_dir=dataset["source_dir"], cache_dir=str(Path(output).parent / "download"),
                                    download=dataset["download"])
    data.save_prepared(prepared, output)
    log.info("prepared %s/%s: %d images %s from %s", dataset["name"], split, len(prepared.labels),
             prepared.images.shape[1:], prepared.source)
