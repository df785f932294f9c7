#!/usr/bin/env bash
# The GPU measurements still owed, one part per device call (each fits the 10-minute limit).
# Run on the device machine from the project root, after `bash ../shared/gpu/prepare.sh` and
# its two weight calls (call 3 is this script):
#   source .gpu/bin/env.sh && bash benchmarks/device_campaign.sh PART
# Parts:
#   eval     evaluation speed: the metrics after Inception (benchmarks.eval_speed, device vs
#            float64 host at N=10k) and a whole 10k evaluation of a fresh DCGAN, float32
#            and bf16 Inception (benchmarks.evaluation_speed: generation straight into
#            Inception vs through the host).                                     ~5 min
#   default  the documented default command end to end, then bf16/TF32 Inception's FID
#            error at two levels (benchmarks.fid_precision: the DCGAN it trained and the
#            train/test floor) and a whole 10k evaluation of that DCGAN.          ~8 min
#   resnet   resnet.py, seed 0, scored at N=10k (benchmarks.quality: FID, KID, P/R/D/C and
#            the floor). Training is capped at 6 minutes of wall time (--train_minutes,
#            compilation included): XLA counts 2.17 TFLOP per step, 64x the DCGAN's
#            (benchmarks.step_cost), so the 40 epochs may not fit; the record says where
#            the run stopped.                                                     ~9 min
#   cresnet  cresnet.py the same way, plus per-class FID and class accuracy.     ~9 min
#   curve    FID at N=10k every 4 epochs of resnet.py (seed 1): FID against time.     ~9 min
#   dcgan    dcgan_best.py (EMA with its own statistics) and cdcgan.py, seed 0 each.  ~6 min
# Every part prints JSON lines and copies its results and logs into $OUT (the device tool's
# output folder) when set.
set -uo pipefail
part="${1:?usage: bash benchmarks/device_campaign.sh eval|default|resnet|cresnet|curve|dcgan}"
out="${OUT:-/tmp/campaign}"
mkdir -p "$out"
nvidia-smi -L || true
case "$part" in
  eval)
    timeout 150 python3 -m benchmarks.eval_speed --num=10000 | tee "$out/eval_speed.jsonl"
    for dtype in float32 bfloat16; do
      timeout 120 python3 -m benchmarks.evaluation_speed --num=10000 --feature-dtype=$dtype \
        | tee -a "$out/evaluation_speed.jsonl"
    done
    ;;
  default)
    start=$(date +%s)
    timeout 240 python3 -m experiments.dcgan --config=experiments/configs/dcgan.py \
      --workdir=/tmp/default > "$out/default_command.log" 2>&1
    rc=$?
    echo "{\"default_command_seconds\": $(( $(date +%s) - start )), \"rc\": $rc}" \
      | tee "$out/default_command.json"
    cp /tmp/default/fid_result.txt /tmp/default/metrics.jsonl "$out/" 2>/dev/null
    timeout 150 python3 -m benchmarks.fid_precision --workdir=/tmp/default --num=10000 \
      | tee "$out/fid_precision.jsonl"
    timeout 90 python3 -m benchmarks.evaluation_speed --workdir=/tmp/default --num=10000 \
      | tee "$out/evaluation_speed_trained.jsonl"
    ;;
  resnet|cresnet)
    timeout 580 python3 -m benchmarks.quality --config=experiments/configs/$part.py --seeds=1 \
      --train_minutes=6 --workdir=/tmp/quality | tee "$out/quality_$part.jsonl"
    cp /tmp/quality/*/seeds*/fashion_mnist_samples*.png "$out/" 2>/dev/null
    cp /tmp/quality/*/*.log "$out/" 2>/dev/null
    ;;
  curve)
    timeout 560 python3 -m experiments.train --config=experiments/configs/resnet.py \
      --workdir=/tmp/curve --config.seed=1 --config.eval_every=4 --config.fid_num_samples=10000 \
      > "$out/curve.log" 2>&1
    cp /tmp/curve/metrics.jsonl /tmp/curve/curves.png /tmp/curve/fashion_mnist_samples.png "$out/"
    ;;
  dcgan)
    timeout 400 python3 -m benchmarks.quality --config=experiments/configs/dcgan_best.py \
      --config=experiments/configs/cdcgan.py --seeds=1 --parallel=2 \
      --workdir=/tmp/quality_dcgan | tee "$out/quality_dcgan.jsonl"
    ;;
  *)
    echo "unknown part '$part'; allowed: eval, default, resnet, cresnet, curve, dcgan" >&2
    exit 2
    ;;
esac
