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
#   default  the documented default command end to end, its loop overhead per epoch
#            (benchmarks.loop_overhead, with 50 steps timed alone by step_cost), then
#            bf16/TF32 Inception's FID error at two levels (benchmarks.fid_precision: the
#            DCGAN it trained and the train/test floor) and a whole 10k evaluation of that
#            DCGAN.                                                               ~9 min
#   resnet   resnet.py, seed 0, scored at N=10k (benchmarks.quality: FID, KID, P/R/D/C and
#            the floor). First benchmarks.step_cost times 50 train steps on this device and
#            says how many whole epochs of steps fit in $FIT_MINUTES (default 4) minutes;
#            the run trains that many epochs (at most the config's 40), so its learning
#            rate decays to 0 within the budget. XLA counts 2.17 TFLOP per step, 64x the
#            DCGAN's, and no GPU has timed it yet. A 6-minute cap (--train_minutes,
#            compilation included) stays as the safety; the record says if it stopped.
#                                                                                 ~9 min
#   cresnet  cresnet.py the same way, plus per-class FID and class accuracy.     ~9 min
#   resnet_bf16  resnet.py with bfloat16 compute (float32 parameters) the same way: its step
#            time, and with EPOCHS=E (the epochs the resnet part trained) its FID at equal
#            steps, for the effect of bf16 on FID.                               ~9 min
#   curve    resnet.py (seed 1) for the epochs that fit, FID at N=10k about every minute
#            of training (eval_every from the measured epoch time), drawn against minutes
#            of training (benchmarks.fid_curve: fid_curve_resnet.png).            ~9 min
#   dcgan    dcgan_best.py (EMA with its own statistics) and cdcgan.py, seed 0 each.  ~6 min
# Every part prints JSON lines and copies its results and logs into $OUT (the device tool's
# output folder) when set, and exits non-zero if one of its commands failed. Each command's
# timeout is cut so that the part ends within CAMPAIGN_SECONDS (default 555) of its start;
# FIT_MINUTES (default 4) sets the ResNet parts' budget of steps.
#
# CAMPAIGN_SMOKE=1 runs every part at toy scale on any machine (the configs' :smoke
# variants, N=16, short timeouts): a check of the script itself before a device's minutes
# are spent on it (tests/test_campaign.py runs it).
set -uo pipefail
part="${1:?usage: bash benchmarks/device_campaign.sh eval|default|resnet|cresnet|resnet_bf16|curve|dcgan}"
out="${OUT:-/tmp/campaign}"
fit_minutes="${FIT_MINUTES:-4}"
scratch="${CAMPAIGN_SCRATCH:-/tmp}"
python="${PYTHON:-python3}"
if [ "${CAMPAIGN_SMOKE:-0}" = 1 ]; then
  variant=":smoke" num=16 num_flag="--num=16" small_batch="--batch=16" floor_flag=""
  default_extra="--config.num_epochs=2"  # Two epochs: one interval for the loop overhead.
  quality_flags=(--num_samples=16 --batch_size=16)
else
  variant="" num=10000 num_flag="--num=10000" small_batch=""
  floor_flag="--floor=2.54"  # train[:10k] vs test[:10k] on an H200 (README, 8eff50a).
  default_extra=""
  quality_flags=()
fi
mkdir -p "$out"
fail=0  # The exit status: the last failure of a part's commands (its JSON lines say which).
# The device tool's per-call limit is 600 s, .gpu/bin/env.sh's set-up included.
deadline=$((SECONDS + ${CAMPAIGN_SECONDS:-555}))
nvidia-smi -L 2>/dev/null || true

# Seconds left before the deadline, at most $1.
left() { local rest=$((deadline - SECONDS)); echo $(( rest < $1 ? (rest > 1 ? rest : 1) : $1 )); }

# Times 50 train steps of config $1 and prints the epochs whose steps fit in $fit_minutes
# (at most the config's own); prints nothing if the timing failed. Its record goes to $2;
# more step_cost flags may follow.
fitted_epochs() {
  timeout "$(left 150)" "$python" -m benchmarks.step_cost --config="$1" --time_steps=50 \
    --repeats=2 --fit_minutes="$fit_minutes" "${@:3}" > "$2" 2> "$2.log" || return 0
  "$python" - "$2" <<'PY'
import json, sys
record = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(min(record["epochs_in_fit_minutes"], record["num_epochs"]))
PY
}

# The epochs of about a minute of steps, from a step_cost record ($1): eval_every of the curve.
minute_of_epochs() {
  "$python" - "$1" <<'PY'
import json, sys
record = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(max(1, round(60 / record["epoch_seconds"])))
PY
}

case "$part" in
  eval)
    timeout "$(left 150)" "$python" -m benchmarks.eval_speed $num_flag \
      | tee "$out/eval_speed.jsonl" || fail=$?
    for dtype in float32 bfloat16; do
      timeout "$(left 120)" "$python" -m benchmarks.evaluation_speed $num_flag $small_batch \
        --feature-dtype=$dtype | tee -a "$out/evaluation_speed.jsonl" || fail=$?
    done
    ;;
  default)
    start=$SECONDS
    timeout "$(left 240)" "$python" -m experiments.dcgan \
      --config=experiments/configs/dcgan.py$variant --workdir="$scratch/default" \
      $default_extra > "$out/default_command.log" 2>&1
    rc=$?
    [ $rc = 0 ] || fail=$rc
    echo "{\"default_command_seconds\": $((SECONDS - start)), \"rc\": $rc}" \
      | tee "$out/default_command.json"
    cp "$scratch/default/fid_result.txt" "$scratch/default/metrics.jsonl" "$out/" 2>/dev/null
    # The loop's overhead: epochs against chunks of the same steps timed alone.
    timeout "$(left 90)" "$python" -m benchmarks.step_cost \
      --config=experiments/configs/dcgan.py$variant --time_steps=50 --repeats=3 \
      > "$out/step_time_dcgan.jsonl" || fail=$?
    "$python" -m benchmarks.loop_overhead --workdir="$scratch/default" \
      --step_time="$out/step_time_dcgan.jsonl" | tee "$out/loop_overhead.jsonl" || fail=$?
    timeout "$(left 150)" "$python" -m benchmarks.fid_precision --workdir="$scratch/default" \
      $num_flag $small_batch | tee "$out/fid_precision.jsonl" || fail=$?
    timeout "$(left 90)" "$python" -m benchmarks.evaluation_speed \
      --workdir="$scratch/default" $num_flag $small_batch \
      | tee "$out/evaluation_speed_trained.jsonl" || fail=$?
    ;;
  resnet|cresnet|resnet_bf16)
    config=experiments/configs/${part%_bf16}.py$variant
    overrides=() dtype=()
    if [ "$part" = resnet_bf16 ]; then
      overrides=(--override dtype=bfloat16) dtype=(--dtype=bfloat16)
    fi
    epochs=$(fitted_epochs "$config" "$out/step_time_$part.jsonl" "${dtype[@]}")
    cat "$out/step_time_$part.jsonl"
    epochs="${EPOCHS:-$epochs}"  # EPOCHS=E: an earlier part's epochs, for equal steps.
    if [ -n "$epochs" ]; then
      overrides+=(--override "num_epochs=$epochs")
    else
      echo "step timing failed (see $out/step_time_$part.jsonl.log): the config's epochs" >&2
    fi
    timeout "$(left 580)" "$python" -m benchmarks.quality --config="$config" --seeds=1 \
      --train_minutes=6 --workdir="$scratch/quality" "${quality_flags[@]}" "${overrides[@]}" \
      | tee "$out/quality_$part.jsonl" || fail=$?
    cp "$scratch"/quality/*/seed*/fashion_mnist_samples*.png "$out/" 2>/dev/null
    cp "$scratch"/quality/*/*.log "$out/" 2>/dev/null
    ;;
  curve)
    config=experiments/configs/resnet.py$variant
    epochs=$(fitted_epochs "$config" "$out/step_time_curve.jsonl")
    flags=()
    if [ -n "$epochs" ]; then
      flags=(--config.num_epochs="$epochs" \
        --config.eval_every="$(minute_of_epochs "$out/step_time_curve.jsonl")")
    else
      flags=(--config.eval_every=4)
    fi
    timeout "$(left 560)" "$python" -m experiments.train --config="$config" \
      --workdir="$scratch/curve" --config.seed=1 --config.fid_num_samples=$num "${flags[@]}" \
      > "$out/curve.log" 2>&1
    rc=$?
    [ $rc = 0 ] || fail=$rc
    echo "{\"curve_rc\": $rc, \"flags\": \"${flags[*]}\"}" | tee "$out/curve.json"
    cp "$scratch"/curve/metrics.jsonl "$scratch"/curve/curves.png \
      "$scratch"/curve/fashion_mnist_samples.png "$out/" 2>/dev/null
    "$python" -m benchmarks.fid_curve --workdir="$scratch/curve" --label="resnet.py, seed 1" \
      $floor_flag --out="$out/fid_curve_resnet.png" | tee "$out/fid_curve.jsonl" || fail=$?
    ;;
  dcgan)
    timeout "$(left 400)" "$python" -m benchmarks.quality \
      --config=experiments/configs/dcgan_best.py$variant \
      --config=experiments/configs/cdcgan.py$variant --seeds=1 --parallel=2 \
      --workdir="$scratch/quality_dcgan" "${quality_flags[@]}" \
      | tee "$out/quality_dcgan.jsonl" || fail=$?
    ;;
  *)
    echo "unknown part '$part'; allowed: eval, default, resnet, cresnet, resnet_bf16, curve, dcgan" >&2
    exit 2
    ;;
esac
exit $fail
