#!/usr/bin/env bash
# The GPU check: the tiny DAG trained on CUDA, then the training-throughput benchmark.
#
#   benchmarks/gpu_check.sh                 # on a GPU machine, as is (meant to take < 5 min; unmeasured)
#   benchmarks/gpu_check.sh --device cpu    # the dry check the test suite runs: the same
#                                           # steps on the CPU, a small target, no CUDA part
# Options: --device cuda|cpu (default cuda), --out DIR (default benchmarks/results/gpu_check),
#          --python PATH (default .venv/bin/python), --target T (default: the whole tiny DAG
#          on CUDA; one trained and evaluated model on the CPU).
# Writes DIR/summary.json (devices every training job reported, timings), DIR/
# train_throughput_<device>.json (fp32, and bf16 / fp16 autocast on CUDA) and the logs.
# Exit status: 0 when every training job ran on the requested device, 2 when CUDA was
# asked for and is not there, 1 on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
device=cuda
out="$here/benchmarks/results/gpu_check"
python="$here/.venv/bin/python"
target=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --target) target="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
case "$device" in
    cpu|cuda) ;;
    *) echo "gpu_check: --device must be cpu or cuda, found $device" >&2; exit 1 ;;
esac
bin=$(dirname "$python")
export PATH="$bin:$PATH" ACOUSTIC_LOTTERY_PROGRESS=0

if [ "$device" = cuda ]; then
    if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: no CUDA device visible to torch; run with --device cpu for the dry check" >&2
        exit 2
    fi
    "$python" -c "import torch; print('gpu_check: CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
fi

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/al-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The tiny end-to-end configuration, every model trained on $device.
"$python" - "$here/tests/workflow/tiny_config.yaml" "$work/config.yaml" "$device" <<'EOF'
import sys
import yaml
src, dst, device = sys.argv[1:]
with open(src) as fh:
    cfg = yaml.safe_load(fh)
cfg.setdefault("training", {})["device"] = device
with open(dst, "w") as fh:
    yaml.safe_dump(cfg, fh, sort_keys=False)
EOF
ds=$("$python" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['dataset']['name'])" "$work/config.yaml")
if [ -z "$target" ] && [ "$device" = cpu ]; then
    target="results/$ds/metrics/sic/scene/evaluate.json"
fi

start=$(date +%s)
# shellcheck disable=SC2086
"$bin/snakemake" -s "$here/Snakefile" --directory "$work" --cores all $target \
    > "$out/snakemake.log" 2>&1 || { tail -40 "$out/snakemake.log" >&2; exit 1; }
dag_s=$(( $(date +%s) - start ))

# Every training job prints its summary JSON (with the device it ran on) to its log.
"$python" - "$work/logs/$ds" "$device" "$dag_s" "$out/summary.json" <<'EOF'
import json, sys
from pathlib import Path
logs, device, dag_s, dst = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = {}
for log in sorted(logs.rglob("*.log")):
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"device"' in line:
            try:
                seen[str(log.relative_to(logs))] = json.loads(line)["device"]
            except (ValueError, KeyError):
                pass
wrong = {k: v for k, v in seen.items() if not v.startswith(device)}
summary = {"device": device, "dag_seconds": dag_s, "training_jobs": seen, "wrong_device": wrong}
Path(dst).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
if not seen:
    sys.exit("gpu_check: no training job reported its device")
if wrong:
    sys.exit(f"gpu_check: jobs ran on another device than {device}: {wrong}")
print(f"gpu_check: {len(seen)} training job(s) on {device}, DAG in {dag_s} s")
EOF

if [ "$device" = cuda ]; then
    for amp in off bf16 fp16; do
        "$python" "$here/benchmarks/train_throughput.py" --device cuda --amp "$amp" \
            --rounds 3 --steps 10 --batch-size 32 --out "$out/train_throughput_cuda_$amp.json"
    done
else
    "$python" "$here/benchmarks/train_throughput.py" --device cpu --models sic:1.0 \
        --rounds 1 --steps 1 --batch-size 2 --out "$out/train_throughput_cpu.json"
fi
echo "gpu_check: done in $(( $(date +%s) - start )) s; results in $out"
