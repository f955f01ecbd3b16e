#!/usr/bin/env bash
# The GPU checks of the speed targets (docs/PERFORMANCE.md), as one prepared command for a
# device machine. Run with --help.
set -euo pipefail
# Parsed whole before it runs (see examples/multi30k/train.sh).
{

usage() {
  cat <<'EOF'
Usage: scripts/device-check.sh --data DIR [options]

Runs the speed issue's GPU checks in one go and writes every log and a summary.txt of timings to
--out. Meant for the device machine (torch with CUDA, no fairseq, no network), from the
repository root; also runs on a CPU (--device cpu) for a rehearsal on small data.

Options:
  --data DIR      prepared data (scripts/prepare-multi30k.sh --out DIR, with its splits.tsv);
                  required
  --kit DIR       the device kit (../shared/device-kit/README.md) to install fairseq from; without
                  it fairseq must already be importable
  --out DIR       where the logs and summary.txt go (default device-check)
  --work DIR      where the features and checkpoints go (default: --out); on the device, a
                  folder outside $OUT, which brings back only a few small files
  --phases LIST   comma-separated, run in this order (default tests,bench,train,decode):
                    tests   the test suite's CUDA tests (fused = reference on CUDA, bf16 autocast,
                            the critic on CUDA)
                    bench   scripts/benchmark_paired.py: training and beam-12 ratios to lstm, then
                            the adversarial overheads
                    train   examples/multi30k/train.sh --system baseline-nov (the paper's settings)
                            to early stopping, timed
                    decode  fairseq-generate on test (Test 2016), beam 12, timed, from train's
                            checkpoint_best.pt
  --device D      cuda (default) or cpu
  --rounds N      benchmark rounds (default 10)
  -h, --help      show this help

Features: random 2048-d float16 features, one row per sentence of splits.tsv, are written to
WORK/features (the visual systems of the benchmark need them; baseline-nov ignores them).
Everything after "--" goes to fairseq-train (train phase), e.g. "-- --max-epoch 2" or
"-- --amp --amp-dtype bfloat16".

On the device, with the kit and the data in ignored folders of the repository (see
docs/PERFORMANCE.md, "GPU: the prepared checks"), two calls that fit the 10-minute limit:
  run(command="bash scripts/device-check.sh --kit .kit --data .data/m30k-ende --out $OUT/a
      --work /tmp/check --phases tests,bench", carry=[".kit", ".data"], timeout_s=420)
  run(command="bash scripts/device-check.sh --kit .kit --data .data/m30k-ende --out $OUT/b
      --work /tmp/check --phases train,decode", carry=[".kit", ".data"], timeout_s=600)
EOF
}

die() { echo "device-check.sh: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA="" KIT="" OUT=device-check WORK="" PHASES=tests,bench,train,decode DEVICE=cuda ROUNDS=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --data) need_value "$@"; DATA=$2; shift 2 ;;
    --kit) need_value "$@"; KIT=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --work) need_value "$@"; WORK=$2; shift 2 ;;
    --phases) need_value "$@"; PHASES=$2; shift 2 ;;
    --device) need_value "$@"; DEVICE=$2; shift 2 ;;
    --rounds) need_value "$@"; ROUNDS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -n $DATA ]] || die "--data DIR is required (see --help)"
[[ -f $DATA/splits.tsv ]] || die "$DATA/splits.tsv is missing: prepare the data with scripts/prepare-multi30k.sh --out $DATA"
[[ $DEVICE == cuda || $DEVICE == cpu ]] || die "--device must be cuda or cpu, got $DEVICE"
for phase in ${PHASES//,/ }; do
  case $phase in tests|bench|train|decode) ;; *) die "unknown phase $phase (see --help)" ;; esac
done
has_phase() { [[ ",$PHASES," == *",$1,"* ]]; }

mkdir -p "$OUT" "${WORK:=$OUT}"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)
DATA=$(cd "$DATA" && pwd)
SAVE_DIR=$WORK/baseline-nov
if has_phase decode && ! has_phase train && [[ ! -f $SAVE_DIR/checkpoint_best.pt ]]; then
  die "the decode phase needs $SAVE_DIR/checkpoint_best.pt: add train to --phases, or give the --work of an earlier train phase"
fi
SUMMARY=$OUT/summary.txt
note() { echo "$*" | tee -a "$SUMMARY"; }
# run_logged LOG COMMAND...: the command's output goes to LOG; on failure, its tail and a stop
run_logged() {
  local log=$1; shift
  "$@" > "$log" 2>&1 || { tail -n 40 "$log" >&2; die "failed, see $log: $*"; }
}
now() { echo "$EPOCHREALTIME"; }
seconds_since() { awk -v start="$1" -v end="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", end - start }'; }

if [[ -n $KIT ]]; then
  # a machine still warm from an earlier call keeps /tmp/site
  if ! PYTHONPATH=/tmp/site python3 -c "import fairseq" > /dev/null 2>&1; then
    bash "$KIT/install-on-device.sh" "$KIT" > "$OUT/install.log" 2>&1 \
      || { tail -n 30 "$OUT/install.log"; die "the kit did not install (log: $OUT/install.log)"; }
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PYTHON=$(command -v python3)
note "device-check $(date -u +%FT%TZ), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$PYTHON" -m fairseq_mmt_adv.recipes.fairseq_steps environment | tee -a "$SUMMARY"

FEATURES=$WORK/features
mkdir -p "$FEATURES"
"$PYTHON" -m fairseq_mmt_adv.recipes.features random "$DATA/splits.tsv" "$FEATURES" --dim 2048

if has_phase tests; then
  start=$(now)
  status=passed
  # the files with CUDA tests only: collecting the others costs seconds and runs nothing
  mapfile -t cuda_files < <(grep -l "pytest.mark.cuda" "$REPO"/tests/test_*.py)
  "$PYTHON" -m pytest -q -rs -p no:cacheprovider -m cuda "${cuda_files[@]}" > "$OUT/tests.log" 2>&1 \
    || status=FAILED
  note "tests: $status in $(seconds_since "$start") s ($(tail -n 1 "$OUT/tests.log"))"
fi

if has_phase bench; then
  bench=("$PYTHON" "$REPO/scripts/benchmark_paired.py" --data "$DATA" --features "$FEATURES"
         --device "$DEVICE" --rounds "$ROUNDS")
  run_logged "$OUT/bench-beam12.log" "${bench[@]}" --systems lstm,cgru-reference,cgru --beam 12
  run_logged "$OUT/bench-adversarial.log" "${bench[@]}" --reference cgru --no-decode \
    --systems cgru,cgru+mse,cgru+q-waae,cgru+g-wgan
  for log in "$OUT"/bench-*.log; do
    note "$(basename "$log"):"
    grep -B 1 -A 5 "^system" "$log" | grep -v -e "^INFO" -e "^--$" | tee -a "$SUMMARY"
  done
fi

cpu=()
[[ $DEVICE == cpu ]] && cpu=(--cpu)
if has_phase train; then
  start=$(now)
  run_logged "$OUT/train.log" env FAIRSEQ_BIN="$(dirname "$(command -v fairseq-train)")" \
    DATA="$DATA" FEATURES="$FEATURES" bash "$REPO/examples/multi30k/train.sh" \
    --system baseline-nov --save-dir "$SAVE_DIR" --force -- "${cpu[@]}" "$@"
  seconds=$(seconds_since "$start")
  bleu=$("$PYTHON" -m fairseq_mmt_adv.recipes.summary best-bleu "$SAVE_DIR/train.log")
  note "train: $seconds s to the end of training, $bleu"
fi

if has_phase decode; then
  start=$(now)
  run_logged "$OUT/decode-test.log" fairseq-generate "$DATA" --user-dir "$REPO/fairseq_mmt_adv" \
    --task multimodal_translation --visual-features "$FEATURES" --gen-subset test --beam 12 \
    --path "$SAVE_DIR/checkpoint_best.pt" --batch-size 128 --remove-bpe "${cpu[@]}"
  note "decode test (Test 2016), beam 12: $(seconds_since "$start") s for the whole process"
  grep -E "Translated [0-9,]+ sentences|BLEU4 =" "$OUT/decode-test.log" | tee -a "$SUMMARY"
fi
exit
}
