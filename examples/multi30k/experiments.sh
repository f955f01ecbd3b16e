#!/usr/bin/env bash
# Every experiment of the paper on one GPU: training runs per table, ensemble decoding, scoring.
# Run with --help.
set -euo pipefail
# The braces make bash read the whole script before running it, so editing the file while a
# long run is going cannot change what this run does next.
{

PROG=experiments.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ALL_STAGES=(main table2 table3 table4 table5 decode seeds summary)

usage() {
  cat <<'EOF'
Usage: examples/multi30k/experiments.sh [--stage S]... [--dry-run] [-- EXTRA_FAIRSEQ_TRAIN_FLAGS...]

Train, decode and score every system of "Adversarial reconstruction for Multi-modal Machine
Translation" with train.sh, one run after the other on one GPU. A finished run (SAVE_DIR/DONE) is
skipped, so the script can be stopped and started again; a run that was stopped resumes from its
checkpoint_last.pt.

Stages (default: all, in this order; repeat --stage to pick several):
  main     en-de, SEEDS each (Table 1): baseline, mse ("Baseline + G"), g-wgan (|z| 128),
           q-waae (lambda_r 0.2, lambda_a 0.2)
  table2   en-de q-waae, lambda_r x lambda_a in {0.2, 0.5, 0.8}^2 (9 runs), SWEEP_SEEDS each
  table3   en-de g-wgan, |z| in {64, 128, 256, 512} (4 runs), SWEEP_SEEDS each
  table4   en-de mse-nov and q-waae-nov ("no v": --visual-fusion none), SEEDS each
  table5   en-fr q-waae, SEEDS each
  decode   for every run above: fairseq-generate --beam BEAM --remove-bpe with the ensemble of its
           seeds' checkpoint_best.pt (--path a:b:c:d:e) on its test splits, then
           python -m fairseq_mmt_adv.scoring (tokenized lowercased BLEU, sacreBLEU, chrF, METEOR)
  seeds    multi_seed.py for the SEEDS systems: per-seed scores, mean +- std, ensemble
  summary  one line per scored ensemble: BLEU (tok, lc) and METEOR

Options:
  --stage S     run stage S only (repeatable)
  --dry-run     print the commands instead of running them (train.sh --dry-run for training)
  -h, --help    show this help
  -- ...        extra flags for every fairseq-train command (e.g. -- --max-epoch 60 --fp16)

Environment:
  DATA_DE, DATA_FR      prepared data (scripts/prepare-multi30k.sh --out, with --features);
                        default data-bin/en-de and data-bin/en-fr
  FEATURES_DE, FEATURES_FR  feature directories (default: the data directories)
  CHECKPOINTS           default checkpoints; a run trains in CHECKPOINTS/PAIR/NAME/seedN
  RESULTS               default results; decoding writes RESULTS/PAIR/NAME/seedsS/
                        beamB.ensemble.SPLIT.{txt,json,log} (S: the seeds, e.g. 1-2-3-4-5)
  SEEDS                 seeds of the main systems (default "1 2 3 4 5")
  SWEEP_SEEDS           seeds of the Table 2-3 sweeps (default "1"; "1 2 3 4 5" for the paper's
                        protocol, 5x the time)
  TEST_SPLITS           splits decoded for the main systems (default: those of DATA/splits.tsv
                        but valid and train, i.e. test test1 test2 test3)
  SWEEP_SPLITS          splits decoded for the sweeps (default test2 = test_2017_mscoco, the
                        COCO-ambiguous set of Tables 2-4)
  BEAM                  beam size for decoding (default 12)
  BATCH_SIZE            decoding batch size (default 64)
  PYTHON                Python with fairseq_mmt_adv (default: the repository's .venv)
  FAIRSEQ_BIN           directory of fairseq-train/-generate (default: next to PYTHON)
  METEOR_JAR            meteor-1.5.jar for METEOR (see python -m fairseq_mmt_adv.scoring --help)

Examples:
  examples/multi30k/experiments.sh --dry-run --stage table2
  examples/multi30k/experiments.sh --stage main --stage decode --stage seeds
EOF
}

# shellcheck source=examples/multi30k/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

log() { printf '[%s] %s\n' "$PROG" "$*"; }

STAGES=()
DRY_RUN=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --stage)
      [[ $# -ge 2 ]] || die "--stage needs a value (see --help)"
      [[ " ${ALL_STAGES[*]} " == *" $2 "* ]] || die "unknown stage '$2' (one of ${ALL_STAGES[*]})"
      STAGES+=("$2")
      shift 2
      ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option '$1' (fairseq-train flags go after '--'; see --help)" ;;
  esac
done
[[ ${#STAGES[@]} -gt 0 ]] || STAGES=("${ALL_STAGES[@]}")
selected() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

DATA_DE=${DATA_DE:-data-bin/en-de}
DATA_FR=${DATA_FR:-data-bin/en-fr}
FEATURES_DE=${FEATURES_DE:-$DATA_DE}
FEATURES_FR=${FEATURES_FR:-$DATA_FR}
CHECKPOINTS=${CHECKPOINTS:-checkpoints}
RESULTS=${RESULTS:-results}
SEEDS=${SEEDS:-1 2 3 4 5}
SWEEP_SEEDS=${SWEEP_SEEDS:-1}
SWEEP_SPLITS=${SWEEP_SPLITS:-test2}
BEAM=${BEAM:-12}
BATCH_SIZE=${BATCH_SIZE:-64}
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z ${FAIRSEQ_BIN:-} ]]; then
  FAIRSEQ_BIN=$(dirname "$(command -v "$PYTHON" || echo "$PYTHON")")
fi
export FAIRSEQ_BIN
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

data_of() { if [[ $1 == en-de ]]; then echo "$DATA_DE"; else echo "$DATA_FR"; fi; }
features_of() { if [[ $1 == en-de ]]; then echo "$FEATURES_DE"; else echo "$FEATURES_FR"; fi; }

# The runs: "stage|pair|system|train.sh options|seeds|decoded splits ('' = TEST_SPLITS)".
RUNS=(
  "main|en-de|baseline||$SEEDS|"
  "main|en-de|mse|--lambda-r 0.2|$SEEDS|"
  "main|en-de|g-wgan|--noise-dim 128 --lambda-a 0.2|$SEEDS|"
  "main|en-de|q-waae|--lambda-r 0.2 --lambda-a 0.2|$SEEDS|"
)
for lambda_a in 0.2 0.5 0.8; do  # Table 2: rows lambda_a, columns lambda_r
  for lambda_r in 0.2 0.5 0.8; do
    options="--lambda-r $lambda_r --lambda-a $lambda_a"
    RUNS+=("table2|en-de|q-waae|$options|$SWEEP_SEEDS|$SWEEP_SPLITS")
  done
done
for z in 64 128 256 512; do  # Table 3
  RUNS+=("table3|en-de|g-wgan|--noise-dim $z --lambda-a 0.2|$SWEEP_SEEDS|$SWEEP_SPLITS")
done
RUNS+=(
  "table4|en-de|mse-nov|--lambda-r 0.2|$SEEDS|"
  "table4|en-de|q-waae-nov|--lambda-r 0.2 --lambda-a 0.2|$SEEDS|"
  "table5|en-fr|q-waae|--lambda-r 0.2 --lambda-a 0.2|$SEEDS|"
)

# train_sh PAIR SYSTEM OPTIONS SEED ARGS...: call train.sh for one run.
train_sh() {
  local pair=$1 system=$2 options=$3 seed=$4 opts
  shift 4
  read -ra opts <<<"$options"
  CHECKPOINTS=$CHECKPOINTS/$pair bash "$HERE/train.sh" --data "$(data_of "$pair")" \
    --features "$(features_of "$pair")" --system "$system" --seed "$seed" "${opts[@]}" "$@"
}

run_dirs() {  # run_dirs PAIR SYSTEM OPTIONS SEEDS: the checkpoint directory of each seed
  local seed
  for seed in $4; do train_sh "$1" "$2" "$3" "$seed" --print-save-dir; done
}

train_stage() {
  local stage=$1 run rstage pair system options seeds splits seed n=0
  log "stage $stage"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ $rstage == "$stage" ]] || continue
    for seed in $seeds; do
      n=$((n + 1))
      printf '# %s run %d: %s %s %s seed %s\n' "$stage" "$n" "$pair" "$system" "$options" "$seed"
      if [[ $DRY_RUN == 1 ]]; then
        train_sh "$pair" "$system" "$options" "$seed" --dry-run -- "${EXTRA[@]}"
      else
        train_sh "$pair" "$system" "$options" "$seed" -- "${EXTRA[@]}"
      fi
    done
  done
}

test_splits() {  # test_splits PAIR: TEST_SPLITS, else the splits of DATA/splits.tsv but train/valid
  local data
  data=$(data_of "$1")
  if [[ -n ${TEST_SPLITS:-} ]]; then
    echo "$TEST_SPLITS"
  elif [[ -f $data/splits.tsv ]]; then
    awk -F'\t' 'NR > 1 && $1 != "train" && $1 != "valid" { printf "%s ", $1 }' "$data/splits.tsv"
  else
    echo "test test1 test2 test3"
  fi
}

target_lang() { echo "${1#en-}"; }

join_seeds() {  # join_seeds "1 2 3": 1-2-3
  local words
  read -ra words <<<"$1"
  (IFS=-; echo "${words[*]}")
}

report_scores() {  # report_scores FILE.json: "BLEU x METEOR y" of a scoring --json output
  "$PYTHON" -m fairseq_mmt_adv.recipes.summary score-line "$1"
}

declare -A DECODED=()
FAILED=()
decode_stage() {
  local run rstage pair system options seeds splits seed dirs paths split data features lang
  local out name key generate score dir base
  log "stage decode (beam $BEAM)"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ -n $splits ]] || splits=$(test_splits "$pair")
    data=$(data_of "$pair")
    features=$(features_of "$pair")
    lang=$(target_lang "$pair")
    dirs=()
    mapfile -t dirs < <(run_dirs "$pair" "$system" "$options" "$seeds")
    paths=$(printf '%s/checkpoint_best.pt:' "${dirs[@]}")
    paths=${paths%:}
    name=$(basename "$(dirname "${dirs[0]}")")
    out=$RESULTS/$pair/$name/seeds$(join_seeds "$seeds")
    for split in $splits; do
      key="$out|$split"
      [[ -z ${DECODED[$key]:-} ]] || continue  # a sweep point that is also a main system
      DECODED[$key]=1
      base=$out/beam$BEAM.ensemble.$split
      generate=("$FAIRSEQ_BIN/fairseq-generate" "$data" --user-dir "$REPO/fairseq_mmt_adv"
        --task multimodal_translation --visual-features "$features" --path "$paths"
        --gen-subset "$split" --beam "$BEAM" --remove-bpe --batch-size "$BATCH_SIZE")
      score=("$PYTHON" -m fairseq_mmt_adv.scoring --fairseq-generate "$base.txt"
        --references "$data/text/$split.$lang" --raw-references "$data/text/$split.raw.$lang"
        --detokenize "$lang" --sacrebleu-lowercase --json)
      printf '# decode %s %s seeds %s on %s\n' "$pair" "$name" "$seeds" "$split"
      if [[ $DRY_RUN == 1 ]]; then
        printf '%s > %s\n' "$(print_command "${generate[@]}")" "$base.txt"
        printf '%s > %s\n' "$(print_command "${score[@]}")" "$base.json"
        continue
      fi
      if [[ -s $base.json ]]; then
        log "$base.json exists, skipped"
        continue
      fi
      local missing=()
      for dir in "${dirs[@]}"; do [[ -f $dir/checkpoint_best.pt ]] || missing+=("$dir"); done
      if [[ ${#missing[@]} -gt 0 ]]; then
        log "skipped: no checkpoint_best.pt in ${missing[*]} (train stage $rstage first)"
        continue
      fi
      if ! compgen -G "$data/$split.$pair.*.idx" >/dev/null; then
        log "skipped: $data has no split $split"
        continue
      fi
      mkdir -p "$out"
      if ! "${generate[@]}" >"$base.txt.tmp" 2>"$base.log"; then
        log "FAILED: fairseq-generate, see $base.log"
        FAILED+=("$base")
        continue
      fi
      mv "$base.txt.tmp" "$base.txt"
      if ! "${score[@]}" >"$base.json.tmp"; then
        log "FAILED: scoring of $base.txt"
        FAILED+=("$base")
        continue
      fi
      mv "$base.json.tmp" "$base.json"
      log "$base.json: $(report_scores "$base.json")"
    done
  done
}

seeds_stage() {
  local run rstage pair system options seeds splits seed dirs name command out split_list
  log "stage seeds (beam $BEAM)"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ $rstage == main || $rstage == table4 || $rstage == table5 ]] || continue
    [[ -n $splits ]] || splits=$(test_splits "$pair")
    dirs=()
    mapfile -t dirs < <(run_dirs "$pair" "$system" "$options" "$seeds")
    name=$(basename "$(dirname "${dirs[0]}")")
    out=$RESULTS/$pair/$name/seeds$(join_seeds "$seeds")
    read -ra split_list <<<"$splits"
    command=("$PYTHON" "$HERE/multi_seed.py" --data "$(data_of "$pair")"
      --features "$(features_of "$pair")" --splits "${split_list[@]}" --beam "$BEAM"
      --batch-size "$BATCH_SIZE" --output-dir "$out" --reuse --json "$out/beam$BEAM.seeds.json"
      --name "$pair $name" --checkpoints "${dirs[@]}")
    printf '# seeds %s %s\n' "$pair" "$name"
    if [[ $DRY_RUN == 1 ]]; then
      print_command "${command[@]}"
      continue
    fi
    local dir missing=()
    for dir in "${dirs[@]}"; do [[ -f $dir/checkpoint_best.pt ]] || missing+=("$dir"); done
    if [[ ${#missing[@]} -gt 0 ]]; then
      log "skipped: no checkpoint_best.pt in ${missing[*]} (train stage $rstage first)"
      continue
    fi
    if ! "${command[@]}"; then
      log "FAILED: $(print_command "${command[@]}")"
      FAILED+=("seeds $pair $name")
    fi
  done
}

summary_stage() {
  log "stage summary"
  if [[ $DRY_RUN == 1 ]]; then
    echo "# summary of $RESULTS/*/*/*/beam$BEAM.ensemble.*.json"
    return
  fi
  "$PYTHON" -m fairseq_mmt_adv.recipes.summary table "$RESULTS" "$BEAM"
}

for stage in "${ALL_STAGES[@]}"; do
  selected "$stage" || continue
  case $stage in
    main | table2 | table3 | table4 | table5) train_stage "$stage" ;;
    decode) decode_stage ;;
    seeds) seeds_stage ;;
    summary) summary_stage ;;
  esac
done
[[ ${#FAILED[@]} -eq 0 ]] || die "${#FAILED[@]} steps failed: ${FAILED[*]}"
exit
}
