#!/usr/bin/env bash
# Everything issue 15 asks a GPU to measure, in one script of about 8 minutes (`make bench-gpu`):
# run it once when a CUDA machine is lent, and copy its output (results/gpu_check_report.md) into
# README.md's "A GPU at paper-like scale". Never part of `make test`.
#   1. the card, torch and CUDA versions;
#   2. training and sampling images/s of config/gpu.yaml's ADM-sized networks, bf16 and fp32, and
#      the peak GPU memory (benchmarks/performance.py --quick);
#   3. Inception and evaluation-classifier images/s (benchmarks/feature_speed.py);
#   4. the whole pipeline on config/gpu.yaml's networks with less of everything
#      (config/gpu_check.yaml), and from its job times the projected time of the full run;
#   5. one training step through the DDP path with the NCCL backend (torchrun, 1 process), on
#      step 4's prepared data.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
out=results/gpu_check_report.md
mkdir -p results
exec > >(tee "$out") 2>&1

step() { echo; echo "## $1"; echo; }

step "1. Machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$BIN/python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))'

step "2. Training and sampling speed, peak memory (config/gpu.yaml networks)"
timeout 150 "$BIN/python" benchmarks/performance.py --config config/gpu.yaml --device cuda --quick

step "3. Evaluation feature networks"
timeout 60 "$BIN/python" benchmarks/feature_speed.py --images 5000 --device cuda

step "4. Short end-to-end run (config/gpu.yaml + config/gpu_check.yaml), one GPU job at a time"
start=$(date +%s)
timeout 330 "$BIN/snakemake" --cores all --resources gpu=1 --configfile config/gpu.yaml config/gpu_check.yaml \
    --quiet progress
echo "wall time: $(($(date +%s) - start)) s"
"$BIN/python" benchmarks/project_run_time.py results/gpu_check \
    --short config/gpu.yaml config/gpu_check.yaml --full config/gpu.yaml

step "5. One DDP training step with NCCL (torchrun, one process; data from step 4)"
ddp=$(mktemp -d)
mkdir -p "$ddp/data" && cp results/gpu_check/data/*.npz "$ddp/data/"
"$BIN/python" - "$ddp/ddp.yaml" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open("config/gpu.yaml"))
cfg["training"]["unconditional"].update(steps=2, warmup_steps=1, log_every=1)
yaml.safe_dump(cfg, open(sys.argv[1], "w"))
PY
# torch.distributed.run, as the train_network rule launches it for resources.gpu > 1: on CUDA the
# process group is NCCL (diffguide.training.distributed.init).
if timeout 90 "$BIN/python" -m torch.distributed.run --standalone --nproc_per_node 1 -m diffguide.cli.train \
    --config "$ddp/ddp.yaml" --network unconditional --results "$ddp" && [ -s "$ddp/models/unconditional.pt" ]; then
    echo "DDP step with NCCL: ok"
else
    echo "DDP step with NCCL: FAILED"
fi
echo "report: $out"
