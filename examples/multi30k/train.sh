#!/usr/bin/env bash
# Train one system of the paper on prepared Multi30K data (one seed). Run with --help.
set -euo pipefail
# The braces make bash read the whole script before running it, so editing the file while a
# long run is going cannot change what this run does next.
{

PROG=train.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

# The families' recipes: the model, the optimization and the checkpoints that train.sh gives
# fairseq-train beside the system's flags (--help prints them from here).
CGRU_ARCH=cgru_mmt  # the paper's settings (section 5.1)
CGRU_LABEL_SMOOTHING=  # none: the paper's NLL
CGRU_OPTIMIZATION=(--optimizer adam --lr 4e-4 --clip-norm 1 --batch-size 32
  --eval-bleu --eval-bleu-args '{"beam": 5}' --eval-bleu-remove-bpe
  --best-checkpoint-metric bleu --maximize-best-checkpoint-metric --patience 5)
CGRU_CHECKPOINTS=(--no-epoch-checkpoints)
TRANSFORMER_ARCH=transformer_mmt_tiny  # Wu et al. (2021)'s
TRANSFORMER_LABEL_SMOOTHING=0.1  # in either criterion's NLL
TRANSFORMER_OPTIMIZATION=(--share-all-embeddings --optimizer adam --adam-betas '(0.9, 0.98)'
  --clip-norm 0.0 --lr 0.005 --lr-scheduler inverse_sqrt --warmup-updates 2000
  --warmup-init-lr 1e-07 --max-tokens 4096 --max-update 8000)
# A text model fine-tuned with the image (finetuned-* systems): the same, but a tenth of the
# learning rate and a quarter of the updates and warm-up.
TRANSFORMER_FINETUNING=(--share-all-embeddings --optimizer adam --adam-betas '(0.9, 0.98)'
  --clip-norm 0.0 --lr 0.0005 --lr-scheduler inverse_sqrt --warmup-updates 500
  --warmup-init-lr 1e-07 --max-tokens 4096 --max-update 2000)
AVERAGED_EPOCHS=10  # the Transformer's last epoch checkpoints, kept and averaged
TRANSFORMER_CHECKPOINTS=(--keep-last-epochs "$AVERAGED_EPOCHS")

usage() {
  cat <<'EOF'
Usage: examples/multi30k/train.sh [options] [-- EXTRA_FAIRSEQ_TRAIN_FLAGS...]

Build (and run) the fairseq-train command of one system of "Adversarial reconstruction for
Multi-modal Machine Translation". The system sets the visual fusion and the criterion with its
weights and critic (python -m fairseq_mmt_adv.recipes.systems SYSTEM prints its flags); its
family sets the model and the optimization, train.sh's recipes:
EOF
  recipes_help
  options_help
  environment_help
}

options_help() {  # the options and the environment, as --help shows them
  cat <<'EOF'
Every option also reads the environment variable in brackets; options win.

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
                    with +mse, +q-waae, +g-wgan (e.g. gated+q-waae); finetuned-gated,
                    finetuned-selective-attn, alone or with a mode (finetuned-gated+q-waae):
                    the same, fine-tuned from the transformer-text-only run of the same seed
                    and CHECKPOINTS (its checkpoint_avg.pt; train it first). The systems and
                    their flags are fairseq_mmt_adv/recipes/systems.py's (python -m
                    fairseq_mmt_adv.recipes.systems --list)
  --seed N          [SEED] random seed (default 1)
  --lambda-r X      [LAMBDA_R] reconstruction weight (mse, q-waae, g-wgan)
  --lambda-a X      [LAMBDA_A] adversarial weight (q-waae, g-wgan)
  --noise-dim N     [NOISE_DIM] g-wgan noise size |z|
                    (default: the paper's weights, which are the criterion's defaults)
  --freeze-text-model
                    [FREEZE_TEXT_MODEL=1] of a finetuned-* system: train only the fusion (and
                    G), not the text model; the run name ends in _frozen
  --save-dir DIR    [SAVE_DIR] checkpoint directory (default CHECKPOINTS/NAME/seedN with
                    CHECKPOINTS [checkpoints] and NAME the run name, e.g. q-waae_lr0.2_la0.2)
  --keep-epoch-checkpoints
                    [KEEP_EPOCH_CHECKPOINTS=1] keep checkpointN.pt of every epoch (for
                    scripts/average_checkpoints.py); by default only checkpoint_best/last
                    (cGRU) or the last epochs' that the Transformer averages
  --force           train even if SAVE_DIR/DONE says this run finished already
  --dry-run         print the commands (and the run name) instead of running them
  --print-save-dir  print the checkpoint directory of the run and exit (for scripts)
  --print-checkpoint
                    print the checkpoint that decoding uses and exit: SAVE_DIR/checkpoint_best.pt
                    (cGRU) or SAVE_DIR/checkpoint_avg.pt (Transformer)
  --systems-table   read runs from standard input, one a line as train.sh options (e.g.
                    "--system q-waae --lambda-r 0.5"), print their systems' settings as one
                    table for SYSTEMS_TABLE (below) and exit
  -h, --help        show this help

Everything after "--" goes to fairseq-train as is (later flags win over the ones above), e.g.
"-- --max-epoch 40 --fp16" or "-- --cpu" for a test on a CPU. For a data-parallel run, start
train.sh once per rank with "-- --distributed-rank R ..." (see examples/multi30k/README.md):
rank 0 averages the Transformer's checkpoints.
EOF
}

environment_help() {  # the environment, the outputs and examples, as --help shows them
  cat <<'EOF'

Other environment variables:
  FAIRSEQ_BIN   directory of fairseq-train (default: the repository's .venv/bin, else PATH)
  PYTHON        Python with the plugin, for fairseq_mmt_adv/recipes/systems.py, text_pipeline.py
                and the Transformer's checkpoint averaging; default: the repository's
                .venv/bin/python, else python3
  USER_DIR      the plugin (default: the repository's fairseq_mmt_adv)
  ARCH          model architecture (default: the family's above; cgru_mmt_small, for one)
  LOG_INTERVAL  updates between train_inner log records (default 100)
  SYSTEMS_TABLE the output of train.sh --systems-table: a run finds its system's settings
                there instead of asking systems.py, a Python process that imports fairseq
                (seconds; experiments.sh makes one table for all its runs)

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

recipes_help() {  # the recipes above, as --help shows them
  local indent='              ' flags='                '
  printf '  cGRU         the paper'"'"'s settings (section 5.1), early stopping on validation BLEU:\n'
  print_wrapped "$flags" --arch "$CGRU_ARCH" "${CGRU_OPTIMIZATION[@]}" "${CGRU_CHECKPOINTS[@]}"
  printf '  Transformer  Wu et al. (2021)'"'"'s, all embeddings shared (data from prepare-multi30k.sh\n'
  printf '%s --joined-dictionary), label smoothing %s in either criterion, the last %s\n' \
    "$indent" "$TRANSFORMER_LABEL_SMOOTHING" "$AVERAGED_EPOCHS"
  printf '%s epoch checkpoints averaged into SAVE_DIR/checkpoint_avg.pt\n' "$indent"
  printf '%s (scripts/average_checkpoints.py):\n' "$indent"
  print_wrapped "$flags" --arch "$TRANSFORMER_ARCH" "${TRANSFORMER_OPTIMIZATION[@]}" \
    "${TRANSFORMER_CHECKPOINTS[@]}"
  printf '  finetuned-*  the Transformer recipe fine-tuning a text model: --finetune-from-model\n'
  printf '%s CHECKPOINTS/transformer-text-only/seedN/checkpoint_avg.pt (its run of the same\n' \
    "$indent"
  printf '%s seed), a tenth of the learning rate, a quarter of the warm-up and updates:\n' "$indent"
  print_wrapped "$flags" --arch "$TRANSFORMER_ARCH" "${TRANSFORMER_FINETUNING[@]}" \
    "${TRANSFORMER_CHECKPOINTS[@]}"
  printf '\n'
}

print_wrapped() {  # print_wrapped INDENT WORDS...: quoted as print_command does, lines of <= 96
  local indent=$1 word quoted line=
  shift
  for word in "$@"; do
    quoted=$(print_command "$word")
    if [[ -n $line && $((${#indent} + ${#line} + ${#quoted})) -ge 96 ]]; then
      printf '%s %s\n' "$indent" "$line"
      line=
    fi
    line=${line:+$line }$quoted
  done
  [[ -z $line ]] || printf '%s %s\n' "$indent" "$line"
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
PRINT_SYSTEMS_TABLE=0
FORCE=0
FREEZE_TEXT_MODEL=${FREEZE_TEXT_MODEL:-0}
KEEP_EPOCH_CHECKPOINTS=${KEEP_EPOCH_CHECKPOINTS:-0}
EXTRA=()

parse_options() {
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
      --freeze-text-model) FREEZE_TEXT_MODEL=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      --print-save-dir) PRINT_SAVE_DIR=1; shift ;;
      --print-checkpoint) PRINT_CHECKPOINT=1; shift ;;
      --systems-table) PRINT_SYSTEMS_TABLE=1; shift ;;
      --) shift; EXTRA=("$@"); break ;;
      *) die "unknown option '$1' (fairseq-train flags go after '--'; see --help)" ;;
    esac
  done
}

# The request to fairseq_mmt_adv/recipes/systems.py for $SYSTEM, its weights, the families'
# label smoothing and --freeze-text-model; joined by spaces, its key in a SYSTEMS_TABLE.
system_request() {
  [[ "$SYSTEM$LAMBDA_R$LAMBDA_A$NOISE_DIM" != *[[:space:]]* ]] ||
    die "--system, --lambda-r, --lambda-a and --noise-dim take one word each"
  [[ $FREEZE_TEXT_MODEL == [01] ]] ||
    die "FREEZE_TEXT_MODEL must be 1 (--freeze-text-model) or 0, not '$FREEZE_TEXT_MODEL'"
  REQUEST=("$SYSTEM" --lambda-r="$LAMBDA_R" --lambda-a="$LAMBDA_A" --noise-dim="$NOISE_DIM"
    --label-smoothing="cgru=$CGRU_LABEL_SMOOTHING"
    --label-smoothing="transformer=$TRANSFORMER_LABEL_SMOOTHING")
  [[ $FREEZE_TEXT_MODEL == 0 ]] || REQUEST+=(--freeze-text-model)
}

# --systems-table: the request of each run on stdin, all answered by one systems.py process.
print_systems_table() {
  local line words requests=() request
  while read -r line || [[ -n $line ]]; do
    read -ra words <<<"$line"
    [[ ${#words[@]} -gt 0 ]] || continue
    request=$(parse_options "${words[@]}" && system_request && printf '%s' "${REQUEST[*]}") ||
      exit
    requests+=("$request")
  done
  [[ ${#requests[@]} -gt 0 ]] || return 0
  printf '%s\n' "${requests[@]}" | PYTHONPATH=$REPO "$PYTHON" -m fairseq_mmt_adv.recipes.systems \
    --requests - --prog "$PROG"
}

# SYSTEM (canonical), FAMILY, ARCH_PREFIX, BASELINE, START_FROM, RUN_NAME and SYSTEM_FLAGS of the
# request:
# from SYSTEMS_TABLE if it holds them, else from systems.py.
system_settings() {
  local rows=
  system_request
  if [[ -n ${SYSTEMS_TABLE:-} ]]; then
    [[ -f $SYSTEMS_TABLE ]] ||
      die "SYSTEMS_TABLE=$SYSTEMS_TABLE does not exist: make it with train.sh --systems-table"
    rows=$(table_rows "${REQUEST[*]}" <"$SYSTEMS_TABLE")
  fi
  if [[ -z $rows ]]; then
    rows=$(PYTHONPATH=$REPO "$PYTHON" -m fairseq_mmt_adv.recipes.systems --tsv "${REQUEST[@]}" \
      --prog "$PROG") || exit
  fi
  read_settings <<<"$rows"
}

table_rows() {  # table_rows REQUEST < TABLE: the KEY<TAB>VALUE rows of REQUEST
  local line
  while IFS= read -r line; do
    [[ $line != "$1"$'\t'* ]] || printf '%s\n' "${line#"$1"$'\t'}"
  done
}

read_settings() {  # read_settings < KEY<TAB>VALUE rows (systems.py --tsv)
  local key value
  SYSTEM_FLAGS=()
  while IFS=$'\t' read -r key value; do
    case $key in
      SYSTEM | FAMILY | ARCH_PREFIX | BASELINE | START_FROM | RUN_NAME)
        printf -v "$key" '%s' "$value" ;;
      FLAG) SYSTEM_FLAGS+=("$value") ;;
      *) die "unexpected line '$key' from fairseq_mmt_adv/recipes/systems.py --tsv" ;;
    esac
  done
}

parse_options "$@"
if [[ $PRINT_SYSTEMS_TABLE == 1 ]]; then
  print_systems_table
  exit
fi
[[ -n $DATA ]] || die "give the prepared data directory with --data DIR (or DATA=DIR)"
FEATURES=${FEATURES:-$DATA}
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, not '$SEED'"

system_settings
# The family's recipe (above) and the checkpoint that decoding uses.
case $FAMILY in
  cgru)
    [[ -z $START_FROM ]] ||
      die "--system $SYSTEM starts from $START_FROM: train.sh fine-tunes no cGRU (no recipe)"
    ARCH=${ARCH:-$CGRU_ARCH}
    OPTIMIZATION=("${CGRU_OPTIMIZATION[@]}")
    EPOCH_CHECKPOINTS=("${CGRU_CHECKPOINTS[@]}")
    ;;
  transformer)
    ARCH=${ARCH:-$TRANSFORMER_ARCH}
    OPTIMIZATION=("${TRANSFORMER_OPTIMIZATION[@]}")
    [[ -z $START_FROM ]] || OPTIMIZATION=("${TRANSFORMER_FINETUNING[@]}")
    EPOCH_CHECKPOINTS=("${TRANSFORMER_CHECKPOINTS[@]}")
    ;;
  *) die "--system $SYSTEM is a $FAMILY system: train.sh has no recipe for that family" ;;
esac
[[ $ARCH == "$ARCH_PREFIX"* ]] ||
  die "ARCH=$ARCH is no architecture of $SYSTEM's family ($FAMILY: $ARCH_PREFIX*)"
AVERAGE=()
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
  [[ $RANK != 0 ]] || AVERAGE=("$PYTHON" "$REPO/scripts/average_checkpoints.py"
    --last-epochs "$AVERAGED_EPOCHS" --run-dir "$SAVE_DIR" --output "$CHECKPOINT")
fi
# A fine-tuned system starts from its START_FROM system's run of the same seed and CHECKPOINTS:
# the checkpoint that train.sh --system START_FROM --print-checkpoint gives (a START_FROM is a
# text-only system, NLL only: its run name is its name; same family: same checkpoint file).
FINETUNE=()
if [[ -n $START_FROM ]]; then
  START_CHECKPOINT=$CHECKPOINTS/$START_FROM/seed$SEED/$(basename "$CHECKPOINT")
  FINETUNE=(--finetune-from-model "$START_CHECKPOINT")
fi
if [[ $PRINT_SAVE_DIR == 1 ]]; then
  printf '%s\n' "$SAVE_DIR"
  exit 0
fi
if [[ $PRINT_CHECKPOINT == 1 ]]; then
  printf '%s\n' "$CHECKPOINT"
  exit 0
fi
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
  --arch "$ARCH" "${SYSTEM_FLAGS[@]}" "${FINETUNE[@]}" "${OPTIMIZATION[@]}"
  "${EPOCH_CHECKPOINTS[@]}" --seed "$SEED" --save-dir "$SAVE_DIR"
  --log-format json --log-interval "$LOG_INTERVAL" --log-file "$SAVE_DIR/train.log"
  "${EXTRA[@]}"
)

if [[ $DRY_RUN == 1 ]]; then
  status=
  [[ ! -f $SAVE_DIR/DONE ]] || status=" (finished: would be skipped without --force)"
  printf '# run %s seed %s -> %s%s\n' "$RUN_NAME" "$SEED" "$SAVE_DIR" "$status"
  [[ -z $SEPARATE ]] || printf '# warning: %s\n' "$SEPARATE"
  [[ -z $START_FROM ]] || printf '# starts from %s (system %s)\n' "$START_CHECKPOINT" "$START_FROM"
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
# fairseq-train reads --finetune-from-model only when it starts the run (no checkpoint_last.pt)
[[ -z $START_FROM || -f $START_CHECKPOINT || -f $SAVE_DIR/checkpoint_last.pt ]] ||
  die "$SYSTEM starts from $START_CHECKPOINT, which does not exist: train --system" \
    "$START_FROM --seed $SEED first (with the same --data and CHECKPOINTS)"
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
