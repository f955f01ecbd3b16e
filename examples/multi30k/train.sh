#!/usr/bin/env bash
# Train one system of the paper on prepared Multi30K data (one seed). Run with --help.
set -euo pipefail
# The braces make bash read the whole script before running it, so editing the file while a
# long run is going cannot change what this run does next.
{

PROG=train.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

usage() {
  cat <<'EOF'
Usage: examples/multi30k/train.sh [options] [-- EXTRA_FAIRSEQ_TRAIN_FLAGS...]

Build (and run) the fairseq-train command of one system of "Adversarial reconstruction for
Multi-modal Machine Translation". A system's family sets the model and the optimization:
  cGRU         the paper's settings (section 5.1): cgru_mmt, Adam 4e-4, clip 1, batch 32, early
               stopping after 5 epochs without a better validation BLEU (beam 5)
  Transformer  Wu et al. (2021)'s: transformer_mmt_tiny (dropout 0.3) with all embeddings shared
               (data from prepare-multi30k.sh --joined-dictionary), Adam (0.9, 0.98), lr 0.005,
               inverse_sqrt with 2000 warm-up updates from 1e-07, label smoothing 0.1, 4096
               tokens per batch, 8000 updates; the last 10 epoch checkpoints are kept and
               averaged into SAVE_DIR/checkpoint_avg.pt (scripts/average_checkpoints.py)
The adversarial modes' critic is the paper's in both: lambda_gp 10, Adam 2e-4 (0.5, 0.9) x 5
iterations. Every option also reads the environment variable in brackets; options win.

Options:
  --data DIR        [DATA] prepared data (scripts/prepare-multi30k.sh --out DIR); required
  --features DIR    [FEATURES] feature directory with {split}.npy (default: the data directory,
                    where prepare-multi30k.sh --features links them)
  --system S        [SYSTEM] one of
                      baseline      ctx-mul model, NLL only
                      mse           "Baseline + G": NLL + lambda_r ||v - G(hT)||^2
                      g-wgan        G-WGAN (Algorithm 1), noise |z| = --noise-dim
                      q-waae        Q-WAAE (Algorithm 2)
                      baseline-nov, mse-nov, q-waae-nov, g-wgan-nov
                                    the same with --visual-fusion none (Table 4 "no v")
                    (default q-waae); ctx-mul = baseline, text-only = baseline-nov.
                    Transformer: transformer-text-only, gated, selective-attn, each alone or
                    with +mse, +q-waae, +g-wgan (e.g. gated+q-waae). The systems and their
                    flags are fairseq_mmt_adv/recipes/systems.py's (python -m fairseq_mmt_adv.recipes.systems
                    --list)
  --seed N          [SEED] random seed (default 1)
  --lambda-r X      [LAMBDA_R] reconstruction weight (default 0.2 for mse and q-waae, 0 for
                    g-wgan: Algorithm 1 has no reconstruction term)
  --lambda-a X      [LAMBDA_A] adversarial weight (default 0.2; g-wgan and q-waae)
  --noise-dim N     [NOISE_DIM] g-wgan noise size |z| (default 128)
  --save-dir DIR    [SAVE_DIR] checkpoint directory (default CHECKPOINTS/NAME/seedN with
                    CHECKPOINTS [checkpoints] and NAME the run name, e.g. q-waae_lr0.2_la0.2)
  --keep-epoch-checkpoints
                    [KEEP_EPOCH_CHECKPOINTS=1] keep checkpointN.pt of every epoch (for
                    scripts/average_checkpoints.py); by default only checkpoint_best/last
                    (cGRU) or the last 10 epochs' (Transformer)
  --force           train even if SAVE_DIR/DONE says this run finished already
  --dry-run         print the commands (and the run name) instead of running them
  --print-save-dir  print the checkpoint directory of the run and exit (for scripts)
  --print-checkpoint
                    print the checkpoint that decoding uses and exit: SAVE_DIR/checkpoint_best.pt
                    (cGRU) or SAVE_DIR/checkpoint_avg.pt (Transformer)
  -h, --help        show this help

Everything after "--" goes to fairseq-train as is (later flags win over the ones above), e.g.
"-- --max-epoch 40 --fp16" or "-- --cpu" for a test on a CPU. For a data-parallel run, start
train.sh once per rank with "-- --distributed-rank R ..." (see examples/multi30k/README.md):
rank 0 averages the Transformer's checkpoints.

Other environment variables:
  FAIRSEQ_BIN   directory of fairseq-train (default: the repository's .venv/bin, else PATH)
  PYTHON        Python for fairseq_mmt_adv/recipes/systems.py, text_pipeline.py (stdlib only) and the
                Transformer's checkpoint averaging (torch); default: the repository's
                .venv/bin/python, else python3
  USER_DIR      the plugin (default: the repository's fairseq_mmt_adv)
  ARCH          model architecture (default cgru_mmt, the paper's sizes; transformer_mmt_tiny
                for the Transformer family)
  LOG_INTERVAL  updates between train_inner log records (default 100)

fairseq-train logs JSON records (--log-format json) to SAVE_DIR/train.log, the input of
plot_curves.py. When fairseq-train succeeds the script writes SAVE_DIR/DONE; a finished run is
skipped when asked again (experiments.sh relies on it), unless --force. SAVE_DIR also gets the
dictionaries, preprocessing.json and BPE codes of DATA: fairseq-mmt-translate and
MultimodalTranslator.from_pretrained(SAVE_DIR) need nothing else.

Example:
  examples/multi30k/train.sh --data data-bin/en-de --system q-waae --seed 3 -- --max-epoch 50
  examples/multi30k/train.sh --data data-bin/en-de-joined --system gated+q-waae --dry-run
  SYSTEM=g-wgan NOISE_DIM=256 DATA=data-bin/en-de examples/multi30k/train.sh --dry-run
EOF
}

# shellcheck source=examples/multi30k/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_value() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }

DATA=${DATA:-}
FEATURES=${FEATURES:-}
SYSTEM=${SYSTEM:-q-waae}
SEED=${SEED:-1}
LAMBDA_R=${LAMBDA_R:-}
LAMBDA_A=${LAMBDA_A:-}
NOISE_DIM=${NOISE_DIM:-}
SAVE_DIR=${SAVE_DIR:-}
CHECKPOINTS=${CHECKPOINTS:-checkpoints}
ARCH=${ARCH:-}
LOG_INTERVAL=${LOG_INTERVAL:-100}
USER_DIR=${USER_DIR:-$REPO/fairseq_mmt_adv}
if [[ -z ${FAIRSEQ_BIN:-} && -x $REPO/.venv/bin/fairseq-train ]]; then
  FAIRSEQ_BIN=$REPO/.venv/bin
fi
FAIRSEQ_BIN=${FAIRSEQ_BIN:-}
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
DRY_RUN=0
PRINT_SAVE_DIR=0
PRINT_CHECKPOINT=0
FORCE=0
KEEP_EPOCH_CHECKPOINTS=${KEEP_EPOCH_CHECKPOINTS:-0}
EXTRA=()

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --data) need_value "$@"; DATA=$2; shift 2 ;;
    --features) need_value "$@"; FEATURES=$2; shift 2 ;;
    --system) need_value "$@"; SYSTEM=$2; shift 2 ;;
    --seed) need_value "$@"; SEED=$2; shift 2 ;;
    --lambda-r) need_value "$@"; LAMBDA_R=$2; shift 2 ;;
    --lambda-a) need_value "$@"; LAMBDA_A=$2; shift 2 ;;
    --noise-dim) need_value "$@"; NOISE_DIM=$2; shift 2 ;;
    --save-dir) need_value "$@"; SAVE_DIR=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    --keep-epoch-checkpoints) KEEP_EPOCH_CHECKPOINTS=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --print-save-dir) PRINT_SAVE_DIR=1; shift ;;
    --print-checkpoint) PRINT_CHECKPOINT=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option '$1' (fairseq-train flags go after '--'; see --help)" ;;
  esac
done

[[ -n $DATA ]] || die "give the prepared data directory with --data DIR (or DATA=DIR)"
FEATURES=${FEATURES:-$DATA}
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, not '$SEED'"

# System -> visual fusion, criterion flags and run name (fairseq_mmt_adv/recipes/systems.py).
system_settings() {  # system_settings [--label-smoothing X]: SYSTEM_FLAGS etc. of $SYSTEM
  local settings
  settings=$(PYTHONPATH=$REPO "$PYTHON" -m fairseq_mmt_adv.recipes.systems "$SYSTEM" --shell "$@" \
    --lambda-r="$LAMBDA_R" --lambda-a="$LAMBDA_A" --noise-dim="$NOISE_DIM" --prog "$PROG") || exit
  eval "$settings"  # SYSTEM FAMILY ARCH_PREFIX BASELINE RUN_NAME SYSTEM_FLAGS
}
system_settings
# The family's model, optimization, checkpoints and the checkpoint that decoding uses.
AVERAGE=()
LABEL_SMOOTHING=""  # the family's, set below
case $FAMILY in
  cgru)  # the paper's (section 5.1), early stopping on validation BLEU
    ARCH=${ARCH:-cgru_mmt}
    OPTIMIZATION=(--optimizer adam --lr 4e-4 --clip-norm 1 --batch-size 32
      --eval-bleu --eval-bleu-args '{"beam": 5}' --eval-bleu-remove-bpe
      --best-checkpoint-metric bleu --maximize-best-checkpoint-metric --patience 5)
    EPOCH_CHECKPOINTS=(--no-epoch-checkpoints)
    ;;
  transformer)  # Wu et al. (2021): 8000 updates, the last 10 epochs averaged
    LABEL_SMOOTHING=0.1
    ARCH=${ARCH:-transformer_mmt_tiny}
    OPTIMIZATION=(--share-all-embeddings --optimizer adam --adam-betas '(0.9, 0.98)'
      --clip-norm 0.0 --lr 0.005 --lr-scheduler inverse_sqrt --warmup-updates 2000
      --warmup-init-lr 1e-07 --max-tokens 4096 --max-update 8000)
    EPOCH_CHECKPOINTS=(--keep-last-epochs 10)
    ;;
  *) die "--system $SYSTEM is a $FAMILY system: train.sh has no recipe for that family" ;;
esac
SAVE_DIR=${SAVE_DIR:-$CHECKPOINTS/$RUN_NAME/seed$SEED}
[[ $KEEP_EPOCH_CHECKPOINTS == 1 ]] && EPOCH_CHECKPOINTS=()
CHECKPOINT=$SAVE_DIR/checkpoint_best.pt
# Data-parallel runs start train.sh once per rank: rank 0 saves the checkpoints and averages them.
RANK=0
for ((i = 0; i < ${#EXTRA[@]}; i++)); do
  case ${EXTRA[i]} in
    --distributed-rank) RANK=${EXTRA[i + 1]:-0} ;;
    --distributed-rank=*) RANK=${EXTRA[i]#*=} ;;
  esac
done
if [[ $FAMILY == transformer ]]; then
  CHECKPOINT=$SAVE_DIR/checkpoint_avg.pt
  [[ $RANK != 0 ]] || AVERAGE=("$PYTHON" "$REPO/scripts/average_checkpoints.py" --last-epochs 10
    --run-dir "$SAVE_DIR" --output "$CHECKPOINT")
fi
if [[ $PRINT_SAVE_DIR == 1 ]]; then
  printf '%s\n' "$SAVE_DIR"
  exit 0
fi
if [[ $PRINT_CHECKPOINT == 1 ]]; then
  printf '%s\n' "$CHECKPOINT"
  exit 0
fi
# the family's label smoothing changes the flags only (not the run's name): asked for here, after
# the --print-* answers, which need no second call
[[ -z ${LABEL_SMOOTHING:-} ]] || system_settings --label-smoothing "$LABEL_SMOOTHING"

# --share-all-embeddings needs one dictionary for both languages (prepare-multi30k.sh
# --joined-dictionary); fairseq-train would stop on separate ones only after loading the data.
separate_dictionaries() {
  local dicts=("$DATA"/dict.*.txt)
  [[ ${#dicts[@]} == 2 && -f ${dicts[0]} ]] && ! cmp -s "${dicts[@]}"
}
SEPARATE=
if [[ $FAMILY == transformer ]] && separate_dictionaries; then
  SEPARATE="$DATA has separate dictionaries ($(cd "$DATA" && echo dict.*.txt)) but the Transformer"
  SEPARATE+=" recipe shares all embeddings: prepare the data with scripts/prepare-multi30k.sh"
  SEPARATE+=" --joined-dictionary (into another --out)"
fi

TRAIN=fairseq-train
[[ -z $FAIRSEQ_BIN ]] || TRAIN=$FAIRSEQ_BIN/fairseq-train
COMMAND=(
  "$TRAIN" "$DATA" --user-dir "$USER_DIR"
  --task multimodal_translation --visual-features "$FEATURES"
  --arch "$ARCH" "${SYSTEM_FLAGS[@]}" "${OPTIMIZATION[@]}"
  "${EPOCH_CHECKPOINTS[@]}" --seed "$SEED" --save-dir "$SAVE_DIR"
  --log-format json --log-interval "$LOG_INTERVAL" --log-file "$SAVE_DIR/train.log"
  "${EXTRA[@]}"
)

if [[ $DRY_RUN == 1 ]]; then
  status=
  [[ ! -f $SAVE_DIR/DONE ]] || status=" (finished: would be skipped without --force)"
  printf '# run %s seed %s -> %s%s\n' "$RUN_NAME" "$SEED" "$SAVE_DIR" "$status"
  [[ -z $SEPARATE ]] || printf '# warning: %s\n' "$SEPARATE"
  print_command "${COMMAND[@]}"
  [[ ${#AVERAGE[@]} == 0 ]] || print_command "${AVERAGE[@]}"
  exit 0
fi

if [[ -f $SAVE_DIR/DONE && $FORCE == 0 ]]; then
  printf '[%s] %s seed %s finished before (%s/DONE), skipped\n' "$PROG" "$RUN_NAME" "$SEED" "$SAVE_DIR"
  exit 0
fi
[[ -d $DATA ]] || die "data directory $DATA does not exist (scripts/prepare-multi30k.sh --out)"
[[ -z $SEPARATE ]] || die "$SEPARATE"
[[ -f $FEATURES/train.npy ]] || die "$FEATURES/train.npy is missing: give --features DIR" \
  "(python scripts/extract_features.py, then prepare-multi30k.sh --features)"
if [[ $TRAIN == */* ]]; then
  [[ -x $TRAIN ]] || die "$TRAIN not found: set FAIRSEQ_BIN or run scripts/setup-env.sh"
else
  command -v "$TRAIN" >/dev/null || die "fairseq-train not on PATH: set FAIRSEQ_BIN"
fi

mkdir -p "$SAVE_DIR"
rm -f "$SAVE_DIR/DONE"
# What translating needs beside the checkpoints: DATA's dictionaries, preprocessing.json, BPE codes
PYTHONPATH=$REPO "$PYTHON" -m fairseq_mmt_adv.translation.text_pipeline copy "$DATA" "$SAVE_DIR" || exit 1
print_command "${COMMAND[@]}" >"$SAVE_DIR/command.sh"
printf '[%s] %s seed %s -> %s\n' "$PROG" "$RUN_NAME" "$SEED" "$SAVE_DIR"
print_command "${COMMAND[@]}"
"${COMMAND[@]}"
if [[ ${#AVERAGE[@]} -gt 0 ]]; then
  print_command "${AVERAGE[@]}"
  "${AVERAGE[@]}"
fi
date -u +%FT%TZ >"$SAVE_DIR/DONE"
exit
}
