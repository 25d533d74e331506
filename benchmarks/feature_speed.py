"""Seconds per 1,000 images for each feature network of the evaluation (issue 5's speed figure).

    .venv/bin/python benchmarks/feature_speed.py [--images 200] [--threads 1] [--device auto]

Times Inception (clean-mode resize to 299 + pool3 + sFID spatial features) and the evaluation
classifier (a freshly built network of the default run's widths: the speed does not depend on
the weights) on Fashion-MNIST test images at 32x32, after one warm-up batch.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from diffguide.base.runtime import pick_device
from diffguide.data import prepare_dataset
from diffguide.evaluation.inception import load_inception
from diffguide.evaluation.metrics import classifier_outputs
from diffguide.models.kinds import build_network


def seconds_per_1000(run, images) -> float:
    run(images[:50])  # warm-up: lazy initialisation and allocator
    start = time.perf_counter()
    run(images)
    return (time.perf_counter() - start) / len(images) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    images = prepare_dataset("fashion_mnist", "test", 32).images[: args.images]
    inception = load_inception(device=device)
    classifier = build_network("eval_classifier", dict(channels=1, widths=[32, 64, 128], num_classes=10))
    classifier = classifier.to(device).eval()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch threads: {torch.get_num_threads()}, images: {len(images)}")
    print(f"inception ({inception.name}), features + spatial: "
          f"{seconds_per_1000(lambda x: inception.extract(x, 100, spatial=True, progress=False), images):.1f} s / 1000 images")
    print(f"evaluation classifier: "
          f"{seconds_per_1000(lambda x: classifier_outputs(classifier, x, device, 500), images):.2f} s / 1000 images")


if __name__ == "__main__":
    main()
